"""Starting and stopping ``hermes serve``: listeners, the pool, uvicorn, signals, logging."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn

from hermes_tui.config import Config
from hermes_tui.server.auth import load_or_create_token, token_path
from hermes_tui.server.listener import (
    ListenError,
    ServerLock,
    bind_tcp,
    bind_unix,
    default_socket_path,
    is_loopback,
    private_dir,
)

log = logging.getLogger("hermes.serve")


@dataclass(frozen=True)
class ServeOptions:
    socket_path: Path | None = None  # None: the default socket in the user runtime dir
    host: str | None = None
    port: int | None = None
    no_auth: bool = False
    log_prompts: bool = False
    judge: bool = True
    db_path: Path | None = None


class _Server(uvicorn.Server):
    """uvicorn, with running completions ended first when SIGINT/SIGTERM arrives."""

    core: Any = None

    def handle_exit(self, sig: int, frame: Any) -> None:
        if self.core is not None and not self.core.stopping:
            self.core.begin_shutdown()
        super().handle_exit(sig, frame)
        # uvicorn re-raises the signal once it stopped, which would kill the process before
        # the pool, the judge and the database are closed: we exit 0 ourselves instead.
        self._captured_signals.clear()


def _setup_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    logger = logging.getLogger("hermes.serve")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False


def serve(config: Config, options: ServeOptions) -> int:
    """Run the server until SIGINT/SIGTERM; returns the exit code. Raises ``ListenError``."""
    _setup_logging()
    path = options.socket_path or default_socket_path()
    tcp = options.host is not None or options.port is not None
    host = options.host or "127.0.0.1"
    port = options.port if options.port is not None else 8642
    token: str | None = None
    if tcp and options.no_auth:
        log.warning(
            "WARNING: --no-auth: anyone who can reach %s:%s can use the pool and read "
            "what it generates",
            host,
            port,
        )
    elif tcp:
        token = load_or_create_token(warn=log.warning)
    own_dir = options.socket_path is None  # --socket's directory is the user's, not ours
    private_dir(path.parent, own=own_dir)
    lock = ServerLock(path)
    lock.acquire()
    try:
        sockets = [bind_unix(path, own_dir=own_dir)]
        if tcp:
            sockets.append(bind_tcp(host, port))  # a bad --host fails here, before the warning
            if not is_loopback(host):
                log.warning(
                    "listening on %s: reachable from other machines (bearer token required)", host
                )
        return asyncio.run(_main(config, options, sockets, path, token, tcp))
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
        lock.release()


async def _main(
    config: Config,
    options: ServeOptions,
    sockets: list,
    path: Path,
    token: str | None,
    tcp: bool,
) -> int:
    from hermes_tui.server.app import build_app
    from hermes_tui.server.service import ServerCore

    core = await ServerCore.start(
        config,
        db_path=options.db_path,
        judge=options.judge,
        log_prompts=options.log_prompts,
        priorities=config_priorities(config),
    )
    app = build_app(core, token)
    uv_config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=5,
        ws="none",
    )
    server = _Server(uv_config)
    server.core = core
    where = [f"unix:{path}"]
    if tcp:
        host, port = sockets[1].getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        auth = "no auth" if token is None else f"bearer token in {token_path()}"
        where.append(f"http://{shown}:{port}/v1 ({auth})")
    log.info("hermes serve listening on %s", "; ".join(where))
    log.info("%s; database %s", core.summary(), core.store.path)
    try:
        await server.serve(sockets=sockets)
    finally:
        await core.close()
        log.info("hermes serve stopped")
    return 0


def config_priorities(config: Config) -> tuple[str, ...]:
    from agents.pool.queue import PRIORITIES

    return tuple(getattr(config, "server_priorities", None) or PRIORITIES)


__all__ = ["ListenError", "ServeOptions", "serve"]
