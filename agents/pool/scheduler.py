"""Scheduling of local llama.cpp models under a memory budget, personas batched per model.

Why this shape:

* One ``Slot`` per loaded GGUF. Personas that use the same file share it (the key is the file
  plus the load settings), so three personas on one model never mean three copies.
* Every llama.cpp call of a slot runs on that slot's own single worker thread: llama contexts
  are not thread-safe, and a one-thread executor serialises them without locks.
* The context of a slot holds ``seqs`` KV sequences (llama.cpp's multi-sequence cache; on the
  CPU one stream per sequence, on a GPU one unified stream; see ``runner.SeqRunner``, which owns
  the model on the slot's thread). Each persona owns a sequence
  while it is resident, so switching personas copies nothing: the previous design saved and
  restored the whole KV state (~17 MB per slice) and lost 25% of the throughput that way.
* Up to ``seqs`` personas run *together*: each decode step is either one ``llama_decode`` with
  one token per persona (batched) or one call per persona (interleaved), whichever the slot has
  measured to be faster on this machine (on a GPU batching wins; on a compute-bound CPU thread
  the two are close). Every persona samples from its own logits with its own sampler chain and
  seed, so greedy text does not depend on who else is running, and seeded text does not
  depend on the interleaving.
* A persona that needs a sequence when all are owned takes over the least recently used idle
  one; the previous owner's KV state is saved (``llama_state_seq_get_data``) into host memory
  if the budget has room, and restored on its next turn when that beats re-prefilling. The same
  happens to every persona's sequence when the model is evicted. More personas than sequences
  are time-sliced: when someone waits for a seat, the persona served most gives way after
  ``slice_tokens`` tokens.
* Memory is accounted before anything is allocated: a load reserves the model's estimate (KV for
  all sequences included), a state save reserves its size, and nothing is loaded while
  used + estimate > budget. Idle models are evicted least-recently-used first; busy ones are
  asked to yield at their slice end.

Size (over 500 lines): admission, seats, memory accounting, eviction and keep-alive are one
decision made under one lock-free event-loop invariant (``dispatch``); split, each part would
need the others' private state.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agents.engine import DONE, EngineError
from agents.pool.queue import AdmissionQueue
from agents.pool.runner import Flags, Job, ModelStats, SavedState, SeqRunner, lcp
from agents.pool.state_cache import CachedState, StateCache
from agents.specs import ModelSpec

MIN_STATE_TOKENS = 16  # contexts shorter than this are cheaper to re-prefill than to save
DECODE_MODES = ("auto", "batched", "interleaved")


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


class Slot:
    """One loaded (or loading) model, its worker thread and the personas seated on it."""

    def __init__(
        self,
        key: str,
        spec: ModelSpec,
        placement: dict[str, int],
        stats: ModelStats,
        seqs: int,
        mode: str,
    ) -> None:
        self.key = key
        self.spec = spec
        self.name = spec.name
        self.device = spec.device
        # Bytes reserved on each device: a model split over GPUs and the CPU uses them all.
        self.placement = placement
        self.estimate = sum(placement.values())
        self.stats = stats
        self.state = "loading"  # loading -> ready -> evicting
        self.seqs = seqs
        self.runner = SeqRunner(spec, stats, seqs, mode)
        self.executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="pool-slot")
        self.jobs: list[Job] = []  # seated (running) jobs, at most ``seqs``
        self.owner: dict[int, str] = {}  # sequence -> persona whose conversation it holds
        self.seq_used: dict[int, float] = {}  # sequence -> last time its persona ran
        self.dirty: set[str] = set()  # personas whose KV changed since their last save
        self.flags = Flags()
        self.driver: asyncio.Task[None] | None = None
        self.last_used = time.monotonic()
        self.models: set[str] = {spec.name}
        self.timer: asyncio.TimerHandle | None = None
        # Set when the warm-up after the load must stop: a turn was seated or the model goes.
        self.warm_stop = threading.Event()

    @property
    def contended(self) -> bool:
        return self.flags.memory or self.flags.seat_wanted

    def seq_of(self, persona: str) -> int | None:
        return next((s for s, p in self.owner.items() if p == persona), None)

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)


@dataclass(frozen=True)
class SlotView:
    """One slot as reports see it (``Scheduler.snapshot``)."""

    models: tuple[str, ...]  # the model names sharing this loaded file, sorted
    device: str
    bytes: int  # the reserved estimate, all devices together
    state: str  # loading, ready, evicting
    running: tuple[tuple[str, str], ...]  # (persona, model) of each seated job
    context_personas: tuple[str, ...]  # whose conversation each sequence holds, by sequence
    idle_s: float  # 0 while a job runs
    decode_tps: float | None


@dataclass(frozen=True)
class SavedStateView:
    """One saved KV state: the model it belongs to, who saved it, its size."""

    model: str
    label: str
    nbytes: int
    on_disk: bool


@dataclass(frozen=True)
class SchedulerSnapshot:
    """What the scheduler holds now, read in one go (``ModelPool.snapshot`` builds on it)."""

    used: dict[str, int]  # device -> bytes reserved now
    peak: dict[str, int]  # device -> most bytes ever reserved
    slots: tuple[SlotView, ...]
    states: tuple[SavedStateView, ...]
    states_memory_bytes: int
    states_budget_bytes: int | None
    states_disk_bytes: int
    state_hits: int
    restores: int
    reprefills: int


class Scheduler:
    """Memory accounting, admission-to-slot dispatch, eviction and state save/restore."""

    def __init__(
        self,
        budgets: dict[str, int],
        queue: AdmissionQueue,
        slice_tokens: int,
        on_event: EventSink,
        host_device: str | None = "cpu",
        seqs: int = 3,
        decode_mode: str = "auto",
        state_cache: StateCache | None = None,
    ) -> None:
        if decode_mode not in DECODE_MODES:
            raise ValueError(f"decode_mode must be one of {DECODE_MODES}, not {decode_mode!r}")
        self.budgets = budgets
        self.queue = queue
        self.slice_tokens = max(1, slice_tokens)
        self.on_event = on_event
        self.host_device = host_device if host_device in budgets else None
        self.seqs = max(1, seqs)
        self.decode_mode = decode_mode
        self.slots: dict[str, Slot] = {}
        # Saved KV states, matched by longest common token prefix (state_cache.py).
        self.cache = state_cache if state_cache is not None else StateCache()
        self.state_reserved = 0  # bytes reserved for saves (and reads from disk) in flight
        self.disk_read_bps: float | None = None  # measured reads of spilled states
        self.stats: dict[str, ModelStats] = {}
        self.peak: dict[str, int] = dict.fromkeys(budgets, 0)
        self.restores = 0
        self.reprefills = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False
        self._specs: dict[str, ModelSpec] = {}
        self._estimates: dict[str, int] = {}
        self._placements: Callable[[str], dict[str, int]] | None = None

    # -- accounting ----------------------------------------------------------------------
    @property
    def states(self) -> StateCache:
        """The saved KV states (``len``, ``clear()``, ``entries()``)."""
        return self.cache

    def state_bytes(self) -> int:
        """Host memory held by saved states: counted once, in the host device's ``used``."""
        return self.cache.memory_bytes + self.state_reserved

    def used(self, device: str) -> int:
        total = sum(s.placement.get(device, 0) for s in self.slots.values())
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
    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- dispatch ------------------------------------------------------------------------
    def dispatch(self) -> None:
        """Seat waiting requests, start loads and evictions. Never awaits."""
        if self._closed:
            return
        for slot in self.slots.values():
            slot.flags.memory = slot.flags.seat_wanted = False
        blocked: set[str] = set()  # devices where an earlier request waits for memory
        for req in self.queue.ordered():
            job: Job = req.payload
            if job.granted is None or job.granted.done():
                continue  # admitted, but its driver has not started waiting yet
            found = self.slots.get(job.key)
            if found is not None:
                slot = found
                if slot.state != "ready":
                    continue
                if any(j.persona == job.persona for j in slot.jobs):
                    continue  # one sequence per persona: its next request waits its turn
                if len(slot.jobs) < slot.seqs:
                    self._grant(job, slot)
                else:
                    slot.flags.seat_wanted = True
                continue
            spec = self._spec_of(job)
            placement = self._placement_of(job)
            if blocked.intersection(placement):
                continue
            short = {d: n for d, n in placement.items() if self.free(d) < n}
            for device, need in short.items():
                self._make_room(device, need)
            short = {d: n for d, n in placement.items() if self.free(d) < n}
            if not short:  # room came free at once (saved states dropped)
                self._start_load(job.key, spec, placement)
                continue
            blocked.update(short)  # later requests may still load where this one has room

    def _make_room(self, device: str, need: int) -> None:
        """Evict idle models (LRU) or ask busy ones to yield, so ``need`` bytes come free."""
        on_device = [s for s in self.slots.values() if s.placement.get(device, 0) > 0]
        coming = sum(s.placement[device] for s in on_device if s.state == "evicting")
        idle = sorted(
            (s for s in on_device if s.state == "ready" and not s.jobs),
            key=lambda s: s.last_used,
        )
        free = self.free(device) + coming
        victims: list[Slot] = []
        for slot in idle:
            if free >= need:
                break
            victims.append(slot)
            free += slot.placement[device]
        for slot in victims:
            self._start_evict(slot, "memory")
        saved = sum(e.nbytes for e in self.cache.entries() if not e.on_disk and not e.spilling)
        if device == self.host_device and free < need <= free + saved:
            # Saved KV states are a cache: a model that must load matters more (a persona
            # whose state is dropped re-prefills its history on its next turn). Only when
            # dropping them is enough: otherwise a busy model has to yield first anyway.
            while free < need and (old := self.cache.oldest_in_memory()) is not None:
                self.cache.drop(old)
                self.on_event("drop_state", self._name(old.key), old.label, f"{old.nbytes} bytes")
                free += old.nbytes
        if free < need:
            for slot in on_device:
                if slot.jobs:
                    slot.flags.memory = True  # yield at the slice end, then it is evictable

    def _grant(self, job: Job, slot: Slot) -> None:
        assert job.request is not None and job.granted is not None
        self.queue.remove(job.request)
        self.queue.mark_served(job.persona, job.request.client)
        job.seated = False
        slot.jobs.append(job)
        slot.warm_stop.set()  # the user's turn never waits behind the warm-up
        slot.flags.newcomer = True
        slot.last_used = time.monotonic()
        slot.models.add(job.model)
        if not job.granted.done():
            job.granted.set_result(slot)
        if slot.driver is None or slot.driver.done():
            slot.driver = self._spawn(self._drive(slot))

    # -- loading and eviction ------------------------------------------------------------
    def _start_load(self, key: str, spec: ModelSpec, placement: dict[str, int]) -> Slot:
        slot = Slot(key, spec, placement, self._stats(key), self.seqs, self.decode_mode)
        self.slots[key] = slot
        for device in placement:
            self._note_peak(device)
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
            where = "; top-k sampled on the device" if slot.runner.device_top_k else ""
            self.on_event(
                "load",
                slot.name,
                "",
                f"{slot.estimate} bytes in {slot.stats.load_s or 0:.2f}s{where}",
            )
            self._schedule_keep_alive(slot)
            # Queued on the slot's thread before any turn this dispatch seats: a seated turn
            # sets warm_stop first, so the warm-up then returns before its first step.
            self._spawn(self._warm_up(slot))
        self.dispatch()

    async def _warm_up(self, slot: Slot) -> None:
        """Run the runner's warm-up in the background; one 'warm_up' event says how it went."""
        t0 = time.perf_counter()
        try:
            steps, finished = await slot.call(slot.runner.warm_up, slot.warm_stop)
        except Exception as exc:  # a failed warm-up costs nothing but its own figure
            self.on_event("warm_up", slot.name, "", f"failed: {exc}")
            return
        took = time.perf_counter() - t0
        if finished:
            self.on_event("warm_up", slot.name, "", f"{steps} steps in {took:.2f}s")
        elif slot.warm_stop.is_set():
            why = "a turn came first" if steps == 0 else "stopped for a turn"
            self.on_event("warm_up", slot.name, "", f"{why} ({steps} steps in {took:.2f}s)")

    def _start_evict(self, slot: Slot, why: str) -> None:
        slot.warm_stop.set()
        slot.state = "evicting"
        self._spawn(self._evict(slot, why))

    async def _evict(self, slot: Slot, why: str) -> None:
        try:
            for seq, persona in sorted(slot.owner.items()):
                if persona in slot.dirty:
                    await self._save(slot, seq)
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
        if slot.state == "ready" and not slot.jobs and idle_for >= slot.spec.keep_alive_s:
            self._start_evict(slot, "keep-alive expired")
        elif slot.state == "ready":
            self._schedule_keep_alive(slot, slot.spec.keep_alive_s - idle_for)

    async def evict(self, key: str) -> bool:
        """Unload an idle model now (its personas' KV states are saved first when there is room)."""
        slot = self.slots.get(key)
        if slot is None or slot.state != "ready" or slot.jobs:
            return False
        self._start_evict(slot, "requested")
        while self.slots.get(key) is slot:
            await asyncio.sleep(0.005)
        return True

    async def prefetch(self, key: str, spec: ModelSpec, placement: dict[str, int]) -> bool:
        """Load ``spec`` ahead of need if it fits in free memory now (never evicts)."""
        if key in self.slots:
            return True
        waiting_loads = any(
            r.payload.key not in self.slots
            and not set(placement).isdisjoint(self._placement_of(r.payload))
            for r in self.queue.ordered()
        )
        if waiting_loads or any(self.free(d) < n for d, n in placement.items()):
            return False
        self._start_load(key, spec, placement)
        return True

    # -- KV state ------------------------------------------------------------------------
    async def _reserve_state(self, nbytes: int, cached: bool = True) -> bool:
        """Make room for ``nbytes`` of saved state in host memory: the oldest saved states go
        to disk (when a spill directory has room) or are dropped, until the host budget (and,
        for a state that will stay in the cache, the cache's own budget) holds ``nbytes``
        more."""
        if cached and not self.cache.room(nbytes):
            return False
        host = self.host_device

        def short() -> bool:
            over = cached and self.cache.over_budget(nbytes)
            return over or (host is not None and self.free(host) < nbytes)

        while short():
            old = self.cache.oldest_in_memory()
            if old is None:
                break
            if self.cache.can_spill(old):
                await self._spill(old)
            else:
                self.cache.drop(old)
                self.on_event("drop_state", self._name(old.key), old.label, f"{old.nbytes} bytes")
        if short():
            return False
        self.state_reserved += nbytes
        if host is not None:
            self._note_peak(host)
        return True

    async def _spill(self, entry: CachedState) -> None:
        """Move one saved state's bytes to the spill directory (file I/O off the loop)."""
        entry.spilling = True
        try:
            path = await asyncio.to_thread(self.cache.write_spill, entry)
        except OSError as exc:
            entry.spilling = False
            self.cache.drop(entry)
            self.on_event("drop_state", self._name(entry.key), entry.label, f"spill failed: {exc}")
            return
        entry.spilling = False
        if entry not in self.cache:  # restored or dropped while it was being written
            with contextlib.suppress(OSError):
                path.unlink()
            return
        self.cache.spilled_to(entry, path)
        self.on_event(
            "spill_state", self._name(entry.key), entry.label, f"{entry.nbytes} bytes to disk"
        )

    async def _save(self, slot: Slot, seq: int) -> None:
        """Copy ``seq``'s KV state (its owner's conversation) into the state cache, if room."""
        persona = slot.owner[seq]
        slot.dirty.discard(persona)
        n_tokens = len(slot.runner.seq_tokens[seq])
        if n_tokens < MIN_STATE_TOKENS or slot.runner.llama is None:
            return
        size = await slot.call(slot.runner.seq_state_size, seq)
        if not await self._reserve_state(size):
            self.on_event("drop_state", slot.name, persona, f"no room for {size} bytes")
            return
        try:
            saved: SavedState = await slot.call(slot.runner.save, seq)
        finally:
            self.state_reserved -= size
        entry = CachedState(slot.key, persona, saved.tokens, saved.nbytes, saved.state)
        for gone in self.cache.put(entry):
            self.on_event("drop_state", slot.name, gone.label, "superseded by a longer state")
        self.on_event("save_state", slot.name, persona, f"{n_tokens} tokens, {saved.nbytes} bytes")

    async def _seat(self, slot: Slot, job: Job) -> None:
        """Give the job's persona a KV sequence: its own; else the free or idle one that holds
        the longest prefix of its prompt (another client's request continuing the same
        conversation); else a free one, or the least recently used idle one's."""
        seq = slot.seq_of(job.persona)
        if seq is None:
            busy = {j.persona for j in slot.jobs if j is not job}
            free = [s for s in range(slot.seqs) if s not in slot.owner]
            idle = [s for s, p in slot.owner.items() if p not in busy]
            wanted = (job.prompt or []) + job.generated
            # Only a sequence this job continues (all of it, give or take a re-tokenised
            # tail) is taken over as it is: one that merely shares a system prompt belongs to
            # another conversation, which keeps it (the saved-state cache shares prefixes).
            shared = {
                s: n
                for s in free + idle
                if (n := lcp(slot.runner.seq_tokens[s], wanted))
                >= len(slot.runner.seq_tokens[s]) - MIN_STATE_TOKENS
            }
            best = max(shared, key=lambda s: shared[s], default=None)
            cached = self.cache.best(slot.key, wanted) if job.prompt is not None else None
            keep = (
                best is not None
                and shared[best] >= MIN_STATE_TOKENS
                and shared[best] >= (cached[1] if cached else 0)
            )
            if keep and best is not None:
                seq = best
            elif free:
                seq = free[0]
            else:
                seq = min(idle, key=lambda s: slot.seq_used.get(s, 0.0))
            owner = slot.owner.pop(seq, None)
            # The previous owner's conversation is lost with the sequence unless this job
            # continues all of it: save it first.
            if owner is not None and owner in slot.dirty:
                if not keep or shared[seq] < len(slot.runner.seq_tokens[seq]):
                    slot.owner[seq] = owner
                    await self._save(slot, seq)
                    del slot.owner[seq]
                slot.dirty.discard(owner)
            slot.owner[seq] = job.persona
            if not keep:
                await slot.call(slot.runner.clear_seq, seq)
                await self._maybe_restore(slot, job, seq)
        job.seq = seq
        slot.seq_used[seq] = time.monotonic()
        slot.dirty.add(job.persona)

    async def _maybe_restore(self, slot: Slot, job: Job, seq: int) -> None:
        """Restore the saved state sharing the longest prefix with the job's prompt, when
        that measures cheaper than prefilling the shared tokens again."""
        if job.prompt is None:
            return
        wanted = job.prompt + job.generated
        found = self.cache.best(slot.key, wanted)
        if found is None or found[1] < MIN_STATE_TOKENS:  # a chat template's first tokens
            self.cache.misses += 1
            return
        entry, gain = found
        # Both sides are measured costs of this model on its device: on a CPU a restore is
        # ~20x cheaper than re-prefilling; on a GPU a long re-prefill can be the cheaper one.
        restore_s = slot.stats.restore_s(entry.nbytes)
        if entry.on_disk:
            restore_s += entry.nbytes / (self.disk_read_bps or 5e8)
        prefill_s = slot.stats.reprefill_s(gain)
        where = " from disk" if entry.on_disk else ""
        costs = f"~{restore_s * 1e3:.1f} ms restore{where} vs ~{prefill_s * 1e3:.1f} ms re-prefill"
        if restore_s >= prefill_s:
            self.reprefills += 1
            if gain >= MIN_STATE_TOKENS:
                self.on_event("reprefill", slot.name, job.persona, f"{gain} tokens ({costs})")
            return
        saved = await self._load_entry(entry)
        if saved is not None and await slot.call(slot.runner.restore, saved, seq):
            # A state this job continues in full now lives in its sequence; one it shares only
            # a prefix with stays cached (its own conversation may come back).
            if entry in self.cache and gain == len(entry.tokens):
                self.cache.hit(entry)
            else:
                self.cache.hits += 1
            self.restores += 1
            detail = f"{gain} of {len(entry.tokens)} tokens{where} ({costs})"
            if entry.label != job.persona:
                detail += f"; saved by {entry.label}"
            self.on_event("restore_state", slot.name, job.persona, detail)
        else:
            self.reprefills += 1

    async def _load_entry(self, entry: CachedState) -> SavedState | None:
        """The entry's bytes in memory (read back from disk when spilled), or None."""
        if not entry.on_disk:
            return SavedState(entry.tokens, entry.state, entry.nbytes)
        if not await self._reserve_state(entry.nbytes, cached=False):
            self.on_event("reprefill", self._name(entry.key), entry.label, "no room to read back")
            return None
        try:
            t0 = time.perf_counter()
            buf = await asyncio.to_thread(self.cache.read_spill, entry)
            dt = time.perf_counter() - t0
            if dt > 0:
                rate = entry.nbytes / dt
                old = self.disk_read_bps
                self.disk_read_bps = rate if old is None else 0.7 * old + 0.3 * rate
        except OSError as exc:
            self.cache.drop(entry)
            self.on_event("drop_state", self._name(entry.key), entry.label, f"unreadable: {exc}")
            return None
        finally:
            self.state_reserved -= entry.nbytes
        return SavedState(entry.tokens, buf, entry.nbytes)

    # -- running jobs --------------------------------------------------------------------
    def _spec_of(self, job: Job) -> ModelSpec:
        return self._specs[job.model]

    def _placement_of(self, job: Job) -> dict[str, int]:
        if self._placements is not None:
            return self._placements(job.model)
        return {self._spec_of(job).device: self._estimates[job.model]}

    def _name(self, key: str) -> str:
        slot = self.slots.get(key)
        return slot.name if slot else key.split("|", 1)[0].rsplit("/", 1)[-1]

    def configure(
        self,
        specs: dict[str, ModelSpec],
        estimates: dict[str, int],
        placements: Callable[[str], dict[str, int]] | None = None,
    ) -> None:
        """Models by name, their total estimates, and (optionally) bytes per device."""
        self._specs = specs
        self._estimates = estimates
        self._placements = placements

    async def _drive(self, slot: Slot) -> None:
        """The slot's one loop: seat newcomers, run rounds, hand finished jobs back."""
        while slot.jobs and not self._closed:
            slot.flags.newcomer = False
            for job in [j for j in slot.jobs if not j.seated]:
                try:
                    if job.prompt is None:
                        await slot.call(slot.runner.prepare, job)
                    await self._seat(slot, job)
                    job.seated = True
                    job.served = 0
                except Exception as exc:
                    self._end_turn(slot, job, exc)
            seated = [j for j in slot.jobs if j.seated]
            if not seated:
                continue
            try:
                results = await slot.call(
                    slot.runner.run_round, seated, self.slice_tokens, slot.flags
                )
            except Exception as exc:
                results = dict.fromkeys(seated, exc)
            now = time.monotonic()
            for job in seated:
                if job.seq is not None:
                    slot.seq_used[job.seq] = now
            for job, outcome in results.items():
                self._end_turn(slot, job, outcome)
            slot.last_used = now
            self.dispatch()
        slot.driver = None
        if slot.jobs and not self._closed:  # seated while this loop was finishing
            slot.driver = self._spawn(self._drive(slot))

    def _end_turn(self, slot: Slot, job: Job, outcome: bool | Exception) -> None:
        if job in slot.jobs:
            slot.jobs.remove(job)
        job.seated = False
        if job.turn is not None and not job.turn.done():
            if isinstance(outcome, Exception):
                job.turn.set_exception(outcome)
            else:
                job.turn.set_result(outcome)

    async def _acquire(self, job: Job) -> Slot:
        assert job.request is not None
        loop = asyncio.get_running_loop()
        job.granted = loop.create_future()
        job.turn = loop.create_future()
        if job.request.started:
            self.queue.requeue(job.request)
        job.request.work_tokens = job.remaining_tokens
        self.dispatch()
        try:
            slot: Slot = await job.granted
            return slot
        except asyncio.CancelledError:
            self.queue.remove(job.request)
            self.dispatch()
            raise

    async def run_job(self, job: Job) -> None:
        """Driver of one job: wait for a seat, let the slot run it, re-queue when it yields."""
        try:
            while not job.done and not job.cancel.is_set():
                slot = await self._acquire(job)
                assert job.turn is not None
                try:
                    job.done = await asyncio.shield(job.turn)
                finally:
                    if job.request is not None:
                        job.request.started = True
                    self._schedule_keep_alive(slot)
        except asyncio.CancelledError:
            pass
        except Exception as exc:
            if not isinstance(exc, EngineError):
                err = EngineError(f"{job.model}: generation failed: {type(exc).__name__}: {exc}")
                err.__cause__ = exc
                exc = err
            job.out.put_nowait(exc)
        finally:
            # The slot thread is done with the job once its turn resolved (or never started).
            _free_sampler(job)
            job.out.put_nowait(DONE)

    def withdraw(self, job: Job) -> None:
        """The consumer left: stop at the next token, or leave the queue if still waiting."""
        job.cancel.set()
        if job.granted is not None and not job.granted.done():
            job.granted.cancel()

    # -- reporting -----------------------------------------------------------------------
    def snapshot(self) -> SchedulerSnapshot:
        """Slots, memory and saved states as they are now (no lock: one event-loop step)."""
        now = time.monotonic()
        slots = tuple(
            SlotView(
                models=tuple(sorted(s.models)),
                device=s.device,
                bytes=s.estimate,
                state=s.state,
                running=tuple((j.persona, j.model) for j in s.jobs),
                context_personas=tuple(p for _, p in sorted(s.owner.items())),
                idle_s=0.0 if s.jobs else now - s.last_used,
                decode_tps=s.stats.decode_tps,
            )
            for s in self.slots.values()
        )
        cache = self.cache
        states = tuple(
            SavedStateView(self._name(e.key), e.label, e.nbytes, e.on_disk) for e in cache.entries()
        )
        return SchedulerSnapshot(
            used={name: self.used(name) for name in self.budgets},
            peak=dict(self.peak),
            slots=slots,
            states=states,
            states_memory_bytes=cache.memory_bytes,
            states_budget_bytes=cache.budget,
            states_disk_bytes=cache.disk_bytes,
            state_hits=cache.hits,
            restores=self.restores,
            reprefills=self.reprefills,
        )

    def decode_tps(self, key: str) -> float:
        known = [s.decode_tps for s in self.stats.values() if s.decode_tps]
        own = self.stats.get(key)
        if own and own.decode_tps:
            return own.decode_tps
        return sum(known) / len(known) if known else 20.0

    def busy_seconds(self, device: str) -> float:
        return sum(
            j.remaining_tokens / self.decode_tps(s.key)
            for s in self.slots.values()
            if s.device == device
            for j in s.jobs
        )

    async def close(self) -> None:
        self._closed = True
        for slot in self.slots.values():
            slot.warm_stop.set()
            for job in slot.jobs:
                job.cancel.set()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        for slot in list(self.slots.values()):
            if slot.timer is not None:
                slot.timer.cancel()
            for job in list(slot.jobs):
                self._end_turn(slot, job, True)
            with contextlib.suppress(Exception):
                await slot.call(slot.runner.close)
            slot.executor.shutdown(wait=False)
        self.slots.clear()
        self.states.clear()


def _free_sampler(job: Job) -> None:
    if job.sampler is not None:
        import llama_cpp

        llama_cpp.llama_sampler_free(job.sampler)
        job.sampler = None
