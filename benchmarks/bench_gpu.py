"""GPU proof (issue #7): the pool, the planner and the sentinel split, measured on CUDA.

Runs unchanged on a CUDA machine (``--device cuda``) and, with tiny shapes, on this CPU
(``--smoke``: checks the script itself, no figures). Sections:

* ``estimate``  estimate vs VRAM actually taken (NVML) for synthetic 0.5B / 1.5B / 7B F16 models
* ``restore``   restore saved KV state vs re-prefill of a 2,000-token history, GPU and CPU, and
                which one the pool's scheduler picks
* ``budget``    three personas on three models whose sum exceeds a VRAM budget: all complete,
                NVML-sampled use stays under budget, evictions and state saves happen
* ``sentinel``  primary tokens/s on the GPU with and without the judge process busy on the CPU
* ``batched``   three personas as three sequences of ONE model: batched vs interleaved decode
                vs one stream, with SeqRunner's GPU settings and with the ones before #7
* ``probe``     raw llama_decode steps of 1 vs 3 sequences under candidate context settings,
                sampler cost and prefill per ubatch size (benchmarks/gpu_probe.py)
* ``split``     (2 GPUs) a model forced over both cards by per-device budgets: planner's
                tensor_split vs llama.cpp's default split vs one card

Weights are zeros (speed does not depend on weight values); EOS is never sampled because
generation is bounded by max_tokens and the synthetic vocabulary has no EOS at the top.
Results: JSON to ``--out`` (default benchmarks/results/gpu.json).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from agents.engine import SamplingParams  # noqa: E402
from agents.pool.estimate import estimate  # noqa: E402
from agents.pool.gguf_info import read_gguf_info  # noqa: E402
from agents.pool.pool import ModelPool  # noqa: E402
from agents.specs import DeviceSpec, ModelSpec, PoolSpec  # noqa: E402
from tests.gguf_factory import write_llama_gguf  # noqa: E402

GiB = 1024**3
GPU_KNOBS = (
    "GPU_FLASH_ATTN",
    "GPU_KV_UNIFIED",
    "GPU_N_BATCH",
    "GPU_THREADS",
)
LEGACY_GPU = {
    "GPU_FLASH_ATTN": False,
    "GPU_KV_UNIFIED": False,
    "GPU_N_BATCH": 512,
    "GPU_THREADS": None,
}
# name: (n_layer, n_embd, n_head, n_head_kv, n_ff, n_vocab)
SHAPES = {
    "0.5B": (24, 896, 14, 2, 4864, 32000),
    "0.85B": (16, 2048, 16, 4, 5632, 32000),  # issue #7's own figure: synth_gguf.py's default
    "1.5B": (28, 1536, 12, 2, 8960, 32000),
    "3B": (36, 2048, 16, 2, 11008, 32000),
    "7B": (32, 4096, 32, 8, 14336, 32000),
    "30B": (60, 6656, 52, 4, 17920, 32000),
}
SMOKE = {k: (2, 64, 4, 2, 128, 512) for k in SHAPES}


class Nvml:
    """Used memory per GPU from NVML (what nvidia-smi shows), sampled on demand."""

    def __init__(self) -> None:
        import pynvml

        pynvml.nvmlInit()
        self.nv = pynvml
        self.handles = [
            pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())
        ]

    def used(self, i: int = 0) -> int:
        return self.nv.nvmlDeviceGetMemoryInfo(self.handles[i]).used

    def name(self, i: int = 0) -> str:
        n = self.nv.nvmlDeviceGetName(self.handles[i])
        return n.decode() if isinstance(n, bytes) else n


class Sampler(threading.Thread):
    """Samples GPU 0 memory every 10 ms while a section runs."""

    def __init__(self, nvml: Nvml | None) -> None:
        super().__init__(daemon=True)
        self.nvml, self.peak, self.stop_flag = nvml, 0, threading.Event()

    def run(self) -> None:
        while self.nvml and not self.stop_flag.is_set():
            self.peak = max(self.peak, self.nvml.used(0))
            time.sleep(0.01)


def model_file(
    work: Path, shape: str, smoke: bool, seed: int = 0, random_weights: bool = False
) -> Path:
    """A synthetic GGUF. Zero weights load and run at full speed but make every logit equal,
    so sampling hits EOS within ~40 tokens; sections that sample use random weights."""
    dims = (SMOKE if smoke else SHAPES)[shape]
    path = work / f"{shape}-{seed}{'-rnd' if random_weights else ''}.gguf"
    if not path.exists():
        t0 = time.time()
        write_llama_gguf(path, *dims, random_weights=random_weights, seed=seed, n_ctx_train=8192)
        print(f"wrote {path.name} {path.stat().st_size / GiB:.2f} GiB in {time.time() - t0:.0f}s")
    return path


def llama(path: Path, ngl: int = -1, n_ctx: int = 2048, **kw):
    import llama_cpp

    kw.setdefault("n_gpu_layers", ngl)
    return llama_cpp.Llama(str(path), n_ctx=n_ctx, verbose=False, n_threads=8, **kw)


def decode_tps(ll, n: int = 128) -> float:
    ll.reset()
    ll.eval([1, 100, 200, 300])
    t0 = time.perf_counter()
    for i in range(n):
        ll.eval([(i * 7919) % 500 + 10])
    return n / (time.perf_counter() - t0)


def sec_estimate(a, nvml, res) -> None:
    rows = []
    warm = llama(model_file(a.work, "0.5B", a.smoke), a.ngl, 256)  # CUDA context first
    warm.close()
    for shape in ["0.5B", "1.5B", "7B"]:
        path = model_file(a.work, shape, a.smoke)
        info = read_gguf_info(path)
        est = estimate(info, 2048, info.n_layer + 1 if a.ngl else 0, None)
        gpu_est = sum(d.total for d in est.devices if d.name != "cpu") if a.ngl else est.total
        before = nvml.used(0) if nvml else 0
        ll = llama(path, a.ngl, 2048)
        ll.eval([1, 2, 3, 4])
        after = nvml.used(0) if nvml else 0
        ll.close()
        measured = after - before
        rows.append(
            {
                "shape": shape,
                "file_gib": path.stat().st_size / GiB,
                "estimate_gib": gpu_est / GiB,
                "nvml_delta_gib": measured / GiB,
                "ratio": (gpu_est / measured) if measured else None,
            }
        )
        print("estimate", rows[-1])
    res["estimate"] = rows
    res["estimate_pool"] = [pool_estimate_row(a, nvml, shape) for shape in ["0.5B", "1.5B", "7B"]]


def pool_estimate_row(a, nvml, shape: str) -> dict:
    """The pool's own load (three sequences, SeqRunner's GPU settings): the bytes it reserves
    on the GPU vs what NVML shows taken while the model is resident."""
    path = model_file(a.work, shape, a.smoke)
    spec = ModelSpec("m", path=path, n_ctx=2048, n_gpu_layers=a.ngl, device=a.dev)
    devices = (DeviceSpec(a.dev, 1024 * GiB), DeviceSpec("cpu", 1024 * GiB))
    pool = ModelPool({"m": spec}, PoolSpec(devices=devices[:1] if a.dev == "cpu" else devices))
    placement = pool.placement("m")
    before = nvml.used(0) if nvml else 0
    measured = 0

    async def load() -> None:
        nonlocal measured
        await pool.prefetch("m")
        while not pool.snapshot().resident or pool.snapshot().resident[0].state != "ready":
            await asyncio.sleep(0.01)
        msgs = [{"role": "user", "content": "hi"}]
        async for _ in pool.generate("coder", "m", msgs, SamplingParams(max_tokens=4)):
            pass
        measured = (nvml.used(0) if nvml else 0) - before
        await pool.close()

    asyncio.run(load())
    gpu = placement.get(a.dev, 0)
    row = {
        "shape": shape,
        "placement_gib": {d: n / GiB for d, n in placement.items()},
        "nvml_delta_gib": measured / GiB,
        "ratio": gpu / measured if measured else None,
    }
    print("estimate_pool", row)
    return row


def sec_restore(a, nvml, res) -> None:
    out = {}
    path = model_file(a.work, "1.5B" if not a.smoke else "0.5B", a.smoke, random_weights=True)
    for where, ngl in (("gpu", a.ngl), ("cpu", 0)):
        if where == "gpu" and not a.ngl:
            continue
        ll = llama(path, ngl, 4096)
        history = [(i * 31) % 400 + 10 for i in range(2000 if not a.smoke else 200)]
        t0 = time.perf_counter()
        ll.eval(history)
        prefill = time.perf_counter() - t0
        t0 = time.perf_counter()
        state = ll.save_state()
        save = time.perf_counter() - t0
        ll.reset()
        t0 = time.perf_counter()
        ll.load_state(state)
        load = time.perf_counter() - t0
        out[where] = {
            "history_tokens": len(history),
            "reprefill_s": prefill,
            "save_s": save,
            "restore_s": load,
            "state_mib": state.llama_state_size / 2**20,
            "restore_speedup": prefill / load if load else None,
        }
        ll.close()
        if where == "gpu":
            # the settings SeqRunner now uses on a GPU: ubatch 2048, flash attention (warm)
            ll = llama(path, ngl, 4096, n_batch=2048, n_ubatch=2048, flash_attn=True)
            ll.eval(history)
            ll.reset()
            t0 = time.perf_counter()
            ll.eval(history)
            out[where]["reprefill_s_ub2048_fa_warm"] = time.perf_counter() - t0
            ll.close()
        print("restore", where, out[where])
    # What the scheduler picks: two personas share one sequence slot, so the second turn of
    # each must either restore its saved state or re-prefill. On the GPU and on the CPU.
    history = " ".join(f"word{i}" for i in range(300 if not a.smoke else 30))
    for where, ngl, dev in (("gpu", a.ngl, a.dev), ("cpu", 0, "cpu")):
        if where == "gpu" and not a.ngl:
            continue
        spec = ModelSpec("m", path=path, n_ctx=4096, n_gpu_layers=ngl, device=dev)
        pool = ModelPool(
            {"m": spec}, PoolSpec(devices=(DeviceSpec(dev, a.budget),)), seqs_per_model=1
        )

        async def turns(pool=pool) -> None:
            for persona in ["a", "b", "a", "b"]:
                msgs = [{"role": "user", "content": f"{persona}: {history}"}]
                async for _ in pool.generate(persona, "m", msgs, SamplingParams(max_tokens=8)):
                    pass
            await pool.close()

        t0 = time.perf_counter()
        asyncio.run(turns())
        st = next(iter(pool.scheduler.stats.values()))
        sched = pool.scheduler
        out[f"scheduler_{where}"] = {
            "seconds": time.perf_counter() - t0,
            "picked": "restore"
            if sched.restores and not sched.reprefills
            else "re-prefill"
            if sched.reprefills and not sched.restores
            else "both",
            "restores": sched.restores,
            "reprefills": sched.reprefills,
            "prefill_long_tps": st.prefill_long_tps,
            "save_bytes_per_s": st.save_bps,
            "restore_bytes_per_s": st.restore_bps,
            "events": [
                f"{e.kind}: {e.detail}"
                for e in pool.events
                if "state" in e.kind or e.kind == "reprefill"
            ],
        }
        print("restore scheduler", where, out[f"scheduler_{where}"])
    res["restore"] = out


def sec_budget(a, nvml, res) -> None:
    shapes = {"p1": ("1.5B", 1), "p2": ("1.5B", 2), "p3": ("3B", 3)}
    models = {
        name: ModelSpec(
            name,
            path=model_file(a.work, shape, a.smoke, seed),
            n_ctx=2048,
            n_gpu_layers=a.ngl,
            device=a.dev,
        )
        for name, (shape, seed) in shapes.items()
    }
    # Host memory is a device of its own: what stays there (token embeddings, the logits
    # buffer) is not charged to the GPU's budget.
    devices = (DeviceSpec(a.dev, a.budget), DeviceSpec("cpu", 64 * GiB))
    devices = devices[:1] if a.dev == "cpu" else devices  # --smoke: the CPU is the device
    pool = ModelPool(models, PoolSpec(devices=devices), seqs_per_model=1)
    estimates = {n: pool.placement(n).get(a.dev, 0) for n in models}
    base = nvml.used(0) if nvml else 0
    sampler = Sampler(nvml)
    sampler.start()
    done: dict[str, int] = {}

    async def persona(name: str) -> None:
        n = 0
        for turn in range(3):
            msgs = [{"role": "user", "content": f"turn {turn} of {name}"}]
            async for _ in pool.generate(name, name, msgs, SamplingParams(max_tokens=48)):
                n += 1
        done[name] = n

    async def main() -> None:
        await asyncio.gather(*(persona(n) for n in models))
        await pool.close()

    t0 = time.perf_counter()
    error = None
    try:
        asyncio.run(main())
    except Exception as exc:  # reported, not hidden
        error = repr(exc)
    sampler.stop_flag.set()
    sampler.join()
    kinds: dict[str, int] = {}
    for e in pool.events:
        kinds[e.kind] = kinds.get(e.kind, 0) + 1
    res["budget"] = {
        "budget_gib": a.budget / GiB,
        "estimates_gib": {k: v / GiB for k, v in estimates.items()},
        "sum_gib": sum(estimates.values()) / GiB,
        "tokens": done,
        "seconds": time.perf_counter() - t0,
        "nvml_peak_above_baseline_gib": (sampler.peak - base) / GiB if nvml else None,
        "accounted_peak_gib": pool.scheduler.peak.get(a.dev, 0) / GiB,
        "event_counts_last_50": kinds,
        "error": error,
    }
    print("budget", res["budget"])


def sec_sentinel(a, nvml, res) -> None:
    from sentinel.judge import JudgeRequest, JudgeWorker

    primary = llama(
        model_file(a.work, "1.5B" if not a.smoke else "0.5B", a.smoke, random_weights=True), a.ngl
    )
    alone = [decode_tps(primary, a.tokens) for _ in range(3)]
    judge_path = str(model_file(a.work, "0.5B", a.smoke))
    stop = threading.Event()
    judged = [0]

    def judge_loop() -> None:
        async def run() -> None:
            worker = JudgeWorker(judge_path, "cpu", n_ctx=1024, n_threads=4)
            await worker.start()
            text = "The answer drifts into a story about cats. " * 20
            while not stop.is_set():
                await worker.judge(JudgeRequest("text", "answer in code", text), timeout_s=30)
                judged[0] += 1
            await worker.close()

        asyncio.run(run())

    thread = threading.Thread(target=judge_loop, daemon=True)
    thread.start()
    time.sleep(3)  # judge loaded and busy
    with_judge = [decode_tps(primary, a.tokens) for _ in range(3)]
    stop.set()
    thread.join(timeout=60)
    primary.close()
    best_alone, best_with = max(alone), max(with_judge)
    res["sentinel"] = {
        "primary_tps_alone": alone,
        "primary_tps_with_judge": with_judge,
        "judge_requests_during_run": judged[0],
        "ratio_best": best_with / best_alone,
        "goal_ratio": 0.97,
    }
    print("sentinel", res["sentinel"])


def stream_tps(ll, n: int) -> float:
    """llama-cpp-python's own streaming completion: sampling and detokenizing included."""
    t0 = time.perf_counter()
    count = 0
    for _ in ll.create_completion("hello", max_tokens=n, stream=True, temperature=0.7):
        count += 1
    return count / (time.perf_counter() - t0)


