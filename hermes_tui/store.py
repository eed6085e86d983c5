"""SQLite persistence for hermes: sessions, messages, sentinel verdicts and pool events.

Design, and why:

* **One writer task.** Every write is an operation put on an ``asyncio.Queue`` and executed by a
  single task that owns the write connection. The task drains whatever is queued and runs it
  as one transaction (one commit, one fsync at most), so a burst of verdicts and checkpoints
  from three personas costs one commit, and no two coroutines ever interleave statements of
  different transactions on one connection. Reads use a second connection (WAL lets them run
  while the writer writes) and see everything a completed ``await`` of a write has committed.
* **Streaming checkpoints are coalesced.** ``checkpoint_message`` only records the latest text
  of a message in a dict and queues a marker the first time; the writer writes whatever is
  latest when it reaches the marker. A model streaming faster than the disk therefore never
  grows the queue, and the on-disk text is at most one writer batch behind.
* **Durability: WAL + synchronous=NORMAL.** In WAL mode with ``synchronous=NORMAL`` a commit
  is appended to the -wal file with a write() but the WAL is only fsynced at checkpoints. A
  crash of the *process* (SIGKILL, segfault, OOM-kill) loses nothing that was committed,
  because the data already sits in the OS page cache and the next opener replays the WAL.
  Only an OS crash or power cut can lose the last few commits, and even then the database
  stays consistent (never corrupt). For a chat transcript that is the right trade: FULL would
  add an fsync per checkpoint (every 0.5 s per streaming persona) for protection against
  power loss only.
* **Recovery.** Opening a writable store marks messages still ``streaming`` as
  ``interrupted``: they were being written by a process that died. Every writable store holds
  a shared ``flock`` on ``<db>-writers`` for its lifetime, and recovery first takes that lock
  exclusively: if another live process is writing (a batch run beside the chat), recovery is
  left for later, so its live messages are never marked. A read-only store (``hermes log``)
  shows ``streaming`` messages as ``interrupted`` when no live process holds the lock. Locks
  die with their process, so a crash never leaves a stale lock.
* **Migrations** are an ordered list of small named async steps keyed by
  ``PRAGMA user_version``. A database newer than this code is refused rather than guessed at.
* **Errors** the user can act on (locked, corrupt, unwritable, read-only, too new) surface as a
  one-line ``StoreError`` naming the path and what to do. Damaged pages can also surface as
  ``UnicodeDecodeError`` (bad bytes in text, or in SQLite's own error message); those count as
  corruption too (``_DB_ERRORS``).
* **Read-only directories.** A WAL reader needs a -shm file beside the database; where none
  can be created (read-only media, someone else's directory) a read-only store falls back to
  SQLite's ``immutable=1`` when that is safe (see ``_immutable_uri``).
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import re
import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import aiosqlite
import platformdirs

from hermes_tui.fences import close_open_fence
from sentinel.verdict import Verdict

log = logging.getLogger(__name__)

MESSAGE_STATUSES: tuple[str, ...] = (
    "streaming",
    "done",
    "halted",
    "error",
    "cancelled",
    "interrupted",
)
FINAL_STATUSES: tuple[str, ...] = MESSAGE_STATUSES[1:]
SEVERITIES: tuple[str, ...] = ("minor", "critical")
DEFAULT_BUSY_TIMEOUT_MS = 5000
# Upper bound of operations per writer transaction: keeps one batch's latency bounded even if
# something floods the queue.
MAX_BATCH = 1000
# Full-text hits are ranked among this many newest matches per table (see Store.search).
SEARCH_WINDOW = 10_000

TimeLike = float | int | datetime


class _WritersLock:
    """Which processes have the database open to write: a shared ``flock`` each (see Recovery).

    Where ``flock`` is missing (not POSIX) or the lock file cannot be made, every call says
    "alone" and recovery behaves as if there were one writer per database.
    """

    def __init__(self, db: Path) -> None:
        self._fd: int | None = None
        try:
            self._fd = os.open(_lock_path(db), os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            self._fd = None

    def alone(self) -> bool:
        """Take the lock exclusively if no other writer holds it (then recovery is safe)."""
        return self._fd is None or _flock(self._fd, exclusive=True)

    async def share(self) -> None:
        """Hold the lock shared for as long as this store is open (waits, without blocking the
        event loop, while another process recovers or a reader checks for writers)."""
        while self._fd is not None and not _flock(self._fd, exclusive=False):
            await asyncio.sleep(0.01)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the lock
            self._fd = None

    @staticmethod
    def anyone_writing(db: Path) -> bool:
        """True when some live process holds the lock (checked without taking it for long)."""
        try:
            fd = os.open(_lock_path(db), os.O_RDONLY)
        except OSError:
            return False  # no lock file: no hermes has written since locks existed
        try:
            return not _flock(fd, exclusive=True)
        finally:
            os.close(fd)


def _lock_path(db: Path) -> str:
    return f"{db}-writers"


def _flock(fd: int, *, exclusive: bool) -> bool:
    try:
        import fcntl
    except ImportError:  # not POSIX
        return True
    mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError:
        return True
    return True


class StoreError(Exception):
    """A problem with the database file, as one line saying what happened and what to do."""


def default_db_path() -> Path:
    """Where hermes keeps its database unless told otherwise (per user, private)."""
    return Path(platformdirs.user_data_dir("hermes-tui")) / "hermes.db"


# --------------------------------------------------------------------------------------------
# Migrations
# --------------------------------------------------------------------------------------------

Step = Callable[[aiosqlite.Connection], Awaitable[None]]


async def _run_all(conn: aiosqlite.Connection, *statements: str) -> None:
    # Statements one by one: executescript() would COMMIT the migration's transaction.
    for sql in statements:
        await conn.execute(sql)


_STATUS_CHECK = ", ".join(f"'{s}'" for s in MESSAGE_STATUSES)


async def _v1_core_tables(conn: aiosqlite.Connection) -> None:
    """Sessions, messages, verdicts and pool events, with the indexes foreign keys need."""
    await _run_all(
        conn,
        """CREATE TABLE sessions(
            id INTEGER PRIMARY KEY,
            started REAL NOT NULL,
            mode TEXT NOT NULL DEFAULT '',
            config_hash TEXT NOT NULL DEFAULT '',
            title TEXT NOT NULL DEFAULT '',
            personas TEXT NOT NULL DEFAULT '[]'
        )""",
        f"""CREATE TABLE messages(
            id INTEGER PRIMARY KEY,
            session_id INTEGER NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
            persona TEXT NOT NULL,
            role TEXT NOT NULL,
            content TEXT NOT NULL DEFAULT '',
            started REAL NOT NULL,
            finished REAL,
            tokens INTEGER NOT NULL DEFAULT 0,
            status TEXT NOT NULL DEFAULT 'streaming' CHECK (status IN ({_STATUS_CHECK})),
            hidden INTEGER NOT NULL DEFAULT 0,
            error_code TEXT
        )""",
        """CREATE TABLE verdicts(
            id INTEGER PRIMARY KEY,
            message_id INTEGER REFERENCES messages(id) ON DELETE CASCADE,
            session_id INTEGER NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
            persona TEXT NOT NULL,
            check_name TEXT NOT NULL,
            severity TEXT NOT NULL CHECK (severity IN ('minor', 'critical')),
            code TEXT NOT NULL,
            span_start INTEGER NOT NULL,
            span_end INTEGER NOT NULL,
            detail TEXT NOT NULL DEFAULT '',
            at REAL NOT NULL
        )""",
        """CREATE TABLE pool_events(
            id INTEGER PRIMARY KEY,
            at REAL NOT NULL,
            kind TEXT NOT NULL,
            model TEXT NOT NULL DEFAULT '',
            persona TEXT NOT NULL DEFAULT '',
            bytes INTEGER NOT NULL DEFAULT 0,
            wait_ms REAL NOT NULL DEFAULT 0,
            detail TEXT NOT NULL DEFAULT ''
        )""",
        "CREATE INDEX messages_session ON messages(session_id)",
        "CREATE INDEX verdicts_message ON verdicts(message_id)",
    )


def _fts_statements(table: str, column: str) -> list[str]:
    """External-content FTS5 over ``table.column`` kept in sync by triggers."""
    fts = f"{table}_fts"
    return [
        f"""CREATE VIRTUAL TABLE {fts} USING fts5(
            {column}, content='{table}', content_rowid='id',
            tokenize='unicode61 remove_diacritics 2')""",
        f"""CREATE TRIGGER {fts}_ai AFTER INSERT ON {table} BEGIN
            INSERT INTO {fts}(rowid, {column}) VALUES (new.id, new.{column});
        END""",
        f"""CREATE TRIGGER {fts}_ad AFTER DELETE ON {table} BEGIN
            INSERT INTO {fts}({fts}, rowid, {column}) VALUES ('delete', old.id, old.{column});
        END""",
        # Only when the text changed: a status-only update must not reindex the message.
        f"""CREATE TRIGGER {fts}_au AFTER UPDATE OF {column} ON {table}
            WHEN old.{column} IS NOT new.{column} BEGIN
            INSERT INTO {fts}({fts}, rowid, {column}) VALUES ('delete', old.id, old.{column});
            INSERT INTO {fts}(rowid, {column}) VALUES (new.id, new.{column});
        END""",
        # Index whatever an older schema already holds.
        f"INSERT INTO {fts}({fts}) VALUES ('rebuild')",
    ]


async def _v2_full_text_search(conn: aiosqlite.Connection) -> None:
    """FTS5 over message content and verdict detail."""
    await _run_all(
        conn, *_fts_statements("messages", "content"), *_fts_statements("verdicts", "detail")
    )


async def _v3_review_indexes(conn: aiosqlite.Connection) -> None:
    """Indexes that keep the review screen fast with a million verdicts.

    ``(session_id, …)`` indexes answer per-session counts and the EXISTS probes of
    ``list_sessions`` filters with one seek per session; ``(…, at)`` indexes answer
    ``list_verdicts`` filters already in time order so LIMIT stops early.
    """
    await _run_all(
        conn,
        "CREATE INDEX sessions_started ON sessions(started)",
        "CREATE INDEX messages_streaming ON messages(status) WHERE status = 'streaming'",
        "CREATE INDEX messages_session_persona ON messages(session_id, persona)",
        "CREATE INDEX verdicts_session_severity ON verdicts(session_id, severity, code)",
        "CREATE INDEX verdicts_session_code ON verdicts(session_id, code)",
        "CREATE INDEX verdicts_session_check ON verdicts(session_id, check_name)",
        "CREATE INDEX verdicts_session_persona ON verdicts(session_id, persona)",
        "CREATE INDEX verdicts_code_at ON verdicts(code, at)",
        "CREATE INDEX verdicts_severity_at ON verdicts(severity, at)",
        "CREATE INDEX verdicts_persona_at ON verdicts(persona, at)",
        "CREATE INDEX verdicts_check_at ON verdicts(check_name, at)",
        "CREATE INDEX verdicts_at ON verdicts(at)",
        "CREATE INDEX pool_events_at ON pool_events(at)",
    )


MIGRATIONS: list[tuple[str, Step]] = [
    ("core tables", _v1_core_tables),
    ("full-text search", _v2_full_text_search),
    ("review indexes", _v3_review_indexes),
]
SCHEMA_VERSION = len(MIGRATIONS)


async def _user_version(conn: aiosqlite.Connection) -> int:
    async with conn.execute("PRAGMA user_version") as cur:
        row = await cur.fetchone()
    return int(row[0]) if row else 0


def _too_new(path: Path | str, version: int) -> StoreError:
    return StoreError(
        f"database {path} has schema version {version}, newer than this hermes "
        f"({SCHEMA_VERSION}); upgrade hermes"
    )


async def migrate(
    conn: aiosqlite.Connection, *, target: int | None = None, path: Path | str = "(db)"
) -> int:
    """Bring ``conn``'s schema up to ``target`` (default: latest). Returns the final version.

    Each step runs in its own ``BEGIN IMMEDIATE`` transaction together with the bump of
    ``user_version``, re-reading the version inside the transaction so that two processes
    opening an old database at once don't both apply a step.
    """
    target = SCHEMA_VERSION if target is None else target
    version = await _user_version(conn)
    if version > SCHEMA_VERSION:
        raise _too_new(path, version)
    while version < target:
        await conn.execute("BEGIN IMMEDIATE")
        try:
            version = await _user_version(conn)
            if version >= target:
                await conn.execute("COMMIT")
                break
            name, step = MIGRATIONS[version]
            log.info("migrating %s to schema %d (%s)", path, version + 1, name)
            await step(conn)
            version += 1
            await conn.execute(f"PRAGMA user_version = {version}")
            await conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                await conn.execute("ROLLBACK")
            raise
    return version


# --------------------------------------------------------------------------------------------
# Rows
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SessionRow:
    """One session with the counts the session list shows."""

    id: int
    started: float
    mode: str
    config_hash: str
    title: str
    personas: list[str]
    message_count: int = 0
    minor: int = 0
    critical: int = 0


@dataclass(frozen=True, slots=True)
class VerdictRow:
    """One stored sentinel verdict."""

    id: int
    message_id: int | None
    session_id: int
    persona: str
    check_name: str
    severity: str
    code: str
    span_start: int
    span_end: int
    detail: str
    at: float

    def to_verdict(self) -> Verdict:
        """The sentinel's own record for this row."""
        return Verdict(
            check=self.check_name,
            severity=self.severity,  # type: ignore[arg-type]
            code=self.code,
            span=(self.span_start, self.span_end),
            detail=self.detail,
        )


