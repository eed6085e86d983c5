"""Critical output: destructive shell commands, credentials, and leaks of the system prompt.

Size (over 500 lines): the command and secret checks share one incremental line scanner
(``_LineScanner``/``_LineCheck``) and its report-once-per-span rule; ``PromptLeakCheck`` shares
only the normalisation and is the one that could move to a module of its own.

Commands and secrets are matched per line. The current partial line is rescanned as it grows
(so a key is caught before its line ends), but a match only counts once something that cannot
extend it follows, so spans never depend on how the stream was split. Each finding is
reported once (keyed by its span).
"""

from __future__ import annotations

import bisect
import dataclasses
import posixpath
import re
import shlex
from collections.abc import Callable, Iterator

from rapidfuzz import fuzz

from sentinel import secrets
from sentinel.checks.patterns import severity_for
from sentinel.verdict import Severity, Verdict

_END = r"(?=[\s;&|)`'\"]|$)"  # the command word ends here (lines are scanned with their "\n")
_RM_FLAGS = r"(?:-[a-zA-Z]*[rR][a-zA-Z]*\s+(?:-[a-zA-Z]+\s+|--\S+\s+)*|--recursive\s+(?:-\S+\s+)*)"
_DISK = r"/dev/(?:sd[a-z]|hd[a-z]|vd[a-z]|xvd[a-z]|nvme\d+n\d+|mmcblk\d+|disk\d+)"

UNSAFE_COMMANDS: dict[str, str] = {
    "mkfs on a device": (
        r"\b(?:mkfs(?:\.\w+)?|mke2fs|mkswap)\s+(?:[^\s;&|]+\s+){0,12}?/dev/(?!null\b|zero\b)\w+"
    ),
    "dd onto a disk": rf"\bdd\s+(?:\S+\s+){{0,8}}of={_DISK}",
    "write to a raw disk": rf"(?<![<\w])>{{1,2}}\s*{_DISK}",
    "shred/wipefs a disk": (
        rf"\bshred\s+(?:-\S+\s+(?:\d+\s+)?)*{_DISK}"  # shred -n 3 -z /dev/sda
        # wipefs only erases with -a/--all or -o (alone it lists; -n/--no-act is a dry run)
        r"|\bwipefs(?=[^\n;&|]*\s(?:-\w*[ao]\w*|--all|--offset)\b)"
        r"(?![^\n;&|]*\s(?:-\w*n\w*|--no-act)\b)"
        rf"\s+(?:[^\s;&|]+\s+){{0,8}}?{_DISK}"
    ),
    "discard or zap a disk": (
        r"\bblkdiscard\s+(?:[^\s;&|]+\s+){0,6}?/dev/\w+"
        r"|\bsgdisk(?=[^\n;&|]*/dev/\w)[^\n;&|]*?\s(?:-[Zzom]|--(?:zap-all|zap|clear|gpttombr))\b"
        r"|\bparted\s(?=[^\n;&|]*/dev/\w)[^\n;&|]*?\b(?:mklabel|mkpart|rm|resizepart)\b"
        r"|\bbadblocks(?=[^\n;&|]*\s-\w*w)\s+(?:[^\s;&|]+\s+){0,8}?/dev/\w+"
        r"|\bddrescue\s+(?:-\S+\s+)*[^-\s]\S*\s+/dev/\w+"
        r"|\be2image\s+(?:-\S+\s+)*-I\s+/dev/\w+"
    ),
    "pipe a download into a shell": (
        r"\b(?:curl|wget)\b[^\n|]{0,300}\|\s*(?:sudo\s+(?:-\S+\s+)*)?(?:ba|z|k|da|c|tc)?sh\b"
        # the same without a pipe: bash <(curl …), bash -c "$(curl …)" (Homebrew's installer)
        r"|\b(?:ba|z|k|da)?sh\s+(?:-\w+\s+)*(?:<\(|[\"']?\$\()\s*(?:curl|wget)\b"
    ),
    "fork bomb": r":\s*\(\s*\)\s*\{\s*:\s*\|\s*:\s*&\s*\}\s*;\s*:",
    "chmod/chown -R of / or a system directory": (
        rf"\b(?:chmod|chown)\s+(?:-\S+\s+)*-[a-zA-Z]*R[a-zA-Z]*\s+(?:-\S+\s+)*\S+\s+"
        rf"/(?:(?:bin|boot|dev|etc|lib|lib64|opt|root|sbin|srv|sys|usr|var)/?)?\*?{_END}"
    ),
    "move / or home away": (
        r"\bmv\s+(?:-\S+\s+)*(?:/\*?|~/?\*?|[\"']?\$\{?HOME\}?[\"']?/?\*?)\s+[^\s;&|]+"
    ),
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
    r"(?i)\b(?:rm|rd|rmdir|del|mkfs|mke2fs|mkswap|dd|shred|wipefs|blkdiscard|sgdisk|parted"
    r"|badblocks|ddrescue|e2image|curl|wget|chmod|chown|mv|find|kill|format|remove-item)\b|>|:\s*\("
)


