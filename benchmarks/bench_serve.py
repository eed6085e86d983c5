"""Benchmark ``hermes serve`` (issue #14): overhead, sharing, overload.

S1  one model streaming through ``hermes serve`` (the official openai SDK over the Unix socket)
    vs the in-process pool (``ModelPool.generate``) on the same model, prompt and greedy
    sampling, in paired runs (in-process, server, in-process, server...). tokens/s from the call
    to the last token, and time to first token. The prompt is the same conversation asked
    again, so both paths reuse its KV prefix and the first token is one decode step plus the
    path's own overhead: "added TTFT" is what the server adds.
S2  three clients asking at once (three SDK streams, prompts of three lengths, each opened with
    a fresh nonce so nothing is cached): tokens per client in the window where all three
    stream (max/min), and the last client's time to first token vs the sum of the three
    prompts' prefill times (each prompt's time to first token alone, measured just before).
S3  100 concurrent API requests (random arrivals within 0.3 s, ten clients) over four tiny
    synthetic models with a budget that holds two of them and a queue of 16: crashes (5xx,
    broken streams, a dead server), 429s, the accounted memory sampled every 50 ms and the
    server's own peak vs the budget, time to first token p50/p95 of answered requests (queue
    wait + prefill, seen by the client).

Usage: PYTHONPATH=. python benchmarks/bench_serve.py [--pairs N] [--max-tokens N]
Writes benchmarks/results/serve.json (name the machine: it is recorded with the figures).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx2
import llama_cpp
import openai

from agents.engine import SamplingParams
from agents.pool.pool import GenerationInfo, ModelPool
from hermes_tui.config import load_config

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "serve.json"
S1_PROMPT = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Explain what a Python generator is, with an example."},
]
S2_QUESTIONS = [  # three prompt lengths; each asks for a long answer (no early end of text)
    "Write a long poem about colours.",
    "Explain in detail how a hash map works, how collisions are resolved, and why resizing "
    "matters for performance in a long-running program.",
    "Describe the layers of a web application: the browser, the network, the web server, the "
    "application code, the database, caches and queues, and what can fail in each of them, "
    "and how a team would monitor all of that in production.",
]


class Server:
    """A ``hermes serve`` subprocess with its own runtime dir, config dir and database."""

    def __init__(self, config: Path, *args: str) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="bs-"))
        self.socket = self.home / "run" / "hermes-tui" / "serve.sock"
        env = dict(os.environ)
        env.update(
            PYTHONPATH=str(ROOT),
            XDG_RUNTIME_DIR=str(self.home / "run"),
            XDG_CONFIG_HOME=str(self.home / "config"),
            XDG_DATA_HOME=str(self.home / "data"),
        )
        self.log = self.home / "serve.log"
        cmd = [sys.executable, "-m", "hermes_tui.server", "--config", str(config)]
        cmd += ["--db", str(self.home / "serve.db"), "--no-judge", *args]
        self.proc = subprocess.Popen(
            cmd, env=env, stdout=open(self.log, "wb"), stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 120
        while "listening on" not in self.log.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"hermes serve did not start: {self.log.read_text()}")
            time.sleep(0.05)

    def http(self, timeout: float = 300) -> httpx2.AsyncClient:
        return httpx2.AsyncClient(
            transport=httpx2.AsyncHTTPTransport(uds=str(self.socket)),
            base_url="http://hermes",
            timeout=timeout,
        )

    def sdk(self) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(
            base_url="http://hermes/v1", api_key="-", http_client=self.http(), max_retries=0
        )

    def stop(self) -> int:
        self.proc.terminate()
        return self.proc.wait(60)


def summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


async def sdk_stream(
    sdk: openai.AsyncOpenAI, model: str, messages, max_tokens: int, name: str = "bench"
):
    """(t_call, [token times], completion_tokens) of one streamed completion."""
    t0 = time.perf_counter()
    stamps: list[float] = []
    used = 0
    stream = await sdk.chat.completions.create(
        model=model,
        messages=messages,
        max_tokens=max_tokens,
        temperature=0.0,
        stream=True,
        stream_options={"include_usage": True},
        extra_headers={"user-agent": f"{name}/1"},
    )
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            stamps.append(time.perf_counter())
        if chunk.usage is not None:
            used = chunk.usage.completion_tokens
    return t0, stamps, used


async def pool_stream(pool: ModelPool, model: str, messages, max_tokens: int):
    info = GenerationInfo()
    t0 = time.perf_counter()
    stamps: list[float] = []
    params = SamplingParams(max_tokens=max_tokens, temperature=0.0)
    async for _ in pool.generate("bench", model, messages, params, info=info, client="bench"):
        stamps.append(time.perf_counter())
    return t0, stamps, info.completion_tokens


def rates(t0: float, stamps: list[float], tokens: int) -> dict:
    return {
        "tokens": tokens,
        "ttft_s": stamps[0] - t0,
        "tok_per_s": tokens / (stamps[-1] - t0),
        "decode_tok_per_s": (tokens - 1) / (stamps[-1] - stamps[0]) if tokens > 1 else 0.0,
    }


async def s1(config_path: Path, server: Server, pairs: int, max_tokens: int) -> dict:
    config = load_config(config_path)
    model = next(iter(config.models))
    pool = ModelPool(
        config.models,
        config.pool,
        seqs_per_model=config.pool.seqs_per_model,
        decode_mode=config.pool.decode_mode,
    )
    sdk = server.sdk()
    await pool_stream(pool, model, S1_PROMPT, max_tokens)  # loads, caches the prompt
    await sdk_stream(sdk, model, S1_PROMPT, max_tokens)
    runs = []
    for _ in range(pairs):
        local = rates(*await pool_stream(pool, model, S1_PROMPT, max_tokens))
        served = rates(*await sdk_stream(sdk, model, S1_PROMPT, max_tokens))
        runs.append({"in_process": local, "server": served})
    await pool.close()
    ratio = [r["server"]["tok_per_s"] / r["in_process"]["tok_per_s"] for r in runs]
    decode = [r["server"]["decode_tok_per_s"] / r["in_process"]["decode_tok_per_s"] for r in runs]
    added = [(r["server"]["ttft_s"] - r["in_process"]["ttft_s"]) * 1e3 for r in runs]
    return {
        "model": model,
        "max_tokens": max_tokens,
        "pairs": runs,
        "tok_per_s_ratio_server_over_in_process": summary(ratio),
        "decode_tok_per_s_ratio": summary(decode),
        "added_ttft_ms": summary(added),
        "goal": "tok/s ratio >= 0.97, added TTFT p50 <= 5 ms",
        "met": statistics.median(ratio) >= 0.97 and statistics.median(added) <= 5.0,
    }


def fresh(question: str) -> list[dict[str, str]]:
    """A conversation no cache holds (the nonce comes first)."""
    nonce = secrets.token_hex(4)
    return [
        {"role": "system", "content": f"Session {nonce}. You are a helpful assistant."},
        {"role": "user", "content": question},
    ]


async def s2(config_path: Path, server: Server, rounds: int, max_tokens: int) -> dict:
    model = next(iter(load_config(config_path).models))
    sdk = server.sdk()
    await sdk_stream(sdk, model, fresh("hi"), 4)
    out = []
    for r in range(rounds):
        solo = []
        for i, q in enumerate(S2_QUESTIONS):
            t0, stamps, _ = await sdk_stream(sdk, model, fresh(q), 1, name=f"solo{r}{i}")
            solo.append(stamps[0] - t0)
        results = await asyncio.gather(
            *(
                sdk_stream(sdk, model, fresh(q), max_tokens, name=f"client{r}{i}")
                for i, q in enumerate(S2_QUESTIONS)
            )
        )
        start = max(stamps[0] for _, stamps, _ in results)
        end = min(stamps[-1] for _, stamps, _ in results)
        window = [sum(1 for t in stamps if start <= t <= end) for _, stamps, _ in results]
        ttfts = [stamps[0] - t0 for t0, stamps, _ in results]
        out.append(
            {
                "solo_prefill_s": solo,
                "together_ttft_s": ttfts,
                "tokens_in_shared_window": window,
                "window_s": end - start,
                "fairness_max_over_min": max(window) / max(1, min(window)),
                "last_ttft_over_sum_prefill": max(ttfts) / sum(solo),
            }
        )
    fair = [o["fairness_max_over_min"] for o in out]
    last = [o["last_ttft_over_sum_prefill"] for o in out]
    return {
        "rounds": out,
        "fairness_max_over_min": summary(fair),
        "last_ttft_over_sum_of_prefills": summary(last),
        "goal": "fairness <= 1.2, last client's TTFT <= 1.1 x the sum of the prefills",
        "met": statistics.median(fair) <= 1.2 and statistics.median(last) <= 1.1,
    }


def s3_config(tmp: Path) -> tuple[Path, int, int]:
    sys.path.insert(0, str(ROOT))
    from agents.specs import DeviceSpec, ModelSpec, PoolSpec
    from tests.gguf_factory import write_llama_gguf

    paths = {f"s{i}": write_llama_gguf(tmp / f"s{i}.gguf", n_embd=64, seed=i) for i in range(4)}
    models = {k: ModelSpec(k, p, n_ctx=256) for k, p in paths.items()}
    est = ModelPool(models, PoolSpec(devices=(DeviceSpec("cpu", 1 << 40),))).estimate("s0")
    budget = int(est * 2.5)
    text = 'default_persona = "p"\n'
    for k, p in paths.items():
        text += f'[models.{k}]\npath = "{p}"\nn_ctx = 256\n'
    text += '[personas.p]\nmodel = "s0"\nsystem_prompt = "You answer."\n'
    text += "[pool]\nqueue_size = 16\nslice_tokens = 8\n"
    text += f'[[pool.devices]]\nname = "cpu"\nmemory = "{budget}B"\n'
    text += '[sentinel]\nmodel = ""\n'
    path = tmp / "s3.toml"
    path.write_text(text)
    return path, budget, est


async def s3(n_requests: int = 100) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="bench-serve-s3-"))
    config, budget, est = s3_config(tmp)
    server = Server(config)
    rng = random.Random(7)
    ttfts: list[float] = []
    outcomes: dict[str, int] = {}
    samples: list[int] = []
    stop = asyncio.Event()

    async def sample() -> None:
        async with server.http(30) as http:
            while not stop.is_set():
                try:
                    snap = (await http.get("/hermes/pool")).json()
                    samples.append(max(d["used_bytes"] for d in snap["devices"]))
                except httpx2.HTTPError:
                    pass
                await asyncio.sleep(0.05)

    async def one(i: int) -> None:
        await asyncio.sleep(rng.uniform(0, 0.3))
        body = {
            "model": f"s{rng.randrange(4)}",
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 48,
            "temperature": 0.7,
            "seed": 1,
            "stream": True,
        }
        t0 = time.perf_counter()
        kind = "crash"
        try:
            async with server.http() as http:
                headers = {"user-agent": f"c{i % 10}/1"}
                async with http.stream(
                    "POST", "/v1/chat/completions", json=body, headers=headers
                ) as resp:
                    if resp.status_code == 429:
                        kind = "429"
                    elif resp.status_code == 200:
                        first, done = True, False
                        async for event in httpx2.EventSource(resp):
                            if event.data == "[DONE]":
                                done = True
                                break
                            data = json.loads(event.data)
                            if "error" in data:
                                break
                            if (
                                first
                                and data["choices"]
                                and data["choices"][0]["delta"].get("content")
                            ):
                                ttfts.append(time.perf_counter() - t0)
                                first = False
                        kind = "answered" if done and "error" not in data else "crash"
                    else:
                        kind = f"http_{resp.status_code}"
        except httpx2.HTTPError:
            kind = "crash"
        outcomes[kind] = outcomes.get(kind, 0) + 1

    sampler = asyncio.ensure_future(sample())
    t0 = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n_requests)))
    wall = time.perf_counter() - t0
    stop.set()
    await sampler
    async with server.http(30) as http:
        snap = (await http.get("/hermes/pool")).json()
    alive = server.proc.poll() is None
    server.stop()
    ttfts.sort()
    peak = max(d["peak_bytes"] for d in snap["devices"])
    return {
        "requests": n_requests,
        "outcomes": outcomes,
        "crashes": outcomes.get("crash", 0)
        + sum(v for k, v in outcomes.items() if k.startswith("http_5")),
        "server_alive_after": alive,
        "budget_bytes": budget,
        "model_estimate_bytes": est,
        "max_sampled_used_bytes": max(samples) if samples else None,
        "samples": len(samples),
        "server_peak_accounted_bytes": peak,
        "peak_over_budget": peak / budget,
        "ttft_p50_s": statistics.median(ttfts) if ttfts else None,
        "ttft_p95_s": ttfts[int(0.95 * (len(ttfts) - 1))] if ttfts else None,
        "wall_s": wall,
        "loads": sum(1 for e in snap["events"] if e["kind"] == "load"),
    }


def machine(name: str) -> dict:
    return {
        "name": name,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "llama_cpp_python": llama_cpp.__version__,
        "loadavg_before": os.getloadavg(),
    }


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--machine", default="the project's 2-core CPU VM (shared with other agents)")
    ap.add_argument("--only", choices=["s1", "s2", "s3"], default=None)
    args = ap.parse_args()
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() and args.only else {}
    results["machine"] = machine(args.machine)
    tmp = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    config = tmp / "config.toml"
    text = (
        (ROOT / "config.toml")
        .read_text()
        .replace('model = "smollm2"\nmax_corrections', 'model = ""\nmax_corrections')
    )
    config.write_text(text)
    if args.only in (None, "s1", "s2"):
        server = Server(config)
        try:
            if args.only in (None, "s1"):
                results["S1"] = await s1(config, server, args.pairs, args.max_tokens)
                print("S1", json.dumps({k: v for k, v in results["S1"].items() if k != "pairs"}))
            if args.only in (None, "s2"):
                results["S2"] = await s2(config, server, args.rounds, args.max_tokens)
                print("S2", json.dumps({k: v for k, v in results["S2"].items() if k != "rounds"}))
        finally:
            server.stop()
    if args.only in (None, "s3"):
        results["S3"] = await s3()
        print("S3", json.dumps(results["S3"]))
    results["machine"]["loadavg_after"] = os.getloadavg()
    for section in ("S1", "S2", "S3"):  # each section names the machine it was measured on
        if section in results and (args.only is None or args.only == section.lower()):
            results[section]["machine"] = results["machine"]
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
