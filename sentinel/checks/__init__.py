"""The sentinel's incremental checks, one module each, and the factory that picks them for a
persona's contract."""

from __future__ import annotations

from sentinel.checks.base import Check
from sentinel.contract import Contract
from sentinel.settings import SentinelSettings


def build_checks(contract: Contract, settings: SentinelSettings) -> list[Check]:
    """Every check that applies to a persona with this contract, each at the severities of
    ``[sentinel.severity]`` (the monitor applies the same map to verdicts raised outside the
    checks: the judge, a failed check)."""
    from sentinel.checks.constraints import BannedImportCheck, WordLimitCheck
    from sentinel.checks.drift import ContractDriftCheck
    from sentinel.checks.json_stream import JsonStreamCheck
    from sentinel.checks.loops import LoopCheck
    from sentinel.checks.patterns import PatternCheck
    from sentinel.checks.safety import PromptLeakCheck, SecretCheck, UnsafeCommandCheck

    sev: dict[str, str] | None = dict(settings.severity) or None
    checks: list[Check] = [
        JsonStreamCheck(contract.schema, mode="whole" if contract.kind == "json" else "fenced"),
        PatternCheck(contract.patterns or None, severity=sev),
        LoopCheck(settings.loop_minor_repeats, settings.loop_critical_repeats, severity=sev),
        UnsafeCommandCheck(severity=sev),
        SecretCheck(severity=sev),
        ContractDriftCheck(contract.kind, contract.max_tokens, severity=sev),
    ]
    # always on: hermes's planted canary is recognised by its shape even with no prompt
    checks.append(
        PromptLeakCheck(
            contract.system_prompt, contract.canary, canaries=contract.canaries, severity=sev
        )
    )
    if contract.max_words:
        checks.append(WordLimitCheck(contract.max_words, severity=sev))
    if contract.banned_imports:
        checks.append(BannedImportCheck(list(contract.banned_imports), contract.kind, severity=sev))
    return checks


__all__ = ["Check", "build_checks"]
