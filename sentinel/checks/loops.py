"""Degenerate repetition: a block repeated verbatim, a stuttering word, near-identical sentences.

Size (over 500 lines): one incremental state machine (tokens, rolling hash, candidate periods,
stutters, near-duplicate sentences, reporting) over one shared token buffer; its parts read
each other's state on every token, so splitting it would only pass that state around.

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
_WORD_RUN = re.compile(r"\w+")
_SPACE_RUN = re.compile(r"\s+")
_ALPHA = re.compile(r"[^\W\d_]")
# Sentences longer than this are not compared for near-duplicates (rapidfuzz's ratio is
# O(n*m)); a 1 MB "sentence" is a flood, which the token detector and E_DRIFT report.
_MAX_SENTENCE = 2000
# At most this many candidate periods stay live (the smallest): on pathological periodic text
# ("a a a a ...") every multiple of the period is live, and checking them all cost O(600) per
# token. A loop is found through its smallest period, which always stays.
_MAX_CANDIDATES = 48
_GRAM_GEN = 4096
_KEEP = 8192  # tokens of history kept (>= 8 x max_period); see LoopCheck._rebase
_REBASE_AT = 16384
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
        if max_period > _KEEP // 8:
            raise ValueError(f"max_period must be at most {_KEEP // 8}")
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
        # an unfinished word or whitespace run: its parts, length, kind and last characters
        self._pend_parts: list[str] = []
        self._pend_len = 0
        self._pend_word = False
        self._pend_tail = ""
        self._pending_start = 0
        # tokens
        self._ids: list[int] = []
        self._starts: list[int] = []
        self._ends: list[int] = []
        self._alpha: list[bool] = []
        self._code: list[bool] = []
        # a token's id is its hash (no vocabulary dict: a dict of millions of distinct tokens
        # resized in one go, holding the event loop for ~50 ms); _toks keeps the tokens
        self._toks: list[str] = []
        self._hash_pow = pow(_BASE, k - 1, _MOD)
        self._hash = 0
        # k-gram hash -> last token index with it; _prev[i] -> the index before i with the same
        # k-gram (-1: none). Plain ints only: a dict of lists held one garbage-collected object
        # per distinct k-gram, and a full GC pass over a 5 MB answer's lists took 1 s.
        # Two generations of at most _GRAM_GEN entries each (only the last max_period tokens
        # matter), so the dicts never grow, and never resize, with the message.
        self._grams: dict[int, int] = {}
        self._grams_old: dict[int, int] = {}
        self._prev: list[int] = []
        self._cands: dict[int, int] = {}  # period -> index where the run of matches began
        self._cand_alpha: dict[int, bool] = {}  # period -> its block has a word (cached)
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
        self._sent_len = 0
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
        """O(len(piece)): the unfinished word or whitespace run is extended, never re-read."""
        if not piece:
            return []
        out: list[Verdict] = []
        n = len(piece)
        i = 0
        if self._pend_len:
            m = (_WORD_RUN if self._pend_word else _SPACE_RUN).match(piece)
            j = m.end() if m else 0
            if j:
                out.extend(self._pend_extend(piece[:j]))
            if j == n:
                self._pos += n
                return out
            tok, start = "".join(self._pend_parts), self._pending_start
            self._pend_parts, self._pend_len, self._pend_tail = [], 0, ""
            out.extend(self._token(tok, start, start + len(tok), piece, j))
            i = j
        base = self._pos
        for m in _TOKEN.finditer(piece, i):
            tok = m.group()
            if m.end() == n and not _PUNCT.fullmatch(tok):
                # an unfinished word or whitespace run: decided when the next character comes
                self._pending_start = base + m.start()
                self._pend_word = not tok[0].isspace()
                out.extend(self._pend_extend(tok))
                break
            out.extend(self._token(tok, base + m.start(), base + m.end(), piece, m.end()))
        self._pos += n
        return out

    def _pend_extend(self, part: str) -> list[Verdict]:
        self._pend_parts.append(part)
        self._pend_len += len(part)
        if not self._pend_word:
            return []
        # the stutter detector needs at most the last 400 characters before each threshold
        buf = self._pend_tail + part
        off = self._pend_len - len(buf)
        out = self._stutter_buf(buf, off, self._pending_start)
        keep = min(len(buf), 408)
        self._pend_tail = buf[len(buf) - keep :]
        return out

    def finish(self) -> list[Verdict]:
        out: list[Verdict] = []
        if self._pend_len:
            tok = "".join(self._pend_parts)
            self._pend_parts, self._pend_len, self._pend_tail = [], 0, ""
            out.extend(self._token(tok, self._pending_start, self._pending_start + len(tok), "", 0))
        if self._sent_parts:
            out.extend(self._end_sentence())
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
                stutter = self._stutter_buf(tok, 0, start)
                self._stutter_next = self.stutter_chars
                self._stutter_done.clear()
        tid = hash(key)
        if len(self._ids) >= _REBASE_AT:
            self._rebase()
        self._toks.append(key)
        i = len(self._ids)
        self._ids.append(tid)
        self._starts.append(start)
        self._ends.append(end)
        self._alpha.append(_ALPHA.search(tok) is not None)
        self._code.append(self._in_code)
        out = self._periods(i)
        if not first.isspace() and not _PUNCT.fullmatch(tok):
            out = stutter + out
        # sentences end at [.!?] followed by whitespace, or at a newline
        if first.isspace():
            if self._sent_parts and ("\n" in tok or self._prev_tok in ".!?"):
                out.extend(self._end_sentence())
            elif self._sent_parts:
                self._sent_add(tok)
        else:
            if not self._sent_parts:
                self._sent_start = start
                self._sent_code = self._in_code
            self._sent_add(tok)
        self._prev_tok = tok
        return out

    def _sent_add(self, tok: str) -> None:
        if self._sent_len <= _MAX_SENTENCE:
            self._sent_parts.append(tok)
        self._sent_len += len(tok)

    def _end_sentence(self) -> list[Verdict]:
        sent, n = "".join(self._sent_parts), self._sent_len
        self._sent_parts, self._sent_len = [], 0
        if n > _MAX_SENTENCE:
            self._chain = 0
            self._prev_sent = ""
            return []
        return self._sentence(sent, self._sent_start)

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
        prev = self._prev
        if i >= k - 1:
            j = self._grams.get(self._hash, -1)
            if j < 0:
                j = self._grams_old.get(self._hash, -1)
            prev.append(j)
            if len(self._grams) >= max(_GRAM_GEN, self.max_period + 8):
                self._grams_old, self._grams = self._grams, {}
            self._grams[self._hash] = i
            for _ in range(8):  # the last 8 earlier occurrences of this k-gram
                if j < 0:
                    break
                p = i - j
                if p > self.max_period:
                    break
                if p not in self._cands and ids[j - k + 1 : j + 1] == ids[i - k + 1 : i + 1]:
                    self._cands[p] = i - k + 1
                    self._cand_alpha.pop(p, None)
                j = prev[j]
        else:
            prev.append(-1)
        # continuing episodes extend what they cover
        for sev in ("minor", "critical"):
            ep = self._episode[sev]
            if ep is not None:
                if ep[0] in self._cands and self._cands[ep[0]] == ep[1]:
                    self._covered[sev] = max(self._covered[sev], self._ends[i])
                else:
                    self._episode[sev] = None
        if len(self._cands) > _MAX_CANDIDATES:
            for p in sorted(self._cands)[_MAX_CANDIDATES:]:
                del self._cands[p]
        if self._episode["minor"] is not None and self._episode["critical"] is not None:
            return out  # both levels already reported for this loop: nothing new to judge
        for p in sorted(self._cands):
            out.extend(self._judge_period(p, self._cands[p], i))
        return out

    def _rebase(self) -> None:
        """Forget all but the last _KEEP tokens (indices shift down by the number dropped).

        The per-token lists would otherwise grow with the message, and each time CPython
        grew a list of a million entries it copied it (10-25 ms, holding the event loop).
        What is kept covers every live period many times over (max_period <= _KEEP / 8).
        """
        drop = len(self._ids) - _KEEP
        for name in ("_ids", "_starts", "_ends", "_alpha", "_code", "_toks"):
            setattr(self, name, getattr(self, name)[drop:])
        self._prev = [j - drop if j >= drop else -1 for j in self._prev[drop:]]
        for gen in ("_grams", "_grams_old"):
            setattr(self, gen, {h: j - drop for h, j in getattr(self, gen).items() if j >= drop})
        self._cands = {p: max(rs - drop, p) for p, rs in self._cands.items()}
        for sev in ("minor", "critical"):
            ep = self._episode[sev]
            if ep is not None:
                self._episode[sev] = (ep[0], max(ep[1] - drop, ep[0]))

    def _judge_period(self, p: int, run_start: int, i: int) -> list[Verdict]:
        onset = run_start - p
        if onset < 0:
            return []
        copies_raw = (i + 1 - onset) / p
        if copies_raw < self.minor_repeats:
            return []
        block_alpha = self._cand_alpha.get(p)
        if block_alpha is None:
            block_alpha = any(self._alpha[onset : onset + p])
            if block_alpha:
                # cells of one table row that hold the same value (| ✓ | ✓ | ✓ |) are a table
                toks = self._toks[onset : onset + p]
                if "|" in toks and "\n" not in "".join(toks):
                    block_alpha = False
            self._cand_alpha[p] = block_alpha
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
        return [t if not t.startswith("\x00") else "N" for t in self._toks[a:b]]

    # ----------------------------------------------------------------- stutter in a word
    def _stutter_buf(self, buf: str, off: int, start: int) -> list[Verdict]:
        """Check an unfinished word at fixed length thresholds (split-invariant).

        ``buf`` holds the word's characters from offset ``off`` to its current end, and at
        least the 400 before each threshold not checked yet: each check sees a bounded input.
        """
        out: list[Verdict] = []
        if not buf or buf[0].isspace():
            return out
        end = off + len(buf)
        while end >= self._stutter_next:
            if len(self._stutter_done) == 2:
                self._stutter_next = end // 8 * 8 + 8
                break
            t = self._stutter_next - off
            tail = buf[max(0, t - 400) : t]
            if _periodic_tail(tail, max(1, min(32, self.stutter_chars - 8))):
                out.extend(self._stutter_at(tail, start + self._stutter_next - len(tail), start))
            self._stutter_next += 8
        return out

    def _stutter_at(self, tail: str, tail_start: int, word_start: int) -> list[Verdict]:
        """The longest run at the end of ``tail`` of one unit (1-8 characters) repeated.

        A run that starts deep inside its word (``ops_eyJxxxx…``, ``ABSK…EXAMPLEEXAMPLE…``) is
        a placeholder's filler inside one identifier, not the model repeating itself: only a
        run from (nearly) the word's start counts (``aaaa…``, ``noooo…``, ``thatthat…``)."""
        rev = tail[::-1]
        best = None
        for unit in range(1, 9):
            m = _REPEATS[unit].match(rev)
            if m and (best is None or m.end() > best[0]):
                best = (m.end(), unit)
        if best is None:
            return []
        length, unit = best
        seed = tail[len(tail) - unit :]
        if not any(c.isalpha() for c in seed):
            return []
        abs_start = tail_start + len(tail) - length
        if abs_start - word_start > _STUTTER_LEAD and length < len(tail):
            return []
        abs_end = tail_start + len(tail)
        out = []
        if unit == 1:
            length_needed = 3.0  # "xxxx…" placeholders: one character needs a longer run
        else:
            length_needed = 1.0
        for sev, factor in (("minor", length_needed), ("critical", 2.5 * length_needed)):
            if sev in self._stutter_done or length < self.stutter_chars * factor:
                continue
            self._stutter_done.add(sev)
            if abs_start < self._covered[sev]:
                continue  # already inside a reported loop (the run's start never moves)
            self._covered[sev] = abs_end
            out.append(
                self._verdict(
                    sev,
                    (abs_start, abs_end),
                    f"stutter: {seed!r} repeated {length // unit}x",
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
        if self.near_dup_ratio <= score < 100.0 and _same_template(stripped, self._prev_sent):
            score = 0.0  # the same template with other arguments (a log, a list of keys)
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


_STUTTER_LEAD = 2  # characters of a word allowed before its stutter ("noooo": 1)
_REPEATS = {u: re.compile(rf"(\w{{{u}}})\1+") for u in range(1, 9)}


def _periodic_tail(tail: str, probe: int) -> bool:
    """Cheap test before the regexes: do the last ``probe`` characters repeat with a period of
    at most 8 (a run of ``probe + 8`` or more characters of one unit always does)?"""
    last = tail[-probe:]
    return any(len(tail) >= probe + u and last == tail[-probe - u : -u] for u in range(1, 9))


_ARG = re.compile(r"[^A-Za-z\s]")


def _same_template(a: str, b: str) -> bool:
    """Two lines that differ only in their arguments: every word that differs holds a digit,
    a path, quote or other non-letter (``reading /a/1.txt`` and ``reading /a/2.txt``), as a
    tool-call log or a list of identifiers does. A loop varies its wording, not its slots."""
    wa, wb = a.split(), b.split()
    if len(wa) != len(wb):
        return False
    diff = [(x, y) for x, y in zip(wa, wb, strict=True) if x != y]
    return bool(diff) and all(_ARG.search(x) and _ARG.search(y) for x, y in diff)
