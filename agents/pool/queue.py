"""The pool's admission queue: bounded, interactive before batch, fair between personas.

Why a queue of its own rather than an ``asyncio.Queue``: the scheduler must look at *every*
waiting request (a request whose model is resident can run while an earlier one waits for
memory), reorder by priority class and by how recently each persona was served, and report a
wait estimate per request for the dashboard. Admission control happens here too, so an overload
turns into a clear ``PoolBusyError`` at the door instead of an out-of-memory crash later.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from agents.errors import HermesError

# Served in this order by default: a person waiting at the chat, then API clients of
# ``hermes serve``, then scripted batch runs ([server] priorities changes the order).
PRIORITIES = ("interactive", "api", "batch")


class PoolBusyError(HermesError):
    """The admission queue is full: try again later (batch mode exits 3)."""

    code = "E_POOL_BUSY"


class NeverFitsError(HermesError):
    """The request can never fit in the configured memory budget."""

    code = "E_NEVER_FITS"


@dataclass(eq=False)
class Request:
    """One waiting (or preempted) generation, as the queue sees it.

    ``work_tokens`` is the work still to do (prompt tokens to prefill + tokens still to
    generate, as far as known) and drives the wait estimates. ``payload`` is the scheduler's job.
    """

    persona: str
    model: str
    priority: str = "interactive"
    work_tokens: int = 256
    payload: Any = None
    client: str = ""  # who asked (a hermes process or an API client): fairness between them
    seq: int = 0
    enqueued_at: float = field(default_factory=time.monotonic)
    started: bool = False  # has run at least one slice (a preempted request is re-queued)

    @property
    def rank(self) -> int:
        return PRIORITIES.index(self.priority) if self.priority in PRIORITIES else 0


@dataclass(frozen=True)
class QueuedInfo:
    """A waiting request as shown on the dashboard."""

    persona: str
    model: str
    priority: str
    waited_s: float
    wait_estimate_s: float
    preempted: bool


class AdmissionQueue:
    """Bounded, priority- and fairness-ordered collection of waiting requests.

    Order: priority class (interactive first, see ``PRIORITIES``), then the client served least
    recently, then the persona served least recently (round-robin in effect: one that just got a
    slice goes to the back), then FIFO.
    Only requests that have not started count against ``maxsize``: a preempted request that
    gives up its model for a time slice is re-queued without being refused.
    """

    def __init__(self, maxsize: int, priorities: tuple[str, ...] = PRIORITIES) -> None:
        self.maxsize = max(1, maxsize)
        self.priorities = tuple(priorities)
        self._waiting: list[Request] = []
        self._seq = itertools.count()
        self._serve_clock = itertools.count(1)
        self._last_served: dict[str, int] = {}
        self._client_served: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._waiting)

    def __contains__(self, req: object) -> bool:
        return req in self._waiting

    @property
    def new_waiting(self) -> int:
        return sum(1 for r in self._waiting if not r.started)

    def admit(self, req: Request) -> None:
        """Add a new request or raise ``PoolBusyError`` at once when the queue is full."""
        if self.new_waiting >= self.maxsize:
            raise PoolBusyError(
                f"pool busy: {self.new_waiting} requests queued "
                f"(queue_size={self.maxsize}); try again"
            )
        req.seq = next(self._seq)
        req.enqueued_at = time.monotonic()
        self._waiting.append(req)

    def requeue(self, req: Request) -> None:
        """Put a preempted request back (never refused; it keeps its original sequence)."""
        req.started = True
        if req not in self._waiting:
            self._waiting.append(req)

    def remove(self, req: Request) -> None:
        if req in self._waiting:
            self._waiting.remove(req)

    def mark_served(self, persona: str, client: str = "") -> None:
        """Record that ``persona`` (of ``client``) just got the model: both go to the back."""
        tick = next(self._serve_clock)
        self._last_served[persona] = tick
        self._client_served[client] = tick

    def rank(self, req: Request) -> int:
        order = self.priorities
        return order.index(req.priority) if req.priority in order else 0

    def ordered(self) -> list[Request]:
        return sorted(
            self._waiting,
            key=lambda r: (
                self.rank(r),
                self._client_served.get(r.client, 0),
                self._last_served.get(r.persona, 0),
                r.seq,
            ),
        )

    def estimates(
        self,
        seconds_for: Callable[[Request], float],
        busy_s: Callable[[str], float],
        group_of: Callable[[Request], str],
    ) -> list[QueuedInfo]:
        """Wait estimates, in queue order.

        Requests in one group (a device: its compute is shared) are served one after another,
        so a request waits for what runs on its group now (``busy_s``) plus the work of every
        request ahead of it in the same group (``seconds_for``, from measured tokens/s).
        """
        now = time.monotonic()
        ahead: dict[str, float] = {}
        out: list[QueuedInfo] = []
        for req in self.ordered():
            group = group_of(req)
            if group not in ahead:
                ahead[group] = busy_s(group)
            out.append(
                QueuedInfo(
                    persona=req.persona,
                    model=req.model,
                    priority=req.priority,
                    waited_s=now - req.enqueued_at,
                    wait_estimate_s=ahead[group],
                    preempted=req.started,
                )
            )
            ahead[group] += seconds_for(req)
        return out

    def personas(self) -> Iterable[str]:
        return {r.persona for r in self._waiting}
