"""Every check the sentinel runs, by the name it stores on its verdicts, with the codes it can
raise. The one list the review screen, ``hermes log --check``, the docs and the tests read;
``tests/test_registry.py`` fails when a check's ``name`` or codes drift from it.

(Any check that crashes reports ``E_SENTINEL_DOWN`` under its own name; that is not listed
per check.)
"""

from __future__ import annotations

from dataclasses import dataclass

from sentinel.verdict import CODES, DEFAULT_SEVERITY, Severity


@dataclass(frozen=True, slots=True)
class CheckInfo:
    """One check: the name on its verdicts, the codes it raises, and what it looks for."""

    name: str
    codes: tuple[str, ...]
    summary: str


CHECKS: tuple[CheckInfo, ...] = (
    CheckInfo(
        "json",
        ("E_JSON_BROKEN", "E_JSON_SCHEMA"),
        "the first character at which the text can no longer become valid JSON (contract"
        ' "json", and fenced json blocks elsewhere; a push parser of its own, JSONTestSuite-'
        "conformant); each schema violation of a completed value (jsonschema)",
    ),
    CheckInfo(
        "patterns",
        ("E_PATTERN",),
        "malformed URLs (hosts by the URL Standard's rules: IPv4 numbers, percent-encoded and"
        " IDN names with idna, IPv6 literals with ipaddress, ports), e-mail addresses (the"
        " whole address, with email-validator: Unicode local parts and IDN domains are valid),"
        " file paths and IPv4 addresses (an octet over 255); templates ({host}, ${VAR},"
        " $(VAR)) are not judged, paths and URLs inside JSON strings are read unescaped",
    ),
    CheckInfo(
        "loops",
        ("E_LOOP",),
        "repeated blocks of text (critical from loop_critical_repeats), stutter, near-duplicate"
        " sentences (rapidfuzz); filler inside one token (ops_eyJxxxx…) is not a loop; list"
        " items, table rows, similar code lines and lines that repeat a template"
        " with different arguments (a log reading one file after another) are not loops; the"
        " same line with the same arguments is",
    ),
    CheckInfo(
        "stall",
        ("E_STALL",),
        "no token for stall_warn_s once a stream has started (critical at stall_halt_s)",
    ),
    CheckInfo(
        "drift",
        ("E_DRIFT",),
        "prose from a code-only persona (its questions do not count: asking which version"
        " is not drift), chat before a JSON persona's JSON, an answer far longer than asked",
    ),
    CheckInfo("word_limit", ("E_LENGTH",), "the word that crosses the persona's max_words"),
    CheckInfo(
        "banned_imports",
        ("E_BANNED_IMPORT",),
        "a banned_imports module imported in code (never in prose)",
    ),
    CheckInfo(
        "unsafe_commands",
        ("E_UNSAFE_COMMAND",),
        "rm -r of /, ~, $HOME or a system directory (read with shlex: quotes, split flags,"
        " paths that climb to / with .., also from a cd on the same line; a bare climb such as"
        " rm -rf ../../.. is minor: where it lands depends on the working directory),"
        " mkfs/mke2fs/mkswap on a device, dd of=/dev/...,"
        " wipefs -a, blkdiscard, sgdisk --zap-all, parted mklabel, badblocks -w, mv /* away,"
        " curl ... | sh and bash <(curl ...), fork bombs, chmod -R 777 of / or a system"
        " directory, the same inside a string (os.system('...'), a JSON tool call) and more;"
        " critical in code blocks and shell lines at once; in prose (backticks too) critical"
        " only when the sentence tells the reader to run it, minor when the line warns against"
        ' it (before or after: "never", ❌, "... so do not try it"), asks about it or only'
        " mentions it (decided at the end of its line); $(NAME) in upper case is a make"
        " variable, not an empty path",
    ),
    CheckInfo(
        "secrets",
        ("E_SECRET",),
        "private keys, API keys, tokens and passwords: detect-secrets' plugins and keyword"
        " rules, gitleaks' 213 published rules (as data: keywords, entropy floors,"
        " allowlists), a few secretlint shapes; not templates, placeholders or filler",
    ),
    CheckInfo(
        "prompt_leak",
        ("E_PROMPT_LEAK",),
        "the persona's system prompt at any length (the whole prompt or its sentences,"
        " normalised; near-exact copies by a rapidfuzz window, minor under 60 characters),"
        " hermes's planted canary, or a canary the user declared (personas.NAME.canary,"
        " sentinel check --canary; any case)",
    ),
    CheckInfo(
        "tool_call",
        (
            "E_TOOL_ARGS",
            "E_TOOL_SCHEMA",
            "E_TOOL_UNKNOWN",
            "E_TOOL_LOOP",
            "E_TOOL_REQUIRED",
            "E_UNSAFE_COMMAND",
            "E_SECRET",
        ),
        "a tool call's arguments as they stream: impossible or off-schema, an undeclared tool"
        " (or one tool_choice did not name), the same calls repeated, no call where tool_choice"
        " required one (hermes serve); unsafe commands and secrets inside them",
    ),
    CheckInfo(
        "judge",
        ("E_DRIFT", "E_SENTINEL_DOWN"),
        "the judge model: an off-task answer (minor, never more); E_SENTINEL_DOWN when its"
        " process died or hung",
    ),
)

CHECK_NAMES: tuple[str, ...] = tuple(c.name for c in CHECKS)
_BY_NAME = {c.name: c for c in CHECKS}


def check_info(name: str) -> CheckInfo | None:
    """The registered check called ``name``, or None."""
    return _BY_NAME.get(name)


def checks_raising(code: str) -> tuple[str, ...]:
    """Names of the checks that can raise ``code``."""
    return tuple(c.name for c in CHECKS if code in c.codes)


def default_severity(code: str) -> Severity:
    return DEFAULT_SEVERITY[code]


__all__ = ["CHECKS", "CHECK_NAMES", "CODES", "CheckInfo", "check_info", "checks_raising"]
