"""Time-sliced scheduling of local llama.cpp models under a memory budget.

Why this shape:

* One ``Slot`` per loaded GGUF. Personas that use the same file share it (the key is the file
  plus the load settings), so three personas on one model never mean three copies.
* Every llama.cpp call of a slot runs on that slot's own single worker thread: llama contexts
  are not thread-safe, and a one-thread executor serialises them without locks.
* Generation is driven token by token (``Llama.eval`` + ``Llama.sample``) with the prompt
  formatted by the model's own chat formatter, so a generation can stop after a slice of
  ``slice_tokens`` tokens when another persona waits, and continue later exactly where it was:
  the context holds prompt + generated tokens, and resuming re-evaluates only the tokens that
  are not in the KV cache (the longest common prefix is kept).
* When a persona's context has to leave the model (another persona takes it, or the model is
  evicted) its KV state is saved (``Llama.save_state``) into host memory, if the budget has
  room, and restored on its next turn when the measured restore cost beats re-prefilling.
* Memory is accounted before anything is allocated: a load reserves the model's estimate, a
  state save reserves its size, and nothing is loaded while used + estimate > budget. Idle
  models are evicted least-recently-used first; busy ones are asked to yield at their slice end.
"""

from __future__ import annotations

import asyncio
import codecs
import concurrent.futures
import contextlib
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agents.engine import EngineError, Message, SamplingParams
from agents.pool.queue import AdmissionQueue, Request
from agents.specs import ModelSpec

MIN_STATE_TOKENS = 16  # contexts shorter than this are cheaper to re-prefill than to save
_DONE = object()


@dataclass(frozen=True)
class PoolEvent:
    """Something the pool did, for the dashboard and the store's pool_events table."""

    ts: float  # wall-clock (time.time())
    kind: str  # load, evict, save_state, restore_state, drop_state, admit, reject, error
    model: str = ""
    persona: str = ""
    detail: str = ""


EventSink = Callable[[str, str, str, str], None]


def slot_key(spec: ModelSpec) -> str:
    """Models that load the same file with the same settings share one slot."""
    assert spec.path is not None
    path = str(Path(spec.path).resolve())
    split = ",".join(f"{x:g}" for x in spec.tensor_split)
    return f"{path}|ctx={spec.n_ctx}|ngl={spec.n_gpu_layers}|fmt={spec.chat_format}|ts={split}"


class ModelStats:
    """Exponential moving averages of measured speeds of one model (for decisions and ETAs)."""

    def __init__(self) -> None:
        self.prefill_tps: float | None = None
        self.decode_tps: float | None = None
        self.restore_bps: float | None = None
        self.save_bps: float | None = None
        self.load_s: float | None = None

    @staticmethod
    def _ema(old: float | None, new: float, alpha: float = 0.3) -> float:
        return new if old is None else (1 - alpha) * old + alpha * new

    def add_prefill(self, tokens: int, seconds: float) -> None:
        if tokens >= 8 and seconds > 0:
            self.prefill_tps = self._ema(self.prefill_tps, tokens / seconds)

    def add_decode(self, tokens: int, seconds: float) -> None:
        if tokens >= 4 and seconds > 0:
            self.decode_tps = self._ema(self.decode_tps, tokens / seconds)

    def add_restore(self, nbytes: int, seconds: float) -> None:
        if seconds > 0:
            self.restore_bps = self._ema(self.restore_bps, nbytes / seconds)

    def add_save(self, nbytes: int, seconds: float) -> None:
        if seconds > 0:
            self.save_bps = self._ema(self.save_bps, nbytes / seconds)


class TextStream:
    """Bytes of tokens in, text out: incremental UTF-8 and stop strings held back until sure."""

    def __init__(self, stops: list[str]) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""
        self.stops = [s for s in stops if s]

    def feed(self, data: bytes) -> tuple[str, bool]:
        """Return (text safe to emit, whether a stop string was reached)."""
        self._pending += self._decoder.decode(data)
        hits = [i for i in (self._pending.find(s) for s in self.stops) if i >= 0]
        if hits:
            out, self._pending = self._pending[: min(hits)], ""
            return out, True
        hold = 0
        for stop in self.stops:
            for k in range(min(len(stop) - 1, len(self._pending)), 0, -1):
                if self._pending.endswith(stop[:k]):
                    hold = max(hold, k)
                    break
        cut = len(self._pending) - hold
        out, self._pending = self._pending[:cut], self._pending[cut:]
        return out, False

    def flush(self) -> str:
        out = self._pending + self._decoder.decode(b"", final=True)
        self._pending = ""
        return out


