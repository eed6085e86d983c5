"""The HTTP side of ``hermes serve``: Starlette routes speaking the OpenAI API.

``GET /v1/models``, ``POST /v1/chat/completions`` (``stream`` true: server-sent events via
sse-starlette, ending with ``data: [DONE]``), ``GET /health`` and ``GET /hermes/pool`` (the
machine's pool snapshot, for the dashboard of connected chats). Errors are OpenAI's JSON shape.

Requests on the Unix socket are trusted by its file mode; requests over TCP need the bearer
token (unless the server was started with ``--no-auth``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from typing import Any, get_args

from sse_starlette import EventSourceResponse
from sse_starlette.sse import AppStatus
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hermes_tui.server import openai_schema as oa
from hermes_tui.server.auth import TOKEN_LABEL, bearer_ok, client_name
from hermes_tui.server.completion import Completion
from hermes_tui.server.openai_schema import ApiError
from hermes_tui.server.service import ServerCore

# Our completions end themselves on shutdown with a clear error event (see
# ServerCore.begin_shutdown); sse-starlette must not cut the streams before they can.
AppStatus.disable_automatic_graceful_drain()

MAX_BODY = 8 * 2**20


def error_response(exc: ApiError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


async def read_body(request: Request, limit: int = MAX_BODY) -> bytes:
    """The request body, refused (413) once it passes ``limit``: never read whole first."""
    too_big = ApiError(413, f"request body larger than {limit // 2**20} MiB")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_big
    parts: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_big
        parts.append(chunk)
    return b"".join(parts)


def _from_a_browser(request: Request) -> bool:
    """Browsers mark their requests (``Origin`` on POSTs, ``Sec-Fetch-*`` on all of them)."""
    return "origin" in request.headers or "sec-fetch-mode" in request.headers


def is_unix(request: Request) -> bool:
    """uvicorn reports a Unix socket's server address as (path, None)."""
    server = request.scope.get("server")
    return server is None or server[1] is None


