"""The gateway on the wire: chunks with tool-call deltas and the in-band ``hermes`` object,
hidden correction / Fix_Syntax turns, and the whole (non-streaming) answer.

Chunks carry ``"hermes": {"verdicts": [...]}`` when verdicts became known (standard clients
ignore unknown fields); the last chunk (and a whole answer) also carries ``sentinel`` (the
mode), ``corrections`` and, when the stream ended with ``content_filter``, ``code`` and
``detail``.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

from hermes_tui.server import openai_schema as oa
from hermes_tui.server.completion import Completion
from hermes_tui.server.gateway import Content, Gateway, Out, ToolDelta, hermes_field
from hermes_tui.server.openai_schema import ApiError
from sentinel.verdict import Verdict


def delta_of(item: Out) -> dict[str, Any]:
    if isinstance(item, Content):
        return {"content": item.text}
    call: dict[str, Any] = {"index": item.index, "function": {"arguments": item.arguments}}
    if item.id is not None:
        call["id"] = item.id
        call["type"] = "function"
        call["function"]["name"] = item.name
    return {"tool_calls": [call]}


def _chunks(
    cid: str, model: str, created: int, outs: list[Out], verdicts: list[Verdict]
) -> list[dict[str, Any]]:
    chunks = [oa.chunk(cid, model, created, delta_of(o)) for o in outs]
    if verdicts:
        if not chunks:
            chunks.append(oa.chunk(cid, model, created, {}))
        chunks[-1]["hermes"] = hermes_field(verdicts)
    return chunks


def _followup(c: Completion, hidden: str) -> Completion:
    """The hidden turn after ``c``: its output and the sentinel's request appended."""
    gw: Gateway = c.watcher
    nxt = Completion(c.core, c.request, c.target, c.client, priority=c.priority, record=c.record)
    nxt.messages = [
        *c.messages,
        {"role": "assistant", "content": "".join(gw.raw)},
        {"role": "user", "content": hidden},
    ]
    nxt.corrections_used = c.corrections_used + 1
    nxt.hidden_prompt = hidden
    nxt.parent_session = c.session_id
    return nxt


def _undeliverable_code(gw: Gateway) -> tuple[str, str]:
    for call in gw.broken_calls:
        if call.check is not None:
            for v in call.check.verdicts:
                if v.code in ("E_TOOL_ARGS", "E_TOOL_SCHEMA", "E_TOOL_UNKNOWN"):
                    return v.code, v.detail
    return "E_TOOL_ARGS", "tool call not deliverable"


def _end(
    c: Completion, gw: Gateway, delivered: int, filtered: tuple[str, str] | None
) -> tuple[str, dict[str, Any]]:
    """(finish_reason, extra hermes fields) of a finished request."""
    extra: dict[str, Any] = {"sentinel": gw.opts.mode, "corrections": c.corrections_used}
    if c.status == "halted":
        extra.update(code=c.halt_code or c.code, detail=c.halt_detail)
        return "content_filter", extra
    if filtered is not None:
        extra.update(code=filtered[0], detail=filtered[1])
        return "content_filter", extra
    if delivered:
        return "tool_calls", extra
    return c.finish_reason, extra


async def stream_events(c: Completion) -> AsyncIterator[dict[str, Any]]:
    """The SSE events of a streamed completion through the gateway."""
    cid, created, model = oa.completion_id(), int(time.time()), c.request.model

    def data(obj: dict[str, Any]) -> dict[str, Any]:
        return {"data": json.dumps(obj, ensure_ascii=False)}

    yield data(oa.chunk(cid, model, created, {"role": "assistant", "content": ""}))
    try:
        async for _ in c.pieces():
            for ch in _chunks(cid, model, created, *c.watcher.drain()):
                yield data(ch)
    except ApiError as exc:
        yield data(exc.body())
        yield {"data": "[DONE]"}
        return
    gw: Gateway = c.watcher
    for ch in _chunks(cid, model, created, *gw.drain()):
        yield data(ch)
    delivered = len(gw.tool_calls()) if gw.calls else 0
    filtered = None
    last, tokens = c, c.tokens
    if gw.enforce and gw.broken_calls and c.status == "done":
        # Fix_Syntax: hidden turns until the calls are deliverable (their text is not sent).
        index = max((call.sent_index or 0) + 1 for call in gw.calls)
        fixed: list[dict[str, Any]] = []
        while last.corrections_used < gw.settings.max_corrections:
            nxt = _followup(last, last.watcher.fix_request())
            try:
                async for _ in nxt.pieces():
                    pass
            except ApiError as exc:
                yield data(exc.body())
                yield {"data": "[DONE]"}
                return
            last, tokens = nxt, tokens + nxt.tokens
            fgw: Gateway = nxt.watcher
            _, verdicts = fgw.drain()
            if verdicts:
                yield data(_chunks(cid, model, created, [], verdicts)[0])
            if nxt.status != "done":
                break
            if fgw.calls and not fgw.broken_calls:
                fixed = fgw.tool_calls()
                break
        for call in fixed:
            fn = call["function"]
            outs: list[Out] = [
                ToolDelta(index, call["id"], fn["name"], ""),
                ToolDelta(index, None, None, fn["arguments"]),
            ]
            for ch in _chunks(cid, model, created, outs, []):
                yield data(ch)
            index += 1
        delivered += len(fixed)
        if not fixed:
            filtered = _undeliverable_code(last.watcher if last.watcher.calls else gw)
    reason, extra = _end(last, gw, delivered, filtered)
    if last is not c and last.status == "halted":
        reason = "content_filter"
    extra["corrections"] = last.corrections_used
    final = oa.chunk(cid, model, created, {}, reason)
    final["hermes"] = hermes_field([], **extra)
    yield data(final)
    if c.request.include_usage:
        yield data(oa.usage_chunk(cid, model, created, oa.usage(c.info.prompt_tokens, tokens)))
    yield {"data": "[DONE]"}


async def whole_answer(c: Completion) -> dict[str, Any]:
    """A non-streamed answer: hidden correction / Fix_Syntax turns run inside the server."""
    cid, created = oa.completion_id(), int(time.time())
    verdicts: list[Verdict] = []
    tokens = 0
    while True:
        async for _ in c.pieces():
            pass
        gw: Gateway = c.watcher
        tokens += c.tokens
        verdicts.extend(gw.verdicts)
        if c.status != "done" or not gw.enforce:
            break
        decision = gw.decision
        left = c.corrections_used < gw.settings.max_corrections
        if gw.broken_calls and left:
            c = _followup(c, gw.fix_request())
        elif decision is not None and decision.action == "correct" and decision.correction and left:
            c = _followup(c, decision.correction)
        else:
            break
    filtered = None
    if gw.enforce and gw.broken_calls:
        filtered = _undeliverable_code(gw)
    elif gw.enforce and gw.decision is not None and gw.decision.action == "halt":
        esc = gw.decision.escalated
        filtered = (gw.decision.code or "E_HALTED", esc.detail if esc else "")
    calls = gw.tool_calls() if filtered is None else []
    reason, extra = _end(c, gw, len(calls), filtered)
    text = "".join(gw.content)
    body = oa.completion(
        cid, c.request.model, created, text, reason, oa.usage(c.info.prompt_tokens, tokens)
    )
    message = body["choices"][0]["message"]
    if calls:
        message["tool_calls"] = calls
        message["content"] = text or None
    body["hermes"] = hermes_field(verdicts, **extra)
    return body
