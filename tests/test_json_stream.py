"""The sentinel's incremental JSON check: conformance, exact break points, schema, splits."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sentinel.checks.json_stream import JsonStreamCheck
from sentinel.verdict import Verdict

SUITE = Path(__file__).resolve().parents[2] / "shared/testdata/jsontestsuite/test_parsing"
needs_suite = pytest.mark.skipif(
    not SUITE.is_dir(), reason=f"JSONTestSuite not found at {SUITE} (../shared beside checkout)"
)


def run(text: str, pieces: list[str] | None = None, **kwargs) -> list[Verdict]:
    """Feed ``pieces`` (default: the whole text at once), then finish; all verdicts."""
    check = JsonStreamCheck(**kwargs)
    out: list[Verdict] = []
    for piece in pieces if pieces is not None else [text]:
        out += check.feed(piece)
    return out + check.finish()


def split_at(text: str, cuts: list[int]) -> list[str]:
    points = sorted({c % (len(text) + 1) for c in cuts} | {0, len(text)})
    return [text[a:b] for a, b in zip(points, points[1:], strict=False)]


def random_split(text: str, rng: random.Random) -> list[str]:
    return split_at(text, [rng.randrange(len(text) + 1) for _ in range(len(text) // 3 + 1)])


def strict_loads_ok(text: str) -> bool:
    """The oracle: Python's json with NaN/Infinity refused is exactly RFC 8259 on str."""

    def refuse(name: str) -> None:
        raise ValueError(name)

    try:
        json.loads(text, parse_constant=refuse)
    except (ValueError, RecursionError):
        return False
    return True


def broken(verdicts: list[Verdict]) -> list[Verdict]:
    return [v for v in verdicts if v.code == "E_JSON_BROKEN"]


# -- JSONTestSuite ----------------------------------------------------------------------------


def suite_files(prefix: str) -> list[Path]:
    return sorted(SUITE.glob(f"{prefix}_*.json")) if SUITE.is_dir() else []


def decode(path: Path) -> str | None:
    """Files are bytes; text that is not UTF-8 never reaches the check (counts as rejected)."""
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        return None


@needs_suite
def test_every_y_file_is_accepted_and_never_flagged_on_any_prefix() -> None:
    files = suite_files("y")
    assert len(files) == 95
    rng = random.Random(8259)
    for path in files:
        text = decode(path)
        assert text is not None, path.name
        check = JsonStreamCheck()
        for ch in text:  # every prefix: char by char, nothing may be flagged
            assert check.feed(ch) == [], path.name
        assert check.finish() == [], path.name
        assert check.value == json.loads(text), path.name
        for _ in range(3):
            assert run(text, random_split(text, rng)) == [], path.name


@needs_suite
def test_every_n_file_is_flagged_the_same_way_on_every_split() -> None:
    files = suite_files("n")
    assert len(files) == 188
    rng = random.Random(8260)
    undecodable = 0
    for path in files:
        text = decode(path)
        if text is None:
            undecodable += 1
            continue
        whole = run(text)
        assert len(broken(whole)) == 1, (path.name, whole)
        assert run(text, list(text)) == whole, path.name
        assert run(text, random_split(text, rng)) == whole, path.name
    assert undecodable == 12


@needs_suite
def test_i_files_outcome_is_the_documented_one() -> None:
    accepted, rejected = [], []
    for path in suite_files("i"):
        text = decode(path)
        ok = text is not None and run(text) == [] and run(text, list(text)) == []
        (accepted if ok else rejected).append(path.name)
    # The module docstring documents these counts; keep both in step.
    assert (len(accepted), len(rejected)) == (21, 14)
    assert "i_structure_UTF-8_BOM_empty_object.json" in rejected
    assert "i_number_huge_exp.json" in accepted


# -- exact break points -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "offset", "detail"),
    [
        ('{"a": 1,, }', 8, "expected an object key after ',', got ','"),
        ('{"a": 1 "b": 2}', 8, "expected ',' or '}' after object member, got '\"'"),
        ("[1, 2 3]", 6, "expected ',' or ']' after array element, got '3'"),
        ('{"a" 1}', 5, "expected ':' after object key, got '1'"),
        ("[01]", 2, "leading zeros are not allowed in numbers"),
        ("[1.]", 3, "expected a digit after '.', got ']'"),
        ("[-x]", 2, "expected a digit after '-', got 'x'"),
        ("[tru]", 4, "invalid literal, expected 'true', got ']'"),
        ('["a\\x"]', 4, "invalid escape '\\x' in string"),
        ('["\\u12G4"]', 6, "expected 4 hex digits after '\\u', got 'G'"),
        ('["a\nb"]', 3, "control character U+000A in string must be escaped"),
        ('{"a": 1} trailing', 9, "unexpected text after the JSON value, got 't'"),
        ("Sure! Here is the JSON", 0, "expected a JSON value, got 'S'"),
        ("[1,]", 3, "expected a value after ',', got ']'"),
        ("[NaN]", 1, "expected a value or ']', got 'N'"),
    ],
)
def test_break_is_flagged_at_the_first_impossible_character(
    text: str, offset: int, detail: str
) -> None:
    verdicts = run(text, list(text))
    assert verdicts == [Verdict("json", "minor", "E_JSON_BROKEN", (offset, offset + 1), detail)]


