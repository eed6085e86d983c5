"""``ReplayEngine``: plays back a recorded token stream as if a model produced it.

Used where a real model cannot be made to produce a specific output on demand (a JSON break
at a known character) and by the TUI benchmark (three streams at a fixed rate). Everything
after the engine is real: the pool's remote-engine door, the session, the sentinel checks and
the store. It is plugged in by giving the model a ``url`` so the pool treats it as a remote
endpoint, and putting the engine in the pool's remote-engine table.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator

from agents.engine import Engine, Message, SamplingParams

# A recorded architect answer whose JSON breaks at the "}}" (a stray brace closes nothing),
# then the corrected answer it gave after the sentinel's hidden correction request.
BROKEN_JSON = ['{"goal": ', '"ship it"', ', "steps": ', '["build", ', '"test"]', "}}", "\n"]
FIXED_JSON = ['{"goal": ', '"ship it"', ', "steps": ', '["build", ', '"test"]', "}"]


class ReplayEngine(Engine):
    """Yields the pieces of each recording in turn (the last one repeats), optionally paced."""

    def __init__(self, recordings: list[list[str]], *, tokens_per_s: float | None = None) -> None:
        self.name = "replay"
        self.recordings = recordings
        self.tokens_per_s = tokens_per_s
        self.calls = 0

    async def stream(
        self,
        messages: list[Message],
        params: SamplingParams,
        cancel: asyncio.Event | None = None,
    ) -> AsyncIterator[str]:
        recording = self.recordings[min(self.calls, len(self.recordings) - 1)]
        self.calls += 1
        delay = 1.0 / self.tokens_per_s if self.tokens_per_s else 0.0
        loop = asyncio.get_running_loop()
        start = loop.time()
        for i, piece in enumerate(recording[: params.max_tokens]):
            if cancel is not None and cancel.is_set():
                return
            # Paced by the clock, not per token: like a model thread, it does not slow down
            # when the event loop is busy, it catches up (several pieces at once).
            await asyncio.sleep(max(0.0, start + (i + 1) * delay - loop.time()))
            yield piece


def replay_config(config, model: str = "smollm2"):  # -> hermes_tui.config.Config
    """The config with ``model`` turned into a 'remote' model, so a ReplayEngine can serve it
    (eight streams at once, so parallel personas are not queued behind each other)."""
    spec = dataclasses.replace(
        config.models[model], url="http://replay.invalid/v1", path=None, max_concurrency=8
    )
    return dataclasses.replace(config, models={**config.models, model: spec})


def install(runtime, engine: ReplayEngine, model: str = "smollm2") -> None:
    """Serve ``model`` from ``engine`` in a started Runtime's pool."""
    runtime.pool.register_engine(model, engine)