def sec_batched(a, nvml, res) -> None:
    path = model_file(a.work, "1.5B" if not a.smoke else "0.5B", a.smoke, random_weights=True)
    res["batched"] = batched_runs(a, path, legacy=True)


def sec_batched_085(a, nvml, res) -> None:
    """The batched section on the shape issue #7 quotes its one-stream figure for (0.85B F16)."""
    path = model_file(a.work, "0.85B" if not a.smoke else "0.5B", a.smoke, random_weights=True)
    res["batched_085"] = batched_runs(a, path, legacy=False)


def sec_batched_q8(a, nvml, res) -> None:
    """The same on a Q8_0 model of the same shape (what users run: quantized GGUFs)."""
    path = q8_model(a)
    res["batched_q8"] = batched_runs(a, path, legacy=False) | {"tensor_type": "Q8_0"}


def q8_model(a) -> Path:
    dims = (SMOKE if a.smoke else SHAPES)["1.5B"]
    path = a.work / "1.5B-q8_0.gguf"
    if not path.exists():
        t0 = time.time()
        write_llama_gguf(path, *dims, tensor_type="Q8_0", random_weights=True, n_ctx_train=8192)
        print(f"wrote {path.name} in {time.time() - t0:.0f}s")
    return path


def batched_runs(a, path: Path, legacy: bool) -> dict:
    """One stream of llama-cpp-python vs the pool with one persona and with three."""
    ll = llama(path, a.ngl)
    out = {
        "raw_eval_tps": max(decode_tps(ll, a.tokens) for _ in range(2)),
        "llama_cpp_stream_tps": max(stream_tps(ll, a.tokens) for _ in range(2)),
    }
    ll.close()
    from agents.pool.runner import SeqRunner

    trio = ["architect", "coder", "critic"]
    new_gpu = {k: getattr(SeqRunner, k) for k in GPU_KNOBS}
    runs = {"pool_one_persona": (1, "interleaved", ["coder"], new_gpu)}
    runs |= {f"pool_three_{m}": (3, m, trio, new_gpu) for m in ("batched", "interleaved", "auto")}
    if legacy:  # the same with SeqRunner's GPU context settings from before issue #7's work
        runs |= {
            "legacy_pool_one_persona": (1, "interleaved", ["coder"], LEGACY_GPU),
            "legacy_pool_three_batched": (3, "batched", trio, LEGACY_GPU),
        }
    for name, (seqs, mode, personas, knobs) in runs.items():
        for k, v in knobs.items():
            setattr(SeqRunner, k, v)
        spec = ModelSpec("m", path=path, n_ctx=2048, n_gpu_layers=a.ngl, device=a.dev)
        pool = ModelPool(
            {"m": spec},
            PoolSpec(devices=(DeviceSpec(a.dev, a.budget),)),
            seqs_per_model=seqs,
            decode_mode=mode,
        )
        counts: dict[str, int] = {}

        async def persona(who: str, pool=pool, counts=counts) -> None:
            counts[who] = 0  # the second round's count
            msgs = [{"role": "user", "content": f"hello from {who}"}]
            params = SamplingParams(max_tokens=a.tokens, temperature=0.7, seed=1)
            async for _ in pool.generate(who, "m", msgs, params):
                counts[who] += 1

        async def run(pool=pool, personas=personas) -> tuple[float, float]:
            """Seconds for a first round (cold: CUDA graphs captured) and a second."""
            await pool.prefetch("m")
            took = []
            for _ in range(2):
                t0 = time.perf_counter()
                await asyncio.gather(*(persona(p) for p in personas))
                took.append(time.perf_counter() - t0)
            await pool.close()
            return took[0], took[1]

        try:
            took, took_warm = asyncio.run(run())
        except Exception as exc:  # one broken run must not lose the others' figures
            out[name] = {"error": repr(exc)}
            print("batched", name, out[name])
            continue
        total = sum(counts.values())
        stats = next(iter(pool.scheduler.stats.values()), None)
        out[name] = {
            "aggregate_tps": total / took,
            "aggregate_tps_warm": total / took_warm,
            "warm_vs_llama_cpp_stream": total / took_warm / out["llama_cpp_stream_tps"],
            "vs_llama_cpp_stream": total / took / out["llama_cpp_stream_tps"],
            "decode_only_tps": getattr(stats, "decode_tps", None),
            "pieces": counts,
            "max_min": max(counts.values()) / max(1, min(counts.values())),
        }
        print("batched", name, out[name])
    for k, v in new_gpu.items():
        setattr(SeqRunner, k, v)
    out["gpu_settings"] = new_gpu
    one = out["pool_one_persona"].get("decode_only_tps") or 0
    three = out["pool_three_batched"].get("decode_only_tps") or 0
    out["batched_vs_llama_cpp_stream_decode_only"] = three / out["llama_cpp_stream_tps"]
    out["batched_vs_pool_one_persona_decode_only"] = three / one if one else None
    warm = out["pool_three_batched"].get("aggregate_tps_warm") or 0
    out["batched_vs_llama_cpp_stream_warm_aggregate"] = warm / out["llama_cpp_stream_tps"]
    out["goal_batched_vs_single"] = 2.5
    return out