@dataclass(frozen=True, slots=True)
class MessageRow:
    """One message of a transcript with the verdicts raised on it (ordered by span)."""

    id: int
    session_id: int
    persona: str
    role: str
    content: str
    started: float
    finished: float | None
    tokens: int
    status: str
    hidden: bool
    error_code: str | None
    verdicts: list[VerdictRow] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class SearchHit:
    """One full-text match: a message (``verdict_id`` None) or a verdict's detail.

    ``rank`` is FTS5's bm25 (lower is better); ``snippet`` marks matched terms with the
    markers passed to ``search``.
    """

    kind: Literal["message", "verdict"]
    rank: float
    snippet: str
    session_id: int
    message_id: int | None
    verdict_id: int | None
    persona: str
    code: str | None


@dataclass(frozen=True, slots=True)
class PoolEventRow:
    """One model-pool event (load, evict, wait, ...)."""

    id: int
    at: float
    kind: str
    model: str
    persona: str
    bytes: int
    wait_ms: float
    detail: str


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _ts(value: TimeLike | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.astimezone()  # naive means local time, as a user typed it
        return value.timestamp()
    return float(value)


def _time_range(
    where: list[str], params: list[Any], column: str, since: TimeLike | None, until: TimeLike | None
) -> None:
    """Add ``since <= column < until`` (either end optional) to a WHERE clause being built."""
    if since is not None:
        where.append(f"{column} >= ?")
        params.append(_ts(since))
    if until is not None:
        where.append(f"{column} < ?")
        params.append(_ts(until))


def _iso(ts: float | None) -> str:
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


_ERROR_CODE = re.compile(r"E_[A-Z0-9_]+", re.IGNORECASE)


def fts_query(text: str) -> str | None:
    """Turn user input into an FTS5 query of plain terms (all must match).

    Every whitespace-separated term becomes a quoted FTS5 string (inner quotes doubled), so
    operators and punctuation (``foo"bar``, ``AND(``, ``NEAR``) are just text; a trailing
    ``*`` keeps its meaning, a prefix (``pick*`` finds pickle). Terms without a letter or
    digit would tokenize to nothing and are dropped. Returns None when nothing searchable is
    left.
    """
    out = []
    for term in text.split():
        prefix = term.endswith("*")
        term = term.rstrip("*") if prefix else term
        if any(ch.isalnum() for ch in term):
            out.append('"' + term.replace('"', '""') + '"' + ("*" if prefix else ""))
    return " ".join(out) or None


# What reading a damaged database can raise besides sqlite3.Error: Python's sqlite3 decodes
# SQLite's own error message as UTF-8, and a corrupt schema page puts raw page bytes into that
# message ("malformed database schema (…\xba…)"), so execute() itself raises this.
_DB_ERRORS = (sqlite3.Error, UnicodeDecodeError)


def _printable(text: str, limit: int = 200) -> str:
    """One line of plain text: a corrupt page's bytes end up in SQLite's messages and must
    neither break the one-line error nor reach the terminal as control sequences."""
    out = "".join(ch if ch.isprintable() else " " if ch in "\t\n\r" else "?" for ch in text)
    return out if len(out) <= limit else out[: limit - 1] + "…"


def _error(exc: BaseException, path: Path | str, busy_timeout_ms: int) -> StoreError:
    """Map an sqlite3/OS error to a one-line StoreError that says what to do."""
    msg = _printable(str(exc))
    low = msg.lower()
    if isinstance(exc, UnicodeDecodeError) or "could not decode" in low:
        # Text that is not UTF-8 where hermes wrote UTF-8: damaged pages, or a foreign file.
        return StoreError(
            f"database {path} is corrupt or not a hermes database (it holds bytes that are not "
            "valid UTF-8 text); move it aside (hermes then starts a fresh one) or pass another "
            "database path"
        )
    if "locked" in low or "busy" in low:
        return StoreError(
            f"database {path} is locked by another process (gave up after {busy_timeout_ms} ms);"
            " close the other program using it and retry"
        )
    if "not a database" in low or "malformed" in low or "corrupt" in low:
        return StoreError(
            f"database {path} is corrupt or not a hermes database ({msg}); move it aside "
            "(hermes then starts a fresh one) or pass another database path"
        )
    if "readonly" in low or "read-only" in low:
        return StoreError(
            f"database {path} is read-only; fix its permissions, pass a writable database "
            "path, or open it read-only for review"
        )
    if "unable to open" in low:
        return StoreError(
            f"cannot open database {path} ({msg}); check the path exists and is readable"
        )
    if "disk is full" in low or "disk i/o" in low:
        return StoreError(f"cannot write database {path} ({msg}); free disk space and retry")
    return StoreError(f"database {path}: {msg}")


def _prepare_file(path: Path) -> None:
    """Create the directory (0700) and the file (0600) before SQLite ever opens it.

    SQLite would create a missing file with the umask's mode (usually world-readable); the
    transcripts may hold secrets, so the file is created private here and SQLite is then
    opened with ``mode=rw`` (never create). Its -wal/-shm files inherit the file's mode.
    """
    parent = path.parent
    if not parent.exists():
        try:
            os.makedirs(parent, mode=0o700, exist_ok=True)
            os.chmod(parent, 0o700)
        except OSError as exc:
            raise StoreError(
                f"cannot create directory {parent} for database {path} ({exc.strerror}); "
                "pass a writable database path"
            ) from exc
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS) and path.exists():
            raise StoreError(
                f"database {path} is read-only ({exc.strerror}); fix its permissions, pass a "
                "writable database path, or open it read-only for review"
            ) from exc
        raise StoreError(
            f"cannot create database {path} ({exc.strerror}); pass a writable database path"
        ) from exc
    os.close(fd)


