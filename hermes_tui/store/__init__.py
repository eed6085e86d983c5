"""SQLite persistence for hermes: sessions, messages, sentinel verdicts and pool events.

One job per module: ``database`` (``Store``: open, close), ``writes`` (its write methods),
``writer`` (the writer task), ``queries`` (reads), ``search`` (full text), ``migrations``
(the schema), ``inspect`` (is this file usable; ``hermes doctor``), ``files`` (the file, its
URIs and the writers' lock), ``errors``, ``rows`` (row types, built by column name) and
``times``. Exporting a
session as Markdown or JSON is not storage: see ``hermes_tui.export``.

Design, and why:

* **One writer task** (``writer.py``) owns the write connection and runs whatever is queued
  as one transaction; streaming checkpoints are coalesced there. Reads (``queries.py``,
  ``search.py``) use a second connection (WAL lets them run while the writer writes) and see
  everything a completed ``await`` of a write has committed.
* **Durability: WAL + synchronous=NORMAL.** In WAL mode with ``synchronous=NORMAL`` a commit
  is appended to the -wal file with a write() but the WAL is only fsynced at checkpoints. A
  crash of the *process* (SIGKILL, segfault, OOM-kill) loses nothing that was committed,
  because the data already sits in the OS page cache and the next opener replays the WAL.
  Only an OS crash or power cut can lose the last few commits, and even then the database
  stays consistent (never corrupt). For a chat transcript that is the right trade: FULL would
  add an fsync per checkpoint (every 0.25 s per streaming persona: ``CHECKPOINT_EVERY_S`` in
  ``hermes_tui.runtime``) for protection against power loss only.
* **Recovery.** Opening a writable store marks messages still ``streaming`` as
  ``interrupted``: they were being written by a process that died. Every writable store holds
  a shared ``flock`` on ``<db>-writers`` for its lifetime, and recovery first takes that lock
  exclusively: if another live process is writing (a batch run beside the chat), recovery is
  left for later, so its live messages are never marked. A read-only store (``hermes log``)
  shows ``streaming`` messages as ``interrupted`` when no live process holds the lock. Locks
  die with their process, so a crash never leaves a stale lock.
* **Migrations** (``migrations.py``) are an ordered list of small named async steps keyed by
  ``PRAGMA user_version``. A database newer than this code, or another program's, is refused
  rather than guessed at (``inspect.py``: the one check ``open`` and ``hermes doctor`` share).
* **Errors** the user can act on (locked, corrupt, unwritable, read-only, too new) surface as a
  one-line ``StoreError`` naming the path and what to do. Damaged pages can also surface as
  ``UnicodeDecodeError`` (bad bytes in text, or in SQLite's own error message); those count as
  corruption too (``errors.DB_ERRORS``).
* **Read-only directories.** A WAL reader needs a -shm file beside the database; where none
  can be created (read-only media, someone else's directory) a read-only store falls back to
  SQLite's ``immutable=1`` when that is safe (see ``files.immutable_uri``).
"""

from agents.events import FINAL_STATUSES, MESSAGE_STATUSES, MessageStatus
from hermes_tui.store.database import DEFAULT_BUSY_TIMEOUT_MS, Store
from hermes_tui.store.errors import StoreError
from hermes_tui.store.files import default_db_path, missing_directory
from hermes_tui.store.inspect import inspect_database
from hermes_tui.store.migrations import MIGRATIONS, SCHEMA_VERSION, migrate
from hermes_tui.store.rows import (
    MessageRow,
    SearchHit,
    SessionRow,
    VerdictRow,
)
from hermes_tui.store.search import SEARCH_WINDOW, fts_query
from hermes_tui.store.times import TimeLike, day_range
from hermes_tui.store.writer import MAX_BATCH, MAX_QUEUED, MessageRef
from sentinel.verdict import SEVERITIES

__all__ = [
    "DEFAULT_BUSY_TIMEOUT_MS",
    "FINAL_STATUSES",
    "MAX_BATCH",
    "MAX_QUEUED",
    "MESSAGE_STATUSES",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "SEARCH_WINDOW",
    "SEVERITIES",
    "MessageRef",
    "MessageRow",
    "MessageStatus",
    "SearchHit",
    "SessionRow",
    "Store",
    "StoreError",
    "TimeLike",
    "VerdictRow",
    "day_range",
    "default_db_path",
    "fts_query",
    "inspect_database",
    "migrate",
    "missing_directory",
]