def _command_triggers(text: str, pos: int) -> list[tuple[int, int]]:
    return [(m.start(), 0) for m in _COMMAND_TRIGGER.finditer(text, pos)]


# ``rm`` is read with a real shell lexer (shlex): quotes, separate flags (-r -f, --recursive),
# $HOME/${HOME}/~ and paths that climb with ".." (/var/log/../.. is /) are resolved before
# the operands are judged.
_RM = re.compile(r"\brm\s+(?P<args>[^\n;&|`]{1,300})")
_SYSTEM_DIRS = frozenset(
    "/ /bin /boot /dev /etc /home /lib /lib32 /lib64 /opt /proc /root /sbin /srv /sys /usr "
    "/var ~".split()
)


def _rm_danger(args: str, cwd: str = "") -> tuple[str, bool] | None:
    """The operand of ``rm ARGS`` that deletes / , a system directory or the home directory
    recursively, and whether it provably does: ``(operand, True)``; ``(operand, False)`` for a
    relative path that only climbs (``..``, ``../../..``, ``../*``: a directory above the
    working one, which reaches / only from a shallow enough one, unknown here); None if none,
    or if it is not recursive. ``cwd``: the absolute directory a ``cd`` before the command on
    its line moved to (relative operands are resolved against it)."""
    try:
        words = shlex.split(args, comments=True)
    except ValueError:  # an unclosed quote: the command sits inside a string (os.system('…'),
        # {"command": "rm -rf /"}): it ends where that string does
        words = [w.strip("'\"") for w in re.split(r"['\"]", args)[0].split()]
    recursive = False
    operands: list[str] = []
    for w in words:
        while w:  # the end of a subshell, call or string around the command: os.system('…')
            if w.endswith(")") and w.count("(") < w.count(")"):
                w = w[:-1]
            elif w[-1] in "'\"" and w.count(w[-1]) % 2:
                w = w[:-1]
            else:
                break
        if w == "--":
            continue
        if w.startswith("--"):
            recursive |= w == "--recursive"
        elif w.startswith("-") and len(w) > 1:
            recursive |= "r" in w or "R" in w
        else:
            operands.append(w)
    if not recursive:
        return None
    climb = None
    for op in operands:
        for path in _expansions(op):
            if cwd and not path.startswith("/"):
                path = posixpath.join(cwd, path)
            if _dangerous_path(path):
                return op, True
            if climb is None and _only_climbs(path):
                climb = op
    return (climb, False) if climb is not None else None


def _only_climbs(path: str) -> bool:
    """A relative path made of ``..`` only (``../..``, ``../../../``, ``../*``)."""
    head, _, last = path.rpartition("/")
    if "*" in last or "?" in last:
        path = head
    parts = posixpath.normpath(path).split("/") if path else []
    return bool(parts) and all(p == ".." for p in parts)


# ``cd /srv/app && rm -rf ../..``: the directory the command runs in, when its line says it
_CD = re.compile(r"\bcd\s+([^\s;&|()]+)\s*(?:&&|;)\s*(?:sudo\s+(?:-\S+\s+)*)?$")


def _known_cwd(before: str) -> str:
    """The absolute directory ``before`` (the line up to an ``rm``) ends by moving to."""
    m = _CD.search(before[-200:])
    if m is None:
        return ""
    paths = _expansions(m.group(1).strip("'\""))
    return paths[0] if len(paths) == 1 and paths[0].startswith("/") else ""


