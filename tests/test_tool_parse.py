"""Parsing tool calls out of streamed model output (agents.tool_parse), on every split."""

from __future__ import annotations

import json
import random

import pytest

from agents.tool_parse import ArgsDelta, CallEnd, CallStart, TextDelta, ToolCallParser
from agents.tool_prompt import render_messages, template_uses_tools


def parse(text: str, tools=("get_weather", "run_shell"), seed: int | None = 0, **kw):
    """Feed ``text`` in random 1-7 character pieces; return (content, calls)."""
    parser = ToolCallParser(tools, **kw)
    rng = random.Random(seed)
    events = []
    i = 0
    while i < len(text):
        k = len(text) if seed is None else rng.randint(1, 7)
        events.extend(parser.feed(text[i : i + k]))
        i += k
    events.extend(parser.finish())
    content = "".join(e.text for e in events if isinstance(e, TextDelta))
    calls: dict[int, dict] = {}
    for e in events:
        if isinstance(e, CallStart):
            assert e.index not in calls
            calls[e.index] = {"name": e.name, "arguments": "", "ended": False, "id": e.id}
        elif isinstance(e, ArgsDelta):
            assert not calls[e.index]["ended"]
            calls[e.index]["arguments"] += e.text
        elif isinstance(e, CallEnd):
            calls[e.index]["ended"] = True
    assert all(c["ended"] for c in calls.values())
    return content, [calls[i] for i in sorted(calls)]


SEEDS = [None, 0, 1, 2, 3]


@pytest.mark.parametrize("seed", SEEDS)
def test_hermes_tags_become_calls_with_raw_arguments(seed) -> None:
    out = (
        'Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": '
        '{"city": "Paris \\"FR\\"", "days": [1, 2]}}\n</tool_call>\n'
        '<tool_call>{"arguments": {"command": "ls"}, "name": "run_shell"}</tool_call>'
    )
    content, calls = parse(out, seed=seed)
    assert content == "Let me check.\n\n"
    assert [c["name"] for c in calls] == ["get_weather", "run_shell"]
    assert calls[0]["arguments"] == '{"city": "Paris \\"FR\\"", "days": [1, 2]}'
    assert calls[1]["arguments"] == '{"command": "ls"}'
    assert calls[0]["id"] != calls[1]["id"] and calls[0]["id"].startswith("call_")


@pytest.mark.parametrize("seed", SEEDS)
def test_arguments_as_a_json_string_are_decoded(seed) -> None:
    out = '<tool_call>{"name": "run_shell", "arguments": "{\\"command\\": \\"ls\\"}"}</tool_call>'
    _, calls = parse(out, seed=seed)
    assert calls[0]["arguments"] == '{"command": "ls"}'


@pytest.mark.parametrize("seed", SEEDS)
def test_broken_arguments_pass_through_unrepaired(seed) -> None:
    out = '<tool_call>{"name": "run_shell", "arguments": {"command": "ls",, }}</tool_call>after'
    content, calls = parse(out, seed=seed)
    assert calls[0]["arguments"] == '{"command": "ls",, }'
    cut = '<tool_call>{"name": "run_shell", "arguments": {"command": "rm -r'
    content, calls = parse(cut, seed=seed)
    assert calls == [
        {
            "name": "run_shell",
            "arguments": '{"command": "rm -r',
            "ended": True,
            "id": calls[0]["id"],
        }
    ]
    assert content == ""


@pytest.mark.parametrize("seed", SEEDS)
def test_a_wrapper_that_is_not_json_is_handed_over_as_broken_arguments(seed) -> None:
    content, calls = parse("<tool_call>run_shell ls</tool_call>ok", seed=seed)
    assert calls[0]["name"] == ""
    with pytest.raises(ValueError):
        json.loads(calls[0]["arguments"])
    assert content == "ok"


@pytest.mark.parametrize("seed", SEEDS)
def test_plain_json_call_as_the_whole_content(seed) -> None:
    out = '  {"name": "get_weather", "arguments": {"city": "Oslo"}}\n'
    content, calls = parse(out, seed=seed)
    assert content == ""
    assert calls[0]["name"] == "get_weather" and calls[0]["arguments"] == '{"city": "Oslo"}'
    fenced = '```json\n{"name": "run_shell", "parameters": {"command": "pwd"}}\n```\n'
    content, calls = parse(fenced, seed=seed)
    assert content == "" and calls[0]["arguments"] == '{"command": "pwd"}'
    # Cut off once it was known to be a call: a (broken) call, not text.
    content, calls = parse('{"name": "get_weather", "argum', seed=seed)
    assert content == "" and calls[0]["name"] == "get_weather" and calls[0]["arguments"] == ""


@pytest.mark.parametrize("seed", SEEDS)
def test_json_that_is_not_a_call_stays_text_unchanged(seed) -> None:
    for out in [
        '{"name": "Alice", "age": 3}',
        '{"city": "Oslo", "name": "get_weather"}',
        '```json\n{"a": 1}\n```',
        "```python\nprint(1)\n```",
        "[1, 2]",
        "Hello <tool",
        "a < b and <tool_cal> is not a tag",
    ]:
        content, calls = parse(out, seed=seed)
        assert (content, calls) == (out, []), out


def test_no_tools_means_no_plain_json_calls() -> None:
    out = '{"name": "get_weather", "arguments": {}}'
    assert parse(out, tools=()) == (out, [])


def test_text_streams_without_waiting_for_the_end() -> None:
    parser = ToolCallParser(["f"])
    assert parser.feed("Hello") == [TextDelta("Hello")]
    assert parser.feed(" wor<tool") == [TextDelta(" wor")]  # a possible tag is held
    assert parser.feed("box>") == [TextDelta("<toolbox>")]
    got = parser.feed('<tool_call>{"name": "f", "arguments": {"a": 1')
    assert [type(e) for e in got] == [CallStart, ArgsDelta]
    assert got[1] == ArgsDelta(0, '{"a": 1')


def test_smollm2_template_has_no_tools_and_gets_the_fallback() -> None:
    assert not template_uses_tools("{% for m in messages %}{{ m['content'] }}{% endfor %}")
    assert template_uses_tools("{% if tools %}{{ tools | tojson }}{% endif %}")
    tools = [{"type": "function", "function": {"name": "run_shell", "parameters": {}}}]
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "list files"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "run_shell", "arguments": '{"command": "ls"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "a.txt"},
    ]
    flat, extra = render_messages(messages, tools, "auto", native=False)
    assert extra == {}
    assert [m["role"] for m in flat] == ["system", "user", "assistant", "user"]
    assert flat[0]["content"].startswith("Be brief.") and "<tools>" in flat[0]["content"]
    assert '"name": "run_shell"' in flat[0]["content"]
    assert flat[2]["content"] == (
        '<tool_call>\n{"name": "run_shell", "arguments": {"command": "ls"}}\n</tool_call>'
    )
    assert flat[3]["content"] == "<tool_response>\na.txt\n</tool_response>"
    none, _ = render_messages(messages[:2], tools, "none", native=False)
    assert "<tools>" not in none[0]["content"]
    native, extra = render_messages(messages, tools, "required", native=True)
    assert extra["tools"] == tools and extra["tool_choice"] == "required"
    assert native[2]["tool_calls"][0]["function"]["arguments"] == {"command": "ls"}
