"""hermes's own commands as clients of a running ``hermes serve``.

``locate`` finds the server to use: ``--server``, ``$HERMES_SERVER``, ``[server] url``, else the
default socket when a server listens there (``off`` in any of them: always in-process).
``ServerPool`` is what a ``Session`` needs from a pool (``generate``, ``snapshot``...) spoken
over the API: the session keeps its personas, routing, sentinel and records; the server owns the
models, the memory budget and the one admission queue for the whole machine.

When the server goes away mid-turn, that turn ends with ``E_SERVER_DOWN``; the next message
reconnects, or falls back to an in-process pool when the server is still gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx2

from agents.engine import DONE, EngineError, Message, SamplingParams, relay
from agents.errors import HermesError
from agents.pool.queue import NeverFitsError, PoolBusyError
from hermes_tui.server.auth import read_token
from hermes_tui.server.listener import default_socket_path, is_private_socket

SERVER_ENV = "HERMES_SERVER"
TOKEN_ENV = "HERMES_SERVER_TOKEN"
OFF = frozenset({"off", "none", "no", "0", "in-process"})
PROBE_TIMEOUT_S = 1.0
CLI_SERVER: str | None = None  # --server of the running command (set by the CLI)


class ServerDownError(HermesError):
    """The server went away (or cannot be reached) during a turn."""

    code = "E_SERVER_DOWN"


@dataclass(frozen=True)
class ServerAddress:
    shown: str  # unix:/path or http://host:port
    base_url: str  # what httpx2 requests go to
    uds: str | None
    token: str | None
    source: str  # --server, $HERMES_SERVER, [server] url, default socket

    def client(self, timeout: float | None = None, name: str = "hermes") -> httpx2.AsyncClient:
        """``name``: the client name the server records and is fair between."""
        transport = httpx2.AsyncHTTPTransport(uds=self.uds) if self.uds else None
        headers = {"user-agent": f"{name}/0.1"}
        if self.token:
            headers["authorization"] = f"Bearer {self.token}"
        return httpx2.AsyncClient(
            transport=transport,
            base_url=self.base_url,
            headers=headers,
            timeout=httpx2.Timeout(timeout, connect=5.0),
        )


def parse_address(text: str, source: str, token: str | None = None) -> ServerAddress:
    """``unix:/path``, ``/path/to/serve.sock`` or ``http(s)://host:port[/v1]``."""
    text = text.strip()
    if text.startswith("unix:") or text.startswith("/"):
        path = text.removeprefix("unix:")
        return ServerAddress(f"unix:{path}", "http://hermes", path, token, source)
    from hermes_tui.errors import Fail

    if text.startswith(("http://", "https://")):
        base = text.rstrip("/").removesuffix("/v1")
        try:  # "http://[::1" and a host that is not UTF-8 were an internal error (InvalidURL)
            url = httpx2.URL(base)
        except httpx2.InvalidURL as exc:
            raise Fail(f"{source}: {text!r} is not a valid URL ({exc})", 2) from None
        if not url.host:
            raise Fail(f"{source}: {text!r} has no host (expected http(s)://host:port)", 2)
        if url.port is not None and not 1 <= url.port <= 65535:
            raise Fail(f"{source}: {text!r}: port {url.port} is not in 1..65535", 2)
        tok = token or os.environ.get(TOKEN_ENV) or read_token()
        return ServerAddress(base, base, None, tok, source)
    raise Fail(f"{source}: expected unix:/path or http(s)://host:port, got {text!r}", 2)


def locate(explicit: str | None = None, configured: str | None = None) -> ServerAddress | None:
    """The server hermes should use, or None for in-process. No network I/O here."""
    for value, source in (
        (explicit or CLI_SERVER, "--server"),
        (os.environ.get(SERVER_ENV), f"${SERVER_ENV}"),
        (configured, "[server] url"),
    ):
        if value:
            return None if value.strip().lower() in OFF else parse_address(value, source)
    path = default_socket_path()
    # Only a socket of ours in a directory nobody else can write to: without XDG_RUNTIME_DIR
    # the default lives under /tmp, where another user could put a server of their own.
    if path.exists() and is_private_socket(path):
        return ServerAddress(f"unix:{path}", "http://hermes", str(path), None, "default socket")
    return None


