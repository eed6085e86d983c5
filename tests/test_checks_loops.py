"""LoopCheck: degenerate repetition is flagged, structure (lists, tables, code) is not."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from sentinel.checks.loops import LoopCheck
from sentinel.verdict import Verdict

from .checks_util import run as run_check
from .checks_util import split_invariant


def run(text: str, seed: int | None = 1, **kw) -> list[Verdict]:
    """Feed ``text`` to a LoopCheck in random pieces of 1-7 chars (``seed=None``: one piece)."""
    return run_check(lambda: LoopCheck(**kw), text, seed)


def same_on_any_split(text: str, **kw) -> list[Verdict]:
    return split_invariant(lambda: LoopCheck(**kw), text)


def test_prose_loop_minor_at_three_copies_then_critical_at_five() -> None:
    block = "I am a language model and I like to repeat myself. "
    text = "Hello! " + block * 6
    v = same_on_any_split(text)
    assert [(x.code, x.severity) for x in v] == [("E_LOOP", "minor"), ("E_LOOP", "critical")]
    minor, critical = v
    onset = text.index(block)
    # onset may rotate by a token (the space before the block), never later than the block
    assert onset - 1 <= minor.span[0] <= onset
    assert minor.span[1] == onset + 3 * len(block) - 1  # end of the third copy's last token
    assert critical.span[1] == onset + 5 * len(block) - 1


def test_numbered_list_repeating_the_same_item_is_a_loop() -> None:
    text = "Tips:\n" + "".join(f"{i}. Use descriptive variable names.\n" for i in range(1, 8))
    v = same_on_any_split(text)
    assert [x.severity for x in v] == ["minor", "critical"]
    assert text[v[0].span[0] : v[0].span[1]].count("Use descriptive") == 3


def test_loop_inside_code_fence() -> None:
    text = "```python\n" + "result = compute_value(data, index)\n" * 6 + "```\n"
    v = same_on_any_split(text)
    assert [x.severity for x in v] == ["minor", "critical"]


def test_long_period_loop_of_400_tokens() -> None:
    rng = random.Random(3)
    words = [rng.choice(["alpha", "beta", "gamma", "delta", "eps", "zeta"]) for _ in range(200)]
    block = " ".join(words) + ". "
    v = same_on_any_split("Intro. " + block * 5)
    assert [x.severity for x in v] == ["minor", "critical"]


def test_stutter_inside_one_word() -> None:
    text = "Wow " + "ha" * 60 + " ok"
    v = same_on_any_split(text)
    assert [x.severity for x in v] == ["minor", "critical"]
    assert v[0].span == (4, 44)


def test_a_template_with_different_arguments_is_not_a_loop() -> None:
    # issue #16: an agent's log reads one file after another; a counter is an argument too
    text = " ".join(f"The system will now process request number {i} for you." for i in range(9))
    assert same_on_any_split(text) == []
    log = "".join(f"Reading file src/module_{i}.py (line {i * 7})\n" for i in range(8))
    assert same_on_any_split(log) == []


def test_the_same_line_with_the_same_arguments_is_a_loop() -> None:
    text = "Reading file src/module_3.py (line 21)\n" * 8
    v = same_on_any_split(text)
    assert [x.severity for x in v] == ["minor", "critical"]
    assert v[0].span[0] == 0


def test_near_duplicate_sentences_that_vary_their_wording_are_a_loop() -> None:
    words = ["now", "then", "again", "still", "soon", "today", "here", "there", "once"]
    text = " ".join(f"The system will {w} process the request for you, as promised." for w in words)
    v = same_on_any_split(text)
    assert [x.severity for x in v] == ["minor", "critical"]


def test_structure_is_not_a_loop() -> None:
    normal = [
        "Fruits:\n1. apples\n2. pears\n3. plums\n4. kiwis\n5. figs\n",
        "| a | b |\n|---|---|\n| 1 | 2 |\n| 3 | 4 |\n| 5 | 6 |\n| 7 | 8 |\n",
        "```python\nx = a[0]\ny = a[1]\nz = a[2]\nw = a[3]\n```\n",
        "The cat saw the dog and the dog saw the cat; the end of the the story.",
        "```c\n        }\n      }\n    }\n  }\n}\n```\n",
        "---\n\n---\n\n---\n\n========================================\n",
        "```python\nzeros = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]\n```\n",
        "very very good, no no no.",
        "```python\nparser.add_argument('--input', type=str, help='input file path')\n"
        "parser.add_argument('--output', type=str, help='output file path')\n"
        "parser.add_argument('--config', type=str, help='config file path')\n```\n",
        "- Use descriptive variable names.\n- Use descriptive function names.\n"
        "- Use descriptive class names.\n- Use descriptive module names.\n",
    ]
    for text in normal:
        assert same_on_any_split(text) == [], text


def test_each_loop_reported_once_and_a_new_loop_later_is_reported() -> None:
    a = "We should restart the server now to apply the fix. "
    b = "Please check the logs for any errors after that step. "
    text = a * 7 + "Okay, moving on to something else entirely here. " + b * 4
    v = same_on_any_split(text)
    assert [x.severity for x in v] == ["minor", "critical", "minor"]
    assert v[2].span[0] >= text.index(b) - 2  # may start at the '. ' before the block


def test_severity_override() -> None:
    check = LoopCheck(severity={"E_LOOP": "critical"})
    out: list[Verdict] = []
    for ch in "Hi. " + "keep going and going and going forever. " * 3 + "x":
        out += check.feed(ch)
    assert [x.severity for x in out] == ["critical"]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.sampled_from(["the ", "cat ", "1. ", "\n", "```", "ha", ". ", "|", "x = a[0]"]),
        max_size=80,
    ),
    st.integers(0, 1000),
)
def test_random_streams_never_raise_and_are_split_invariant(parts: list[str], seed: int) -> None:
    text = "".join(parts)
    ref = run(text, None)
    assert sorted(map(repr, run(text, seed))) == sorted(map(repr, ref))
    for x in ref:
        assert 0 <= x.span[0] <= x.span[1] <= len(text)