class App:
    def __init__(self, core: ServerCore, token: str | None) -> None:
        self.core = core
        self.token = token  # None: --no-auth (TCP accepted without a token)

    def check_auth(self, request: Request) -> str:
        """The client's name, or ``ApiError(401)``."""
        header = request.headers.get("authorization")
        if is_unix(request):
            return client_name(request.headers.get("user-agent"), "local")
        if self.token is not None and not bearer_ok(header, self.token):
            why = "missing" if not header else "invalid"
            raise ApiError(
                401,
                f"{why} bearer token: TCP clients need 'Authorization: Bearer <token>' "
                "(hermes serve --show-token prints it)",
                type="authentication_error",
                code="invalid_api_key",
            )
        if self.token is None and _from_a_browser(request):
            # --no-auth: any web page the user visits could POST here (text/plain needs no
            # CORS preflight) or, by DNS rebinding, read the answers. API clients send neither.
            raise ApiError(
                403,
                "requests from a web browser are refused by a hermes serve without a token "
                "(--no-auth)",
                type="permission_error",
            )
        return client_name(request.headers.get("user-agent"), TOKEN_LABEL)

    # -- routes --------------------------------------------------------------------------
    async def health(self, request: Request) -> Response:
        self.check_auth(request)
        return JSONResponse({"status": "stopping" if self.core.stopping else "ok"})

    async def models(self, request: Request) -> Response:
        self.check_auth(request)
        data = []
        for name, target in self.core.targets.items():
            spec = self.core.config.models[target.model]
            where = spec.url or spec.device
            if target.kind == "persona":
                data.append(oa.model_entry(name, "hermes", "persona", model=target.model))
            else:
                owner = "remote" if spec.remote else "local"
                data.append(oa.model_entry(name, owner, "model", device=where))
        return JSONResponse({"object": "list", "data": data})

    async def pool(self, request: Request) -> Response:
        self.check_auth(request)
        snap = dataclasses.asdict(self.core.pool.snapshot())
        snap["judge_bytes"] = self.core.judge_bytes
        snap["clients"] = sorted({c.client for c in self.core.active})
        return JSONResponse(snap)

    async def cancel(self, request: Request) -> Response:
        """Stop the running completion a client named with ``x-hermes-request`` (Esc in a chat
        whose turns are detached: closing the stream alone would let the server finish it)."""
        self.check_auth(request)
        completion = self.core.by_request.get(request.path_params["rid"])
        if completion is None:
            raise ApiError(404, "no running completion with that id", code="not_found")
        completion.stop("cancelled")
        return JSONResponse({"cancelled": True})

    async def judge(self, request: Request) -> Response:
        """The sentinel's judge for hermes clients' monitors (``client.RemoteJudge``)."""
        self.check_auth(request)
        from sentinel.contract import ContractKind
        from sentinel.judge import JudgeRequest

        judge = self.core.judge
        try:
            data = json.loads(await read_body(request))
            kind, instructions, text = (data[k] for k in ("contract_kind", "instructions", "text"))
            offset = data.get("offset", 0)
            if kind not in get_args(ContractKind):
                raise ValueError(
                    f"contract_kind must be one of {', '.join(get_args(ContractKind))}"
                )
            if not isinstance(instructions, str) or not isinstance(text, str):
                raise TypeError("instructions and text must be strings")
            if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
                raise ValueError("offset must be a whole number >= 0")
            req = JudgeRequest(kind, instructions, text, offset)
        except (ValueError, KeyError, TypeError) as exc:
            raise ApiError(400, f"invalid judge request: {exc}") from None
        result = await judge.judge(req) if judge is not None else None
        return JSONResponse(dataclasses.asdict(result) if result is not None else None)

    async def chat_completions(self, request: Request) -> Response:
        client = self.check_auth(request)
        body = await read_body(request)
        req = oa.parse_chat_request(body)
        target = self.core.resolve(req.model)
        await self.core.admit(target)
        headers = request.headers
        completion = Completion(
            self.core,
            req,
            target,
            client,
            priority=headers.get("x-hermes-priority", "api"),
            record=headers.get("x-hermes-record", "server") != "client",
            seq_key=headers.get("x-hermes-seq"),
        )
        # Through the gateway (tool calls, in-band verdicts, corrections): gateway_http.py.
        from hermes_tui.server.gateway_http import stream_events, whole_answer

        rid = headers.get("x-hermes-request")
        if rid and len(rid) <= 64:
            completion.request_id = rid
            self.core.by_request[rid] = completion
        await completion.open()  # a refusal is an HTTP status, not an error event
        if req.stream and headers.get("x-hermes-detach") == "finish":
            return EventSourceResponse(_detached(stream_events(completion), completion), ping=15)
        if req.stream:
            return EventSourceResponse(_guarded(stream_events(completion), completion), ping=15)
        try:
            return JSONResponse(await whole_answer(completion))
        except ApiError as exc:
            return error_response(exc)
        finally:
            await completion.abandon()


async def _guarded(events: AsyncIterator[dict[str, Any]], c: Completion) -> AsyncIterator[Any]:
    """``events``, and the completion cleaned up if the client left before its first piece."""
    try:
        async for event in events:
            yield event
    finally:
        await c.abandon()


async def _detached(events: AsyncIterator[dict[str, Any]], c: Completion) -> AsyncIterator[Any]:
    """``events`` produced by a task of their own: when the client goes away (a chat whose
    terminal vanished), the completion runs to its end and is stored by the server."""
    queue: asyncio.Queue[Any] = asyncio.Queue()

    async def pump() -> None:
        try:
            async for event in _guarded(events, c):
                queue.put_nowait(event)
        finally:
            queue.put_nowait(None)

    task = asyncio.ensure_future(pump())
    c.core.background.add(task)
    task.add_done_callback(c.core.background.discard)
    try:
        while (event := await queue.get()) is not None:
            yield event
    except BaseException:
        c.orphaned = not task.done()
        raise


def build_app(core: ServerCore, token: str | None) -> Starlette:
    app = App(core, token)

    async def on_api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return error_response(exc)

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        status = exc.status_code
        kind = "not_found" if status == 404 else "invalid_request_error"
        message = f"{request.method} {request.url.path}: {exc.detail}"
        return JSONResponse(oa.error_body(message, kind), status_code=status)

    routes = [
        Route("/health", app.health, methods=["GET"]),
        Route("/v1/models", app.models, methods=["GET"]),
        Route("/v1/chat/completions", app.chat_completions, methods=["POST"]),
        Route("/hermes/pool", app.pool, methods=["GET"]),
        Route("/hermes/judge", app.judge, methods=["POST"]),
        Route("/hermes/cancel/{rid}", app.cancel, methods=["POST"]),
    ]
    return Starlette(
        routes=routes,
        exception_handlers={ApiError: on_api_error, HTTPException: on_http_error},
    )
