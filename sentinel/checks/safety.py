"""Critical output: destructive shell commands, credentials, and leaks of the system prompt.

Commands and secrets are matched per line. The current partial line is rescanned as it grows
(so a key is caught before its line ends), but a match only counts once something that cannot
extend it follows, so spans never depend on how the stream was split. Each finding is
reported once (keyed by its span).
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Iterator

from rapidfuzz import fuzz

from sentinel import secrets
from sentinel.checks.patterns import severity_for
from sentinel.verdict import Verdict

_END = r"(?=[\s;&|)`'\"]|$)"  # the command word ends here (lines are scanned with their "\n")
_RM_FLAGS = r"(?:-[a-zA-Z]*[rR][a-zA-Z]*\s+(?:-[a-zA-Z]+\s+|--\S+\s+)*|--recursive\s+(?:-\S+\s+)*)"
_DISK = r"/dev/(?:sd[a-z]|hd[a-z]|vd[a-z]|xvd[a-z]|nvme\d+n\d+|mmcblk\d+|disk\d+)"

UNSAFE_COMMANDS: dict[str, str] = {
    "rm -rf of / or ~": (
        rf"\brm\s+{_RM_FLAGS}(?:--no-preserve-root\s+)?"
        rf"(?:/\*?|~/?\*?|\$HOME/?\*?|\$\{{HOME\}}/?\*?|/(?:bin|boot|etc|usr|var|lib|home)/?\*?)"
        rf"{_END}"
    ),
    "mkfs on a device": r"\bmkfs(?:\.\w+)?\s+(?:-\S+\s+)*/dev/\w+",
    "dd onto a disk": rf"\bdd\s+(?:\S+\s+){{0,8}}of={_DISK}",
    "write to a raw disk": rf"(?<![<\w])>{{1,2}}\s*{_DISK}",
    "shred/wipefs a disk": rf"\b(?:shred|wipefs)\s+(?:-\S+\s+)*{_DISK}",
    "pipe a download into a shell": (
        r"\b(?:curl|wget)\b[^\n|]{0,300}\|\s*(?:sudo\s+(?:-\S+\s+)*)?(?:ba|z|k|da|c|tc)?sh\b"
    ),
    "fork bomb": r":\s*\(\s*\)\s*\{\s*:\s*\|\s*:\s*&\s*\}\s*;\s*:",
    "chmod/chown -R of /": (
        rf"\b(?:chmod|chown)\s+(?:-\S+\s+)*-[a-zA-Z]*R[a-zA-Z]*\s+(?:-\S+\s+)*\S+\s+/\*?{_END}"
    ),
    "move home to /dev/null": r"\bmv\s+(?:~|\$HOME|/)\s+/dev/null\b",
    "find / -delete": r"\bfind\s+/\s+(?:[^\n]{0,200}\s)?-delete\b",
    "kill every process": rf"\bkill\s+-(?:9|KILL|SIGKILL)\s+-1{_END}",
    "format a Windows drive": r"(?i)\bformat\s+[a-z]:(?:\s|$)",
    "delete a Windows drive": r"(?i)\b(?:rd|rmdir|del)\s+(?:/[sqf]\s+)+[a-z]:\\?(?:\*)?(?:\s|$)",
    "Remove-Item a drive": (
        r"(?i)\bRemove-Item\s+[^\n]{0,100}-Recurse[^\n]{0,100}\s[a-z]:\\(?:\*)?(?:\s|$)"
    ),
    "overwrite system files": r"(?<![<\w])>\s*/etc/(?:passwd|shadow|sudoers)\b",
}

_PEM_BODY = re.compile(r"^\s*[A-Za-z0-9+/=]{16,}\s*$")


class _LineScanner:
    """Yields ``(text, text_start, complete, fresh)`` windows of the stream, each at most
    ``2 * window`` characters, so that no regex ever sees more than that (whatever the line's
    length) and the work per piece is O(window + piece).

    After each piece the tail of the current partial line is yielded (the last ``window``
    characters before the piece, then the piece): a key is caught before its line ends. A
    long stretch is cut into windows that overlap by ``window`` characters; ``complete`` is
    true only for the window that ends a line. A window that does not begin at a line start
    hides its first ``margin`` characters (see ``starts_ok``): a match there would lack the
    context before it (``\b``), and it was seen whole by the previous window. So a match up to
    ``window - margin`` characters long is always seen whole. ``fresh`` says the window begins
    at its line's start.
    """

    window = 400
    margin = 64

    def __init__(self, trigger: Callable[[str, int], list[tuple[int, int]]] | None = None) -> None:
        """``trigger(text, pos)``: the ``(offset, tag)`` of each trigger in ``text[pos:]``;
        every match contains one, so a window with no trigger in it is not yielded (a line
        without one costs O(piece) per piece, not O(window))."""
        self._pos = 0
        self._line_start = 0
        self._tail = ""
        self._tail_start = 0
        self._trigger = trigger
        self._triggers: list[int] = []  # trigger starts in the current line, ascending
        self._tags: list[int] = []  # their tags
        self.force = False  # yield every window (a check waiting for the next line)

    def lines(self, piece: str) -> Iterator[tuple[str, int, bool, bool]]:
        """The windows to scan after ``piece`` (lazily: a check may set ``force`` meanwhile)."""
        start = 0
        pos = self._pos
        self._pos += len(piece)
        while (nl := piece.find("\n", start)) >= 0:
            yield from self._windows(piece[start : nl + 1], True)
            self._line_start = pos + nl + 1
            self._tail = ""
            self._tail_start = self._line_start
            start = nl + 1
        if start < len(piece):
            yield from self._windows(piece[start:], False)

    def _windows(self, seg: str, complete: bool) -> Iterator[tuple[str, int, bool, bool]]:
        text = self._tail + seg
        base = self._tail_start
        w = self.window
        if self._trigger is not None:
            # triggers in the new text (plus a little before it, for one that straddles)
            back = min(len(text) - len(seg), 24)
            offset = len(text) - len(seg) - back
            trig, tags = self._triggers, self._tags
            if trig and trig[0] < base:
                cut = bisect.bisect_left(trig, base)
                del trig[:cut], tags[:cut]
            for off, tag in self._trigger(text, offset):
                at = base + off
                i = bisect.bisect_left(trig, at)
                j = bisect.bisect_right(trig, at, i)
                if tag not in tags[i:j]:  # the overlap finds some again
                    trig.insert(j, at)
                    tags.insert(j, tag)
        k = 0
        while len(text) - k > 2 * w:
            if self._wanted(base + k, base + k + 2 * w):
                yield (text[k : k + 2 * w], base + k, False, base + k == self._line_start)
            k += w
        fresh = base + k == self._line_start
        want = self._wanted(base + k, base + len(text))
        if not complete:
            cut = max(0, len(text) - w)
            self._tail = text[cut:]
            self._tail_start = base + cut
        if want:
            yield (text[k:], base + k, complete, fresh)
        if complete:
            self._triggers, self._tags = [], []

    def tags_in(self, start: int, end: int) -> set[int]:
        """The tags of the triggers that start in ``[start, end)`` of the current line."""
        i = bisect.bisect_left(self._triggers, start)
        j = bisect.bisect_left(self._triggers, end)
        return set(self._tags[i:j])

    def _wanted(self, start: int, end: int) -> bool:
        if self._trigger is None or self.force:
            return True
        i = bisect.bisect_left(self._triggers, start)
        return i < len(self._triggers) and self._triggers[i] < end

    def finish(self) -> list[tuple[str, int, bool, bool]]:
        if self._pos == self._line_start:
            return []
        out: list[tuple[str, int, bool, bool]] = []
        if self._wanted(self._tail_start, self._pos):
            fresh = self._tail_start == self._line_start
            out.append((self._tail + "\n", self._tail_start, True, fresh))
        self._line_start = self._pos
        self._tail = ""
        self._tail_start = self._pos
        return out


def _overlaps(span: tuple[int, int], seen: list[tuple[int, int]]) -> bool:
    return any(span[0] < e and s < span[1] for s, e in seen[-64:])


class _LineCheck:
    """A check that looks at whole (or partial) lines: subclasses set ``_scan`` and define
    ``_check(line, start, complete)``."""

    _scan: _LineScanner
    _min_start = 0  # matches starting before this offset of the window do not count

    def _check(self, text: str, start: int, complete: bool) -> list[Verdict]:
        raise NotImplementedError

    def feed(self, piece: str) -> list[Verdict]:
        out: list[Verdict] = []
        for text, start, complete, fresh in self._scan.lines(piece):
            self._min_start = 0 if fresh else self._scan.margin
            out.extend(self._check(text, start, complete))
        return out

    def finish(self) -> list[Verdict]:
        out: list[Verdict] = []
        for text, start, complete, fresh in self._scan.finish():
            self._min_start = 0 if fresh else self._scan.margin
            out.extend(self._check(text, start, complete))
        return out


# Every UNSAFE_COMMANDS match begins with one of these (a line without any is not scanned).
_COMMAND_TRIGGER = re.compile(
    r"(?i)\b(?:rm|rd|rmdir|del|mkfs|dd|shred|wipefs|curl|wget|chmod|chown|mv|find|kill|format"
    r"|remove-item)\b|>|:\s*\("
)


def _command_triggers(text: str, pos: int) -> list[tuple[int, int]]:
    return [(m.start(), 0) for m in _COMMAND_TRIGGER.finditer(text, pos)]


class UnsafeCommandCheck(_LineCheck):
    """E_UNSAFE_COMMAND (critical) for well-known destructive shell commands.

    Not flagged on purpose: ``shutdown``/``reboot`` (routine admin advice), ``rm -rf`` of a
    concrete sub-directory (``rm -rf /tmp/build``), ``git push --force``.
    """

    name = "unsafe_commands"

    def __init__(
        self,
        extra: dict[str, str] | None = None,
        severity: dict[str, str] | None = None,
    ) -> None:
        pats = dict(UNSAFE_COMMANDS)
        pats.update(extra or {})
        self._pats = [(n, re.compile(p)) for n, p in pats.items()]
        self._sev = severity_for("E_UNSAFE_COMMAND", severity)
        self._scan = _LineScanner(None if extra else _command_triggers)
        self._seen: list[tuple[int, int]] = []

    def _check(self, text: str, start: int, complete: bool) -> list[Verdict]:
        out: list[Verdict] = []
        body = text.rstrip("\n")
        for name, pat in self._pats:
            for m in pat.finditer(text if complete else body, self._min_start):
                end = m.end()
                if end > len(body):
                    end = len(body)
                if not complete and end >= len(body):
                    continue  # could still grow; decide when something follows
                span = (start + m.start(), start + end)
                if _overlaps(span, self._seen):
                    continue
                self._seen.append(span)
                out.append(
                    Verdict(
                        self.name, self._sev, "E_UNSAFE_COMMAND", span, f"{name}: {m.group()!r}"
                    )
                )
        return out


class SecretCheck(_LineCheck):
    """E_SECRET (critical): what ``sentinel.secrets`` calls a secret (the detector the
    redactor shares), found in bounded windows near a trigger, and private-key headers that
    start a block (at once) or that a key body follows."""

    name = "secrets"

    def __init__(self, severity: dict[str, str] | None = None) -> None:
        self._sev = severity_for("E_SECRET", severity)
        self._scan = _LineScanner(secrets.secret_triggers)
        self._seen: list[tuple[int, int]] = []
        self._pem_start: int | None = None  # a header inside a sentence: is a body next?

    def _emit(self, span: tuple[int, int], what: str) -> list[Verdict]:
        if _overlaps(span, self._seen):
            return []
        self._seen.append(span)
        return [Verdict(self.name, self._sev, "E_SECRET", span, what)]

    def _check(self, text: str, start: int, complete: bool) -> list[Verdict]:
        out: list[Verdict] = []
        body = text.rstrip("\n")
        if complete:
            if self._pem_start is not None:
                if _PEM_BODY.match(body):
                    out.extend(self._emit((self._pem_start, start + len(body)), "Private Key"))
                self._pem_start = None
            for m in secrets.KEY_HEADER.finditer(body, self._min_start):
                if secrets.key_header_alone(body, m) or body[m.end() :].startswith("\\n"):
                    out.extend(self._emit((start + m.start(), start + m.end()), "Private Key"))
                else:
                    self._pem_start = start + m.start()
            self._scan.force = self._pem_start is not None  # the body line has no trigger
        tags = self._scan.tags_in(start - 24, start + len(text))
        for s, e, kind in secrets.find_in_window(body, self._min_start, complete, tags):
            if not complete and (e >= len(body) or kind == "Secret Keyword"):
                # the value may still grow; a keyword's value is judged with its whole line
                # (``password = os.environ[...]`` is a reference only once the line is read)
                continue
            out.extend(self._emit((start + s, start + e), kind))
        return out


class PromptLeakCheck:
    """E_PROMPT_LEAK (critical): the canary appears, or a window of the output reproduces the
    system prompt (``fuzz.partial_ratio`` >= ``threshold`` over ``window`` characters).

    The fuzzy comparison only runs each time the output passes a multiple of ``every``
    characters (so it is cheap and split-invariant); prompts shorter than ``min_chars`` are
    only protected by the canary.
    """

    name = "prompt_leak"

    def __init__(
        self,
        system_prompt: str = "",
        canary: str | None = None,
        *,
        threshold: float = 90.0,
        min_chars: int = 60,
        window: int = 60,
        every: int = 16,
        severity: dict[str, str] | None = None,
    ) -> None:
        self.prompt = " ".join(system_prompt.lower().split())
        self.canary = canary or None
        self.threshold = threshold
        self.window = max(window, min_chars)
        self.every = every
        self.fuzzy = len(self.prompt) >= min_chars
        self._sev = severity_for("E_PROMPT_LEAK", severity)
        self._tail = ""  # last few characters (canary straddling pieces)
        self._pos = 0
        self._next_eval = self.window
        self._canary_seen = False
        self._fuzzy_seen = False

    def feed(self, piece: str) -> list[Verdict]:
        out: list[Verdict] = []
        keep = max(self.window, len(self.canary or "")) + 1
        text = self._tail + piece
        base = self._pos - len(self._tail)
        self._pos += len(piece)
        if self.canary and not self._canary_seen:
            i = text.find(self.canary)
            if i >= 0:
                self._canary_seen = True
                span = (base + i, base + i + len(self.canary))
                out.append(Verdict(self.name, self._sev, "E_PROMPT_LEAK", span, "canary seen"))
        out.extend(self._fuzzy_windows(text, base))
        self._tail = text[-keep:]
        return out

    def _fuzzy_windows(self, text: str, base: int) -> list[Verdict]:
        out: list[Verdict] = []
        while self.fuzzy and not self._fuzzy_seen and self._next_eval <= self._pos:
            end = self._next_eval - base
            window = text[max(0, end - self.window) : end]
            self._next_eval += self.every
            norm = " ".join(window.lower().split())
            if len(norm) < self.window // 2:
                continue
            score = fuzz.partial_ratio(norm, self.prompt)
            if score >= self.threshold:
                self._fuzzy_seen = True
                span = (base + max(0, end - self.window), base + end)
                out.append(
                    Verdict(
                        self.name,
                        self._sev,
                        "E_PROMPT_LEAK",
                        span,
                        f"output reproduces the system prompt ({score:.0f}% similar)",
                    )
                )
        return out

    def finish(self) -> list[Verdict]:
        if not self.fuzzy or self._fuzzy_seen or self._pos % self.every == 0:
            return []
        self._next_eval = self._pos  # one last look at the final window
        return self._fuzzy_windows(self._tail, self._pos - len(self._tail))
