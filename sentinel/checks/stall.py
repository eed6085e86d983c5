"""The stall watchdog: a stream that stops producing tokens.

Not a text check: the sentinel calls ``touch(offset)`` for each token and ``poll(now)`` on a
timer. The clock is injectable so tests never sleep.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sentinel.checks.patterns import severity_for
from sentinel.verdict import Verdict


class StallWatchdog:
    """E_STALL minor after ``warn_s`` without a token, critical after ``halt_s``; each once
    per silence (a new token re-arms both)."""

    name = "stall"

    def __init__(
        self,
        warn_s: float,
        halt_s: float,
        clock: Callable[[], float] = time.monotonic,
        severity: dict[str, str] | None = None,
    ) -> None:
        if not 0 < warn_s <= halt_s:
            raise ValueError("need 0 < warn_s <= halt_s")
        self.warn_s = warn_s
        self.halt_s = halt_s
        self.clock = clock
        self._warn_sev = severity_for("E_STALL", severity)
        self._last = clock()
        self._offset = 0
        self._warned = False
        self._halted = False

    def touch(self, offset: int | None = None) -> None:
        """A token arrived; ``offset`` is the message length so far."""
        self._last = self.clock()
        if offset is not None:
            self._offset = offset
        self._warned = False
        self._halted = False

    def poll(self, now: float | None = None) -> list[Verdict]:
        now = self.clock() if now is None else now
        idle = now - self._last
        out: list[Verdict] = []
        span = (self._offset, self._offset)
        if idle >= self.warn_s and not self._warned:
            self._warned = True
            out.append(
                Verdict(self.name, self._warn_sev, "E_STALL", span, f"no token for {idle:.1f}s")
            )
        if idle >= self.halt_s and not self._halted:
            self._halted = True
            out.append(
                Verdict(
                    self.name, "critical", "E_STALL", span, f"no token for {idle:.1f}s; halting"
                )
            )
        return out
