"""``hermes web``: the chat TUI in a web browser (textual-serve), behind a secret token.

What stands between another user (or a web page) and your chat, history and exports:

* a secret token, made once with :mod:`secrets` and kept 0600 in the user config dir
  (``web_token``); the URL printed at start carries it, the page (``/?token=...``) and the
  websocket (``/ws/<token>``) both check it in constant time, and the access log, which would
  repeat it on every request, is off;
* the websocket's ``Origin`` must be this server's own origin (a page elsewhere that knows the
  token still cannot drive the TUI from a visitor's browser) and, on a loopback address, the
  ``Host`` must be a loopback name (DNS rebinding);
* at most ``--max-sessions`` chats at once (each connection is a chat process);
* any address that is not loopback gets a loud warning on stderr: plain http, so the token
  and the whole chat cross the network unencrypted.

textual-serve starts each chat with ``create_subprocess_shell``; the command is built from an
argument list with :func:`shlex.join`, so a config path with spaces or ``;`` reaches the chat
as one argument and the shell runs nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import logging
import os
import secrets
import shlex
import signal
import stat
import sys
from pathlib import Path
from typing import Any

import platformdirs

TOKEN_FILE = "web_token"
DEFAULT_MAX_SESSIONS = 3
LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


def token_path() -> Path:
    from hermes_tui.config import APP_NAME

    return Path(platformdirs.user_config_dir(APP_NAME)) / TOKEN_FILE


def _read_private(path: Path) -> str | None:
    """The token in ``path`` if it is a regular file of ours that nobody else can read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
            return None
        text = os.read(fd, 256).decode("ascii", "replace").strip()
    finally:
        os.close(fd)
    return text if len(text) >= 32 and text.isascii() and text.isprintable() else None


def load_token(path: Path | None = None, rotate: bool = False) -> tuple[str, bool]:
    """(token, made_now). A missing, unreadable, too-open or foreign file gets a new token."""
    path = path or token_path()
    if not rotate:
        token = _read_private(path)
        if token:
            return token, False
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    token = secrets.token_urlsafe(32)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, (token + "\n").encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return token, True


def is_loopback(host: str) -> bool:
    name = host.strip("[]").lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def chat_command(config_path: str | None, db_path: str | None) -> str:
    """The shell command textual-serve runs per connection: every argument quoted."""
    argv = [sys.executable, "-m", "hermes_tui.cli", "chat"]
    if config_path:
        argv += ["--config", str(Path(config_path).resolve())]
    if db_path:
        argv += ["--db", str(Path(db_path).resolve())]
    return "exec " + shlex.join(argv)


