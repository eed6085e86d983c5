"""Degenerate repetition: a block repeated verbatim, a stuttering word, near-identical sentences.

What separates a degenerate loop from structure is *variation*: list items, table rows and
similar code lines repeat a template but their slots differ, so their token sequence is not
periodic. A loop repeats a whole multi-token block with no variation. The detector therefore
looks for exact periodicity of the token sequence, and only counts a block that

* contains a word with a letter (rules such as ``-----``, ``| --- |`` and ``}}}`` are layout),
* covers at least ``min_loop_chars`` characters in all (``the the the`` is a stutter only
  after many repeats; three repeats of a 5-word sentence are a loop), more inside code fences
  (where short identical lines such as ``model.add(...)`` legitimately repeat).

Numbers that open a list item (``7.`` / ``7)``) count as one token, so a list that repeats
the same item under increasing numbers is still periodic.

Tokens are words (``\\w+``), whitespace runs and single punctuation characters, derived from
the text itself; a word or whitespace run is only final when the next character arrives, so
the same text split differently gives the same verdicts. Candidate periods come from a rolling
hash of the last ``k`` tokens (every earlier position with the same k-gram proposes the period
``i - j``); each candidate is then confirmed token by token, so the cost per token is O(number
of live candidates), independent of the message length.
"""

from __future__ import annotations

import bisect
import math
import re

from rapidfuzz import fuzz

from sentinel.checks.patterns import severity_for
from sentinel.verdict import Verdict

_TOKEN = re.compile(r"\w+|\s+|[^\w\s]")
_PUNCT = re.compile(r"[^\w\s]")
_SENT_END = re.compile(r"[.!?]+\s|\n")
_LIST_OR_TABLE = re.compile(r"\s*(?:[-*+]\s|\d+[.)]\s|\||>|#)")
_MOD = (1 << 61) - 1
_BASE = 1_000_003


