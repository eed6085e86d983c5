"""``Store``: opening and closing the database (its reads and writes are mixed in).

Reads come from ``Queries`` and ``Search``; the package docstring says why it works this way.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import aiosqlite

from hermes_tui.store.errors import DB_ERRORS, StoreError, map_error
from hermes_tui.store.files import (
    SessionClaims,
    WritersLock,
    default_db_path,
    immutable_uri,
    prepare_file,
    uri,
)
from hermes_tui.store.inspect import FIRST_TABLE_SQL, schema_problem
from hermes_tui.store.migrations import SCHEMA_VERSION, migrate, user_version
from hermes_tui.store.queries import Queries
from hermes_tui.store.search import Search
from hermes_tui.store.writer import (
    Writer,
)
from hermes_tui.store.writes import Writes

if TYPE_CHECKING:
    pass

DEFAULT_BUSY_TIMEOUT_MS = 5000


class Store(Queries, Search, Writes):
    """The hermes database. Create with ``await Store.open(path)``; ``await close()`` at exit.

    Reads come from ``Queries`` and ``Search``, writes from ``Writes`` (``writes.py`` says
    which wait for their commit and which only enqueue).
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
        self._claims: SessionClaims | None = None  # the sessions this store writes to
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
            # Refuse a newer or foreign database before touching it (WAL rewrites the header);
            # read-only too, so `hermes log` says what a write would (not "upgrade" it).
            version = await user_version(first)
            first_table = None
            if version == 0:
                async with first.execute(FIRST_TABLE_SQL) as cur:
                    row = await cur.fetchone()
                first_table = row[0] if row is not None else None
            problem = schema_problem(path, version, first_table)
            if problem is not None:
                raise problem
            if readonly:
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
        store._claims = SessionClaims(path)
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
        if self._claims is not None:
            self._claims.close()

    def claim_session(self, session_id: int) -> bool:
        """Take session ``session_id`` for this process to write to, for as long as the store
        is open (or until ``release_session``); False while another live process has it."""
        return self._claims is None or self._claims.claim(session_id)

    def release_session(self, session_id: int) -> None:
        if self._claims is not None:
            self._claims.release(session_id)

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def _close_all(conns: Sequence[aiosqlite.Connection]) -> None:
    for conn in conns:
        try:
            await conn.close()
        except Exception:  # closing is best effort
            pass
