"""Who may use ``hermes serve``: the bearer token for TCP, and the client names on record.

A Unix socket is protected by its file mode (0600 in a 0700 directory). Every TCP request must
carry ``Authorization: Bearer <token>``; the token is generated on first start and kept in
the user config directory, mode 0600 (``hermes serve --show-token`` prints it).
"""

from __future__ import annotations

import hmac
import os
import re
import secrets
from collections.abc import Callable
from pathlib import Path

import platformdirs

from hermes_tui.server.listener import APP_NAME

TOKEN_FILE = "serve-token"
TOKEN_LABEL = "token"  # the client name recorded for TCP requests without a User-Agent
_PRODUCT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,39}")


def token_path() -> Path:
    return Path(platformdirs.user_config_dir(APP_NAME)) / TOKEN_FILE


REPLACED_NOTE = (
    "the token file {path} was readable by other users, so it was replaced by a new token; "
    "restart a running hermes serve (it still accepts only the old one)"
)


def load_or_create_token(
    path: Path | None = None, warn: Callable[[str], None] | None = None
) -> str:
    """The server's token, created (mode 0600, never readable by others) on first use.

    A token file that others could read is replaced by a new token; ``warn`` is told so (a
    server already running keeps the old token in memory until it restarts).
    """
    path = path or token_path()
    try:
        token = path.read_text(encoding="ascii").strip()
        if stat_private(path) and token:
            return token
        if token and warn is not None:
            warn(REPLACED_NOTE.format(path=path))
    except FileNotFoundError:
        pass
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    token = "hermes-" + secrets.token_urlsafe(32)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(token + "\n")
    os.replace(tmp, path)
    return token


def read_token(path: Path | None = None) -> str | None:
    """The stored token, or None when none was generated yet."""
    try:
        return (path or token_path()).read_text(encoding="ascii").strip() or None
    except (FileNotFoundError, UnicodeDecodeError):
        return None


def stat_private(path: Path) -> bool:
    """A token file anyone else could read is not trusted: it is replaced by a new one."""
    st = path.stat()
    return st.st_uid == os.getuid() and not st.st_mode & 0o077


def bearer_ok(header: str | None, token: str) -> bool:
    if not header:
        return False
    scheme, _, value = header.partition(" ")
    # Bytes: compare_digest refuses a str with non-ASCII characters (a TypeError, a 500).
    given = value.strip().encode("utf-8", "surrogateescape")
    return scheme.lower() == "bearer" and hmac.compare_digest(given, token.encode())


def client_name(user_agent: str | None, fallback: str) -> str:
    """``OpenAI/Python 1.40`` -> ``OpenAI``: the product of the User-Agent, or ``fallback``."""
    match = _PRODUCT.match((user_agent or "").strip())
    return match.group(0).split("/")[0] if match else fallback
