"""Checks on a model's tool calls: arguments as they stream, and loops of calls.

``ToolCallCheck`` watches ONE call's ``arguments`` text (the JSON object an agent will parse
and execute) piece by piece:

* ``E_TOOL_ARGS`` at the first character after which the text can no longer become a valid
  JSON object (``json_stream.JsonPushParser``, O(piece) per piece, no re-scan); also at the
  end when the arguments stop unfinished. Nothing is ever "repaired": a truncated call is a
  broken call.
* ``E_TOOL_SCHEMA`` once the object is complete, one verdict per violation of the tool's
  declared ``parameters`` JSON Schema (the validator its ``$schema`` names, Draft 2020-12 by
  default), with the JSON pointer in the detail.
* ``E_TOOL_UNKNOWN`` when the model calls a tool the request did not declare.
* ``E_UNSAFE_COMMAND`` / ``E_SECRET`` (critical) for destructive shell commands and
  credentials in ANY string argument: the safety checks' own detectors
  (``sentinel.checks.safety.UnsafeCommandCheck`` / ``SecretCheck``) run on the raw arguments
  as they stream (so ``"rm -rf /"`` is caught at its closing quote), and once more on every
  decoded string value when the object completes (escapes such as ``\\u002f`` or ``\\n``
  hide nothing).

``find_tool_loops`` looks at the calls of one conversation, in order (an agent sends the
whole history with every request, so the earlier requests' calls are in it), and reports
``E_TOOL_LOOP`` when the newest call is the same tool with the same arguments as the calls
before it, ``minor`` (default 3) or ``critical`` (default 5) times in a row, or when the
tail of the sequence is a short cycle (A B A B ...) repeated as often. A call that comes
back after something else happened in between is not a loop (re-reading a file after
editing it is normal). Arguments are compared canonically (parsed,
keys sorted), so ``{"a":1,"b":2}`` and ``{"b": 2, "a": 1}`` are the same call. Tools named in
``exempt`` (polling tools such as ``wait``) never count.

Spans are character offsets in the call's ``arguments`` text; ``detail`` starts with the
tool's name.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import jsonschema

from sentinel.checks.json_stream import JsonPushParser, ParseBreak
from sentinel.checks.safety import SecretCheck, UnsafeCommandCheck
from sentinel.verdict import DEFAULT_SEVERITY, Severity, Verdict

__all__ = [
    "CHECK",
    "ToolCallCheck",
    "ToolLoopSettings",
    "canonical_arguments",
    "find_tool_loops",
    "tool_schema_error",
]

CHECK = "tool_call"
_WS = frozenset(" \t\n\r")


def tool_schema_error(parameters: Any) -> str | None:
    """Why ``parameters`` is not a usable JSON Schema (for a 400 answer), or None."""
    if parameters is None:
        return None
    if not isinstance(parameters, dict):
        return "parameters must be a JSON Schema object"
    cls = jsonschema.validators.validator_for(parameters, default=jsonschema.Draft202012Validator)
    try:
        cls.check_schema(parameters)
    except jsonschema.SchemaError as exc:
        return f"invalid JSON Schema: {exc.message}"
    return _unresolvable_ref(parameters)


def _unresolvable_ref(schema: dict[str, Any]) -> str | None:
    """A ``$ref`` that does not point inside ``schema`` (another document, a missing
    definition): the checker would fail on the model's call, mid-stream. Nothing is fetched."""
    from referencing import Registry, Resource
    from referencing.exceptions import Unresolvable
    from referencing.jsonschema import DRAFT202012

    resource = Resource.from_contents(schema, default_specification=DRAFT202012)
    resolver = (
        Registry()
        .with_resource(resource.id() or "", resource)
        .resolver(base_uri=resource.id() or "")
    )
    todo: list[Any] = [schema]
    while todo:
        node = todo.pop()
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str):
                try:
                    resolver.lookup(ref)
                except Unresolvable:
                    return f"$ref {ref!r} does not resolve inside the schema"
            todo.extend(node.values())
        elif isinstance(node, list):
            todo.extend(node)
    return None


def _pointer(path: Sequence[Any]) -> str:
    parts = [str(p).replace("~", "~0").replace("/", "~1") for p in path]
    return "".join("/" + p for p in parts) if parts else "(root)"


