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
        "json", ("E_JSON_BROKEN", "E_JSON_SCHEMA"), "JSON that cannot parse, or breaks the schema"
    ),
    CheckInfo("patterns", ("E_PATTERN",), "the contract's required and forbidden patterns"),
    CheckInfo("loops", ("E_LOOP",), "the same text repeated"),
    CheckInfo("stall", ("E_STALL",), "a stream that stops producing tokens"),
    CheckInfo("drift", ("E_DRIFT",), "output of the wrong kind or length for the contract"),
    CheckInfo("word_limit", ("E_LENGTH",), "more words than the contract allows"),
    CheckInfo("banned_imports", ("E_BANNED_IMPORT",), "code importing a banned module"),
    CheckInfo("unsafe_commands", ("E_UNSAFE_COMMAND",), "destructive shell commands"),
    CheckInfo("secrets", ("E_SECRET",), "keys, tokens and passwords"),
    CheckInfo("prompt_leak", ("E_PROMPT_LEAK",), "the system prompt or its canary repeated"),
    CheckInfo(
        "tool_call",
        (
            "E_TOOL_ARGS",
            "E_TOOL_SCHEMA",
            "E_TOOL_UNKNOWN",
            "E_TOOL_LOOP",
            "E_UNSAFE_COMMAND",
            "E_SECRET",
        ),
        "a tool call: impossible or off-schema arguments, an undeclared tool, repeated calls,"
        " unsafe commands and secrets in its arguments",
    ),
    CheckInfo(
        "judge", ("E_DRIFT", "E_SENTINEL_DOWN"), "the judge model: off task, or not answering"
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
