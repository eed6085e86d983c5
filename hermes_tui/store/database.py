"""``Store``: opening and closing the database, and the write methods (run by the writer task).

Reads come from ``Queries`` and ``Search``; the package docstring says why it works this way.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import aiosqlite

from agents.events import FINAL_STATUSES
from hermes_tui.store.errors import DB_ERRORS, StoreError, map_error
from hermes_tui.store.files import WritersLock, default_db_path, immutable_uri, prepare_file, uri
from hermes_tui.store.inspect import FIRST_TABLE_SQL, schema_problem
from hermes_tui.store.migrations import SCHEMA_VERSION, migrate, too_new, user_version
from hermes_tui.store.queries import Queries
from hermes_tui.store.search import Search
from hermes_tui.store.times import TimeLike, to_ts
from hermes_tui.store.writer import (
    MessageKey,
    MessageRef,
    WriteFn,
    Writer,
    exec_fn,
    insert_fn,
)
from sentinel.verdict import Verdict

if TYPE_CHECKING:
    from agents.pool.scheduler import PoolEvent

DEFAULT_BUSY_TIMEOUT_MS = 5000


class Store(Queries, Search):
    """The hermes database. Create with ``await Store.open(path)``; ``await close()`` at exit.

    Write methods that return something (ids) or must be durable before the caller goes on
    (``finish_message``) wait for their transaction to commit. ``checkpoint_message``,
    ``add_pool_event`` and the ``queue_*`` methods (the runtime's recorder: a streaming turn
    never waits for the disk) only enqueue; ``flush()`` waits until everything queued is
    committed and raises if one of those background writes failed.
    """

    def __init__(
        self,
        path: Path,
        *,
        readonly: bool,
        busy_timeout_ms: int,
        write_conn: aiosqlite.Connection | None,
        read_conn: aiosqlite.Connection,
    ) -> None:
        self.path = path
        self.readonly = readonly
        self.busy_timeout_ms = busy_timeout_ms
        self.recovered = 0  # messages marked interrupted when this store opened
        self._writers_lock: WritersLock | None = None
        self._w = write_conn
        self._r = read_conn
        self._r.row_factory = sqlite3.Row  # rows are read by column name
        self._closed = False
        self._writer: Writer | None = None
        if write_conn is not None:
            self._writer = Writer(write_conn, path, busy_timeout_ms)

    # ---- opening / closing -----------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        path: Path | str | None = None,
        *,
        readonly: bool = False,
        busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
    ) -> Store:
        """Open (creating and migrating if writable) the database at ``path``.

        ``readonly=True`` opens with a ``mode=ro`` URI, e.g. to review someone else's
        database: nothing is created, migrated, recovered or written.
        """
        path = Path(path).expanduser() if path is not None else default_db_path()
        if readonly:
            if not path.is_file():
                raise StoreError(f"no hermes database at {path}; check the path")
            target = uri(path, "ro")
        else:
            prepare_file(path)
            target = uri(path, "rw")

        conns: list[aiosqlite.Connection] = []
        try:
            try:
                first = await cls._connect(target, busy_timeout_ms)
            except sqlite3.OperationalError as exc:
                fallback = immutable_uri(path, exc) if readonly else None
                if fallback is None:
                    raise
                first = await cls._connect(fallback, busy_timeout_ms)
            conns.append(first)
            if readonly:
                version = await user_version(first)
                if version > SCHEMA_VERSION:
                    raise too_new(path, version)
                if version < SCHEMA_VERSION:
                    what = "not a hermes database" if version == 0 else "from an older hermes"
                    raise StoreError(
                        f"database {path} has schema version {version} ({what}; this hermes "
                        f"uses {SCHEMA_VERSION}); open it once writable with hermes to upgrade"
                    )
                return cls(
                    path,
                    readonly=True,
                    busy_timeout_ms=busy_timeout_ms,
                    write_conn=None,
                    read_conn=first,
                )
            # Refuse a newer or foreign database before touching it (WAL rewrites the header).
            version = await user_version(first)
            first_table = None
            if version == 0:
                async with first.execute(FIRST_TABLE_SQL) as cur:
                    row = await cur.fetchone()
                first_table = row[0] if row is not None else None
            problem = schema_problem(path, version, first_table)
            if problem is not None:
                raise problem
            async with first.execute("PRAGMA journal_mode=WAL") as cur:
                row = await cur.fetchone()
            if row is None or str(row[0]).lower() != "wal":
                raise StoreError(
                    f"database {path} cannot use WAL journaling ({row and row[0]}); "
                    "put it on a local disk"
                )
            await first.execute_fetchall("PRAGMA synchronous=NORMAL")  # see package docstring
            await migrate(first, path=path)
            reader = await cls._connect(target, busy_timeout_ms)
            conns.append(reader)
            await reader.execute_fetchall("PRAGMA query_only=ON")
            store = cls(
                path,
                readonly=False,
                busy_timeout_ms=busy_timeout_ms,
                write_conn=first,
                read_conn=reader,
            )
        except StoreError:
            await _close_all(conns)
            raise
        except (*DB_ERRORS, OSError) as exc:
            await _close_all(conns)
            if "unable to open" in str(exc) and not os.access(path.parent, os.W_OK | os.X_OK):
                raise StoreError(
                    f"database {path} cannot be written: SQLite must create {path.name}-wal "
                    f"and {path.name}-shm in {path.parent}, which is read-only; fix its "
                    "permissions, pass a writable database path, or open it read-only for review"
                ) from exc
            raise map_error(exc, path, busy_timeout_ms, readonly=readonly) from exc
        store._writers_lock = WritersLock(path)
        try:
            if store._writers_lock.alone():
                store.recovered = await store.recover_interrupted()
            await store._writers_lock.share()
        except BaseException:  # StoreError, or cancelled: leave nothing open or locked
            await store.close()
            raise
        return store

    @staticmethod
    async def _connect(target: str, busy_timeout_ms: int) -> aiosqlite.Connection:
        conn = aiosqlite.connect(
            target, uri=True, isolation_level=None, timeout=busy_timeout_ms / 1000
        )
        # aiosqlite's worker thread is non-daemon: a store someone forgot to close (a crashed
        # screen, a failed test) would keep the process alive forever at exit. Every write is
        # committed by the writer task, so letting the thread die with the process loses nothing.
        thread = getattr(conn, "_thread", None)
        if thread is not None and not thread.is_alive():
            thread.daemon = True
        conn = await conn
        try:
            await conn.execute_fetchall(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
            await conn.execute_fetchall("PRAGMA foreign_keys=ON")
            # Touch the schema now so a corrupt or non-database file fails at open.
            await conn.execute_fetchall("SELECT count(*) FROM sqlite_schema")
        except BaseException:
            await conn.close()
            raise
        return conn

    async def close(self) -> None:
        """Commit everything queued, stop the writer and close both connections."""
        if self._closed:
            return
        self._closed = True
        if self._writer is not None:
            await self._writer.stop()
        if self._w is not None:
            try:
                await self._w.execute_fetchall("PRAGMA optimize")
            except DB_ERRORS:
                pass
        await _close_all([c for c in (self._r, self._w) if c is not None])
        if self._writers_lock is not None:
            self._writers_lock.release()

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ---- writes ----------------------------------------------------------------------------

    def _writable(self) -> Writer:
        if self.readonly or self._writer is None:
            raise StoreError(f"database {self.path} is open read-only; nothing can be saved")
        if self._closed:
            raise StoreError(f"database {self.path} is closed")
        return self._writer

    async def flush(self) -> None:
        """Wait until every write queued so far is committed.

        Raises the error of a background write (checkpoint, pool event) that failed since
        the last flush, so those failures are not silent.
        """
        await self._writable().flush()

    async def create_session(
        self,
        mode: str,
        *,
        config_hash: str = "",
        title: str = "",
        personas: Sequence[str] = (),
        started: TimeLike | None = None,
    ) -> int:
        """Start a session; returns its id."""
        params = (
            to_ts(started) or time.time(),
            mode,
            config_hash,
            title,
            json.dumps(list(personas)),
        )
        result: int = await self._writable().submit(
            insert_fn(
                "INSERT INTO sessions(started, mode, config_hash, title, personas) "
                "VALUES (?, ?, ?, ?, ?)",
                params,
            )
        )
        return result

    async def update_session(
        self, session_id: int, *, title: str | None = None, personas: Sequence[str] | None = None
    ) -> None:
        """Change a session's title and/or personas (e.g. once the first prompt is known)."""
        sets: list[str] = []
        params: list[object] = []
        if title is not None:
            sets.append("title = ?")
            params.append(title)
        if personas is not None:
            sets.append("personas = ?")
            params.append(json.dumps(list(personas)))
        if sets:
            sql = f"UPDATE sessions SET {', '.join(sets)} WHERE id = ?"
            await self._writable().submit(exec_fn(sql, (*params, session_id)))

    async def start_message(
        self,
        session_id: int,
        persona: str,
        role: str = "assistant",
        *,
        content: str = "",
        hidden: bool = False,
        started: TimeLike | None = None,
    ) -> int:
        """Insert a message in status ``streaming``; returns its id for checkpoints."""
        params = (session_id, persona, role, content, to_ts(started) or time.time(), int(hidden))
        result: int = await self._writable().submit(
            insert_fn(
                "INSERT INTO messages(session_id, persona, role, content, started, hidden, status)"
                " VALUES (?, ?, ?, ?, ?, ?, 'streaming')",
                params,
            )
        )
        return result

    async def add_message(
        self,
        session_id: int,
        persona: str,
        role: str,
        content: str,
        *,
        tokens: int = 0,
        status: str = "done",
        hidden: bool = False,
        started: TimeLike | None = None,
    ) -> int:
        """Insert a complete message in one go (user prompts, system notes)."""
        if status not in FINAL_STATUSES:
            raise ValueError(f"status must be one of {FINAL_STATUSES}, not {status!r}")
        now = to_ts(started) or time.time()
        params = (session_id, persona, role, content, now, now, tokens, status, int(hidden))
        result: int = await self._writable().submit(
            insert_fn(
                "INSERT INTO messages(session_id, persona, role, content, started, finished, "
                "tokens, status, hidden) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                params,
            )
        )
        return result

    async def checkpoint_message(self, message_id: MessageKey, content: str, tokens: int) -> None:
        """Record the text streamed so far. Cheap: does not wait for the disk.

        Several checkpoints of one message before the writer gets to it become one write of
        the latest text. A checkpoint never overwrites a message that is no longer streaming.
        """
        self._writable().checkpoint(message_id, content, tokens)

    async def finish_message(
        self,
        message_id: MessageKey,
        content: str,
        tokens: int,
        status: str,
        error_code: str | None = None,
    ) -> None:
        """Store the final text and status; returns once it is committed."""
        await self._writable().submit(
            self._finish_fn(message_id, content, tokens, status, error_code)
        )

    def _finish_fn(
        self, message: MessageKey, content: str, tokens: int, status: str, error_code: str | None
    ) -> WriteFn:
        if status not in FINAL_STATUSES:
            raise ValueError(f"status must be one of {FINAL_STATUSES}, not {status!r}")
        self._writable().drop_checkpoint(message)  # the final text supersedes any checkpoint
        return exec_fn(
            "UPDATE messages SET content = ?, tokens = ?, status = ?, error_code = ?, "
            "finished = ? WHERE id = ?",
            (content, int(tokens), status, error_code, time.time(), message),
            must_change=f"no message {message}",
        )

    # ---- queued writes (the recorder: nothing here waits for a commit) ---------------------

    async def queue_message_start(
        self, session_id: int, persona: str, role: str = "assistant", *, hidden: bool = False
    ) -> MessageRef:
        """``start_message`` without waiting: the returned ref gets its id when it commits."""
        ref = MessageRef()
        params = (session_id, persona, role, "", time.time(), int(hidden))
        await self._writable().enqueue(
            insert_fn(
                "INSERT INTO messages(session_id, persona, role, content, started, hidden, status)"
                " VALUES (?, ?, ?, ?, ?, ?, 'streaming')",
                params,
                ref,
            )
        )
        return ref

    async def queue_message(
        self, session_id: int, persona: str, role: str, content: str, *, hidden: bool = False
    ) -> None:
        """``add_message`` (status done) without waiting for the commit."""
        now = time.time()
        await self._writable().enqueue(
            insert_fn(
                "INSERT INTO messages(session_id, persona, role, content, started, finished, "
                "tokens, status, hidden) VALUES (?, ?, ?, ?, ?, ?, 0, 'done', ?)",
                (session_id, persona, role, content, now, now, int(hidden)),
            )
        )

    async def queue_message_finish(
        self,
        message: MessageKey,
        content: str,
        tokens: int,
        status: str,
        error_code: str | None = None,
    ) -> None:
        """``finish_message`` without waiting for the commit."""
        fn = self._finish_fn(message, content, tokens, status, error_code)
        await self._writable().enqueue(fn)

    async def queue_verdict(
        self, session_id: int, message: MessageKey | None, persona: str, verdict: Verdict
    ) -> None:
        """``add_verdict`` without waiting for the commit."""
        await self._writable().enqueue(
            insert_fn(
                _VERDICT_SQL, _verdict_params(session_id, message, persona, verdict, time.time())
            )
        )

    async def queue_session_update(self, session_id: int, *, personas: Sequence[str]) -> None:
        """``update_session(personas=...)`` without waiting for the commit."""
        await self._writable().enqueue(
            exec_fn(
                "UPDATE sessions SET personas = ? WHERE id = ?",
                (json.dumps(list(personas)), session_id),
            )
        )

    async def add_verdict(
        self,
        session_id: int,
        message_id: int | None,
        persona: str,
        verdict: Verdict,
        *,
        at: TimeLike | None = None,
    ) -> int:
        """Store one sentinel verdict on a message; returns its id."""
        params = _verdict_params(session_id, message_id, persona, verdict, to_ts(at) or time.time())
        result: int = await self._writable().submit(insert_fn(_VERDICT_SQL, params))
        return result

    async def record_pool_event(self, event: PoolEvent) -> None:
        """A pool listener: a ``PoolEvent`` into the pool_events table (used by
        the in-process runtime and by ``hermes serve`` alike)."""
        await self.add_pool_event(
            event.kind, model=event.model, persona=event.persona, detail=event.detail, at=event.ts
        )

    async def add_pool_event(
        self,
        kind: str,
        *,
        model: str = "",
        persona: str = "",
        bytes: int = 0,  # noqa: A002 - the column's name
        wait_ms: float = 0.0,
        detail: str = "",
        at: TimeLike | None = None,
    ) -> None:
        """Record a model-pool event (load, evict, wait...). Does not wait for the disk."""
        params = (
            to_ts(at) or time.time(),
            kind,
            model,
            persona,
            int(bytes),
            float(wait_ms),
            detail,
        )
        self._writable().submit_nowait(
            exec_fn(
                "INSERT INTO pool_events(at, kind, model, persona, bytes, wait_ms, detail) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                params,
            )
        )

    async def recover_interrupted(self) -> int:
        """Mark messages left ``streaming`` by a dead process as ``interrupted``; returns how
        many. Called by ``open``; their last checkpointed text is kept."""
        result: int = await self._writable().submit(
            exec_fn(
                "UPDATE messages SET status = 'interrupted', "
                "finished = coalesce(finished, ?) WHERE status = 'streaming'",
                (time.time(),),
            )
        )
        return result


_VERDICT_SQL = (
    "INSERT INTO verdicts(message_id, session_id, persona, check_name, severity, "
    "code, span_start, span_end, detail, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _verdict_params(
    session_id: int, message: MessageKey | None, persona: str, verdict: Verdict, at: float
) -> tuple[object, ...]:
    return (
        message,
        session_id,
        persona,
        verdict.check,
        verdict.severity,
        verdict.code,
        int(verdict.span[0]),
        int(verdict.span[1]),
        verdict.detail,
        at,
    )


async def _close_all(conns: Sequence[aiosqlite.Connection]) -> None:
    for conn in conns:
        try:
            await conn.close()
        except Exception:  # closing is best effort
            pass
