"""Where ``hermes serve`` listens, and the lock that keeps it to one server per socket.

The default listener is a Unix domain socket in the user's runtime directory (mode 0600 in a
0700 directory: other local users can neither connect nor see it). TCP is added only with
``--host/--port`` and always with a bearer token (see ``auth``).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import socket
import stat
import tempfile
import warnings
from pathlib import Path
from typing import Any

import platformdirs

from agents.errors import HermesError

APP_NAME = "hermes-tui"
SOCKET_NAME = "serve.sock"
_MAX_SUN_PATH = 107  # sockaddr_un.sun_path holds 108 bytes, NUL included


class ListenError(HermesError):
    """A listener that cannot be opened, phrased as one line (exit 3, or 2 for usage)."""

    code = "E_LISTEN"

    def __init__(self, message: str, exit_status: int = 3) -> None:
        super().__init__(message)
        self.exit_status = exit_status


def runtime_dir() -> Path:
    """The user's runtime directory for hermes (``$XDG_RUNTIME_DIR/hermes-tui`` on Linux).

    Without a usable runtime directory (no ``XDG_RUNTIME_DIR``, e.g. a container), a private
    directory in the system temp dir named after the user id.
    """
    if os.environ.get("XDG_RUNTIME_DIR"):
        return Path(os.environ["XDG_RUNTIME_DIR"]) / APP_NAME
    with warnings.catch_warnings():  # platformdirs warns (on stderr) when it has none either
        warnings.simplefilter("ignore")
        base = Path(platformdirs.user_runtime_dir(APP_NAME, ensure_exists=False))
    if base.parent.is_dir() and os.access(base.parent, os.W_OK | os.X_OK):
        return base
    return Path(tempfile.gettempdir()) / f"hermes-tui-{os.getuid()}"


def is_private_socket(path: Path) -> bool:
    """``path`` is a socket of ours in a directory of ours that no one else can write to."""
    try:
        st, parent = path.lstat(), path.parent.lstat()
    except OSError:
        return False
    uid = os.getuid()
    return (
        stat.S_ISSOCK(st.st_mode)
        and st.st_uid == uid
        and stat.S_ISDIR(parent.st_mode)
        and parent.st_uid == uid
        and not parent.st_mode & 0o022
    )


def default_socket_path() -> Path:
    return runtime_dir() / SOCKET_NAME


def private_dir(path: Path, own: bool = True) -> Path:
    """Create ``path`` mode 0700, or check that an existing one is ours.

    ``own``: the directory is hermes's own (the runtime dir), so an existing one is made 0700
    too. A directory the user named with ``--socket`` (their project, $HOME, /tmp) is never
    re-moded: the socket in it is 0600 itself, which is what ``connect()`` checks.
    """
    existed = path.is_dir()
    if not own and not existed:
        # A typo in --socket must not create a tree of directories (/a/b with 0755 parents).
        raise ListenError(
            f"--socket: directory {path} does not exist; create it first or choose another path",
            exit_status=2,
        )
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = path.stat()
    if st.st_uid != os.getuid():
        raise ListenError(f"{path} belongs to another user; refusing to put a socket there")
    if (own or not existed) and stat.S_IMODE(st.st_mode) & 0o077:
        os.chmod(path, 0o700)
    return path


class ServerLock:
    """An exclusive ``flock`` next to the socket, held for the server's lifetime."""

    def __init__(self, socket_path: Path) -> None:
        self.path = socket_path.with_name(socket_path.name + ".lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        try:  # no symlink followed: --socket may name a directory others can write to
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        except OSError as exc:
            raise ListenError(f"cannot open {self.path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            os.close(fd)
            pid = f" (pid {other})" if other.isdigit() else ""
            raise ListenError(
                f"a hermes serve is already running on {self.path.with_suffix('')}{pid}"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)
            self._fd = None


def bind_unix(path: Path, own_dir: bool = True) -> socket.socket:
    """A listening Unix socket at ``path``, mode 0600 from the start (umask while binding).

    Call with the ``ServerLock`` held: a socket file left by a dead server is removed, a live
    one cannot exist (its server would hold the lock).
    """
    if len(os.fsencode(path)) > _MAX_SUN_PATH:
        raise ListenError(f"socket path is too long for a Unix socket: {path}", exit_status=2)
    private_dir(path.parent, own=own_dir)
    with contextlib.suppress(FileNotFoundError):
        if not stat.S_ISSOCK(path.lstat().st_mode):
            raise ListenError(f"{path} exists and is not a socket; refusing to replace it")
        path.unlink()  # stale: its server is gone (we hold the lock)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(str(path))
    except OSError as exc:
        sock.close()
        raise ListenError(f"cannot listen on {path}: {exc.strerror}") from None
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    sock.listen(128)
    sock.setblocking(False)
    return sock


def resolve_tcp(host: str, port: int) -> list[Any]:
    """``getaddrinfo`` for listening on ``host``; a name that does not resolve or is no host
    name at all (a label over 63 characters, "a..b", bytes that are not UTF-8: the idna codec
    raised UnicodeError, a traceback) is a ListenError, exit 2."""
    try:
        return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ListenError(f"--host {host}: {exc.strerror}", exit_status=2) from None
    except UnicodeError as exc:
        found = re.search(r"\(UnicodeError: (.*)\)$", str(exc))
        why = found.group(1) if found else str(exc)
        if not host.isascii() and host.encode("utf-8", "replace").decode() != host:
            why = "expected UTF-8 text, found invalid bytes"
        raise ListenError(f"--host {host!r}: not a valid host name ({why})", 2) from None


def bind_tcp(host: str, port: int) -> socket.socket:
    """A listening TCP socket (IPv4 or IPv6 by ``host``)."""
    infos = resolve_tcp(host, port)
    family, _, _, _, addr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
    except OSError as exc:
        sock.close()
        raise ListenError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(128)
    sock.setblocking(False)
    return sock


def is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
