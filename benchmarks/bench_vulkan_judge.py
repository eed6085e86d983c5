"""The sentinel's judge on Vulkan beside a CUDA primary on one GPU (issue #18).

The personas' pool runs in this process on ``cuda:0`` (llama-cpp-python built with CUDA, on
PYTHONPATH); the judge worker runs in its own process on ``vulkan:0``, started from a second
build made with ``-DGGML_VULKAN=on`` (``--judge-llama-cpp DIR``, the ``[sentinel]
llama_cpp_path`` setting; ``scripts/build_llama_gpu.sh cuda vulkan`` makes both). Measured:

* ``doctor``     ``hermes doctor`` on a config with that judge: the device it names
* ``memory``     the judge's memory estimate (agents.pool.estimate) vs what the driver reports
                 (NVML: GPU memory used before vs after the judge loaded and answered)
* ``latency``    seconds per judgement on Vulkan and on the CPU (same model, same requests)
* ``primary``    the primary's decode tok/s with the Vulkan judge busy vs idle, paired runs,
                 for each judge share while the personas stream (``--shares``; 1: the judge
                 never gives way; the pool tells the judge when it streams, as hermes does)
                 and the judge's seconds per judgement meanwhile
* ``during``     verdicts arriving while one long CUDA stream runs (asked every 400
                 characters), with the judge giving way (default share) and not (share 1)
* ``kills``      the judge SIGKILLed mid-stream N times: streams finish, E_SENTINEL_DOWN
                 recorded, seconds until the judge answers again on Vulkan

Models are synthetic, random F16 weights: the primary has issue #7's 0.85B shape, the judge
SmolLM2-135M's shape (hermes' embedded judge). ``--smoke`` runs it all on this CPU with tiny
shapes (checks the script, no figures). Results: JSON to ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
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
from sentinel.judge import JudgeRequest, JudgeWorker, judge_devices  # noqa: E402
from sentinel.settings import BUSY_SHARE_GPU  # noqa: E402
from tests.gguf_factory import write_llama_gguf  # noqa: E402

GiB = 1024**3
PRIMARY = (16, 2048, 16, 4, 5632, 32000)  # 0.85B
JUDGE = (30, 576, 9, 3, 1536, 49152)  # SmolLM2-135M
TINY = (2, 64, 4, 2, 128, 512)
INSTR = "Write a Python function that parses a CSV file and returns the rows as dicts."


def spread(xs: list) -> dict:
    xs = [x for x in xs if x is not None]
    if not xs:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "n": len(xs)}


def gguf(work: Path, name: str, dims: tuple) -> Path:
    path = work / f"{name}.gguf"
    if not path.exists():
        write_llama_gguf(path, *dims, random_weights=True, n_ctx_train=8192)
    return path


class Nvml:
    def __init__(self) -> None:
        import pynvml

        pynvml.nvmlInit()
        self.nv, self.h = pynvml, pynvml.nvmlDeviceGetHandleByIndex(0)

    def used(self) -> int:
        return int(self.nv.nvmlDeviceGetMemoryInfo(self.h).used)

    def name(self) -> str:
        n = self.nv.nvmlDeviceGetName(self.h)
        return n.decode() if isinstance(n, bytes) else str(n)


class Primary:
    """The personas' pool on the CUDA device: one persona's stream, timed per piece. The pool
    tells ``self.judge`` (when set) whether it streams, as hermes wires it."""

    def __init__(self, a, path: Path, n_ctx: int = 2048) -> None:
        spec = ModelSpec("m", path=path, n_ctx=n_ctx, n_gpu_layers=a.ngl, device=a.dev)
        self.pool = ModelPool({"m": spec}, PoolSpec(devices=(DeviceSpec(a.dev, 64 * GiB),)))
        self.n = 0
        self.judge: JudgeWorker | None = None
        self.pool.add_activity_listener(
            lambda busy: self.judge.set_primary_busy(busy) if self.judge else None
        )

    async def stream(self, tokens: int, on_piece=None) -> dict:
        self.n += 1
        msgs = [{"role": "user", "content": f"turn {self.n}: write a CSV parser"}]
        params = SamplingParams(max_tokens=tokens, temperature=0.7, seed=self.n)
        stamps, text, error = [], "", None
        t0 = time.perf_counter()
        try:
            async for piece in self.pool.generate("coder", "m", msgs, params):
                stamps.append(time.perf_counter())
                text += piece
                if on_piece is not None:
                    on_piece(text, len(stamps))
        except Exception as exc:  # a stream that breaks is a result
            error = repr(exc)
        later = sum(1 for t in stamps if t > stamps[0]) if stamps else 0
        dt = stamps[-1] - stamps[0] if len(stamps) > 1 else 0
        return {
            "pieces": len(stamps),
            "decode_tps": later / dt if dt else None,
            "seconds": time.perf_counter() - t0,
            "error": error,
            "text": text,
        }


def request(i: int, text: str = "") -> JudgeRequest:
    body = text or (
        f"Request {i}. "
        + "import csv\ndef rows(path):\n    return list(csv.DictReader(open(path)))\n" * 12
    )
    return JudgeRequest.tail("code", INSTR, body)


async def judge_latency(worker: JudgeWorker, n: int) -> dict:
    own, trip = [], []
    for i in range(n):
        t0 = time.perf_counter()
        r = await worker.judge(request(i), timeout_s=120)
        if r is not None:
            trip.append(time.perf_counter() - t0)
            own.append(r.latency_s)
    return {"round_trip_s": spread(trip), "answered": len(trip), "asked": n}


async def busy_loop(
    worker: JudgeWorker, stop: asyncio.Event, counts: dict, trips: list | None = None
) -> None:
    i = 0
    while not stop.is_set():
        i += 1
        t0 = time.perf_counter()
        r = await worker.judge(request(1000 + i), timeout_s=60)
        if r is not None and trips is not None:
            trips.append((time.perf_counter() - t0, r.paused_s))
        counts["answered" if r is not None else "none"] = (
            counts.get("answered" if r is not None else "none", 0) + 1
        )
        if not worker.alive:
            await asyncio.sleep(0.05)


def doctor(a, primary: Path, judge: Path) -> dict:
    cfg = a.work / "doctor.toml"
    cfg.write_text(
        'default_persona = "coder"\n'
        f'[models.primary]\npath = "{primary}"\nn_ctx = 2048\nn_gpu_layers = {a.ngl}\n'
        f'[models.judge]\npath = "{judge}"\nn_ctx = 2048\n'
        '[personas.coder]\nmodel = "primary"\ncontract = "code"\n'
        'system_prompt = "You write code."\n'
        f'[sentinel]\ndevice = "{a.judge_device}"\nmodel = "judge"\n'
        + (f'llama_cpp_path = "{a.judge_llama_cpp}"\n' if a.judge_llama_cpp else "")
    )
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "hermes_tui.cli",
            "doctor",
            "--config",
            str(cfg),
            "--db",
            str(a.work / "d.db"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, PYTHONPATH=os.environ.get("PYTHONPATH", "") + os.pathsep + str(ROOT)),
    )
    return {
        "rc": p.returncode,
        "stdout": p.stdout[-3000:],
        "sentinel_lines": [
            ln for ln in p.stdout.splitlines() if ln.startswith(("sentinel", "llama.cpp", "gpu"))
        ],
        "stderr_tail": p.stderr[-400:],
    }


async def run(a, res: dict, nvml: Nvml | None) -> None:
    primary_path = gguf(a.work, "primary", TINY if a.smoke else PRIMARY)
    judge_path = gguf(a.work, "judge", TINY if a.smoke else JUDGE)
    res["models"] = {"primary": list(PRIMARY), "judge": list(JUDGE), "smoke": a.smoke}
    try:
        res["judge_devices"] = judge_devices(a.judge_device, a.judge_llama_cpp)
    except Exception as exc:
        res["judge_devices"] = {"error": str(exc)}
    print("judge_devices", res["judge_devices"], flush=True)
    res["doctor"] = doctor(a, primary_path, judge_path)
    print("doctor", res["doctor"], flush=True)

    prim = Primary(a, primary_path, n_ctx=8192)
    await prim.stream(32)  # the primary loaded and warm before anything is measured
    # memory: the judge's estimate vs what the driver shows taken once it loaded and answered
    info = read_gguf_info(judge_path)
    est = estimate(info, 2048, info.n_layer + 1, None)
    gpu_est = sum(d.total for d in est.devices if d.name != "cpu")
    before = nvml.used() if nvml else 0
    worker = JudgeWorker(
        str(judge_path),
        a.judge_device,
        n_ctx=2048,
        llama_cpp_path=a.judge_llama_cpp,
        log_path=str(a.work / "judge.log"),
        start_timeout_s=120,
        busy_share=a.default_share,
    )
    t0 = time.perf_counter()
    await worker.start()
    start_s = time.perf_counter() - t0
    await worker.judge(request(0), timeout_s=120)
    await asyncio.sleep(0.5)
    after = nvml.used() if nvml else 0
    res["memory"] = {
        "estimate_gib": gpu_est / GiB,
        "estimate_total_gib": est.total / GiB,
        "nvml_delta_gib": (after - before) / GiB,
        "estimate_vs_driver": gpu_est / (after - before) if after > before else None,
        "goal": "within +-15%",
        "judge_start_s": start_s,
        "judge_load_s": worker.load_s,
    }
    print("memory", res["memory"], flush=True)

    res["latency"] = {"vulkan": await judge_latency(worker, a.judgements)}
    cpu = JudgeWorker(
        str(judge_path), "cpu", n_ctx=2048, n_threads=8, log_path=str(a.work / "cpu.log")
    )
    await cpu.start()
    res["latency"]["cpu"] = await judge_latency(cpu, max(2, a.judgements // 2))
    await cpu.close()
    v, c = (
        res["latency"]["vulkan"]["round_trip_s"]["median"],
        res["latency"]["cpu"]["round_trip_s"]["median"],
    )
    res["latency"]["cpu_vs_vulkan"] = c / v if v and c else None
    print("latency", res["latency"], flush=True)

    # primary with the Vulkan judge busy vs idle: idle before, busy, idle after, per pair,
    # for each share the judge keeps while the personas stream
    res["primary"] = {"goal": 0.97, "tokens": a.tokens, "shares": {}}
    for share in a.shares:
        sw = JudgeWorker(
            str(judge_path),
            a.judge_device,
            n_ctx=2048,
            llama_cpp_path=a.judge_llama_cpp,
            log_path=str(a.work / "judge.log"),
            start_timeout_s=120,
            busy_share=share,
        )
        await sw.start()
        await sw.judge(request(0), timeout_s=120)
        prim.judge = sw
        pairs = []
        for _ in range(a.pairs):
            idle1 = (await prim.stream(a.tokens))["decode_tps"]
            stop, counts, trips = asyncio.Event(), {}, []
            task = asyncio.ensure_future(busy_loop(sw, stop, counts, trips))
            await asyncio.sleep(0.3)
            busy = (await prim.stream(a.tokens))["decode_tps"]
            stop.set()
            await task
            idle2 = (await prim.stream(a.tokens))["decode_tps"]
            base = (idle1 + idle2) / 2 if idle1 and idle2 else None
            pairs.append(
                {
                    "idle_before": idle1,
                    "busy": busy,
                    "idle_after": idle2,
                    "judged": counts,
                    "judge_trips": trips,
                    "ratio": busy / base if busy and base else None,
                }
            )
            print("primary", share, pairs[-1], flush=True)
        # the judge's own latency with the personas streaming the whole time (long stream)
        stop, counts, trips = asyncio.Event(), {}, []
        long_stream = asyncio.ensure_future(prim.stream(a.tokens * 6))
        task = asyncio.ensure_future(busy_loop(sw, stop, counts, trips))
        s_long = await long_stream
        stop.set()
        await task
        prim.judge = None
        await sw.close()
        res["primary"]["shares"][str(share)] = {
            "pairs": pairs,
            "ratio": spread([p["ratio"] for p in pairs]),
            "judge_s_while_streaming": spread([t for t, _ in trips]),
            "judge_paused_s_while_streaming": spread([p for _, p in trips]),
            "judged_while_streaming": len(trips),
            "long_stream_s": s_long["seconds"],
        }
        print(
            "share",
            share,
            {k: v for k, v in res["primary"]["shares"][str(share)].items() if k != "pairs"},
            flush=True,
        )
    prim.judge = worker

    # verdicts during one long CUDA stream, the judge giving way (default share) and not
    res["during"] = {}
    idle_long = await prim.stream(a.tokens * 8)
    for label, share in (("gives_way", a.default_share), ("never_gives_way", 1.0)):
        dw = JudgeWorker(
            str(judge_path),
            a.judge_device,
            n_ctx=2048,
            llama_cpp_path=a.judge_llama_cpp,
            log_path=str(a.work / "judge.log"),
            start_timeout_s=120,
            busy_share=share,
        )
        await dw.start()
        await dw.judge(request(0), timeout_s=120)
        prim.judge = dw
        t_start = time.perf_counter()
        asked: list[float] = []
        answers: list[dict] = []
        pending: set = set()
        last = [0]

        async def ask(text: str, at: float, dw=dw, answers=answers, t_start=t_start) -> None:
            r = await dw.judge(JudgeRequest.tail("code", INSTR, text), timeout_s=5.0)
            answers.append(
                {
                    "asked_s": at,
                    "answered_s": time.perf_counter() - t_start,
                    "on_task": None if r is None else r.on_task,
                    "paused_s": None if r is None else r.paused_s,
                }
            )

        def on_piece(
            text: str, n: int, asked=asked, pending=pending, last=last, t_start=t_start, ask=ask
        ) -> None:
            # as the Monitor does: one judgement at a time, again after 400 more characters
            if len(text) - last[0] >= 400 and not any(not t.done() for t in pending):
                last[0] = len(text)
                asked.append(time.perf_counter() - t_start)
                pending.add(asyncio.ensure_future(ask(text, asked[-1])))

        s = await prim.stream(a.tokens * 8, on_piece)
        end = time.perf_counter() - t_start
        await asyncio.gather(*pending)
        prim.judge = None
        await dw.close()
        res["during"][label] = {
            "share": share,
            "stream_s": end,
            "pieces": s["pieces"],
            "decode_tps": s["decode_tps"],
            "idle_decode_tps": idle_long["decode_tps"],
            "vs_idle": s["decode_tps"] / idle_long["decode_tps"]
            if s["decode_tps"] and idle_long["decode_tps"]
            else None,
            "asked": len(asked),
            "answered_during_stream": sum(
                1 for x in answers if x["answered_s"] <= end and x["on_task"] is not None
            ),
            "judge_s": spread(
                [x["answered_s"] - x["asked_s"] for x in answers if x["on_task"] is not None]
            ),
            "answers": answers,
        }
        print(
            "during",
            label,
            {k: v for k, v in res["during"][label].items() if k != "answers"},
            flush=True,
        )
    prim.judge = worker

    # kills mid-stream
    kills = []
    for i in range(a.kills):
        stop, counts = asyncio.Event(), {}
        busy = asyncio.ensure_future(busy_loop(worker, stop, counts))
        downs_before = len(worker.down_verdicts)
        killed: dict = {}

        def on_piece(text: str, n: int, killed=killed) -> None:
            if n == 48 and worker.pid:
                killed["pid"] = worker.pid
                killed["at"] = time.perf_counter()
                os.kill(worker.pid, signal.SIGKILL)

        stream_task = asyncio.ensure_future(prim.stream(a.tokens * 2, on_piece))
        back_s = None
        while "at" not in killed and not stream_task.done():
            await asyncio.sleep(0.001)
        while "at" in killed and time.perf_counter() - killed["at"] < 20:
            if worker.alive and worker.pid != killed["pid"]:
                back_s = time.perf_counter() - killed["at"]
                break
            await asyncio.sleep(0.005)
        s = await stream_task
        answered_after = await worker.judge(request(5000 + i), timeout_s=60)
        stop.set()
        await busy
        downs = [d.code for d in worker.down_verdicts[downs_before:]]
        kills.append(
            {
                "stream_pieces": s["pieces"],
                "stream_error": s["error"],
                "stream_finished": s["error"] is None and s["pieces"] > 48,
                "down_codes": downs,
                "back_s": back_s,
                "worker_last_restart_s": worker.last_restart_s,
                "answers_after_restart": answered_after is not None,
            }
        )
        print("kill", i, kills[-1], flush=True)
    res["kills"] = {
        "runs": kills,
        "streams_finished": sum(k["stream_finished"] for k in kills),
        "down_recorded": sum("E_SENTINEL_DOWN" in k["down_codes"] for k in kills),
        "back_s": spread([k["back_s"] for k in kills]),
        "goal_back_s": 2.0,
    }
    try:
        res["judge_devices_after_kills"] = judge_devices(a.judge_device, a.judge_llama_cpp)
    except Exception as exc:
        res["judge_devices_after_kills"] = {"error": str(exc)}
    await worker.close()
    await prim.pool.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--work", type=Path, default=Path("/tmp/hermes-vk"))
    ap.add_argument("--judge-llama-cpp", default=None, help="the judge's llama-cpp-python build")
    ap.add_argument("--judge-device", default="vulkan:0")
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--kills", type=int, default=5)
    ap.add_argument("--judgements", type=int, default=8)
    ap.add_argument(
        "--shares", default=f"1,0.1,{BUSY_SHARE_GPU},0.02", help="judge shares while streaming"
    )
    ap.add_argument("--only-doctor", action="store_true", help="hermes doctor and devices only")
    ap.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "vulkan_judge.json"
    )
    a = ap.parse_args()
    a.shares = [float(x) for x in a.shares.split(",")]
    a.default_share = BUSY_SHARE_GPU
    a.work.mkdir(parents=True, exist_ok=True)
    a.ngl = 0 if a.smoke else -1
    a.dev = "cpu" if a.smoke else "cuda:0"
    try:
        nvml = None if a.smoke else Nvml()
    except Exception as exc:
        print("no NVML:", exc)
        nvml = None
    res: dict = {
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "gpu": nvml.name() if nvml else None,
            "judge_device": a.judge_device,
            "judge_llama_cpp": a.judge_llama_cpp,
        }
    }
    t0 = time.time()
    if a.only_doctor:
        primary = gguf(a.work, "primary", TINY if a.smoke else PRIMARY)
        judge = gguf(a.work, "judge", TINY if a.smoke else JUDGE)
        res["judge_devices"] = judge_devices(a.judge_device, a.judge_llama_cpp)
        res["doctor"] = doctor(a, primary, judge)
        a.out.write_text(json.dumps(res, indent=2) + "\n")
        print(json.dumps(res, indent=1))
        return
    try:
        asyncio.run(run(a, res, nvml))
    except Exception as exc:
        import traceback

        traceback.print_exc()
        res["error"] = repr(exc)
    res["seconds"] = round(time.time() - t0, 1)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps({k: v for k, v in res.items() if k not in ("during",)}, indent=1)[:6000])


if __name__ == "__main__":
    main()