def sec_breakdown(a, nvml, res) -> None:
    """Where a batched step of three personas spends its time in the pool (second round),
    with pieces handed to the event loop every step and at most every 8 ms."""
    import collections

    import llama_cpp

    from agents.pool import runner as R

    T: collections.Counter = collections.Counter()
    N: collections.Counter = collections.Counter()
    state = {"first": True}

    def timed(obj, name, key):
        f = getattr(obj, name)

        def w(*args, **kw):
            t0 = time.perf_counter()
            try:
                return f(*args, **kw)
            finally:
                T[key] += time.perf_counter() - t0
                N[key] += 1

        setattr(obj, name, w)
        return f

    real_sample = llama_cpp.llama_sampler_sample

    def sample(chain, ctx, idx):
        if state["first"]:  # the step's first sample waits for the device: time that apart
            state["first"] = False
            t0 = time.perf_counter()
            llama_cpp.llama_synchronize(ctx)
            T["gpu_wait"] += time.perf_counter() - t0
            N["gpu_wait"] += 1
        t0 = time.perf_counter()
        try:
            return real_sample(chain, ctx, idx)
        finally:
            T["sample"] += time.perf_counter() - t0
            N["sample"] += 1

    real_decode = timed(R.SeqRunner, "_decode", "decode_launch")
    real_accept = timed(R.SeqRunner, "_accept", "accept_incl_sample")
    real_deliver = timed(R.SeqRunner, "_deliver", "deliver")
    llama_cpp.llama_sampler_sample = sample
    real_decode_w = R.SeqRunner._decode

    def decode(self, items):
        state["first"] = True
        return real_decode_w(self, items)

    R.SeqRunner._decode = decode
    deliver_default = R.SeqRunner.DELIVER_S
    out: dict = {}
    try:
        for shape in ("0.85B", "1.5B") if not a.smoke else ("0.5B",):
            path = model_file(a.work, shape, a.smoke, random_weights=True)
            for deliver_s in (0.0, 0.008):
                R.SeqRunner.DELIVER_S = deliver_s
                spec = ModelSpec("m", path=path, n_ctx=2048, n_gpu_layers=a.ngl, device=a.dev)
                pool = ModelPool(
                    {"m": spec},
                    PoolSpec(devices=(DeviceSpec(a.dev, a.budget),)),
                    seqs_per_model=3,
                    decode_mode="batched",
                )

                async def persona(who: str, pool=pool) -> None:
                    msgs = [{"role": "user", "content": f"hello from {who}"}]
                    params = SamplingParams(max_tokens=a.tokens, temperature=0.7, seed=1)
                    async for _ in pool.generate(who, "m", msgs, params):
                        pass

                async def run(pool=pool) -> float:
                    await pool.prefetch("m")
                    trio = ("architect", "coder", "critic")
                    for _ in range(2):  # the second round is measured
                        T.clear()
                        N.clear()
                        t0 = time.perf_counter()
                        await asyncio.gather(*(persona(p) for p in trio))
                        took = time.perf_counter() - t0
                    await pool.close()
                    return took

                took = asyncio.run(run())
                steps_n = max(1, N["gpu_wait"])
                row = {k: T[k] / steps_n * 1e6 for k in T}  # microseconds per step
                row = {f"{k}_us_per_step": round(v, 1) for k, v in row.items()}
                row["steps"] = steps_n
                row["step_us"] = round(took / steps_n * 1e6, 1)
                row["aggregate_tps"] = 3 * a.tokens / took
                out[f"{shape}_deliver_{deliver_s}"] = row
                print("breakdown", shape, deliver_s, row, flush=True)
    finally:
        llama_cpp.llama_sampler_sample = real_sample
        R.SeqRunner._decode = real_decode
        R.SeqRunner._accept = real_accept
        R.SeqRunner._deliver = real_deliver
        R.SeqRunner.DELIVER_S = deliver_default
    res["breakdown"] = out