@dataclass(eq=False)
class Job:
    """One ``generate`` call travelling through the pool (async side and worker thread)."""

    persona: str
    model: str
    key: str
    messages: list[Message]
    params: SamplingParams
    loop: asyncio.AbstractEventLoop
    out: asyncio.Queue = field(default_factory=asyncio.Queue)
    cancel: threading.Event = field(default_factory=threading.Event)
    request: Request | None = None
    granted: asyncio.Future | None = None
    prompt: list[int] | None = None
    stop_ids: frozenset[int] = frozenset()
    text: TextStream | None = None
    generated: list[int] = field(default_factory=list)
    done: bool = False
    slices: int = 0
    prefilled: int = 0  # prompt tokens evaluated (not reused from the KV cache) over all slices
    first_token_s: float | None = None  # seconds from admission to the first token
    created: float = field(default_factory=time.perf_counter)

    def emit(self, item: Any) -> None:
        """Thread-safe hand-off of a piece (or an exception / _DONE) to the consumer."""
        self.loop.call_soon_threadsafe(self.out.put_nowait, item)

    @property
    def remaining_tokens(self) -> int:
        return max(0, self.params.max_tokens - len(self.generated))


@dataclass
class SavedState:
    tokens: list[int]
    state: Any  # llama_cpp.LlamaState
    nbytes: int


def _find_chat_formatter(llama: Any) -> Any:
    """The ChatFormatter behind the model's chat handler, or None (then no time slicing).

    llama-cpp-python keeps only handler closures; the formatter that turns messages into a
    prompt string is the closure's ``chat_formatter`` cell (both for GGUF Jinja templates and
    for registered formats such as chatml / llama-2).
    """
    from llama_cpp import llama_chat_format

    handler = llama.chat_handler or llama._chat_handlers.get(llama.chat_format)
    if handler is None:
        with contextlib.suppress(Exception):
            handler = llama_chat_format.get_chat_completion_handler(llama.chat_format)
    code = getattr(handler, "__code__", None)
    if code is None or "chat_formatter" not in code.co_freevars or not handler.__closure__:
        return None
    return handler.__closure__[code.co_freevars.index("chat_formatter")].cell_contents


