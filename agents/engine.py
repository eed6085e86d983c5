"""Engines: something that turns chat messages into a stream of text pieces.

``LocalEngine`` runs llama-cpp-python in a worker thread and hands each piece to the asyncio
loop with ``call_soon_threadsafe``, so the event loop never waits on llama.cpp.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agents.errors import HermesError

Message = dict[str, str]  # {"role": ..., "content": ...}

DONE = object()  # what a worker thread puts in its queue after the last piece


class EngineError(HermesError):
    """A model that failed to load or a generation that failed mid-stream."""

    code = "E_ENGINE"


class PromptTooLongError(EngineError):
    """A prompt (history, tools and all) longer than the model's context: the caller's to fix."""


SEED_RANDOM = 0xFFFFFFFF  # llama.cpp's LLAMA_DEFAULT_SEED: a seed drawn from the clock


@dataclass(frozen=True)
class SamplingParams:
    """``seed``: None draws one; any integer is a repeatable run (kept in llama.cpp's 32 bits
    without reaching ``SEED_RANDOM``: a seed of -1 or 2**32 - 1 used to wrap onto it and
    sample differently every time)."""

    max_tokens: int = 256
    temperature: float = 0.7
    seed: int | None = None
    stop: tuple[str, ...] = ()
    top_p: float = 0.95  # llama.cpp's default nucleus

    def __post_init__(self) -> None:
        if self.seed is not None and not 0 <= self.seed < SEED_RANDOM:
            object.__setattr__(self, "seed", self.seed % SEED_RANDOM)


class Engine(ABC):
    """A loaded (or loadable) model that can stream chat completions."""

    name: str

    @abstractmethod
    def stream(
        self,
        messages: list[Message],
        params: SamplingParams,
        cancel: asyncio.Event | None = None,
    ) -> AsyncIterator[str]:
        """Yield text pieces (about one token each) until done, cancelled or failed."""

    async def load(self) -> None:  # noqa: B027 - optional hook
        """Load weights now (engines load lazily on first use otherwise)."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release the model's memory."""


def quiet_llama(**kwargs: Any) -> Any:  # llama_cpp.Llama (imported lazily)
    """Create a ``llama_cpp.Llama`` with its C-level logging silenced.

    The weights are read into memory, not mapped (``use_mmap=False``): with a live mapping a
    GGUF truncated while hermes runs killed it with SIGBUS, and one overwritten in place
    silently turned every later answer into garbage. Read once, the loaded model is immune to
    what happens to the file; a later load of a broken file is the usual load error.
    """
    import llama_cpp

    kwargs.setdefault("use_mmap", False)
    return llama_cpp.Llama(verbose=False, **kwargs)


class LocalEngine(Engine):
    """llama-cpp-python in-process; one worker thread at a time per loaded model."""

    def __init__(
        self,
        name: str,
        path: Path,
        *,
        n_ctx: int = 2048,
        n_gpu_layers: int = 0,
        chat_format: str | None = None,
        tensor_split: list[float] | None = None,
        n_threads: int | None = None,
    ) -> None:
        self.name = name
        self.path = Path(path)
        self.n_ctx = n_ctx
        self.n_gpu_layers = n_gpu_layers
        self.chat_format = chat_format
        self.tensor_split = tensor_split
        self.n_threads = n_threads or max(1, (os.cpu_count() or 2))
        self._llama: Any = None
        self._lock = threading.Lock()  # llama.cpp contexts are not thread-safe
        self._load_lock = asyncio.Lock()

    @property
    def loaded(self) -> bool:
        return self._llama is not None

    @property
    def llama(self) -> Any:
        """The underlying ``llama_cpp.Llama`` (load first)."""
        if self._llama is None:
            raise EngineError(f"model {self.name!r} is not loaded")
        return self._llama

    def _load_sync(self) -> None:
        kwargs: dict[str, Any] = {
            "model_path": str(self.path),
            "n_ctx": self.n_ctx,
            "n_gpu_layers": self.n_gpu_layers,
            "n_threads": self.n_threads,
        }
        if self.chat_format:
            kwargs["chat_format"] = self.chat_format
        if self.tensor_split:
            kwargs["tensor_split"] = self.tensor_split
        try:
            self._llama = quiet_llama(**kwargs)
        except (ValueError, RuntimeError, OSError) as exc:
            raise EngineError(f"cannot load model {self.name!r} from {self.path}: {exc}") from exc

    async def load(self) -> None:
        async with self._load_lock:
            if self._llama is None:
                await asyncio.to_thread(self._load_sync)

    async def close(self) -> None:
        async with self._load_lock:
            llama, self._llama = self._llama, None
            if llama is not None:
                await asyncio.to_thread(self._close_sync, llama)

    def _close_sync(self, llama: Any) -> None:
        with self._lock:
            with contextlib.suppress(Exception):
                llama.close()

    def _generate(
        self,
        messages: list[Message],
        params: SamplingParams,
        emit: Any,
        stop_flag: threading.Event,
    ) -> None:
        """Worker-thread body: run the completion and emit each piece."""
        with self._lock:
            try:
                chunks = self.llama.create_chat_completion(
                    messages=messages,
                    max_tokens=params.max_tokens,
                    temperature=params.temperature,
                    top_p=params.top_p,
                    seed=params.seed,
                    stop=list(params.stop) or None,
                    stream=True,
                )
                for chunk in chunks:
                    if stop_flag.is_set():
                        chunks.close()
                        break
                    piece = chunk["choices"][0]["delta"].get("content")
                    if piece:
                        emit(piece)
            except Exception as exc:  # surfaced to the awaiting coroutine, never swallowed
                emit(EngineError(f"{self.name}: generation failed: {exc}"))
            finally:
                emit(DONE)

    async def stream(
        self,
        messages: list[Message],
        params: SamplingParams,
        cancel: asyncio.Event | None = None,
    ) -> AsyncIterator[str]:
        await self.load()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        stop_flag = threading.Event()

        def emit(item: Any) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        worker = loop.run_in_executor(None, self._generate, messages, params, emit, stop_flag)
        try:
            async for piece in relay(queue, cancel):
                yield piece
        finally:
            stop_flag.set()
            # The worker stops at its next token; wait so the model is free for the next turn.
            await asyncio.shield(worker)


async def relay(queue: asyncio.Queue[Any], cancel: asyncio.Event | None) -> AsyncIterator[Any]:
    """Yield what a worker thread puts in ``queue`` until it puts ``DONE``.

    An ``Exception`` put in the queue is raised here, in the consumer. Returns as soon as
    ``cancel`` is set, even with pieces still queued, so Esc stops the stream at once.
    """
    cancel_wait = asyncio.ensure_future(cancel.wait()) if cancel else None
    try:
        while True:
            if cancel is not None and cancel.is_set():
                return
            if not queue.empty():  # the common case under load: no task, no wait
                item = queue.get_nowait()
            else:
                get = asyncio.ensure_future(queue.get())
                waiters = {get} | ({cancel_wait} if cancel_wait else set())
                done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
                if get not in done:
                    get.cancel()
                    return
                item = get.result()
            if item is DONE:
                return
            if isinstance(item, Exception):
                raise item
            yield item
    finally:
        if cancel_wait:
            cancel_wait.cancel()