def test_break_arrives_with_the_piece_that_causes_it_and_only_once() -> None:
    check = JsonStreamCheck()
    assert check.feed('{"steps": [1,') == []
    assert check.feed(" 2") == []
    verdicts = check.feed("}, 3]")  # the '}' at offset 15 closes nothing it may close
    assert [(v.code, v.span) for v in verdicts] == [("E_JSON_BROKEN", (15, 16))]
    assert check.feed("} more garbage") == []
    assert check.finish() == []


def test_unterminated_value_is_reported_at_finish_at_the_end() -> None:
    check = JsonStreamCheck()
    assert check.feed('{"a": [1, 2') == []
    (verdict,) = check.finish()
    assert verdict.code == "E_JSON_BROKEN"
    assert verdict.span == (11, 11)
    assert verdict.detail == "unexpected end of output: expected ',' or ']' after array element"
    assert run("") == [
        Verdict("json", "minor", "E_JSON_BROKEN", (0, 0), "unexpected end of output: "
                "expected a JSON value")
    ]  # fmt: skip
    assert broken(run('{"a": "unterminated'))[0].detail.endswith("unterminated string")


def test_top_level_number_completes_only_at_its_end() -> None:
    check = JsonStreamCheck(schema={"type": "integer", "maximum": 10})
    assert check.feed("1") == []
    assert check.feed("2") == []  # 12 might still become 123 or 12.5: nothing certain yet
    with pytest.raises(LookupError):
        _ = check.value
    (verdict,) = check.finish()
    assert (verdict.code, verdict.span) == ("E_JSON_SCHEMA", (0, 2))
    assert verdict.detail == "(root): 12 is greater than the maximum of 10"
    assert check.value == 12
    assert broken(run("12.")) and broken(run("1e")) and not run("-0.5E+3 \n")


# -- schema ----------------------------------------------------------------------------------

PLAN_SCHEMA = {
    "type": "object",
    "required": ["steps"],
    "properties": {
        "steps": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["title"],
                "properties": {"title": {"type": "integer"}},
            },
        }
    },
}


def test_schema_violation_names_the_pointer_and_spans_the_sub_value() -> None:
    text = '{"steps": [{"title": 3}, {"title": "x"}]}'
    check = JsonStreamCheck(schema=PLAN_SCHEMA)
    out = []
    for piece in split_at(text, list(range(0, len(text), 4))):
        got = check.feed(piece)
        if got:
            assert check.value is not None  # reported exactly when the value completed
        out += got
    assert check.finish() == []
    start = text.index('"x"')
    assert out == [
        Verdict(
            "json",
            "minor",
            "E_JSON_SCHEMA",
            (start, start + 3),
            "/steps/1/title: 'x' is not of type 'integer'",
        )
    ]


def test_every_schema_violation_is_reported_once_in_text_order() -> None:
    text = '  {"steps": [{"title": "a"}, {}, {"title": 2.5}], "steps": [{"title": "b"}]}'
    # A duplicate key: the last one wins (as json.loads), and spans point at that one.
    verdicts = run(text, list(text), schema=PLAN_SCHEMA)
    assert [(v.code, v.detail) for v in verdicts] == [
        ("E_JSON_SCHEMA", "/steps/0/title: 'b' is not of type 'integer'"),
    ]
    assert verdicts[0].span == (text.index('"b"'), text.index('"b"') + 3)
    text = '{"steps": [{"title": "a"}, {}, {"title": 2.5}]}'
    verdicts = run(text, schema=PLAN_SCHEMA)
    assert [v.detail for v in verdicts] == [
        "/steps/0/title: 'a' is not of type 'integer'",
        "/steps/1: 'title' is a required property",
        "/steps/2/title: 2.5 is not of type 'integer'",
    ]
    assert verdicts[1].span == (text.index("{}"), text.index("{}") + 2)
    missing = run("{}", schema=PLAN_SCHEMA)
    assert [(v.span, v.detail) for v in missing] == [
        ((0, 2), "(root): 'steps' is a required property")
    ]


