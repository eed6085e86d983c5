"""Contract drift: a persona answering outside the shape it was asked for.

* ``code``: prose lines outside code fences beyond ``max_prose_words`` words (a sentence of
  introduction is fine; an essay is not). Indented lines and comment lines are code-like.
  Questions do not count (up to ``3 * max_prose_words`` of their words): a coder that asks
  which database or Python version the code is for is asking what it needs to answer, and a
  hidden correction would only make it guess.
* ``json``: non-whitespace text before the first ``{``/``[`` (a leading ``` fence is allowed).
* any kind: the answer grows far beyond what was asked (``length_factor`` x ``max_tokens``,
  estimated at ``chars_per_token`` characters per token, so it does not depend on the
  tokenizer that split the stream).
"""

from __future__ import annotations

import re

from sentinel.checks.patterns import Line, LineStream, severity_for
from sentinel.verdict import Verdict

_PLAIN_WORD = re.compile(r"[A-Za-z][A-Za-z'’-]*[,.!?:;]?")
_CODE_START = re.compile(r"\s|#|//|/\*|\*|--|<|[{}()\[\];]")
_MAX_WORDS = 200  # words of one line looked at (bounds the work on a 1 MB line)
_SENTENCE = re.compile(r"[^.!?]*[.!?]+[\"'”’)]*|[^.!?]+$")


class ContractDriftCheck:
    """E_DRIFT (minor), each kind of drift reported once."""

    name = "drift"

    def __init__(
        self,
        kind: str = "text",
        max_tokens: int | None = None,
        *,
        max_prose_words: int = 40,
        length_factor: float = 3.0,
        chars_per_token: float = 4.0,
        severity: dict[str, str] | None = None,
    ) -> None:
        self.kind = kind
        self.max_prose_words = max_prose_words
        self._sev = severity_for("E_DRIFT", severity)
        self._limit = int(max_tokens * length_factor * chars_per_token) if max_tokens else None
        self._pos = 0
        self._lines = LineStream()
        self._prose_words = 0
        self._question_words = 3 * max_prose_words  # question words not counted as prose
        self._done: set[str] = set()
        # json preamble state
        self._json_state = "start"  # start | fence | body | done
        self._pre: list[str] = []
        self._pre_start = -1

    def feed(self, piece: str) -> list[Verdict]:
        out: list[Verdict] = []
        if self._limit is not None and "length" not in self._done:
            if self._pos + len(piece) > self._limit:
                self._done.add("length")
                at = self._limit
                out.append(
                    Verdict(
                        self.name,
                        self._sev,
                        "E_DRIFT",
                        (at, at + 1),
                        f"answer far longer than asked ({self._limit} chars)",
                    )
                )
        if self.kind == "json" and self._json_state != "done":
            out.extend(self._json(piece))
        if self.kind == "code" and "prose" not in self._done:
            for line in self._lines.feed(piece):
                out.extend(self._code_line(line))
        self._pos += len(piece)
        return out

    def finish(self) -> list[Verdict]:
        out: list[Verdict] = []
        if self.kind == "code" and "prose" not in self._done:
            for line in self._lines.finish():
                out.extend(self._code_line(line))
        if self.kind == "json" and self._json_state in ("start", "fence") and self._pre:
            out.extend(self._json_report(self._pos))
        return out

    # -- json: judge the first non-space character (and a leading fence line)
    def _json(self, piece: str) -> list[Verdict]:
        for i, ch in enumerate(piece):
            at = self._pos + i
            if self._json_state == "fence":
                if ch == "\n":
                    self._json_state = "start"
                    self._pre = []
                    self._pre_start = -1
                else:
                    self._pre.append(ch)
                continue
            if self._json_state == "prose":
                if ch in "{[":
                    self._json_state = "done"
                    return self._json_report(at)
                if ch.isspace() and len(self._pre) >= 1 and not "".join(self._pre).startswith("`"):
                    self._json_state = "done"
                    return self._json_report(at)
                self._pre.append(ch)
                continue
            if ch.isspace():
                continue
            if ch in "{[":
                self._json_state = "done"
                return []
            if ch == "`" and not self._pre:
                self._json_state = "fence"
                self._pre_start = at
                self._pre.append(ch)
                continue
            self._json_state = "prose"
            self._pre_start = at
            self._pre = [ch]
        return []

    def _json_report(self, end: int) -> list[Verdict]:
        self._json_state = "done"
        return [
            Verdict(
                self.name,
                self._sev,
                "E_DRIFT",
                (self._pre_start, end),
                "text before the JSON value",
            )
        ]

    # -- code: count prose words outside fences
    def _code_line(self, line: Line) -> list[Verdict]:
        if line.kind != "prose" or _CODE_START.match(line.text):
            return []
        # a bounded look (the first _MAX_WORDS words): a longer line is judged by its start
        head = line.text[: _MAX_WORDS * 24]
        words = head.split()[:_MAX_WORDS]
        if len(words) < 3:
            return []
        plain = sum(1 for w in words if _PLAIN_WORD.fullmatch(w))
        if plain < 0.6 * len(words):
            return []
        asked = sum(len(s.split()) for s in _SENTENCE.findall(head) if "?" in s[-4:])
        free = min(asked, len(words), self._question_words)
        self._question_words -= free
        before = self._prose_words
        self._prose_words += len(words) - free
        if self._prose_words <= self.max_prose_words:
            return []
        self._done.add("prose")
        # span: the word that crossed the budget (questions left out, roughly), to the end
        # of its line
        idx = self.max_prose_words - before
        col = 0
        for k, m in enumerate(re.finditer(r"\S+", line.text[: _MAX_WORDS * 24])):
            if k == idx:
                col = m.start()
                break
        return [
            Verdict(
                self.name,
                self._sev,
                "E_DRIFT",
                (line.start + col, line.start + len(line.text)),
                f"more than {self.max_prose_words} words of prose outside code",
            )
        ]
