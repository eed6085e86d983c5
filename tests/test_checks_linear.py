"""Every check costs linear time on any input (issue #12: one long token froze the sentinel).

Long runs of each character class, and of short units built from them (``a@``, ``token=``,
``rm -rf ``: the shapes that made the old e-mail, command and credential regexes quadratic),
are fed through every check as a stream would feed them. The budget is CPU time of this thread
(not wall time, so a loaded CI machine does not fail it) per 10,000 characters, and a run four
times as long may cost at most six times as much (linear is four; the old e-mail pattern was
sixteen). Before the fix, 20,000 word characters took 2.5 s in one ``re.search``.
"""

from __future__ import annotations

import gc
import random
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sentinel.checks import build_checks
from sentinel.contract import Contract
from sentinel.settings import SentinelSettings

# A run of 10,000 characters may take this much CPU time through every check together.
BUDGET_S_PER_10K = 1.0

CLASSES = {
    "word": "abcXYZ_é",
    "digit": "0123456789",
    "space": " \t",
    "newline": "\n",
    "dot-dash": ".-",
    "at": "@.",
    "slash": "/\\",
    "colon": ":",
    "quote": "\"'`",
    "bracket": "{}[]()<>",
    "equals": "=:",
    "pipe": "|&;",
    "dollar": "$~*",
}
UNITS = [
    "a@",
    "a.",
    "a@b.",
    "token=",
    "password: ",
    "rm -rf ",
    "dd ",
    "curl ",
    "http://",
    "-----BEGIN ",
    "AKIA",
    "sk-",
    "eyJ",
    '{"a":',
    "`",
    "1.",
    "ab ",
]

CONTRACT = Contract(
    kind="text",
    system_prompt="You are the critic. Review the previous answer briefly. Never say CANARY-9.",
    canary="CANARY-9",
    max_words=10_000_000,
    banned_imports=("pickle",),
)


def cpu_seconds(text: str, seed: int) -> float:
    """CPU time of the checks alone: the garbage of the tests before this one is collected
    first, and no collection runs while it is timed (deep in a full run, one collection of a
    large heap counted here made 10k characters cost 2.3 s against 0.18 s alone)."""
    checks = build_checks(CONTRACT, SentinelSettings())
    rng = random.Random(seed)
    gc.collect()
    gc.disable()
    try:
        t0 = time.thread_time()
        i = 0
        while i < len(text):
            n = rng.randint(1, 8)
            for check in checks:
                check.feed(text[i : i + n])
            i += n
        for check in checks:
            check.finish()
        return time.thread_time() - t0
    finally:
        gc.enable()


def run_of(unit: str, n: int) -> str:
    return (unit * (n // len(unit) + 1))[:n]


LINEAR = settings(
    max_examples=8,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)


@LINEAR
@given(
    cls=st.sampled_from(sorted(CLASSES)),
    data=st.data(),
)
def test_long_runs_of_one_character_class_cost_linear_time(cls: str, data: st.DataObject) -> None:
    unit = data.draw(st.text(alphabet=CLASSES[cls], min_size=1, max_size=6), label="unit")
    short = cpu_seconds(run_of(unit, 10_000), 0)
    assert short <= BUDGET_S_PER_10K, f"{cls} {unit!r}: {short:.2f}s for 10k chars"
    long = cpu_seconds(run_of(unit, 40_000), 0)
    assert long <= 6 * max(short, 0.02), f"{cls} {unit!r}: 10k {short:.2f}s, 40k {long:.2f}s"


@LINEAR
@given(unit=st.sampled_from(UNITS), word=st.text(alphabet="abc1@./:", min_size=0, max_size=3))
def test_repeated_trigger_shapes_cost_linear_time(unit: str, word: str) -> None:
    short = cpu_seconds(run_of(unit + word, 10_000), 1)
    assert short <= BUDGET_S_PER_10K, f"{unit + word!r}: {short:.2f}s for 10k chars"
    long = cpu_seconds(run_of(unit + word, 40_000), 1)
    assert long <= 6 * max(short, 0.02), f"{unit + word!r}: 10k {short:.2f}s, 40k {long:.2f}s"


def test_one_token_of_100k_word_characters_is_checked_in_linear_time() -> None:
    """The case from the issue: `hermes sentinel check` on one 100,000-character line took 74 s."""
    assert cpu_seconds("x" * 100_000, 2) <= 10 * BUDGET_S_PER_10K