_BRACE = re.compile(r"\{([^{}]*,[^{}]*)\}")
_UNGUARDED = re.compile(r"\$\{\w+:-([^}]*)\}|\$\{\w+\}|\$\w+|\$\([^)]*\)|`[^`]*`")
# ``$(BUILD_DIR)``: a make variable (or a template slot), set where it is used; in shell it
# would run a command of that name, whose output is not empty either.
_MAKE_VAR = re.compile(r"\$\([A-Z_][A-Z0-9_]*\)")  # upper case: $(whoami) is a command


def _expansions(op: str) -> list[str]:
    """The paths ``op`` may become: braces expanded, and each variable or command
    substitution that is not guarded (``${X:?}``) empty, or its ``:-`` default (what shell
    does when it is unset; ShellCheck's SC2115 case)."""
    op = _MAKE_VAR.sub("set", op)
    op = re.sub(r"^\$\{?HOME\}?(?=/|$)", "~", op)
    op = re.sub(r"^~(?=/|$)", "/home/~", op)
    paths = [op]
    for _ in range(4):
        nxt = []
        for p in paths:
            m = _BRACE.search(p)
            if m is None:
                nxt.append(p)
                continue
            nxt.extend(p[: m.start()] + alt + p[m.end() :] for alt in m.group(1).split(","))
        paths = nxt[:32]
    return [_UNGUARDED.sub(lambda m: m.group(1) or "", p) for p in paths]


def _dangerous_path(path: str) -> bool:
    head, _, last = path.rpartition("/")
    glob = "*" in last or "?" in last
    base = (head or "/") if glob and "/" in path else path
    if not base.startswith("/"):
        return False
    norm = posixpath.normpath(base)
    if norm.startswith("//"):
        norm = "/" + norm.lstrip("/")
    if norm == "/home/~":
        return True
    return norm in _SYSTEM_DIRS


_RM_ROOT = "rm -r of /, a system directory or ~"
_RM_CLIMB = "rm -r of a directory above the working one"

# A sentence that warns against what it names: the command in it is not an instruction.
_WARNING = re.compile(
    r"(?i)\b(?:never|don'?t|do\s+not|must\s+not|should\s+not|shouldn'?t|avoid|not\s+to"
    r"|dangerous|destructive|careful|caution|warning|beware|wipes?|destroys?|erases?"
    r"|deletes?\s+every|irreversibl\w*|catastroph\w*|malicious|trick\w*|harm\w*|accident\w*"
    r"|prank\w*|freezes?|crash\w*|fails?|refuses?|prevents?|protects?|blocks?|guards?|safeguards?)\b"
    r"|[\u274c\u26a0\U0001f6ab\u2620]"  # ❌ ⚠ 🚫 ☠: a do/don't list or a danger table
)
# What reads as telling the reader to run it: a run verb or "with"/":" just before the command,
# or the sentence starting with it (an imperative). A question or a mention is not.
_INSTRUCTION = re.compile(
    r"(?i)(?:\b(?:run|type|execute|enter|paste|use|try|issue|invoke|with|just|simply|then|now"
    r"|first|next|finally|do)\b|:)\W*$"
)
_PREFIX = re.compile(r"(?:\b(?:sudo|doas|env|nohup|time|\w+=\S*)\s*)+$")
_SHELL_LINE = re.compile(r"^\s*(?:[$#>]\s|sudo\s|[\w./-]+@[\w.-]+[:~$#]|\S+\s*\$\s)")
_SENTENCE_END = re.compile(r"[.!?](?:\s|$)")
# How far after a command in prose a warning may still come ("… will freeze it, so do not")
_AFTER = 160
# the command sits in a JSON string value: "key": "… before it, no quote in between
_IN_JSON_STRING = re.compile(r'"\s*:\s*"[^"\n]*$')


