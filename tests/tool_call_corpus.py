"""A corpus of tool calls for the tool-call checks (tests and benchmarks/bench_gateway.py G3).

``valid_calls()``: >= 100 valid (tool, parameters schema, arguments text) of different shapes
(flat, nested, arrays, unicode and escapes, numbers in every JSON form, empty objects, pretty
printed, long strings). ``broken_calls()``: arguments that stop being completable JSON at a
known character, each with that offset (the one a correct streaming check must flag).
"""

from __future__ import annotations

import json
import random
from typing import Any, NamedTuple


class Call(NamedTuple):
    tool: str
    schema: dict[str, Any]
    arguments: str


class Broken(NamedTuple):
    tool: str
    arguments: str
    first_bad: int  # offset of the first character after which no valid JSON can follow
    what: str


_WORDS = ["src/main.py", "café", 'say "hi"', "tab\there", "∑ ∫", "line1\nline2", "emoji 🎉", ""]


def _schema_for(value: Any) -> dict[str, Any]:
    """A strict schema that ``value`` satisfies (types, required keys, no extras)."""
    if isinstance(value, bool):
        return {"type": "boolean"}
    if isinstance(value, int):
        return {"type": "integer"}
    if isinstance(value, float):
        return {"type": "number"}
    if isinstance(value, str):
        return {"type": "string"}
    if value is None:
        return {"type": "null"}
    if isinstance(value, list):
        return {"type": "array", "items": _schema_for(value[0])} if value else {"type": "array"}
    props = {k: _schema_for(v) for k, v in value.items()}
    return {
        "type": "object",
        "properties": props,
        "required": sorted(props),
        "additionalProperties": False,
    }


def _value(rng: random.Random, depth: int) -> Any:
    kind = rng.choice(
        ["str", "int", "float", "bool", "null", "list", "obj"]
        if depth < 3
        else ["str", "int", "float", "bool", "null"]
    )
    if kind == "str":
        return rng.choice(_WORDS) + ("x" * rng.choice([0, 0, 5, 300]))
    if kind == "int":
        return rng.choice([0, -1, 7, 10**12, -(10**15)])
    if kind == "float":
        return rng.choice([0.5, -2.25, 1e-7, 6.02e23, 3.0])
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "null":
        return None
    if kind == "list":
        item = _value(rng, depth + 1)
        return [item] * rng.randint(0, 3)
    return {f"k{i}": _value(rng, depth + 1) for i in range(rng.randint(0, 3))}


def _dump(rng: random.Random, value: Any) -> str:
    style = rng.randrange(4)
    if style == 0:
        return json.dumps(value)
    if style == 1:
        return json.dumps(value, separators=(",", ":"))
    if style == 2:
        return json.dumps(value, indent=2)
    return json.dumps(value, ensure_ascii=False)


def valid_calls(n: int = 120, seed: int = 7) -> list[Call]:
    rng = random.Random(seed)
    calls = [
        Call("run_shell", _schema_for({"command": "ls -la"}), '{"command": "ls -la"}'),
        Call("get_time", {"type": "object", "properties": {}}, "{}"),
        Call("get_time", {"type": "object"}, "  { }  "),
        Call("read_file", _schema_for({"path": "/tmp/x"}), '{"path":"/tmp/x"}'),
        Call("search", _schema_for({"q": "rm -rf explained"}), '{"q": "rm -rf explained"}'),
        Call("calc", _schema_for({"x": -0.0}), '{"x": -0.0e+0}'),
        Call("calc", _schema_for({"x": 1.5}), '{"x": 1.5E-3}'),
        Call("emit", _schema_for({"s": "\\u00e9"}), '{"s": "\\\\u00e9 \\u00e9 \\ud83c\\udf89"}'),
    ]
    while len(calls) < n:
        value = {f"arg{i}": _value(rng, 1) for i in range(rng.randint(1, 5))}
        calls.append(Call(f"tool_{len(calls)}", _schema_for(value), _dump(rng, value)))
    for c in calls:  # the corpus is what it says it is
        assert isinstance(json.loads(c.arguments), dict), c
    return calls


def broken_calls() -> list[Broken]:
    """Each cut or corrupted at a known first impossible character."""
    out: list[Broken] = []

    def add(tool: str, good_prefix: str, bad: str, what: str) -> None:
        out.append(Broken(tool, good_prefix + bad, len(good_prefix), what))

    add("run_shell", '{"command": "ls"}', "}", "an extra closing brace")
    add("run_shell", '{"command": "ls", ', "}", "a trailing comma")
    add("run_shell", '{"command": ', "ls}", "an unquoted string")
    add("run_shell", "{", "command: 1}", "an unquoted key")
    add("run_shell", '{"command": "a', '\tb"}', "a raw tab in a string")
    add("run_shell", '{"command": "a\\', 'x"}', "a bad escape")
    add("run_shell", '{"n": 0', "1}", "a leading zero")
    add("run_shell", '{"n": 1.', "}", "a number ending in a dot")
    add("run_shell", '{"n": tru', "x}", "a broken literal")
    add("run_shell", '{"a": 1 ', '"b": 2}', "a missing comma")
    add("run_shell", '{"a" ', "1}", "a missing colon")
    add("run_shell", "", "[1, 2]", "an array, not an object")
    add("run_shell", "", '"ls"', "a string, not an object")
    add("run_shell", '{"a": [1, 2', "}", "a mismatched bracket")
    add("run_shell", '{"a": {"b": "c"}', "]", "a mismatched brace")
    add("run_shell", '{"a": "\\u12', 'zz"}', "a bad unicode escape")
    add("run_shell", '{"a": 1} ', '{"b": 2}', "a second object")
    add("run_shell", '{"a": -', "x}", "a bare minus")
    add("run_shell", '{"a": 1e', "}", "an empty exponent")
    add("run_shell", "{", "'a': 1}", "single quotes")
    rng = random.Random(3)
    for call in valid_calls(60, seed=11):  # random cuts inside valid calls: a bad byte there
        text = call.arguments
        cut = rng.randrange(1, len(text))
        prefix = text[:cut]
        # '\x01' can never appear raw in JSON: the first impossible character is right here.
        out.append(Broken(call.tool, prefix + "\x01" + text[cut:], cut, "a control byte"))
    return out


def pieces(text: str, rng: random.Random) -> list[str]:
    """``text`` cut into token-like pieces of 1-6 characters."""
    out, i = [], 0
    while i < len(text):
        k = rng.randint(1, 6)
        out.append(text[i : i + k])
        i += k
    return out