def _uri(path: Path, mode: str) -> str:
    return f"file:{quote(str(path.absolute()))}?mode={mode}"


def _immutable_uri(path: Path, exc: BaseException) -> str | None:
    """A URI that reads ``path`` without its -shm file, when that is safe; else None.

    A reader of a WAL database needs the -shm file, and SQLite must create it if it is
    missing, so a ``mode=ro`` open of a database in a directory it cannot write (read-only
    media, another user's directory) fails with "unable to open database file" although the
    file is readable. ``immutable=1`` reads the file alone, with no -shm and no locks. That is
    only right when the file alone is the whole database: no -shm (so no live WAL writer,
    which would have made one) and no committed transactions waiting in a non-empty -wal.
    With such a -wal the reader would silently miss them, so that case is refused instead.

    Meant for read-only media. In a directory that someone else can write, a hermes that
    starts writing there after this open is not seen by it (no locks, no -shm): a long-open
    review shows the database as it was when opened, and may report damaged pages if that
    writer checkpoints meanwhile; reopening reads it properly.
    """
    if not isinstance(exc, sqlite3.OperationalError) or "unable to open" not in str(exc):
        return None
    if Path(f"{path}-shm").exists() or not os.access(path, os.R_OK):
        return None
    try:
        wal_bytes = os.stat(f"{path}-wal").st_size
    except OSError:
        wal_bytes = 0
    if wal_bytes:
        raise StoreError(
            f"cannot read database {path}: its directory cannot be written and its latest "
            f"changes are still in {path}-wal; copy the database and its -wal file to a "
            "writable directory and open the copy"
        )
    return _uri(path, "ro") + "&immutable=1"


