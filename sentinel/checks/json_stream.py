"""Incremental JSON check: flags the first character after which no valid JSON can follow.

Why a hand-written push parser: the sentinel sees one token at a time and must say *as soon
as it is certain* that the output is broken, without re-parsing the growing buffer (that is
O(n^2) over a message). ``JsonPushParser`` is an RFC 8259 state machine over characters whose
state (container stack, string/escape/number/literal sub-state) survives between ``feed``
calls, so each piece costs O(len(piece)). A break is reported at the first character at which
the text can no longer be completed to valid JSON, once per value.

Decisions (documented because they change what users see):

* ``mode="whole"`` (contract ``json``): the message must be one JSON value, with only RFC
  whitespace (space, tab, LF, CR) around it. Small models love fences, so ONE surrounding
  fence ````` ``` ````` or ````` ```json ````` (any case, then a newline) is tolerated; after
  its closing ````` ``` ````` only whitespace may follow. A missing closing fence is tolerated
  when the value inside is complete (the content is unambiguous).
* ``mode="fenced"`` (contract ``text``): only the content of fenced blocks whose info string's
  first word is ``json`` (any case) is checked; each block must hold exactly one JSON value.
  Fences are backtick fences at a line start (up to 3 spaces of indentation for the
  opening one); as in CommonMark, a block closes at a line of at least as many backticks as
  its opening fence followed only by whitespace; any other backtick line is content (and so
  breaks the JSON). Other fenced blocks (e.g. ``python``) are skipped whole, so a
  ````` ```json ````` line inside them does not open a block. A fence line whose info string
  holds a backtick is not a fence (inline code), as in CommonMark. Tilde fences are
  not recognised. An empty json block is broken.
* Top-level numbers complete only at the following whitespace, the closing fence, or
  ``finish()``. Unfinished values at ``finish()`` are reported with a zero-width span
  ``(len, len)`` at the end of the message; at a closing fence the span covers the fence.
* A BOM is not whitespace (RFC 8259 forbids emitting one), so it breaks the value.
* Schema: when a value completes it is validated against ``schema`` with the validator its
  ``$schema`` names (Draft 2020-12 by default); ``format`` is an annotation only (the
  Draft 2020-12 default). One ``E_JSON_SCHEMA`` verdict per violation, with the JSON pointer
  in the detail and the span of the offending sub-value. A value is judged the moment it
  completes, even if text after it then breaks the message (so the verdicts never depend on
  where the pieces were cut). A valid value too deep for ``json.loads`` gets one
  ``E_JSON_SCHEMA`` "nested too deeply" verdict when a schema is set.

JSONTestSuite (``test_parsing``, see ``tests/test_json_stream.py``): all 95 ``y_`` files are
accepted on every split; all 188 ``n_`` files are rejected (12 of them are not valid UTF-8 and
are rejected when the bytes are decoded, before the check sees text). Of the 35 ``i_`` files,
21 are accepted (huge/tiny numbers, lone or inverted surrogate escapes ``\\uD800``: the RFC
grammar allows them; 500 nested arrays) and 14 rejected (13 fail UTF-8 decoding: UTF-16,
Latin-1, overlong or truncated sequences; one starts with a UTF-8 BOM, which is not whitespace).

Size (over 500 lines): the push parser and the check that drives it share every state
transition (spans, schema validation of completed values); they are kept together.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any, Literal, NamedTuple

import jsonschema

from sentinel.verdict import DEFAULT_SEVERITY, Verdict

__all__ = ["JsonPushParser", "JsonStreamCheck", "ParseBreak"]

_WS = frozenset(" \t\n\r")
_HEX = frozenset("0123456789abcdefABCDEF")
_DIGITS = frozenset("0123456789")
_ESCAPES = frozenset('"\\/bfnrt')
_STR_RUN = re.compile(r'[^"\\\x00-\x1f]+')
_DIGIT_RUN = re.compile(r"[0-9]+")
_INFO_PREFIX = re.compile(r"[ \t]*(?:j(?:s(?:o(?:n[ \t\r]*)?)?)?)?", re.IGNORECASE)
_INFO_FINAL = re.compile(r"[ \t]*(?:json)?[ \t\r]*", re.IGNORECASE)
_MAX_INFO = 256  # an info string longer than this is not worth keeping whole

# Parser states.
_VALUE, _ARR_FIRST, _OBJ_FIRST, _KEY, _COLON, _AFTER = 0, 1, 2, 3, 4, 5
_STR, _ESC, _HEXS, _LIT, _NUM, _DONE, _BROKEN = 6, 7, 8, 9, 10, 11, 12
# Number sub-states; _N_OK are the ones where the number may end.
_N_MINUS, _N_ZERO, _N_INT, _N_DOT, _N_FRAC, _N_EXP, _N_EXPSIGN, _N_EXPD = range(8)
_N_OK = frozenset({_N_ZERO, _N_INT, _N_FRAC, _N_EXPD})
_N_RUNS = frozenset({_N_INT, _N_FRAC, _N_EXPD})
_N_NEED = {
    _N_MINUS: "expected a digit after '-'",
    _N_DOT: "expected a digit after '.'",
    _N_EXP: "expected a sign or digit in the exponent",
    _N_EXPSIGN: "expected a digit in the exponent",
}
_LITERALS = {"t": "true", "f": "false", "n": "null"}


class ParseBreak(NamedTuple):
    """Where (message offset) and why the text stopped being completable JSON."""

    offset: int
    detail: str


class JsonPushParser:
    """RFC 8259 push parser for ONE JSON value (plus surrounding whitespace).

    ``feed(text, base)`` takes the next piece and the message offset of its first character;
    it returns a ``ParseBreak`` the first time the text becomes uncompletable, else ``None``.
    ``end(offset)`` says the input ended there. After a break the parser ignores input.
    """

    def __init__(self, track_spans: bool = False) -> None:
        self.state = _VALUE
        self.stack: list[str] = []  # "[" or "{" per open container
        self.is_key = False  # the open string is an object key
        self.lit = ""
        self.lit_i = 0
        self.num = _N_MINUS
        self.hex_left = 0
        self.completed = False  # the value ended (text after it may still break it)
        self.start = -1  # message offset of the value's first character
        self.stop = -1  # ... and one past its last, once done
        self._chunks: list[str] = []
        self._chunks_base = -1
        self.track_spans = track_spans
        # Spans of every (sub-)value in pre-order, for pointing schema errors at sub-values.
        self.spans: list[list[int]] = []
        self._span_stack: list[int] = []
        self._scalar_span = -1

    @property
    def done(self) -> bool:
        """The value is complete (only whitespace may follow)."""
        return self.state == _DONE

    @property
    def broken(self) -> bool:
        return self.state == _BROKEN

    @property
    def started(self) -> bool:
        return self.start >= 0

    def text(self) -> str:
        """The complete value's source text."""
        if not self.completed:
            raise LookupError("the JSON value is not complete")
        joined = "".join(self._chunks)
        self._chunks = [joined]
        return joined[self.start - self._chunks_base : self.stop - self._chunks_base]

    def _expect(self, state: int) -> str:
        """What the parser wanted in ``state`` (for break details)."""
        top = self.stack[-1] if self.stack else ""
        if state == _VALUE:
            if top == "[":
                return "expected a value after ','"
            if top == "{":
                return "expected a value after ':'"
            return "expected a JSON value"
        if state == _ARR_FIRST:
            return "expected a value or ']'"
        if state == _OBJ_FIRST:
            return "expected an object key or '}'"
        if state == _KEY:
            return "expected an object key after ','"
        if state == _COLON:
            return "expected ':' after object key"
        if state == _AFTER:
            if top == "{":
                return "expected ',' or '}' after object member"
            return "expected ',' or ']' after array element"
        if state == _DONE:
            return "unexpected text after the JSON value"
        if state == _STR:
            return "unterminated string"
        if state == _ESC:
            return "unterminated escape in string"
        if state == _HEXS:
            return "expected 4 hex digits after '\\u'"
        if state == _LIT:
            return f"invalid literal, expected {self.lit!r}"
        if state == _NUM:
            return _N_NEED.get(self.num, "invalid number")
        return "broken"

    def _break(self, offset: int, detail: str) -> ParseBreak:
        self.state = _BROKEN
        return ParseBreak(offset, detail)

    def _open_span(self, offset: int, container: bool) -> None:
        self.spans.append([offset, -1])
        if container:
            self._span_stack.append(len(self.spans) - 1)
        else:
            self._scalar_span = len(self.spans) - 1

    def _close(self, end: int, container: bool) -> int:
        """A value ended at ``end`` (exclusive); return the next state."""
        if self.track_spans:
            idx = self._span_stack.pop() if container else self._scalar_span
            self.spans[idx][1] = end
        if not self.stack:
            self.stop = end
            self.completed = True
            return _DONE
        return _AFTER

    def feed(self, text: str, base: int) -> ParseBreak | None:  # noqa: C901, PLR0912, PLR0915
        state = self.state
        if state == _BROKEN:
            return None
        if state != _DONE:
            if self._chunks_base < 0:
                self._chunks_base = base
            self._chunks.append(text)
        stack = self.stack
        track = self.track_spans
        n = len(text)
        i = 0
        while i < n:
            if state == _STR:
                m = _STR_RUN.match(text, i)
                if m is not None:
                    i = m.end()
                    if i >= n:
                        break
                c = text[i]
                if c == '"':
                    i += 1
                    if self.is_key:
                        self.is_key = False
                        state = _COLON
                    else:
                        state = self._close(base + i, False)
                elif c == "\\":
                    i += 1
                    state = _ESC
                else:
                    return self._break(
                        base + i, f"control character U+{ord(c):04X} in string must be escaped"
                    )
                continue
            c = text[i]
            if state == _NUM:
                ns = self.num
                if c in _DIGITS:
                    if ns in _N_RUNS:
                        i = _DIGIT_RUN.match(text, i).end()  # type: ignore[union-attr]
                        continue
                    if ns == _N_ZERO:
                        return self._break(base + i, "leading zeros are not allowed in numbers")
                    if ns == _N_MINUS:
                        self.num = _N_ZERO if c == "0" else _N_INT
                    elif ns == _N_DOT:
                        self.num = _N_FRAC
                    else:  # _N_EXP, _N_EXPSIGN
                        self.num = _N_EXPD
                elif c == "." and (ns == _N_ZERO or ns == _N_INT):
                    self.num = _N_DOT
                elif (c == "e" or c == "E") and (ns == _N_ZERO or ns == _N_INT or ns == _N_FRAC):
                    self.num = _N_EXP
                elif (c == "+" or c == "-") and ns == _N_EXP:
                    self.num = _N_EXPSIGN
                elif ns in _N_OK:
                    state = self._close(base + i, False)
                    continue  # re-read c in the new state
                else:
                    return self._break(base + i, f"{_N_NEED[ns]}, got {c!r}")
                i += 1
                continue
            if c in _WS and state <= _AFTER or state == _DONE:
                if c in _WS:
                    i += 1
                    continue
                return self._break(base + i, f"unexpected text after the JSON value, got {c!r}")
            if state == _AFTER:
                if c == ",":
                    state = _VALUE if stack[-1] == "[" else _KEY
                elif c == "]" and stack[-1] == "[" or c == "}" and stack[-1] == "{":
                    stack.pop()
                    state = self._close(base + i + 1, True)
                else:
                    return self._break(base + i, f"{self._expect(state)}, got {c!r}")
                i += 1
                continue
            if state == _VALUE or state == _ARR_FIRST:
                if not stack:
                    self.start = base + i
                if c == "]" and state == _ARR_FIRST:
                    stack.pop()
                    state = self._close(base + i + 1, True)
                elif c == '"':
                    state = _STR
                    if track:
                        self._open_span(base + i, False)
                elif c == "{" or c == "[":
                    stack.append(c)
                    state = _OBJ_FIRST if c == "{" else _ARR_FIRST
                    if track:
                        self._open_span(base + i, True)
                elif c in _DIGITS or c == "-":
                    state = _NUM
                    self.num = _N_MINUS if c == "-" else _N_ZERO if c == "0" else _N_INT
                    if track:
                        self._open_span(base + i, False)
                elif c in _LITERALS:
                    state = _LIT
                    self.lit = _LITERALS[c]
                    self.lit_i = 1
                    if track:
                        self._open_span(base + i, False)
                else:
                    if not stack:
                        self.start = -1
                    return self._break(base + i, f"{self._expect(state)}, got {c!r}")
                i += 1
                continue
            if state == _OBJ_FIRST or state == _KEY:
                if c == '"':
                    state = _STR
                    self.is_key = True
                elif c == "}" and state == _OBJ_FIRST:
                    stack.pop()
                    state = self._close(base + i + 1, True)
                else:
                    return self._break(base + i, f"{self._expect(state)}, got {c!r}")
                i += 1
                continue
            if state == _COLON:
                if c != ":":
                    return self._break(base + i, f"{self._expect(state)}, got {c!r}")
                state = _VALUE
                i += 1
                continue
            if state == _ESC:
                if c == "u":
                    state = _HEXS
                    self.hex_left = 4
                elif c in _ESCAPES:
                    state = _STR
                else:
                    return self._break(base + i, f"invalid escape '\\{c}' in string")
                i += 1
                continue
            if state == _HEXS:
                if c not in _HEX:
                    return self._break(base + i, f"{self._expect(state)}, got {c!r}")
                self.hex_left -= 1
                if self.hex_left == 0:
                    state = _STR
                i += 1
                continue
            # state == _LIT
            if c != self.lit[self.lit_i]:
                return self._break(base + i, f"{self._expect(state)}, got {c!r}")
            self.lit_i += 1
            i += 1
            if self.lit_i == len(self.lit):
                state = self._close(base + i, False)
        self.state = state
        return None

    def end(self, offset: int, why: str = "unexpected end of output") -> ParseBreak | None:
        """The input ended at ``offset``; return a break if the value is not complete."""
        state = self.state
        if state == _BROKEN or state == _DONE:
            return None
        if state == _NUM and self.num in _N_OK:  # the number ends here
            state = self.state = self._close(offset, False)
            if state == _DONE:
                return None
        return self._break(offset, f"{why}: {self._expect(state)}")


