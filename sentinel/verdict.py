"""The sentinel's vocabulary: verdict codes, severities and the Verdict record."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, get_args

Severity = Literal["minor", "critical"]
SEVERITIES: tuple[Severity, ...] = get_args(Severity)  # mildest first

# Every code the sentinel can raise, with its default severity (the seed's policy: broken
# JSON, loops and drift start as a correction; unsafe output is critical at once).
DEFAULT_SEVERITY: dict[str, Severity] = {
    "E_JSON_BROKEN": "minor",
    "E_JSON_SCHEMA": "minor",
    "E_PATTERN": "minor",
    "E_LOOP": "minor",
    "E_STALL": "minor",
    "E_DRIFT": "minor",
    "E_LENGTH": "minor",
    "E_BANNED_IMPORT": "minor",
    "E_UNSAFE_COMMAND": "critical",
    "E_SECRET": "critical",
    "E_PROMPT_LEAK": "critical",
    "E_SENTINEL_DOWN": "minor",
    # Tool calls (sentinel.tool_calls): arguments that cannot become JSON, that break the
    # tool's schema, a tool the request did not declare (or offer), the same call again and
    # again; and none at all where the request required one.
    "E_TOOL_ARGS": "minor",
    "E_TOOL_SCHEMA": "minor",
    "E_TOOL_UNKNOWN": "minor",
    "E_TOOL_LOOP": "minor",
    # no call where the request's tool_choice required one ("required" or a named function)
    "E_TOOL_REQUIRED": "minor",
}

CODES: tuple[str, ...] = tuple(DEFAULT_SEVERITY)


@dataclass(frozen=True, slots=True)
class Verdict:
    """One finding on one message.

    ``span`` is ``(start, end)`` in character offsets of the message text (end exclusive).
    """

    check: str
    severity: Severity
    code: str
    span: tuple[int, int]
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "severity": self.severity,
            "code": self.code,
            "span": list(self.span),
            "detail": self.detail,
        }
