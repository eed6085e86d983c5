"""The sentinel's check registry is the one list of check names and codes: every real check
stores its verdicts under a registered name with a registered code, and every registered
check really fires on some text."""

from __future__ import annotations

from sentinel.checks import build_checks
from sentinel.checks.stall import StallWatchdog
from sentinel.contract import Contract
from sentinel.registry import CHECK_NAMES, CHECKS, check_info, checks_raising
from sentinel.settings import SentinelSettings
from sentinel.tool_calls import ToolCallCheck
from sentinel.verdict import CODES

from .check_samples import judge_verdict, real_verdicts


def test_every_check_the_sentinel_builds_is_registered_under_its_stored_name() -> None:
    contract = Contract(
        kind="code",
        max_words=10,
        banned_imports=("os",),
        system_prompt="You are a coder.",
        canary="zebra-42",
        max_tokens=50,
    )
    built = {c.name for c in build_checks(contract, SentinelSettings())}
    built |= {StallWatchdog.name, ToolCallCheck.name, judge_verdict().check}
    assert built == set(CHECK_NAMES)


async def test_the_real_checks_raise_only_registered_pairs_and_every_pair_is_raised() -> None:
    seen = {(v.check, v.code) for _, _, verdicts in await real_verdicts() for v in verdicts}
    registered = {(c.name, code) for c in CHECKS for code in c.codes}
    assert seen <= registered, seen - registered
    # Everything but the judge's "down" verdict (a dying judge process) fires on sample text.
    assert registered - seen == {("judge", "E_SENTINEL_DOWN")}


def test_every_code_belongs_to_a_check_and_names_are_unique() -> None:
    assert len(set(CHECK_NAMES)) == len(CHECK_NAMES)
    assert {code for c in CHECKS for code in c.codes} == set(CODES)
    assert checks_raising("E_DRIFT") == ("drift", "judge")
    assert check_info("secrets") is not None and check_info("secret") is None