def sec_probe(a, nvml, res) -> None:
    import gpu_probe

    path = model_file(a.work, "1.5B" if not a.smoke else "0.5B", a.smoke, random_weights=True)
    res["probe"] = gpu_probe.run_probe(path, a.ngl, a.smoke, nvml)
    if a.ngl:
        res["probe"]["graphs_off"] = gpu_probe.graphs_off(path, a.ngl, a.smoke)
        print("probe graphs_off", res["probe"]["graphs_off"])


def sec_probe_q8(a, nvml, res) -> None:
    """Raw steps of 1 vs 3 sequences on a Q8_0 model (quantized weights: one kernel reads the
    weights once for up to 8 columns, where F16 on Hopper switches kernels above 1)."""
    res["probe_q8"] = probe_steps(a, q8_model(a), ("base", "unified_fa"))


def sec_probe_085(a, nvml, res) -> None:
    """Raw steps of 1 vs 3 sequences on issue #7's 0.85B F16 shape, with the pool's settings."""
    path = model_file(a.work, "0.85B" if not a.smoke else "0.5B", a.smoke, random_weights=True)
    res["probe_085"] = probe_steps(a, path, ("unified_fa",))


def probe_steps(a, path: Path, variants: tuple[str, ...]) -> dict:
    import gpu_probe
    import llama_cpp

    ll = llama_cpp.Llama(str(path), n_ctx=64, n_gpu_layers=a.ngl, verbose=False)
    ll._ctx.close()
    out = {}
    for k in variants:
        v = gpu_probe.VARIANTS[k]
        st = gpu_probe.Stepper(gpu_probe.make_ctx(ll, 3, 2048 if not a.smoke else 512, v), 512)
        out[k] = gpu_probe.time_steps(st, 3, 200 if not a.smoke else 10)
        out[k]["sampler"] = gpu_probe.time_sampler(st)
        st.close()
        print("probe_steps", path.name, k, out[k], flush=True)
    ll.close()
    return out


