"""P6: display delay the sentinel adds to a streaming answer (goal: ≤ 5 ms).

A recorded answer (``tests/replay.py``'s ReplayEngine, paced like a fast model) streams through
the real pool and session twice: with no watcher, and with the real sentinel Monitor (all
checks, no judge). For each token we take the time from the engine yielding it to the session's
listener receiving it (the moment the UI would draw it). The sentinel's feed() is a
put_nowait, so the difference should be microseconds; checks run in their own task.

Run: ``PYTHONPATH=. python benchmarks/bench_sentinel_delay.py`` → results/sentinel_delay.json
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agents.events import TokenReceived  # noqa: E402
from agents.pool.pool import ModelPool  # noqa: E402
from agents.session import Session  # noqa: E402
from hermes_tui.config import load_config  # noqa: E402
from hermes_tui.runtime import contract_for  # noqa: E402
from sentinel.monitor import Monitor  # noqa: E402
from tests.replay import ReplayEngine, replay_config  # noqa: E402

TOKENS = 3000
RATE = 200.0  # tokens/s per stream, as in P7


class TimedReplay(ReplayEngine):
    """Records when each piece leaves the engine."""

    def __init__(self, pieces: list[str]) -> None:
        super().__init__([pieces], tokens_per_s=RATE)
        self.sent: list[float] = []

    async def stream(self, messages, params, cancel=None):
        async for piece in super().stream(messages, params, cancel):
            self.sent.append(time.perf_counter())
            yield piece


def answer() -> list[str]:
    words = (ROOT / "README.md").read_text().split()
    return [w + " " for w in (words * 20)[:TOKENS]]


async def run(with_sentinel: bool) -> list[float]:
    config = replay_config(load_config(ROOT / "config.toml"))
    pool = ModelPool(config.models, config.pool)
    engine = TimedReplay(answer())
    pool.register_engine("smollm2", engine)
    received: list[float] = []

    async def listen(event):
        if isinstance(event, TokenReceived):
            received.append(time.perf_counter())

    def watcher(persona, on_verdict):
        return Monitor(
            contract_for(persona, persona.system_prompt, None),
            config.sentinel,
            on_verdict=on_verdict,
        )

    personas = {
        name: p.__class__(**{**p.__dict__, "max_tokens": TOKENS, "contract": "text"})
        for name, p in config.personas.items()
    }
    session = Session(
        personas,
        pool,
        default_persona="coder",
        listener=listen,
        watcher_factory=watcher if with_sentinel else None,
    )
    await session.send("@coder go")
    return [(r - s) * 1000 for s, r in zip(engine.sent, received, strict=False)]


def pct(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))]


def main() -> None:
    base = asyncio.run(run(False))
    with_s = asyncio.run(run(True))
    result = {
        "benchmark": "P6 sentinel display delay",
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load": os.getloadavg(),
        },
        "tokens": TOKENS,
        "rate_tokens_per_s": RATE,
        "without_sentinel_ms": {
            "p50": statistics.median(base),
            "p95": pct(base, 0.95),
            "max": max(base),
        },
        "with_sentinel_ms": {
            "p50": statistics.median(with_s),
            "p95": pct(with_s, 0.95),
            "max": max(with_s),
        },
    }
    result["added_p95_ms"] = (
        result["with_sentinel_ms"]["p95"] - result["without_sentinel_ms"]["p95"]
    )
    result["goal_met"] = result["added_p95_ms"] <= 5.0
    out = ROOT / "benchmarks" / "results" / "sentinel_delay.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
