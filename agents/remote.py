"""A remote OpenAI-compatible chat endpoint (llama.cpp server, vLLM, ...) as an Engine.

Only the standard library: ``http.client`` runs in a worker thread (it decodes chunked transfer
encoding for us) and each SSE ``data:`` line is handed to the event loop as it arrives. Requests
to one base URL share an ``asyncio.Semaphore`` so a small server is never sent more concurrent
streams than it is configured for (``ModelSpec.max_concurrency``).
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import re
import socket
import ssl
import threading
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

from agents.engine import DONE, Engine, EngineError, Message, SamplingParams, relay
from agents.specs import ModelSpec

CALL_CLOSE = "}</tool_call>"

# One semaphore per (base URL, event loop): asyncio primitives belong to one loop.
_LIMITS: dict[tuple[str, int], tuple[int, asyncio.Semaphore]] = {}


def endpoint_semaphore(base_url: str, limit: int) -> asyncio.Semaphore:
    """The shared concurrency limit of ``base_url`` (the first limit configured wins)."""
    key = (base_url.rstrip("/"), id(asyncio.get_running_loop()))
    if key not in _LIMITS:
        _LIMITS[key] = (limit, asyncio.Semaphore(max(1, limit)))
    return _LIMITS[key][1]


def chat_path(base_path: str) -> str:
    """``/v1`` → ``/v1/chat/completions``; a bare host gets the ``/v1`` prefix."""
    path = base_path.rstrip("/")
    if not (path.endswith("/v1") or "/v1/" in path + "/"):
        path += "/v1"
    return path + "/chat/completions"


_SURROGATE = re.compile("[\ud800-\udfff]")


def join_surrogates(held: str, piece: str) -> tuple[str, str]:
    """(text to emit, high surrogate to hold) for one streamed piece.

    A server may escape an emoji as ``\\ud83d\\ude00`` and split the pair across two
    events; each half alone is not text (UTF-8 cannot encode it, so storing it failed). A
    trailing high surrogate waits for the next piece; pairs are joined and any surrogate
    still alone becomes U+FFFD.
    """
    text = held + piece
    held = ""
    if text and "\ud800" <= text[-1] <= "\udbff":
        text, held = text[:-1], text[-1]
    if _SURROGATE.search(text):
        text = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return text, held


class RemoteEngine(Engine):
    """Streams ``/v1/chat/completions`` with ``stream: true`` from an OpenAI-compatible server."""

    reports_finish = True  # stream(outcome=...) says why the answer ended

    def __init__(
        self,
        name: str,
        base_url: str,
        *,
        model: str | None = None,
        api_key: str | None = None,
        max_concurrency: int = 1,
        connect_timeout_s: float = 10.0,
        read_timeout_s: float = 120.0,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise EngineError(
                f"{name}: remote url must be http(s)://host[:port]/..., got {base_url!r}"
            )
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.model = model or name
        self.api_key = api_key
        self.max_concurrency = max(1, max_concurrency)
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self._scheme = parts.scheme
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._path = chat_path(parts.path)

    @classmethod
    def from_spec(cls, spec: ModelSpec) -> RemoteEngine:
        assert spec.url is not None
        key = os.environ.get(spec.api_key_env) if spec.api_key_env else None
        return cls(
            spec.name,
            spec.url,
            model=spec.remote_model,
            api_key=key,
            max_concurrency=spec.max_concurrency,
            read_timeout_s=spec.timeout_s,
        )

    @property
    def url(self) -> str:
        return f"{self._scheme}://{self._host}:{self._port}{self._path}"

    def _connect(self) -> http.client.HTTPConnection:
        if self._scheme == "https":
            return http.client.HTTPSConnection(
                self._host,
                self._port,
                timeout=self.connect_timeout_s,
                context=ssl.create_default_context(),
            )
        return http.client.HTTPConnection(self._host, self._port, timeout=self.connect_timeout_s)

    def probe(self, timeout_s: float = 1.5) -> str | None:
        """Whether the server answers at all (``GET .../models``, ``timeout_s`` for connect
        and reply): None when it does (any HTTP status below 500), else why not."""
        conn = self._connect()
        conn.timeout = timeout_s
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        models = self._path.removesuffix("/chat/completions") + "/models"
        try:
            conn.request("GET", models, headers=headers)
            status = conn.getresponse().status
        except (OSError, http.client.HTTPException) as exc:
            reason = "no answer" if isinstance(exc, TimeoutError | socket.timeout) else str(exc)
            return f"{self.url}: {reason or type(exc).__name__} (within {timeout_s:g} s)"
        finally:
            conn.close()
        return None if status < 500 else f"{self.url}: HTTP {status}"

    def _body(
        self, messages: list[Message], params: SamplingParams, tools: dict[str, Any] | None = None
    ) -> bytes:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "stream": True,
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
        }
        if params.seed is not None:
            body["seed"] = params.seed
        if params.stop:
            body["stop"] = list(params.stop)
        if tools:  # passed through as the client sent them (tools, tool_choice)
            body.update(tools)
        return json.dumps(body).encode("utf-8")

    def _request(
        self,
        messages: list[Message],
        params: SamplingParams,
        emit: Any,
        stop_flag: threading.Event,
        holder: dict[str, Any],
        tools: dict[str, Any] | None = None,
    ) -> None:
        """Worker-thread body: POST, then parse server-sent events line by line."""
        conn = self._connect()
        holder["conn"] = conn
        try:
            headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
            if self.api_key:
                headers["Authorization"] = f"Bearer {self.api_key}"
            body = self._body(messages, params, tools)
            conn.request("POST", self._path, body=body, headers=headers)
            if conn.sock is not None:
                conn.sock.settimeout(self.read_timeout_s)
            resp = conn.getresponse()
            if resp.status >= 400:
                detail = resp.read(2000).decode("utf-8", "replace").strip()
                raise EngineError(
                    f"{self.name}: HTTP {resp.status} {resp.reason} from {self.url}: {detail}"
                )
            held = ""  # a high surrogate whose low half is in the next event
            calls: dict[str, Any] = {"open": False}  # a tool call's text is open (this stream's)
            while not stop_flag.is_set():
                raw = resp.readline()
                if not raw:
                    break
                line = raw.decode("utf-8", "replace").strip()
                if not line.startswith("data:"):
                    continue  # blank separators, comments, "event:" lines
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                piece = self._piece(data, calls)
                if piece:
                    piece, held = join_surrogates(held, piece)
                    if piece:
                        emit(piece)
            if held:
                emit("\ufffd")  # the pair never completed
            if calls["open"]:
                emit(CALL_CLOSE)
            holder["finish_reason"] = calls.get("finish_reason")
        except EngineError as exc:
            emit(exc)
        except ConnectionRefusedError as exc:
            emit(
                EngineError(
                    f"{self.name}: cannot connect to {self.url}: connection refused ({exc})"
                )
            )
        except TimeoutError:
            if conn.sock is None:  # never connected: the read limit is not the one at fault
                emit(
                    EngineError(
                        f"{self.name}: cannot connect to {self.url} within "
                        f"{self.connect_timeout_s:g} s; is the host up?"
                    )
                )
                return
            emit(
                EngineError(
                    f"{self.name}: {self.url} sent nothing for {self.read_timeout_s:g} s; "
                    f"is the server stuck? (models.{self.name}.timeout_s sets this limit)"
                )
            )
        except (OSError, http.client.HTTPException) as exc:
            if not stop_flag.is_set():
                emit(EngineError(f"{self.name}: connection to {self.url} failed: {exc!r}"))
        finally:
            conn.close()
            emit(DONE)

    def _piece(self, data: str, calls: dict[str, Any] | None = None) -> str | None:
        """The text of one event (JSON ``\\ud83d`` escapes may leave lone surrogates: see
        ``join_surrogates``); its ``finish_reason`` goes into ``calls``."""
        try:
            event = json.loads(data)
        except json.JSONDecodeError as exc:
            raise EngineError(f"{self.name}: bad server-sent event {data[:200]!r}") from exc
        if isinstance(event, dict) and "error" in event:
            raise EngineError(f"{self.name}: server error: {event['error']}")
        try:
            choice = event["choices"][0]
        except (KeyError, IndexError, TypeError):
            return None
        if calls is not None and choice.get("finish_reason"):
            calls["finish_reason"] = str(choice["finish_reason"])
        delta = choice.get("delta") or {}
        text = delta.get("content") or choice.get("text")
        out = str(text) if text is not None else ""
        for call in delta.get("tool_calls") or []:
            out += self._call_text(call, calls if calls is not None else {"open": False})
        return out or None

    @staticmethod
    def _call_text(call: Any, calls: dict[str, Any]) -> str:
        """A streamed OpenAI ``tool_calls`` delta as Hermes ``<tool_call>`` text, so the
        gateway parses and checks remote calls like a local model's (arguments raw)."""
        if not isinstance(call, dict):
            return ""
        fn = call.get("function") or {}
        out = ""
        if call.get("id") or fn.get("name"):  # a new call starts
            if calls["open"]:
                out += CALL_CLOSE
            out += f'<tool_call>{{"name": {json.dumps(str(fn.get("name") or ""))}, "arguments": '
            calls["open"] = True
        return out + str(fn.get("arguments") or "")

    async def stream(
        self,
        messages: list[Message],
        params: SamplingParams,
        cancel: asyncio.Event | None = None,
        tools: dict[str, Any] | None = None,
        outcome: dict[str, Any] | None = None,
    ) -> AsyncIterator[str]:
        """``tools``: ``{"tools": [...], "tool_choice": ...}`` sent as they are; the calls
        that come back are streamed as ``<tool_call>`` text (see ``_call_text``).
        ``outcome["finish_reason"]``: what the server said ended the answer (None: nothing)."""
        async with endpoint_semaphore(self.base_url, self.max_concurrency):
            loop = asyncio.get_running_loop()
            queue: asyncio.Queue[Any] = asyncio.Queue()
            stop_flag = threading.Event()
            holder: dict[str, Any] = {}

            def emit(item: Any) -> None:
                loop.call_soon_threadsafe(queue.put_nowait, item)

            worker = loop.run_in_executor(
                None, self._request, messages, params, emit, stop_flag, holder, tools
            )
            try:
                async for piece in relay(queue, cancel):
                    yield piece
            finally:
                stop_flag.set()
                sock = getattr(holder.get("conn"), "sock", None)
                if sock is not None and not worker.done():
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)  # unblock a readline waiting on data
                await asyncio.shield(worker)
                if outcome is not None:
                    outcome["finish_reason"] = holder.get("finish_reason")
