"""Turn a model's streamed output into text and OpenAI tool calls, piece by piece.

Two shapes are recognised, the ones local models use:

* Hermes / Qwen tags: ``<tool_call>{"name": "f", "arguments": {...}}</tool_call>`` anywhere in
  the output, any number of them (``"parameters"`` is accepted for ``"arguments"``, and
  arguments sent as a JSON *string* are decoded).
* A plain JSON call as the whole content (what models do when the chat template has no tool
  syntax, e.g. behind Ollama): the output starts with ``{"name": ..., "arguments": ...}``
  (optionally inside a ````` ```json ````` fence), possibly several in a row. It only counts
  when the name is one of the request's tools; otherwise it was ordinary JSON and is given
  back as text, unchanged.

``ToolCallParser.feed(piece)`` returns events: ``TextDelta`` (content for the client),
``CallStart`` (a call's index, id and name), ``ArgsDelta`` (the next raw characters of its
``arguments``, exactly as the model wrote them: nothing is repaired or re-serialised) and
``CallEnd``. Each character is looked at once (no re-scan of the output). Text that might be
the start of a ``<tool_call>`` tag, and a JSON object that might be a plain call, are held
back until they are known not to be. Arguments of a call whose name is not known yet are
held until the name arrives. The wrapper object around the arguments is parsed loosely (the
sentinel's ``ToolCallCheck`` judges the arguments, this module only finds where they are).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Collection
from dataclasses import dataclass

__all__ = ["ArgsDelta", "CallEnd", "CallStart", "TextDelta", "ToolCallParser", "ToolEvent"]

OPEN_TAG = "<tool_call>"
CLOSE_TAG = "</tool_call>"
_ARG_KEYS = ("arguments", "parameters")
_WS = " \t\r\n"


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class CallStart:
    index: int
    id: str
    name: str


@dataclass(frozen=True)
class ArgsDelta:
    index: int
    text: str


@dataclass(frozen=True)
class CallEnd:
    index: int


ToolEvent = TextDelta | CallStart | ArgsDelta | CallEnd

# Wrapper-object scanner states.
_W_START, _W_KEY_OR_END, _W_KEY, _W_COLON, _W_VALUE, _W_IN_VALUE, _W_AFTER, _W_DONE = range(8)


class _CallObject:
    """Loose incremental scanner of one ``{"name": ..., "arguments": ...}`` wrapper.

    Collects the name, streams the raw arguments value out through ``args`` pieces, and says
    when the wrapper object closed (``done``) or stopped making sense (``junk``).
    """

    def __init__(self) -> None:
        self.state = _W_START
        self.key: list[str] = []
        self.key_done = ""
        self.esc = False
        self.in_str = False
        self.depth = 0
        self.value_kind = ""  # "name" | "args" | "skip"
        self.name_raw: list[str] = []
        self.name: str | None = None
        self.args_string = False  # the arguments value is a JSON string holding the JSON
        self.args_raw: list[str] = []  # a string-encoded arguments value, until it ends
        self.args_out: list[str] = []  # raw argument characters found in this feed
        self.args_seen = False
        self.args_ended = False
        self.junk = False
        self.first_key = ""
        self.gap = ""  # blanks after the arguments value (kept if junk follows them)

    @property
    def done(self) -> bool:
        return self.state == _W_DONE

    def feed(self, text: str) -> int:
        """Consume characters until the wrapper closes; return how many were consumed."""
        i, n = 0, len(text)
        run_start = -1  # start of a run of argument characters in ``text``
        while i < n and self.state != _W_DONE and not self.junk:
            c = text[i]
            st = self.state
            if st == _W_IN_VALUE:
                if self.value_kind == "args" and not self.args_string and run_start < 0:
                    run_start = i
                ended = self._value_char(c)
                if ended:  # c is not part of the value (a ',' or '}' after a scalar/...)
                    if run_start >= 0:
                        self.args_out.append(text[run_start:i])
                        run_start = -1
                    self._end_value()
                    continue  # re-read c as the wrapper's
                i += 1
                if self.state != _W_IN_VALUE and run_start >= 0:  # a container closed
                    self.args_out.append(text[run_start:i])
                    run_start = -1
                continue
            i += 1
            if st == _W_START:
                if c == "{":
                    self.state = _W_KEY_OR_END
                elif c not in _WS:
                    self.junk = True
            elif st in (_W_KEY_OR_END, _W_AFTER):
                if st == _W_AFTER and c in _WS and self.value_kind == "args":
                    self.gap += c
                    continue
                if st == _W_AFTER and c not in _WS and c not in ",}":
                    self.junk = True
                    continue
                self.gap = ""
                if c == "}":
                    self.state = _W_DONE
                elif c == "," and st == _W_AFTER:
                    self.state = _W_KEY_OR_END
                elif c == '"' and st == _W_KEY_OR_END:
                    self.state, self.key, self.esc = _W_KEY, [], False
                elif c not in _WS:
                    self.junk = True
            elif st == _W_KEY:
                if self.esc:
                    self.esc = False
                    self.key.append(c)
                elif c == "\\":
                    self.esc = True
                elif c == '"':
                    self.key_done = "".join(self.key)
                    self.first_key = self.first_key or self.key_done
                    self.state = _W_COLON
                else:
                    self.key.append(c)
            elif st == _W_COLON:
                if c == ":":
                    self.state = _W_VALUE
                elif c not in _WS:
                    self.junk = True
            elif st == _W_VALUE:
                if c in _WS:
                    continue
                self._start_value(c)
                i -= 1  # the value's first character belongs to the value
        if run_start >= 0:
            self.args_out.append(text[run_start:i])
        return i

    def _start_value(self, c: str) -> None:
        key = self.key_done
        if key == "name" and c == '"':
            self.value_kind = "name"
        elif key in _ARG_KEYS and not self.args_seen:
            self.value_kind = "args"
            self.args_seen = True
            self.args_string = c == '"'
        else:
            self.value_kind = "skip"
        self.state = _W_IN_VALUE
        self.depth = 0
        self.in_str = False
        self.esc = False

    def _value_char(self, c: str) -> bool:
        """Track one character of a value; True when ``c`` ends a scalar (not consumed)."""
        kind = self.value_kind
        if kind == "name" or (kind == "args" and self.args_string):
            (self.name_raw if kind == "name" else self.args_raw).append(c)
        if self.in_str:
            if self.esc:
                self.esc = False
            elif c == "\\":
                self.esc = True
            elif c == '"':
                self.in_str = False
                if self.depth == 0:
                    self._end_value()
            return False
        if c == '"':
            self.in_str = True
        elif c in "{[":
            self.depth += 1
        elif c in "}]":
            if self.depth == 0:
                return True  # the wrapper's own closing brace after a scalar
            self.depth -= 1
            if self.depth == 0:
                self._end_value()
        elif self.depth == 0 and c == ",":
            return True
        return False

    def _end_value(self) -> None:
        if self.state != _W_IN_VALUE:
            return
        self.state = _W_AFTER
        kind = self.value_kind
        if kind == "name":
            try:
                name = json.loads("".join(self.name_raw))
            except ValueError:
                name = "".join(self.name_raw).strip('"')
            self.name = name if isinstance(name, str) else str(name)
        elif kind == "args":
            self.args_ended = True
            if self.args_string:
                raw = "".join(self.args_raw)
                try:
                    decoded = json.loads(raw)
                except ValueError:
                    decoded = raw
                self.args_out.append(decoded if isinstance(decoded, str) else raw)

    def take_args(self) -> str:
        out = "".join(self.args_out)
        self.args_out = []
        return out


# Parser modes.
_TEXT, _TAG_CALL, _TAG_TAIL, _PLAIN_LEAD, _PLAIN_FENCE, _PLAIN_CALL, _PLAIN_TAIL = range(7)


class ToolCallParser:
    """See the module docstring. ``tools``: the names the request declared (plain JSON calls
    only count for these). ``plain_json``: recognise plain JSON calls at all."""

    def __init__(self, tools: Collection[str] = (), *, plain_json: bool = True) -> None:
        self.tools = frozenset(tools)
        self.mode = _PLAIN_LEAD if (plain_json and self.tools) else _TEXT
        self._held = ""  # a possible tag start / close tag / fence, held until known
        self._buf = ""  # plain mode: what was held while it might be a call
        self._obj: _CallObject | None = None
        self._index = -1  # index of the newest call
        self._started = False  # the current call's CallStart was sent
        self._pending_args: list[str] = []  # arguments that came before the name
        self._fence = False  # the plain call(s) sit in a ``` fence
        self._junk_seen = False  # text after a tagged call's wrapper (see _TAG_TAIL)
        self.calls = 0

    # -- helpers -------------------------------------------------------------------------
    def _begin_call(self) -> None:
        self._obj = _CallObject()
        self._index += 1
        self._started = False
        self._pending_args = []

    def _flush_call(self, out: list[ToolEvent], final: bool = False) -> None:
        """Send what the scanner found: the start (once the name is known), arguments."""
        obj = self._obj
        assert obj is not None
        args = obj.take_args()
        if not self._started and (obj.name is not None or final):
            self._started = True
            self.calls += 1
            out.append(CallStart(self._index, f"call_{uuid.uuid4().hex[:24]}", obj.name or ""))
            if self._pending_args:
                out.append(ArgsDelta(self._index, "".join(self._pending_args)))
                self._pending_args = []
        if args:
            if self._started:
                out.append(ArgsDelta(self._index, args))
            else:
                self._pending_args.append(args)

    def _end_call(self, out: list[ToolEvent]) -> None:
        self._flush_call(out, final=True)
        out.append(CallEnd(self._index))
        self._obj = None

    def _give_back(self, out: list[ToolEvent], consumed: str) -> None:
        """What was held as a possible plain call is ordinary text after all."""
        text = self._buf + consumed
        if text:
            out.append(TextDelta(text))
        self._buf = ""
        self._obj = None
        self._index -= 1
        self._fence = False
        self.mode = _TEXT

    # -- feeding -------------------------------------------------------------------------
    def feed(self, piece: str) -> list[ToolEvent]:
        out: list[ToolEvent] = []
        text = self._held + piece
        self._held = ""
        while text:
            text = self._step(text, out)
        return out

    def _step(self, text: str, out: list[ToolEvent]) -> str:
        """Consume a prefix of ``text`` in the current mode; return the rest."""
        mode = self.mode
        if mode == _TEXT:
            return self._step_text(text, out)
        if mode == _TAG_CALL:
            return self._step_tag_call(text, out)
        if mode == _TAG_TAIL:
            # Between the wrapper's end and </tool_call>: whitespace. Anything else (an extra
            # '}', more keys) means the model's call was not the JSON it looked like: it is
            # appended to the arguments, so the check rejects the call at that character.
            stop = text.find(CLOSE_TAG)
            part = text if stop < 0 else text[:stop]
            hold = 0 if stop >= 0 else _partial_suffix(part, CLOSE_TAG)
            chunk = part[: len(part) - hold]
            if self._obj is not None:
                junk = chunk.lstrip(_WS) if not self._junk_seen else chunk
                if junk:
                    self._junk_seen = True
                    out.append(ArgsDelta(self._index, junk))
            if stop >= 0:
                if self._obj is not None:
                    self._end_call(out)
                self._junk_seen = False
                self.mode = _TEXT
                return text[stop + len(CLOSE_TAG) :]
            self._held = part[len(part) - hold :] if hold else ""
            return ""
        if mode == _PLAIN_CALL:
            return self._step_plain_call(text, out)
        if mode == _PLAIN_FENCE:
            return self._step_fence(text, out)
        return self._step_plain_lead(text, out)

    def _step_text(self, text: str, out: list[ToolEvent]) -> str:
        at = text.find(OPEN_TAG)
        if at >= 0:
            if at:
                out.append(TextDelta(text[:at]))
            self._begin_call()
            self.mode = _TAG_CALL
            return text[at + len(OPEN_TAG) :]
        hold = _partial_suffix(text, OPEN_TAG)
        if len(text) > hold:
            out.append(TextDelta(text[: len(text) - hold]))
        self._held = text[len(text) - hold :] if hold else ""
        return ""

    def _step_tag_call(self, text: str, out: list[ToolEvent]) -> str:
        obj = self._obj
        assert obj is not None
        stop = text.find(CLOSE_TAG)
        part = text if stop < 0 else text[:stop]
        hold = 0 if stop >= 0 else _partial_suffix(part, CLOSE_TAG)
        chunk = part[: len(part) - hold]
        used = obj.feed(chunk)
        if obj.junk:
            # Not a {"name", "arguments"} wrapper: what follows is handed over as the call's
            # arguments, so the sentinel judges (and rejects) it; nothing is guessed.
            obj.args_out.append(obj.gap + chunk[used - 1 :])
            self._end_call(out)
            self.mode = _TAG_TAIL
            return text[len(chunk) :]
        self._flush_call(out)
        if obj.done:  # the call ends at its close tag (see _TAG_TAIL)
            self.mode = _TAG_TAIL
            return text[used:]
        if stop >= 0:  # the tag closed before the wrapper did: a truncated call
            self._end_call(out)
            self.mode = _TEXT
            return text[stop + len(CLOSE_TAG) :]
        self._held = part[len(part) - hold :] if hold else ""
        return ""

    def _step_plain_lead(self, text: str, out: list[ToolEvent]) -> str:
        """At the start of the output, or after a plain call: a call, a fence, or text."""
        stripped = text.lstrip(_WS)
        if not stripped:
            if self.mode == _PLAIN_LEAD:
                self._buf += text
            return ""
        if self.mode == _PLAIN_LEAD:
            self._buf += text[: len(text) - len(stripped)]
        c = stripped[0]
        if self._fence and self.mode == _PLAIN_TAIL and c == "`":
            if len(stripped) < 3 and "```".startswith(stripped):
                self._held = stripped
                return ""
            if stripped.startswith("```"):
                self._fence = False
                return stripped[3:]
        if c == "{":
            self._begin_call()
            self.mode = _PLAIN_CALL
            return stripped
        if c == "`" and self.mode == _PLAIN_LEAD and not self._fence:
            self.mode = _PLAIN_FENCE
            return stripped
        if self.mode == _PLAIN_LEAD:
            self._give_back(out, "")
            self._index += 1  # no call was begun
            return stripped
        self.mode = _TEXT
        return stripped

    def _step_fence(self, text: str, out: list[ToolEvent]) -> str:
        """```json (or ```) then a newline may open a fence around plain calls."""
        line_end = text.find("\n")
        line = self._buf.lstrip(_WS) + (text if line_end < 0 else text[:line_end])
        head = line.rstrip("\r")
        info = head[3:].strip().lower() if head.startswith("```") else None
        if line_end < 0:
            if len(line) < 64 and _could_be_fence(head):
                self._buf += text
                return ""
        elif info in ("", "json"):
            self._buf += text[: line_end + 1]
            self._fence = True
            self.mode = _PLAIN_LEAD
            return text[line_end + 1 :]
        self._give_back(out, "")
        self._index += 1
        return text

    def _step_plain_call(self, text: str, out: list[ToolEvent]) -> str:
        obj = self._obj
        assert obj is not None
        used = obj.feed(text)
        if not self._started:
            settled = obj.junk or obj.done or obj.name is not None
            if not settled:
                self._buf += text[:used]
                return text[used:]
            is_call = (
                not obj.junk and obj.name in self.tools and obj.first_key in ("name", *_ARG_KEYS)
            )
            if not is_call:
                self._give_back(out, text[:used])
                return text[used:]
            self._buf = ""  # wrapper syntax (blanks, a fence): not content
        self._flush_call(out)
        if obj.done:
            self._end_call(out)
            self.mode = _PLAIN_TAIL
        return text[used:]

    def finish(self) -> list[ToolEvent]:
        """The output ended: flush held text, end an unfinished call."""
        out: list[ToolEvent] = []
        held, self._held = self._held, ""
        mode = self.mode
        if mode == _TAG_TAIL and self._obj is not None:
            self._end_call(out)
        elif mode == _TAG_CALL or (mode == _PLAIN_CALL and self._started):
            assert self._obj is not None
            if held:
                self._obj.feed(held)
            self._end_call(out)
        elif mode in (_PLAIN_CALL, _PLAIN_LEAD, _PLAIN_FENCE):
            if self._buf or held:
                out.append(TextDelta(self._buf + held))
            self._buf = ""
        elif mode == _TEXT and held:
            out.append(TextDelta(held))
        self.mode = _TEXT
        return out


def _partial_suffix(text: str, tag: str) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of ``tag``."""
    for k in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:k]):
            return k
    return 0


def _could_be_fence(head: str) -> bool:
    if len(head) <= 3:
        return "```".startswith(head)
    return head.startswith("```") and "json".startswith(head[3:].strip().lower()[:4])
