"""Patterns, contract drift and the stall watchdog."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sentinel.checks.drift import ContractDriftCheck
from sentinel.checks.patterns import PatternCheck
from sentinel.checks.stall import StallWatchdog
from sentinel.verdict import Verdict

from .checks_util import run, split_invariant


def found(make: Callable, text: str) -> list[str]:
    ref = split_invariant(make, text)
    return [text[v.span[0] : v.span[1]] for v in ref]


def test_malformed_url_email_path_are_reported_with_their_span() -> None:
    text = (
        "See https://example.com/a?b=1, or htp:/bad and https://exa..mple.com. "
        "Mail john@@example.com or bob@example.com. Path /usr//local/bin and /etc/hosts."
    )
    v = run(PatternCheck, text)
    assert {(x.code, x.severity) for x in v} == {("E_PATTERN", "minor")}
    assert found(PatternCheck, text) == [
        "htp:/bad", "https://exa..mple.com", "john@@example.com", "/usr//local/bin",
    ]  # fmt: skip


def test_well_formed_and_look_alikes_pass() -> None:
    text = (
        "[docs](https://docs.python.org/3/library/re.html) <https://x.org> http://localhost:8000/ "
        "postgres://user:pw@db:5432/app file:///home/u/a.txt www.example.org/page "
        "`a@b.T` git@github.com:user/repo.git ssh admin@10.0.0.1 @property "
        "/home/<user>/.ssh ~/projects/app/ C:\\Users\\bob\\file.txt http://{host}:{port}/api\n"
        "```python\nresult = a@b.T  # matrix product\n```\n"
    )
    assert found(PatternCheck, text) == []


def test_custom_strict_regex_for_a_known_name_and_custom_pair() -> None:
    make = lambda: PatternCheck({"url": r"https://[a-z.]+/?", "ticket": (r"\bT-\S*", r"T-\d{4}")})  # noqa: E731
    assert found(make, "see http://example.com and T-12 or T-1234 ") == [
        "http://example.com",
        "T-12",
    ]
    with pytest.raises(ValueError):
        PatternCheck({"phone": r"\d+"})


def test_json_persona_chatting_before_json() -> None:
    text = 'Sure! Here is the JSON:\n{"a": 1}'
    v = run(lambda: ContractDriftCheck("json"), text)
    assert [(x.code, x.severity, x.span) for x in v] == [("E_DRIFT", "minor", (0, 5))]
    assert found(lambda: ContractDriftCheck("json"), '```json\n{"a": 1}\n```') == []
    assert found(lambda: ContractDriftCheck("json"), "  \n[1, 2]") == []


def test_code_persona_writing_an_essay() -> None:
    intro = "Here is the function you asked for.\n```python\ndef f():\n    return 1\n```\n"
    essay = "This explanation keeps going about why the code is good and nice. " * 6 + "\n"
    make = lambda: ContractDriftCheck("code")  # noqa: E731
    assert found(make, intro) == []
    got = run(make, intro + essay)
    assert [x.code for x in got] == ["E_DRIFT"]
    assert got[0].span[0] > len(intro)  # starts at the word that crossed the prose budget
    unfenced = "def f(x):\n    # compute the thing we need for the caller here\n    return x\n" * 5
    assert found(make, unfenced) == []


def test_a_coder_asking_what_it_needs_is_not_drift_an_essay_of_questions_is() -> None:
    make = lambda: ContractDriftCheck("code")  # noqa: E731
    asks = (
        "I can't write that code yet: the requirements leave out what it runs against.\n"
        "Which database do you use, and which version of it? Which Python version should the "
        "script support? Does it run on a schedule or on demand, and who starts it? Should it "
        "log to a file or to stdout, and do you need retries when the connection drops?\n"
    )
    assert len(asks.split()) > 50  # over the 40-word prose budget, nearly all of it questions
    assert found(make, asks) == []
    essay = "This explanation keeps going about why the code is good and nice. " * 6 + "\n"
    assert [v.code for v in run(make, asks + essay)] == ["E_DRIFT"]  # statements still count
    quiz = "Which one do you want? " * 60 + "\n"  # questions beyond 3x the budget count
    assert [v.code for v in run(make, quiz)] == ["E_DRIFT"]


def test_far_longer_than_asked() -> None:
    make = lambda: ContractDriftCheck("text", max_tokens=10)  # noqa: E731
    v = run(make, "word " * 40)
    assert [(x.code, x.span) for x in v] == [("E_DRIFT", (120, 121))]
    assert run(make, "word " * 20) == []


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_stall_watchdog_warns_then_halts_once_and_rearms() -> None:
    clock = FakeClock()
    dog = StallWatchdog(warn_s=5, halt_s=20, clock=clock)
    dog.touch(42)
    clock.t += 4
    assert dog.poll() == []
    clock.t += 2
    v = dog.poll()
    assert [(x.code, x.severity, x.span) for x in v] == [("E_STALL", "minor", (42, 42))]
    assert dog.poll(clock.t + 1) == []
    v = dog.poll(clock.t + 15)
    assert [(x.severity, x.span) for x in v] == [("critical", (42, 42))]
    assert dog.poll(clock.t + 100) == []
    dog.touch(50)
    assert dog.poll(clock.t + 30)[0].span == (50, 50)
    with pytest.raises(ValueError):
        StallWatchdog(10, 5, clock=clock)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.sampled_from(list("ab@.:/ \n`{[htps") + ["http://", "```", "www."]), max_size=60),
    st.integers(0, 99),
)
def test_random_streams_split_invariant(parts: list[str], seed: int) -> None:
    text = "".join(parts)
    makes = (
        PatternCheck,
        lambda: ContractDriftCheck("json", max_tokens=5),
        lambda: ContractDriftCheck("code", max_prose_words=3),
    )
    for make in makes:
        ref = run(make, text, None)
        assert sorted(map(repr, run(make, text, seed))) == sorted(map(repr, ref))


# ---------------------------------------------------------------------------- normal corpus
CORPUS = sorted((Path(__file__).parent / "corpus" / "normal").glob("*.md"))
CORPUS_SYSTEM = (
    "You are Architect, a senior engineer. Plan the work as a short numbered list, name the "
    "files to change, and never write code yourself. Secret marker: CANARY-3b9d1e."
)


def all_checks() -> list:
    """Every text check with a realistic configuration (as the sentinel would run them)."""
    from sentinel.checks.constraints import BannedImportCheck
    from sentinel.checks.loops import LoopCheck
    from sentinel.checks.safety import PromptLeakCheck, SecretCheck, UnsafeCommandCheck

    return [
        LoopCheck(),
        PatternCheck(),
        UnsafeCommandCheck(),
        SecretCheck(),
        PromptLeakCheck(CORPUS_SYSTEM, "CANARY-3b9d1e"),
        ContractDriftCheck("text", max_tokens=1024),
        BannedImportCheck(["telnetlib"]),
    ]


def test_normal_corpus_has_no_critical_and_at_most_one_percent_minor() -> None:
    assert len(CORPUS) >= 200
    minor_docs: list[str] = []
    for path in CORPUS:
        text = path.read_text()
        rng = random.Random(path.name)
        checks = all_checks()
        verdicts: list[Verdict] = []
        i = 0
        while i < len(text):
            n = rng.randint(1, 6)
            for check in checks:
                verdicts += check.feed(text[i : i + n])
            i += n
        for check in checks:
            verdicts += check.finish()
        assert [v for v in verdicts if v.severity == "critical"] == [], path.name
        if verdicts:
            minor_docs.append(f"{path.name}: {verdicts[0].detail}")
    assert len(minor_docs) <= len(CORPUS) // 100, minor_docs


# --- issue #16: patterns read as the standards do ----------------------------------------
@pytest.mark.parametrize(
    "text",
    [
        "Write to josé@bücher.de today.",  # Unicode local part, IDN domain (email-validator)
        "Write to 用户@例子.广告 today.",
        "Visit https://bücher.de/straße now.",  # IDN host (idna)
        '{"path": "C:\\\\Users\\\\me\\\\file.txt", "bin": "\\/usr\\/local\\/bin"}',  # JSON escapes
        "The gateway is 10.25.0.1 and the version 1.2.3.4.",
        '"packageManager": "pnpm@10.4.1"',  # a package at a version, not an address
    ],
)
def test_valid_international_and_escaped_patterns_pass(text: str) -> None:
    from sentinel.checks.patterns import PatternCheck

    assert split_invariant(PatternCheck, text) == []


@pytest.mark.parametrize(
    "text,what",
    [
        ("Server at 10.256.0.1 now.", "ipv4"),
        ("see http://300.1.1.1/x ok", "url"),
        ("a@@b..com", "email"),
    ],
)
def test_an_ipv4_octet_over_255_and_broken_addresses_are_malformed(text: str, what: str) -> None:
    from sentinel.checks.patterns import PatternCheck

    found = split_invariant(PatternCheck, text)
    assert [v.code for v in found] == ["E_PATTERN"] and what in found[0].detail
