"""The database file on disk: where it lives, creating it private, the URIs SQLite opens it
with (including the ``immutable=1`` fallback for read-only media), and the writers' lock."""

from __future__ import annotations

import asyncio
import errno
import os
import sqlite3
import stat
import struct
from pathlib import Path
from urllib.parse import quote

import platformdirs

from hermes_tui.store.errors import StoreError


def default_db_path() -> Path:
    """Where hermes keeps its database unless told otherwise (per user, private)."""
    return Path(platformdirs.user_data_dir("hermes-tui")) / "hermes.db"


class WritersLock:
    """Which processes have the database open to write: a shared ``flock`` each (see Recovery
    in the package docstring).

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


class SessionClaims:
    """Which sessions this process is writing to: a write lock on byte ``session_id`` of the
    writers' lock file, one open file description per store (Linux "OFD" locks: they die with
    the process and are not dropped when another descriptor of the file closes). Two
    processes appending to one session interleaved their turns, each with its own history
    (``hermes batch --resume 1`` while a chat or batch run was writing session 1).

    Where OFD locks are missing (not Linux) or the file cannot be opened, every claim
    succeeds, as before.
    """

    def __init__(self, db: Path) -> None:
        self._fd: int | None = None
        if _OFD_SETLK is not None:
            try:
                self._fd = os.open(_lock_path(db), os.O_RDWR | os.O_CREAT, 0o600)
            except OSError:
                self._fd = None

    def claim(self, session_id: int) -> bool:
        """Take session ``session_id`` for this store; False if another process has it."""
        return self._fd is None or _session_lock(self._fd, session_id, _F_WRLCK)

    def release(self, session_id: int) -> None:
        if self._fd is not None:
            _session_lock(self._fd, session_id, _F_UNLCK)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # drops every claim
            self._fd = None

    @staticmethod
    def claimed(db: Path, session_id: int) -> bool:
        """Whether some live process is writing to session ``session_id`` (checked, not taken)."""
        if _OFD_GETLK is None:
            return False
        try:
            fd = os.open(_lock_path(db), os.O_RDONLY)
        except OSError:
            return False
        try:
            import fcntl

            got = fcntl.fcntl(fd, _OFD_GETLK, _flock_struct(_F_WRLCK, session_id))
            return struct.unpack(_FLOCK_FORMAT, got)[0] != _F_UNLCK
        except OSError:
            return False
        finally:
            os.close(fd)


try:
    import fcntl as _fcntl

    _OFD_SETLK: int | None = getattr(_fcntl, "F_OFD_SETLK", None)
    _OFD_GETLK: int | None = getattr(_fcntl, "F_OFD_GETLK", None)
    _F_WRLCK, _F_UNLCK = _fcntl.F_WRLCK, _fcntl.F_UNLCK
except ImportError:  # not POSIX
    _OFD_SETLK = _OFD_GETLK = None
    _F_WRLCK, _F_UNLCK = 1, 2

# struct flock: l_type, l_whence (short), l_start, l_len (off_t), l_pid (pid_t), padded
_FLOCK_FORMAT = "hhqqi4x"


def _flock_struct(lock_type: int, session_id: int) -> bytes:
    return struct.pack(_FLOCK_FORMAT, lock_type, os.SEEK_SET, session_id, 1, 0)


def _session_lock(fd: int, session_id: int, lock_type: int) -> bool:
    import fcntl

    assert _OFD_SETLK is not None
    try:
        fcntl.fcntl(fd, _OFD_SETLK, _flock_struct(lock_type, session_id))
    except (BlockingIOError, PermissionError):  # EAGAIN / EACCES: another process holds it
        return False
    except OSError:
        return True
    return True


def _lock_path(db: Path) -> str:
    """Keyed by the database file's real path, not the name it was opened by: a second
    process that reached the same file through a symlink (or ``..``) took it for a database
    nobody was writing and marked the first one's live message ``interrupted``. (SQLite names
    its -wal and -shm after the real path too.)"""
    return f"{os.path.realpath(db)}-writers"


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


def missing_directory(path: Path) -> str | None:
    """Why hermes will not create a database at ``path``, or None: the directory it would go
    in does not exist, or is not a directory. Only the default location's directories are
    created (a typo in ``--db`` or ``[storage] db`` used to create a tree and scatter
    databases). A directory that cannot be looked into is left for opening to report."""
    path = path.expanduser()
    if path.absolute() == default_db_path().absolute():
        return None
    parent = path.parent
    try:
        if stat.S_ISDIR(parent.stat().st_mode):
            return None
    except (FileNotFoundError, NotADirectoryError):
        for above in parent.parents:  # a file where a directory should be: "/etc/passwd/x/h.db"
            try:
                if not stat.S_ISDIR(above.stat().st_mode):
                    return f"{above} is not a directory"
                break
            except (FileNotFoundError, NotADirectoryError):
                continue
            except OSError:
                break
        return f"directory {parent} does not exist"
    except OSError:
        return None
    return f"{parent} is not a directory"


def prepare_file(path: Path) -> None:
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


def uri(path: Path, mode: str) -> str:
    return f"file:{quote(str(path.absolute()))}?mode={mode}"


def immutable_uri(path: Path, exc: BaseException) -> str | None:
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
    return uri(path, "ro") + "&immutable=1"