def url_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def make_server(
    command: str, host: str, port: int, token: str, max_sessions: int, note: list[str]
) -> Any:
    """A textual-serve ``Server`` that checks the token, the Origin and the session count."""
    import aiohttp_jinja2
    import jinja2
    from aiohttp import web
    from textual_serve.server import Server

    forbidden = "hermes web: this address needs the URL with its token (printed by hermes web)\n"

    def token_ok(given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), token.encode())

    def host_ok(request: web.Request) -> bool:
        if not is_loopback(host):
            return True
        try:
            name = (request.url.host or "").lower()
        except ValueError:  # a Host header yarl cannot parse ('x:1"><script>'): not ours
            return False
        return is_loopback(name)

    def headers(response: web.StreamResponse) -> None:
        response.headers["Cache-Control"] = "no-store"
        response.headers["Referrer-Policy"] = "no-referrer"  # the token is in the URL
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Content-Security-Policy"] = "frame-ancestors 'none'"

    class WebServer(Server):
        sessions = 0

        def initialize_logging(self) -> None:
            super().initialize_logging()
            # aiohttp's access log writes each request's path and query: the token, again and
            # again. One printed URL is enough.
            logging.getLogger("aiohttp.access").setLevel(logging.WARNING)

        async def _make_app(self) -> web.Application:
            app = web.Application()
            aiohttp_jinja2.setup(app, loader=jinja2.FileSystemLoader(self.templates_path))
            app.add_routes(
                [
                    web.get("/", self.handle_index, name="index"),
                    web.get("/ws/{token}", self.handle_websocket, name="websocket"),
                    # Download keys are random (uuid4) and sent only over an authorised
                    # websocket: a download is as private as the session that made it.
                    web.get("/download/{key}", self.handle_download, name="download"),
                    web.static("/static", self.statics_path, name="static"),
                ]
            )
            app.on_startup.append(self.on_startup)
            return app

        async def on_startup(self, app: web.Application) -> None:
            pass  # the URL is printed once the socket listens (below), not before

        def serve(self, debug: bool = False) -> None:
            self.debug = debug
            self.initialize_logging()
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(signal.SIGINT, self.request_exit)
                loop.add_signal_handler(signal.SIGTERM, self.request_exit)
            web.run_app(
                self._make_app(),
                host=self.host,
                port=self.port,
                handle_signals=False,
                loop=loop,
                access_log=None,
                # run_app calls this once every site listens: then the URL works at once.
                print=lambda *_: print("\n".join(note), flush=True),
            )

        async def handle_index(self, request: web.Request) -> web.StreamResponse:
            if not token_ok(request.query.get("token")) or not host_ok(request):
                raise web.HTTPForbidden(text=forbidden)
            scheme = "wss" if request.secure else "ws"
            context = {
                "font_size": max(6, min(64, _to_int(request.query.get("fontsize"), 16))),
                "app_websocket_url": f"{scheme}://{request.host}/ws/{token}",
                "config": {"static": {"url": "/static/"}},
                "application": {"name": self.title},
            }
            response = aiohttp_jinja2.render_template("app_index.html", request, context)
            headers(response)
            return response

        async def handle_websocket(self, request: web.Request) -> web.StreamResponse:
            if not token_ok(request.match_info.get("token")) or not host_ok(request):
                raise web.HTTPForbidden(text=forbidden)
            origin = request.headers.get("Origin", "")
            own = {f"http://{request.host}", f"https://{request.host}"}
            if origin not in own:
                raise web.HTTPForbidden(
                    text=f"hermes web: websocket from another origin ({origin or 'none'})\n"
                )
            if WebServer.sessions >= max_sessions:
                raise web.HTTPServiceUnavailable(
                    text=f"hermes web: {max_sessions} sessions are open already "
                    "(--max-sessions); close one first\n"
                )
            WebServer.sessions += 1
            try:
                return await super().handle_websocket(request)
            finally:
                WebServer.sessions -= 1

    return WebServer(command, host=host, port=port, title="hermes")


def _to_int(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


def serve(
    host: str,
    port: int,
    config_path: str | None,
    db_path: str | None,
    max_sessions: int,
    new_token: bool,
) -> None:
    """Run ``hermes web`` until Ctrl-C (the caller validated the config)."""
    from hermes_tui.errors import Fail

    try:
        import textual_serve.server  # noqa: F401
    except ImportError:
        raise Fail("textual-serve is not installed: pip install 'hermes-tui[server]'", 3) from None
    from hermes_tui.server.listener import ListenError, resolve_tcp

    try:  # a --host that is no host name fails here, before the warning (as hermes serve)
        resolve_tcp(host, port)
    except ListenError as exc:
        raise Fail(str(exc), exc.exit_status) from None
    token, made = load_token(rotate=new_token)
    url = f"http://{url_host(host)}:{port}/?token={token}"
    note = [f"hermes web: open {url}"]
    note.append(
        f"hermes web: the token is kept in {token_path()} (0600); "
        + ("a new one was made" if made else "hermes web --new-token replaces it")
    )
    note.append(f"hermes web: at most {max_sessions} sessions at once; Ctrl+C stops")
    if not is_loopback(host):
        bar = "!" * 78
        print(
            f"{bar}\n"
            f"hermes web: WARNING: listening on {host}, not on loopback.\n"
            "  Anyone who can reach this address and learns the URL gets your chats, your\n"
            "  history and exports, as you. The connection is plain http: the token and\n"
            "  every keystroke cross the network unencrypted. Prefer an SSH tunnel to\n"
            "  127.0.0.1, or put it behind an https proxy.\n"
            f"{bar}",
            file=sys.stderr,
            flush=True,
        )
    server = make_server(chat_command(config_path, db_path), host, port, token, max_sessions, note)
    try:
        server.serve()
    except OSError as exc:
        raise Fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}", 3) from None
