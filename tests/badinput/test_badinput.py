"""The bad-input corpus: every malformed config, script, model file, prompt and database a user
can hand to hermes ends in ONE line on stderr (never a traceback), the documented exit code
(2 usage/config, 3 runtime, 1 critical verdict, 0 fine), and no data lost.

Most cases run in-process through ``click.testing.CliRunner`` (milliseconds each); a handful
run as real subprocesses to prove the same holds for the installed entry point. Cases that need
the model share one batch run (one model load) with ``max_tokens`` of 4.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from hermes_tui.cli import main
from tests.conftest import ROOT, hermes_env, write_small_config
from tests.gguf_factory import write_llama_gguf

CORPUS = Path(__file__).with_name("corpus")
BASE = (ROOT / "config.toml").read_text()
MAX_TOKENS = 4


# -- helpers -------------------------------------------------------------------------------------

# Known bugs (see docs/reliability.md): case id -> what goes wrong today. Strict xfail, so a fix
# turns them into failures that say "remove me".
KNOWN_BUGS: dict[str, str] = {}


def cases(items: list, key=lambda c: c[0]) -> list:
    """pytest params with ids, the known bugs marked strict xfail."""
    out = []
    for item in items:
        cid = key(item)
        marks = (
            [pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[cid])] if cid in KNOWN_BUGS else []
        )
        out.append(
            pytest.param(*(item if isinstance(item, tuple) else (item,)), id=cid, marks=marks)
        )
    return out


def invoke(args: list[str]) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_one_line(result: Result, code: int, starts: str = "hermes: ") -> str:
    """Exit ``code``, exactly one stderr line starting with ``starts``, no traceback."""
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert "Traceback" not in result.stderr + result.stdout
    assert result.exit_code == code, (result.exit_code, result.stderr, result.stdout[-400:])
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(starts), lines[0]
    return lines[0]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else "absent"


def text_config(tmp: Path, max_tokens: int = MAX_TOKENS, n_ctx: int = 2048) -> Path:
    """The default config with text contracts, no judge and tiny answers (a small ``n_ctx``
    keeps the prompt prefill, the slow part on a CPU, short)."""
    path = write_small_config(tmp, max_tokens=max_tokens)
    text = path.read_text().replace('contract = "json"', 'contract = "text"')
    text = text.replace("n_ctx = 2048", f"n_ctx = {n_ctx}")
    path.write_text(text.replace('contract = "code"', 'contract = "text"'))
    return path


@pytest.fixture(scope="module")
def known_db(tmp_path_factory) -> Path:
    """A real hermes database with one session in it (written by the store, not by hand)."""
    import asyncio

    from hermes_tui.store import Store

    path = tmp_path_factory.mktemp("known") / "known.db"

    async def seed() -> None:
        store = await Store.open(path)
        sid = await store.create_session("batch", title="keep me", personas=["coder"])
        await store.add_message(sid, "coder", "user", "@coder hello")
        await store.add_message(sid, "coder", "assistant", "def keep(): pass")
        await store.close()

    asyncio.run(seed())
    return path


@pytest.fixture
def db_copy(tmp_path, known_db) -> Path:
    dest = tmp_path / "known.db"
    dest.write_bytes(known_db.read_bytes())
    return dest


# -- 1. config.toml, generated systematically from the default config ----------------------------

_ASSIGN = re.compile(r"^(?P<key>[A-Za-z_][\w.]*)\s*=\s*(?P<value>.+?)\s*(?:#.*)?$")


def _content_lines() -> list[tuple[int, str, str]]:
    """(line index, table header, line) of every key/value or header line outside strings."""
    out, table, in_string = [], "", False
    for i, line in enumerate(BASE.splitlines()):
        if line.count('"""') % 2 == 1:
            in_string = not in_string
            if not in_string:
                continue
            out.append((i, table, line))  # the opening line: `system_prompt = """...`
            continue
        if in_string or not line.strip() or line.lstrip().startswith("#"):
            continue
        if line.startswith("["):
            table = line.strip("[] ")
        out.append((i, table, line))
    return out


def _replace_line(i: int, new: str) -> str:
    lines = BASE.splitlines()
    lines[i] = new
    return "\n".join(lines) + "\n"


def _wrong_value(value: str) -> str:
    if value.startswith('"'):
        return "42"
    if value.startswith("[") or value.startswith("{"):
        return "3.5" if "=" in value else '"not a list"'
    return '"not a number"'