def inspect_database(path: Path | str) -> dict[str, Any]:
    """What ``hermes doctor`` reports about a database, read without changing a byte.

    Returns ``schema_version``, ``sessions`` (None where unknown), ``problem`` (a one-line
    reason hermes cannot use the file: corrupt, not a hermes database, too new) and ``note``
    (something worth saying that is not a problem, e.g. an upgrade hermes will do itself).
    A missing file is no problem: hermes creates it.

    Runs ``PRAGMA quick_check``, which reads every page (a second or so per few hundred MB):
    damaged pages otherwise only show when a chat or ``hermes log`` happens to read them.
    """
    path = Path(path).expanduser()
    out: dict[str, Any] = {"schema_version": None, "sessions": None, "problem": None}
    out["note"] = None
    if not path.exists():
        return out
    if not path.is_file():
        out["problem"] = f"database {path} is not a file; pass a database file path"
        return out

    def connect(uri: str) -> sqlite3.Connection:
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=1.0)
        try:
            conn.execute("SELECT count(*) FROM sqlite_schema").fetchall()
        except BaseException:
            conn.close()
            raise
        return conn

    conn = None
    try:
        try:
            conn = connect(_uri(path, "ro"))
        except sqlite3.OperationalError as exc:
            fallback = _immutable_uri(path, exc)
            if fallback is None:
                raise
            conn = connect(fallback)
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        out["schema_version"] = version
        check = conn.execute("PRAGMA quick_check(1)").fetchone()
        if check is None or str(check[0]).lower() != "ok":
            detail = _printable(str(check[0] if check else "no answer"))
            raise sqlite3.DatabaseError(f"database disk image is malformed: {detail}")
        if version > SCHEMA_VERSION:
            out["problem"] = str(_too_new(path, version))
        elif version == 0:
            table = conn.execute(
                "SELECT name FROM sqlite_schema WHERE type = 'table' LIMIT 1"
            ).fetchone()
            if table is not None:
                out["problem"] = (
                    f"{path} is an SQLite database but not a hermes one (it has a table "
                    f"{_printable(str(table[0]))!r}); move it aside or pass another --db"
                )
            else:
                out["note"] = "empty; hermes sets it up when it first writes"
        else:
            if version < SCHEMA_VERSION:
                out["note"] = f"schema {version}; hermes upgrades it to {SCHEMA_VERSION} on write"
            out["sessions"] = int(conn.execute("SELECT count(*) FROM sessions").fetchone()[0])
    except StoreError as exc:
        out["problem"] = str(exc)
    except (*_DB_ERRORS, OSError) as exc:
        out["problem"] = str(_error(exc, path, 1000))
    finally:
        if conn is not None:
            conn.close()
    return out


@dataclass(slots=True)
class _Op:
    """One queued write. ``fn`` None with a future is a flush marker; kind 'ckpt' is a marker
    whose text is taken from the pending-checkpoint dict when the writer reaches it."""

    fn: Callable[[aiosqlite.Connection], Awaitable[Any]] | None
    fut: asyncio.Future[Any] | None = None
    kind: str = "op"
    message_id: int = 0


_STOP = _Op(fn=None, kind="stop")

_SESSION_COLS = "s.id, s.started, s.mode, s.config_hash, s.title, s.personas"
_MESSAGE_COLS = (
    "id, session_id, persona, role, content, started, finished, tokens, status, hidden, error_code"
)
_VERDICT_COLS = (
    "id, message_id, session_id, persona, check_name, severity, code, span_start, span_end, "
    "detail, at"
)


def _session_row(r: Sequence[Any]) -> SessionRow:
    try:
        personas = json.loads(r[5]) if r[5] else []
    except ValueError:
        personas = [p for p in str(r[5]).split(",") if p]
    extra = list(r[6:9]) + [0] * (9 - len(r))
    return SessionRow(r[0], r[1], r[2], r[3], r[4], personas, *map(int, extra))


def _message_row(r: Sequence[Any], verdicts: list[VerdictRow] | None = None) -> MessageRow:
    return MessageRow(
        r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], bool(r[9]), r[10], verdicts or []
    )


def _verdict_row(r: Sequence[Any]) -> VerdictRow:
    return VerdictRow(*r)


# --------------------------------------------------------------------------------------------
# The store
# --------------------------------------------------------------------------------------------