class LlamaRunner:
    """Thread-side wrapper of one ``llama_cpp.Llama``; only ever called on the slot's thread."""

    def __init__(self, spec: ModelSpec, stats: ModelStats, n_threads: int | None = None) -> None:
        self.spec = spec
        self.stats = stats
        self.n_threads = n_threads
        self.llama: Any = None
        self.formatter: Any = None

    def load(self) -> None:
        from agents.engine import _quiet_llama

        kwargs: dict[str, Any] = {
            "model_path": str(self.spec.path),
            "n_ctx": self.spec.n_ctx,
            "n_gpu_layers": self.spec.n_gpu_layers,
        }
        if self.n_threads:
            kwargs["n_threads"] = self.n_threads
        if self.spec.chat_format:
            kwargs["chat_format"] = self.spec.chat_format
        if self.spec.tensor_split:
            kwargs["tensor_split"] = list(self.spec.tensor_split)
        t0 = time.perf_counter()
        try:
            self.llama = _quiet_llama(**kwargs)
        except (ValueError, RuntimeError, OSError) as exc:
            raise EngineError(f"cannot load model {self.spec.name!r}: {exc}") from exc
        self.stats.load_s = time.perf_counter() - t0
        self.formatter = _find_chat_formatter(self.llama)

    def close(self) -> None:
        llama, self.llama = self.llama, None
        if llama is not None:
            with contextlib.suppress(Exception):
                llama.close()

    # -- prompts -------------------------------------------------------------------------
    def prepare(self, job: Job) -> None:
        """Format and tokenize the job's messages (once per job)."""
        if self.formatter is None:
            raise EngineError(f"{self.spec.name}: no chat formatter for time slicing")
        result = self.formatter(messages=job.messages)
        job.prompt = self.llama.tokenize(
            result.prompt.encode("utf-8"), add_bos=not result.added_special, special=True
        )
        stops = result.stop if isinstance(result.stop, list) else [result.stop]
        job.text = TextStream([s for s in stops if s] + list(job.params.stop))
        job.stop_ids = frozenset(getattr(self.formatter, "stop_token_ids", None) or ())

    def context_tokens(self) -> list[int]:
        return self.llama.input_ids[: self.llama.n_tokens].tolist()

    # -- KV state ------------------------------------------------------------------------
    def state_size(self) -> int:
        import llama_cpp

        return int(llama_cpp.llama_state_get_size(self.llama._ctx.ctx))

    def save(self) -> SavedState:
        t0 = time.perf_counter()
        state = self.llama.save_state()
        self.stats.add_save(state.llama_state_size, time.perf_counter() - t0)
        return SavedState(self.context_tokens(), state, int(state.llama_state_size))

    def restore(self, saved: SavedState) -> None:
        t0 = time.perf_counter()
        self.llama.load_state(saved.state)
        self.stats.add_restore(saved.nbytes, time.perf_counter() - t0)

    # -- generation ----------------------------------------------------------------------
    def run(self, job: Job, slice_tokens: int, should_pause: Callable[[], bool]) -> bool:
        """Generate until done (True) or until the slice ends while someone waits (False)."""
        import llama_cpp

        llama = self.llama
        assert job.prompt is not None and job.text is not None
        tokens = job.prompt + job.generated
        ctx = llama.input_ids[: llama.n_tokens]
        lcp = 0
        for a, b in zip(ctx, tokens, strict=False):
            if a != b:
                break
            lcp += 1
        reuse = min(lcp, len(tokens) - 1)
        n_ctx = llama.n_ctx()
        if len(tokens) >= n_ctx:
            raise EngineError(
                f"{self.spec.name}: prompt of {len(tokens)} tokens does not fit n_ctx={n_ctx}"
            )
        llama.n_tokens = reuse
        todo = tokens[reuse:]
        t0 = time.perf_counter()
        llama.eval(todo)
        self.stats.add_prefill(len(todo), time.perf_counter() - t0)
        job.prefilled += len(todo)
        job.slices += 1
        vocab = llama._model.vocab
        params = job.params
        base_seed = llama._seed
        produced = 0
        t_dec = time.perf_counter()
        try:
            while True:
                if job.cancel.is_set():
                    return True
                if params.seed is not None:
                    # Seed per position: same seed, same text, however the turn was sliced.
                    llama.set_seed((params.seed + len(job.generated)) & 0x7FFFFFFF)
                token = llama.sample(temp=params.temperature, top_k=40, top_p=0.95, min_p=0.05)
                if token in job.stop_ids or llama_cpp.llama_vocab_is_eog(vocab, token):
                    break
                job.generated.append(token)
                if job.first_token_s is None:
                    job.first_token_s = time.perf_counter() - job.created
                piece, stopped = job.text.feed(llama.detokenize([token]))
                if piece:
                    job.emit(piece)
                if stopped:
                    return True
                produced += 1
                if len(job.generated) >= params.max_tokens or llama.n_tokens + 1 >= n_ctx:
                    break
                if produced >= slice_tokens and should_pause():
                    return False  # the last token is evaluated when this job resumes
                llama.eval([token])
            rest = job.text.flush()
            if rest:
                job.emit(rest)
            return True
        finally:
            llama.set_seed(base_seed)
            self.stats.add_decode(produced, time.perf_counter() - t_dec)


class Slot:
    """One loaded (or loading) model and its worker thread."""

    def __init__(self, key: str, spec: ModelSpec, estimate: int, stats: ModelStats) -> None:
        self.key = key
        self.spec = spec
        self.name = spec.name
        self.device = spec.device
        self.estimate = estimate
        self.stats = stats
        self.state = "loading"  # loading -> ready -> evicting
        self.runner = LlamaRunner(spec, stats)
        self.executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="pool-slot")
        self.job: Job | None = None
        self.occupant: str | None = None  # persona whose conversation is in the KV cache
        self.dirty = False  # context changed since the occupant's state was last saved
        self.last_used = time.monotonic()
        self.contended = False  # someone waits for this slot (or its memory)
        self.models: set[str] = {spec.name}
        self.timer: asyncio.TimerHandle | None = None

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)