def sec_split(a, nvml, res) -> None:
    from agents.pool.devices import Device, cpu_device
    from agents.pool.planner import plan

    if nvml is None or len(nvml.handles) < 2:
        res["split"] = {"skipped": "needs 2 GPUs"}
        return
    path = model_file(a.work, "30B", a.smoke)
    info = read_gguf_info(path)
    budgets = [int(float(b) * GiB) for b in a.split_budgets.split(",")]
    gpus = [Device(f"cuda:{i}", "cuda", b, index=i) for i, b in enumerate(budgets)]
    p = plan(info, gpus, 2048, cpu_device())
    out = {
        "file_gib": path.stat().st_size / GiB,
        "budgets_gib": a.split_budgets,
        "plan": p.as_dict(),
    }
    runs = {
        "planner_split": dict(
            n_gpu_layers=p.llama_kwargs()["n_gpu_layers"],
            tensor_split=p.llama_kwargs().get("tensor_split"),
        ),
        "llama_default_split": dict(n_gpu_layers=-1),
        "one_card": dict(n_gpu_layers=-1, split_mode=0, main_gpu=0),
    }
    for name, kw in runs.items():
        try:
            before = [nvml.used(i) for i in range(2)]
            ll = llama(path, n_ctx=2048, **kw)
            used = [(nvml.used(i) - before[i]) / GiB for i in range(2)]
            tps = max(decode_tps(ll, a.tokens) for _ in range(2))
            ll.close()
            out[name] = {"kwargs": {k: v for k, v in kw.items()}, "tps": tps, "gib_per_gpu": used}
        except Exception as exc:
            out[name] = {"kwargs": kw, "error": repr(exc)}
        print("split", name, out[name])
    res["split"] = out


# -- honest batched figures (issue #18) ---------------------------------------------------
def sec_paired_f16(a, nvml, res) -> None:
    """Paired runs on issue #7's 0.85B F16 shape (see ``paired_runs``)."""
    path = model_file(a.work, "0.85B" if not a.smoke else "0.5B", a.smoke, random_weights=True)
    res["paired_f16"] = paired_runs(a, path) | {"shape": "0.85B", "tensor_type": "F16"}


def sec_paired_q8(a, nvml, res) -> None:
    """Paired runs on the 1.5B shape quantized to Q8_0."""
    res["paired_q8"] = paired_runs(a, q8_model(a)) | {"shape": "1.5B", "tensor_type": "Q8_0"}


def _spread(xs: list[float]) -> dict:
    import statistics

    xs = [x for x in xs if x is not None]
    if not xs:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "n": len(xs)}


def raw_cap(ll, a) -> dict:
    """The library's own limit: raw llama_decode steps of 1 and of 3 sequences (no sampling,
    no pool), in a context with the pool's GPU settings (unified KV, flash attention, ubatch
    2048), every step synchronized."""
    import gpu_probe

    v = dict(unified=True, fa=True, n_batch=2048, threads=None)
    if a.smoke:
        v = dict(unified=False, fa=False, n_batch=512, threads=None)
    import llama_cpp

    st = gpu_probe.Stepper(gpu_probe.make_ctx(ll, 3, 2048 if not a.smoke else 512, v), 512)
    steps = 200 if not a.smoke else 10
    n_vocab = llama_cpp.llama_vocab_n_tokens(ll._model.vocab)
    try:
        r = gpu_probe.time_steps(st, 3, steps)
        sampled = {
            how: gpu_probe.time_sampled_steps(st, 3, steps, how, n_vocab)["tok_s"]
            for how in ("llama_sampler", "step_sampler")
        }
    finally:
        st.close()
    return {
        "one_seq_tps": r["b1"]["tok_s"],
        "three_seq_tps": r["batched"]["tok_s"],
        "three_vs_one": r["batched_vs_b1_tok_s"],
        # the same 3-sequence steps, each followed by sampling every sequence's next token
        "three_seq_llama_sampler_tps": sampled["llama_sampler"],
        "three_seq_step_sampler_tps": sampled["step_sampler"],
    }


def pool_batched_round(a, path: Path, n_tokens: int, temperature: float = 0.7) -> dict:
    """Three personas batched in the pool; the second round is measured: decode tok/s over
    the steps where all three ran (first such step's start to last one's end: the time
    between steps counts), the same from the steps' own durations, and the round's wall rate."""
    spec = ModelSpec("m", path=path, n_ctx=2048, n_gpu_layers=a.ngl, device=a.dev)
    pool = ModelPool(
        {"m": spec},
        PoolSpec(devices=(DeviceSpec(a.dev, a.budget),)),
        seqs_per_model=3,
        decode_mode="batched",
    )
    trio = ("architect", "coder", "critic")
    acc = {"tokens": 0, "step_s": 0.0, "first": None, "last": None, "on": False}

    async def persona(who: str) -> int:
        msgs = [{"role": "user", "content": f"hello from {who}"}]
        params = SamplingParams(max_tokens=n_tokens, temperature=temperature, seed=1)
        n = 0
        async for _ in pool.generate(who, "m", msgs, params):
            n += 1
        return n

    async def run() -> tuple[float, int]:
        await pool.prefetch("m")
        while not pool.scheduler.stats:
            await asyncio.sleep(0.005)
        stats = next(iter(pool.scheduler.stats.values()))
        orig = stats.add_decode_step

        def record(tokens: int, seconds: float) -> None:
            if acc["on"] and tokens == 3:
                now = time.perf_counter()
                acc["tokens"] += tokens
                acc["step_s"] += seconds
                acc["first"] = acc["first"] or now - seconds
                acc["last"] = now
            orig(tokens, seconds)

        stats.add_decode_step = record
        await asyncio.gather(*(persona(p) for p in trio))  # first round: cold, not measured
        acc["on"] = True
        t0 = time.perf_counter()
        counts = await asyncio.gather(*(persona(p) for p in trio))
        took = time.perf_counter() - t0
        await pool.close()
        return took, sum(counts)

    took, pieces = asyncio.run(run())
    span = (acc["last"] or 0) - (acc["first"] or 0)
    return {
        "decode_tps": acc["tokens"] / span if span > 0 else None,
        "decode_tps_step_sum": acc["tokens"] / acc["step_s"] if acc["step_s"] else None,
        "round_wall_tps": pieces / took,
        "three_wide_tokens": acc["tokens"],
    }