def _generated_config_cases() -> list[tuple[str, str]]:
    cases: list[tuple[str, str]] = []
    for i, table, line in _content_lines():
        where = f"L{i + 1}"
        m = _ASSIGN.match(line)
        if line.startswith("["):
            cases.append((f"{where}-header-unclosed", _replace_line(i, line.rstrip("]"))))
            cases.append((f"{where}-header-duplicated", _replace_line(i, f"{line}\n{line}")))
            continue
        assert m, line
        key, value = m.group("key"), m.group("value")
        # Syntax: no '=', a duplicated key, a value cut in half.
        cases.append((f"{where}-{key}-no-equals", _replace_line(i, f"{key} {value}")))
        cases.append((f"{where}-{key}-duplicate", _replace_line(i, f"{line}\n{line}")))
        if not value.startswith('"""'):
            cut = value[: max(1, len(value) // 2)] if len(value) > 1 else value + "["
            if value.startswith(("[", "{", '"')):
                cases.append((f"{where}-{key}-cut", _replace_line(i, f"{key} = {cut}")))
            # Types: the wrong kind of value (schema tables hold JSON Schema: also invalid).
            cases.append(
                (f"{where}-{key}-wrong-type", _replace_line(i, f"{key} = {_wrong_value(value)}"))
            )
        # Unknown keys, in every table that is not a free-form JSON Schema.
        if "schema" not in table and not value.startswith('"""'):
            cases.append((f"{where}-unknown-key", _replace_line(i, f"{line}\nbogus_{i} = 1")))
    return cases


_PERSONA_RE = r"\[personas\.coder\]\nmodel = \"smollm2\""
EXPLICIT_CONFIG_CASES: list[tuple[str, str]] = [
    # bad references
    *[
        (
            f"{p}-model-unknown",
            BASE.replace(f'[personas.{p}]\nmodel = "smollm2"', f'[personas.{p}]\nmodel = "nope"'),
        )
        for p in ("architect", "coder", "critic")
    ],
    (
        "default-persona-unknown",
        BASE.replace('default_persona = "architect"', 'default_persona = "poet"'),
    ),
    (
        "default-persona-all",
        BASE.replace('default_persona = "architect"', 'default_persona = "all"'),
    ),
    (
        "sentinel-model-unknown",
        BASE.replace('model = "smollm2"\nmax_corrections', 'model = "judge"\nmax_corrections'),
    ),
    (
        "severity-unknown-code",
        BASE.replace("# [sentinel.severity]", "[sentinel.severity]").replace(
            '# E_LENGTH = "critical"', 'E_NOPE = "critical"'
        ),
    ),
    (
        "severity-bad-value",
        BASE.replace("# [sentinel.severity]", "[sentinel.severity]").replace(
            '# E_LENGTH = "critical"', 'E_LENGTH = "fatal"'
        ),
    ),
    (
        "schema-file-missing",
        BASE.replace("max_words = 120", 'max_words = 120\nschema_file = "x.json"').replace(
            "[personas.critic.schema]", "[personas.critic.schema_unused]"
        ),
    ),
    (
        "schema-and-schema-file",
        BASE.replace("max_words = 120", 'max_words = 120\nschema_file = "x.json"'),
    ),
    (
        "reserved-persona-all",
        BASE.replace("[personas.critic]", "[personas.all]").replace(
            "[personas.critic.schema]", "[personas.all.schema]"
        ),
    ),
    # bad schemas
    (
        "schema-type-typo",
        BASE.replace(
            'properties.goal = { type = "string", minLength = 1 }',
            'properties.goal = { type = "strung" }',
        ),
    ),
    ("schema-minlength-negative", BASE.replace("minLength = 1", "minLength = -1")),
    ("schema-required-not-list", BASE.replace('required = ["goal", "steps"]', 'required = "goal"')),
    ("schema-minitems-string", BASE.replace("minItems = 1", 'minItems = "one"')),
    (
        "schema-enum-empty-ok-but-items-bad",
        BASE.replace('items = { type = "string" }, minItems', "items = 5, minItems"),
    ),
    (
        "json-contract-without-schema",
        BASE.replace("[personas.critic.schema]", "[personas.critic.nothing]"),
    ),
    # ranges
    ("n-ctx-2^40", BASE.replace("n_ctx = 2048", "n_ctx = 1099511627776")),
    ("n-ctx-tiny", BASE.replace("n_ctx = 2048", "n_ctx = 1")),
    ("n-gpu-layers-minus-2", BASE.replace("n_gpu_layers = 0 ", "n_gpu_layers = -2 ")),
    ("queue-size-0", BASE.replace("queue_size = 16", "queue_size = 0")),
    ("queue-size-huge", BASE.replace("queue_size = 16", "queue_size = 1000000000")),
    ("slice-tokens-0", BASE.replace("slice_tokens = 32", "slice_tokens = 0")),
    ("temperature-negative", BASE.replace("temperature = 0.2", "temperature = -0.1", 1)),
    ("temperature-huge", BASE.replace("temperature = 0.2", "temperature = 1e9", 1)),
    ("max-tokens-0", BASE.replace("max_tokens = 160", "max_tokens = 0", 1)),
    ("max-tokens-2^40", BASE.replace("max_tokens = 160", "max_tokens = 1099511627776", 1)),
    ("max-words-0", BASE.replace("max_words = 120", "max_words = 0")),
    ("max-corrections-99", BASE.replace("max_corrections = 2", "max_corrections = 99")),
    ("stall-warn-0", BASE.replace("stall_warn_s = 10.0", "stall_warn_s = 0")),
    ("stall-halt-before-warn", BASE.replace("stall_halt_s = 30.0", "stall_halt_s = 1.0")),
    ("memory-no-unit", BASE.replace('memory = "8GiB"', 'memory = "8"')),
    ("memory-negative", BASE.replace('memory = "8GiB"', 'memory = "-8GiB"')),
    ("memory-words", BASE.replace('memory = "8GiB"', 'memory = "lots"')),
    ("sentinel-device-igpu", BASE.replace('device = "cpu"\nmodel', 'device = "igpu"\nmodel')),
    (
        "banned-imports-empty-string",
        BASE.replace('banned_imports = ["os",', 'banned_imports = ["",'),
    ),
    # model paths
    ("model-path-missing", BASE.replace("embedded:smollm2-135m", "/nonexistent/model.gguf")),
    ("model-path-dir", BASE.replace("embedded:smollm2-135m", "/tmp")),
    ("model-path-not-gguf", BASE.replace("embedded:smollm2-135m", str(ROOT / "config.toml"))),
    ("model-path-empty", BASE.replace("embedded:smollm2-135m", "")),
    ("model-embedded-unknown", BASE.replace("embedded:smollm2-135m", "embedded:gpt-9")),
    ("model-url-not-http", BASE.replace('path = "embedded:smollm2-135m"', 'url = "file:///etc"')),
    (
        "model-path-and-url",
        BASE.replace(
            'path = "embedded:smollm2-135m"', 'path = "embedded:smollm2-135m"\nurl = "http://x"'
        ),
    ),
    # whole-file problems
    ("no-personas", BASE.split("# -----", 2)[0] + BASE.split("# -----", 2)[1]),
    ("no-models", BASE.replace("[models.smollm2]", "[unused_models]")),
    ("empty-file", ""),
    ("just-a-number", "42\n"),
    ("binary-garbage", "\x7fELF\x02\x01\x01"),
    ("html", "<html><body>config</body></html>\n"),
    ("json-instead-of-toml", json.dumps({"models": {}, "personas": {}})),
    ("yaml-instead-of-toml", "models:\n  smollm2:\n    path: embedded:smollm2-135m\n"),
    ("huge-comment-only", "#" + "x" * 2_000_000 + "\n"),
    ("deep-nesting", "a = " + "[" * 5000 + "]" * 5000 + "\n"),
]

CONFIG_CASES = _generated_config_cases() + EXPLICIT_CONFIG_CASES
STATIC_CONFIGS = sorted((CORPUS / "configs").glob("*.toml"))


def _check_config_case(tmp_path: Path, config: Path, db: Path) -> None:
    before = digest(config)
    db_before = digest(db)
    # The script does not exist: if the config were fine, the error would name the script.
    result = invoke(["batch", tmp_path / "no-script.toml", "--config", config, "--db", db])
    line = assert_one_line(result, 2, starts=f"hermes: {config}: ")
    assert "no-script" not in line
    assert result.stdout == ""
    assert digest(config) == before, "hermes must never rewrite the user's config"
    assert digest(db) == db_before, "a config error must not touch the database"


@pytest.mark.parametrize("name,text", cases(CONFIG_CASES))
def test_bad_config_is_one_line_exit_2(tmp_path, db_copy, name, text):
    assert text != BASE
    config = tmp_path / "config.toml"
    config.write_text(text)
    _check_config_case(tmp_path, config, db_copy)


@pytest.mark.parametrize("path", cases(STATIC_CONFIGS, key=lambda p: p.stem))
def test_bad_config_corpus_file_is_one_line_exit_2(tmp_path, db_copy, path):
    config = tmp_path / "config.toml"
    config.write_bytes(path.read_bytes())
    _check_config_case(tmp_path, config, db_copy)


def test_corpus_is_at_least_200_cases():
    total = (
        len(CONFIG_CASES)
        + len(STATIC_CONFIGS)
        + len(SCRIPT_CASES)
        + len(STATIC_SCRIPTS)
        + len(GGUF_CASES)
        + len(PROMPTS)
        + len(DB_CASES) * len(DB_COMMANDS)
    )
    assert total >= 200, total


# -- 2. batch scripts ------------------------------------------------------------------------------

SCRIPT_CASES: list[tuple[str, str, bytes]] = [
    # (name, suffix, content)
    ("toml-unknown-persona", ".toml", b'[[turn]]\nto = "poet"\ntext = "hi"\n'),
    ("toml-unknown-persona-in-list", ".toml", b'[[turn]]\nto = ["coder", "poet"]\ntext = "hi"\n'),
    ("toml-persona-empty-name", ".toml", b'[[turn]]\nto = ""\ntext = "hi"\n'),
    ("toml-to-number", ".toml", b'[[turn]]\nto = 3\ntext = "hi"\n'),
    ("toml-to-table", ".toml", b'[[turn]]\nto = { name = "coder" }\ntext = "hi"\n'),
    ("toml-text-number", ".toml", b'[[turn]]\nto = "coder"\ntext = 3\n'),
    ("toml-text-list", ".toml", b'[[turn]]\nto = "coder"\ntext = ["a"]\n'),
    ("toml-text-empty", ".toml", b'[[turn]]\nto = "coder"\ntext = ""\n'),
    ("toml-missing-text", ".toml", b'[[turn]]\nto = "coder"\n'),
    ("toml-unknown-top-key", ".toml", b'speed = 1\n[[turn]]\nto = "coder"\ntext = "x"\n'),
    ("toml-workflow-number", ".toml", b'workflow = 1\n[[turn]]\nto = "coder"\ntext = "x"\n'),
    ("toml-title-table", ".toml", b'[title]\n[[turn]]\nto = "coder"\ntext = "x"\n'),
    ("toml-syntax-bracket", ".toml", b"[[turn]\n"),
    ("toml-syntax-equals", ".toml", b'[[turn]]\nto "coder"\n'),
    ("toml-syntax-duplicate", ".toml", b'[[turn]]\nto = "coder"\nto = "critic"\ntext = "x"\n'),
    ("toml-invalid-escape", ".toml", b'[[turn]]\nto = "coder"\ntext = "\\q"\n'),
    ("toml-escaped-surrogate", ".toml", b'[[turn]]\nto = "coder"\ntext = "\\uD800"\n'),
    ("toml-control-char", ".toml", b'[[turn]]\nto = "coder"\ntext = "a\x07b"\n'),
    ("toml-no-turns", ".toml", b'title = "nothing"\nworkflow = "parallel"\n'),
    ("toml-whitespace", ".toml", b"   \n\t\n"),
    ("jsonl-not-json", ".jsonl", b"hello\n"),
    ("jsonl-number", ".jsonl", b"42\n"),
    ("jsonl-string", ".jsonl", b'"coder: hi"\n'),
    ("jsonl-null", ".jsonl", b"null\n"),
    ("jsonl-list", ".jsonl", b'["coder", "hi"]\n'),
    ("jsonl-missing-text", ".jsonl", b'{"to": "coder"}\n'),
    ("jsonl-text-null", ".jsonl", b'{"to": "coder", "text": null}\n'),
    ("jsonl-text-object", ".jsonl", b'{"to": "coder", "text": {"a": 1}}\n'),
    ("jsonl-to-null", ".jsonl", b'{"to": null, "text": "hi"}\n'),
    ("jsonl-to-list-empty-name", ".jsonl", b'{"to": [""], "text": "hi"}\n'),
    ("jsonl-unknown-key", ".jsonl", b'{"to": "coder", "text": "hi", "model": "x"}\n'),
    ("jsonl-unknown-persona", ".jsonl", b'{"to": "poet", "text": "hi"}\n'),
    ("jsonl-bad-third-line", ".jsonl", b'{"to": "coder", "text": "a"}\n\n{"to": "coder"\n'),
    ("jsonl-truncated", ".jsonl", b'{"to": "coder", "te'),
    ("jsonl-nul", ".jsonl", b'{"to": "coder", "text": "a"}\x00\n'),
    ("jsonl-utf16", ".jsonl", '{"to": "coder", "text": "hi"}\n'.encode("utf-16")),
    ("jsonl-latin1", ".jsonl", b'{"to": "coder", "text": "\xe9t\xe9"}\n'),
    ("jsonl-random-bytes", ".jsonl", bytes(range(256)) * 4),
    ("jsonl-deep-nesting", ".jsonl", b"[" * 100_000 + b"]" * 100_000 + b"\n"),
    ("toml-deep-nesting", ".toml", b"a = " + b"[" * 100_000 + b"]" * 100_000 + b"\n"),
    ("no-suffix-json", "", b'{"to": "coder", "text": "hi"}\n'),
]
STATIC_SCRIPTS = sorted((CORPUS / "scripts").iterdir())


def _check_script(tmp_path: Path, script: Path, db: Path) -> str:
    config = text_config(tmp_path)
    before = digest(db)
    result = invoke(["batch", script, "--config", config, "--db", db])
    line = assert_one_line(result, 2, starts=f"hermes: {script}: ")
    assert result.stdout == ""
    assert digest(db) == before, "a script error must not touch the database"
    return line


@pytest.mark.parametrize("name,suffix,content", cases(SCRIPT_CASES))
def test_bad_script_is_one_line_exit_2(tmp_path, db_copy, name, suffix, content):
    script = tmp_path / f"script{suffix}"
    script.write_bytes(content)
    _check_script(tmp_path, script, db_copy)


@pytest.mark.parametrize("path", STATIC_SCRIPTS, ids=[p.name for p in STATIC_SCRIPTS])
def test_bad_script_corpus_file_is_one_line_exit_2(tmp_path, db_copy, path):
    script = tmp_path / path.name
    script.write_bytes(path.read_bytes())
    _check_script(tmp_path, script, db_copy)


@pytest.mark.parametrize("suffix", [".toml", ".jsonl"])
def test_huge_script_over_10_mib_is_refused_before_parsing(tmp_path, db_copy, suffix):
    script = tmp_path / f"huge{suffix}"
    line = json.dumps({"to": "coder", "text": "x" * 1000}) + "\n"
    if suffix == ".toml":
        line = '[[turn]]\nto = "coder"\ntext = "' + "x" * 1000 + '"\n'
    script.write_text(line * (10 * 1024 + 20))
    assert script.stat().st_size > 10 * 2**20
    assert "larger than 10 MiB" in _check_script(tmp_path, script, db_copy)


def test_missing_script_and_directory_script(tmp_path, db_copy):
    _check_script(tmp_path, tmp_path / "absent.toml", db_copy)
    result = invoke(["batch", tmp_path, "--config", text_config(tmp_path), "--db", db_copy])
    assert result.exit_code == 2 and "Traceback" not in result.stderr  # click's usage error
    assert result.stderr.strip() == (
        f"hermes: Invalid value for 'SCRIPT': File '{tmp_path}' is a directory."
        " (see hermes batch --help)"
    )


def test_unknown_mention_in_text_is_a_script_error(tmp_path, db_copy):
    script = tmp_path / "m.toml"
    script.write_text('[[turn]]\nto = "coder"\ntext = "@nobody hi"\n')
    line = _check_script(tmp_path, script, db_copy)
    assert "nobody" in line and "internal error" not in line


def test_invalid_unicode_in_jsonl_text_is_a_script_error(tmp_path, db_copy):
    script = tmp_path / "s.jsonl"
    script.write_text(json.dumps({"to": "coder", "text": "bad \ud800 text"}) + "\n")
    _check_script(tmp_path, script, db_copy)


# -- 3. GGUF files ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def good_gguf(tmp_path_factory) -> Path:
    return write_llama_gguf(tmp_path_factory.mktemp("gguf") / "good.gguf")


_TRUNCATE_AT = [
    0,
    1,
    3,
    4,
    5,
    7,
    8,
    12,
    16,
    23,
    24,
    31,
    32,
    40,
    64,
    100,
    128,
    256,
    500,
    1000,
    2000,
    4000,
    8000,
    0.25,
    0.5,
    0.75,
    0.9,
    0.99,
    -100,
    -1,
]
_ABSURD = [
    ("llama.context_length", 2**40),
    ("llama.context_length", 0),
    ("llama.block_count", 0),
    ("llama.block_count", 2**40),
    ("llama.embedding_length", 0),
    ("llama.embedding_length", 2**40),
    ("llama.attention.head_count", 0),
    ("llama.attention.head_count", 2**31),
    ("llama.attention.head_count_kv", 2**20),
    ("llama.attention.key_length", 2**40),
    ("llama.feed_forward_length", 2**62),
]
GGUF_CASES: list[tuple[str, object]] = (
    [(f"truncated-{t}", t) for t in _TRUNCATE_AT]
    + [(f"{k}={v}", (k, v)) for k, v in _ABSURD]
    + [(f"magic-{m!r}", m) for m in (b"GGML", b"ggjt", b"\0\0\0\0", b"PK\x03\x04", b"gguf")]
    + [("version-99", "version"), ("tensor-count-huge", "tensors"), ("kv-count-huge", "kvs")]
)


def _broken_gguf(good: Path, tmp: Path, spec: object) -> Path:
    data = good.read_bytes()
    path = tmp / "broken.gguf"
    if isinstance(spec, (int, float)):
        cut = int(len(data) * spec) if isinstance(spec, float) else spec
        path.write_bytes(data[:cut] if cut >= 0 else data[:cut])
    elif isinstance(spec, bytes):
        path.write_bytes(spec + data[4:])
    elif isinstance(spec, tuple):
        key, value = spec
        write_llama_gguf(path, metadata={key: value})
    else:  # header fields: version (u32 at 4), tensor count (u64 at 8), kv count (u64 at 16)
        offset = {"version": 4, "tensors": 8, "kvs": 16}[spec]
        width = 4 if spec == "version" else 8
        value = (99 if spec == "version" else 2**62).to_bytes(width, "little")
        path.write_bytes(data[:offset] + value + data[offset + width :])
    return path


@pytest.mark.parametrize("name,spec", cases(GGUF_CASES))
def test_broken_gguf_to_plan_is_one_line_exit_2(tmp_path, good_gguf, name, spec):
    path = _broken_gguf(good_gguf, tmp_path, spec)
    before = digest(path)
    result = invoke(["plan", path, "--json"])
    assert_one_line(result, 2)
    assert result.stdout == ""
    assert digest(path) == before


_CONFIG_GGUF = [
    "truncated-1000",
    "truncated-0.5",
    "llama.context_length=1099511627776",
    "llama.block_count=0",
    "magic-b'GGML'",
    "truncated-3",
]


@pytest.mark.parametrize("name", _CONFIG_GGUF)
def test_broken_gguf_as_config_model(tmp_path, good_gguf, name):
    """Wrong magic is caught by the config (exit 2); a file that looks like GGUF but is broken
    fails the persona's turn with a one-line error event (exit 3), never a crash."""
    path = _broken_gguf(good_gguf, tmp_path, dict(GGUF_CASES)[name])
    config = text_config(tmp_path)
    config.write_text(config.read_text().replace("embedded:smollm2-135m", str(path)))
    script = tmp_path / "s.jsonl"
    script.write_text(json.dumps({"to": "coder", "text": "hi"}) + "\n")
    db = tmp_path / "h.db"
    result = invoke(["batch", script, "--config", config, "--db", db])
    assert "Traceback" not in result.stderr + result.stdout
    if name.startswith(("magic", "truncated-3")):
        assert_one_line(result, 2, starts=f"hermes: {config}: models.smollm2.path: ")
        return
    assert result.exit_code == 3, result.stderr
    events = [json.loads(x) for x in result.stdout.splitlines()]
    (message,) = [e for e in events if e["event"] == "message"]
    assert message["status"] == "error" and message["persona"] == "coder"
    assert message["detail"] and "\n" not in message["detail"]
    assert path.name in message["detail"]
    rows = sqlite3.connect(db).execute("SELECT status FROM messages WHERE role='assistant'")
    assert [r[0] for r in rows] == ["error"]


def _model_path_kind(tmp: Path, kind: str) -> Path:
    """A model path that is not a GGUF file, each in its own way."""
    path = tmp / f"{kind}.gguf"
    if kind == "directory":
        path.mkdir()
    elif kind == "empty":
        path.touch()
    elif kind == "text":
        path.write_text("this is a README, not a model\n")
    elif kind == "fifo":
        os.mkfifo(path)  # reading it would wait forever for a writer
    elif kind == "char-device":
        path = Path("/dev/null")
    elif kind == "unreadable":
        path.write_bytes(b"GGUF" + b"\0" * 60)
        path.chmod(0)
    elif kind == "missing":
        pass
    elif kind == "under-a-file":
        (tmp / "notes").write_text("x")
        path = tmp / "notes" / "m.gguf"
    else:
        raise AssertionError(kind)
    return path


MODEL_PATH_KINDS = {
    "directory": "{path} is a directory, not a GGUF model file",
    "empty": "{path} is empty (0 bytes), not a GGUF model file",
    "text": "not a GGUF file (bad magic): {path}",
    "fifo": "{path} is not a regular file, not a GGUF model file",
    "char-device": "{path} is not a regular file, not a GGUF model file",
    "unreadable": "cannot read model file {path}: Permission denied",
    "missing": "model file not found: {path}",
    "under-a-file": "model file not found: {path}",
}


def _skip_unreadable_as_root(kind: str) -> None:
    if kind == "unreadable" and os.geteuid() == 0:
        pytest.skip("root reads any file")


@pytest.mark.parametrize("kind", list(MODEL_PATH_KINDS))
def test_plan_of_a_path_that_is_not_a_gguf_says_what_it_is(tmp_path, kind):
    """`hermes plan /etc` said "model file not found"; each kind of wrong path gets its own
    accurate line (and a FIFO is not opened: the read would hang)."""
    _skip_unreadable_as_root(kind)
    path = _model_path_kind(tmp_path, kind)
    line = assert_one_line(invoke(["plan", path]), 2)
    assert line == "hermes: " + MODEL_PATH_KINDS[kind].format(path=path)


def test_plan_of_etc_says_it_is_a_directory():
    line = assert_one_line(invoke(["plan", "/etc"]), 2)
    assert line == "hermes: /etc is a directory, not a GGUF model file"


def test_plan_of_a_name_the_config_lacks_names_the_configs_models(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text(BASE + '\n[models.far]\nurl = "http://127.0.0.1:9/v1"\n')
    line = assert_one_line(invoke(["plan", "smollm2x", "--config", config]), 2)
    assert line == (
        f"hermes: smollm2x: no such file, and no model smollm2x in {config} "
        "(its models: smollm2, far)"
    )
    # a remote model has no file to place: it said "model file not found: far"
    line = assert_one_line(invoke(["plan", "far", "--config", config]), 2)
    assert line == (
        f"hermes: model far in {config} is served by http://127.0.0.1:9/v1: "
        "hermes plan places local GGUF files only"
    )
    # a path is still a path, whatever the config holds
    line = assert_one_line(invoke(["plan", "gone.gguf", "--config", config]), 2)
    assert line == "hermes: model file not found: gone.gguf"


@pytest.mark.parametrize("kind", ["directory", "empty", "fifo", "unreadable"])
def test_config_model_path_that_is_not_a_gguf_says_what_it_is(tmp_path, db_copy, kind):
    _skip_unreadable_as_root(kind)
    path = _model_path_kind(tmp_path, kind)
    config = text_config(tmp_path)
    config.write_text(config.read_text().replace("embedded:smollm2-135m", str(path)))
    script = tmp_path / "s.jsonl"
    script.write_text(json.dumps({"to": "coder", "text": "hi"}) + "\n")
    before = digest(db_copy)
    line = assert_one_line(invoke(["batch", script, "--config", config, "--db", db_copy]), 2)
    what = MODEL_PATH_KINDS[kind].format(path=path)
    assert line == f"hermes: {config}: models.smollm2.path: {what}"
    assert digest(db_copy) == before


# -- 4. prompts through batch (one shared model run) ----------------------------------------------

ESC = "\x1b"
PROMPTS: list[tuple[str, str]] = [
    ("c0-controls", "".join(chr(c) for c in range(1, 32) if chr(c) not in "\n\r") + " ok"),
    ("nul", "before\x00after"),
    ("del-and-c1", "a\x7fb\x85c\x9bd"),
    ("csi-colour", f"{ESC}[31mred{ESC}[0m text"),
    ("csi-clear-screen", f"{ESC}[2J{ESC}[H wiped"),
    ("osc-title", f"{ESC}]0;pwned title\x07 hello"),
    ("osc52-clipboard", f"{ESC}]52;c;cm0gLXJmIH4=\x07 copy"),
    ("osc8-hyperlink", f"{ESC}]8;;http://evil.example{ESC}\\click{ESC}]8;;{ESC}\\"),
    ("dcs", f"{ESC}P+q544e{ESC}\\ query"),
    ("bell-spam", "\x07" * 200 + "ding"),
    ("backspaces", "secret\b\b\b\b\b\bpublic"),
    ("carriage-return-overwrite", "rm -rf ~\rls -la"),
    ("bidi-override", "abc\u202edcba\u202c trojan"),
    ("zero-width", "ze\u200bro\u200dwidth\ufeff"),
    ("private-use", "\ue000\U000f0000 icons"),
    ("emoji-zwj", "\U0001f468\u200d\U0001f469\u200d\U0001f467 family"),
    ("combining-flood", "Z" + "\u0336" * 100),
    ("rtl-arabic", "مرحبا بالعالم"),
    ("cjk", "你好，世界" * 10),
    ("noncharacters", "\ufffe\uffff\U0010ffff end"),
    ("long-line-no-spaces", "x" * 3000),
    ("many-newlines", "\n" * 1000 + "end"),
    ("mention-like-email", "mail me at a@coder.example"),
    ("json-injection", '{"event": "message", "status": "done"}'),
    ("sql-injection", "'); DROP TABLE messages; --"),
    ("shell-injection", "$(touch /tmp/hermes-pwned) `touch /tmp/hermes-pwned`"),
    ("format-string", "%s%s%n {0} {__class__}"),
]


@pytest.fixture(scope="module")
def prompt_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("prompts")
    config = text_config(tmp, n_ctx=512)
    script = tmp / "prompts.jsonl"
    script.write_text(
        "".join(json.dumps({"to": "coder", "text": text}) + "\n" for _, text in PROMPTS)
    )
    db = tmp / "p.db"
    result = invoke(["batch", script, "--config", config, "--db", db, "--seed", "1"])
    return result, db


@pytest.mark.parametrize("name,text", PROMPTS, ids=[p[0] for p in PROMPTS])
def test_hostile_prompt_is_stored_exactly_and_answered(prompt_run, name, text):
    result, db = prompt_run
    assert "Traceback" not in result.stderr
    # 0 fine, 1 the model said something critical, 3 a turn failed (e.g. context full)
    assert result.exit_code in (0, 1, 3), result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    messages = [e for e in events if e["event"] == "message" and not e["correction"]]
    assert len(messages) == len(PROMPTS)
    for m in messages:
        assert m["status"] in ("done", "halted", "error")
        if m["status"] == "error":
            assert m["detail"] and "\n" not in m["detail"]
    stored = [
        r[0]
        for r in sqlite3.connect(db).execute(
            "SELECT content FROM messages WHERE role = 'user' ORDER BY id"
        )
    ]
    assert f"@coder {text}" in stored, "the prompt must be stored byte for byte"
    assert not Path("/tmp/hermes-pwned").exists()


def test_ten_megabyte_prompt_is_a_clear_error_not_a_crash(tmp_path):
    """A 10 MB paste cannot fit a 2048-token context: that turn fails with a one-line detail,
    exit 3; the prompt itself is kept."""
    config = text_config(tmp_path)
    script = tmp_path / "big.jsonl"
    big = ("lorem ipsum dolor sit amet " * 400_000)[: 10 * 10**6]
    script.write_text(json.dumps({"to": "coder", "text": big}) + "\n")
    assert script.stat().st_size < 10 * 2**20
    db = tmp_path / "h.db"
    result = invoke(["batch", script, "--config", config, "--db", db])
    assert "Traceback" not in result.stderr
    assert result.exit_code == 3, result.stderr
    events = [json.loads(x) for x in result.stdout.splitlines()]
    (message,) = [e for e in events if e["event"] == "message"]
    assert message["status"] == "error" and "\n" not in message["detail"]
    (content,) = (
        sqlite3.connect(db)
        .execute("SELECT length(content) FROM messages WHERE role = 'user'")
        .fetchone()
    )
    assert content == len("@coder " + big)


def test_dense_history_is_trimmed_to_fit_the_context(tmp_path):
    config = text_config(tmp_path, n_ctx=320)
    script = tmp_path / "cjk.jsonl"
    script.write_text(json.dumps({"to": "coder", "text": "你好，世界" * 10}) + "\n")
    script.write_text(script.read_text() * 3)  # each alone fits; three together do not
    result = invoke(["batch", script, "--config", config, "--db", tmp_path / "h.db"])
    statuses = [json.loads(x).get("status") for x in result.stdout.splitlines()][1:]
    assert statuses == ["done", "done", "done"], statuses


def test_log_show_neutralises_terminal_escapes(prompt_run):
    result, db = prompt_run
    sid = json.loads(result.stdout.splitlines()[0])["session"]
    shown = invoke(["log", "show", sid, "--db", db])
    assert shown.exit_code == 0
    assert ESC not in shown.stdout and "\x07" not in shown.stdout and "\x9b" not in shown.stdout


# -- 5. databases through `hermes log` and `hermes batch --db` ------------------------------------

DB_COMMANDS = ["log", "log-json", "show", "search", "batch"]


def _db_variant(known: Path, tmp: Path, kind: str) -> Path:
    data = known.read_bytes()
    path = tmp / f"{kind}.db"
    if kind == "garbage":
        path.write_bytes(b"not a database at all\n" * 200)
    elif kind == "zeros":
        path.write_bytes(b"\0" * 16384)
    elif kind.startswith("truncated-"):
        path.write_bytes(data[: int(kind.split("-")[1])])
    elif kind == "header-smashed":
        path.write_bytes(b"X" * 100 + data[100:])
    elif kind == "page-size-bad":
        path.write_bytes(data[:16] + b"\x00\x03" + data[18:])
    elif kind == "schema-page-smashed":
        path.write_bytes(data[:100] + b"\xff" * 3000 + data[3100:])
    elif kind == "newer-schema":
        path.write_bytes(data)
        con = sqlite3.connect(path)
        con.execute("PRAGMA user_version = 99")
        con.commit()
        con.close()
    elif kind == "foreign-sqlite":
        con = sqlite3.connect(path)
        con.execute("CREATE TABLE notes(x)")
        con.execute("PRAGMA user_version = 7")
        con.commit()
        con.close()
    elif kind == "tables-dropped":
        path.write_bytes(data)
        con = sqlite3.connect(path)
        con.execute("DROP TABLE verdicts")
        con.commit()
        con.close()
    elif kind == "wal-garbage":
        path.write_bytes(data)
        Path(str(path) + "-wal").write_bytes(b"garbage wal" * 500)
    elif kind == "directory":
        path.mkdir()
    elif kind == "dangling-symlink":
        path.symlink_to(tmp / "nowhere" / "x.db")
    else:
        raise AssertionError(kind)
    return path


DB_CASES = [
    "garbage",
    "zeros",
    "truncated-50",
    "truncated-4096",
    "truncated-9000",
    "header-smashed",
    "page-size-bad",
    "schema-page-smashed",
    "newer-schema",
    "foreign-sqlite",
    "tables-dropped",
    "wal-garbage",
    "directory",
    "dangling-symlink",
]


@pytest.fixture(scope="module")
def small_script(tmp_path_factory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("dbscript")
    script = tmp / "s.jsonl"
    script.write_text(json.dumps({"to": "coder", "text": "hi"}) + "\n")
    return script, text_config(tmp)


def _db_command(cmd: str, db: Path, script: tuple[Path, Path]) -> list:
    return {
        "log": ["log", "--db", db],
        "log-json": ["log", "--json", "--db", db],
        "show": ["log", "show", "1", "--db", db],
        "search": ["log", "search", "keep", "--db", db],
        "batch": ["batch", script[0], "--config", script[1], "--db", db],
    }[cmd]


@pytest.mark.parametrize(
    "kind,cmd", cases([(k, c) for k in DB_CASES for c in DB_COMMANDS], key=lambda c: "-".join(c))
)
def test_bad_database_is_one_line_and_left_alone(tmp_path, known_db, small_script, kind, cmd):
    db = _db_variant(known_db, tmp_path, kind)
    before = {p.name: digest(p) for p in tmp_path.iterdir() if p.is_file()}
    result = invoke(_db_command(cmd, db, small_script))
    assert "Traceback" not in result.stderr + result.stdout
    if kind == "wal-garbage" and result.exit_code == 0:
        # SQLite ignores a WAL whose header checksum is wrong: the database is intact.
        assert "keep" in result.stdout or cmd == "batch"
        return
    if kind == "tables-dropped" and cmd == "batch" and result.exit_code == 0:
        return  # nothing needed the dropped table; a verdict write would fail with one line
    if kind == "directory":
        assert result.exit_code == 2  # click refuses a directory as --db
        (line,) = result.stderr.strip().splitlines()  # one line, naming the option
        assert line.startswith("hermes: Invalid value for '--db': ") and "is a directory" in line
        return
    assert_one_line(result, 3)
    assert result.stdout == ""
    after = {p.name: digest(p) for p in tmp_path.iterdir() if p.is_file()}
    for name, value in before.items():
        assert after.get(name) == value, f"{name} was modified: hermes must not 'repair' it"


def test_locked_database_is_one_line_exit_3(tmp_path, known_db, small_script):
    """Another writer holding the lock: batch waits its busy timeout then says who to blame;
    `hermes log` still reads (WAL readers are never blocked)."""
    db = tmp_path / "locked.db"
    db.write_bytes(known_db.read_bytes())
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("PRAGMA journal_mode=WAL")
    holder.execute("BEGIN IMMEDIATE")
    try:
        line = assert_one_line(invoke(_db_command("batch", db, small_script)), 3)
        assert "locked" in line
        listed = invoke(["log", "--db", db])
        assert listed.exit_code == 0 and "keep me" in listed.stdout
    finally:
        holder.execute("ROLLBACK")
        holder.close()


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_read_only_database_file(tmp_path, known_db, small_script):
    db = tmp_path / "ro.db"
    db.write_bytes(known_db.read_bytes())
    db.chmod(0o400)
    listed = invoke(["log", "--db", db])
    assert listed.exit_code == 0 and "keep me" in listed.stdout
    line = assert_one_line(invoke(_db_command("batch", db, small_script)), 3)
    assert "read-only" in line


# -- 6. a handful as real subprocesses (the installed entry point, real stderr) ---------------------


def test_real_subprocesses_never_print_a_traceback(tmp_path, good_gguf, known_db):
    bad_config = tmp_path / "bad.toml"
    bad_config.write_text(BASE.replace("queue_size = 16", "queue_size = -1"))
    bad_script = tmp_path / "bad.jsonl"
    bad_script.write_text("{oops\n")
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"\0" * 4096)
    truncated = tmp_path / "t.gguf"
    truncated.write_bytes(good_gguf.read_bytes()[:500])
    cases = [
        (["batch", bad_script, "--config", bad_config], 2),
        (["batch", bad_script, "--config", ROOT / "config.toml", "--db", tmp_path / "x.db"], 2),
        (["log", "--db", corrupt], 3),
        (["log", "show", "1", "--db", corrupt], 3),
        (["plan", truncated], 2),
    ]
    for args, code in cases:
        proc = subprocess.run(
            [sys.executable, "-m", "hermes_tui.cli", *map(str, args)],
            capture_output=True,
            text=True,
            env=hermes_env(),
            cwd=tmp_path,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
        assert proc.returncode == code, (args, proc.stderr)
        assert "Traceback" not in proc.stderr
        assert len(proc.stderr.splitlines()) == 1 and proc.stderr.startswith("hermes: ")
    assert not (tmp_path / "x.db").exists()
