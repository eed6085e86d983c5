"""The CLI surface: help for every command, doctor on good and broken configs, clean errors."""

from __future__ import annotations

import json
import sqlite3

import pytest
from click.testing import CliRunner

from hermes_tui.cli import main

from .conftest import ROOT

COMMANDS = [
    [],
    ["chat"],
    ["batch"],
    ["log"],
    ["log", "show"],
    ["log", "search"],
    ["review"],
    ["plan"],
    ["doctor"],
    ["serve"],
]


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: " ".join(c) or "hermes")
def test_every_command_has_help(cmd):
    result = CliRunner().invoke(main, [*cmd, "--help"])
    assert result.exit_code == 0
    assert result.output.startswith("Usage: ")
    assert "--help" in result.output


def test_doctor_on_the_default_config(tmp_path):
    result = CliRunner().invoke(
        main,
        ["doctor", "--json", "--config", str(ROOT / "config.toml"), "--db", str(tmp_path / "d.db")],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["ok"] and report["problems"] == []
    assert "CPU" in report["llama_cpp"]["backends"]
    assert report["models"]["smollm2"]["bytes"] > 50_000_000
    assert report["database"]["path"] == str(tmp_path / "d.db")


def test_doctor_on_a_broken_config_names_the_problem(tmp_path):
    bad = tmp_path / "config.toml"
    bad.write_text((ROOT / "config.toml").read_text().replace("embedded:smollm2-135m", "gone.gguf"))
    result = CliRunner().invoke(main, ["doctor", "--config", str(bad)])
    assert result.exit_code == 1
    assert (
        f"PROBLEM       {bad}: models.smollm2.path: model file not found: {tmp_path}/gone.gguf"
        in result.output
    )


def test_log_on_a_corrupt_database_is_one_line(tmp_path):
    db = tmp_path / "junk.db"
    db.write_bytes(b"this is not sqlite" * 100)
    result = CliRunner().invoke(main, ["log", "--db", str(db)])
    assert result.exit_code == 3
    assert result.stderr.count("\n") == 1 and str(db) in result.stderr
    assert db.read_bytes() == b"this is not sqlite" * 100  # nothing overwritten


def test_log_show_unknown_session(tmp_path):
    db = tmp_path / "h.db"
    sqlite3.connect(db).close()
    CliRunner().invoke(main, ["log", "--db", str(db)])
    result = CliRunner().invoke(main, ["log", "--db", str(db), "show", "42"])
    assert result.exit_code == 2
    assert "no session 42" in result.stderr


def test_unknown_command_is_usage_error():
    result = CliRunner().invoke(main, ["fly"])
    assert result.exit_code == 2
    assert "No such command 'fly'" in result.output
