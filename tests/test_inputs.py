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


def test_a_fifo_with_no_writer_is_said_so_not_read_as_an_empty_file(tmp_path):
    """Read as empty, a FIFO whose writer had not started passed `hermes sentinel check`
    (exit 0, "pass: no verdicts") and made a config "missing required key"."""
    fifo = tmp_path / "answer.fifo"
    os.mkfifo(fifo)
    result = hermes("sentinel", "check", str(fifo), timeout=30)
    assert result.returncode == 2 and result.stdout == ""
    assert one_line(result) == f"hermes: {fifo}: is a pipe with nothing written to it (no writer)"
    result = hermes("log", "--config", str(fifo), timeout=30)
    assert result.returncode == 2
    assert one_line(result) == (
        f"hermes: {fifo}: config file is a pipe with nothing written to it (no writer)"
    )


def test_a_pipe_with_its_writer_is_still_checked(tmp_path):
    result = hermes("sentinel", "check", "/dev/stdin", input="now run: rm -rf / \n")
    assert result.returncode == 1, result.stderr
    assert "critical E_UNSAFE_COMMAND" in result.stdout


NOT_UTF8 = b"caf\xe9"  # Latin-1 bytes, as a terminal in another locale sends them


@pytest.mark.parametrize(
    "args,option,where",
    [
        (["log", "--persona", NOT_UTF8], "--persona", "hermes log"),
        (["log", "--code", NOT_UTF8], "--code", "hermes log"),
        (["log", "search", NOT_UTF8], "QUERY", "hermes log search"),
        (
            ["sentinel", "check", "--canary", NOT_UTF8, "{text}"],
            "--canary",
            "hermes sentinel check",
        ),
        (
            ["sentinel", "check", "--persona", NOT_UTF8, "{text}"],
            "--persona",
            "hermes sentinel check",
        ),
    ],
    ids=["log-persona", "log-code", "log-search", "canary", "check-persona"],
)
def test_text_arguments_that_are_not_utf8_are_usage_errors(tmp_path, args, option, where):
    """They reached SQLite as lone surrogates: "internal error: UnicodeEncodeError", exit 3."""
    import asyncio

    from hermes_tui.store import Store

    db = tmp_path / "h.db"

    async def seed() -> None:
        async with await Store.open(db) as store:
            await store.create_session("chat", title="kept")

    asyncio.run(seed())
    before = db.read_bytes()
    text = tmp_path / "answer.txt"
    text.write_text("hello\n")
    argv = [str(text) if a == "{text}" else a for a in args]
    if args[0] == "log":
        argv += ["--db", str(db)]
    result = hermes(*argv)
    assert result.returncode == 2, result.stderr
    assert one_line(result) == (
        f"hermes: Invalid value for '{option}': expected UTF-8 text, found invalid bytes "
        f"(see {where} --help)"
    )
    assert db.read_bytes() == before


@pytest.mark.parametrize("command", ["serve", "web"])
@pytest.mark.parametrize(
    "host,why",
    [
        ("a" * 70, "label too long"),
        ("a..b", "label empty or too long"),
        (b"caf\xe9.example", "expected UTF-8 text, found invalid bytes"),
    ],
    ids=["long-label", "empty-label", "not-utf8"],
)
def test_a_host_that_is_no_host_name_is_one_line_before_listening(tmp_path, command, host, why):
    """serve printed a UnicodeError traceback (exit 1), web an internal error after its
    'not on loopback' warning; now both refuse it before they listen or make a token."""
    args = [command, "--host", host, "--port", "0" if command == "serve" else "8765"]
    if command == "serve":
        args += ["--socket", str(tmp_path / "s.sock")]
    result = hermes(*args, timeout=60)
    assert result.returncode == 2, result.stderr
    shown = host.decode("utf-8", "surrogateescape") if isinstance(host, bytes) else host
    assert one_line(result) == f"hermes: --host {shown!r}: not a valid host name ({why})"
    assert not (tmp_path / "s.sock").exists()
    assert "WARNING" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    "url,why",
    [
        ("http://[::1", "'http://[::1' is not a valid URL (Invalid port: ':1')"),
        ("http://localhost:99999", "'http://localhost:99999': port 99999 is not in 1..65535"),
        ("http://:8642", "'http://:8642' has no host (expected http(s)://host:port)"),
    ],
    ids=["unclosed-bracket", "port-out-of-range", "no-host"],
)
def test_a_server_url_that_is_no_url_is_a_usage_error(tmp_path, script, url, why):
    """ "http://[::1" was "internal error: InvalidURL" (exit 3); port 99999 was tried and
    "no hermes serve at ..." (exit 3)."""
    args = ["batch", str(script), "--config", str(ROOT / "config.toml")]
    result = hermes(*args, "--db", str(tmp_path / "h.db"), "--server", url)
    assert result.returncode == 2, result.stderr
    assert one_line(result) == f"hermes: --server: {why}"
    result = hermes(*args, "--db", str(tmp_path / "h.db"), env={"HERMES_SERVER": url})
    assert result.returncode == 2, result.stderr
    assert one_line(result) == f"hermes: $HERMES_SERVER: {why}"
    assert result.stdout == ""


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