def paired_runs(a, path: Path) -> dict:
    """``a.pairs`` paired runs: llama-cpp-python's own stream right before and right after
    each pool run (their mean is that run's baseline), the pool's three personas batched, and
    the raw 1- vs 3-sequence cap in the same process. Ratios per pair; median and range."""
    import llama_cpp

    ll = llama(path, a.ngl)
    stream_tps(ll, 16)  # the stream's own cold start stays out of the figures
    cap_ll = llama_cpp.Llama(str(path), n_ctx=64, n_gpu_layers=a.ngl, verbose=False)
    cap_ll._ctx.close()
    n = a.tokens
    pairs = []
    for i in range(a.pairs):
        before = stream_tps(ll, n)
        pool = pool_batched_round(a, path, n)
        greedy = pool_batched_round(a, path, n, temperature=0.0)
        after = stream_tps(ll, n)
        cap = raw_cap(cap_ll, a)
        base = (before + after) / 2
        tps = pool["decode_tps"] or 0
        row = {
            "stream_before_tps": before,
            "stream_after_tps": after,
            "pool": pool,
            "pool_greedy": greedy,
            "cap": cap,
            "pool_vs_stream": tps / base,
            "pool_vs_cap3": tps / cap["three_seq_tps"],
            "pool_steps_vs_cap3": (pool["decode_tps_step_sum"] or 0) / cap["three_seq_tps"],
            "pool_greedy_vs_cap3": (greedy["decode_tps"] or 0) / cap["three_seq_tps"],
            # sampled personas against the same raw steps that also sample: with llama.cpp's
            # own sampler per sequence (its batched example's way), and with the pool's sampler
            "pool_vs_cap3_llama_sampler": tps / cap["three_seq_llama_sampler_tps"],
            "pool_vs_cap3_step_sampler": tps / cap["three_seq_step_sampler_tps"],
            "cap3_vs_stream": cap["three_seq_tps"] / base,
        }
        pairs.append(row)
        print("paired", path.name, i, json.dumps(row), flush=True)
    ll.close()
    cap_ll.close()
    keys = (
        "pool_vs_stream",
        "pool_vs_cap3",
        "pool_steps_vs_cap3",
        "pool_greedy_vs_cap3",
        "pool_vs_cap3_llama_sampler",
        "pool_vs_cap3_step_sampler",
        "cap3_vs_stream",
    )
    out: dict = {"tokens_per_persona": n, "pairs": pairs}
    out["summary"] = {k: _spread([p[k] for p in pairs]) for k in keys}
    out["summary"]["pool_decode_tps"] = _spread([p["pool"]["decode_tps"] for p in pairs])
    out["summary"]["stream_tps"] = _spread(
        [p["stream_before_tps"] for p in pairs] + [p["stream_after_tps"] for p in pairs]
    )
    out["summary"]["cap_three_seq_tps"] = _spread([p["cap"]["three_seq_tps"] for p in pairs])
    out["summary"]["cap_one_seq_tps"] = _spread([p["cap"]["one_seq_tps"] for p in pairs])
    for key in ("three_seq_llama_sampler_tps", "three_seq_step_sampler_tps"):
        out["summary"][f"cap_{key}"] = _spread([p["cap"][key] for p in pairs])
    out["summary"]["pool_greedy_decode_tps"] = _spread(
        [p["pool_greedy"]["decode_tps"] for p in pairs]
    )
    out["goal_pool_vs_cap3"] = 0.95
    return out


def sec_peer(a, nvml, res) -> None:
    """llama.cpp's own llama-batched-bench (built from the same vendored source) at batch 1
    and 3, with the pool's settings (flash attention, unified KV, ubatch 2048) and with its
    defaults; 3 runs each, S_TG (generation tok/s) median and range."""
    exe = a.batched_bench or os.environ.get("LLAMA_BATCHED_BENCH")
    if not exe or not Path(exe).exists():
        res["peer"] = {"skipped": f"no llama-batched-bench ({exe})"}
        return
    models = {
        "f16_0.85B": model_file(a.work, "0.85B" if not a.smoke else "0.5B", a.smoke, 0, True),
        "q8_0_1.5B": q8_model(a),
    }
    settings = {
        "pool_settings": ["-fa", "on", "-kvu", "-b", "2048", "-ub", "2048"],
        "defaults": [],
    }
    out: dict = {}
    for mname, path in models.items():
        for sname, extra in settings.items():
            runs: dict[int, list[float]] = {1: [], 3: []}
            err = None
            for _ in range(3):
                cmd = [exe, "-m", str(path), "-c", "4096", "-npp", "32", "-ntg", str(a.tokens)]
                cmd += ["-npl", "1,3", "-ngl", "99" if a.ngl else "0", "--output-format", "jsonl"]
                cmd += extra
                try:
                    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
                except subprocess.TimeoutExpired:
                    err = "timeout"
                    continue
                for line in p.stdout.splitlines():
                    if line.startswith("{"):
                        row = json.loads(line)
                        runs.setdefault(row["pl"], []).append(row["speed_tg"])
                if p.returncode:
                    err = (p.stderr or p.stdout)[-600:]
            out[f"{mname}_{sname}"] = {
                "args": extra,
                "tg_tps_batch1": _spread(runs[1]),
                "tg_tps_batch3": _spread(runs[3]),
                "error": err,
            }
            print("peer", mname, sname, out[f"{mname}_{sname}"], flush=True)
    res["peer"] = out


def sec_sampler(a, nvml, res) -> None:
    """Where the pool's gap to the raw cap goes: the same batched round with the default
    sampler chain (top-k/p, min-p, temperature 0.7) and with greedy sampling, the cap, and the
    host cost of one sampler call (the pool samples each persona after every step on the
    host; the cap and llama-batched-bench sample nothing). 3 runs per model, alternated."""
    import gpu_probe
    import llama_cpp

    out: dict = {}
    models = {
        "f16_0.85B": model_file(a.work, "0.85B" if not a.smoke else "0.5B", a.smoke, 0, True),
        "q8_0_1.5B": q8_model(a),
    }
    for name, path in models.items():
        cap_ll = llama_cpp.Llama(str(path), n_ctx=64, n_gpu_layers=a.ngl, verbose=False)
        cap_ll._ctx.close()
        rows = []
        for _ in range(3):
            chain = pool_batched_round(a, path, a.tokens, 0.7)["decode_tps"]
            greedy = pool_batched_round(a, path, a.tokens, 0.0)["decode_tps"]
            cap = raw_cap(cap_ll, a)["three_seq_tps"]
            rows.append({"chain_tps": chain, "greedy_tps": greedy, "cap3_tps": cap})
            print("sampler", name, rows[-1], flush=True)
        v = dict(unified=True, fa=True, n_batch=2048, threads=None)
        st = gpu_probe.Stepper(gpu_probe.make_ctx(cap_ll, 3, 2048, v), 512)
        host = gpu_probe.time_sampler(st)
        st.close()
        cap_ll.close()
        out[name] = {
            "runs": rows,
            "chain_vs_cap3": _spread([r["chain_tps"] / r["cap3_tps"] for r in rows]),
            "greedy_vs_cap3": _spread([r["greedy_tps"] / r["cap3_tps"] for r in rows]),
            "host_sampler_us": host,
        }
        print("sampler", name, out[name], flush=True)
    res["sampler"] = out


