"""The sentinel's checks on tool calls (sentinel.tool_calls), fed piece by piece."""

from __future__ import annotations

import random

import pytest

from sentinel.tool_calls import (
    ToolCallCheck,
    ToolLoopSettings,
    canonical_arguments,
    find_tool_loops,
    tool_schema_error,
)
from tests.tool_call_corpus import broken_calls, pieces, valid_calls

SHELL = {
    "type": "object",
    "properties": {"command": {"type": "string"}, "timeout": {"type": "integer"}},
    "required": ["command"],
    "additionalProperties": False,
}


def run(check: ToolCallCheck, parts: list[str]) -> list:
    out = []
    for p in parts:
        out.extend(check.feed(p))
    out.extend(check.finish())
    return out


@pytest.mark.parametrize("split_seed", [0, 1, 2])
def test_valid_calls_of_every_shape_raise_nothing(split_seed: int) -> None:
    rng = random.Random(split_seed)
    calls = valid_calls()
    assert len(calls) >= 100
    for call in calls:
        check = ToolCallCheck(call.tool, call.schema)
        verdicts = run(check, pieces(call.arguments, rng))
        assert verdicts == [], (call, verdicts)
        assert check.complete and check.value is not None


@pytest.mark.parametrize("split_seed", [0, 5])
def test_broken_arguments_are_flagged_at_the_first_impossible_character(split_seed: int) -> None:
    rng = random.Random(split_seed)
    for b in broken_calls():
        check = ToolCallCheck(b.tool)
        flagged_after = None
        fed = 0
        for p in pieces(b.arguments, rng):
            fed += len(p)
            got = [v for v in check.feed(p) if v.code == "E_TOOL_ARGS"]
            if got and flagged_after is None:
                flagged_after = fed
                assert got[0].span[0] == b.first_bad, b
        assert flagged_after is not None, b
        # Flagged within the very piece that carried the bad character.
        assert flagged_after - b.first_bad <= 6, b
        assert not check.ok


def test_truncated_arguments_are_broken_at_the_end_never_repaired() -> None:
    check = ToolCallCheck("run_shell", SHELL)
    verdicts = run(check, ['{"command": "rm -r', "f build"])
    assert [v.code for v in verdicts] == ["E_TOOL_ARGS"]
    assert verdicts[0].span == (len('{"command": "rm -rf build'),) * 2
    assert "unfinished" in verdicts[0].detail
    assert check.value is None and not check.complete


def test_schema_violations_name_the_argument() -> None:
    check = ToolCallCheck("run_shell", SHELL)
    verdicts = run(check, ['{"command": 42, ', '"force": true}'])
    codes = sorted((v.code, v.detail) for v in verdicts)
    assert [c for c, _ in codes] == ["E_TOOL_SCHEMA", "E_TOOL_SCHEMA"]
    assert any("/command" in d and "not of type 'string'" in d for _, d in codes)
    assert any("force" in d for _, d in codes)
    assert all(v.severity == "minor" for v in verdicts)


def test_rm_rf_root_in_a_command_argument_is_critical_as_it_streams() -> None:
    check = ToolCallCheck("run_shell", SHELL)
    first = check.feed('{"command": "rm -rf /')
    assert first == []  # "/" might still become "/tmp/build"
    got = check.feed('", "timeout": 5}')
    assert [(v.code, v.severity) for v in got] == [("E_UNSAFE_COMMAND", "critical")]
    assert got[0].detail.startswith("run_shell: ")
    assert check.finish() == []


def test_escaped_command_is_caught_in_the_decoded_string() -> None:
    check = ToolCallCheck("run_shell", SHELL)
    verdicts = run(check, ['{"command": "echo hi\\nrm -rf \\u002f"}'])
    assert [v.code for v in verdicts] == ["E_UNSAFE_COMMAND"]
    assert "in a string argument" in verdicts[0].detail


def test_a_harmless_rm_is_not_flagged() -> None:
    assert run(ToolCallCheck("run_shell", SHELL), ['{"command": "rm -rf /tmp/build"}']) == []


def test_a_secret_in_any_argument_is_critical() -> None:
    check = ToolCallCheck("http_post", None)
    key = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
    verdicts = run(check, ['{"headers": {"auth": "', key, '"}}'])
    assert [(v.code, v.severity) for v in verdicts] == [("E_SECRET", "critical")]


def test_unknown_tool_is_reported_once() -> None:
    check = ToolCallCheck("rm_everything", None, known=False)
    verdicts = run(check, ["{", "}"])
    assert [v.code for v in verdicts] == ["E_TOOL_UNKNOWN"]


def test_schema_errors_for_a_400() -> None:
    assert tool_schema_error(SHELL) is None
    assert tool_schema_error(None) is None
    assert "object" in (tool_schema_error([1]) or "")
    assert "invalid JSON Schema" in (tool_schema_error({"type": "strnig"}) or "")


def test_identical_calls_across_requests_loop_minor_then_critical() -> None:
    call = ("read_file", '{"path": "a.txt"}')
    same_again = ("read_file", '{ "path" : "a.txt" }')
    assert find_tool_loops([call, same_again]) == []
    minor = find_tool_loops([call, same_again, call])
    assert [(v.code, v.severity) for v in minor] == [("E_TOOL_LOOP", "minor")]
    assert "3 times in a row" in minor[0].detail
    critical = find_tool_loops([call] * 5)
    assert [(v.code, v.severity) for v in critical] == [("E_TOOL_LOOP", "critical")]
    other = ("read_file", '{"path": "b.txt"}')
    assert find_tool_loops([call, call, other]) == []
    # Coming back to a call after something else happened is not a loop.
    assert find_tool_loops([call, other, call, other, call]) == []


def test_short_cycles_count_and_exempt_tools_never_do() -> None:
    a, b = ("ls", '{"d": "."}'), ("cd", '{"d": ".."}')
    cycle = find_tool_loops([a, b, a, b, a, b], ToolLoopSettings(minor=3, critical=4))
    assert [v.severity for v in cycle] == ["minor"]
    assert "cycle of 2 calls (ls -> cd)" in cycle[0].detail
    assert find_tool_loops([a, b, a, b]) == []
    wait = ("wait", "{}")
    assert find_tool_loops([wait] * 9, ToolLoopSettings(exempt=frozenset({"wait"}))) == []
    n = ToolLoopSettings(minor=2, critical=3)
    assert [v.severity for v in find_tool_loops([a, a, a], n)] == ["critical"]


def test_canonical_arguments() -> None:
    assert canonical_arguments('{"b": 2, "a": 1}') == canonical_arguments('{"a":1,"b":2}')
    assert canonical_arguments(" {broken ") == "{broken"
