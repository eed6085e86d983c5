"""Malformed URLs, e-mail addresses and file paths, plus small shared stream helpers.

A pattern has a *loose trigger* (does this look like a URL?) and a *strict* regex (is it a
well-formed one?). Something that triggers but does not fully match is reported. A candidate
is only judged once its whitespace-delimited token is terminated, so the verdict never depends
on how the stream was split into pieces.

The helpers ``severity_for`` and ``LineStream`` live here because several checks share them
(fenced-code awareness is needed by the pattern, import, drift and safety checks).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

from sentinel.verdict import DEFAULT_SEVERITY, Severity, Verdict


def severity_for(code: str, overrides: dict[str, str] | None) -> Severity:
    """The severity of ``code``: the override map wins over ``DEFAULT_SEVERITY``."""
    if overrides and code in overrides:
        sev = overrides[code]
        if sev not in ("minor", "critical"):
            raise ValueError(f"bad severity {sev!r} for {code}")
        return sev  # type: ignore[return-value]
    return DEFAULT_SEVERITY[code]


class Line(NamedTuple):
    """One completed line: ``start`` offset, ``text`` without its newline, and its role.

    ``kind`` is ``"fence"`` for a ``` fence line, ``"code"`` inside a fenced block and
    ``"prose"`` elsewhere; ``lang`` is the fence's info string for code lines.
    """

    start: int
    text: str
    kind: str
    lang: str


_FENCE = re.compile(r"^\s{0,3}(`{3,}|~{3,})\s*([\w+#.-]*)")


class LineStream:
    """Splits a stream into completed lines and tracks fenced code blocks.

    ``feed`` costs O(len(piece)) apart from the lines it completes; only the current partial
    line is buffered.
    """

    def __init__(self) -> None:
        self.pos = 0  # characters fed so far
        self.line_start = 0
        self.partial: list[str] = []
        self.in_code = False
        self.lang = ""
        self._fence_char = ""
        self.fences_seen = 0

    def feed(self, piece: str) -> list[Line]:
        out: list[Line] = []
        start = 0
        while True:
            nl = piece.find("\n", start)
            if nl < 0:
                break
            self.partial.append(piece[start:nl])
            out.append(self._complete("".join(self.partial)))
            self.partial = []
            self.line_start = self.pos + nl + 1
            start = nl + 1
        if start < len(piece):
            self.partial.append(piece[start:])
        self.pos += len(piece)
        return out

    def finish(self) -> list[Line]:
        if not self.partial:
            return []
        line = self._complete("".join(self.partial))
        self.partial = []
        self.line_start = self.pos
        return [line]

    def partial_text(self) -> str:
        """The current incomplete line (joined; callers should use it sparingly)."""
        if len(self.partial) > 1:
            self.partial = ["".join(self.partial)]
        return self.partial[0] if self.partial else ""

    def _complete(self, text: str) -> Line:
        m = _FENCE.match(text)
        if m and (not self.in_code or m.group(1)[0] == self._fence_char):
            if self.in_code:
                if not m.group(2):  # a closing fence has no info string
                    self.in_code = False
                    return Line(self.line_start, text, "fence", self.lang)
            else:
                self.in_code = True
                self._fence_char = m.group(1)[0]
                self.lang = m.group(2).lower()
                self.fences_seen += 1
                return Line(self.line_start, text, "fence", self.lang)
        if self.in_code:
            return Line(self.line_start, text, "code", self.lang)
        return Line(self.line_start, text, "prose", "")


@dataclass(frozen=True)
class PatternSpec:
    """A loose ``trigger`` (searched in a token) and the ``strict`` form it must fullmatch.

    ``in_code``: also judge tokens inside fenced code and inline code (`` ` ``).
    ``placeholders``: treat ``<name>``, ``{name}`` and ``$VAR`` as valid fillers.
    ``anchors``: substrings one of which every trigger match contains; when given, the trigger
    is only searched near the first one (``reach`` characters before it), so the search sees a
    bounded input whatever the token's length.
    """

    trigger: str
    strict: str
    in_code: bool = False
    placeholders: bool = True
    anchors: tuple[str, ...] = ()
    reach: int = 64


_HOST_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_DOTTED = re.compile(r"(?:[a-z][a-z0-9+.-]*://)?(?:[^\s/@]*@)?(\d+(?:\.\d+){3})(?=[:/?#]|$)")
_URL_STRICT = (
    r"(?:[a-z][a-z0-9+.-]*://"
    r"(?:[^\s/@:]+(?::[^\s/@]*)?@)?"  # user:password@
    rf"(?:{_HOST_LABEL}(?:\.{_HOST_LABEL})*\.?|\d{{1,3}}(?:\.\d{{1,3}}){{3}}|\[[0-9A-Fa-f:.]+\])"
    r"(?::\d{1,5})?"
    r"(?:[/?#][^\s<>\"]*)?"
    r"|file:///[^\s<>\"]*"
    rf"|www\.{_HOST_LABEL}(?:\.{_HOST_LABEL})+(?:[/?#][^\s<>\"]*)?)"
)
_EMAIL_STRICT = (
    r"[A-Za-z0-9_%+-]+(?:\.[A-Za-z0-9_%+-]+)*@"
    rf"(?:{_HOST_LABEL}(?:\.{_HOST_LABEL})*\.[A-Za-z]{{2,}}|\d{{1,3}}(?:\.\d{{1,3}}){{3}})"
)
_PATH_STRICT = (
    r"(?:(?:~|\.{1,2})?(?:/[\w.@%+=:,~*?{}<>\[\]$!#&-]+)+/?"
    r"|[A-Za-z]:(?:\\[^\\/:*?\"<>|\s]+)+\\?)"
)

DEFAULT_PATTERNS: dict[str, PatternSpec] = {
    "url": PatternSpec(
        trigger=r"\b[A-Za-z][\w+.-]+:/+|\bhttps?//|\bwww\.",
        strict=_URL_STRICT,
        in_code=True,
        anchors=(":/", "//", "www."),
        reach=40,
    ),
    "email": PatternSpec(
        trigger=r"[\w.%+-]*\w@(?:[^\W\d_]|@)[\w@.-]*\.[\w.-]*",
        strict=_EMAIL_STRICT,
        anchors=("@",),
        reach=64,
    ),
    "path": PatternSpec(trigger=r"^(?:~|\.{1,2})?/[\w.-]+[/\\]|^[A-Za-z]:\\", strict=_PATH_STRICT),
    # a dotted quad: each octet 0-255 (10.256.0.1 is not an address)
    "ipv4": PatternSpec(
        trigger=r"^\d{1,3}(?:\.\d{1,3}){3}(?![\d.])",
        strict=rf"{_OCTET}(?:\.{_OCTET}){{3}}(?::\d{{1,5}})?",
        in_code=True,
        placeholders=False,
    ),
}
_ALIASES = {"urls": "url", "link": "url", "e-mail": "email", "mail": "email", "file": "path"}

# A token longer than this is not a URL, e-mail address or path anybody can use (browsers stop
# near 2,000 characters for URLs, RFC 5321 at 254 for addresses); it is not judged, so no
# regex ever sees more than this many characters (issue #12: one long token froze the check).
MAX_TOKEN = 2048

_LEAD = "([\"'*_<"
_TRAIL = ".,;:!?)]}>\"'*_"
# template slots: <host>, {host}, {{ host }}, ${HOST}, ${HOST:-localhost}, $(HOST), $HOST, %HOST%
_PLACEHOLDER = re.compile(
    r"\{\{[^{}]*\}\}|\$\{[^{}\s]*\}|\$\([^()\s]*\)|<[^<>\s]+>|\{[^{}\s]*\}|\$\w+|%\w+%"
)


class _Compiled(NamedTuple):
    name: str
    trigger: re.Pattern[str]
    strict: re.Pattern[str]
    in_code: bool
    placeholders: bool
    anchors: tuple[str, ...]
    reach: int

    def search(self, token: str) -> re.Match[str] | None:
        """The trigger's first match, searched near the first anchor only (bounded input)."""
        if not self.anchors:
            return self.trigger.search(token)
        found = [i for i in (token.find(a) for a in self.anchors) if i >= 0]
        if not found:
            return None
        at = min(found)
        return self.trigger.search(token, max(0, at - self.reach), at + self.reach + 8)


def _strip(candidate: str) -> str:
    candidate = candidate.lstrip(_LEAD)
    while candidate and candidate[-1] in _TRAIL:
        if candidate[-1] == ")" and candidate.count("(") >= candidate.count(")"):
            break
        candidate = candidate[:-1]
    return candidate


class PatternCheck:
    """E_PATTERN for a URL / e-mail / path (or custom pattern) that is malformed.

    ``patterns`` maps a name to a ``PatternSpec``, a ``(trigger, strict)`` pair, or, for the
    known names ``url``/``email``/``path``, a plain strict regex that replaces the default one.
    """

    name = "patterns"

    def __init__(
        self,
        patterns: Mapping[str, str | tuple[str, str] | PatternSpec] | None = None,
        severity: dict[str, str] | None = None,
    ) -> None:
        specs: dict[str, PatternSpec] = dict(DEFAULT_PATTERNS)
        for key, value in (patterns or {}).items():
            name = _ALIASES.get(key.lower(), key.lower())
            if isinstance(value, PatternSpec):
                specs[name] = value
            elif isinstance(value, tuple):
                specs[name] = PatternSpec(value[0], value[1], in_code=True, placeholders=False)
            elif name in DEFAULT_PATTERNS:
                base = DEFAULT_PATTERNS[name]
                specs[name] = PatternSpec(base.trigger, value, base.in_code, base.placeholders)
            else:
                raise ValueError(
                    f"pattern {key!r}: give (trigger, strict) for names other than url/email/path"
                )
        self._specs = [
            _Compiled(
                n,
                re.compile(s.trigger),
                re.compile(s.strict),
                s.in_code,
                s.placeholders,
                s.anchors,
                s.reach,
            )
            for n, s in specs.items()
        ]
        self._sev = severity_for("E_PATTERN", severity)
        self._lines = LineStream()
        self._pos = 0
        self._tok: list[str] = []
        self._tok_len = 0
        self._tok_start = 0

    def feed(self, piece: str) -> list[Verdict]:
        out: list[Verdict] = []
        for seg in _SEGMENTS.findall(piece):
            in_code = self._lines.in_code  # fence state of the line these tokens sit on
            for m in _RUNS.finditer(seg):
                text = m.group()
                if text[0].isspace():
                    out.extend(self._end_token(in_code))
                else:
                    if not self._tok_len:
                        self._tok_start = self._pos + m.start()
                    if self._tok_len <= MAX_TOKEN:
                        self._tok.append(text)
                    self._tok_len += len(text)
            self._lines.feed(seg)
            self._pos += len(seg)
        return out

    def finish(self) -> list[Verdict]:
        return self._end_token(self._lines.in_code)

    def _end_token(self, in_code: bool) -> list[Verdict]:
        if not self._tok_len:
            return []
        tok, n = "".join(self._tok), self._tok_len
        self._tok, self._tok_len = [], 0
        if n > MAX_TOKEN:
            return []  # too long to be a usable URL/address/path (see MAX_TOKEN)
        return self._judge(tok, self._tok_start, in_code)

    def _judge(self, token: str, start: int, in_code: bool) -> list[Verdict]:
        inline_code = "`" in token
        for spec in self._specs:
            if (in_code or inline_code) and not spec.in_code:
                continue
            m = spec.search(token)
            if not m:
                continue
            if spec.name == "email" and ("/" in token or ":" in token):
                continue  # scp/ssh remotes (git@host:repo) and URLs with credentials
            raw = token[m.start() :] if spec.name != "email" else m.group()
            if spec.name == "url":
                raw = re.split(r"[\"<>`]", raw, maxsplit=1)[0] or raw  # a URL ends there
            cand = _strip(raw.strip("`"))
            if not cand:
                continue
            if cand.count("{") > cand.count("}") or cand.count("$(") > cand.count(")"):
                continue  # a template slot that a space cut ({{ host }}): not judged
            offset = start + m.start() + raw.find(cand) if cand in raw else start + m.start()
            check = _PLACEHOLDER.sub("0", cand) if spec.placeholders else cand
            if "\\\\" in check or "\\/" in check:
                # a path or URL inside a JSON string, read unescaped ("C:\\\\Users", "\\/usr")
                check = check.replace("\\\\", "\\").replace("\\/", "/")
            if spec.name == "url" and _bad_dotted_host(check):
                pass  # an IPv4 host with an octet over 255: malformed
            elif spec.strict.fullmatch(check) or _valid_international(spec.name, check):
                continue
            return [
                Verdict(
                    self.name,
                    self._sev,
                    "E_PATTERN",
                    (offset, offset + len(cand)),
                    f"malformed {spec.name}: {cand[:80]!r}",
                )
            ]
        return []


_SEGMENTS = re.compile(r"[^\n]*\n|[^\n]+")
_RUNS = re.compile(r"\S+|\s+")


def _bad_dotted_host(url: str) -> bool:
    m = _DOTTED.match(url)
    return m is not None and any(int(o) > 255 for o in m.group(1).split("."))


def _valid_international(kind: str, cand: str) -> bool:
    """Internationalised forms the ASCII patterns do not know: an e-mail address with a
    Unicode local part or domain (``email-validator``), a URL with an IDN host (``idna``)."""
    if cand.isascii():
        return False
    if kind == "email":
        from email_validator import EmailNotValidError, validate_email

        try:
            validate_email(cand, check_deliverability=False)
        except EmailNotValidError:
            return False
        return True
    if kind == "url":
        import idna

        m = re.match(r"([a-z][a-z0-9+.-]*://)([^/?#:@\s]+)(.*)", cand, re.I)
        if not m:
            return False
        try:
            host = idna.encode(m.group(2), uts46=True).decode()
        except (idna.IDNAError, UnicodeError):
            return False
        rest = m.group(3)
        return bool(
            DEFAULT_PATTERNS["url"].strict
            and re.fullmatch(_URL_STRICT, m.group(1) + host + _ascii_path(rest))
        )
    return False


def _ascii_path(rest: str) -> str:
    """A URL's path/query with non-ASCII characters (valid in an IRI) percent-encoded."""
    return "".join(c if c.isascii() else "%" + c.encode().hex().upper() for c in rest)
