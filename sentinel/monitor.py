"""The monitor: reads one message as it streams and runs every check on it.

The producer (the persona's stream) calls ``feed`` which never blocks and never drops text:
pieces go into a bounded queue, and when the queue is full they are coalesced into an
overflow buffer that the consumer takes as one piece once it catches up. Checks run in a
consumer task; the judge runs in its own process; verdicts go to ``on_verdict``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from sentinel.checks import build_checks
from sentinel.checks.base import Check
from sentinel.checks.stall import StallWatchdog
from sentinel.contract import Contract
from sentinel.decision import Decision, decide
from sentinel.settings import SentinelSettings
from sentinel.verdict import Verdict

if TYPE_CHECKING:
    from sentinel.judge import JudgeWorker

VerdictCallback = Callable[[Verdict], Awaitable[None] | None]

# The checks see at most this many characters per call, and the consumer yields to the event
# loop between such slices: a 5 MB piece (coalesced overflow, or one huge token) never holds
# the loop for more than one slice's worth of work (benchmarks/bench_sentinel_stall.py).
CHUNK_CHARS = 256


class Monitor:
    """Watches one message. Create, ``start()``, ``feed()`` each piece, ``await finish()``."""

    def __init__(
        self,
        contract: Contract,
        settings: SentinelSettings,
        on_verdict: VerdictCallback | None = None,
        judge: JudgeWorker | None = None,
        instructions: str = "",
        checks: list[Check] | None = None,
    ) -> None:
        self.contract = contract
        self.settings = settings
        self.on_verdict = on_verdict
        self.judge = judge
        self.instructions = instructions
        self.checks = checks if checks is not None else build_checks(contract, settings)
        self.verdicts: list[Verdict] = []
        self.halt = asyncio.Event()  # set on the first critical verdict
        self._seen: list[str] = []  # what the checks have seen so far (joined on demand)
        self.seen_chars = 0
        self._queue: asyncio.Queue[str | None] = asyncio.Queue(maxsize=settings.queue_size)
        self._overflow: list[str] = []
        self._consumer: asyncio.Task[None] | None = None
        self._watchdog_task: asyncio.Task[None] | None = None
        self._judge_task: asyncio.Task[None] | None = None
        self._judged_upto = 0
        self._unjudged: int | None = None  # where a judge request went unanswered, if one did
        self._received = 0  # characters fed by the producer
        self.watchdog = StallWatchdog(
            settings.stall_warn_s, settings.stall_halt_s, severity=dict(settings.severity) or None
        )
        self.stats = {"coalesced": 0, "pieces": 0}

    @property
    def text(self) -> str:
        """Everything the checks have seen so far."""
        if len(self._seen) > 1:
            self._seen = ["".join(self._seen)]
        return self._seen[0] if self._seen else ""

    # -- producer side -------------------------------------------------------------------
    def start(self) -> None:
        self._consumer = asyncio.create_task(self._consume(), name="sentinel-consumer")

    def feed(self, piece: str) -> None:
        """Hand one piece to the checks; returns at once (never awaits, never drops text)."""
        if self._watchdog_task is None:
            # Armed by the first token: time spent queued for the model or prefilling the
            # prompt is the pool's business (it has wait estimates), not a stall.
            self._watchdog_task = asyncio.create_task(self._watch_stalls(), name="sentinel-stall")
        self._feed(piece)

    def _feed(self, piece: str) -> None:
        self._received += len(piece)
        self.watchdog.touch(self._received)
        if self._overflow or self._queue.full():
            self._overflow.append(piece)
            self.stats["coalesced"] += 1
        else:
            self._queue.put_nowait(piece)

    async def finish(self, corrections_used: int = 0, *, cut_off: bool = False) -> Decision:
        """Drain the queue, run the end-of-message checks, and decide what happens next.

        ``cut_off``: the answer stopped at its token limit, so its last word is unfinished;
        checks that judge words (``finish_cut_off``) leave that one alone."""
        await self._stop_consumer()
        for check in self.checks:
            end = getattr(check, "finish_cut_off", None) if cut_off else None
            await self._emit_all(self._safe(end or check.finish, check))
        if self._judge_task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._judge_task, timeout=1.0)
        if self.judge is not None:  # an outage nobody asked about yet (the judge never started)
            for down in self.judge.take_down_verdicts():
                await self._emit(down)
            if self._unjudged is not None and not any(
                v.code == "E_SENTINEL_DOWN" for v in self.verdicts
            ):
                # Every turn the judge missed says so (one line), not only the one it hung on.
                at = self._unjudged
                await self._emit(
                    Verdict(
                        "judge",
                        "minor",
                        "E_SENTINEL_DOWN",
                        (at, at),
                        f"not judged: no answer from the judge within "
                        f"{self.settings.judge_timeout_s:g} s (judge_timeout_s); "
                        "the other checks ran",
                    )
                )
        return decide(self.verdicts, self.contract, corrections_used, self.settings.max_corrections)

    async def cancel(self) -> None:
        """Stop without a decision (the turn was cancelled or failed): no verdict may follow."""
        await self._stop_consumer()
        if self._judge_task is not None and not self._judge_task.done():
            self._judge_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._judge_task

    # -- consumer side -------------------------------------------------------------------
    async def _stop_consumer(self) -> None:
        if self._watchdog_task:
            self._watchdog_task.cancel()
        if self._consumer and not self._consumer.done():
            await self._queue.put(None)  # after every queued piece; overflow is taken last
            await self._consumer

    async def _consume(self) -> None:
        while True:
            piece = await self._queue.get()
            if piece is None:
                if self._overflow:
                    await self._check("".join(self._overflow))
                    self._overflow.clear()
                return
            if self._queue.empty() and self._overflow:
                # Pieces that arrived while the queue was full, in order, as one piece.
                piece += "".join(self._overflow)
                self._overflow.clear()
            await self._check(piece)

    async def _check(self, piece: str) -> None:
        if len(piece) > CHUNK_CHARS:
            for i in range(0, len(piece), CHUNK_CHARS):
                if i:
                    await asyncio.sleep(0)
                await self._check_one(piece[i : i + CHUNK_CHARS])
            return
        await self._check_one(piece)

    async def _check_one(self, piece: str) -> None:
        self.stats["pieces"] += 1
        self._seen.append(piece)
        self.seen_chars += len(piece)
        for check in self.checks:
            await self._emit_all(self._safe(check.feed, check, piece))
        self._maybe_judge()

    def _safe(self, fn: Callable[..., list[Verdict]], check: Check, *args: Any) -> list[Verdict]:
        """A bug in one check must not take the stream down: report it as E_SENTINEL_DOWN."""
        try:
            return fn(*args)
        except Exception as exc:  # noqa: BLE001 - isolate faulty checks
            end = self.seen_chars
            return [
                Verdict(
                    getattr(check, "name", "?"),
                    "minor",
                    "E_SENTINEL_DOWN",
                    (end, end),
                    f"check {getattr(check, 'name', '?')} failed: {exc!r}",
                )
            ]

    async def _emit_all(self, verdicts: list[Verdict]) -> None:
        for v in verdicts:
            await self._emit(v)

    async def _emit(self, verdict: Verdict) -> None:
        override = self.settings.severity.get(verdict.code)
        if override and override != verdict.severity:
            verdict = Verdict(verdict.check, override, verdict.code, verdict.span, verdict.detail)
        self.verdicts.append(verdict)
        if verdict.severity == "critical":
            self.halt.set()
        if self.on_verdict is not None:
            result = self.on_verdict(verdict)
            if asyncio.iscoroutine(result):
                await result

    async def _watch_stalls(self) -> None:
        while True:
            await asyncio.sleep(0.25)
            await self._emit_all(self.watchdog.poll(time.monotonic()))

    # -- the judge (its own process; only ever minor) --------------------------------------
    def _maybe_judge(self) -> None:
        if self.judge is None or (self._judge_task and not self._judge_task.done()):
            return
        if self.seen_chars - self._judged_upto < self.settings.judge_every_chars:
            return
        self._judged_upto = self.seen_chars
        self._judge_task = asyncio.create_task(self._ask_judge(self._judged_upto))

    async def _ask_judge(self, upto: int) -> None:
        from sentinel.judge import JudgeRequest, to_verdict

        assert self.judge is not None  # only asked when there is a judge
        request = JudgeRequest.tail(self.contract.kind, self.instructions, self.text[:upto])
        result = await self.judge.judge(request, timeout_s=self.settings.judge_timeout_s)
        # A judge that died or hung answers None; its outage verdicts are reported here, on
        # the message that was being judged (the worker restarts itself in the background).
        for down in self.judge.take_down_verdicts():
            await self._emit(down)
        if result is None and self._unjudged is None:
            self._unjudged = upto
        verdict = to_verdict(result, request.span)
        if verdict is not None:
            await self._emit(verdict)
