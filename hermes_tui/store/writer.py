"""The writer task: the one owner of the write connection.

Every write is an operation put on an ``asyncio.Queue`` and executed by a single task. The
task drains whatever is queued and runs it as one transaction (one commit, one fsync at most),
so a burst of verdicts and checkpoints from three personas costs one commit, and no two
coroutines ever interleave statements of different transactions on one connection.

Streaming checkpoints are coalesced: ``checkpoint`` only records the latest text of a message
in a dict and queues a marker the first time; the writer writes whatever is latest when it
reaches the marker. A model streaming faster than the disk therefore never grows the queue,
and the on-disk text is at most one writer batch behind.

Writes that nobody waits for (``enqueue``: what the runtime's recorder sends while a turn
streams) go on the same queue, bounded: at most ``MAX_QUEUED`` of them wait uncommitted, and
a caller beyond that waits for room (nothing is dropped). A message inserted that way has no
id until its insert commits, so it is named by a ``MessageRef`` that the insert fills in;
later writes of the same message (checkpoints, the final text, its verdicts) read the id from
it when the writer runs them, which is always after the insert (one queue, in order).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite

from hermes_tui.store.errors import DB_ERRORS, StoreError, map_error

log = logging.getLogger(__name__)

# Upper bound of operations per writer transaction: keeps one batch's latency bounded even if
# something floods the queue.
MAX_BATCH = 1000
# Upper bound of queued writes nobody waits for (``enqueue``); more wait for room.
MAX_QUEUED = 10_000

WriteFn = Callable[[aiosqlite.Connection], Awaitable[Any]]


@dataclass(eq=False, slots=True)
class MessageRef:
    """A message whose insert is queued: ``id`` is set when that insert commits (None before,
    or if it failed). Accepted wherever a write takes a message id."""

    id: int | None = None


MessageKey = int | MessageRef


def message_id(key: MessageKey | None) -> int | None:
    """The id a write should use now (None: no message, or one never stored)."""
    return key.id if isinstance(key, MessageRef) else key


@dataclass(slots=True)
class _Op:
    """One queued write. ``fn`` None with a future is a flush marker; kind 'ckpt' is a marker
    whose text is taken from the pending-checkpoint dict when the writer reaches it."""

    fn: WriteFn | None
    fut: asyncio.Future[Any] | None = None
    kind: str = "op"
    message: MessageKey = 0
    bounded: bool = False  # counted against MAX_QUEUED until its batch is done
    ref: MessageRef | None = None  # the message this op inserts (its id forgotten on rollback)


_STOP = _Op(fn=None, kind="stop")


class Writer:
    """Runs queued writes on ``conn`` in batched transactions (see the module docstring)."""

    def __init__(self, conn: aiosqlite.Connection, path: Path, busy_timeout_ms: int) -> None:
        self.conn = conn
        self.path = path
        self.busy_timeout_ms = busy_timeout_ms
        self._queue: asyncio.Queue[_Op] = asyncio.Queue()
        self._pending_ckpt: dict[MessageKey, tuple[str, int]] = {}
        self._room = asyncio.Semaphore(MAX_QUEUED)
        self._bg_error: StoreError | None = None
        self._task = asyncio.create_task(self._loop(), name="hermes-store-writer")

    async def submit(self, fn: WriteFn) -> Any:
        """Queue a write and wait until its transaction commits; returns ``fn``'s result."""
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Op(fn=fn, fut=fut))
        return await fut

    def submit_nowait(self, fn: WriteFn) -> None:
        """Queue a write without waiting; a failure is raised by the next ``flush``."""
        self._queue.put_nowait(_Op(fn=fn))

    async def enqueue(self, fn: WriteFn, ref: MessageRef | None = None) -> None:
        """Queue a write nobody waits for; returns at once unless ``MAX_QUEUED`` such writes
        are already waiting (then when there is room). A failure is raised by the next
        ``flush``. ``ref``: the message ``fn`` inserts."""
        await self._room.acquire()
        self._queue.put_nowait(_Op(fn=fn, bounded=True, ref=ref))

    def checkpoint(self, message: MessageKey, content: str, tokens: int) -> None:
        """Record the latest text of a streaming message; written when the writer gets to it."""
        first = message not in self._pending_ckpt
        self._pending_ckpt[message] = (content, int(tokens))
        if first:
            self._queue.put_nowait(_Op(fn=None, kind="ckpt", message=message))

    def drop_checkpoint(self, message: MessageKey) -> None:
        """Forget a pending checkpoint (the final text supersedes it)."""
        self._pending_ckpt.pop(message, None)

    async def flush(self) -> None:
        """Wait until every write queued so far is committed; raise a background failure."""
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Op(fn=None, fut=fut))
        try:
            await fut
        except StoreError:
            self._bg_error = None  # told now, through this flush's own failure
            raise
        if self._bg_error is not None:
            err, self._bg_error = self._bg_error, None
            raise err

    async def stop(self) -> None:
        """Commit everything queued, then end the task."""
        self._queue.put_nowait(_STOP)
        try:
            await self._task
        except Exception:  # already logged by the loop
            pass

    async def _loop(self) -> None:
        stop = False
        while not stop:
            batch = [await self._queue.get()]
            while len(batch) < MAX_BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except asyncio.QueueEmpty:
                    break
            stop = any(op is _STOP for op in batch)
            ops = [op for op in batch if op is not _STOP]
            if ops:
                try:
                    await self._run_batch(ops)
                except BaseException as exc:  # a bug, or cancellation: fail, never hang
                    log.exception("store writer failed")
                    err = StoreError(f"database {self.path}: writer failed ({exc})")
                    for op in ops:
                        self._forget_ref(op)
                        self._fail(op, err, report=False)
                    if not isinstance(exc, Exception):
                        raise
                finally:
                    for op in ops:
                        if op.bounded:
                            self._room.release()

    async def _run_batch(self, ops: list[_Op]) -> None:
        conn = self.conn
        results: list[tuple[_Op, Any, BaseException | None]] = []
        try:
            await conn.execute("BEGIN IMMEDIATE")
            for op in ops:
                fn = op.fn
                if op.kind == "ckpt":
                    pending = self._pending_ckpt.pop(op.message, None)
                    mid = message_id(op.message)
                    if pending is None or mid is None:  # superseded, written, or never stored
                        continue
                    fn = checkpoint_fn(mid, *pending)
                if fn is None:
                    results.append((op, None, None))
                    continue
                await conn.execute("SAVEPOINT op")
                try:
                    value = await fn(conn)
                except UnicodeDecodeError:  # damaged database, not a bad operation
                    raise
                except (sqlite3.IntegrityError, sqlite3.InterfaceError, ValueError) as exc:
                    # This one operation was bad (e.g. unknown session id); keep the batch.
                    await conn.execute("ROLLBACK TO op")
                    await conn.execute("RELEASE op")
                    results.append((op, None, exc))
                    continue
                await conn.execute("RELEASE op")
                results.append((op, value, None))
            await conn.execute("COMMIT")
        except DB_ERRORS as exc:
            if conn.in_transaction:
                try:
                    await conn.execute("ROLLBACK")
                except DB_ERRORS:
                    pass
            err = map_error(exc, self.path, self.busy_timeout_ms)
            for op in ops:
                self._forget_ref(op)
                self._fail(op, err)
            # The cause of what fails next (a message whose insert this rolled back): the next
            # flush reports this (a full disk), not "no message" for a later write.
            if self._bg_error is None:
                self._bg_error = err
            return
        for op, value, exc in results:
            if exc is None:
                if op.fut is not None and not op.fut.done():
                    op.fut.set_result(value)
            else:
                err = StoreError(f"database {self.path}: write rejected ({exc})")
                err.__cause__ = exc
                self._fail(op, err)

    @staticmethod
    def _forget_ref(op: _Op) -> None:
        """The batch rolled back: an id its insert got is not the message's (SQLite may give
        it to the next insert), so later writes of that message must not use it."""
        if op.ref is not None:
            op.ref.id = None

    def _fail(self, op: _Op, err: StoreError, *, report: bool = True) -> None:
        if op.fut is not None:
            if not op.fut.done():
                op.fut.set_exception(err)
        else:  # fire-and-forget write: report on the next flush()
            log.warning("%s", err)
            if report and self._bg_error is None:  # the first failure is the one to tell
                self._bg_error = err