def sec_device_top_k(a, nvml, res) -> None:
    """The persona's top-k sampled on the device inside the decode (SeqRunner.DEVICE_TOP_K,
    llama.cpp's backend sampling: 40 candidates a persona come back) against the host's
    one-pass sampler over the whole vocabulary, with the default chain (temperature 0.7) and
    greedy, each next to the raw cap; F16 0.85B and Q8_0 1.5B (--models), --pairs alternated
    runs each."""
    import llama_cpp

    from agents.pool import runner as R

    out: dict = {}
    f16_shape = "0.85B" if not a.smoke else "0.5B"
    makers = {
        "f16_0.85B": lambda: model_file(a.work, f16_shape, a.smoke, 0, True),
        "q8_0_1.5B": lambda: q8_model(a),
    }
    models = {k: make() for k, make in makers.items() if k in a.models.split(",")}
    orig = R.SeqRunner.DEVICE_TOP_K
    try:
        for name, path in models.items():
            cap_ll = llama_cpp.Llama(str(path), n_ctx=64, n_gpu_layers=a.ngl, verbose=False)
            cap_ll._ctx.close()
            rows = []
            for _ in range(a.pairs):
                row = {"cap3_tps": raw_cap(cap_ll, a)["three_seq_tps"]}
                for where, flag in (("device", True), ("host", False)):
                    R.SeqRunner.DEVICE_TOP_K = flag
                    for kind, temp in (("chain", 0.7), ("greedy", 0.0)):
                        tps = pool_batched_round(a, path, a.tokens, temp)["decode_tps"] or 0
                        row[f"{where}_{kind}_tps"] = tps
                R.SeqRunner.DEVICE_TOP_K = orig
                row["cap3_after_tps"] = raw_cap(cap_ll, a)["three_seq_tps"]
                rows.append(row)
                print("device_top_k", name, row, flush=True)
            cap_ll.close()

            def ratio(key: str, rows: list = rows) -> dict:
                return _spread([r[key] / ((r["cap3_tps"] + r["cap3_after_tps"]) / 2) for r in rows])

            out[name] = {
                "runs": rows,
                "device_chain_vs_cap3": ratio("device_chain_tps"),
                "host_chain_vs_cap3": ratio("host_chain_tps"),
                "device_greedy_vs_cap3": ratio("device_greedy_tps"),
                "host_greedy_vs_cap3": ratio("host_greedy_tps"),
                "device_vs_host_chain": _spread(
                    [r["device_chain_tps"] / r["host_chain_tps"] for r in rows]
                ),
            }
            print("device_top_k", name, {k: v for k, v in out[name].items() if k != "runs"})
    finally:
        R.SeqRunner.DEVICE_TOP_K = orig
    res["device_top_k"] = out


def sec_knobs(a, nvml, res) -> None:
    """What else stands between the pool and the raw cap (F16 0.85B, 3 alternated runs each):
    the hand-off interval to the event loop (SeqRunner.DELIVER_S: the loop thread's work
    competes for the GIL with the slot thread) and the interpreter's switch interval (how long
    the slot thread may wait for the GIL after llama_decode returns)."""
    import llama_cpp

    from agents.pool import runner as R

    path = model_file(a.work, "0.85B" if not a.smoke else "0.5B", a.smoke, 0, True)
    cap_ll = llama_cpp.Llama(str(path), n_ctx=64, n_gpu_layers=a.ngl, verbose=False)
    cap_ll._ctx.close()
    variants = {
        "default": (R.SeqRunner.DELIVER_S, sys.getswitchinterval()),
        "deliver_50ms": (0.05, sys.getswitchinterval()),
        "switch_1ms": (R.SeqRunner.DELIVER_S, 0.001),
    }
    rows: dict[str, list[float]] = {k: [] for k in variants}
    orig = (R.SeqRunner.DELIVER_S, sys.getswitchinterval())
    try:
        for _ in range(3):
            cap = raw_cap(cap_ll, a)["three_seq_tps"]
            for name, (deliver, switch) in variants.items():
                R.SeqRunner.DELIVER_S = deliver
                sys.setswitchinterval(switch)
                tps = pool_batched_round(a, path, a.tokens)["decode_tps"]
                R.SeqRunner.DELIVER_S, _ = orig
                sys.setswitchinterval(orig[1])
                rows[name].append((tps or 0) / cap)
            print("knobs", {k: v[-1] for k, v in rows.items()}, flush=True)
    finally:
        R.SeqRunner.DELIVER_S = orig[0]
        sys.setswitchinterval(orig[1])
        cap_ll.close()
    res["knobs"] = {k: {"pool_vs_cap3": _spread(v)} for k, v in rows.items()}