def _strings(value: Any) -> Iterator[str]:
    """Every string in a parsed JSON value (keys too), depth first."""
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            yield node
        elif isinstance(node, dict):
            for k, v in node.items():
                yield k
                stack.append(v)
        elif isinstance(node, list):
            stack.extend(node)


class ToolCallCheck:
    """The sentinel's checks on one tool call's streaming ``arguments`` (see the module doc).

    ``known``: whether the request declared a tool of this name (else one E_TOOL_UNKNOWN).
    ``parameters``: that tool's JSON Schema (None: any object). ``severity``: per-code
    overrides, as in ``[sentinel.severity]``.
    """

    name = CHECK

    def __init__(
        self,
        tool: str,
        parameters: dict[str, Any] | None = None,
        *,
        known: bool = True,
        severity: dict[str, Severity] | None = None,
    ) -> None:
        self.tool = tool
        self._severity = dict(severity or {})
        self._validator: Any = None
        if parameters is not None:
            cls = jsonschema.validators.validator_for(
                parameters, default=jsonschema.Draft202012Validator
            )
            cls.check_schema(parameters)
            self._validator = cls(parameters)
        self._parser = JsonPushParser()
        self._pos = 0
        self._started = False
        self._known = known
        self._unsafe = UnsafeCommandCheck()
        self._secrets = SecretCheck()
        self._raw_codes: set[str] = set()  # codes the raw-text scan already reported
        # codes the decoded strings reported first (a prose-looking raw line waits for its end)
        self._decoded_codes: set[str] = set()
        self._finished = False
        self.broken_at: int | None = None  # offset of the first impossible character
        self.complete = False  # a whole, valid JSON object
        self.value: dict[str, Any] | None = None  # the parsed arguments once complete
        self.verdicts: list[Verdict] = []

    def _verdict(self, code: str, span: tuple[int, int], detail: str) -> Verdict:
        sev = self._severity.get(code, DEFAULT_SEVERITY.get(code, "minor"))
        return Verdict(CHECK, sev, code, span, f"{self.tool}: {detail}")

    def _out(self, found: list[Verdict]) -> list[Verdict]:
        self.verdicts.extend(found)
        return found

    def _break(self, brk: ParseBreak, width: int = 1) -> Verdict:
        self.broken_at = brk.offset
        return self._verdict("E_TOOL_ARGS", (brk.offset, brk.offset + width), brk.detail)

    def _scan_raw(self, found: list[Verdict], piece: str | None) -> None:
        for check in (self._unsafe, self._secrets):
            got = check.feed(piece) if piece is not None else check.finish()
            for v in got:
                if v.code in self._decoded_codes:
                    continue  # already reported for this call, from its decoded arguments
                self._raw_codes.add(v.code)
                found.append(self._verdict(v.code, v.span, v.detail))

    def feed(self, piece: str) -> list[Verdict]:
        """The next piece of the arguments text; the verdicts it made certain."""
        found: list[Verdict] = []
        if not self._known:
            self._known = True  # report once, at the first piece
            found.append(self._verdict("E_TOOL_UNKNOWN", (0, 0), "not a tool of this request"))
        base = self._pos
        self._pos += len(piece)
        if not piece or self._finished:
            return self._out(found)
        self._scan_raw(found, piece)
        if self.broken_at is not None:
            return self._out(found)
        if not self._started:
            # The arguments must be an object: the first non-blank character is '{'.
            for i, c in enumerate(piece):
                if c in _WS:
                    continue
                self._started = True
                if c != "{":
                    detail = f"arguments must be a JSON object, got {c!r}"
                    found.append(self._break(ParseBreak(base + i, detail)))
                    return self._out(found)
                break
        was_done = self._parser.completed
        brk = self._parser.feed(piece, base)
        if self._parser.completed and not was_done:
            self._complete(found)
        if brk is not None:
            found.append(self._break(brk))
        return self._out(found)

    def _complete(self, found: list[Verdict]) -> None:
        text = self._parser.text()
        try:
            value = json.loads(text)
        except (RecursionError, ValueError):  # valid per RFC but too deep for json.loads
            found.append(self._verdict("E_TOOL_ARGS", (0, self._pos), "nested too deeply"))
            return
        self.value = value
        self.complete = True
        if self._validator is not None:
            for err in sorted(self._validator.iter_errors(value), key=lambda e: list(e.path)):
                span = (self._parser.start, self._parser.stop)
                detail = f"{_pointer(list(err.absolute_path))}: {err.message}"
                found.append(self._verdict("E_TOOL_SCHEMA", span, detail))
        # Decoded strings: what escapes could hide from the raw scan.
        for s in _strings(value):
            for check in (UnsafeCommandCheck(), SecretCheck()):
                for v in [*check.feed(s), *check.finish()]:
                    if v.code in self._raw_codes:
                        continue
                    self._raw_codes.add(v.code)
                    self._decoded_codes.add(v.code)
                    span = (self._parser.start, self._parser.stop)
                    found.append(self._verdict(v.code, span, f"in a string argument: {v.detail}"))

    def finish(self) -> list[Verdict]:
        """The call's arguments ended (its closing tag, or the end of the output)."""
        found: list[Verdict] = []
        if self._finished:
            return found
        self._finished = True
        self._scan_raw(found, None)
        if self.broken_at is None and not self.complete:
            if not self._started:
                brk = ParseBreak(self._pos, "no arguments: expected a JSON object")
            else:
                brk = self._parser.end(self._pos, "arguments end unfinished") or ParseBreak(
                    self._pos, "arguments end unfinished"
                )
            found.append(self._break(brk, 0))
        return self._out(found)

    @property
    def ok(self) -> bool:
        """Complete, valid, and nothing wrong found."""
        return self.complete and not self.verdicts