class UnsafeCommandCheck(_LineCheck):
    """E_UNSAFE_COMMAND (critical) for well-known destructive shell commands.

    Not flagged on purpose: ``shutdown``/``reboot`` (routine admin advice), ``rm -rf`` of a
    concrete sub-directory (``rm -rf /tmp/build``, ``rm -rf ./build``), ``git push --force``.

    Severity by context: a command in a fenced code block or on a shell-looking line (a ``$``
    prompt, ``sudo …``, or the command alone on its line) is critical at once. In prose
    (backticks included) it is critical only when the sentence tells the reader to run it ("run
    `rm -rf /`", "clean up with `…`") and nothing on the line warns against it; a warning (before
    or after it, "never", "❌", "… so do not try it"), a question or a mere mention is minor. A
    prose verdict is therefore decided when its line ends (or ``_AFTER`` characters later).
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
        self._in_code = False  # inside a fenced code block (state of the current line)
        self._head = ""  # the first characters of the current line
        # prose commands waiting for the rest of their line: (verdict, instructed, text after)
        # (a command in a JSON string value is decided at that string's closing quote)
        self._pending: list[tuple[Verdict, bool, str, bool]] = []

    def feed(self, piece: str) -> list[Verdict]:
        out: list[Verdict] = []
        pos = 0
        while (nl := piece.find("\n", pos)) >= 0:  # fence state, line by line
            self._head_add(piece[pos:nl])
            out.extend(self._grow_pending(piece[pos:nl], True))
            out.extend(super().feed(piece[pos : nl + 1]))
            if self._head.lstrip().startswith(("```", "~~~")):
                self._in_code = not self._in_code
            self._head = ""
            pos = nl + 1
        if pos < len(piece):
            self._head_add(piece[pos:])
            out.extend(self._grow_pending(piece[pos:], False))
            out.extend(super().feed(piece[pos:]))
        return out

    def finish(self) -> list[Verdict]:
        out = self._grow_pending("", True)
        out.extend(super().finish())
        return out + self._grow_pending("", True)

    def _grow_pending(self, text: str, line_ended: bool) -> list[Verdict]:
        """Add what followed each waiting prose command; decide those whose line ended."""
        out: list[Verdict] = []
        keep: list[tuple[Verdict, bool, str, bool]] = []
        for verdict, instructed, after, in_json in self._pending:
            after = (after + text)[:_AFTER]
            closes = after.find('"') if in_json else -1
            if closes >= 0:
                out.append(self._decide(verdict, instructed, after[:closes]))
            elif line_ended or len(after) >= _AFTER:
                out.append(self._decide(verdict, instructed, after))
            else:
                keep.append((verdict, instructed, after, in_json))
        self._pending = keep
        return out

    def _decide(self, verdict: Verdict, instructed: bool, after: str) -> Verdict:
        if instructed and not _WARNING.search(after) and not after.lstrip().startswith("?"):
            question = after.split(". ")[0].rstrip().endswith("?")
            if not question:
                return verdict
        return dataclasses.replace(verdict, severity="minor", detail=verdict.detail + " (in prose)")

    def _head_add(self, text: str) -> None:
        if len(self._head) < 16:
            self._head += text[:16]

    def _check(self, text: str, start: int, complete: bool) -> list[Verdict]:
        out: list[Verdict] = []
        body = text.rstrip("\n")
        found: list[tuple[int, int, str]] = []
        for name, pat in self._pats:
            for m in pat.finditer(text if complete else body, self._min_start):
                found.append((m.start(), m.end(), name))
        for m in _RM.finditer(text if complete else body, self._min_start):
            danger = _rm_danger(
                m.group("args"), _known_cwd(body[max(0, m.start() - 200) : m.start()])
            )
            if danger is not None:
                op, provable = danger
                args = m.group("args")
                # the operand as a whole word (``../`` is also the start of ``../dist``)
                w = re.search(rf"(?<![^\s'\"]){re.escape(op)}(?![^\s'\")])", args)
                i = w.start() if w else args.find(op)
                end = m.end("args")
                if i >= 0:  # up to the dangerous operand (and its closing quote)
                    end = m.start("args") + i + len(op)
                    quoted = i > 0 and args[i - 1] in "\"'"  # rm -rf "/" (not a JSON string's end)
                    end += 1 if quoted and end < len(body) and body[end] == args[i - 1] else 0
                found.append(
                    (m.start(), end, _RM_ROOT if provable else _RM_CLIMB),
                )
        for s0, e0, name in sorted(found):
            end = min(e0, len(body))
            while end > s0 and body[end - 1] in " \t`":  # a closing backtick is not in it
                end -= 1
            if not complete and e0 >= len(body):
                continue  # could still grow; decide when something follows
            span = (start + s0, start + end)
            if _overlaps(span, self._seen):
                continue
            self._seen.append(span)
            what = body[s0:end]
            verdict = Verdict(self.name, self._sev, "E_UNSAFE_COMMAND", span, f"{name}: {what!r}")
            if name == _RM_CLIMB:  # where it lands depends on a directory nobody named: minor
                out.append(dataclasses.replace(verdict, severity="minor"))
                continue
            context = self._prose_context(body, s0)
            if context is None:  # code: critical at once
                out.append(verdict)
                continue
            warned, instructed = context
            in_json = _IN_JSON_STRING.search(body, 0, s0) is not None
            closes = body.find('"', end) if in_json else -1
            if warned:
                out.append(self._decide(verdict, False, ""))
            elif closes >= 0:
                # a JSON string's value is its own statement: what follows its closing quote
                # (another field) does not warn about it ({"step": "run rm -rf / now", …})
                out.append(self._decide(verdict, instructed, body[end:closes]))
            elif complete or len(body) - end >= _AFTER:
                out.append(self._decide(verdict, instructed, body[end:]))
            else:
                self._pending.append((verdict, instructed, body[end:], in_json))
        return out

    def _prose_context(self, line: str, s: int) -> tuple[bool, bool] | None:
        """None when the command is code (a fence, a shell-looking line, the command alone at
        the start of its line); else (a warning comes before it in its sentence or line item,
        the sentence reads as telling the reader to run it)."""
        if self._in_code:
            return None
        before = line[:s]
        fresh = not self._min_start
        if (fresh and not before.strip()) or _SHELL_LINE.match(line if fresh else self._head):
            return None
        # the sentence around the command: from the last sentence end before it
        cut = 0
        for m in _SENTENCE_END.finditer(before):
            cut = m.end()
        sentence = before[cut:]
        lead = _PREFIX.sub("", sentence.rstrip("`'\" ")).rstrip("`'\" ")  # "run `sudo " -> "run"
        instructed = bool(_INSTRUCTION.search(lead)) or not lead
        return bool(_WARNING.search(before)), instructed


# A secret this long is reported by its first characters (a window may not hold it whole).
_LONG_SECRET = 256
# A match that runs to the end of what has streamed (or of a window) may still grow, or stop
# matching: a shape with a longest length (Bedrock's 109-269 characters) that the text runs
# past is no key. It is reported before its end only once it is this long (a window still
# holds its start then; few bounded shapes are this long).
_EARLY = 300


class SecretCheck(_LineCheck):
    """E_SECRET (critical): what ``sentinel.secrets`` calls a secret (the detector the
    redactor shares), found in bounded windows near a trigger, and private-key headers that
    start a block (at once) or that a key body follows.

    Keyword assignments (``password = "…"``, ``api_key=…``, passphrases, ``PGPASSWORD=… psql``)
    are judged in the line windows ``find_secrets`` reads (``secrets.line_windows``: the whole
    line, or on a long line a window of ``LINE_WINDOW`` characters every ``LINE_STEP``), each
    once it is whole: when its line ends, or once the line runs past it. So one is found
    wherever it sits on a line of any length (the scanner's windows, which follow the stream,
    hold only the last few hundred characters when a line ends), the stream and the store
    agree on it, and the cost per piece stays bounded (one window of the keyword rules per
    ``LINE_STEP`` characters, only where a keyword is next to an assignment)."""

    name = "secrets"

    def __init__(self, severity: dict[str, str] | None = None) -> None:
        self._sev = severity_for("E_SECRET", severity)
        secrets.warm_up()  # import and compile the detectors now, not on the first token
        self._scan = _LineScanner(secrets.secret_triggers)
        self._seen: list[tuple[int, int]] = []
        self._pem_start: int | None = None  # a header inside a sentence: is a body next?
        self._kw_text = ""  # the current line from the start of its next line window
        self._kw_start = 0  # where that window starts in the stream

    def feed(self, piece: str) -> list[Verdict]:
        out = super().feed(piece)  # shapes first: a shape wins over a keyword overlapping it
        start = 0
        while (nl := piece.find("\n", start)) >= 0:
            out.extend(self._keyword_windows(piece[start:nl], True))
            start = nl + 1
        if start < len(piece):
            out.extend(self._keyword_windows(piece[start:], False))
        return out

    def finish(self) -> list[Verdict]:
        out = super().finish()
        if self._kw_text:
            out.extend(self._keyword_windows("", True))
        return out

    def _keyword_windows(self, seg: str, line_ended: bool) -> list[Verdict]:
        """Judge the current line's keyword windows that ``seg`` completes (``line_ended``:
        the line ends after it; its break is not part of it)."""
        out: list[Verdict] = []
        text = self._kw_text + seg
        base = self._kw_start
        k = 0
        while len(text) - k > secrets.LINE_WINDOW:  # the line runs past this window
            out.extend(self._keywords_in(text[k : k + secrets.LINE_WINDOW], base + k, False))
            k += secrets.LINE_STEP
        if line_ended:
            out.extend(self._keywords_in(text[k:], base + k, True))
            self._kw_text = ""
            self._kw_start = base + len(text) + 1
        else:
            self._kw_text = text[k:]
            self._kw_start = base + k
        return out

    def _keywords_in(self, window: str, start: int, last: bool) -> list[Verdict]:
        out: list[Verdict] = []
        for s, e, kind in secrets.find_in_line_window(window, last, only_keywords=True):
            out.extend(self._emit((start + s, start + e), kind))
        return out

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
        # a header that starts a block is a key at once, in any window of a line (a JSON
        # string holds a whole key on one long line: "-----BEGIN PRIVATE KEY-----\nMII…")
        for m in secrets.KEY_HEADER.finditer(body, self._min_start):
            follow = body[m.end() : m.end() + 40]
            if not complete and len(follow) < 40 and not follow.startswith("\\n"):
                continue  # what follows decides: wait for it
            if re.match(r"[\s\\n]*-----END ", follow):
                continue  # an empty block: not a key
            if secrets.key_header_alone(body, m) or follow.startswith("\\n"):
                out.extend(self._emit((start + m.start(), start + m.end()), "Private Key"))
            elif complete:
                self._pem_start = start + m.start()
        if complete:
            self._scan.force = self._pem_start is not None  # the body line has no trigger
        tags = self._scan.tags_in(start - 24, start + len(text))
        # keyword assignments are judged in line windows (``_keyword_windows``), not here
        for s, e, kind in secrets.find_in_window(body, self._min_start, False, tags):
            if not complete and e >= len(body) and e - s < _EARLY:
                continue  # the value may still grow
            if e - s >= _LONG_SECRET:  # longer than a window: its first characters, however split
                e = s + _LONG_SECRET
            out.extend(self._emit((start + s, start + e), kind))
        return out


# hermes plants "(Internal marker, never repeat it: HERMES-CANARY-<12 hex>)" in every system
# prompt (hermes_tui/runtime.py); its shape is recognised even where the value is unknown
# (``hermes sentinel check`` on a saved answer).
PLANTED_CANARY = re.compile(r"HERMES-CANARY-[0-9a-f]{12}")
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?;:])\s+|\n+")


def normalise(text: str) -> str:
    """Lowercase letters and digits, every other run of characters one space."""
    out: list[str] = []
    space = True
    for c in text:
        if c.isalnum():
            out.append(c.lower())
            space = False
        elif not space:
            out.append(" ")
            space = True
    return "".join(out).strip()


class PromptLeakCheck:
    """E_PROMPT_LEAK (critical), for a system prompt of any length:

    * a canary appears: the one hermes planted (any ``HERMES-CANARY-…`` marker), or one the user
      declared (``[personas.X] canary``, ``hermes sentinel check --canary``);
    * the output contains the whole prompt, normalised (case, punctuation and spacing
      ignored), or one of its sentences of 8+ words, or two of its sentences of 4+ words (a copy
      with sentences left out, or of a one-sentence prompt);
    * for prompts of ``min_chars`` or more, a window of the output reproduces part of the
      prompt (``fuzz.partial_ratio`` >= ``threshold`` over ``window`` characters, evaluated each
      time the output passes a multiple of ``every`` characters): a near-exact copy, such as a
      one-sentence prompt with one word changed ("review the prior answer"), is a leak too.
      Under ``sure_chars`` (60) such a near copy is minor: a short prompt is also what an
      answer may begin with in its own words ("You are the critic. Review the previous answer:
      it is fine."), and only an exact copy of it is sure enough to halt.

    Canaries match whatever their case ("zebra-7731-quill" for ``ZEBRA-7731-QUILL``).

    Incremental: the output is normalised as it arrives and only the last few hundred
    normalised characters are searched per piece.
    """

    name = "prompt_leak"

    def __init__(
        self,
        system_prompt: str = "",
        canary: str | None = None,
        *,
        canaries: tuple[str, ...] | list[str] = (),
        threshold: float = 90.0,
        min_chars: int = 24,
        sure_chars: int = 60,
        window: int = 60,
        every: int = 16,
        long_sentence_words: int = 8,
        short_sentence_words: int = 4,
        severity: dict[str, str] | None = None,
    ) -> None:
        self.prompt = " ".join(system_prompt.lower().split())
        marks = [c.lower() for c in (canary, *canaries) if c]
        self.canaries = tuple(dict.fromkeys(marks))
        self.canary = canary.lower() if canary else None
        self.threshold = threshold
        self.window = max(window, min_chars)
        self.every = every
        self.fuzzy = len(self.prompt) >= min_chars
        self._sev = severity_for("E_PROMPT_LEAK", severity)
        self._fuzzy_sev: Severity = self._sev if len(self.prompt) >= sure_chars else "minor"
        self._tail = ""  # last few characters (canary straddling pieces)
        self._pos = 0
        self._next_eval = self.window
        self._canary_seen: set[str] = set()
        self._fuzzy_seen = False
        # sentence targets: (normalised text, words); the whole prompt is one too
        whole = normalise(system_prompt)
        targets: dict[str, int] = {}
        if whole and len(whole) <= 4000:
            targets[whole] = 10**6  # the whole prompt always counts
        for sent in _SENTENCE_SPLIT.split(system_prompt):
            norm = normalise(sent)
            words = norm.count(" ") + 1 if norm else 0
            if words >= short_sentence_words and len(norm) <= 1000:
                targets.setdefault(norm, words)
        self._targets = [(f" {t} ", w) for t, w in targets.items()]
        self._long = long_sentence_words
        self._found: dict[str, int] = {}  # target -> original start offset
        self._nbuf = " "  # normalised output (its tail), with a leading space
        self._nmap = [0]  # original offset of each normalised character
        self._nkeep = max((len(t) for t, _ in self._targets), default=0) + 2
        self._copy_seen = False
        # a minor near copy waits until the exact copy could no longer complete (then the
        # critical one is reported instead): (verdict, the offset it waits until)
        self._near: tuple[Verdict, int] | None = None

    def feed(self, piece: str) -> list[Verdict]:
        out: list[Verdict] = []
        keep = max([self.window, 24, *(len(c) for c in self.canaries)]) + 1
        text = self._tail + piece
        base = self._pos - len(self._tail)
        out.extend(self._canaries(text, base))
        self._pos += len(piece)
        found: list[tuple[int, Verdict]] = []
        if self._targets and not self._copy_seen:
            found = self._sentences(piece, base + len(self._tail))
        # whichever sees the copy at the earlier offset reports it (so the verdict does not
        # depend on where the pieces were cut)
        out.extend(self._fuzzy_windows(text, base, found[0][0] if found else None))
        if found and not self._copy_seen:
            self._copy_seen = True
            self._near = None
            out.append(found[0][1])
        if self._near is not None and self._pos >= self._near[1]:
            out.append(self._near[0])
            self._near = None
        self._tail = text[-keep:]
        return out

    def _canaries(self, text: str, base: int) -> list[Verdict]:
        out: list[Verdict] = []
        low = text.lower() if self.canaries else text
        if len(low) != len(text):  # lower() changed a length (rare: İ): keep offsets exact
            low = "".join(ch.lower()[:1] or ch for ch in text)
        for c in self.canaries:
            if c in self._canary_seen:
                continue
            i = low.find(c)
            if i >= 0:
                self._canary_seen.add(c)
                out.append(self._verdict((base + i, base + i + len(c)), "canary seen"))
        if "\x00planted" not in self._canary_seen:
            m = PLANTED_CANARY.search(text)
            if m and m.group() not in self._canary_seen:
                self._canary_seen.add("\x00planted")
                span = (base + m.start(), base + m.end())
                out.append(self._verdict(span, "hermes's planted canary seen"))
        return out

    def _verdict(self, span: tuple[int, int], detail: str) -> Verdict:
        return Verdict(self.name, self._sev, "E_PROMPT_LEAK", span, detail)

    def _sentences(self, piece: str, start: int) -> list[tuple[int, Verdict]]:
        old = len(self._nbuf)
        buf, nmap = [self._nbuf], self._nmap
        space = self._nbuf.endswith(" ")
        for k, c in enumerate(piece):
            if c.isalnum():
                buf.append(c.lower())
                nmap.append(start + k)
                space = False
            elif not space:
                buf.append(" ")
                nmap.append(start + k)
                space = True
        self._nbuf = "".join(buf)
        return self._match(old)

    def _match(self, old: int) -> list[tuple[int, Verdict]]:
        """The first copy completed in the normalised text after ``old``: (the offset after
        the character that completed it, its verdict)."""
        out: list[tuple[int, Verdict]] = []
        nbuf = self._nbuf
        for t, words in self._targets:
            if t in self._found:
                continue
            i = nbuf.find(t, max(0, old - len(t)))
            if i < 0:
                continue
            self._found[t] = self._nmap[i + 1]
            end = self._nmap[i + len(t) - 1]
            if words >= self._long or len(self._found) >= 2:
                first = min(self._found.values())
                what = "the system prompt" if words == 10**6 else "sentences of the system prompt"
                trigger = self._nmap[i + len(t) - 1] + 1
                out.append((trigger, self._verdict((first, end), f"output repeats {what}")))
                break
        if len(self._nbuf) > 2 * self._nkeep + 256:
            cut = len(self._nbuf) - self._nkeep
            self._nbuf = self._nbuf[cut:]
            del self._nmap[:cut]
        return out

    def _fuzzy_windows(self, text: str, base: int, until: int | None = None) -> list[Verdict]:
        out: list[Verdict] = []
        while self.fuzzy and not self._fuzzy_seen and self._next_eval <= self._pos:
            if self._copy_seen or (until is not None and self._next_eval > until):
                break
            end = self._next_eval - base
            window = text[max(0, end - self.window) : end]
            self._next_eval += self.every
            norm = " ".join(window.lower().split())
            if len(norm) < self.window // 2:
                continue
            score = fuzz.partial_ratio(norm, self.prompt)
            if score >= self.threshold:
                self._fuzzy_seen = True
                self._copy_seen = True
                span = (base + max(0, end - self.window), base + end)
                detail = f"output reproduces the system prompt ({score:.0f}% similar)"
                verdict = Verdict(self.name, self._fuzzy_sev, "E_PROMPT_LEAK", span, detail)
                if self._fuzzy_sev == self._sev:
                    out.append(verdict)
                else:  # minor: unless the exact copy completes within the prompt's length
                    self._copy_seen = False
                    self._near = (verdict, self._pos + len(self.prompt))
                    break
        return out

    def finish(self) -> list[Verdict]:
        out: list[Verdict] = []
        if self.fuzzy and not self._copy_seen and self._pos % self.every:
            self._next_eval = self._pos  # one last look at the final window
            out.extend(self._fuzzy_windows(self._tail, self._pos - len(self._tail)))
        if self._targets and not self._copy_seen:
            old = len(self._nbuf)
            if not self._nbuf.endswith(" "):
                self._nbuf += " "
                self._nmap.append(self._pos)
            found = self._match(old - 1)
            if found:
                self._copy_seen = True
                self._near = None
                out.append(found[0][1])
        if self._near is not None:
            out.append(self._near[0])
            self._near = None
        return out
