"""Turn a message's verdicts into an action: pass, a hidden correction, or a halt."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from sentinel.contract import Contract
from sentinel.verdict import Verdict

Action = Literal["pass", "correct", "halt"]

# Codes that are about the sentinel itself or the engine, not the persona's text: a correction
# request would not help, so they never trigger one.
NOT_CORRECTABLE = {"E_SENTINEL_DOWN", "E_STALL"}

_CONTRACT_REMINDER = {
    "json": "Answer again with ONE valid JSON object only, no text before or after it.",
    "code": "Answer again with code only, in one fenced code block, no prose.",
    "text": "Answer again, fixing these problems.",
}


@dataclass
class Decision:
    action: Action
    code: str | None = None  # the error code of a halt
    correction: str | None = None  # the hidden message sent back to the persona
    verdicts: list[Verdict] = field(default_factory=list)
    # A halt because corrections ran out: the minor problem, now critical (recorded with the
    # message, so logs, filters and exit codes count it as the critical it became).
    escalated: Verdict | None = None


def correction_text(verdicts: list[Verdict], contract: Contract) -> str:
    """The hidden correction request: what was wrong, where, and what to do instead."""
    lines = ["The sentinel found problems in your previous answer:"]
    for v in verdicts:
        lines.append(f"- {v.code} at characters {v.span[0]}-{v.span[1]}: {v.detail}")
    lines.append(_CONTRACT_REMINDER.get(contract.kind, _CONTRACT_REMINDER["text"]))
    return "\n".join(lines)


def decide(
    verdicts: list[Verdict], contract: Contract, corrections_used: int, max_corrections: int
) -> Decision:
    """Critical → halt with its code; minor persona problems → correction while any are left,
    then halt with the first minor's code (the seed: minor first, critical when corrections
    run out)."""
    critical = [v for v in verdicts if v.severity == "critical"]
    if critical:
        return Decision("halt", code=critical[0].code, verdicts=verdicts)
    fixable = [v for v in verdicts if v.code not in NOT_CORRECTABLE]
    if not fixable:
        return Decision("pass", verdicts=verdicts)
    if corrections_used < max_corrections:
        return Decision(
            "correct",
            code=fixable[0].code,
            correction=correction_text(fixable, contract),
            verdicts=verdicts,
        )
    first = fixable[0]
    tries = "correction" if max_corrections == 1 else "corrections"
    escalated = Verdict(
        first.check,
        "critical",
        first.code,
        first.span,
        f"still wrong after {max_corrections} {tries}: {first.detail}",
    )
    return Decision("halt", code=first.code, verdicts=verdicts, escalated=escalated)
