"""Word budget and banned imports: found in code, never in prose."""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st

from sentinel.checks.constraints import BannedImportCheck, WordLimitCheck

from .checks_util import run, split_invariant


def found(make: Callable, text: str) -> list[str]:
    ref = split_invariant(make, text)
    assert all(v.code in ("E_BANNED_IMPORT", "E_LENGTH") and v.severity == "minor" for v in ref)
    return [text[v.span[0] : v.span[1]] for v in ref]


def test_word_limit_flags_the_crossing_word_once() -> None:
    text = "One two - three, four | five six seven eight"
    v = run(lambda: WordLimitCheck(5), text)
    assert [(x.code, x.span) for x in v] == [("E_LENGTH", (29, 32))]
    assert found(lambda: WordLimitCheck(5), text) == ["six"]
    assert found(lambda: WordLimitCheck(8), text) == []
    assert found(lambda: WordLimitCheck(7), text) == ["eight"]  # decided at the end


BANNED = ["requests", "subprocess", "socket", "fs", "axios", "os/exec", "stdio.h", "std::process"]


def test_imports_in_each_language_are_found_by_parsing_code() -> None:
    text = (
        "We could use requests or subprocess here, but import requests is not allowed.\n"
        "```python\nimport os, requests as r\nfrom subprocess import run\n"
        "x = __import__('socket')\n```\n"
        "```js\nconst fs = require('fs');\nimport axios from 'axios';\n```\n"
        '```go\nimport (\n  "fmt"\n  "os/exec"\n)\n```\n'
        "```c\n#include <stdio.h>\n```\n"
        "```rust\nuse std::process::Command;\n```\n"
    )
    got = found(lambda: BannedImportCheck(BANNED), text)
    assert got == [
        "requests", "subprocess", "socket", "fs", "axios", "os/exec", "stdio.h",
        "std::process::Command",
    ]  # fmt: skip


def test_python_ast_finds_importlib_and_submodules() -> None:
    text = (
        "```python\nimport importlib\nmod = importlib.import_module(\n    'requests.adapters'\n)\n"
        "from os import path, system\n```\n"
    )
    got = found(lambda: BannedImportCheck(["requests", "os.system"]), text)
    assert sorted(got) == ["os", "requests.adapters"]


def test_prose_is_not_code_unless_the_contract_is_code() -> None:
    text = "import requests\nresp = requests.get(url)\n"
    assert found(lambda: BannedImportCheck(["requests"]), text) == []
    assert found(lambda: BannedImportCheck(["requests"], contract_kind="code"), text) == [
        "requests"
    ]
    fenced = "Here is how: import requests is not needed.\n```python\nimport json\n```\n"
    assert found(lambda: BannedImportCheck(["requests"], contract_kind="code"), fenced) == []


def test_other_fence_content_and_similar_names_are_fine() -> None:
    text = "```python\nimport requests_cache\nfrom mysocket import x\n```\n"
    assert found(lambda: BannedImportCheck(["requests", "socket"]), text) == []


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                "```python\n",
                "```\n",
                "import ",
                "requests",
                "from ",
                " x\n",
                "word ",
                "\n",
                "__import__('requests')",
                "```js\n",
                "require('fs')",
            ]
        ),
        max_size=40,
    ),
    st.integers(0, 99),
)
def test_random_streams_split_invariant(parts: list[str], seed: int) -> None:
    text = "".join(parts)
    for make in (lambda: BannedImportCheck(["requests", "fs"]), lambda: WordLimitCheck(7)):
        ref = run(make, text, None)
        assert sorted(map(repr, run(make, text, seed))) == sorted(map(repr, ref))
