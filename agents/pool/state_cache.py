"""Saved KV states of conversations, found again by the longest common token prefix.

When a model's sequence has to go (its model is evicted, or another conversation takes the
sequence), the pool copies that sequence's KV state here. A later request on the same model
(any client: a persona of the TUI or an API request) looks up the saved state whose tokens
share the longest prefix with its rendered prompt, the way llama.cpp's prompt cache matches,
and the scheduler restores it when that measures cheaper than prefilling those tokens again.

* A budget (``[pool] state_cache``, default: as much as the host device's budget leaves) caps
  the bytes held in memory. Those bytes are part of the host device's accounting (the
  scheduler counts ``memory_bytes`` once, in ``used("cpu")``); states spilled to disk are not
  memory and count against nothing but ``disk_budget``.
* Least recently used first: over the budget, the oldest states move to ``spill_dir`` when one
  is configured (and its own budget has room), else they are dropped.
* A state whose tokens are a prefix of a newer state of the same model is superseded by it
  and dropped (the newer one serves every request the older one could).

The cache itself never calls llama.cpp and never touches disk on the event loop: ``spill``
and ``load`` do the file I/O, and the scheduler runs them on the slot's worker thread.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import os
import tempfile
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["CachedState", "StateCache"]


@dataclass(eq=False)
class CachedState:
    key: str  # the slot key (model file + load settings)
    label: str  # who saved it (a persona, or an API client), for the dashboard and events
    tokens: list[int]
    nbytes: int
    state: Any = None  # ctypes buffer while in memory
    path: Path | None = None  # file while spilled to disk
    used: float = field(default_factory=time.monotonic)
    spilling: bool = False  # its bytes are being written to disk right now

    @property
    def on_disk(self) -> bool:
        return self.state is None and self.path is not None


def _lcp(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


class StateCache:
    """See the module docstring. Not thread-safe: used from the event loop only, except the
    file I/O of ``write_spill`` / ``read_spill`` (given one entry, on a worker thread)."""

    def __init__(
        self,
        budget_bytes: int | None = None,
        spill_dir: Path | None = None,
        disk_budget_bytes: int = 8 * 1024**3,
    ) -> None:
        self.budget = budget_bytes
        self.spill_dir = Path(spill_dir) if spill_dir is not None else None
        self.disk_budget = disk_budget_bytes
        self._entries: OrderedDict[int, CachedState] = OrderedDict()  # LRU first
        self._ids = itertools.count()
        self.hits = 0
        self.misses = 0
        self.spilled = 0
        self.dropped = 0

    # -- accounting ----------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._entries)

    def entries(self) -> list[CachedState]:
        """Every state, least recently used first."""
        return list(self._entries.values())

    @property
    def memory_bytes(self) -> int:
        return sum(e.nbytes for e in self._entries.values() if not e.on_disk)

    @property
    def disk_bytes(self) -> int:
        return sum(e.nbytes for e in self._entries.values() if e.on_disk)

    def room(self, nbytes: int) -> bool:
        """Whether a state of ``nbytes`` may ever be held in memory under the budget."""
        return self.budget is None or nbytes <= self.budget

    # -- lookup --------------------------------------------------------------------------
    def best(self, key: str, tokens: list[int]) -> tuple[CachedState, int] | None:
        """The state of model ``key`` sharing the longest token prefix with ``tokens``."""
        found: tuple[CachedState, int] | None = None
        for entry in self._entries.values():
            if entry.key != key:
                continue
            n = _lcp(entry.tokens, tokens)
            if n > 0 and (found is None or n > found[1]):
                found = (entry, n)
        return found

    def hit(self, entry: CachedState) -> None:
        """``entry`` was restored: it now lives in a KV sequence, not here."""
        self.hits += 1
        self.remove(entry)

    def remove(self, entry: CachedState) -> None:
        for k, e in self._entries.items():
            if e is entry:
                del self._entries[k]
                break
        if entry.path is not None:
            with contextlib.suppress(OSError):
                entry.path.unlink()
            entry.path = None

    # -- insertion and eviction ----------------------------------------------------------
    def put(self, entry: CachedState) -> list[CachedState]:
        """Keep ``entry`` (most recently used); return the states it superseded (dropped)."""
        gone = [
            e
            for e in self._entries.values()
            if e.key == entry.key
            and len(e.tokens) <= len(entry.tokens)
            and entry.tokens[: len(e.tokens)] == e.tokens
        ]
        for e in gone:
            self.remove(e)
        entry.used = time.monotonic()
        self._entries[next(self._ids)] = entry
        return gone

    def __contains__(self, entry: object) -> bool:
        return any(e is entry for e in self._entries.values())

    def oldest_in_memory(self) -> CachedState | None:
        return next((e for e in self._entries.values() if not e.on_disk and not e.spilling), None)

    def over_budget(self, extra: int = 0) -> bool:
        return self.budget is not None and self.memory_bytes + extra > self.budget

    def can_spill(self, entry: CachedState) -> bool:
        return self.spill_dir is not None and self.disk_bytes + entry.nbytes <= self.disk_budget

    def drop(self, entry: CachedState) -> None:
        self.dropped += 1
        self.remove(entry)

    def write_spill(self, entry: CachedState) -> Path:
        """Write ``entry``'s bytes to a 0600 file in ``spill_dir`` (worker thread)."""
        assert self.spill_dir is not None and entry.state is not None
        self.spill_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, name = tempfile.mkstemp(prefix="kv-", suffix=".state", dir=self.spill_dir)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(memoryview(entry.state).cast("B")[: entry.nbytes])
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(name)
            raise
        return Path(name)

    def spilled_to(self, entry: CachedState, path: Path) -> None:
        """The write finished: the entry's memory is free now."""
        entry.path = path
        entry.state = None
        self.spilled += 1

    @staticmethod
    def read_spill(entry: CachedState) -> Any:
        """The bytes of a spilled entry, as a ctypes buffer (worker thread)."""
        assert entry.path is not None
        buf = (ctypes.c_uint8 * entry.nbytes)()
        with entry.path.open("rb") as fh:
            n = fh.readinto(memoryview(buf).cast("B"))
        if n != entry.nbytes:
            raise OSError(f"saved state {entry.path} is truncated ({n} of {entry.nbytes} bytes)")
        return buf

    def clear(self) -> None:
        for entry in list(self._entries.values()):
            self.remove(entry)
