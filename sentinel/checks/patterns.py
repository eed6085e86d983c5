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
from urllib.parse import unquote

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
_OCTET = (
    r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"  # ASCII digits: 1২7.0.0.1 is not an address
)
# the URL Standard allows "_" in a host (http://local_ip); DNS names do not, e-mail domains not
_URL_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?"
_URL_STRICT = (
    r"(?:[a-z][a-z0-9+.-]*://"
    r"(?:[^\s/@:]+(?::[^\s/@]*)?@)?"  # user:password@
    rf"(?:{_URL_LABEL}(?:\.{_URL_LABEL})*\.?|\d{{1,3}}(?:\.\d{{1,3}}){{3}}|\[[0-9A-Fa-f:.]+\])"
    r"(?::\d{1,5})?"
    r"(?:[/?#][^\s<>\"]*)?"
    r"|file:/[^\s<>\"]*"
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
        # a local part, '@', then a domain that starts with a letter (or with what makes it
        # malformed: a dot, a hyphen, a bracket, a quote); lodash@4.17 is a package version
        trigger=r"[^\s@]*[^\s@]@(?:[^\W\d_]|[@.\-\[(<\"])[^\s]*",
        strict=_EMAIL_STRICT,
        anchors=("@",),
        reach=64,
    ),
    "path": PatternSpec(trigger=r"^(?:~|\.{1,2})?/[\w.-]+[/\\]|^[A-Za-z]:\\", strict=_PATH_STRICT),
    # a dotted quad: each octet 0-255 (10.256.0.1 is not an address)
    "ipv4": PatternSpec(
        trigger=r"^\d{1,3}(?:\.\d{1,3}){3}(?!\d|\.\d)",  # "… is 300.168.1.1." ends a sentence
        # with a port, a CIDR prefix (10.0.0.0/16), a range (192.0.2.1-254, 10.0.0.100-10.0.0.200)
        # or as the first of a list (1.1.1.1,8.8.8.8)
        strict=(
            rf"{_OCTET}(?:\.{_OCTET}){{3}}"
            rf"(?::\d{{1,5}}|/(?:3[0-2]|[12]?\d)|-{_OCTET}(?:(?:\.{_OCTET}){{3}})?)?(?:,\S*)?"
        ),
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
    r"\{\{[^{}]*\}\}|\$\{[^{}\s]*\}|\$\([^()\s]*\)|<[^<>\s]+>|\{[^{}\s]*\}|\$\w+|%(?![0-9A-Fa-f]{2}%)[A-Za-z_]\w*%"
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


# a word and a single slash that is not a web or file scheme's (htp:/x in prose is a broken
# URL; in code it is a volume mount, a path list or a pattern)
_NOT_A_SCHEME = re.compile(
    r"(?![hH][tT][tT][pP][sS]?:|[fF][iI][lL][eE]:|[fF][tT][pP][sS]?:)[^:]+:/(?!/)"
)
# A scheme or "www." on its own names the kind of address ("prefix it with https://",
# url = "https://" + rest, "sites start with www."), it is not a malformed one.
_BARE_SCHEME = re.compile(r"[A-Za-z][\w+.-]*:/*|www\.?", re.IGNORECASE)
_URL_END = re.compile(r"[\"`<>()]|,(?=[a-z][\w+.-]*://)")


def _url_in_prose(raw: str) -> str:
    """Where a URL written in text ends: at a quote, a backtick, ``<`` or ``>`` (HTML around it)
    unless they make a template slot (``https://<HOST>/``), or a ``)`` that closes a
    parenthesis opened before the URL (``[docs](www.x.org)'s``)."""
    depth = 0
    pos = 0
    while (m := _URL_END.search(raw, pos)) is not None:
        c = m.group()
        if c == "<" and (slot := re.match(r"<[^<>\s]+>", raw[m.start() :])):
            pos = m.start() + slot.end()
            continue
        if c == "(":
            depth += 1
        elif c == ")":
            if depth == 0:
                return raw[: m.start()] or raw
            depth -= 1
        else:
            return raw[: m.start()] or raw
        pos = m.end()
    return raw


def _strip(candidate: str) -> str:
    candidate = candidate.lstrip(_LEAD)
    while candidate and candidate[-1] in _TRAIL:
        if candidate[-1] == ")" and candidate.count("(") >= candidate.count(")"):
            break
        if candidate[-1] == "]" and candidate.count("[") >= candidate.count("]"):
            break  # an IPv6 host: http://[2001:db8::1]
        if candidate[-1] == ">" and candidate.count("<") >= candidate.count(">"):
            break  # a template slot: https://<HOST>
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
        # import the validators now, not on the first address of a stream (~20 ms)
        import email_validator  # noqa: F401
        import idna  # noqa: F401

        self._lines = LineStream()
        self._pos = 0
        self._tok: list[str] = []
        self._tok_len = 0
        self._tok_start = 0
        self._quote_open = False  # an earlier word on this line opened a "quoted string"

    def feed(self, piece: str) -> list[Verdict]:
        out: list[Verdict] = []
        for seg in _SEGMENTS.findall(piece):
            in_code = self._lines.in_code  # fence state of the line these tokens sit on
            for m in _RUNS.finditer(seg):
                text = m.group()
                if text[0].isspace():
                    out.extend(self._end_token(in_code))
                    if "\n" in text:
                        self._quote_open = False
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

    def finish_cut_off(self) -> list[Verdict]:
        """The answer hit its token limit: its last word ("https://") is unfinished, not
        malformed, so it is not judged."""
        self._tok, self._tok_len = [], 0
        return []

    def _end_token(self, in_code: bool) -> list[Verdict]:
        if not self._tok_len:
            return []
        tok, n = "".join(self._tok), self._tok_len
        self._tok, self._tok_len = [], 0
        if n > MAX_TOKEN:
            return []  # too long to be a usable URL/address/path (see MAX_TOKEN)
        out = self._judge(tok, self._tok_start, in_code)
        if tok.count('"') % 2:
            self._quote_open = not self._quote_open
        return out

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
            if spec.name == "email" and spec.strict.pattern == _EMAIL_STRICT:
                # the whole address, as e-mail validators read it: quotes, comments, brackets
                # and dots around the part the trigger saw belong to it
                whole = _address(token)
                if (
                    self._quote_open
                    and whole is not None
                    and whole.partition("@")[0].count('"') % 2
                ):
                    continue  # "quoted local"@x: the quoted local part a space cut in two
                if whole is not None:
                    if "@" not in whole or _email_ok(whole):  # ("": not an address)
                        continue
                    offset = start + token.find(whole)
                    return [
                        Verdict(
                            self.name,
                            self._sev,
                            "E_PATTERN",
                            (offset, offset + len(whole)),
                            f"malformed email: {whole[:80]!r}",
                        )
                    ]
            if spec.name == "url":
                if (in_code or inline_code) and _NOT_A_SCHEME.match(m.group()):
                    continue  # in code, "$PWD:/mnt" and awk's '/rails:/' are not URLs
                raw = _url_in_prose(raw)
            cand = _strip(raw.strip("`"))
            if not cand:
                continue
            if spec.name == "url" and _BARE_SCHEME.fullmatch(cand):
                continue
            if cand.count("{") > cand.count("}") or cand.count("$(") > cand.count(")"):
                continue  # a template slot that a space cut ({{ host }}): not judged
            offset = start + m.start() + raw.find(cand) if cand in raw else start + m.start()
            check = _PLACEHOLDER.sub("0", cand) if spec.placeholders else cand
            if "\\\\" in check or "\\/" in check:
                # a path or URL inside a JSON string, read unescaped ("C:\\\\Users", "\\/usr")
                check = check.replace("\\\\", "\\").replace("\\/", "/")
            if spec.name == "url" and spec.strict.pattern == _URL_STRICT:
                form = url_host_form(check)
                if form is None and spec.strict.fullmatch(check):
                    continue
                if form and spec.strict.fullmatch(form):
                    continue
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


_AUTHORITY = re.compile(r"([a-z][a-z0-9+.-]*://)([^/?#]*)(.*)", re.I | re.S)
_FORBIDDEN_HOST = re.compile(r"[\x00-\x20#/:<>?@\[\\\]^|%\x7f]")
_ENDS_IN_NUMBER = re.compile(r"\d+|0[xX][0-9a-fA-F]*")
_IPV4_PART = re.compile(r"0[xX](?P<hex>[0-9a-fA-F]*)|0(?P<oct>[0-7]+)|(?P<dec>0|[1-9]\d*)")


def _ipv4_ok(host: str) -> bool:
    """The URL Standard's IPv4 parser: up to four parts, each decimal, octal (0…) or hex
    (0x…); every part but the last at most 255, the last filling what is left."""
    parts = host.split(".")
    if len(parts) > 1 and parts[-1] == "":
        parts.pop()
    if len(parts) > 4:
        return False
    nums: list[int] = []
    for part in parts:
        m = _IPV4_PART.fullmatch(part)
        if m is None:
            return False
        if m.group("hex") is not None:
            nums.append(int(m.group("hex") or "0", 16))
        elif m.group("oct") is not None:
            nums.append(int(m.group("oct"), 8))
        else:
            nums.append(int(m.group("dec")))
    return all(n <= 255 for n in nums[:-1]) and nums[-1] < 256 ** (5 - len(nums))


def _domain_ok(host: str) -> str | None:
    """A URL's host as the URL Standard reads it (percent-decoded, IDNA-mapped; a name whose
    last label is a number is an IPv4 address): the host to judge further (ASCII), ``""``
    when it is valid as it stands (an address), or None when it is malformed."""
    if re.search(r"%(?![0-9A-Fa-f]{2})", host):
        return None
    if "%" in host:
        # (no exceptions on this path: a line of random characters would raise thousands,
        # and their tracebacks are garbage the collector pauses on)
        host = unquote(host, errors="replace")
        if "\ufffd" in host:
            return None  # percent escapes that are not UTF-8
    if not host or _FORBIDDEN_HOST.search(host):
        return None
    labels = host.split(".")
    if len(labels) > 1 and labels[-1] == "":
        labels.pop()  # one trailing dot: a fully qualified name
    if _ENDS_IN_NUMBER.fullmatch(labels[-1].lower()):
        return "" if _ipv4_ok(host) else None
    if host.isascii() and "xn--" not in host.lower():
        return host
    import idna

    try:
        return idna.encode(host, uts46=True).decode()
    except (idna.IDNAError, UnicodeError):
        pass
    if "xn--" in host.lower():
        return None  # a punycode label that does not decode to a valid name
    try:
        ascii_host = host.encode("idna").decode()  # IDNA 2003 (symbols such as U+2603)
    except UnicodeError:
        return None
    return ascii_host if ascii_host.strip(".") else None  # U+00AD alone maps to nothing


def url_host_form(url: str) -> str | None:
    """``url`` with its authority judged as the URL Standard's host parser does and written
    in a plain form (user info ``u@``, an address or internationalised name ``h0st``) for the
    ASCII pattern to judge the rest; ``""`` when the authority is malformed; None when the URL
    has no authority (``file:///``, ``www.``…)."""
    m = _AUTHORITY.match(url)
    if m is None:
        return None
    scheme, auth, rest = m.groups()
    if not auth and scheme.lower()[:-3] not in ("http", "https", "ws", "wss", "ftp"):
        return None  # file:///etc/hosts: a host is optional outside the web's schemes
    if scheme.lower()[:-3] not in ("http", "https", "ws", "wss", "ftp"):
        # another scheme's authority is opaque (s3://bucket_name, docker://image:tag,
        # rsync://host:path): only characters no URL may hold make it malformed
        if re.search(r"[\x00-\x20\"<>\\^`{|}\x7f]", auth):
            return ""
        return scheme + "h0st" + _ascii_path(rest)
    user = "u@" if "@" in auth else ""
    hostport = auth.rpartition("@")[2]
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            return ""
        inner, port = hostport[1:end], hostport[end + 1 :]
        if not _ip_literal_ok(inner):
            return ""
        host = "h0st"
    else:
        host, sep, port = hostport.partition(":")
        port = sep + port
        judged = _domain_ok(host)
        if judged is None:
            return ""
        host = judged or "h0st"
        if not host.isascii():
            return ""
    if port and not port.startswith(":"):
        return ""
    if port[1:] and (not port[1:].isdigit() or int(port[1:]) > 65535):
        return ""
    port = ":1" if port[1:] else ""
    return scheme + user + host + port + _ascii_path(rest)


def _ip_literal_ok(inner: str) -> bool:
    """An IPv6 address (or RFC 3986's IPvFuture, ``v1.fe``) inside a URL's brackets."""
    import ipaddress

    if re.fullmatch(r"[vV][0-9a-fA-F]+\.[\w.~!$&'()*+,;=:-]+", inner):
        return True
    if "%" in inner or not re.fullmatch(r"[0-9A-Fa-f:.]{2,45}", inner):
        return False  # a zone id is not allowed in a URL's host; nor other characters
    try:
        ipaddress.IPv6Address(inner)
    except ValueError:
        return False
    return True


_WRAP = {
    "(": ")",
    "<": ">",
    "[": "]",
    "{": "}",
    '"': '"',
    "'": "'",
    "*": "*",
    "_": "_",
    "`": "`",
}
_NOT_AN_ADDRESS = re.compile(r"\[\?\(|\(@|\$\.|@$")  # JSONPath ($..a[?(@.b)]), no domain


def _address(token: str) -> str | None:
    """The e-mail address a whitespace-separated token holds: without the sentence's
    punctuation after it, a possessive ``'s``, or brackets, quotes or emphasis wrapped around
    it (``(joe@x.org)``, ``<joe@x.org>``, ``**joe@x.org**``); None for a token that has more in
    it than an address (a list ``a@x.org,b@y.org``); ``""`` for what is no address at all
    (a JSONPath filter ``$..a[?(@.b)]``, ``x@@``, ``name@``)."""
    t = re.sub(r"^--?[\w-]+=", "", token)  # a command-line flag: --from=joe@x.org
    for _ in range(4):
        before = t
        t = re.sub(r"(?:['’]s)?[.,;:!?]+$|['’]s$", "", t)
        if len(t) > 1 and t[0] in _WRAP and t[-1] == _WRAP[t[0]]:
            if not (t[0] == '"' and t.index('"', 1) < t.rfind("@")):
                t = t[1:-1]  # (a quoted local part "joe"@x.org keeps its quotes)
        elif t and t[0] in "(<[{" and _WRAP[t[0]] not in t:
            t = t[1:]  # an opening bracket of the sentence
        elif t and t[-1] in ")>]}" and {")": "(", ">": "<", "]": "[", "}": "{"}[t[-1]] not in t:
            t = t[:-1]
        if t == before:
            break
    if _NOT_AN_ADDRESS.search(t):
        return ""
    return None if ("," in t or ";" in t) else t


_PLAIN_ADDRESS = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@"
    r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
    r"\.[A-Za-z]{2,63}"
)
_NEVER_UNQUOTED = re.compile(r"[\s()<>\[\]\\,;:\"]")


def _email_ok(address: str) -> bool:
    """``email-validator``'s verdict on the syntax (quoted local parts and address literals
    allowed, no DNS, single-label domains allowed as isemail does). A plain dot-atom address
    and one with a character no address holds outside quotes are decided without it: its
    errors are exceptions, whose tracebacks are garbage the collector then pauses on (a line
    of random characters cost 20-30 ms pauses)."""
    if _PLAIN_ADDRESS.fullmatch(address):
        return True
    local, _, domain = address.rpartition("@")
    if '"' not in local and _NEVER_UNQUOTED.search(local):
        return False
    if not domain.startswith("[") and re.search(r"[\s()<>\[\]\\,;:\"@!#$%&'*+/=?^`{|}~]", domain):
        return False
    from email_validator import EmailNotValidError, validate_email

    try:
        validate_email(
            address,
            check_deliverability=False,
            allow_quoted_local=True,
            allow_domain_literal=True,
            globally_deliverable=False,
        )
    except EmailNotValidError as e:
        # a special-use name (user@localhost, a@b.test) is well-formed, just not deliverable
        return "special-use or reserved" in str(e)
    return True


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