def test_schema_names_its_own_draft_and_bad_schemas_fail_at_construction() -> None:
    draft4 = {"$schema": "http://json-schema.org/draft-04/schema#", "maximum": 3,
              "exclusiveMaximum": True}  # fmt: skip
    assert [v.detail for v in run("3", schema=draft4)] == [
        "(root): 3 is greater than or equal to the maximum of 3"
    ]
    with pytest.raises(Exception, match="is not valid"):
        JsonStreamCheck(schema={"type": 12})
    with pytest.raises(ValueError, match="mode"):
        JsonStreamCheck(mode="yaml")  # type: ignore[arg-type]


def test_broken_value_gets_no_schema_verdict() -> None:
    assert [v.code for v in run('{"steps": 1,}', schema=PLAN_SCHEMA)] == ["E_JSON_BROKEN"]


def test_value_is_judged_when_it_ends_even_if_text_follows_in_the_same_piece() -> None:
    for pieces in (["[1] x"], ["[1]", " x"], list("[1] x")):
        verdicts = run("", pieces, schema={"type": "object"})
        assert [(v.code, v.span) for v in verdicts] == [
            ("E_JSON_SCHEMA", (0, 3)),
            ("E_JSON_BROKEN", (4, 5)),
        ]


# -- fences -----------------------------------------------------------------------------------


def test_whole_mode_tolerates_one_surrounding_json_fence() -> None:
    text = '```json\n{"steps": []}\n```\n'
    check = JsonStreamCheck(schema=PLAN_SCHEMA)
    assert [v for ch in text for v in check.feed(ch)] + check.finish() == []
    assert check.value == {"steps": []}
    assert run("```\n[1]\n```") == []
    assert run("```JSON\n[1]") == []  # a closing fence may be missing if the value is whole
    after = "```json\n{}\n```\nHope this helps!"
    assert [(v.span, v.detail) for v in run(after)] == [
        ((len(after) - 16, len(after) - 15), "unexpected text after the closing fence, got 'H'")
    ]
    (early,) = run('```json\n{"a": 1\n```')
    assert early.span == (16, 19)
    assert early.detail.startswith("unexpected end of fenced block: expected ','")
    (python,) = run("```python\nprint(1)\n```")
    assert python.span == (3, 4) and "expected 'json'" in python.detail
    assert broken(run("``[1]"))[0].span == (2, 3)


def test_fenced_mode_checks_only_json_blocks_each_once() -> None:
    text = (
        "Here is the plan:\n"
        "```python\nx = {'not': json,}\n```json inside python is not a block\n```\n"
        "```json\n"
        '{"steps": [{"title": 1},]}\n'  # broken at the ']'
        "```\n"
        "and another one:\n"
        "  ```Json title=plan\n"
        '{"steps": [{"title": "one"}]}\n'
        "```\n"
        "`inline ```json code``` is not a fence`\n"
        "Done {{{"
    )
    for pieces in ([text], list(text), split_at(text, list(range(0, len(text), 3)))):
        check = JsonStreamCheck(schema=PLAN_SCHEMA, mode="fenced")
        verdicts = [v for p in pieces for v in check.feed(p)] + check.finish()
        comma = text.index("},]") + 2
        title = text.index('"one"')
        assert verdicts == [
            Verdict(
                "json",
                "minor",
                "E_JSON_BROKEN",
                (comma, comma + 1),
                "expected a value after ',', got ']'",
            ),
            Verdict(
                "json",
                "minor",
                "E_JSON_SCHEMA",
                (title, title + 5),
                "/steps/0/title: 'one' is not of type 'integer'",
            ),
        ]
        assert check.values == [{"steps": [{"title": "one"}]}]


def test_fenced_mode_end_of_output_inside_a_block() -> None:
    assert run("text\n```json\n[1, 2]", mode="fenced") == []
    (verdict,) = run("text\n```json\n[1, 2", mode="fenced")
    assert verdict.span == (18, 18) and verdict.detail.startswith("unexpected end of output")
    (empty,) = run("```json\n```\n", mode="fenced")
    assert empty.span == (8, 11) and "expected a JSON value" in empty.detail
    assert run("no blocks at all { [", mode="fenced") == []
    (ticks,) = run("```json\n[1]\n``", mode="fenced")
    assert ticks.span == (12, 13)


def test_reset_starts_a_new_message() -> None:
    check = JsonStreamCheck()
    assert check.feed("[1,,") != []
    check.reset()
    assert check.feed("[1]") == [] and check.finish() == [] and check.value == [1]


# -- property tests ---------------------------------------------------------------------------