def _resolved(params: Sequence[Any]) -> list[Any]:
    """``params`` with each ``MessageRef`` replaced by its id, now that the writer runs (None
    if its insert failed: a verdict is then kept without its message)."""
    return [p.id if isinstance(p, MessageRef) else p for p in params]


def insert_fn(
    sql: str, params: Sequence[Any], ref: MessageRef | None = None
) -> Callable[[aiosqlite.Connection], Awaitable[int]]:
    """A write that inserts one row and returns its id (also given to ``ref``, if any)."""

    async def run(conn: aiosqlite.Connection) -> int:
        cur = await conn.execute(sql, _resolved(params))
        rowid = cur.lastrowid
        await cur.close()
        assert rowid is not None
        if ref is not None:
            ref.id = rowid
        return rowid

    return run


def exec_fn(
    sql: str, params: Sequence[Any], must_change: str | None = None
) -> Callable[[aiosqlite.Connection], Awaitable[int]]:
    """A write that returns how many rows it changed (``must_change``: fail if none)."""

    async def run(conn: aiosqlite.Connection) -> int:
        cur = await conn.execute(sql, _resolved(params))
        count = cur.rowcount
        await cur.close()
        if must_change and count == 0:
            raise ValueError(must_change)
        return count

    return run


def checkpoint_fn(
    message_id: int, content: str, tokens: int
) -> Callable[[aiosqlite.Connection], Awaitable[int]]:
    return exec_fn(
        "UPDATE messages SET content = ?, tokens = ? WHERE id = ? AND status = 'streaming'",
        (content, tokens, message_id),
    )