async def probe(address: ServerAddress, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """None when the server answers /health, else why not (one line)."""
    try:
        async with address.client(timeout) as http:
            resp = await http.get("/health")
    except httpx2.HTTPError as exc:
        return f"no hermes serve at {address.shown} ({type(exc).__name__})"
    if resp.status_code == 401:
        return f"hermes serve at {address.shown} refused the token (hermes serve --show-token)"
    if resp.status_code != 200 or resp.json().get("status") != "ok":
        return f"hermes serve at {address.shown} is not ready (HTTP {resp.status_code})"
    return None


def _error_of(status: int, body: Any, shown: str) -> Exception:
    err = body.get("error", {}) if isinstance(body, dict) else {}
    message = err.get("message") or f"HTTP {status}"
    code = err.get("code")
    if status == 429 or code == PoolBusyError.code:
        return PoolBusyError(message)
    if code == NeverFitsError.code:
        return NeverFitsError(message)
    if code == ServerDownError.code or status == 503:
        return ServerDownError(f"hermes serve at {shown}: {message}")
    return EngineError(f"hermes serve at {shown}: {message}")


class ServerPool:
    """A pool whose models live in ``hermes serve`` (see the module docstring)."""

    def __init__(
        self,
        address: ServerAddress,
        *,
        fallback: Callable[[], Any] | None = None,
        client_id: str | None = None,
    ) -> None:
        self.address = address
        self.fallback = fallback
        self.local: Any = None  # the in-process pool once the server was found gone
        self.client_id = client_id or f"hermes-{os.getpid()}"
        self.down = False
        self.events: list[Any] = []
        self._snapshot: Any = None
        self._snap_task: asyncio.Task | None = None
        self._snap_at = 0.0

    @property
    def where(self) -> str:
        return "in-process (server gone)" if self.local is not None else self.address.shown

    def add_listener(self, listener: Any) -> None:
        """Pool events happen (and are recorded) in the server."""

    async def prefetch(self, model: str) -> bool:
        return False

    async def _use_local(self) -> bool:
        """After a failure: reconnect if the server is back, else fall back in-process."""
        if not self.down:
            return self.local is not None
        if await probe(self.address) is None:
            self.down = False
            return False
        if self.fallback is None:
            return False
        if self.local is None:
            self.local = self.fallback()
        return True

    async def generate(
        self,
        persona: str,
        model: str,
        messages: list[Message],
        params: SamplingParams,
        cancel: asyncio.Event | None = None,
        priority: str = "interactive",
        *,
        info: Any = None,
        **_: Any,
    ) -> AsyncIterator[str]:
        """``info`` (a ``GenerationInfo``), when given, gets the server's finish reason."""
        if await self._use_local():
            async for piece in self.local.generate(
                persona, model, messages, params, cancel, priority, info=info
            ):
                yield piece
            return
        body: dict[str, Any] = {
            "model": model,
            "messages": messages,
            "stream": True,
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            # This process runs the persona's sentinel on the stream itself (and records
            # it): the server's gateway would only check the same text twice.
            "hermes": {"sentinel": "off"},
        }
        if params.seed is not None:
            body["seed"] = params.seed
        if params.stop:
            body["stop"] = list(params.stop)
        rid = secrets.token_hex(8)
        headers = {
            "x-hermes-priority": priority,
            "x-hermes-record": "client",  # this process records the turn in its session
            "x-hermes-seq": f"{self.client_id}:{persona}",
            "x-hermes-request": rid,
        }
        if priority == "interactive":
            # A chat's turn outlives its terminal (SIGHUP, an SSH drop): the server finishes
            # and stores it. Esc or the sentinel still stop it (POST /hermes/cancel below).
            headers["x-hermes-detach"] = "finish"
        queue: asyncio.Queue[Any] = asyncio.Queue()
        reader = asyncio.ensure_future(self._read(body, headers, queue, info))
        try:
            async for piece in relay(queue, cancel):
                yield piece
        finally:
            if not reader.done():
                if cancel is not None and cancel.is_set() and "x-hermes-detach" in headers:
                    await self._cancel(rid)
                reader.cancel()  # closes the stream (the server stops a non-detached one)
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader

    async def _cancel(self, rid: str) -> None:
        with contextlib.suppress(httpx2.HTTPError, asyncio.TimeoutError):
            async with self.address.client(PROBE_TIMEOUT_S, self.client_id) as http:
                await http.post(f"/hermes/cancel/{rid}")

    async def _read(
        self, body: dict, headers: dict, queue: asyncio.Queue[Any], info: Any = None
    ) -> None:
        shown = self.address.shown
        try:
            async with self.address.client(None, self.client_id) as http:
                async with http.stream(
                    "POST", "/v1/chat/completions", json=body, headers=headers
                ) as resp:
                    if resp.status_code != 200:
                        raw = await resp.aread()
                        with contextlib.suppress(ValueError):
                            raw = json.loads(raw)
                        self._fail(_error_of(resp.status_code, raw, shown), queue)
                        return
                    finished = False
                    async for event in httpx2.EventSource(resp):
                        if event.data == "[DONE]":
                            finished = True
                            break
                        data = json.loads(event.data)
                        if "error" in data:
                            self._fail(_error_of(500, data, shown), queue)
                            return
                        for choice in data.get("choices", ()):
                            piece = choice.get("delta", {}).get("content")
                            if piece:
                                queue.put_nowait(piece)
                            if info is not None and choice.get("finish_reason"):
                                info.finish_reason = choice["finish_reason"]
                    if not finished:
                        raise httpx2.RemoteProtocolError("stream ended without [DONE]")
        except (httpx2.TransportError, httpx2.RemoteProtocolError) as exc:
            self.down = True
            queue.put_nowait(
                ServerDownError(f"hermes serve at {shown} went away mid-turn ({exc or type(exc)})")
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a reply we cannot read: one line, this turn only
            queue.put_nowait(EngineError(f"hermes serve at {shown}: {type(exc).__name__}: {exc}"))
        finally:
            queue.put_nowait(DONE)

    def _fail(self, exc: Exception, queue: asyncio.Queue[Any]) -> None:
        # A server that says it is going away (shutting down, 503) is down as surely as one
        # that vanished: the next turn probes it, then falls back in-process.
        if isinstance(exc, ServerDownError):
            self.down = True
        queue.put_nowait(exc)

    # -- the dashboard -------------------------------------------------------------------
    def snapshot(self) -> Any:
        """The whole machine's pool as the server sees it (refreshed in the background)."""
        if self.local is not None:
            return self.local.snapshot()
        now = time.monotonic()
        if (self._snap_task is None or self._snap_task.done()) and now - self._snap_at > 0.5:
            self._snap_at = now
            with contextlib.suppress(RuntimeError):
                self._snap_task = asyncio.get_running_loop().create_task(self._refresh())
        return self._snapshot

    async def _refresh(self) -> None:
        with contextlib.suppress(Exception):
            async with self.address.client(PROBE_TIMEOUT_S) as http:
                resp = await http.get("/hermes/pool")
                if resp.status_code == 200:
                    self._snapshot = resp.json()

    async def close(self) -> None:
        if self._snap_task is not None:
            self._snap_task.cancel()
            with contextlib.suppress(BaseException):
                await self._snap_task
        if self.local is not None:
            await self.local.close()


class RemoteJudge:
    """The server's judge worker, asked over the API (one judge model for the machine)."""

    start_error: str | None = None

    def __init__(self, address: ServerAddress) -> None:
        self.address = address

    def take_down_verdicts(self) -> list[Any]:
        return []

    async def judge(self, request: Any, timeout_s: float = 10) -> Any:
        from sentinel.judge import JudgeResult

        body = {
            "contract_kind": request.contract_kind,
            "instructions": request.instructions,
            "text": request.text,
            "offset": request.offset,
        }
        try:
            async with self.address.client(timeout_s) as http:
                resp = await http.post("/hermes/judge", json=body)
            data = resp.json() if resp.status_code == 200 else None
        except (httpx2.HTTPError, ValueError):
            return None
        if not isinstance(data, dict) or "on_task" not in data:
            return None
        return JudgeResult(
            bool(data["on_task"]), str(data.get("reason", "")), float(data["latency_s"])
        )

    async def close(self) -> None:
        return None


async def connect(address: ServerAddress | None, fallback: Callable[[], Any]) -> ServerPool | None:
    """A ``ServerPool`` when ``address`` answers; None (in-process) when there is no server.

    A server named explicitly (--server, $HERMES_SERVER, [server] url) that does not answer is
    an error: the user asked for it. The default socket without a live server is not.
    """
    if address is None:
        return None
    why = await probe(address)
    if why is None:
        return ServerPool(address, fallback=fallback)
    if address.source == "default socket":
        return None
    from hermes_tui.errors import Fail

    raise Fail(f"{why} ({address.source}; {SERVER_ENV}=off runs in-process)", 3)
