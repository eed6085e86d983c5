"""The model pool: the single door through which personas get tokens from models.

Requests pass an admission queue (bounded; interactive before batch; fair between personas)
and a scheduler that keeps the loaded models within the device memory budgets, evicts idle
models least-recently-used first, runs the personas that share one model together (one KV
sequence each, batched decode) and saves/restores a persona's KV state when its sequence or
its model has to go, so that coming back does not mean re-reading the whole history. Remote
OpenAI-compatible endpoints bypass the memory scheduler (their memory is someone else's) and
pass a gate of their own instead (``remote_gate``): per server, at most ``max_concurrency``
streams at once and a bounded, fair queue for the rest, shown on the dashboard like local ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Any

from agents.engine import Engine, Message, SamplingParams, relay
from agents.pool.queue import AdmissionQueue, NeverFitsError, PoolBusyError, QueuedInfo, Request
from agents.pool.remote_gate import RemoteGate, SeatCancelled
from agents.pool.runner import Job, SeqRunner, TextStream
from agents.pool.scheduler import PoolEvent, Scheduler, slot_key
from agents.pool.state_cache import StateCache
from agents.specs import ModelSpec, PoolSpec

__all__ = [
    "DeviceUsage",
    "GenerationInfo",
    "ModelPool",
    "NeverFitsError",
    "PoolBusyError",
    "PoolEvent",
    "PoolSnapshot",
    "ResidentModel",
    "estimate_bytes",
]

EventListener = Callable[[PoolEvent], Awaitable[None]]


def can_offload() -> bool:
    """Whether this llama.cpp build offloads to a GPU (SeqRunner.load asks the same)."""
    import llama_cpp

    return bool(llama_cpp.llama_supports_gpu_offload())


def estimate_bytes(spec: ModelSpec, seqs: int = 1) -> int:
    """Bytes llama.cpp will allocate for ``spec`` with ``seqs`` KV sequences of n_ctx each."""
    return sum(placement_bytes(spec, seqs, ()).values())


def placement_bytes(spec: ModelSpec, seqs: int, devices: Collection[str]) -> dict[str, int]:
    """Bytes ``spec`` takes on each configured device (``estimate.py`` prices each one).

    GPU shares are named ``cuda:0, cuda:1, ...`` when ``tensor_split`` spreads the model over
    several cards, else ``spec.device``; what stays in host memory (CPU layers, token
    embeddings, the logits buffer) goes to ``cpu``. A part whose device is not configured is
    charged to ``spec.device``, so nothing goes unaccounted.
    """
    from agents.pool.estimate import estimate
    from agents.pool.gguf_info import read_gguf_info

    assert spec.path is not None
    info = read_gguf_info(spec.path)
    split = list(spec.tensor_split) or None
    n_gpus = len(split) if split else (1 if spec.n_gpu_layers != 0 else 0)
    if n_gpus > 1 and spec.device.startswith("cuda"):
        names = [f"cuda:{i}" for i in range(n_gpus)]
    else:
        names = [spec.device] * n_gpus
    # The context settings SeqRunner uses for an offloaded model (a larger ubatch, flash
    # attention) change the compute buffer: price what will be allocated.
    offload = spec.n_gpu_layers != 0 and can_offload()
    est = estimate(
        info,
        spec.n_ctx * max(1, seqs),
        spec.n_gpu_layers,
        split,
        gpu_names=names,
        n_batch=SeqRunner.GPU_N_BATCH if offload else 512,
        flash_attn=SeqRunner.GPU_FLASH_ATTN if offload else False,
    )
    out: dict[str, int] = {}
    for part in est.devices:
        device = part.name if part.name in devices else spec.device
        out[device] = out.get(device, 0) + part.total
    return {d: n for d, n in out.items() if n > 0} or {spec.device: 0}


def pool_budgets(spec: PoolSpec) -> dict[str, int]:
    """Each configured device's budget (no devices: the CPU, with the RAM available now)."""
    budgets = {d.name: d.memory_bytes for d in spec.devices}
    return budgets or {"cpu": available_ram()}


