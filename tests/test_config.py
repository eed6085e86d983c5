"""config.toml: every mistake is ONE line naming the file, the key and what was expected; exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from agents.pool.devices import parse_size
from hermes_tui.cli import main
from hermes_tui.config import PACKAGED_CONFIG, find_config, load_config

from .conftest import ROOT

BASE = (ROOT / "config.toml").read_text()

# (name, transform of the default config text, expected "KEY: message" after "FILE: ")
CASES = [
    (
        "bad toml",
        lambda s: 'workflow = "pipeline\n' + s,
        "invalid TOML: Illegal character '\\n' (at line 1, column 21)",
    ),
    (
        "unknown top key",
        lambda s: "colour = 1\n" + s,
        "colour: unknown key (expected one of: default_persona, models, personas, pool, sentinel, server, storage, workflow)",
    ),
    (
        "unknown persona key",
        lambda s: s.replace("[personas.coder]\n", "[personas.coder]\nmood = 'grumpy'\n"),
        "personas.coder.mood: unknown key (expected one of: banned_imports, canary, color, contract, max_tokens, max_words, model, patterns, schema, schema_file, system_prompt, temperature)",
    ),
    (
        "wrong type",
        lambda s: s.replace("max_tokens = 160\nbanned", 'max_tokens = "lots"\nbanned'),
        'personas.coder.max_tokens: expected an integer, got "lots"',
    ),
    (
        "temperature type",
        lambda s: s.replace(
            "temperature = 0.2\nmax_tokens = 160\nbanned",
            'temperature = "hot"\nmax_tokens = 160\nbanned',
        ),
        'personas.coder.temperature: expected a number, got "hot"',
    ),
    (
        "bad contract",
        lambda s: s.replace('contract = "code"', 'contract = "haiku"'),
        'personas.coder.contract: expected "text" or "code" or "json", got "haiku"',
    ),
    (
        "unknown model ref",
        lambda s: s.replace(
            '[personas.coder]\nmodel = "smollm2"', '[personas.coder]\nmodel = "gpt5"'
        ),
        "personas.coder.model: unknown model 'gpt5' (expected one of: smollm2)",
    ),
    (
        "missing model file",
        lambda s: s.replace('path = "embedded:smollm2-135m"', 'path = "nowhere.gguf"'),
        "models.smollm2.path: model file not found: {dir}/nowhere.gguf",
    ),
    (
        "unknown embedded",
        lambda s: s.replace("embedded:smollm2-135m", "embedded:llama-9000"),
        "models.smollm2.path: unknown embedded model 'embedded:llama-9000' (known: embedded:smollm2-135m)",
    ),
    (
        "invalid schema",
        lambda s: s.replace(
            'properties.goal = { type = "string", minLength = 1 }',
            'properties.goal = { type = "strung" }',
        ),
        "personas.architect.schema.properties.goal.type: invalid JSON Schema: 'strung' is not valid under any of the given schemas",
    ),
    (
        "json without schema",
        lambda s: s.replace(
            '[personas.critic.schema]\ntype = "object"\nrequired = ["verdict"]\nproperties.verdict = { enum = ["approve", "revise"] }\nproperties.issues = { type = "array", items = { type = "string" } }\n',
            "",
        ),
        "personas.critic: contract 'json' needs 'schema' or 'schema_file'",
    ),
    (
        "missing system prompt",
        lambda s: s.replace(
            'system_prompt = """You are the critic.', 'notes = """You are the critic.'
        ),
        "personas.critic.system_prompt: missing required key",
    ),
    (
        "bad memory size",
        lambda s: s.replace('memory = "8GiB"', 'memory = "8 potatoes"'),
        "pool.devices[0].memory: expected a size like '8GiB' or '512MiB', got \"8 potatoes\"",
    ),
    (
        "queue size zero",
        lambda s: s.replace("queue_size = 16", "queue_size = 0"),
        "pool.queue_size: expected at least 1, got 0",
    ),
    (
        "unknown default persona",
        lambda s: s.replace('default_persona = "architect"', 'default_persona = "poet"'),
        "default_persona: unknown persona 'poet' (expected one of: architect, coder, critic)",
    ),
    (
        "toml date",
        lambda s: s.replace('workflow = "pipeline"', "workflow = 1979-05-27"),
        'workflow: expected "pipeline" or "parallel", got "1979-05-27"',
    ),
    (
        "bad workflow",
        lambda s: s.replace('workflow = "pipeline"', 'workflow = "relay"'),
        'workflow: expected "pipeline" or "parallel", got "relay"',
    ),
    (
        "sentinel device",
        lambda s: s.replace('device = "cpu"\nmodel', 'device = "igpu"\nmodel'),
        "sentinel.device: expected 'cpu', 'cuda:N' or 'vulkan:N', got \"igpu\"",
    ),
    (
        "sentinel model ref",
        lambda s: s.replace(
            'model = "smollm2"\nmax_corrections', 'model = "judge9"\nmax_corrections'
        ),
        "sentinel.model: unknown model 'judge9' (expected one of: smollm2 or '')",
    ),
    (
        "stall order",
        lambda s: s.replace("stall_halt_s = 30.0", "stall_halt_s = 5.0"),
        "sentinel.stall_halt_s: expected more than stall_warn_s (10.0), got 5.0",
    ),
    (
        "severity code",
        lambda s: s.replace(
            "# [sentinel.severity]   # override a code's default severity\n# E_LENGTH",
            "[sentinel.severity]\nE_LENGHT",
        ),
        "sentinel.severity.E_LENGHT: unknown code (expected one of: E_JSON_BROKEN, E_JSON_SCHEMA, E_PATTERN, E_LOOP, E_STALL, E_DRIFT, E_LENGTH, E_BANNED_IMPORT, E_UNSAFE_COMMAND, E_SECRET, E_PROMPT_LEAK, E_SENTINEL_DOWN, E_TOOL_ARGS, E_TOOL_SCHEMA, E_TOOL_UNKNOWN, E_TOOL_LOOP, E_TOOL_REQUIRED)",
    ),
    (
        "severity value",
        lambda s: s.replace(
            "# [sentinel.severity]   # override a code's default severity\n# E_LENGTH",
            "[sentinel.severity]\nE_LENGTH",
        ),
        'sentinel.severity.E_LENGTH: expected "minor" or "critical", got "critical"'.replace(
            'got "critical"', 'got "critical"'
        ),
    ),
    (
        "no personas",
        lambda s: s.split("[personas.architect]")[0] + "[pool]\nqueue_size = 4\n",
        "personas: missing required key",
    ),
    (
        "model both path and url",
        lambda s: s.replace(
            'path = "embedded:smollm2-135m"',
            'path = "embedded:smollm2-135m"\nurl = "http://127.0.0.1:9"',
        ),
        "models.smollm2: expected either 'path' (a local GGUF) or 'url' (a server), not both",
    ),
    (
        "banned imports type",
        lambda s: s.replace(
            'banned_imports = ["os", "subprocess", "pickle", "ctypes"]', 'banned_imports = "os"'
        ),
        'personas.coder.banned_imports: expected a list, got "os"',
    ),
    (
        "reserved persona all",
        lambda s: s.replace("[personas.critic]", "[personas.all]").replace(
            "[personas.critic.schema]", "[personas.all.schema]"
        ),
        "personas.all: 'all' is reserved (it addresses everyone)",
    ),
    (
        "schema file missing",
        lambda s: s.replace(
            '[personas.critic.schema]\ntype = "object"\nrequired = ["verdict"]\nproperties.verdict = { enum = ["approve", "revise"] }\nproperties.issues = { type = "array", items = { type = "string" } }\n',
            "",
        ).replace("max_words = 120", 'max_words = 120\nschema_file = "critic.json"'),
        "personas.critic.schema_file: file not found: {dir}/critic.json",
    ),
    ("not utf8", None, "expected UTF-8 text, found invalid bytes"),
    (
        "pattern regex invalid",
        lambda s: s.replace(
            "# [personas.coder.patterns]", "[personas.coder.patterns]\nurl = '^(http'\n#"
        ),
        "personas.coder.patterns.url: invalid regular expression: "
        "missing ), unterminated subpattern at position 1",
    ),
    (
        "pattern plain regex for a new name",
        lambda s: s.replace(
            "# [personas.coder.patterns]", "[personas.coder.patterns]\nticket = '^T-\\d+$'\n#"
        ),
        "personas.coder.patterns.ticket: a plain regex replaces a known pattern (url, email, "
        'path, ipv4); for a new one give {{trigger = "regex", strict = "regex"}}',
    ),
    (
        "pattern table without strict",
        lambda s: s.replace(
            "# [personas.coder.patterns]",
            "[personas.coder.patterns]\nticket = { trigger = 'T-' }\n#",
        ),
        'personas.coder.patterns.ticket: expected {{trigger = "regex", strict = "regex"}}',
    ),
    (
        "pattern not text",
        lambda s: s.replace("# [personas.coder.patterns]", "[personas.coder.patterns]\nurl = 3\n#"),
        "personas.coder.patterns.url: expected a string or a table, got 3",
    ),
]


@pytest.mark.parametrize("name,transform,expected", CASES, ids=[c[0] for c in CASES])
def test_malformed_config_is_one_line_and_exit_2(tmp_path: Path, name, transform, expected):
    path = tmp_path / "config.toml"
    if transform is None:
        path.write_bytes(b'title = "\xff\xfe"\n')
    else:
        text = transform(BASE)
        assert text != BASE, f"case {name!r} did not change the config"
        path.write_text(text)
    if name == "severity value":
        path.write_text(path.read_text().replace('E_LENGTH = "critical"', 'E_LENGTH = "fatal"'))
        expected = 'sentinel.severity.E_LENGTH: expected "minor" or "critical", got "fatal"'
    result = CliRunner().invoke(main, ["chat", "--config", str(path)])
    assert result.exit_code == 2, result.output
    want = f"hermes: {path}: {expected.format(dir=tmp_path)}"
    assert result.stderr.strip() == want
    assert "Traceback" not in result.output


def test_missing_config_file(tmp_path):
    result = CliRunner().invoke(main, ["chat", "--config", str(tmp_path / "nope.toml")])
    assert result.exit_code == 2
    assert result.stderr.strip() == f"hermes: {tmp_path / 'nope.toml'}: config file not found"


def test_default_config_builds_three_personas_with_contracts():
    config = load_config(ROOT / "config.toml")
    assert list(config.personas) == ["architect", "coder", "critic"]
    assert config.personas["architect"].contract == "json"
    assert config.personas["architect"].schema["required"] == ["goal", "steps"]
    assert config.personas["coder"].contract == "code"
    assert "subprocess" in config.personas["coder"].banned_imports
    assert config.personas["critic"].schema["properties"]["verdict"]["enum"] == [
        "approve",
        "revise",
    ]
    assert config.models["smollm2"].path.name.endswith(".gguf")
    assert config.pool.devices[0].memory_bytes == 8 * 2**30


def test_lookup_order(tmp_path, monkeypatch):
    explicit = tmp_path / "explicit.toml"
    env = tmp_path / "env.toml"
    monkeypatch.chdir(tmp_path)
    assert find_config() == PACKAGED_CONFIG  # nothing else exists
    (tmp_path / "config.toml").write_text(BASE)
    assert find_config() == tmp_path / "config.toml"
    monkeypatch.setenv("HERMES_CONFIG", str(env))
    assert find_config() == env
    assert find_config(explicit) == explicit


def test_packaged_default_is_the_documented_root_config():
    assert PACKAGED_CONFIG.read_text() == BASE


def test_schema_file_is_loaded_relative_to_config(tmp_path):
    (tmp_path / "critic.json").write_text('{"type": "object", "required": ["ok"]}')
    text = BASE.replace(
        '[personas.critic.schema]\ntype = "object"\nrequired = ["verdict"]\nproperties.verdict = { enum = ["approve", "revise"] }\nproperties.issues = { type = "array", items = { type = "string" } }\n',
        "",
    ).replace("max_words = 120", 'max_words = 120\nschema_file = "critic.json"')
    (tmp_path / "config.toml").write_text(text)
    assert load_config(tmp_path / "config.toml").personas["critic"].schema["required"] == ["ok"]


@pytest.mark.parametrize(
    "text,value", [("8GiB", 8 * 2**30), ("512MiB", 512 * 2**20), ("1.5GB", 1_500_000_000)]
)
def test_parse_size(text, value):
    assert parse_size(text) == value