JSONISH = st.text(alphabet=st.sampled_from(list('{}[]:,"\\ u0123456789.eE+-truefalsnl\n\t`xé')))
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
EDITS = '{}[]:,"\\ 0.e-tx'
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(text=JSONISH | st.text(), cuts=st.lists(st.integers(0, 10_000), max_size=12))
def test_random_text_never_raises_and_split_does_not_change_verdicts(
    text: str, cuts: list[int]
) -> None:
    for mode in ("whole", "fenced"):
        whole = run(text, mode=mode, schema={"type": "array"})
        assert run(text, split_at(text, cuts), mode=mode, schema={"type": "array"}) == whole
        assert len(broken(whole)) <= (1 if mode == "whole" else len(text))
        for v in whole:
            assert 0 <= v.span[0] <= v.span[1] <= len(text) + 1


@SETTINGS
@given(
    value=json_values,
    indent=st.sampled_from([None, 0, 2]),
    ascii_=st.booleans(),
    cuts=st.lists(st.integers(0, 10_000), max_size=12),
    edit=st.tuples(
        st.integers(0, 10_000), st.sampled_from(list('{}[]:,"\\ 0.e-tx')), st.booleans()
    ),
)
def test_verdict_agrees_with_strict_json_loads_on_near_valid_text(
    value: object, indent: int | None, ascii_: bool, cuts: list[int], edit: tuple
) -> None:
    text = json.dumps(value, indent=indent, ensure_ascii=ascii_)
    check = JsonStreamCheck()
    assert [v for p in split_at(text, cuts) for v in check.feed(p)] + check.finish() == []
    assert check.value == value
    pos, char, insert = edit
    pos %= len(text) + 1
    mutated = text[:pos] + char + text[pos + (0 if insert else 1) :]
    verdicts = run(mutated, split_at(mutated, cuts))
    assert (verdicts == []) == strict_loads_ok(mutated), (mutated, verdicts)


FRAGMENTS = ["```json\n", "```\n", "```", "```py\n", "\n", " ", "{", "}", "[1,", "2]", '"a"', ":"]
FRAGMENTS += ["x", "`", "``", "\t", "3", "JSON\n"]


@SETTINGS
@given(
    parts=st.lists(st.sampled_from(FRAGMENTS), max_size=30),
    cuts=st.lists(st.integers(0, 10_000), max_size=20),
)
def test_fence_heavy_text_gets_the_same_verdicts_however_it_is_split(
    parts: list[str], cuts: list[int]
) -> None:
    text = "".join(parts)
    for mode in ("whole", "fenced"):
        whole = run(text, mode=mode, schema={"type": "object"})
        assert run(text, list(text), mode=mode, schema={"type": "object"}) == whole
        assert run(text, split_at(text, cuts), mode=mode, schema={"type": "object"}) == whole


@SETTINGS
@given(text=st.text(alphabet=st.sampled_from(list('{}[]:,"\\ 01-.eEtrufalsn\n'))))
def test_random_text_accepted_exactly_when_json_loads_accepts(text: str) -> None:
    assert (run(text, list(text)) == []) == strict_loads_ok(text)


# -- a real model's stream --------------------------------------------------------------------


async def test_real_model_stream_gets_the_same_verdicts_as_the_finished_text() -> None:
    from agents.engine import LocalEngine, SamplingParams
    from agents.models import resolve_model_path

    engine = LocalEngine("smollm2", resolve_model_path("embedded:smollm2-135m"), n_ctx=512)
    messages = [
        {"role": "system", "content": "Reply with JSON only."},
        {"role": "user", "content": 'Give a plan as {"steps": [{"title": ...}]} in JSON.'},
    ]
    pieces: list[str] = []
    checks = {m: JsonStreamCheck(schema=PLAN_SCHEMA, mode=m) for m in ("whole", "fenced")}
    live: dict[str, list[Verdict]] = {m: [] for m in checks}
    try:
        async for piece in engine.stream(messages, SamplingParams(max_tokens=48, temperature=0)):
            pieces.append(piece)
            for mode, check in checks.items():
                live[mode] += check.feed(piece)
    finally:
        await engine.close()
    text = "".join(pieces)
    assert text
    for mode, check in checks.items():
        live[mode] += check.finish()
        assert live[mode] == run(text, list(text), schema=PLAN_SCHEMA, mode=mode), (mode, text)
    if not broken(live["whole"]):
        stripped = text.strip().removeprefix("```json").removeprefix("```").removesuffix("```")
        assert checks["whole"].value == json.loads(stripped)


def test_valid_but_very_deep_value_is_not_broken_and_does_not_crash() -> None:
    deep = "[" * 5000 + "]" * 5000
    assert run(deep) == []  # valid JSON: depth is not limited by the grammar
    (verdict,) = run(deep, schema={"type": "array"})
    assert verdict.code == "E_JSON_SCHEMA" and "nested too deeply" in verdict.detail
