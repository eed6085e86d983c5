"""Admission for remote endpoints: a bounded, fair queue in front of each server.

A remote model takes no local memory, but its server has a concurrency limit
(``ModelSpec.max_concurrency``). Without a gate, requests beyond the limit would wait without
bound, invisible to the dashboard. Here each endpoint (base URL) gets the same kind of
``AdmissionQueue`` local models have: at most ``queue_size`` requests wait (more get
``PoolBusyError`` at once, batch mode exits 3), interactive work goes before batch, personas
take turns, and every waiting request has a wait estimate from the endpoint's measured speed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from agents.pool.queue import AdmissionQueue, QueuedInfo, Request


def _constant(value: float) -> Callable[[str], float]:
    return lambda _group: value


DEFAULT_TPS = 20.0  # tokens/s assumed for an endpoint before anything was measured
FIRST = asyncio.FIRST_COMPLETED


class SeatCancelled(Exception):
    """The request was cancelled before a seat came free (nothing was sent to the server)."""


@dataclass
class Endpoint:
    """One server: its seats, who holds them, who waits, and how fast it has been."""

    url: str
    capacity: int
    queue: AdmissionQueue
    running: list[Request] = field(default_factory=list)
    started: dict[int, float] = field(default_factory=dict)  # id(request) -> monotonic start
    tps: float | None = None  # measured tokens/s of one stream (moving average)

    def seconds_for(self, req: Request) -> float:
        return req.work_tokens / (self.tps or DEFAULT_TPS)

    def busy_s(self) -> float:
        """Time until the first seat frees, from what the running requests still have to do."""
        if len(self.running) < self.capacity:
            return 0.0
        now = time.monotonic()
        left = [
            max(0.0, self.seconds_for(r) - (now - self.started.get(id(r), now)))
            for r in self.running
        ]
        return min(left, default=0.0)


class RemoteGate:
    """Seats requests on remote endpoints, at most ``capacity`` at a time per endpoint."""

    def __init__(self, queue_size: int) -> None:
        self.queue_size = queue_size
        self.endpoints: dict[str, Endpoint] = {}
        self._wakeups: dict[int, asyncio.Future[None]] = {}

    def endpoint(self, url: str, capacity: int) -> Endpoint:
        key = url.rstrip("/")
        if key not in self.endpoints:  # the first limit configured for a server wins
            self.endpoints[key] = Endpoint(key, max(1, capacity), AdmissionQueue(self.queue_size))
        return self.endpoints[key]

    @asynccontextmanager
    async def seat(
        self, url: str, capacity: int, req: Request, cancel: asyncio.Event | None = None
    ) -> AsyncIterator[Endpoint]:
        """Hold a seat on ``url`` for the body.

        Raises ``PoolBusyError`` when the endpoint's queue is full, and ``SeatCancelled`` when
        ``cancel`` is set while the request still waits (Esc on a queued turn).
        """
        ep = self.endpoint(url, capacity)
        if len(ep.running) < ep.capacity and not len(ep.queue):
            ep.running.append(req)
        else:
            ep.queue.admit(req)  # may raise PoolBusyError: nothing was taken yet
            wakeup = asyncio.get_running_loop().create_future()
            self._wakeups[id(req)] = wakeup
            stop = asyncio.ensure_future(cancel.wait()) if cancel is not None else None
            try:
                # _wake_next puts the request in ep.running before it wakes it
                await asyncio.wait([f for f in (wakeup, stop) if f is not None], return_when=FIRST)
                if not wakeup.done():
                    raise SeatCancelled(f"cancelled while waiting for {ep.url}")
            except BaseException:
                if req in ep.queue:
                    ep.queue.remove(req)
                elif req in ep.running:  # woken, then cancelled before it started
                    ep.running.remove(req)
                    self._wake_next(ep)
                raise
            finally:
                self._wakeups.pop(id(req), None)
                if stop is not None:
                    stop.cancel()
        ep.queue.mark_served(req.persona, req.client)
        ep.started[id(req)] = time.monotonic()
        try:
            yield ep
        finally:
            ep.running.remove(req)
            ep.started.pop(id(req), None)
            self._wake_next(ep)

    def record_speed(self, ep: Endpoint, tokens: int, seconds: float) -> None:
        """Feed the wait estimates with one finished stream's speed."""
        if tokens > 1 and seconds > 0:
            tps = tokens / seconds
            ep.tps = tps if ep.tps is None else 0.7 * ep.tps + 0.3 * tps

    def _wake_next(self, ep: Endpoint) -> None:
        """Give free seats to the first waiting requests (in queue order)."""
        while len(ep.running) < ep.capacity and len(ep.queue):
            nxt = ep.queue.ordered()[0]
            ep.queue.remove(nxt)
            wakeup = self._wakeups.get(id(nxt))
            if wakeup is not None and not wakeup.done():
                ep.running.append(nxt)  # the seat is taken now, before the waiter runs
                wakeup.set_result(None)

    # -- reporting -----------------------------------------------------------------------
    def running(self) -> list[tuple[str, str]]:
        return [(r.persona, r.model) for ep in self.endpoints.values() for r in ep.running]

    def waiting(self) -> list[QueuedInfo]:
        out: list[QueuedInfo] = []
        for ep in self.endpoints.values():
            busy = ep.busy_s()
            out += ep.queue.estimates(ep.seconds_for, _constant(busy), lambda _r: "")
        return out

    def waiting_count(self) -> int:
        return sum(len(ep.queue) for ep in self.endpoints.values())
