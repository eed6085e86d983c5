"""The sentinel and tool calls on every API stream (issue #15), between the pool and the wire.

A ``Gateway`` is the watcher a ``Completion``'s pieces pass through (``ServerCore.watch_for``).
It splits the model's output into content and tool calls (``agents.tool_parse``), runs the
sentinel on the content (the persona's contract when ``model`` is a persona; the generic
checks for a bare model; the JSON check when ``response_format`` asks for ``json_object`` /
``json_schema``) and ``sentinel.tool_calls.ToolCallCheck`` on each call's arguments as they
stream, plus the loop check across the conversation's calls. What the client gets is a list
of ``Out`` items the HTTP layer turns into chunks (``drain()``).

Per request (``"hermes": {"sentinel": ...}`` in the body):

* ``enforce`` (default): a critical verdict stops generation at once (``finish_reason:
  "content_filter"``, with ``hermes.code`` / ``hermes.detail``); tool calls are held until
  their arguments are complete and pass every check, then sent whole; a broken, unknown or
  schema-violating call asks the model for a fixed call (the hidden Fix_Syntax turn, at most
  ``[sentinel] max_corrections``) or ends with ``content_filter`` and its code: a broken call
  is never delivered. Non-streaming: a minor verdict on the content runs the hidden correction
  turn inside the server; the client gets the corrected answer.
  ``tool_choice`` ``"required"`` or a named function is part of that contract: an answer
  with no call gets the same hidden turn asking for one (``E_TOOL_REQUIRED``), then ends with
  ``content_filter`` and that code; a call of a tool other than the named one is unknown.
* ``annotate``: verdicts in-band, nothing held, stopped or corrected.
* ``off``: no sentinel (tool calls are still parsed).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from agents.tool_parse import ArgsDelta, CallEnd, CallStart, TextDelta, ToolCallParser
from agents.tool_prompt import offered_tools, tool_names
from hermes_tui.server.openai_schema import ApiError, content_text
from sentinel.contract import Contract
from sentinel.decision import Decision
from sentinel.settings import SentinelSettings
from sentinel.tool_calls import (
    ToolCallCheck,
    ToolLoopSettings,
    find_tool_loops,
    missing_required_call,
    tool_schema_error,
)
from sentinel.verdict import Verdict

MODES = ("off", "annotate", "enforce")
# Tool-call codes that make a call undeliverable (in enforce mode: fix it, or content_filter).
UNDELIVERABLE = frozenset({"E_TOOL_ARGS", "E_TOOL_SCHEMA", "E_TOOL_UNKNOWN"})


@dataclass
class Options:
    """What a request asks of the gateway (checked: ``ApiError(400)`` when malformed)."""

    mode: str = "enforce"
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None
    schemas: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    json_kind: str | None = None  # "json_object" | "json_schema"
    json_schema: dict[str, Any] | None = None
    history_calls: list[tuple[str, str]] = field(default_factory=list)
    loop: ToolLoopSettings = field(default_factory=ToolLoopSettings)


def options_from(raw: dict[str, Any], settings: SentinelSettings) -> Options:
    """Read ``tools``, ``tool_choice``, ``response_format`` and ``hermes`` from a request."""
    opts = Options()
    hermes = raw.get("hermes") or {}
    if not isinstance(hermes, dict):
        raise ApiError(400, "hermes: must be an object", param="hermes")
    mode = hermes.get("sentinel", "enforce")
    if mode not in MODES:
        raise ApiError(400, f"hermes.sentinel: must be one of {', '.join(MODES)}", param="hermes")
    opts.mode = mode
    exempt = hermes.get("loop_exempt", [])
    if not isinstance(exempt, list) or not all(isinstance(t, str) for t in exempt):
        raise ApiError(400, "hermes.loop_exempt: must be a list of tool names", param="hermes")
    opts.loop = ToolLoopSettings(
        minor=settings.loop_minor_repeats,
        critical=settings.loop_critical_repeats,
        exempt=frozenset(exempt) | frozenset(settings.tool_loop_exempt),
    )
    tools = raw.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise ApiError(400, "tools: must be an array", param="tools")
        for i, tool in enumerate(tools):
            fn = tool.get("function") if isinstance(tool, dict) else None
            if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
                raise ApiError(400, f"tools[{i}]: needs function.name", param="tools")
            problem = tool_schema_error(fn.get("parameters"))
            if problem:
                raise ApiError(400, f"tools[{i}].function.parameters: {problem}", param="tools")
            opts.schemas[fn["name"]] = fn.get("parameters")
        opts.tools = tools or None
    choice = raw.get("tool_choice")
    if choice == "required" and not opts.tools:
        raise ApiError(400, "tool_choice: 'required' needs tools", param="tool_choice")
    if choice is not None and choice not in ("none", "auto", "required"):
        name = (choice.get("function") or {}).get("name") if isinstance(choice, dict) else None
        if name not in opts.schemas:
            raise ApiError(400, "tool_choice: names no tool of this request", param="tool_choice")
    opts.tool_choice = choice
    fmt = raw.get("response_format") or {}
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind in ("json_object", "json_schema"):
        opts.json_kind = kind
        if kind == "json_schema":
            schema = (fmt.get("json_schema") or {}).get("schema")
            problem = tool_schema_error(schema)
            if problem:
                raise ApiError(400, f"response_format.json_schema.schema: {problem}")
            opts.json_schema = schema
    for m in raw.get("messages") or []:
        for call in (m.get("tool_calls") or []) if isinstance(m, dict) else []:
            fn = call.get("function") or {} if isinstance(call, dict) else {}
            opts.history_calls.append((str(fn.get("name", "")), str(fn.get("arguments", ""))))
    return opts


def wire_messages(raw: dict[str, Any]) -> list[dict[str, Any]]:
    """The request's messages as the model should see them, tool calls and results kept."""
    out: list[dict[str, Any]] = []
    for m in raw.get("messages") or []:
        role = "system" if m.get("role") == "developer" else m.get("role", "user")
        content = m.get("content")
        if isinstance(content, list):
            content = content_text(content)
        msg: dict[str, Any] = {"role": role, "content": content or ""}
        if m.get("tool_calls"):
            msg["tool_calls"] = m["tool_calls"]
        if m.get("tool_call_id"):
            msg["tool_call_id"] = m["tool_call_id"]
        if m.get("name"):
            msg["name"] = m["name"]
        out.append(msg)
    return out