class LoopCheck:
    """E_LOOP: minor after ``minor_repeats`` copies, critical after ``critical_repeats``.

    ``severity`` may override ``E_LOOP`` (the first, minor report) and ``E_LOOP_CRITICAL``
    (the escalation, "critical" by default).
    """

    name = "loops"

    def __init__(
        self,
        minor_repeats: int = 3,
        critical_repeats: int = 5,
        *,
        max_period: int = 600,
        k: int = 4,
        min_loop_chars: int = 48,
        min_code_loop_chars: int = 100,
        stutter_chars: int = 40,
        near_dup_ratio: float = 90.0,
        near_dup_min_chars: int = 30,
        severity: dict[str, str] | None = None,
    ) -> None:
        if not 2 <= minor_repeats <= critical_repeats:
            raise ValueError("need 2 <= minor_repeats <= critical_repeats")
        self.minor_repeats = minor_repeats
        self.critical_repeats = critical_repeats
        self.max_period = max_period
        self.k = k
        self.min_loop_chars = min_loop_chars
        self.min_code_loop_chars = min_code_loop_chars
        self.stutter_chars = stutter_chars
        self.near_dup_ratio = near_dup_ratio
        self.near_dup_min_chars = near_dup_min_chars
        self._sev_minor = severity_for("E_LOOP", severity)
        crit = dict(severity or {})
        self._sev_critical = crit.pop("E_LOOP_CRITICAL", "critical")
        # text position
        self._pos = 0
        self._pending = ""  # an unfinished word or whitespace run
        self._pending_start = 0
        # tokens
        self._ids: list[int] = []
        self._starts: list[int] = []
        self._ends: list[int] = []
        self._alpha: list[bool] = []
        self._code: list[bool] = []
        self._vocab: dict[str, int] = {}
        self._hash_pow = pow(_BASE, k - 1, _MOD)
        self._hash = 0
        self._grams: dict[int, list[int]] = {}
        self._cands: dict[int, int] = {}  # period -> index where the run of matches began
        # line state (fences, list numbers)
        self._line_tokens = 0  # non-space tokens on the current line
        self._line_backticks = 0
        self._in_code = False
        # reporting: end offset (chars) of what each severity has already covered
        self._covered = {"minor": 0, "critical": 0}
        self._episode: dict[str, tuple[int, int] | None] = {"minor": None, "critical": None}
        # stutter inside one word
        self._stutter_next = stutter_chars
        self._stutter_done: set[str] = set()
        # near-duplicate sentences
        self._sent_parts: list[str] = []
        self._sent_start = 0
        self._sent_code = False
        self._prev_tok = ""
        self._prev_sent = ""
        self._chain = 0
        self._chain_start = 0
        self._chain_varied = False
        self._dup_episode: set[str] = set()

    # ----------------------------------------------------------------- streaming
    def feed(self, piece: str) -> list[Verdict]:
        if not piece:
            return []
        out: list[Verdict] = []
        text = self._pending + piece
        base = self._pending_start if self._pending else self._pos
        matches = list(_TOKEN.finditer(text))
        last = matches[-1]
        hold = last.end() == len(text) and not _PUNCT.fullmatch(last.group())
        for m in matches[:-1] if hold else matches:
            out.extend(self._token(m.group(), base + m.start(), base + m.end(), text, m.end()))
        if hold:
            self._pending = last.group()
            self._pending_start = base + last.start()
            out.extend(self._stutter(self._pending, self._pending_start))
        else:
            self._pending = ""
        self._pos += len(piece)
        return out

    def finish(self) -> list[Verdict]:
        out: list[Verdict] = []
        if self._pending:
            tok, self._pending = self._pending, ""
            out.extend(self._token(tok, self._pending_start, self._pending_start + len(tok), "", 0))
        if self._sent_parts:
            out.extend(self._sentence("".join(self._sent_parts), self._sent_start))
            self._sent_parts = []
        return out

    # ----------------------------------------------------------------- tokens
    def _token(self, tok: str, start: int, end: int, text: str, after: int) -> list[Verdict]:
        first = tok[0]
        key = tok
        if first.isspace():
            if "\n" in tok:
                self._line_tokens = 0
                self._line_backticks = 0
        else:
            if (
                self._line_tokens == 0
                and tok.isdigit()
                and after < len(text)
                and text[after] in ".)"
            ):
                key = "\x00listnum"  # "7." opens a list item; its number is a slot
            if tok == "`" and self._line_tokens == self._line_backticks:
                self._line_backticks += 1
                if self._line_backticks == 3:
                    self._in_code = not self._in_code
            self._line_tokens += 1
            if not _PUNCT.fullmatch(tok):
                stutter = self._stutter(tok, start)
                self._stutter_next = self.stutter_chars
                self._stutter_done.clear()
        tid = self._vocab.setdefault(key, len(self._vocab))
        i = len(self._ids)
        self._ids.append(tid)
        self._starts.append(start)
        self._ends.append(end)
        self._alpha.append(any(c.isalpha() for c in tok))
        self._code.append(self._in_code)
        out = self._periods(i)
        if not first.isspace() and not _PUNCT.fullmatch(tok):
            out = stutter + out
        # sentences end at [.!?] followed by whitespace, or at a newline
        if first.isspace():
            if self._sent_parts and ("\n" in tok or self._prev_tok in ".!?"):
                out.extend(self._sentence("".join(self._sent_parts), self._sent_start))
                self._sent_parts = []
            elif self._sent_parts:
                self._sent_parts.append(tok)
        else:
            if not self._sent_parts:
                self._sent_start = start
                self._sent_code = self._in_code
            self._sent_parts.append(tok)
        self._prev_tok = tok
        return out

    def _periods(self, i: int) -> list[Verdict]:
        ids = self._ids
        tid = ids[i]
        out: list[Verdict] = []
        # confirm or drop live candidates
        dead = [p for p in self._cands if ids[i - p] != tid]
        for p in dead:
            del self._cands[p]
        # rolling hash of the last k tokens proposes new periods
        k = self.k
        if i >= k:
            self._hash = (self._hash - (ids[i - k] + 1) * self._hash_pow) % _MOD
        self._hash = (self._hash * _BASE + tid + 1) % _MOD
        if i >= k - 1:
            seen = self._grams.get(self._hash)
            if seen is None:
                self._grams[self._hash] = [i]
            else:
                for j in reversed(seen):
                    p = i - j
                    if p > self.max_period:
                        break
                    if p not in self._cands and ids[j - k + 1 : j + 1] == ids[i - k + 1 : i + 1]:
                        self._cands[p] = i - k + 1
                seen.append(i)
                if len(seen) > 8:
                    del seen[0]
        # continuing episodes extend what they cover
        for sev in ("minor", "critical"):
            ep = self._episode[sev]
            if ep is not None:
                if ep[0] in self._cands and self._cands[ep[0]] == ep[1]:
                    self._covered[sev] = max(self._covered[sev], self._ends[i])
                else:
                    self._episode[sev] = None
        for p in sorted(self._cands):
            out.extend(self._judge_period(p, self._cands[p], i))
        return out

    def _judge_period(self, p: int, run_start: int, i: int) -> list[Verdict]:
        onset = run_start - p
        if onset < 0:
            return []
        copies_raw = (i + 1 - onset) / p
        if copies_raw < self.minor_repeats:
            return []
        block_alpha = any(self._alpha[onset : onset + p])
        if not block_alpha:
            return []
        block_chars = self._ends[onset + p - 1] - self._starts[onset]
        min_chars = self.min_code_loop_chars if self._code[onset] else self.min_loop_chars
        out: list[Verdict] = []
        for sev, repeats in (("minor", self.minor_repeats), ("critical", self.critical_repeats)):
            if self._episode[sev] is not None:
                continue
            need = max(repeats, math.ceil(min_chars * repeats / self.minor_repeats / block_chars))
            first = onset
            if self._starts[onset] < self._covered[sev]:
                first = bisect.bisect_left(self._starts, self._covered[sev], onset, i + 1)
            if (i + 1 - first) < need * p:
                continue
            self._episode[sev] = (p, run_start)
            self._covered[sev] = self._ends[i]
            block = "".join(self._text_of(onset, onset + min(p, 12)))
            out.append(
                self._verdict(
                    sev,
                    (self._starts[first], self._ends[i]),
                    f"block of {p} tokens repeated {(i + 1 - first) // p}x: {block[:60]!r}",
                )
            )
        return out

    def _verdict(self, level: str, span: tuple[int, int], detail: str) -> Verdict:
        """An E_LOOP verdict at the configured severity of its level (minor or critical)."""
        severity = self._sev_minor if level == "minor" else self._sev_critical
        return Verdict(self.name, severity, "E_LOOP", span, detail)  # type: ignore[arg-type]

    def _text_of(self, a: int, b: int) -> list[str]:
        inv = getattr(self, "_inv", None)
        if inv is None or len(inv) != len(self._vocab):
            inv = self._inv = {v: key for key, v in self._vocab.items()}
        return [inv[t] if not inv[t].startswith("\x00") else "N" for t in self._ids[a:b]]

    # ----------------------------------------------------------------- stutter in a word
    def _stutter(self, word: str, start: int) -> list[Verdict]:
        """Check an unfinished word at fixed length thresholds (split-invariant)."""
        out: list[Verdict] = []
        if word[0].isspace():
            return out
        while len(word) >= self._stutter_next:
            out.extend(self._stutter_at(word[: self._stutter_next], start))
            self._stutter_next += 8
        return out

    _STUTTER = re.compile(r"(\w{1,8}?)\1+\Z")

    def _stutter_at(self, prefix: str, start: int) -> list[Verdict]:
        tail = prefix[-400:]
        m = self._STUTTER.search(tail)
        if not m or not any(c.isalpha() for c in m.group(1)):
            return []
        length = m.end() - m.start()
        abs_start = start + len(prefix) - len(tail) + m.start()
        abs_end = start + len(prefix)
        out = []
        for sev, factor in (("minor", 1.0), ("critical", 2.5)):
            if sev in self._stutter_done or length < self.stutter_chars * factor:
                continue
            if abs_start < self._covered[sev]:
                continue
            self._stutter_done.add(sev)
            self._covered[sev] = abs_end
            out.append(
                self._verdict(
                    sev,
                    (abs_start, abs_end),
                    f"stutter: {m.group(1)!r} repeated {length // len(m.group(1))}x",
                )
            )
        return out

    # ----------------------------------------------------------------- near-duplicate sentences
    def _sentence(self, sent: str, start: int) -> list[Verdict]:
        stripped = sent.strip()
        lead = start
        if self._sent_code or _LIST_OR_TABLE.match(sent) or len(stripped) < self.near_dup_min_chars:
            self._chain = 0
            self._prev_sent = ""
            return []
        score = fuzz.ratio(stripped, self._prev_sent) if self._prev_sent else 0.0
        if score >= self.near_dup_ratio:
            self._chain += 1
            self._chain_varied |= score < 100.0
        else:
            self._chain = 1
            self._chain_start = lead
            self._chain_varied = False
            self._dup_episode = set()
        self._prev_sent = stripped
        end = start + len(sent.rstrip())
        out: list[Verdict] = []
        for sev, need in (("minor", self.minor_repeats), ("critical", self.critical_repeats)):
            if sev in self._dup_episode:
                self._covered[sev] = max(self._covered[sev], end)
                continue
            if self._chain < need or not self._chain_varied:
                continue  # exact repeats are the token detector's business
            if self._chain_start < self._covered[sev]:
                continue
            self._dup_episode.add(sev)
            self._covered[sev] = end
            out.append(
                self._verdict(
                    sev,
                    (self._chain_start, end),
                    f"{self._chain} near-identical sentences in a row",
                )
            )
        return out
