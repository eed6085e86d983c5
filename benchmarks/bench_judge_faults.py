"""Issue #6 item 2: kill the judge worker mid-stream N times (default 10).

Each round streams a recorded answer (ReplayEngine, ~100 tokens/s) through the real pool,
session and sentinel monitor with the real judge process (the embedded model) asked every 60
characters. While the judge holds a request, its process is SIGKILLed. Counted per round: the
turn still finishes ("done"), an E_SENTINEL_DOWN verdict is recorded for that message, and the
time until the worker is alive again.

Run: ``python benchmarks/bench_judge_faults.py [--kills 10]`` → results/judge_faults.json
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import platform
import signal
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agents.events import VerdictRaised  # noqa: E402
from agents.pool.pool import ModelPool  # noqa: E402
from agents.session import Session  # noqa: E402
from hermes_tui.config import load_config  # noqa: E402
from hermes_tui.runtime import contract_for  # noqa: E402
from sentinel.judge import JudgeWorker  # noqa: E402
from sentinel.monitor import Monitor  # noqa: E402
from tests.replay import ReplayEngine, replay_config  # noqa: E402

ANSWER = [f"word{i} " for i in range(120)]


async def one_round(session: Session, judge: JudgeWorker, events: list) -> dict:
    events.clear()
    killed_at = None

    async def killer() -> None:
        nonlocal killed_at
        while judge.pending == 0 or not judge.alive:
            await asyncio.sleep(0.01)
        killed_at = time.monotonic()
        os.kill(judge.pid, signal.SIGKILL)

    task = asyncio.create_task(killer())
    [result] = await session.send("@coder write it")
    task.cancel()
    back_s = None
    if killed_at is not None:
        while not judge.alive and time.monotonic() - killed_at < 10:
            await asyncio.sleep(0.02)
        back_s = time.monotonic() - killed_at if judge.alive else None
    down = [
        e.verdict
        for e in events
        if isinstance(e, VerdictRaised) and e.verdict.code == "E_SENTINEL_DOWN"
    ]
    return {
        "killed": killed_at is not None,
        "turn_status": result.status,
        "text_complete": result.text == "".join(ANSWER),
        "sentinel_down_recorded": bool(down),
        "worker_back_s": back_s,
    }


async def run(kills: int) -> list[dict]:
    config = replay_config(load_config(ROOT / "config.toml"))
    settings = dataclasses.replace(config.sentinel, judge_every_chars=60)
    personas = {
        n: dataclasses.replace(p, contract="text", max_tokens=len(ANSWER))
        for n, p in config.personas.items()
    }
    judge = JudgeWorker(config.sentinel.judge_model_path, "cpu", n_ctx=1024)
    await judge.start()
    pool = ModelPool(config.models, config.pool)
    pool.register_engine("smollm2", ReplayEngine([ANSWER], tokens_per_s=100))
    events: list = []

    async def listen(event) -> None:
        events.append(event)

    def watcher(persona, on_verdict):
        return Monitor(
            contract_for(persona, persona.system_prompt, None),
            settings,
            on_verdict=on_verdict,
            judge=judge,
            instructions=persona.system_prompt,
        )

    session = Session(
        personas, pool, default_persona="coder", watcher_factory=watcher, listener=listen
    )
    rounds = []
    for _ in range(kills):
        rounds.append(await one_round(session, judge, events))
        while not judge.alive:
            await asyncio.sleep(0.05)
    await judge.close()
    await pool.close()
    return rounds


def summary(rounds: list[dict]) -> dict:
    backs = [r["worker_back_s"] for r in rounds if r["worker_back_s"] is not None]
    return {
        "kills": sum(r["killed"] for r in rounds),
        "turns_done": sum(r["turn_status"] == "done" and r["text_complete"] for r in rounds),
        "sentinel_down_recorded": sum(r["sentinel_down_recorded"] for r in rounds),
        "worker_back_max_s": max(backs) if backs else None,
        "worker_back_median_s": sorted(backs)[len(backs) // 2] if backs else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kills", type=int, default=10)
    a = ap.parse_args()
    rounds = asyncio.run(run(a.kills))
    result = {
        "benchmark": "judge worker SIGKILLed mid-stream",
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load": os.getloadavg(),
        },
        "summary": summary(rounds),
        "rounds": rounds,
    }
    out = ROOT / "benchmarks" / "results" / "judge_faults.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["summary"], indent=2))


if __name__ == "__main__":
    main()
