"""Store errors: one-line messages that say what happened to the file and what to do."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from agents.errors import HermesError

# What reading a damaged database can raise besides sqlite3.Error: Python's sqlite3 decodes
# SQLite's own error message as UTF-8, and a corrupt schema page puts raw page bytes into that
# message ("malformed database schema (…\xba…)"), so execute() itself raises this.
DB_ERRORS = (sqlite3.Error, UnicodeDecodeError)


class StoreError(HermesError):
    """A problem with the database file, as one line saying what happened and what to do."""

    code = "E_STORE"


def printable(text: str, limit: int = 200) -> str:
    """One line of plain text: a corrupt page's bytes end up in SQLite's messages and must
    neither break the one-line error nor reach the terminal as control sequences."""
    out = "".join(ch if ch.isprintable() else " " if ch in "\t\n\r" else "?" for ch in text)
    return out if len(out) <= limit else out[: limit - 1] + "…"


def _sqlite_header(path: Path | str) -> bool:
    """Whether the file starts like an SQLite database (a damaged one still does)."""
    try:
        with open(path, "rb") as f:
            return f.read(16) == b"SQLite format 3\x00"
    except OSError:
        return False


def map_error(
    exc: BaseException, path: Path | str, busy_timeout_ms: int, readonly: bool = False
) -> StoreError:
    """Map an sqlite3/OS error to a one-line StoreError that says what to do.

    ``readonly``: the command only reads (``hermes log``, ``review``, ``export``), so a file
    that is not an SQLite file at all is a wrong path, not something to move out of the way;
    a damaged database still gets the move-aside advice."""
    msg = printable(str(exc))
    low = msg.lower()
    aside = "move it aside (hermes then starts a fresh one) or pass another database path"
    if readonly and "not a database" in low and not _sqlite_header(path):
        aside = "check the path or pass another --db"  # /etc/passwd: not something to move
    if isinstance(exc, UnicodeDecodeError) or "could not decode" in low:
        # Text that is not UTF-8 where hermes wrote UTF-8: damaged pages, or a foreign file.
        return StoreError(
            f"database {path} is corrupt or not a hermes database (it holds bytes that are not "
            f"valid UTF-8 text); {aside}"
        )
    if "locked" in low or "busy" in low:
        return StoreError(
            f"database {path} is locked by another process (gave up after {busy_timeout_ms} ms);"
            " close the other program using it and retry"
        )
    if "not a database" in low or "malformed" in low or "corrupt" in low:
        return StoreError(f"database {path} is corrupt or not a hermes database ({msg}); {aside}")
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
