"""Critical output: destructive shell commands, credentials, and leaks of the system prompt.

Commands and secrets are matched per line. The current partial line is rescanned as it grows
(so a key is caught before its line ends), but a match only counts once something that cannot
extend it follows, so spans never depend on how the stream was split. Each finding is
reported once (keyed by its span).
"""

from __future__ import annotations

import math
import re
from collections import Counter

from rapidfuzz import fuzz

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
    "dd onto a disk": rf"\bdd\s+[^\n]*\bof={_DISK}",
    "write to a raw disk": rf"(?<![<\w])>{{1,2}}\s*{_DISK}",
    "shred/wipefs a disk": rf"\b(?:shred|wipefs)\s+(?:-\S+\s+)*{_DISK}",
    "pipe a download into a shell": (
        r"\b(?:curl|wget)\b[^\n|]*\|\s*(?:sudo\s+(?:-\S+\s+)*)?(?:ba|z|k|da|c|tc)?sh\b"
    ),
    "fork bomb": r":\s*\(\s*\)\s*\{\s*:\s*\|\s*:\s*&\s*\}\s*;\s*:",
    "chmod/chown -R of /": (
        rf"\b(?:chmod|chown)\s+(?:-\S+\s+)*-[a-zA-Z]*R[a-zA-Z]*\s+(?:-\S+\s+)*\S+\s+/\*?{_END}"
    ),
    "move home to /dev/null": r"\bmv\s+(?:~|\$HOME|/)\s+/dev/null\b",
    "find / -delete": r"\bfind\s+/\s+(?:[^\n]*\s)?-delete\b",
    "kill every process": rf"\bkill\s+-(?:9|KILL|SIGKILL)\s+-1{_END}",
    "format a Windows drive": r"(?i)\bformat\s+[a-z]:(?:\s|$)",
    "delete a Windows drive": r"(?i)\b(?:rd|rmdir|del)\s+(?:/[sqf]\s+)+[a-z]:\\?(?:\*)?(?:\s|$)",
    "Remove-Item a drive": r"(?i)\bRemove-Item\s+[^\n]*-Recurse[^\n]*\s[a-z]:\\(?:\*)?(?:\s|$)",
    "overwrite system files": r"(?<![<\w])>\s*/etc/(?:passwd|shadow|sudoers)\b",
}

# name -> (regex, needs an entropy check on group "v")
SECRET_PATTERNS: dict[str, tuple[str, bool]] = {
    "AWS access key id": (r"\b(?P<v>(?:AKIA|ASIA)[0-9A-Z]{16})\b", False),
    "GitHub token": (r"\b(?P<v>gh[pousr]_[A-Za-z0-9]{36,})\b", False),
    "GitHub fine-grained token": (r"\b(?P<v>github_pat_[A-Za-z0-9_]{50,})\b", False),
    "OpenAI/Anthropic key": (
        r"(?<![\w-])(?P<v>sk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,})(?![\w-])",
        True,
    ),
    "Stripe key": (r"\b(?P<v>[sr]k_live_[A-Za-z0-9]{20,})\b", False),
    "Slack token": (r"\b(?P<v>xox[abposr]-[A-Za-z0-9-]{10,})(?![\w-])", True),
    "Google API key": (r"\b(?P<v>AIza[0-9A-Za-z_-]{35})(?![\w-])", False),
    "generic credential": (
        r"(?i)\b(?:api[_-]?key|secret(?:[_-]?key)?|access[_-]?key|auth[_-]?token|token|password"
        r"|passwd|client[_-]?secret)\w*['\"]?\s*[:=]\s*['\"](?P<v>[^'\"\s]{16,})['\"]",
        True,
    ),
}
_KNOWN_PREFIXES = (
    "AKIA",
    "ASIA",
    "gh",
    "github_pat_",
    "sk-",
    "sk_live_",
    "rk_live_",
    "xox",
    "AIza",
)
_PEM_BEGIN = re.compile(r"-----BEGIN (?:[A-Z]+ )*PRIVATE KEY(?: BLOCK)?-----")
_PEM_BODY = re.compile(r"^\s*[A-Za-z0-9+/=]{40,}\s*$")
_PLACEHOLDER_WORDS = ("example", "your", "xxxx", "placeholder", "changeme", "dummy", "redacted")