# -- what the client gets ------------------------------------------------------------------


@dataclass
class Content:
    text: str


@dataclass
class ToolDelta:
    """One ``delta.tool_calls`` entry (id/name only on a call's first delta)."""

    index: int
    id: str | None
    name: str | None
    arguments: str


Out = Content | ToolDelta


@dataclass
class _Call:
    index: int  # as the model produced it
    id: str
    name: str
    check: ToolCallCheck | None
    args: list[str] = field(default_factory=list)
    ended: bool = False
    sent_index: int | None = None  # index on the wire once (partly) delivered
    loops: list[Verdict] = field(default_factory=list)  # E_TOOL_LOOP on this call

    @property
    def arguments(self) -> str:
        return "".join(self.args)


class Gateway:
    """The watcher of one completion (``Watcher`` protocol of ``agents.session``), see above."""

    def __init__(
        self,
        opts: Options,
        monitor: Any,  # sentinel.monitor.Monitor for the content, or None (mode off)
        on_verdict: Callable[[Verdict], Awaitable[None]],
        settings: SentinelSettings,
        contract: Contract,
        *,
        stream: bool,
        first_index: int = 0,
    ) -> None:
        self.opts = opts
        self.monitor = monitor
        self.on_verdict = on_verdict
        self.settings = settings
        self.contract = contract
        self.stream = stream
        self.halt = asyncio.Event()
        self.halt_verdict: Verdict | None = None
        names = tool_names(offered_tools(opts.tools, opts.tool_choice))
        self.offered = names
        self.parser = ToolCallParser(names, plain_json=bool(names))
        self.calls: list[_Call] = []
        self.out: list[Out] = []
        self.pending: list[Verdict] = []  # verdicts not yet sent in-band
        self.verdicts: list[Verdict] = []
        self.content: list[str] = []
        self.raw: list[str] = []
        self.decision: Decision | None = None
        self._next_index = first_index
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def checking(self) -> bool:
        return self.opts.mode != "off"

    @property
    def enforce(self) -> bool:
        return self.opts.mode == "enforce"

    # -- verdicts ------------------------------------------------------------------------
    def _verdict(self, v: Verdict) -> None:
        """A verdict from a tool-call check (sync) or the content monitor (via ``noted``)."""
        self.verdicts.append(v)
        self.pending.append(v)
        task = asyncio.ensure_future(self.on_verdict(v))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if v.severity == "critical" and self.enforce and not self.halt.is_set():
            self.halt_verdict = v
            self.halt.set()

    async def noted(self, v: Verdict) -> None:
        """``on_verdict`` of the content monitor."""
        self.verdicts.append(v)
        self.pending.append(v)
        await self.on_verdict(v)
        if v.severity == "critical" and self.enforce and not self.halt.is_set():
            self.halt_verdict = v
            self.halt.set()

    # -- Watcher protocol ----------------------------------------------------------------
    def start(self) -> None:
        if self.monitor is not None:
            self.monitor.start()

    def feed(self, piece: str) -> None:
        self.raw.append(piece)
        for event in self.parser.feed(piece):
            self._event(event)

    def _event(self, event: Any) -> None:
        if isinstance(event, TextDelta):
            self.content.append(event.text)
            self.out.append(Content(event.text))
            if self.monitor is not None:
                self.monitor.feed(event.text)
        elif isinstance(event, CallStart):
            known = event.name in self.offered  # tool_choice naming one: only that one
            check = None
            if self.checking:
                schema = self.opts.schemas.get(event.name)
                check = ToolCallCheck(event.name, schema, known=known)
            call = _Call(event.index, event.id, event.name, check)
            self.calls.append(call)
            if not self.enforce:
                self._send_start(call)
        elif isinstance(event, ArgsDelta):
            call = self.calls[-1]
            call.args.append(event.text)
            if call.check is not None:
                for v in call.check.feed(event.text):
                    self._verdict(v)
            if not self.enforce:
                self.out.append(ToolDelta(self._wire(call), None, None, event.text))
        elif isinstance(event, CallEnd):
            call = self.calls[-1]
            call.ended = True
            if call.check is not None:
                for v in call.check.finish():
                    self._verdict(v)
                done = self.opts.history_calls + [(c.name, c.arguments) for c in self.calls]
                for v in find_tool_loops(done, self.opts.loop):
                    call.loops.append(v)
                    self._verdict(v)
            if self.enforce and self.deliverable(call):
                self._send_start(call)
                self.out.append(ToolDelta(self._wire(call), None, None, call.arguments))

    def _wire(self, call: _Call) -> int:
        if call.sent_index is None:
            call.sent_index = self._next_index
            self._next_index += 1
        return call.sent_index

    def _send_start(self, call: _Call) -> None:
        self.out.append(ToolDelta(self._wire(call), call.id, call.name, ""))

    def deliverable(self, call: _Call) -> bool:
        if call.check is None:
            return True
        found = [*call.check.verdicts, *call.loops]
        bad = [v for v in found if v.code in UNDELIVERABLE or v.severity == "critical"]
        return call.check.complete and call.check.broken_at is None and not bad

    def drain(self) -> tuple[list[Out], list[Verdict]]:
        out, self.out = self.out, []
        verdicts, self.pending = self.pending, []
        return out, verdicts

    async def finish(self, corrections_used: int = 0, *, cut_off: bool = False) -> Decision:
        for event in self.parser.finish():
            self._event(event)
        if self.checking and not self.calls:
            at = sum(len(t) for t in self.content)
            v = missing_required_call(self.opts.tool_choice, self.offered, at)
            if v is not None:
                self._verdict(v)
        if self.monitor is not None:
            decision: Decision = await self.monitor.finish(corrections_used, cut_off=cut_off)
            if decision.escalated is not None:
                self.verdicts.append(decision.escalated)
                self.pending.append(decision.escalated)
        else:
            decision = Decision("pass")
        for task in list(self._tasks):
            with contextlib.suppress(Exception):
                await task
        self.decision = decision
        return decision

    async def cancel(self) -> None:
        for event in self.parser.finish():
            self._event(event)
        if self.monitor is not None:
            await self.monitor.cancel()

    # -- what the request needs next ---------------------------------------------------
    @property
    def broken_calls(self) -> list[_Call]:
        return [c for c in self.calls if not self.deliverable(c)]

    @property
    def call_required(self) -> bool:
        choice = self.opts.tool_choice
        return bool(self.offered) and (choice == "required" or isinstance(choice, dict))

    @property
    def missing_call(self) -> bool:
        """tool_choice required a call and the answer has none (it is text)."""
        return self.call_required and not self.calls

    @property
    def needs_fix(self) -> bool:
        """The tool-call contract is broken: a call not deliverable, or none where one must be."""
        return bool(self.broken_calls) or self.missing_call

    def required_detail(self) -> str:
        v = missing_required_call(self.opts.tool_choice, self.offered, 0)
        return v.detail if v is not None else ""

    def tool_calls(self) -> list[dict[str, Any]]:
        """The delivered calls in OpenAI's ``message.tool_calls`` shape."""
        out = []
        for c in self.calls:
            if self.enforce and not self.deliverable(c):
                continue
            fn = {"name": c.name, "arguments": c.arguments}
            out.append({"id": c.id, "type": "function", "function": fn})
        return out

    def fix_request(self) -> str:
        """The hidden Fix_Syntax message for the broken calls (or the missing one)."""
        if self.missing_call:
            names = ", ".join(self.offered)
            return (
                "The sentinel rejected your answer: this request requires a tool call "
                f"({self.required_detail()}). Answer with a call of {names}: ONE valid JSON "
                "object of arguments matching its parameters schema, in "
                "<tool_call></tool_call> tags, and no other text."
            )
        lines = ["The sentinel rejected your tool call(s):"]
        for c in self.broken_calls:
            assert c.check is not None
            for v in c.check.verdicts:
                if v.code in UNDELIVERABLE:
                    lines.append(f"- {v.code} at characters {v.span[0]}-{v.span[1]}: {v.detail}")
        names = ", ".join(self.opts.schemas) or "none"
        lines.append(
            "Call the tool again with arguments that are ONE valid JSON object matching its "
            f"parameters schema (tools: {names}), in <tool_call></tool_call> tags."
        )
        return "\n".join(lines)


def contract_for_request(base: Contract, opts: Options) -> Contract:
    """The content contract: the persona's (or a plain text one), JSON when asked for."""
    if opts.json_kind is None:
        return base
    schema = opts.json_schema if opts.json_kind == "json_schema" else base.schema
    return dataclasses.replace(base, kind="json", schema=schema)


def hermes_field(verdicts: list[Verdict], **extra: Any) -> dict[str, Any]:
    """The in-band ``hermes`` object of a chunk or response."""
    out: dict[str, Any] = {"verdicts": [v.as_dict() for v in verdicts]}
    out.update({k: v for k, v in extra.items() if v is not None})
    return out
