"""The model pool: the single door through which personas get tokens from models.

(Minimal pass-through: one engine per model, loaded lazily. The pool issue replaces the
inside with admission, time slicing, eviction and KV save/restore behind this interface.)
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from agents.engine import Engine, LocalEngine, Message, SamplingParams
from agents.specs import ModelSpec, PoolSpec


class PoolBusyError(Exception):
    """The admission queue is full: try again later (batch mode exits 3)."""


class NeverFitsError(Exception):
    """The request can never fit in the configured memory budget."""


class ModelPool:
    def __init__(self, models: dict[str, ModelSpec], spec: PoolSpec | None = None) -> None:
        self.models = models
        self.spec = spec or PoolSpec()
        self._engines: dict[str, Engine] = {}

    def engine(self, model: str) -> Engine:
        if model not in self._engines:
            spec = self.models[model]
            self._engines[model] = LocalEngine(
                spec.name,
                spec.path,
                n_ctx=spec.n_ctx,
                n_gpu_layers=spec.n_gpu_layers,
                chat_format=spec.chat_format,
            )
        return self._engines[model]

    async def generate(
        self,
        persona: str,
        model: str,
        messages: list[Message],
        params: SamplingParams,
        cancel: asyncio.Event | None = None,
        priority: str = "interactive",
    ) -> AsyncIterator[str]:
        """Stream a completion for ``persona`` on ``model`` (admission and scheduling inside)."""
        async for piece in self.engine(model).stream(messages, params, cancel):
            yield piece

    async def close(self) -> None:
        for engine in self._engines.values():
            await engine.close()
        self._engines.clear()