# -- loops ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ToolLoopSettings:
    minor: int = 3  # the same call this many times in one conversation: E_TOOL_LOOP minor
    critical: int = 5  # ... this many: critical
    max_cycle: int = 3  # cycles of up to this many distinct calls (A B A B ...) count too
    exempt: frozenset[str] = frozenset()  # tools never counted (pollers, "wait", ...)


def canonical_arguments(arguments: str) -> str:
    """One spelling per call: parsed and re-dumped with sorted keys (raw text if unparsable)."""
    try:
        return json.dumps(json.loads(arguments), sort_keys=True, separators=(",", ":"))
    except (ValueError, RecursionError):
        return arguments.strip()


def missing_required_call(
    tool_choice: Any, offered: Sequence[str], at: int, severity: Severity | None = None
) -> Verdict | None:
    """E_TOOL_REQUIRED when ``tool_choice`` required a call (``"required"``, or a named
    function among the ``offered`` tools) and the answer made none; ``at``: where its text
    ends. None when nothing was required."""
    if not offered or not (tool_choice == "required" or isinstance(tool_choice, dict)):
        return None
    if isinstance(tool_choice, dict):
        detail = f"tool_choice named {offered[0]}: the answer called no tool"
    else:
        detail = f"tool_choice 'required': the answer is text, not a call of {', '.join(offered)}"
    sev = severity or DEFAULT_SEVERITY["E_TOOL_REQUIRED"]
    return Verdict(CHECK, sev, "E_TOOL_REQUIRED", (at, at), detail)


def find_tool_loops(
    calls: Sequence[tuple[str, str]], settings: ToolLoopSettings | None = None
) -> list[Verdict]:
    """E_TOOL_LOOP for the NEWEST call of a conversation's ``calls`` ((tool, arguments) in
    order, the newest last), at most one verdict: the identical-call count, else a cycle."""
    s = settings or ToolLoopSettings()
    seq = [(t, canonical_arguments(a)) for t, a in calls if t not in s.exempt]
    if not seq or calls[-1][0] in s.exempt:
        return []
    newest = seq[-1]

    def verdict(count: int, what: str) -> list[Verdict]:
        sev: Severity = "critical" if count >= s.critical else "minor"
        return [Verdict(CHECK, sev, "E_TOOL_LOOP", (0, 0), f"{newest[0]}: {what}")]

    for period in range(1, s.max_cycle + 1):
        reps = 1
        while len(seq) >= period * (reps + 1) and all(
            seq[-1 - i] == seq[-1 - i - period * reps] for i in range(period)
        ):
            reps += 1
        if reps < s.minor or len(set(seq[-period:])) != period:
            continue
        if period == 1:
            return verdict(reps, f"the same call with the same arguments {reps} times in a row")
        names = " -> ".join(t for t, _ in seq[-period:])
        return verdict(reps, f"a cycle of {period} calls ({names}) repeated {reps} times")
    return []
