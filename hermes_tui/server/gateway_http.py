"""The gateway on the wire: chunks with tool-call deltas and the in-band ``hermes`` object,
hidden correction / Fix_Syntax turns, and the whole (non-streaming) answer.

Chunks carry ``"hermes": {"verdicts": [...]}`` when verdicts became known (standard clients
ignore unknown fields); the last chunk (and a whole answer) also carries ``sentinel`` (the
mode), ``corrections`` and, when the stream ended with ``content_filter``, ``code`` and
``detail``.

Secrets never leave in the clear (``[storage] redact_secrets``, on by default): streamed
content and tool-call arguments pass an ``outbound.HeldBackScrubber`` each (the unfinished
word is held back until it cannot grow into a secret, then sent redacted); a whole answer,
a delivered call's arguments and every verdict's detail are redacted whole.

Where ``tool_choice`` requires a call (``"required"`` or a named function, enforced), the
answer is a call: content is held back until one starts, then sent before it; an answer in
which none starts (``E_TOOL_REQUIRED``, a halt, an error) sends none of its content.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from hermes_tui.outbound import (
    OFF_LOOP_CHARS,
    WORD_END,
    HeldBackScrubber,
    hide_unfinished,
    scrub_value,
)
from hermes_tui.redact import redact
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


class Outgoing:
    """What of a request's output may leave now, secrets redacted (see the module docstring).

    ``items`` takes the gateway's drained output, ``end`` what is still held back when the
    answer ends. Content held back is released before a tool call starts (it is complete).
    ``wait_for_call``: tool_choice requires a call, no content leaves until one starts."""

    def __init__(self, enabled: bool, *, whole_calls: bool, wait_for_call: bool = False) -> None:
        self.enabled = enabled
        self.whole_calls = whole_calls  # enforce: a call's arguments come complete, at once
        self.content = HeldBackScrubber(enabled)
        self.args: dict[int, HeldBackScrubber] = {}
        self.waiting = wait_for_call
        self._unsent: list[str] = []  # content while waiting for a call, as the model wrote it

    async def _feed(self, scrub: HeldBackScrubber, text: str) -> str:
        if scrub.costly(text):  # a huge piece: not on the event loop
            return await asyncio.to_thread(scrub.feed, text)
        return scrub.feed(text)

    async def _call_started(self) -> list[Out]:
        """The content that waited for a call, redacted, all of it (a call follows it)."""
        self.waiting = False
        text = await self._feed(self.content, "".join(self._unsent)) + self.content.flush()
        self._unsent = []
        return [Content(text)] if text else []

    async def items(self, outs: list[Out], *, call_started: bool = False) -> list[Out]:
        """What of ``outs`` may leave now; ``call_started``: the model has begun a call
        (the gateway may hold the call itself until its arguments are complete)."""
        released: list[Out] = []
        if self.waiting and call_started:
            released += await self._call_started()
        for item in outs:
            if isinstance(item, Content) and self.waiting:
                self._unsent.append(item.text)
                continue
            if isinstance(item, Content):
                text = await self._feed(self.content, item.text)
                if text:
                    released.append(Content(text))
                continue
            if rest := self.content.flush():
                released.append(Content(rest))
            if self.whole_calls:
                args = await arguments_out(item.arguments, self.enabled)
            else:
                scrub = self.args.setdefault(item.index, HeldBackScrubber(self.enabled))
                args = await self._feed(scrub, item.arguments)
            if item.id is not None or args:
                released.append(ToolDelta(item.index, item.id, item.name, args))
        return released

    def end(self, halted: bool) -> list[Out]:
        """The rest: the unfinished word of an answer halted mid-stream is dropped (what
        halted it may be a secret cut too short for the detector), any other is sent,
        redacted (an answer halted as it ended has a finished last word). Content still
        waiting for a call is dropped: the answer broke tool_choice (or was stopped)."""
        out: list[Out] = []
        if self.waiting:
            self._unsent = []
        elif halted:
            self.content.drop()
        elif rest := self.content.flush():
            out.append(Content(rest))
        for index, scrub in self.args.items():
            if rest := scrub.flush():
                out.append(ToolDelta(index, None, None, rest))
        return out


async def text_out(text: str, enabled: bool) -> str:
    """A whole text as it may leave: redacted (in a worker thread when it is long)."""
    if not enabled or not text:
        return text
    if len(text) > OFF_LOOP_CHARS:
        return await asyncio.to_thread(redact, text, True)
    return redact(text, keep_offsets=True)


async def arguments_out(arguments: str, enabled: bool) -> str:
    """A complete call's arguments as they may leave: redacted, and still the JSON they were
    (a marker that would break it is put inside the string values instead)."""
    out = await text_out(arguments, enabled)
    if out == arguments:
        return out
    try:
        value = json.loads(arguments)
    except ValueError:
        return out
    try:
        json.loads(out)
    except ValueError:
        return json.dumps(scrub_value(value), ensure_ascii=False)
    return out


def safe_verdicts(verdicts: list[Verdict], enabled: bool) -> list[Verdict]:
    """Verdicts as they may leave: a detail quoting the answer is redacted."""
    if not enabled:
        return verdicts
    return [dataclasses.replace(v, detail=redact(v.detail, keep_offsets=True)) for v in verdicts]


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
    if gw.missing_call:
        return "E_TOOL_REQUIRED", gw.required_detail()
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

    enabled = c.core.config.redact_secrets
    gw: Gateway = c.watcher
    wait = gw.enforce and gw.call_required  # tool_choice requires a call
    out = Outgoing(enabled, whole_calls=gw.enforce, wait_for_call=wait)

    async def released() -> list[dict[str, Any]]:
        outs, verdicts = c.watcher.drain()
        items = await out.items(outs, call_started=bool(gw.calls))
        return _chunks(cid, model, created, items, safe_verdicts(verdicts, enabled))

    yield data(oa.chunk(cid, model, created, {"role": "assistant", "content": ""}))
    try:
        async for _ in c.pieces():
            for ch in await released():
                yield data(ch)
    except ApiError as exc:
        for ch in _chunks(cid, model, created, out.end(halted=False), []):
            yield data(ch)
        yield data(exc.body())
        yield {"data": "[DONE]"}
        return
    for ch in await released():
        yield data(ch)
    delivered = len(gw.tool_calls()) if gw.calls else 0
    filtered = None
    last, tokens = c, c.tokens
    if gw.enforce and gw.needs_fix and c.status == "done":
        # Fix_Syntax: hidden turns until the calls are deliverable (their text is not sent),
        # or until there is a call where tool_choice requires one.
        index = max(((call.sent_index or 0) + 1 for call in gw.calls), default=0)
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
                yield data(_chunks(cid, model, created, [], safe_verdicts(verdicts, enabled))[0])
            if nxt.status != "done":
                break
            if fgw.calls and not fgw.needs_fix:
                fixed = fgw.tool_calls()
                break
        for call in fixed:
            fn = call["function"]
            outs: list[Out] = [
                ToolDelta(index, call["id"], fn["name"], ""),
                ToolDelta(index, None, None, await arguments_out(fn["arguments"], enabled)),
            ]
            for ch in _chunks(cid, model, created, outs, []):
                yield data(ch)
            index += 1
        delivered += len(fixed)
        if not fixed:
            lgw: Gateway = last.watcher
            filtered = _undeliverable_code(lgw if lgw.calls or lgw.missing_call else gw)
            if last.status == "done":
                await last.withheld(*filtered)
    reason, extra = _end(last, gw, delivered, filtered)
    if last is not c and last.status == "halted":
        reason = "content_filter"
    for ch in _chunks(cid, model, created, out.end(halted=c.stopped == "halted"), []):
        yield data(ch)
    extra["corrections"] = last.corrections_used
    if enabled and extra.get("detail"):
        extra["detail"] = redact(extra["detail"], keep_offsets=True)
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
        if gw.needs_fix and left:
            c = _followup(c, gw.fix_request())
        elif decision is not None and decision.action == "correct" and decision.correction and left:
            c = _followup(c, decision.correction)
        else:
            break
    filtered = None
    if gw.enforce and gw.needs_fix:
        filtered = _undeliverable_code(gw)
        if c.status == "done":
            await c.withheld(*filtered)
    elif gw.enforce and gw.decision is not None and gw.decision.action == "halt":
        esc = gw.decision.escalated
        filtered = (gw.decision.code or "E_HALTED", esc.detail if esc else "")
    enabled = c.core.config.redact_secrets
    calls = gw.tool_calls() if filtered is None else []
    for call in calls:
        fn = call["function"]
        fn["arguments"] = await arguments_out(fn["arguments"], enabled)
    reason, extra = _end(c, gw, len(calls), filtered)
    if enabled and extra.get("detail"):
        extra["detail"] = redact(extra["detail"], keep_offsets=True)
    text = "".join(gw.content)
    if enabled and c.stopped == "halted":  # stopped mid-word: not sent (as in a stream)
        end = max(text.rfind(ch) for ch in WORD_END) + 1
        text = text[: max(end, len(text) - HeldBackScrubber.HOLD)]
    if gw.enforce and gw.missing_call:
        text = ""  # it had to be a call and none started: its text is not sent (as streamed)
    text = await text_out(text, enabled)
    if enabled:  # a secret cut short by max_tokens is not recognised by the detector
        text = hide_unfinished(text)
    body = oa.completion(
        cid, c.request.model, created, text, reason, oa.usage(c.info.prompt_tokens, tokens)
    )
    message = body["choices"][0]["message"]
    if calls:
        message["tool_calls"] = calls
        message["content"] = text or None
    body["hermes"] = hermes_field(safe_verdicts(verdicts, enabled), **extra)
    return body