# -- first turn after a load (issue #18) ----------------------------------------------------
def first_turn_child(a, warm: bool) -> dict:
    """In a fresh process (cold CUDA context, like hermes starting): load the model ahead of
    need, let the background warm-up run (or not), then a persona's first turn and its
    second, each timed from the request: time to first token and decode tok/s after it."""
    from agents.pool.runner import SeqRunner

    if not warm:
        SeqRunner.warm_up = lambda self, stop: (0, False)  # type: ignore[method-assign]
    path = model_file(a.work, "0.85B" if not a.smoke else "0.5B", a.smoke, random_weights=True)
    spec = ModelSpec("m", path=path, n_ctx=2048, n_gpu_layers=a.ngl, device=a.dev)
    pool = ModelPool({"m": spec}, PoolSpec(devices=(DeviceSpec(a.dev, a.budget),)))

    async def turn(msg: str) -> dict:
        t0 = time.perf_counter()
        stamps = []
        params = SamplingParams(max_tokens=a.tokens, temperature=0.7, seed=1)
        async for _ in pool.generate("coder", "m", [{"role": "user", "content": msg}], params):
            stamps.append(time.perf_counter())
        # Pieces reach the loop in hand-offs (SeqRunner.DELIVER_S): the rate counts the pieces
        # after the first hand-off over the time since it.
        dt = stamps[-1] - stamps[0] if len(stamps) > 1 else 0
        later = sum(1 for t in stamps if t > stamps[0]) if stamps else 0
        return {
            "ttft_s": stamps[0] - t0 if stamps else None,
            "decode_tps": later / dt if dt else None,
            "pieces": len(stamps),
            "turn_tps": len(stamps) / (stamps[-1] - t0) if stamps else None,
        }

    async def run() -> dict:
        t0 = time.perf_counter()
        await pool.prefetch("m")
        while not any(r.state == "ready" for r in pool.snapshot().resident):
            await asyncio.sleep(0.005)
        loaded = time.perf_counter() - t0
        on_gpu = any(sl.runner.on_gpu for sl in pool.scheduler.slots.values())
        while warm and on_gpu and not any(e.kind == "warm_up" for e in pool.events):
            if time.perf_counter() - t0 > 30:
                break
            await asyncio.sleep(0.005)
        warmed = time.perf_counter() - t0
        await asyncio.sleep(0.5)  # the user types
        first = await turn("hello from coder")
        second = await turn("hello again from coder")
        events = [f"{e.kind}: {e.detail}" for e in pool.events if e.kind in ("load", "warm_up")]
        await pool.close()
        return {
            "warm_up": warm,
            "load_s": loaded,
            "ready_and_warm_s": warmed,
            "first": first,
            "second": second,
            "events": events,
        }

    return asyncio.run(run())


def sec_first_turn(a, nvml, res) -> None:
    """3 pairs of fresh processes, warm-up on and off in turn (see ``first_turn_child``)."""
    model_file(a.work, "0.85B" if not a.smoke else "0.5B", a.smoke, random_weights=True)
    runs: dict[str, list[dict]] = {"on": [], "off": []}
    for _ in range(3):
        for mode in ("on", "off"):
            cmd = [sys.executable, __file__, "--first-turn-child", mode, "--work", str(a.work)]
            cmd += ["--tokens", str(a.tokens)] + (["--smoke"] if a.smoke else [])
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
            rows = [ln for ln in p.stdout.splitlines() if ln.startswith("FIRSTTURN")]
            if not rows:
                runs[mode].append({"error": (p.stderr or p.stdout)[-800:]})
                continue
            runs[mode].append(json.loads(rows[-1][9:]))
            print("first_turn", mode, rows[-1][9:], flush=True)
    out: dict = {"tokens": a.tokens, "runs": runs}
    for mode, rs in runs.items():
        ok = [r for r in rs if "first" in r]

        def ratio(r: dict) -> float | None:
            f, s = r["first"]["decode_tps"], r["second"]["decode_tps"]
            return f / s if f and s else None

        out[mode] = {
            "first_decode_tps": _spread([r["first"]["decode_tps"] for r in ok]),
            "second_decode_tps": _spread([r["second"]["decode_tps"] for r in ok]),
            "first_vs_second": _spread([ratio(r) for r in ok]),
            "first_ttft_s": _spread([r["first"]["ttft_s"] for r in ok]),
            "second_ttft_s": _spread([r["second"]["ttft_s"] for r in ok]),
            "ready_and_warm_s": _spread([r["ready_and_warm_s"] for r in ok]),
        }
    out["goal_first_vs_second"] = 0.9
    res["first_turn"] = out
    print("first_turn", json.dumps({k: out[k] for k in ("on", "off")}), flush=True)


SECTIONS = {
    "probe": sec_probe,
    "probe_q8": sec_probe_q8,
    "estimate": sec_estimate,
    "restore": sec_restore,
    "budget": sec_budget,
    "sentinel": sec_sentinel,
    "batched": sec_batched,
    "batched_q8": sec_batched_q8,
    "batched_085": sec_batched_085,
    "breakdown": sec_breakdown,
    "probe_085": sec_probe_085,
    "split": sec_split,
    "paired_f16": sec_paired_f16,
    "paired_q8": sec_paired_q8,
    "peer": sec_peer,
    "first_turn": sec_first_turn,
    "sampler": sec_sampler,
    "knobs": sec_knobs,
    "device_top_k": sec_device_top_k,
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sections", default="estimate,restore,budget,sentinel,batched")
    ap.add_argument("--smoke", action="store_true", help="tiny shapes on the CPU")
    ap.add_argument("--work", type=Path, default=Path("/tmp/hermes-gpu"))
    ap.add_argument("--budget-gib", type=float, default=8.0)
    ap.add_argument("--split-budgets-gib", dest="split_budgets", default="24,48")
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "gpu.json")
    ap.add_argument("--pairs", type=int, default=5, help="paired runs per paired_* section")
    ap.add_argument(
        "--models", default="f16_0.85B,q8_0_1.5B", help="the device_top_k section's models"
    )
    ap.add_argument("--batched-bench", default=None, help="llama-batched-bench (peer section)")
    ap.add_argument(
        "--device-top-k",
        choices=("default", "on", "off"),
        default="default",
        help="SeqRunner.DEVICE_TOP_K for every section but device_top_k (which runs both)",
    )
    ap.add_argument("--first-turn-child", choices=("on", "off"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    a.ngl = 0 if a.smoke else -1
    a.dev = "cpu" if a.smoke else "cuda:0"
    a.budget = int(a.budget_gib * GiB)
    if a.device_top_k != "default":
        from agents.pool.runner import SeqRunner

        SeqRunner.DEVICE_TOP_K = a.device_top_k == "on"
    if a.first_turn_child:
        print("FIRSTTURN" + json.dumps(first_turn_child(a, a.first_turn_child == "on")))
        return
    try:
        nvml = None if a.smoke else Nvml()
    except Exception as exc:
        print(f"no NVML: {exc}")
        nvml = None
    res: dict = {
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "gpus": [nvml.name(i) for i in range(len(nvml.handles))] if nvml else [],
            "smoke": a.smoke,
        },
        "device_top_k_flag": a.device_top_k,
    }
    try:
        res["machine"]["nvidia_smi"] = subprocess.run(
            ["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    for name in a.sections.split(","):
        t0 = time.time()
        try:
            SECTIONS[name](a, nvml, res)
        except Exception as exc:  # one broken section must not lose the others' figures
            import traceback

            traceback.print_exc()
            res[name] = {"error": repr(exc)}
        res.setdefault("seconds", {})[name] = round(time.time() - t0, 1)
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
