"""Inputs that never end, block, or only break later: each is one line and exit 2, at once.

Real `hermes` subprocesses on real devices (/dev/zero), FIFOs and pipes (issue #12 items 9
and 13).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT, hermes_env

SCRIPT = '[[turn]]\nto = "architect"\ntext = "hi"\n'


def hermes(*args: str, stdin=subprocess.DEVNULL, input=None, timeout=60, env=None):
    return subprocess.run(
        [sys.executable, "-m", "hermes_tui.cli", *args],
        capture_output=True,
        text=True,
        env={**hermes_env(), **(env or {})},
        cwd=ROOT,
        timeout=timeout,  # a hang fails the test instead of holding it
        stdin=None if input is not None else stdin,
        input=input,
    )


def one_line(result) -> str:
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    return result.stderr.strip()


@pytest.fixture
def script(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(SCRIPT)
    return path


def test_a_device_as_config_or_script_is_one_line(tmp_path, script):
    result = hermes("batch", str(script), "--config", "/dev/zero")
    assert result.returncode == 2
    assert one_line(result) == "hermes: /dev/zero: config file is a device, not a file"
    result = hermes("batch", "/dev/zero", "--config", str(ROOT / "config.toml"))
    assert result.returncode == 2
    assert one_line(result) == "hermes: /dev/zero: script is a device, not a file"


def test_a_fifo_without_a_writer_never_hangs_start_up(tmp_path, script):
    fifo = tmp_path / "config.fifo"
    os.mkfifo(fifo)
    result = hermes("batch", str(script), "--config", str(fifo), timeout=30)
    assert result.returncode == 2
    assert "config.fifo" in one_line(result)


def test_a_script_from_a_pipe_is_read(tmp_path):
    result = hermes(
        "batch", "/dev/stdin", "--config", str(ROOT / "config.toml"), input="not = [toml"
    )
    assert result.returncode == 2
    assert one_line(result).startswith("hermes: /dev/stdin: invalid TOML")


def test_huge_config_and_schema_files_are_refused_by_size(tmp_path, script):
    big = tmp_path / "big.toml"
    big.write_text((ROOT / "config.toml").read_text() + "#" * (2**20 + 1))
    result = hermes("batch", str(script), "--config", str(big))
    assert result.returncode == 2
    assert one_line(result) == f"hermes: {big}: config file is larger than 1 MiB"
    config = tmp_path / "schema.toml"
    text = (ROOT / "config.toml").read_text()
    start = text.index("[personas.architect.schema]")
    end = text.index("[personas.coder]")
    text = text[:start] + text[end:]
    text = text.replace('contract = "json"', 'contract = "json"\nschema_file = "/dev/zero"', 1)
    config.write_text(text)
    result = hermes("batch", str(script), "--config", str(config))
    assert result.returncode == 2
    assert one_line(result) == (
        f"hermes: {config}: personas.architect.schema_file: /dev/zero is a device, not a file"
    )


@pytest.fixture
def typo(tmp_path):
    path = tmp_path / "typo.toml"
    path.write_text((ROOT / "config.toml").read_text().replace('"cyan"', '"yelow"'))
    return path


EXPECTED = (
    "personas.architect.color: expected a colour (a name such as 'cyan', '#rrggbb' or "
    "'rgb(r,g,b)'), got \"yelow\"; did you mean 'yellow'?"
)


def test_a_colour_typo_is_a_config_error_for_chat_batch_and_doctor(typo, script):
    # chat as `hermes web` starts it (textual-serve's driver: no terminal needed here)
    web = {"TEXTUAL_DRIVER": "textual.drivers.web_driver:WebDriver"}
    for args in (["chat"], ["batch", str(script)]):
        result = hermes(*args, "--config", str(typo), env=web)
        assert result.returncode == 2, (args, result.stderr)  # chat: a traceback and exit 0
        assert one_line(result) == f"hermes: {typo}: {EXPECTED}"
    doctor = hermes("doctor", "--json", "--config", str(typo))
    assert doctor.returncode == 1
    report = json.loads(doctor.stdout)
    assert not report["ok"] and EXPECTED in report["config"]["error"]


@pytest.mark.parametrize("colour", ["cyan", "#00ff88", "rgb(10,20,30)", "ansi_bright_red"])
def test_colours_textual_draws_are_accepted(tmp_path, colour):
    from hermes_tui.config import load_config

    path = tmp_path / "c.toml"
    path.write_text((ROOT / "config.toml").read_text().replace('"cyan"', json.dumps(colour)))
    assert load_config(path).personas["architect"].color == colour
