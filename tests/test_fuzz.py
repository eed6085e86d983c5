"""Fuzzing with hypothesis: the config loader, the batch script parser, every sentinel check and
the redactor must never raise anything but their documented one-line errors.

``max_examples`` is 500 per property in CI; set ``HERMES_FUZZ_EXAMPLES=10000`` for the long run.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hermes_tui.batch import ScriptError, parse_script
from hermes_tui.config import ConfigError, load_config
from hermes_tui.redact import redact
from sentinel.checks import build_checks
from sentinel.checks.safety import SecretCheck
from sentinel.checks.stall import StallWatchdog
from sentinel.contract import Contract
from sentinel.settings import SentinelSettings
from tests.conftest import ROOT

EXAMPLES = int(os.environ.get("HERMES_FUZZ_EXAMPLES", "500"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    derandomize=EXAMPLES <= 500,  # CI runs are repeatable; long runs explore
)
BASE = (ROOT / "config.toml").read_text()
BASE_LINES = BASE.splitlines(keepends=True)
WORKDIR = Path(tempfile.mkdtemp(prefix="hermes-fuzz-"))

# TOML-ish and JSON-ish alphabets: structure characters are much likelier than in random text.
TOMLISH = st.text(
    alphabet=st.sampled_from(list("[]{}=.\"'#\n ,:-_0123456789abcdefxyz") + ["\\", "\x00", "é"]),
    max_size=300,
)
VALUES = st.sampled_from(
    [
        '""',
        '"x"',
        "0",
        "-1",
        "1e309",
        "nan",
        "inf",
        "true",
        "[]",
        "{}",
        "[1, 'a']",
        "{ a = 1 }",
        '"embedded:nope"',
        '"/dev/null"',
        "1979-05-27",
        '"""',
        "'",
        "9" * 30,
    ]
)


@st.composite
def mutated_config(draw) -> str:
    """The default config with a few line-level mutations."""
    lines = list(BASE_LINES)
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(["delete", "duplicate", "value", "insert", "truncate", "swap"]))
        if op == "delete":
            del lines[i]
        elif op == "duplicate":
            lines.insert(i, lines[i])
        elif op == "value" and "=" in lines[i]:
            key = lines[i].split("=", 1)[0]
            lines[i] = f"{key}= {draw(VALUES)}\n"
        elif op == "insert":
            lines.insert(i, draw(TOMLISH) + "\n")
        elif op == "truncate":
            lines[i] = lines[i][: draw(st.integers(0, len(lines[i])))]
        elif op == "swap" and i + 1 < len(lines):
            lines[i], lines[i + 1] = lines[i + 1], lines[i]
        if not lines:
            lines = [""]
    return "".join(lines)


def _load(text: str | bytes) -> None:
    path = WORKDIR / "config.toml"
    (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)
    try:
        load_config(path)
    except ConfigError as exc:
        assert "\n" not in str(exc), str(exc)


@FUZZ
@given(TOMLISH)
def test_config_loader_random_tomlish_text(text):
    _load(text)


@FUZZ
@given(mutated_config())
def test_config_loader_mutated_default_config(text):
    _load(text)


@FUZZ
@given(st.binary(max_size=200))
def test_config_loader_random_bytes(data):
    _load(data)


# -- batch scripts -------------------------------------------------------------------------------

JSONISH = st.text(alphabet=st.sampled_from(list('{}[]":,\n tofextrcd0123456789-\\u')), max_size=200)
TURN = st.fixed_dictionaries(
    {
        "to": st.one_of(st.text(max_size=8), st.lists(st.text(max_size=5), max_size=3), st.none()),
        "text": st.one_of(st.text(max_size=30), st.integers(), st.none()),
    },
)


def _parse(data: bytes, suffix: str) -> None:
    path = WORKDIR / f"script{suffix}"
    path.write_bytes(data)
    try:
        parse_script(path)
    except ScriptError as exc:
        assert "\n" not in str(exc), str(exc)


@FUZZ
@given(st.one_of(TOMLISH, JSONISH), st.sampled_from([".toml", ".jsonl"]))
def test_script_parser_random_text(text, suffix):
    _parse(text.encode("utf-8", "surrogatepass"), suffix)


@FUZZ
@given(st.binary(max_size=200), st.sampled_from([".toml", ".jsonl", ""]))
def test_script_parser_random_bytes(data, suffix):
    _parse(data, suffix)


@FUZZ
@given(st.lists(TURN, max_size=4))
def test_script_parser_random_turn_tables(turns):
    import json

    _parse("".join(json.dumps(t) + "\n" for t in turns).encode(), ".jsonl")


# -- sentinel checks ---------------------------------------------------------------------------------

SCHEMA = {"type": "object", "required": ["goal"], "properties": {"goal": {"type": "string"}}}
CONTRACTS = [
    Contract(
        kind="text",
        system_prompt="You are the architect. Plan the work carefully.",
        canary="HERMES-CANARY-abc123",
    ),
    Contract(kind="code", banned_imports=("os", "subprocess"), max_tokens=50),
    Contract(
        kind="json",
        schema=SCHEMA,
        max_words=20,
        system_prompt="Answer in JSON.",
        canary="HERMES-CANARY-x",
    ),
]
SETTINGS = SentinelSettings()
OUTPUTISH = st.lists(
    st.one_of(
        st.sampled_from(
            list('{}[]":,\n `#$|&;>-_/~*()')
            + [
                "```python\n",
                "import os\n",
                "rm -rf /",
                "AKIA",
                "sk-",
                "ghp_",
                "password = '",
                "-----BEGIN ",
                "PRIVATE KEY-----",
                "HERMES-CANARY-",
                "\x1b[",
                "\ud800",
            ]
        ),
        st.characters(),
        st.text(alphabet="abcdefXYZ0123456789", min_size=16, max_size=40),
    ),
    max_size=60,
).map("".join)


@st.composite
def split_text(draw) -> tuple[str, list[str]]:
    text = draw(OUTPUTISH)
    cuts = sorted(set(draw(st.lists(st.integers(0, len(text)), max_size=12))))
    bounds = [0, *cuts, len(text)]
    return text, [text[a:b] for a, b in zip(bounds, bounds[1:], strict=False) if b > a]


@FUZZ
@given(split_text(), st.integers(0, len(CONTRACTS) - 1))
def test_every_check_survives_random_text_and_splits(case, which):
    text, pieces = case
    for check in build_checks(CONTRACTS[which], SETTINGS):
        verdicts = []
        for piece in pieces:
            verdicts += check.feed(piece)
        verdicts += check.finish()
        for v in verdicts:
            assert 0 <= v.span[0] <= v.span[1] <= len(text), (check.name, v)
            assert v.code and v.severity in ("minor", "critical")


@FUZZ
@given(st.lists(st.tuples(st.floats(0, 100), st.integers(0, 10_000)), max_size=30))
def test_stall_watchdog_survives_any_timing(events):
    dog = StallWatchdog(1.0, 2.0)
    for now, offset in sorted(events):
        dog.touch(offset)
        dog.poll(now)


# -- redaction ------------------------------------------------------------------------------------


@FUZZ
@given(split_text())
def test_redact_is_idempotent_and_hides_what_the_sentinel_flags(case):
    text, _ = case
    once = redact(text)
    assert redact(once) == once
    check = SecretCheck()
    flagged = check.feed(text) + check.finish()
    for v in flagged:
        secret = text[v.span[0] : v.span[1]]
        if len(secret) >= 8 and not re.fullmatch(r"\W*", secret):
            assert secret not in once, (secret, once)
