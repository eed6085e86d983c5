"""Is this file a database this hermes can use? One check, shared by ``Store.open`` and
``hermes doctor`` (which reads the file without changing a byte)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from hermes_tui.store.errors import DB_ERRORS, StoreError, map_error, printable
from hermes_tui.store.files import immutable_uri, uri
from hermes_tui.store.migrations import SCHEMA_VERSION, too_new

FIRST_TABLE_SQL = "SELECT name FROM sqlite_schema WHERE type = 'table' LIMIT 1"


def schema_problem(path: Path | str, version: int, first_table: str | None) -> StoreError | None:
    """Why hermes must not touch this database, or None: newer than this hermes, or an SQLite
    database of some other program (schema version 0 with tables in it)."""
    if version > SCHEMA_VERSION:
        return too_new(path, version)
    if version == 0 and first_table is not None:
        return StoreError(
            f"{path} is an SQLite database but not a hermes one (it has a table "
            f"{printable(str(first_table))!r}); move it aside or pass another --db"
        )
    return None


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

    def connect(target: str) -> sqlite3.Connection:
        conn = sqlite3.connect(target, uri=True, isolation_level=None, timeout=1.0)
        try:
            conn.execute("SELECT count(*) FROM sqlite_schema").fetchall()
        except BaseException:
            conn.close()
            raise
        return conn

    conn = None
    try:
        try:
            conn = connect(uri(path, "ro"))
        except sqlite3.OperationalError as exc:
            fallback = immutable_uri(path, exc)
            if fallback is None:
                raise
            conn = connect(fallback)
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        out["schema_version"] = version
        check = conn.execute("PRAGMA quick_check(1)").fetchone()
        if check is None or str(check[0]).lower() != "ok":
            detail = printable(str(check[0] if check else "no answer"))
            raise sqlite3.DatabaseError(f"database disk image is malformed: {detail}")
        table = conn.execute(FIRST_TABLE_SQL).fetchone()
        problem = schema_problem(path, version, table[0] if table else None)
        if problem is not None:
            out["problem"] = str(problem)
        elif version == 0:
            out["note"] = "empty; hermes sets it up when it first writes"
        else:
            if version < SCHEMA_VERSION:
                out["note"] = f"schema {version}; hermes upgrades it to {SCHEMA_VERSION} on write"
            out["sessions"] = int(conn.execute("SELECT count(*) FROM sessions").fetchone()[0])
    except StoreError as exc:
        out["problem"] = str(exc)
    except (*DB_ERRORS, OSError) as exc:
        out["problem"] = str(map_error(exc, path, 1000))
    finally:
        if conn is not None:
            conn.close()
    return out
