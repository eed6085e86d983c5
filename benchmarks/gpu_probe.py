"""Why does a batched decode step of 3 sequences cost so much more than one? (issue #7)

Times raw ``llama_decode`` steps on one loaded model, without the pool around them, for one
sequence, three sequences in one batch and three sequences one call each, under context
settings the pool's ``SeqRunner`` could use on a GPU: flash attention, one unified KV stream,
CPU threads, ubatch size. Also times the per-token sampler chain the pool runs on the host and
a 2,929-token prefill per ubatch size (what a re-prefill after a seat swap costs).

Run through ``bench_gpu.py --sections probe`` (on CUDA) or ``--smoke`` (tiny, CPU); the
figures go under ``probe`` in its JSON. Every step ends with ``llama_synchronize`` so the time
is the device's, not only the launch's.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

VARIANTS: dict[str, dict[str, Any]] = {
    # what SeqRunner did before this probe: llama-cpp-python's defaults plus multi-stream KV
    "base": dict(unified=False, fa=False, n_batch=512, threads=None),
    "fa": dict(unified=False, fa=True, n_batch=512, threads=None),
    "unified": dict(unified=True, fa=False, n_batch=512, threads=None),
    "unified_fa": dict(unified=True, fa=True, n_batch=512, threads=None),
    "fa_1thread": dict(unified=False, fa=True, n_batch=512, threads=1),
    "unified_fa_1thread": dict(unified=True, fa=True, n_batch=512, threads=1),
    "unified_fa_ub2048": dict(unified=True, fa=True, n_batch=2048, threads=1),
}


# the 48-token prompt every timed sequence starts from
PROMPT = [(i * 37) % 400 + 10 for i in range(48)]


def make_ctx(ll: Any, seqs: int, n_ctx: int, v: dict[str, Any]) -> Any:
    import llama_cpp
    from llama_cpp import _internals

    p = ll.context_params
    p.n_ctx = n_ctx * seqs
    p.n_batch = p.n_ubatch = v["n_batch"]
    p.n_seq_max = seqs
    p.kv_unified = v["unified"]
    p.flash_attn_type = (
        llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
        if v["fa"]
        else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
    )
    threads = v["threads"] or ll.n_threads
    p.n_threads = p.n_threads_batch = threads
    return _internals.LlamaContext(model=ll._model, params=p, verbose=False)


class Stepper:
    """A batch and a context; decodes (token, pos, seq, logits) items and waits for the GPU."""

    def __init__(self, ctx_obj: Any, n_batch: int) -> None:
        import llama_cpp

        self.lc = llama_cpp
        self.ctx_obj = ctx_obj
        self.ctx = ctx_obj.ctx
        self.mem = llama_cpp.llama_get_memory(self.ctx)
        self.batch = llama_cpp.llama_batch_init(n_batch, 0, 1)

    def decode(self, items: list[tuple[int, int, int, bool]]) -> None:
        b = self.batch
        b.n_tokens = len(items)
        for i, (tok, pos, seq, logits) in enumerate(items):
            b.token[i], b.pos[i], b.n_seq_id[i], b.logits[i] = tok, pos, 1, logits
            b.seq_id[i][0] = seq
        rc = self.lc.llama_decode(self.ctx, b)
        if rc != 0:
            raise RuntimeError(f"llama_decode failed ({rc})")
        self.lc.llama_synchronize(self.ctx)

    def prefill(self, tokens: list[int], seq: int, chunk: int) -> float:
        t0 = time.perf_counter()
        for at in range(0, len(tokens), chunk):
            part = tokens[at : at + chunk]
            self.decode([(t, at + i, seq, i == len(part) - 1) for i, t in enumerate(part)])
        return time.perf_counter() - t0

    def clear(self) -> None:
        self.lc.llama_memory_clear(self.mem, True)

    def close(self) -> None:
        self.lc.llama_batch_free(self.batch)
        self.ctx_obj.close()


def _ms(samples: list[float]) -> dict[str, float]:
    return {
        "median_ms": statistics.median(samples) * 1e3,
        "mean_ms": statistics.fmean(samples) * 1e3,
    }


def time_steps(st: Stepper, seqs: int, steps: int, warm: int = 24) -> dict[str, Any]:
    """ms per step for 1 sequence, 3 in one batch and 3 one call each (positions advance)."""
    out: dict[str, Any] = {}
    prompt = PROMPT
    for mode in ("b1", "batched", "interleaved"):
        st.clear()
        used = [0] if mode == "b1" else list(range(seqs))
        for s in used:
            st.prefill(prompt, s, 512)
        pos = len(prompt)
        samples: list[float] = []
        for k in range(warm + steps):
            tok = (k * 7919) % 500 + 10
            t0 = time.perf_counter()
            if mode == "interleaved":
                for s in used:
                    st.decode([(tok, pos, s, True)])
            else:
                st.decode([(tok, pos, s, True) for s in used])
            if k >= warm:
                samples.append(time.perf_counter() - t0)
            pos += 1
        r = _ms(samples)
        r["tok_s"] = len(used) / statistics.median(samples)
        out[mode] = r
    out["batched_vs_b1_tok_s"] = out["batched"]["tok_s"] / out["b1"]["tok_s"]
    return out


def time_sampled_steps(
    st: Stepper, seqs: int, steps: int, how: str, n_vocab: int, warm: int = 24
) -> dict[str, Any]:
    """ms per batched step of ``seqs`` sequences that sample their next token after every
    step, the way llama.cpp's own batched example does, and feed it back: each with the pool's
    chain (top-k 40, top-p 0.95, min-p 0.05, temperature 0.7, a seeded draw), sampled by
    ``how``: "llama_sampler" (llama_sampler_sample per sequence, as llama.cpp's examples do)
    or "step_sampler" (the pool's StepSampler, one pass over the step's logits). The time
    between steps (the sampling) counts: each sample is one decode plus its sampling."""
    from agents.engine import SamplingParams
    from agents.pool.sampling import StepSampler, new_chain

    lc = st.lc
    st.clear()
    prompt = PROMPT
    for s in range(seqs):
        st.prefill(prompt, s, 512)
    chains = [new_chain(SamplingParams(temperature=0.7, seed=s + 1)) for s in range(seqs)]
    fast = StepSampler(st.ctx, n_vocab) if how == "step_sampler" else None
    greedy = [False] * seqs
    toks = [prompt[-1]] * seqs
    pos = len(prompt)
    samples: list[float] = []
    try:
        for k in range(warm + steps):
            t0 = time.perf_counter()
            st.decode([(toks[s], pos, s, True) for s in range(seqs)])
            if fast is not None:
                toks = fast.sample(chains, greedy)
            else:
                toks = [int(lc.llama_sampler_sample(chains[s], st.ctx, s)) for s in range(seqs)]
            if k >= warm:
                samples.append(time.perf_counter() - t0)
            pos += 1
    finally:
        for c in chains:
            lc.llama_sampler_free(c)
    r = _ms(samples)
    r["tok_s"] = seqs / statistics.median(samples)
    return r


def time_sampler(st: Stepper, n: int = 200) -> dict[str, float]:
    """Host cost of the pool's sampler chains (top-k/p, min-p, temp, dist; and greedy)."""
    lc = st.lc
    st.clear()
    st.decode([(11, 0, 0, True)])
    out = {}
    for name in ("chain", "greedy"):
        chain = lc.llama_sampler_chain_init(lc.llama_sampler_chain_default_params())
        if name == "greedy":
            lc.llama_sampler_chain_add(chain, lc.llama_sampler_init_greedy())
        else:
            lc.llama_sampler_chain_add(chain, lc.llama_sampler_init_top_k(40))
            lc.llama_sampler_chain_add(chain, lc.llama_sampler_init_top_p(0.95, 1))
            lc.llama_sampler_chain_add(chain, lc.llama_sampler_init_min_p(0.05, 1))
            lc.llama_sampler_chain_add(chain, lc.llama_sampler_init_temp(0.7))
            lc.llama_sampler_chain_add(chain, lc.llama_sampler_init_dist(1))
        t0 = time.perf_counter()
        for _ in range(n):
            lc.llama_sampler_sample(chain, st.ctx, 0)
        out[f"{name}_us"] = (time.perf_counter() - t0) / n * 1e6
        lc.llama_sampler_free(chain)
    # three chains on three outputs of one batched step: serial vs three threads (ctypes
    # releases the GIL, so the samplers could run side by side)
    st.clear()
    st.decode([(11, 0, s, True) for s in range(3)])
    chains = []
    for s in range(3):
        chain = lc.llama_sampler_chain_init(lc.llama_sampler_chain_default_params())
        lc.llama_sampler_chain_add(chain, lc.llama_sampler_init_top_k(40))
        lc.llama_sampler_chain_add(chain, lc.llama_sampler_init_dist(s))
        chains.append(chain)
    t0 = time.perf_counter()
    for _ in range(n):
        for i, chain in enumerate(chains):
            lc.llama_sampler_sample(chain, st.ctx, i)
    out["three_serial_us"] = (time.perf_counter() - t0) / n * 1e6
    with concurrent.futures.ThreadPoolExecutor(3) as ex:
        t0 = time.perf_counter()
        for _ in range(n):
            list(
                ex.map(lambda ic: lc.llama_sampler_sample(ic[1], st.ctx, ic[0]), enumerate(chains))
            )
        out["three_threads_us"] = (time.perf_counter() - t0) / n * 1e6
    for chain in chains:
        lc.llama_sampler_free(chain)
    return out


def run_probe(path: Path, ngl: int, smoke: bool, nvml: Any = None) -> dict[str, Any]:
    import llama_cpp

    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    ll = llama_cpp.Llama(str(path), n_ctx=64, n_gpu_layers=ngl, verbose=False)
    ll._ctx.close()
    seqs, n_ctx = 3, 2048 if not smoke else 512
    steps = 200 if not smoke else 10
    res: dict[str, Any] = {"model": path.name, "steps": steps, "variants": {}}
    for name, v in VARIANTS.items():
        before = nvml.used(0) if nvml else 0
        try:
            st = Stepper(make_ctx(ll, seqs, n_ctx, v), v["n_batch"])
        except Exception as exc:  # a variant the build cannot do is a result too
            res["variants"][name] = {"error": repr(exc)}
            continue
        ctx_gib = (nvml.used(0) - before) / 2**30 if nvml else None
        try:
            r = time_steps(st, seqs, steps)
            r["ctx_vram_gib"] = ctx_gib
            if name in ("base", "unified_fa_1thread"):
                r["sampler"] = time_sampler(st)
        except Exception as exc:
            r = {"error": repr(exc)}
        st.close()
        res["variants"][name] = r
        print("probe", name, r, flush=True)
    # Re-prefill of the restore section's history, one sequence, per ubatch size / attention.
    history = [(i * 31) % 400 + 10 for i in range(2929 if not smoke else 200)]
    pre: dict[str, Any] = {"tokens": len(history)}
    for fa in (False, True):
        for nb in (512, 1024, 2048, 4096):
            v = dict(unified=True, fa=fa, n_batch=nb, threads=None)
            key = f"{'fa' if fa else 'nofa'}_ub{nb}"
            before = nvml.used(0) if nvml else 0
            try:
                st = Stepper(make_ctx(ll, 1, 4096 if not smoke else 512, v), nb)
            except Exception as exc:
                pre[key] = {"error": repr(exc)}
                continue
            ctx_gib = (nvml.used(0) - before) / 2**30 if nvml else None
            times = []
            for _ in range(3):
                st.clear()
                times.append(st.prefill(history, 0, nb))
            st.close()
            pre[key] = {"cold_s": times[0], "warm_s": min(times[1:]), "ctx_vram_gib": ctx_gib}
            print("probe prefill", key, pre[key], flush=True)
    res["prefill"] = pre
    ll.close()
    return res


def _child(path: str, ngl: int, n_ctx: int, steps: int) -> None:
    """Body of the graphs-off subprocess: base and best-guess variants, JSON on stdout."""
    import llama_cpp

    ll = llama_cpp.Llama(path, n_ctx=64, n_gpu_layers=ngl, verbose=False)
    ll._ctx.close()
    out = {}
    for k in ("base", "unified_fa"):
        v = VARIANTS[k]
        st = Stepper(make_ctx(ll, 3, n_ctx, v), v["n_batch"])
        out[k] = time_steps(st, 3, steps)
        st.close()
    print("JSON" + json.dumps(out), flush=True)


def graphs_off(path: Path, ngl: int, smoke: bool) -> dict[str, Any]:
    """The base and best-guess variants again in a process with CUDA graphs disabled."""
    env = dict(os.environ, GGML_CUDA_DISABLE_GRAPHS="1")
    args = [str(path), str(ngl), "512" if smoke else "2048", "10" if smoke else "200"]
    try:
        p = subprocess.run(
            [sys.executable, __file__, "--child", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    except subprocess.TimeoutExpired:
        return {"error": "timeout"}
    for line in p.stdout.splitlines():
        if line.startswith("JSON"):
            return json.loads(line[4:])
    return {"error": (p.stderr or p.stdout)[-2000:]}


if __name__ == "__main__" and sys.argv[1:2] == ["--child"]:
    _child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