class Store:
    """The hermes database. Create with ``await Store.open(path)``; ``await close()`` at exit.

    Write methods that return something (ids) or must be durable before the caller goes on
    (``finish_message``) wait for their transaction to commit. ``checkpoint_message`` and
    ``add_pool_event`` only enqueue; ``flush()`` waits until everything queued is committed
    and raises if one of those background writes failed.
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
        self._writers_lock: _WritersLock | None = None
        self._w = write_conn
        self._r = read_conn
        self._queue: asyncio.Queue[_Op] = asyncio.Queue()
        self._pending_ckpt: dict[int, tuple[str, int]] = {}
        self._bg_error: StoreError | None = None
        self._closed = False
        self._writer: asyncio.Task[None] | None = None
        if write_conn is not None:
            self._writer = asyncio.create_task(self._writer_loop(), name="hermes-store-writer")

    @property
    def live_writer(self) -> bool:
        """Read-only stores: whether another process has the database open to write, asked
        anew each time (a review screen stays open while a chat or batch run starts or dies)."""
        return self.readonly and _WritersLock.anyone_writing(self.path)

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
            uri = _uri(path, "ro")
        else:
            _prepare_file(path)
            uri = _uri(path, "rw")

        conns: list[aiosqlite.Connection] = []
        try:
            try:
                first = await cls._connect(uri, busy_timeout_ms)
            except sqlite3.OperationalError as exc:
                fallback = _immutable_uri(path, exc) if readonly else None
                if fallback is None:
                    raise
                first = await cls._connect(fallback, busy_timeout_ms)
            conns.append(first)
            if readonly:
                version = await _user_version(first)
                if version > SCHEMA_VERSION:
                    raise _too_new(path, version)
                if version < SCHEMA_VERSION:
                    what = "not a hermes database" if version == 0 else "from an older hermes"
                    raise StoreError(
                        f"database {path} has schema version {version} ({what}; this hermes "
                        f"uses {SCHEMA_VERSION}); open it once writable with hermes to upgrade"
                    )
                store = cls(
                    path,
                    readonly=True,
                    busy_timeout_ms=busy_timeout_ms,
                    write_conn=None,
                    read_conn=first,
                )
                return store
            # Refuse a newer or foreign database before touching it (WAL rewrites the header).
            version = await _user_version(first)
            if version > SCHEMA_VERSION:
                raise _too_new(path, version)
            if version == 0:
                async with first.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table' LIMIT 1"
                ) as cur:
                    foreign = await cur.fetchone()
                if foreign is not None:
                    raise StoreError(
                        f"{path} is an SQLite database but not a hermes one (it has a table "
                        f"{foreign[0]!r}); choose another --db"
                    )
            async with first.execute("PRAGMA journal_mode=WAL") as cur:
                row = await cur.fetchone()
            if row is None or str(row[0]).lower() != "wal":
                raise StoreError(
                    f"database {path} cannot use WAL journaling ({row and row[0]}); "
                    "put it on a local disk"
                )
            await first.execute_fetchall("PRAGMA synchronous=NORMAL")  # see module docstring
            await migrate(first, path=path)
            reader = await cls._connect(uri, busy_timeout_ms)
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
        except (*_DB_ERRORS, OSError) as exc:
            await _close_all(conns)
            if "unable to open" in str(exc) and not os.access(path.parent, os.W_OK | os.X_OK):
                raise StoreError(
                    f"database {path} cannot be written: SQLite must create {path.name}-wal "
                    f"and {path.name}-shm in {path.parent}, which is read-only; fix its "
                    "permissions, pass a writable database path, or open it read-only for review"
                ) from exc
            raise _error(exc, path, busy_timeout_ms) from exc
        store._writers_lock = _WritersLock(path)
        try:
            if store._writers_lock.alone():
                store.recovered = await store.recover_interrupted()
            await store._writers_lock.share()
        except BaseException:  # StoreError, or cancelled: leave nothing open or locked
            await store.close()
            raise
        return store

    @staticmethod
    async def _connect(uri: str, busy_timeout_ms: int) -> aiosqlite.Connection:
        conn = aiosqlite.connect(
            uri, uri=True, isolation_level=None, timeout=busy_timeout_ms / 1000
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
            self._queue.put_nowait(_STOP)
            try:
                await self._writer
            except Exception:  # already logged by the loop
                pass
        if self._w is not None:
            try:
                await self._w.execute_fetchall("PRAGMA optimize")
            except _DB_ERRORS:
                pass
        await _close_all([c for c in (self._r, self._w) if c is not None])
        if self._writers_lock is not None:
            self._writers_lock.release()

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ---- the writer --------------------------------------------------------------------------

    def _check_writable(self) -> None:
        if self.readonly:
            raise StoreError(f"database {self.path} is open read-only; nothing can be saved")
        if self._closed:
            raise StoreError(f"database {self.path} is closed")

    async def _submit(self, fn: Callable[[aiosqlite.Connection], Awaitable[Any]]) -> Any:
        """Queue a write and wait until its transaction commits; returns ``fn``'s result."""
        self._check_writable()
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Op(fn=fn, fut=fut))
        return await fut

    def _submit_nowait(self, fn: Callable[[aiosqlite.Connection], Awaitable[Any]]) -> None:
        self._check_writable()
        self._queue.put_nowait(_Op(fn=fn))

    async def flush(self) -> None:
        """Wait until every write queued so far is committed.

        Raises the error of a background write (checkpoint, pool event) that failed since
        the last flush, so those failures are not silent.
        """
        self._check_writable()
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Op(fn=None, fut=fut))
        await fut
        if self._bg_error is not None:
            err, self._bg_error = self._bg_error, None
            raise err

    async def _writer_loop(self) -> None:
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
                        _fail(op, err)
                    if not isinstance(exc, Exception):
                        raise

    async def _run_batch(self, ops: list[_Op]) -> None:
        assert self._w is not None
        conn = self._w
        results: list[tuple[_Op, Any, BaseException | None]] = []
        try:
            await conn.execute("BEGIN IMMEDIATE")
            for op in ops:
                fn = op.fn
                if op.kind == "ckpt":
                    pending = self._pending_ckpt.pop(op.message_id, None)
                    if pending is None:  # superseded by finish_message, or already written
                        continue
                    fn = _checkpoint_fn(op.message_id, *pending)
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
        except _DB_ERRORS as exc:
            if conn.in_transaction:
                try:
                    await conn.execute("ROLLBACK")
                except _DB_ERRORS:
                    pass
            err = _error(exc, self.path, self.busy_timeout_ms)
            for op in ops:
                _fail(op, err, self)
            return
        for op, value, exc in results:
            if exc is None:
                if op.fut is not None and not op.fut.done():
                    op.fut.set_result(value)
            else:
                err = StoreError(f"database {self.path}: write rejected ({exc})")
                err.__cause__ = exc
                _fail(op, err, self)

    # ---- writes ----------------------------------------------------------------------------

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
        params = (_ts(started) or time.time(), mode, config_hash, title, json.dumps(list(personas)))
        return await self._submit(
            _insert_fn(
                "INSERT INTO sessions(started, mode, config_hash, title, personas) "
                "VALUES (?, ?, ?, ?, ?)",
                params,
            )
        )

    async def update_session(
        self, session_id: int, *, title: str | None = None, personas: Sequence[str] | None = None
    ) -> None:
        """Change a session's title and/or personas (e.g. once the first prompt is known)."""
        sets, params = [], []
        if title is not None:
            sets.append("title = ?")
            params.append(title)
        if personas is not None:
            sets.append("personas = ?")
            params.append(json.dumps(list(personas)))
        if sets:
            sql = f"UPDATE sessions SET {', '.join(sets)} WHERE id = ?"
            await self._submit(_exec_fn(sql, (*params, session_id)))

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
        params = (session_id, persona, role, content, _ts(started) or time.time(), int(hidden))
        return await self._submit(
            _insert_fn(
                "INSERT INTO messages(session_id, persona, role, content, started, hidden, status)"
                " VALUES (?, ?, ?, ?, ?, ?, 'streaming')",
                params,
            )
        )

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
        now = _ts(started) or time.time()
        params = (session_id, persona, role, content, now, now, tokens, status, int(hidden))
        return await self._submit(
            _insert_fn(
                "INSERT INTO messages(session_id, persona, role, content, started, finished, "
                "tokens, status, hidden) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                params,
            )
        )

    async def checkpoint_message(self, message_id: int, content: str, tokens: int) -> None:
        """Record the text streamed so far. Cheap: does not wait for the disk.

        Several checkpoints of one message before the writer gets to it become one write of
        the latest text. A checkpoint never overwrites a message that is no longer streaming.
        """
        self._check_writable()
        first = message_id not in self._pending_ckpt
        self._pending_ckpt[message_id] = (content, int(tokens))
        if first:
            self._queue.put_nowait(_Op(fn=None, kind="ckpt", message_id=message_id))

    async def finish_message(
        self,
        message_id: int,
        content: str,
        tokens: int,
        status: str,
        error_code: str | None = None,
    ) -> None:
        """Store the final text and status; returns once it is committed."""
        if status not in FINAL_STATUSES:
            raise ValueError(f"status must be one of {FINAL_STATUSES}, not {status!r}")
        self._check_writable()
        self._pending_ckpt.pop(message_id, None)  # the final text supersedes any checkpoint
        await self._submit(
            _exec_fn(
                "UPDATE messages SET content = ?, tokens = ?, status = ?, error_code = ?, "
                "finished = ? WHERE id = ?",
                (content, int(tokens), status, error_code, time.time(), message_id),
                must_change=f"no message {message_id}",
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
        params = (
            message_id,
            session_id,
            persona,
            verdict.check,
            verdict.severity,
            verdict.code,
            int(verdict.span[0]),
            int(verdict.span[1]),
            verdict.detail,
            _ts(at) or time.time(),
        )
        return await self._submit(
            _insert_fn(
                "INSERT INTO verdicts(message_id, session_id, persona, check_name, severity, "
                "code, span_start, span_end, detail, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                params,
            )
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
        params = (_ts(at) or time.time(), kind, model, persona, int(bytes), float(wait_ms), detail)
        self._submit_nowait(
            _exec_fn(
                "INSERT INTO pool_events(at, kind, model, persona, bytes, wait_ms, detail) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                params,
            )
        )

    async def recover_interrupted(self) -> int:
        """Mark messages left ``streaming`` by a dead process as ``interrupted``; returns how
        many. Called by ``open``; their last checkpointed text is kept."""
        return await self._submit(
            _exec_fn(
                "UPDATE messages SET status = 'interrupted', "
                "finished = coalesce(finished, ?) WHERE status = 'streaming'",
                (time.time(),),
            )
        )

    # ---- reads -----------------------------------------------------------------------------

    async def _fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        try:
            return list(await self._r.execute_fetchall(sql, params))
        except _DB_ERRORS as exc:
            raise _error(exc, self.path, self.busy_timeout_ms) from exc

    async def get_session(self, session_id: int) -> SessionRow | None:
        """One session with its counts, or None."""
        rows = await self._fetchall(
            f"SELECT {_SESSION_COLS}, {_COUNTS} FROM sessions s WHERE s.id = ?", (session_id,)
        )
        return _session_row(rows[0]) if rows else None

    async def list_sessions(
        self,
        limit: int = 50,
        offset: int = 0,
        *,
        persona: str | None = None,
        check: str | None = None,
        code: str | None = None,
        severity: str | None = None,
        since: TimeLike | None = None,
        until: TimeLike | None = None,
    ) -> list[SessionRow]:
        """Sessions, newest first, with message count and verdict counts by severity.

        ``check``/``code``/``severity`` keep sessions having at least one verdict matching
        all of them (and ``persona`` too, when given with them). ``persona`` alone keeps
        sessions in which that persona wrote a message. ``since``/``until`` bound the
        session's start (``until`` exclusive).
        """
        where, params = [], []
        vconds, vparams = [], []
        for col, val in (("check_name", check), ("code", code), ("severity", severity)):
            if val is not None:
                vconds.append(f"v.{col} = ?")
                vparams.append(val)
        if vconds:
            if persona is not None:
                vconds.append("v.persona = ?")
                vparams.append(persona)
            where.append(
                "EXISTS (SELECT 1 FROM verdicts v WHERE v.session_id = s.id AND "
                + " AND ".join(vconds)
                + ")"
            )
            params += vparams
        elif persona is not None:
            where.append(
                "EXISTS (SELECT 1 FROM messages m WHERE m.session_id = s.id AND m.persona = ?)"
            )
            params.append(persona)
        _time_range(where, params, "s.started", since, until)
        sql = f"SELECT {_SESSION_COLS}, {_COUNTS} FROM sessions s"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY s.started DESC, s.id DESC LIMIT ? OFFSET ?"
        rows = await self._fetchall(sql, (*params, int(limit), int(offset)))
        return [_session_row(r) for r in rows]

    async def verdict_timeline(self, session_id: int, buckets: int = 20) -> list[int]:
        """Verdict counts across the session's messages in order, for a sparkline.

        Messages are split into ``buckets`` equal runs (by position, not time, so a long
        pause doesn't flatten the line); with fewer messages than buckets there is one value
        per message. Empty session: ``[]``.
        """
        rows = await self._fetchall(
            "SELECT (SELECT count(*) FROM verdicts v WHERE v.message_id = m.id) "
            "FROM messages m WHERE m.session_id = ? ORDER BY m.id",
            (session_id,),
        )
        n = len(rows)
        if n == 0 or buckets <= 0:
            return []
        width = min(buckets, n)
        out = [0] * width
        for i, (count,) in enumerate(rows):
            out[i * width // n] += count
        return out

    async def get_transcript(
        self, session_id: int, include_hidden: bool = False
    ) -> list[MessageRow]:
        """The session's messages in order, each with its verdicts.

        Hidden correction turns (the sentinel's corrective prompts and the retried answers
        they replaced) are left out unless ``include_hidden``.
        """
        hidden_cond = "" if include_hidden else " AND hidden = 0"
        msgs = await self._fetchall(
            f"SELECT {_MESSAGE_COLS} FROM messages WHERE session_id = ?{hidden_cond} ORDER BY id",
            (session_id,),
        )
        verdicts = await self._fetchall(
            f"SELECT {_VERDICT_COLS} FROM verdicts WHERE session_id = ? "
            "ORDER BY message_id, span_start, id",
            (session_id,),
        )
        by_msg: dict[int | None, list[VerdictRow]] = {}
        for r in verdicts:
            by_msg.setdefault(r[1], []).append(_verdict_row(r))
        rows = [_message_row(m, by_msg.get(m[0])) for m in msgs]
        if self.readonly and not self.live_writer:  # nobody is writing them any more
            rows = [
                replace(m, status="interrupted") if m.status == "streaming" else m for m in rows
            ]
        return rows

    async def list_verdicts(
        self,
        limit: int = 100,
        offset: int = 0,
        *,
        session_id: int | None = None,
        message_id: int | None = None,
        persona: str | None = None,
        check: str | None = None,
        code: str | None = None,
        severity: str | None = None,
        since: TimeLike | None = None,
        until: TimeLike | None = None,
    ) -> list[VerdictRow]:
        """Verdicts matching all given filters, newest first."""
        where, params = [], []
        for col, val in (
            ("session_id", session_id),
            ("message_id", message_id),
            ("persona", persona),
            ("check_name", check),
            ("code", code),
            ("severity", severity),
        ):
            if val is not None:
                where.append(f"{col} = ?")
                params.append(val)
        _time_range(where, params, "at", since, until)
        sql = f"SELECT {_VERDICT_COLS} FROM verdicts"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY at DESC, id DESC LIMIT ? OFFSET ?"
        rows = await self._fetchall(sql, (*params, int(limit), int(offset)))
        return [_verdict_row(r) for r in rows]

    async def list_pool_events(
        self, limit: int = 100, *, kind: str | None = None
    ) -> list[PoolEventRow]:
        """Recent pool events, newest first."""
        sql = "SELECT id, at, kind, model, persona, bytes, wait_ms, detail FROM pool_events"
        params: list[Any] = []
        if kind is not None:
            sql += " WHERE kind = ?"
            params.append(kind)
        sql += " ORDER BY at DESC, id DESC LIMIT ?"
        rows = await self._fetchall(sql, (*params, int(limit)))
        return [PoolEventRow(*r) for r in rows]

    async def search(
        self,
        query: str,
        limit: int = 20,
        *,
        include_hidden: bool = False,
        raw: bool = False,
        mark: tuple[str, str] = ("«", "»"),
    ) -> list[SearchHit]:
        """Full-text search over message text and verdict details, best matches first.

        The query is plain terms that must all appear (see ``fts_query``), so any user input
        is safe; ``raw=True`` passes FTS5 syntax through (and its syntax errors become
        StoreError).

        Ranking is bm25 among the newest ``SEARCH_WINDOW`` matches of each table: scoring
        every match of a very common word in a million verdicts takes about half a second,
        and for such a word the recent matches are the useful ones anyway.
        """
        if not raw and _ERROR_CODE.fullmatch(query.strip()):
            return await self._verdicts_with_code(query.strip().upper(), limit)
        match = query if raw else fts_query(query)
        left, right = mark
        if not match:
            # Nothing the word index holds (emoji, "->", "{}"): plain substring search.
            needle = query.strip()
            return await self._substring_hits(needle, limit, include_hidden, mark) if needle else []
        hidden_cond = "" if include_hidden else " AND m.hidden = 0"
        msg_sql = (
            "SELECT f.rank, snippet(messages_fts, 0, ?, ?, '…', 12), m.session_id, m.id, "
            "m.persona FROM messages_fts f JOIN messages m ON m.id = f.rowid "
            f"WHERE messages_fts MATCH ? AND f.rowid >= ?{hidden_cond} "
            "ORDER BY f.rank, f.rowid DESC LIMIT ?"
        )
        ver_sql = (
            "SELECT f.rank, snippet(verdicts_fts, 0, ?, ?, '…', 12), v.session_id, "
            "v.message_id, v.persona, v.id, v.code FROM verdicts_fts f "
            "JOIN verdicts v ON v.id = f.rowid "
            "WHERE verdicts_fts MATCH ? AND f.rowid >= ? ORDER BY f.rank, f.rowid DESC LIMIT ?"
        )
        try:
            msg_floor = await self._search_floor("messages_fts", match)
            msgs = await self._r.execute_fetchall(msg_sql, (left, right, match, msg_floor, limit))
            ver_floor = await self._search_floor("verdicts_fts", match)
            vers = await self._r.execute_fetchall(ver_sql, (left, right, match, ver_floor, limit))
        except _DB_ERRORS as exc:
            low = str(exc).lower()
            damaged = isinstance(exc, sqlite3.DatabaseError) and "corrupt" in low
            if raw and not damaged and ("fts5" in low or "syntax" in low):
                raise StoreError(f"bad search query {query!r}: {exc}") from exc
            raise _error(exc, self.path, self.busy_timeout_ms) from exc
        hits = [SearchHit("message", r[0], r[1], r[2], r[3], None, r[4], None) for r in msgs]
        hits += [SearchHit("verdict", r[0], r[1], r[2], r[3], r[5], r[4], r[6]) for r in vers]
        hits.sort(key=lambda h: h.rank)
        return hits[:limit]

    async def _substring_hits(
        self, needle: str, limit: int, include_hidden: bool, mark: tuple[str, str]
    ) -> list[SearchHit]:
        """Messages containing ``needle`` as typed, newest first (instr() scans the text, so
        this is for what full-text search cannot find, not for words)."""
        hidden_cond = "" if include_hidden else " AND hidden = 0"
        rows = await self._fetchall(
            "SELECT content, session_id, id, persona FROM messages "
            f"WHERE instr(content, ?) > 0{hidden_cond} ORDER BY id DESC LIMIT ?",
            (needle, int(limit)),
        )
        hits = []
        for content, session_id, message_id, persona in rows:
            at = content.find(needle)
            start, end = max(0, at - 30), at + len(needle) + 30
            snippet = (
                ("…" if start else "")
                + content[start:at]
                + mark[0]
                + needle
                + mark[1]
                + content[at + len(needle) : end]
                + ("…" if end < len(content) else "")
            )
            hits.append(
                SearchHit("message", 0.0, snippet, session_id, message_id, None, persona, None)
            )
        return hits

    async def _verdicts_with_code(self, code: str, limit: int) -> list[SearchHit]:
        """A query that is one error code (E_DRIFT) finds that code's verdicts, newest first:
        codes are not in the full-text index, and the user means the code, not the word."""
        rows = await self._fetchall(
            "SELECT detail, session_id, message_id, id, persona FROM verdicts "
            "WHERE code = ? ORDER BY at DESC, id DESC LIMIT ?",
            (code, int(limit)),
        )
        return [SearchHit("verdict", 0.0, r[0], r[1], r[2], r[3], r[4], code) for r in rows]

    async def _search_floor(self, fts: str, match: str) -> int:
        """Smallest rowid among the newest SEARCH_WINDOW matches (FTS5 walks its doclist
        backwards and stops, so this is cheap), or 0 if there are fewer."""
        rows = await self._r.execute_fetchall(
            f"SELECT min(rowid), count(*) FROM (SELECT rowid FROM {fts} WHERE {fts} MATCH ? "
            "ORDER BY rowid DESC LIMIT ?)",
            (match, SEARCH_WINDOW),
        )
        floor, count = list(rows)[0]
        return 0 if floor is None or count < SEARCH_WINDOW else int(floor)

    async def export_session(
        self, session_id: int, fmt: str = "markdown", *, include_hidden: bool = False
    ) -> str:
        """The session as Markdown (for reading/sharing) or JSON (for tools)."""
        session = await self.get_session(session_id)
        if session is None:
            raise StoreError(f"no session {session_id} in database {self.path}")
        messages = await self.get_transcript(session_id, include_hidden=include_hidden)
        if fmt == "json":
            doc = {
                "schema_version": SCHEMA_VERSION,
                "session": asdict(session),
                "messages": [asdict(m) for m in messages],
            }
            return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
        if fmt != "markdown":
            raise ValueError(f"fmt must be 'markdown' or 'json', not {fmt!r}")
        return _markdown(session, messages)


_COUNTS = (
    "(SELECT count(*) FROM messages m WHERE m.session_id = s.id AND m.hidden = 0), "
    "(SELECT count(*) FROM verdicts v WHERE v.session_id = s.id AND v.severity = 'minor'), "
    "(SELECT count(*) FROM verdicts v WHERE v.session_id = s.id AND v.severity = 'critical')"
)


def _markdown(session: SessionRow, messages: list[MessageRow]) -> str:
    title = session.title or f"Session {session.id}"
    lines = [
        f"# {title}",
        "",
        f"- session: {session.id}",
        f"- started: {_iso(session.started)}",
        f"- mode: {session.mode}",
        f"- personas: {', '.join(session.personas)}",
        f"- verdicts: {session.minor} minor, {session.critical} critical",
    ]
    if session.config_hash:
        lines.append(f"- config: {session.config_hash}")
    for m in messages:
        if m.role == "user":  # its persona is whom it was sent to
            to = ", ".join(p for p in m.persona.split(",") if p not in ("", "user"))
            head = f"## you → {to}" if to else "## you"
        elif m.role == "assistant":
            head = f"## {m.persona}"
        else:
            head = f"## {m.persona} ({m.role})"
        notes = [m.status] if m.status != "done" else []
        if m.error_code:
            notes.append(m.error_code)
        if m.hidden:
            notes.append("hidden correction")
        if notes:
            head += " — " + ", ".join(notes)
        lines += ["", head, "", close_open_fence(m.content.rstrip()) or "_(empty)_"]
        if m.verdicts:
            lines.append("")
            for v in m.verdicts:
                detail = v.detail.replace("\n", " ")
                lines.append(
                    f"> **{v.severity}** `{v.code}` ({v.check_name}, chars "
                    f"{v.span_start}–{v.span_end}): {detail}"
                )
    return "\n".join(lines) + "\n"


def _insert_fn(sql: str, params: Sequence[Any]) -> Callable[[aiosqlite.Connection], Awaitable[int]]:
    async def run(conn: aiosqlite.Connection) -> int:
        cur = await conn.execute(sql, params)
        rowid = cur.lastrowid
        await cur.close()
        assert rowid is not None
        return rowid

    return run


def _exec_fn(
    sql: str, params: Sequence[Any], must_change: str | None = None
) -> Callable[[aiosqlite.Connection], Awaitable[int]]:
    async def run(conn: aiosqlite.Connection) -> int:
        cur = await conn.execute(sql, params)
        count = cur.rowcount
        await cur.close()
        if must_change and count == 0:
            raise ValueError(must_change)
        return count

    return run


def _checkpoint_fn(
    message_id: int, content: str, tokens: int
) -> Callable[[aiosqlite.Connection], Awaitable[int]]:
    return _exec_fn(
        "UPDATE messages SET content = ?, tokens = ? WHERE id = ? AND status = 'streaming'",
        (content, tokens, message_id),
    )


def _fail(op: _Op, err: StoreError, store: Store | None = None) -> None:
    if op.fut is not None:
        if not op.fut.done():
            op.fut.set_exception(err)
    else:  # fire-and-forget write: report on the next flush()
        log.warning("%s", err)
        if store is not None:
            store._bg_error = err


async def _close_all(conns: Sequence[aiosqlite.Connection]) -> None:
    for conn in conns:
        try:
            await conn.close()
        except Exception:  # closing is best effort
            pass