class _Pairs(list[Any]):
    """An object as its (key, value) pairs, to walk values in source order (duplicates too)."""


def _pointer(path: Any) -> str:
    parts = [str(p).replace("~", "~0").replace("/", "~1") for p in path]
    return "".join("/" + p for p in parts) if parts else "(root)"


# Whole-mode outer states and fenced-mode outer states.
_W_LEAD, _W_PLAIN, _W_TICKS, _W_INFO, _W_BLOCK, _W_TRAIL = range(6)
_O_LS, _O_TICKS, _O_INFO, _O_SKIP, _O_BLOCK = range(5)


class JsonStreamCheck:
    """The sentinel's ``json`` check (see the module docstring for the rules)."""

    name = "json"

    def __init__(
        self, schema: dict[str, Any] | None = None, mode: Literal["whole", "fenced"] = "whole"
    ) -> None:
        if mode not in ("whole", "fenced"):
            raise ValueError(f"mode must be 'whole' or 'fenced', not {mode!r}")
        self.schema = schema
        self.mode = mode
        self._validator: Any = None
        if schema is not None:
            cls = jsonschema.validators.validator_for(
                schema, default=jsonschema.Draft202012Validator
            )
            cls.check_schema(schema)
            self._validator = cls(schema)
        self.reset()

    def reset(self) -> None:
        """Forget everything: the next ``feed`` starts a new message."""
        self._pos = 0
        self._dead = False  # whole mode: broken once, silent for the rest of the message
        self._outer = _W_LEAD if self.mode == "whole" else _O_LS
        self._ticks = 0  # backticks seen of a (possible) fence
        self._tick_at = 0  # offset of that fence's first backtick
        self._indent = 0
        self._info = ""
        self._fence_len = 3  # backticks of the open block's fence
        self._held_ws = ""  # whitespace after a possible closing fence
        self._parser: JsonPushParser | None = None
        self._block_json = False  # the open fenced block is a json one
        self._ls = False  # inside a block, at a line start
        self.values: list[Any] = []  # every completed value, parsed, in order

    @property
    def value(self) -> Any:
        """The last completed value, parsed (``LookupError`` while none is complete)."""
        if not self.values:
            raise LookupError("no complete JSON value yet")
        return self.values[-1]

    # -- verdicts ------------------------------------------------------------------------

    def _verdict(self, code: str, span: tuple[int, int], detail: str) -> Verdict:
        return Verdict(self.name, DEFAULT_SEVERITY[code], code, span, detail)

    def _broken(self, brk: ParseBreak, out: list[Verdict], width: int = 1) -> None:
        out.append(self._verdict("E_JSON_BROKEN", (brk.offset, brk.offset + width), brk.detail))
        if self.mode == "whole":
            self._dead = True

    def _completed(self, parser: JsonPushParser, out: list[Verdict]) -> None:
        """The parser's value just completed: parse it, keep it, validate it."""
        whole = (parser.start, parser.stop)
        text = parser.text()
        try:
            value = json.loads(text)
        except RecursionError:
            if self._validator is not None:
                detail = "(root): nested too deeply to parse and validate"
                out.append(self._verdict("E_JSON_SCHEMA", whole, detail))
            return
        self.values.append(value)
        if self._validator is None:
            return
        errors = list(self._validator.iter_errors(value))
        if not errors:
            return
        # Only now pay for locating sub-values: parse again keeping pairs in source order.
        spans = _span_map(json.loads(text, object_pairs_hook=_Pairs), parser.spans)
        found = []
        for err in errors:
            path = tuple(err.absolute_path)
            found.append((spans.get(path, whole), _pointer(path), err.message))
        for span, ptr, msg in sorted(found):
            out.append(self._verdict("E_JSON_SCHEMA", span, f"{ptr}: {msg}"))

    def _push(self, text: str, offset: int, out: list[Verdict]) -> None:
        """Hand block/plain content to the parser and turn what happens into verdicts."""
        parser = self._parser
        if parser is None:  # a non-json fenced block
            return
        was_completed = parser.completed
        self._report(parser, was_completed, parser.feed(text, offset), out, 1)

    def _end_parser(self, offset: int, out: list[Verdict], width: int, why: str) -> None:
        parser = self._parser
        if parser is None:
            return
        was_completed = parser.completed
        self._report(parser, was_completed, parser.end(offset, why), out, width)

    def _report(
        self,
        parser: JsonPushParser,
        was_completed: bool,
        brk: ParseBreak | None,
        out: list[Verdict],
        width: int,
    ) -> None:
        # A value that completed within this piece is judged even when text after it in the
        # same piece breaks it: verdicts must not depend on where the pieces were cut.
        if parser.completed and not was_completed:
            self._completed(parser, out)
        if brk is not None:
            self._broken(brk, out, width)

    # -- feeding -------------------------------------------------------------------------

    def feed(self, piece: str) -> list[Verdict]:
        out: list[Verdict] = []
        base = self._pos
        self._pos += len(piece)
        if self._dead or not piece:
            return out
        if self.mode == "whole":
            self._feed_whole(piece, base, out)
        else:
            self._feed_fenced(piece, base, out)
        return out

    def _block(self, piece: str, i: int, base: int, out: list[Verdict]) -> tuple[int, bool]:
        """Consume fenced-block content from ``i``; return (next index, block closed).

        At a line start, backticks are held back until the line shows whether they are the
        closing fence (at least as many backticks as the opening, then only whitespace up
        to the newline, as in CommonMark) or content (then they go to the parser, with
        their own offsets, so the verdict does not depend on where pieces were cut).
        """
        n = len(piece)
        while i < n and not self._dead:
            if self._ls:
                c = piece[i]
                if c == "`" and not self._held_ws:
                    if self._ticks == 0:
                        self._tick_at = base + i
                    self._ticks += 1
                    i += 1
                    continue
                if self._ticks >= self._fence_len:
                    if c == " " or c == "\t" or c == "\r":
                        self._held_ws += c
                        i += 1
                        continue
                    if c == "\n":
                        self._close_block(out)
                        return i + 1, True
                if self._ticks:  # backticks that are content after all
                    self._release_held(out)
                    self._ls = False
                    continue
                if c == " " or c == "\t" or c == "\n":
                    self._push(c, base + i, out)
                    i += 1
                    continue
                self._ls = False
            j = piece.find("\n", i)
            if j < 0:
                self._push(piece[i:] if i else piece, base + i, out)
                return n, False
            self._push(piece[i : j + 1], base + i, out)
            i = j + 1
            self._ls = True
        return n, False

    def _release_held(self, out: list[Verdict]) -> None:
        held = "`" * self._ticks + self._held_ws
        self._ticks, self._held_ws = 0, ""
        self._push(held, self._tick_at, out)

    def _close_block(self, out: list[Verdict]) -> None:
        width, self._ticks, self._held_ws = self._ticks, 0, ""
        self._ls = False
        self._end_parser(self._tick_at, out, width, "unexpected end of fenced block")
        self._parser = None

    def _open_block(self, is_json: bool) -> None:
        self._block_json = is_json
        self._parser = JsonPushParser(track_spans=self._validator is not None) if is_json else None
        self._ls = True
        self._fence_len = max(3, self._ticks)
        self._ticks = 0
        self._held_ws = ""

    def _feed_whole(self, piece: str, base: int, out: list[Verdict]) -> None:  # noqa: C901
        n = len(piece)
        i = 0
        while i < n and not self._dead:
            st = self._outer
            if st == _W_PLAIN:
                self._push(piece[i:] if i else piece, base + i, out)
                return
            if st == _W_BLOCK:
                i, closed = self._block(piece, i, base, out)
                if closed:
                    self._outer = _W_TRAIL
                continue
            c = piece[i]
            if st == _W_LEAD:
                if c in _WS:
                    i += 1
                elif c == "`":
                    self._outer = _W_TICKS
                    self._ticks = 1
                    i += 1
                else:
                    self._parser = JsonPushParser(track_spans=self._validator is not None)
                    self._outer = _W_PLAIN
            elif st == _W_TICKS:
                if c == "`":
                    self._ticks += 1
                    i += 1
                elif self._ticks >= 3:
                    self._outer = _W_INFO
                    self._info = ""
                else:
                    detail = f"expected a JSON value or a ```json fence, got {c!r}"
                    self._broken(ParseBreak(base + i, detail), out)
            elif st == _W_INFO:
                if c == "\n":
                    if _INFO_FINAL.fullmatch(self._info) is None:
                        detail = "expected 'json' or a newline after the opening fence, got '\\n'"
                        self._broken(ParseBreak(base + i, detail), out)
                        continue
                    self._open_block(True)
                    self._outer = _W_BLOCK
                    i += 1
                    continue
                info = self._info + c
                if _INFO_PREFIX.fullmatch(info) is None:
                    detail = f"expected 'json' or a newline after the opening fence, got {c!r}"
                    self._broken(ParseBreak(base + i, detail), out)
                    continue
                self._info = info
                i += 1
            else:  # _W_TRAIL
                if c in _WS:
                    i += 1
                else:
                    detail = f"unexpected text after the closing fence, got {c!r}"
                    self._broken(ParseBreak(base + i, detail), out)

    def _feed_fenced(self, piece: str, base: int, out: list[Verdict]) -> None:  # noqa: C901
        n = len(piece)
        i = 0
        while i < n:
            st = self._outer
            if st == _O_BLOCK:
                i, closed = self._block(piece, i, base, out)
                if closed:
                    self._outer = _O_LS
                    self._indent = 0
                continue
            if st == _O_SKIP:
                j = piece.find("\n", i)
                if j < 0:
                    return
                i = j + 1
                self._outer = _O_LS
                self._indent = 0
                continue
            if st == _O_INFO:
                j = piece.find("\n", i)
                chunk = piece[i:] if j < 0 else piece[i:j]
                if len(self._info) < _MAX_INFO:
                    self._info += chunk[: _MAX_INFO - len(self._info)]
                if j < 0:
                    return
                i = j + 1
                words = self._info.split()
                if "`" in self._info:  # not a fence (CommonMark): inline code, go on
                    self._outer = _O_LS
                    self._indent = 0
                else:
                    self._open_block(bool(words) and words[0].lower() == "json")
                    self._outer = _O_BLOCK
                continue
            c = piece[i]
            if st == _O_LS:
                if c == "`":
                    self._outer = _O_TICKS
                    self._ticks = 1
                elif c == "\n":
                    self._indent = 0
                elif (c == " " or c == "\t") and self._indent < 3:
                    self._indent += 1
                else:
                    self._outer = _O_SKIP
                    continue
                i += 1
            else:  # _O_TICKS
                if c == "`":
                    self._ticks += 1
                    i += 1
                elif self._ticks >= 3:
                    self._outer = _O_INFO
                    self._info = ""
                else:
                    self._outer = _O_SKIP

    def finish(self) -> list[Verdict]:
        out: list[Verdict] = []
        end = self._pos
        if self._dead:
            return out
        st = self._outer
        if self.mode == "whole":
            if st in (_W_LEAD, _W_TICKS, _W_INFO):
                detail = "unexpected end of output: expected a JSON value"
                self._broken(ParseBreak(end, detail), out, 0)
                return out
            if st == _W_TRAIL:
                return out
        elif st != _O_BLOCK:
            return out
        if self._ticks >= self._fence_len and self._ls:  # the closing fence, then the end
            self._close_block(out)
            return out
        if self._ticks:  # backticks at a block's line start that are content
            self._release_held(out)
        self._end_parser(end, out, 0, "unexpected end of output")
        return out

    def finish_cut_off(self) -> list[Verdict]:
        """The answer stopped at its token limit: the same verdicts, saying so (the hidden
        correction then asks for a shorter answer, not merely a closed one)."""
        return [
            dataclasses.replace(v, detail=f"{v.detail} (the answer reached max_tokens)")
            for v in self.finish()
        ]


def _span_map(pairs: Any, spans: list[list[int]]) -> dict[tuple[Any, ...], tuple[int, int]]:
    """Map each value's path to its span, walking the tree in the parser's (pre-)order."""
    result: dict[tuple[Any, ...], tuple[int, int]] = {}
    if not spans:
        return result
    stack: list[tuple[Any, tuple[Any, ...]]] = [(pairs, ())]
    k = 0
    while stack:
        node, path = stack.pop()
        s = spans[k]
        k += 1
        result[path] = (s[0], s[1])
        if isinstance(node, _Pairs):
            stack.extend((v, (*path, key)) for key, v in reversed(node))
        elif isinstance(node, list):
            stack.extend((v, (*path, idx)) for idx, v in reversed(list(enumerate(node))))
    return result
