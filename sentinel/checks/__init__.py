"""The sentinel's incremental checks, one module each, and the factory that picks them for a
persona's contract."""

from __future__ import annotations

from sentinel.checks.base import Check
from sentinel.contract import Contract
from sentinel.settings import SentinelSettings


def build_checks(contract: Contract, settings: SentinelSettings) -> list[Check]:
    """Every check that applies to a persona with this contract."""
    from sentinel.checks.constraints import BannedImportCheck, WordLimitCheck
    from sentinel.checks.drift import ContractDriftCheck
    from sentinel.checks.json_stream import JsonStreamCheck
    from sentinel.checks.loops import LoopCheck
    from sentinel.checks.patterns import PatternCheck
    from sentinel.checks.safety import PromptLeakCheck, SecretCheck, UnsafeCommandCheck

    checks: list[Check] = [
        JsonStreamCheck(contract.schema, mode="whole" if contract.kind == "json" else "fenced"),
        PatternCheck(contract.patterns or None),
        LoopCheck(settings.loop_minor_repeats, settings.loop_critical_repeats),
        UnsafeCommandCheck(),
        SecretCheck(),
        ContractDriftCheck(contract.kind, contract.max_tokens),
    ]
    # always on: hermes's planted canary is recognised by its shape even with no prompt
    checks.append(
        PromptLeakCheck(contract.system_prompt, contract.canary, canaries=contract.canaries)
    )
    if contract.max_words:
        checks.append(WordLimitCheck(contract.max_words))
    if contract.banned_imports:
        checks.append(BannedImportCheck(list(contract.banned_imports), contract.kind))
    return checks


__all__ = ["Check", "build_checks"]