class Scheduler:
    """Memory accounting, admission-to-slot dispatch, eviction and state save/restore."""

    def __init__(
        self,
        budgets: dict[str, int],
        queue: AdmissionQueue,
        slice_tokens: int,
        on_event: EventSink,
        host_device: str | None = "cpu",
    ) -> None:
        self.budgets = budgets
        self.queue = queue
        self.slice_tokens = max(1, slice_tokens)
        self.on_event = on_event
        self.host_device = host_device if host_device in budgets else None
        self.slots: dict[str, Slot] = {}
        self.states: OrderedDict[tuple[str, str], SavedState] = OrderedDict()
        self.state_reserved = 0  # bytes reserved for saves in flight
        self.stats: dict[str, ModelStats] = {}
        self.peak: dict[str, int] = dict.fromkeys(budgets, 0)
        self.restores = 0
        self.reprefills = 0
        self._tasks: set[asyncio.Task] = set()
        self._closed = False

    # -- accounting ----------------------------------------------------------------------
    def state_bytes(self) -> int:
        return sum(s.nbytes for s in self.states.values()) + self.state_reserved

    def used(self, device: str) -> int:
        total = sum(s.estimate for s in self.slots.values() if s.device == device)
        if device == self.host_device:
            total += self.state_bytes()
        return total

    def free(self, device: str) -> int:
        return self.budgets[device] - self.used(device)

    def _note_peak(self, device: str) -> None:
        used = self.used(device)
        self.peak[device] = max(self.peak.get(device, 0), used)
        if used > self.budgets[device]:  # a bug, never a user error: fail loudly
            raise AssertionError(f"pool accounting over budget on {device}: {used}")

    def _stats(self, key: str) -> ModelStats:
        return self.stats.setdefault(key, ModelStats())

    # -- tasks ---------------------------------------------------------------------------
    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- dispatch ------------------------------------------------------------------------
    def dispatch(self) -> None:
        """Grant slots to waiting requests, start loads and evictions. Never awaits."""
        if self._closed:
            return
        for slot in self.slots.values():
            slot.contended = False
        blocked: set[str] = set()  # devices where an earlier request waits for memory
        for req in self.queue.ordered():
            job: Job = req.payload
            if job.granted is None or job.granted.done():
                continue  # admitted, but its driver has not started waiting yet
            slot = self.slots.get(job.key)
            if slot is not None:
                if slot.state == "ready" and slot.job is None:
                    self._grant(job, slot)
                elif slot.job is not None and slot.job.persona != job.persona:
                    slot.contended = True
                continue
            spec = self._spec_of(job)
            device = spec.device
            if device in blocked:
                continue
            estimate = self._estimate_of(job)
            if self.free(device) >= estimate:
                self._start_load(job.key, spec, estimate)
                continue
            blocked.add(device)
            self._make_room(device, estimate)

    def _make_room(self, device: str, need: int) -> None:
        """Evict idle models (LRU) or ask busy ones to yield, so ``need`` bytes come free."""
        on_device = [s for s in self.slots.values() if s.device == device]
        coming = sum(s.estimate for s in on_device if s.state == "evicting")
        idle = sorted(
            (s for s in on_device if s.state == "ready" and s.job is None),
            key=lambda s: s.last_used,
        )
        free = self.free(device) + coming
        victims: list[Slot] = []
        for slot in idle:
            if free >= need:
                break
            victims.append(slot)
            free += slot.estimate
        for slot in victims:
            self._start_evict(slot, "memory")
        if free < need:
            for slot in on_device:
                if slot.job is not None:
                    slot.contended = True  # yield at the slice end, then it is evictable

    def _grant(self, job: Job, slot: Slot) -> None:
        assert job.request is not None and job.granted is not None
        self.queue.remove(job.request)
        self.queue.mark_served(job.persona)
        slot.job = job
        slot.last_used = time.monotonic()
        slot.models.add(job.model)
        if not job.granted.done():
            job.granted.set_result(slot)

    # -- loading and eviction ------------------------------------------------------------
    def _start_load(self, key: str, spec: ModelSpec, estimate: int) -> Slot:
        slot = Slot(key, spec, estimate, self._stats(key))
        self.slots[key] = slot
        self._note_peak(slot.device)
        self._spawn(self._load(slot))
        return slot

    async def _load(self, slot: Slot) -> None:
        try:
            await slot.call(slot.runner.load)
        except Exception as exc:
            self.slots.pop(slot.key, None)
            slot.executor.shutdown(wait=False)
            self.on_event("error", slot.name, "", f"load failed: {exc}")
            for req in self.queue.ordered():
                job: Job = req.payload
                if job.key == slot.key and job.granted and not job.granted.done():
                    self.queue.remove(req)
                    job.granted.set_exception(
                        exc if isinstance(exc, EngineError) else EngineError(str(exc))
                    )
        else:
            slot.state = "ready"
            slot.last_used = time.monotonic()
            self.on_event(
                "load", slot.name, "", f"{slot.estimate} bytes in {slot.stats.load_s or 0:.2f}s"
            )
            self._schedule_keep_alive(slot)
        self.dispatch()

    def _start_evict(self, slot: Slot, why: str) -> None:
        slot.state = "evicting"
        self._spawn(self._evict(slot, why))

    async def _evict(self, slot: Slot, why: str) -> None:
        try:
            if slot.occupant is not None and slot.dirty:
                await self._save(slot)
            await slot.call(slot.runner.close)
        finally:
            slot.executor.shutdown(wait=False)
            self.slots.pop(slot.key, None)
            self.on_event("evict", slot.name, "", f"{why}; freed {slot.estimate} bytes")
            self.dispatch()

    def _schedule_keep_alive(self, slot: Slot, delay: float | None = None) -> None:
        if slot.timer is not None:
            slot.timer.cancel()
        delay = max(0.0, slot.spec.keep_alive_s if delay is None else delay)
        slot.timer = asyncio.get_running_loop().call_later(delay + 0.01, self._expire, slot)

    def _expire(self, slot: Slot) -> None:
        idle_for = time.monotonic() - slot.last_used
        if self._closed or self.slots.get(slot.key) is not slot:
            return
        if slot.state == "ready" and slot.job is None and idle_for >= slot.spec.keep_alive_s:
            self._start_evict(slot, "keep-alive expired")
        elif slot.state == "ready":
            self._schedule_keep_alive(slot, slot.spec.keep_alive_s - idle_for)

    async def evict(self, key: str) -> bool:
        """Unload an idle model now (its persona's KV state is saved first when there is room)."""
        slot = self.slots.get(key)
        if slot is None or slot.state != "ready" or slot.job is not None:
            return False
        self._start_evict(slot, "requested")
        while self.slots.get(key) is slot:
            await asyncio.sleep(0.005)
        return True

    async def prefetch(self, key: str, spec: ModelSpec, estimate: int) -> bool:
        """Load ``spec`` ahead of need if it fits in free memory now (never evicts)."""
        if key in self.slots:
            return True
        device = spec.device
        waiting_loads = any(
            r.payload.key not in self.slots and self._spec_of(r.payload).device == device
            for r in self.queue.ordered()
        )
        if waiting_loads or self.free(device) < estimate:
            return False
        self._start_load(key, spec, estimate)
        return True

    # -- KV state ------------------------------------------------------------------------
    def _reserve_state(self, nbytes: int) -> bool:
        """Make room for a state save in host memory by dropping the oldest saved states."""
        if self.host_device is None:
            return True
        while self.free(self.host_device) < nbytes and self.states:
            (key, persona), old = self.states.popitem(last=False)
            self.on_event("drop_state", self._name(key), persona, f"{old.nbytes} bytes")
        if self.free(self.host_device) < nbytes:
            return False
        self.state_reserved += nbytes
        self._note_peak(self.host_device)
        return True

    async def _save(self, slot: Slot) -> None:
        persona = slot.occupant
        assert persona is not None
        slot.dirty = False
        n_tokens = slot.runner.llama.n_tokens if slot.runner.llama is not None else 0
        if n_tokens < MIN_STATE_TOKENS:
            return
        size = await slot.call(slot.runner.state_size)
        self.states.pop((slot.key, persona), None)
        if not self._reserve_state(size):
            self.on_event("drop_state", slot.name, persona, f"no room for {size} bytes")
            return
        try:
            saved: SavedState = await slot.call(slot.runner.save)
        finally:
            self.state_reserved -= size
        self.states[(slot.key, persona)] = saved
        self.on_event("save_state", slot.name, persona, f"{n_tokens} tokens, {saved.nbytes} bytes")

    async def _switch_to(self, slot: Slot, job: Job) -> None:
        """Make ``slot``'s context the job persona's: save the occupant, maybe restore."""
        if slot.occupant == job.persona:
            return
        if slot.occupant is not None and slot.dirty:
            await self._save(slot)
        saved = self.states.get((slot.key, job.persona))
        if saved is not None and job.prompt is not None:
            wanted = job.prompt + job.generated
            current = slot.runner.context_tokens()
            gain = _lcp(saved.tokens, wanted) - _lcp(current, wanted)
            stats = slot.stats
            restore_s = saved.nbytes / (stats.restore_bps or 2e9)
            prefill_s = gain / (stats.prefill_tps or 200.0)
            if gain > 0 and restore_s < prefill_s:
                await slot.call(slot.runner.restore, saved)
                self.states.pop((slot.key, job.persona), None)
                self.restores += 1
                self.on_event(
                    "restore_state",
                    slot.name,
                    job.persona,
                    f"{len(saved.tokens)} tokens (~{restore_s * 1e3:.1f} ms vs "
                    f"~{prefill_s * 1e3:.1f} ms re-prefill)",
                )
            else:
                self.reprefills += 1
        slot.occupant = job.persona

    # -- running a job -------------------------------------------------------------------
    def _spec_of(self, job: Job) -> ModelSpec:
        return self._specs[job.model]

    def _estimate_of(self, job: Job) -> int:
        return self._estimates[job.model]

    def _name(self, key: str) -> str:
        slot = self.slots.get(key)
        return slot.name if slot else key.split("|", 1)[0].rsplit("/", 1)[-1]

    def configure(self, specs: dict[str, ModelSpec], estimates: dict[str, int]) -> None:
        self._specs = specs
        self._estimates = estimates

    async def _acquire(self, job: Job) -> Slot:
        assert job.request is not None
        job.granted = asyncio.get_running_loop().create_future()
        if job.request.started:
            self.queue.requeue(job.request)
        job.request.work_tokens = job.remaining_tokens
        self.dispatch()
        try:
            return await job.granted
        except asyncio.CancelledError:
            self.queue.remove(job.request)
            if job.granted.done() and not job.granted.cancelled() and not job.granted.exception():
                self._release(job.granted.result(), job)
            self.dispatch()
            raise

    def _release(self, slot: Slot, job: Job) -> None:
        if slot.job is job:
            slot.job = None
        slot.last_used = time.monotonic()
        if job.request is not None:
            job.request.started = True

    async def run_job(self, job: Job) -> None:
        """Driver of one job: wait for the model, run slices until done, hand pieces out."""
        try:
            while not job.done and not job.cancel.is_set():
                slot = await self._acquire(job)
                try:
                    if job.prompt is None:
                        await slot.call(slot.runner.prepare, job)
                    await self._switch_to(slot, job)
                    slot.dirty = True
                    finished = await slot.call(
                        slot.runner.run, job, self.slice_tokens, lambda s=slot: s.contended
                    )
                    job.done = finished
                finally:
                    self._release(slot, job)
                    self._schedule_keep_alive(slot)
                    self.dispatch()
        except asyncio.CancelledError:
            pass
        except Exception as exc:
            if not isinstance(exc, EngineError):
                err = EngineError(f"{job.model}: generation failed: {type(exc).__name__}: {exc}")
                err.__cause__ = exc
                exc = err
            job.out.put_nowait(exc)
        finally:
            job.out.put_nowait(_DONE)

    def withdraw(self, job: Job) -> None:
        """The consumer left: stop at the next token, or leave the queue if still waiting."""
        job.cancel.set()
        if job.granted is not None and not job.granted.done():
            job.granted.cancel()

    # -- reporting -----------------------------------------------------------------------
    def decode_tps(self, key: str) -> float:
        known = [s.decode_tps for s in self.stats.values() if s.decode_tps]
        own = self.stats.get(key)
        if own and own.decode_tps:
            return own.decode_tps
        return sum(known) / len(known) if known else 20.0

    def busy_seconds(self, device: str) -> float:
        return sum(
            s.job.remaining_tokens / self.decode_tps(s.key)
            for s in self.slots.values()
            if s.device == device and s.job is not None
        )

    async def close(self) -> None:
        self._closed = True
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        for slot in list(self.slots.values()):
            if slot.timer is not None:
                slot.timer.cancel()
            with contextlib.suppress(Exception):
                await slot.call(slot.runner.close)
            slot.executor.shutdown(wait=False)
        self.slots.clear()
        self.states.clear()


def _lcp(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n