def never_fits(
    name: str, spec: ModelSpec, placement: dict[str, int], budgets: dict[str, int]
) -> str | None:
    """Why model ``name`` can never be loaded with ``placement`` (bytes per device, from
    ``placement_bytes``) under ``budgets``, or None. The pool refuses such a model with this
    text, and ``hermes doctor`` reports it before anything starts."""
    if spec.device not in budgets:
        return (
            f"model {name!r} is placed on device {spec.device!r}, which is not configured "
            f"(devices: {', '.join(budgets)})"
        )
    for device, need in placement.items():
        budget = budgets[device]
        if need > budget:
            return (
                f"model {name!r} needs about {_mib(need)} on device {device!r}, which has "
                f"a budget of {_mib(budget)}: it can never be loaded"
            )
    return None


def available_ram() -> int:
    """Memory available now (the default budget of the implicit "cpu" device)."""
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return 8 * 1024**3


@dataclass
class GenerationInfo:
    """What one ``generate`` call cost, filled in by the pool as it runs (an API's ``usage``)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    # what ended the answer: "stop" (end of text or a stop string, on the last allowed token
    # too) or "length" (max_tokens or the context ran out first)
    finish_reason: str = "stop"
    queue_wait_s: float | None = None  # admission to the first token
    first_token_s: float | None = None


class _StopSeen(TextStream):
    """The job's text stream, remembering whether a stop string ended the answer (the runner
    hears it from ``feed`` and ends the job as it does at max_tokens)."""

    hit = False

    def feed(self, data: bytes) -> tuple[str, bool]:
        out, stopped = super().feed(data)
        self.hit = self.hit or stopped
        return out, stopped


class _PoolJob(Job):
    """A ``Job`` that can say what ended it: the runner gives it a fresh ``TextStream`` when
    the prompt is prepared; it is taken as a ``_StopSeen`` with the same stop strings."""

    @property
    def text(self) -> TextStream | None:
        return self.__dict__.get("_text")

    @text.setter
    def text(self, stream: TextStream | None) -> None:
        if stream is not None and not isinstance(stream, _StopSeen):
            stream = _StopSeen(stream.stops)
        self.__dict__["_text"] = stream

    def finish_reason(self, n_ctx: int) -> str:
        """ "stop" when the model or a stop string ended the answer, even on its last allowed
        token (it used to say "length" then: a finished answer read as one cut off);
        "length" when max_tokens or the context ended it first."""
        if isinstance(self.text, _StopSeen) and self.text.hit:
            return "stop"
        total = len(self.prompt or ()) + len(self.generated)
        full = len(self.generated) >= self.params.max_tokens or total + 1 >= n_ctx
        return "length" if full else "stop"


@dataclass(frozen=True)
class DeviceUsage:
    name: str
    used_bytes: int
    budget_bytes: int
    peak_bytes: int


@dataclass(frozen=True)
class ResidentModel:
    name: str  # every model name sharing this loaded file, comma-separated
    device: str
    bytes: int
    state: str  # loading, ready, evicting
    running_persona: str | None  # personas generating now, comma-separated
    context_persona: str | None  # personas whose conversations are in the KV cache
    idle_s: float
    decode_tps: float | None


@dataclass(frozen=True)
class PoolSnapshot:
    """Everything the dashboard shows about the pool, as plain data."""

    devices: list[DeviceUsage]
    resident: list[ResidentModel]
    running: list[tuple[str, str]]  # (persona, model)
    queue: list[QueuedInfo]
    saved_states: list[tuple[str, str, int]]  # (model, persona, bytes)
    events: list[PoolEvent]
    cache: StateCacheInfo | None = None


@dataclass(frozen=True)
class StateCacheInfo:
    """The saved-KV-state cache in numbers (the dashboard's cache line)."""

    states: int
    memory_bytes: int
    budget_bytes: int | None  # None: bounded by the host device's budget only
    disk_states: int
    disk_bytes: int
    hits: int
    restores: int
    reprefills: int


class ModelPool:
    """See the module docstring. ``seqs_per_model``: personas that run at once on one loaded
    model (each has its own KV sequence of n_ctx tokens; memory grows with it).
    ``decode_mode``: "auto" (measure), "batched" or "interleaved" (see scheduler).
    """

    def __init__(
        self,
        models: dict[str, ModelSpec],
        spec: PoolSpec | None = None,
        *,
        seqs_per_model: int = 3,
        decode_mode: str = "auto",
        priorities: tuple[str, ...] | None = None,
    ) -> None:
        self.models = models
        self.spec = spec or PoolSpec()
        budgets = pool_budgets(self.spec)
        self.budgets = budgets
        self.events: deque[PoolEvent] = deque(maxlen=50)
        self._listeners: list[EventListener] = []
        self._listener_tasks: set[asyncio.Task[Any]] = set()
        self._activity: list[Callable[[bool], None]] = []
        self.streaming = 0  # local generations admitted and not finished
        self.queue = AdmissionQueue(self.spec.queue_size, *([priorities] if priorities else []))
        self.seqs = max(1, seqs_per_model)
        self.scheduler = Scheduler(
            budgets,
            self.queue,
            self.spec.slice_tokens,
            self._event,
            seqs=self.seqs,
            decode_mode=decode_mode,
            state_cache=StateCache(
                self.spec.state_cache_bytes,
                self.spec.state_cache_dir,
                self.spec.state_cache_disk_bytes,
            ),
        )
        self._estimates: dict[str, int] = {}
        self._placements: dict[str, dict[str, int]] = {}
        self._remote: dict[str, Engine] = {}
        self.remote = RemoteGate(self.spec.queue_size)
        self.scheduler.configure(models, self._estimates, self.placement)
        self.rejected = 0

    # -- events --------------------------------------------------------------------------
    def add_listener(self, listener: EventListener) -> None:
        """Call ``await listener(event)`` for every pool event (e.g. to persist them)."""
        self._listeners.append(listener)

    def add_activity_listener(self, listener: Callable[[bool], None]) -> None:
        """Call ``listener(True)`` when a local model starts serving a generation while none
        did, and ``listener(False)`` when the last one ends (on the event loop; e.g. the
        sentinel's judge then gives the device way, see sentinel.judge_yield)."""
        self._activity.append(listener)

    def _streaming(self, delta: int) -> None:
        before, self.streaming = self.streaming, self.streaming + delta
        if (before == 0) != (self.streaming == 0):
            for listener in self._activity:
                with contextlib.suppress(Exception):  # advisory: never breaks generation
                    listener(self.streaming > 0)

    def _event(self, kind: str, model: str = "", persona: str = "", detail: str = "") -> None:
        event = PoolEvent(time.time(), kind, model, persona, detail)
        self.events.append(event)
        for listener in self._listeners:
            with contextlib.suppress(RuntimeError):  # no running loop: keep the deque only
                task = asyncio.get_running_loop().create_task(_safe(listener(event)))
                self._listener_tasks.add(task)
                task.add_done_callback(self._listener_tasks.discard)

    # -- admission -----------------------------------------------------------------------
    def estimate(self, model: str) -> int:
        """Total bytes ``model`` takes when loaded (every device together)."""
        if model not in self._estimates:
            self._estimates[model] = sum(self.placement(model).values())
        return self._estimates[model]

    def placement(self, model: str) -> dict[str, int]:
        """Bytes ``model`` takes on each device when loaded (see ``placement_bytes``)."""
        if model not in self._placements:
            self._placements[model] = placement_bytes(self._spec(model), self.seqs, self.budgets)
        return self._placements[model]

    async def price(self, model: str) -> None:
        """Make ``placement(model)`` known without holding the event loop: the first one reads
        the model's GGUF header (1-3 s for the embedded model on a busy 2-core machine; it
        froze the chat's screen at its first message, and every client of ``hermes serve``).
        Callers await it before ``generate``, which admits (or refuses) in one loop turn; a
        model that cannot be priced fails there, as it always did."""
        spec = self.models.get(model)
        if spec is not None and not spec.remote and model not in self._placements:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.placement, model)

    def _spec(self, model: str) -> ModelSpec:
        try:
            return self.models[model]
        except KeyError:
            known = ", ".join(sorted(self.models)) or "none"
            raise KeyError(f"unknown model {model!r} (configured: {known})") from None

    def check_fits(self, model: str) -> None:
        """Raise ``NeverFitsError`` when ``model`` can never be loaded on its device."""
        spec = self._spec(model)
        placement = self.placement(model) if spec.device in self.budgets else {}
        why = never_fits(model, spec, placement, self.budgets)
        if why is not None:
            raise NeverFitsError(why)

    # -- generation ----------------------------------------------------------------------
    async def generate(
        self,
        persona: str,
        model: str,
        messages: list[Message],
        params: SamplingParams,
        cancel: asyncio.Event | None = None,
        priority: str = "interactive",
        *,
        client: str = "",
        info: GenerationInfo | None = None,
        tools: list[dict[str, Any]] | None = None,
        tool_choice: Any = None,
    ) -> AsyncIterator[str]:
        """Stream a completion for ``persona`` on ``model`` (admission and scheduling inside).

        Raises ``PoolBusyError`` at once when the queue is full and ``NeverFitsError`` when the
        model can never fit its device; both before any model is touched. ``client`` names who
        asks (fairness between clients); ``info``, when given, receives the token counts.
        """
        spec = self._spec(model)
        if spec.remote:
            # Remote servers get tools and tool messages as the client sent them; their
            # tool_calls come back as <tool_call> text that the gateway parses and checks.
            passed = {"tools": tools, "tool_choice": tool_choice or "auto"} if tools else None
            async for piece in self._generate_remote(
                persona, spec, messages, params, cancel, priority, client, info, passed
            ):
                yield piece
            return
        try:
            self.check_fits(model)
        except NeverFitsError as exc:
            self.rejected += 1
            self._event("reject", model, persona, str(exc))
            raise
        loop = asyncio.get_running_loop()
        job = _PoolJob(persona, model, slot_key(spec), list(messages), params, loop)
        job.tools, job.tool_choice = tools, tool_choice
        job.request = Request(
            persona, model, priority, params.max_tokens, payload=job, client=client
        )
        try:
            self.queue.admit(job.request)
        except PoolBusyError as exc:
            self.rejected += 1
            self._event("reject", model, persona, str(exc))
            raise
        self._event("admit", model, persona, f"{priority}; {len(self.queue)} waiting")
        driver = loop.create_task(self.scheduler.run_job(job))
        self._streaming(+1)
        try:
            async for piece in relay(job.out, cancel):
                yield piece
        finally:
            self.scheduler.withdraw(job)
            # Wait for the worker to stop at its next token so the model is free again.
            try:
                await asyncio.shield(driver)
            finally:
                self._streaming(-1)
            if info is not None:
                info.prompt_tokens = len(job.prompt or ())
                info.completion_tokens = len(job.generated)
                info.first_token_s = job.first_token_s
                info.finish_reason = job.finish_reason(self._spec(model).n_ctx)

    async def _generate_remote(
        self,
        persona: str,
        spec: ModelSpec,
        messages: list[Message],
        params: SamplingParams,
        cancel: asyncio.Event | None,
        priority: str,
        client: str = "",
        info: GenerationInfo | None = None,
        tools: dict[str, Any] | None = None,
    ) -> AsyncIterator[str]:
        """Stream from a remote endpoint once the gate gives this request one of its seats."""
        assert spec.url is not None
        req = Request(persona, spec.name, priority, params.max_tokens, client=client)
        ep = self.remote.endpoint(spec.url, spec.max_concurrency)
        if len(ep.running) >= ep.capacity or len(ep.queue):
            detail = f"{priority}; waiting for {ep.url} ({len(ep.running)}/{ep.capacity} busy)"
            self._event("wait", spec.name, persona, detail)
        try:
            async with self.remote.seat(spec.url, spec.max_concurrency, req, cancel) as ep:
                self._event("admit", spec.name, persona, f"{priority}; remote {ep.url}")
                t0, n = time.monotonic(), 0
                engine = self._remote_engine(spec)
                kw: dict[str, Any] = {"tools": tools} if tools else {}
                outcome: dict[str, Any] = {}
                if getattr(engine, "reports_finish", False):
                    kw["outcome"] = outcome
                async for piece in engine.stream(messages, params, cancel, **kw):
                    n += 1
                    if info is not None:
                        info.completion_tokens = n  # pieces: about one token each
                        if info.first_token_s is None:
                            info.first_token_s = time.monotonic() - t0
                    yield piece
                self.remote.record_speed(ep, n, time.monotonic() - t0)
                reason = outcome.get("finish_reason")
                # The server's word; pieces are counted only when it says nothing (a piece
                # may hold several tokens: a CJK character, an emoji).
                if info is not None and (
                    reason == "length" or not reason and n >= params.max_tokens
                ):
                    info.finish_reason = "length"
        except PoolBusyError as exc:
            self.rejected += 1
            self._event("reject", spec.name, persona, str(exc))
            raise
        except SeatCancelled:
            return  # cancelled in the queue: the turn ends with nothing streamed

    def register_engine(self, model: str, engine: Engine) -> None:
        """Serve ``model`` (a config entry with a ``url``) from ``engine`` instead of an HTTP
        client: an engine the caller built, such as a recording played back in tests."""
        self._remote[model] = engine

    def _remote_engine(self, spec: ModelSpec) -> Engine:
        if spec.name not in self._remote:
            from agents.remote import RemoteEngine

            self._remote[spec.name] = RemoteEngine.from_spec(spec)
        return self._remote[spec.name]

    async def prefetch(self, model: str) -> bool:
        """Start loading ``model`` now if it fits in free memory (the next persona's turn).

        Returns True when the model is resident or loading. Never evicts anything.
        """
        spec = self.models.get(model)
        if spec is None or spec.remote:
            return False
        try:
            self.check_fits(model)
        except NeverFitsError:
            return False
        started = await self.scheduler.prefetch(slot_key(spec), spec, self.placement(model))
        return started

    async def evict(self, model: str) -> bool:
        """Unload ``model`` if it is resident and idle (e.g. to free memory by hand)."""
        spec = self.models.get(model)
        if spec is None or spec.remote:
            return False
        return await self.scheduler.evict(slot_key(spec))

    # -- reporting -----------------------------------------------------------------------
    def snapshot(self) -> PoolSnapshot:
        sch = self.scheduler
        now = sch.snapshot()
        devices = [
            DeviceUsage(name, now.used.get(name, 0), budget, now.peak.get(name, 0))
            for name, budget in self.budgets.items()
        ]
        resident = [
            ResidentModel(
                name=", ".join(s.models),
                device=s.device,
                bytes=s.bytes,
                state=s.state,
                running_persona=", ".join(p for p, _ in s.running) or None,
                context_persona=", ".join(s.context_personas) or None,
                idle_s=s.idle_s,
                decode_tps=s.decode_tps,
            )
            for s in now.slots
        ]
        running = [job for s in now.slots for job in s.running]
        running += self.remote.running()
        queue = self.queue.estimates(
            lambda r: r.payload.remaining_tokens / sch.decode_tps(r.payload.key),
            sch.busy_seconds,
            lambda r: self.models[r.model].device,
        )
        queue += self.remote.waiting()
        states = [
            (e.model, e.label + (" (disk)" if e.on_disk else ""), e.nbytes) for e in now.states
        ]
        info = StateCacheInfo(
            states=len(now.states),
            memory_bytes=now.states_memory_bytes,
            budget_bytes=now.states_budget_bytes,
            disk_states=sum(1 for e in now.states if e.on_disk),
            disk_bytes=now.states_disk_bytes,
            hits=now.state_hits,
            restores=now.restores,
            reprefills=now.reprefills,
        )
        return PoolSnapshot(devices, resident, running, queue, states, list(self.events), info)

    async def close(self) -> None:
        await self.scheduler.close()
        for engine in self._remote.values():
            await engine.close()
        self._remote.clear()
        for task in list(self._listener_tasks):
            with contextlib.suppress(BaseException):
                await task


async def _safe(awaitable: Awaitable[None]) -> None:
    """A failing event listener must never break generation."""
    with contextlib.suppress(Exception):
        await awaitable


def _mib(n: int) -> str:
    return f"{n / 1024**2:.1f} MiB"