def _entropy(s: str) -> float:
    counts = Counter(s)
    n = len(s)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def _looks_random(value: str) -> bool:
    """Real keys are high-entropy mixes of classes; placeholders are not."""
    low = value.lower()
    if any(w in low for w in _PLACEHOLDER_WORDS) or "..." in value or "<" in value:
        return False
    classes = sum(1 for pat in (r"[a-z]", r"[A-Z]", r"\d") if re.search(pat, value))
    return classes >= 2 and re.search(r"\d", value) is not None and _entropy(value) >= 3.5


class _LineScanner:
    """Yields ``(text, text_start, complete)`` for each completed line and, after each piece,
    for the tail of the current partial line (at most ``window`` characters before the piece),
    so rescanning a growing line costs O(window + piece), not O(line)."""

    window = 400

    def __init__(self) -> None:
        self._pos = 0
        self._line: list[str] = []
        self._line_start = 0
        self._tail = ""
        self._tail_start = 0

    def lines(self, piece: str) -> list[tuple[str, int, bool]]:
        out: list[tuple[str, int, bool]] = []
        start = 0
        while (nl := piece.find("\n", start)) >= 0:
            self._line.append(piece[start : nl + 1])
            out.append(("".join(self._line), self._line_start, True))
            self._line = []
            self._line_start = self._pos + nl + 1
            self._tail = ""
            self._tail_start = self._line_start
            start = nl + 1
        if start < len(piece):
            rest = piece[start:]
            self._line.append(rest)
            tail = self._tail + rest
            out.append((tail, self._tail_start, False))
            cut = max(0, len(tail) - self.window)
            self._tail = tail[cut:]
            self._tail_start += cut
        self._pos += len(piece)
        return out

    def finish(self) -> list[tuple[str, int, bool]]:
        if not self._line:
            return []
        text, self._line = "".join(self._line) + "\n", []
        return [(text, self._line_start, True)]


def _overlaps(span: tuple[int, int], seen: list[tuple[int, int]]) -> bool:
    return any(span[0] < e and s < span[1] for s, e in seen[-64:])


class _LineCheck:
    """A check that looks at whole (or partial) lines: subclasses set ``_scan`` and define
    ``_check(line, start, complete)``."""

    _scan: _LineScanner

    def _check(self, text: str, start: int, complete: bool) -> list[Verdict]:
        raise NotImplementedError

    def feed(self, piece: str) -> list[Verdict]:
        out: list[Verdict] = []
        for text, start, complete in self._scan.lines(piece):
            out.extend(self._check(text, start, complete))
        return out

    def finish(self) -> list[Verdict]:
        out: list[Verdict] = []
        for text, start, complete in self._scan.finish():
            out.extend(self._check(text, start, complete))
        return out


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
        self._scan = _LineScanner()
        self._seen: list[tuple[int, int]] = []

    def _check(self, text: str, start: int, complete: bool) -> list[Verdict]:
        out: list[Verdict] = []
        body = text.rstrip("\n")
        for name, pat in self._pats:
            for m in pat.finditer(text if complete else body):
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
    """E_SECRET (critical): private keys, cloud/API tokens, high-entropy credentials."""

    name = "secrets"

    def __init__(self, severity: dict[str, str] | None = None) -> None:
        self._pats = [(n, re.compile(p), ent) for n, (p, ent) in SECRET_PATTERNS.items()]
        self._sev = severity_for("E_SECRET", severity)
        self._scan = _LineScanner()
        self._seen: list[tuple[int, int]] = []
        self._pem_start: int | None = None

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
                    out.extend(self._emit((self._pem_start, start + len(body)), "PEM private key"))
                self._pem_start = None
            m = _PEM_BEGIN.search(body)
            if m:
                self._pem_start = start + m.start()
        for name, pat, needs_entropy in self._pats:
            for m in pat.finditer(text if complete else body):
                if not complete and m.end() >= len(body):
                    continue  # the value may still grow
                value = m.group("v")
                if needs_entropy and not _looks_random(value):
                    continue
                if name == "generic credential" and value.startswith(_KNOWN_PREFIXES):
                    continue  # reported by its specific pattern
                if name == "AWS access key id" and value.endswith("EXAMPLE"):
                    continue  # the documented example key
                vs = start + m.start("v")
                out.extend(self._emit((vs, vs + len(value)), name))
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
