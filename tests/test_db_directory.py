"""A database path whose directory does not exist is refused, never created: ``--db`` on every
command that takes one (exit 2, one line), the config's ``[storage] db`` the same way (doctor
reports it as a problem, exit 1), while the default location in the user data directory is
still created on first use."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from hermes_tui.cli import main
from hermes_tui.store import default_db_path

from .conftest import ROOT, hermes_env, write_small_config

# Commands that could start serving if the check were missing run as real processes with a limit.
SERVE_TIMEOUT_S = 60

# every command that opens a database, as run in-process (CliRunner on the real group)
IN_PROCESS = {
    "hermes": [],
    "chat": ["chat"],
    "batch": ["batch", "{script}"],
    "log": ["log"],
    "log show": ["log", "show", "1"],
    "log search": ["log", "search", "parser"],
    "review": ["review"],
}
# the ones that listen: as subprocesses, so a regression fails instead of serving forever
SUBPROCESS = {
    "web": ["web", "--port", "1"],
    "serve": ["serve", "--socket", "{tmp}/s.sock"],
}


def _script(tmp: Path) -> Path:
    script = tmp / "s.jsonl"
    script.write_text(json.dumps({"to": "coder", "text": "hi"}) + "\n")
    return script


def _args(template: list[str], tmp: Path) -> list[str]:
    return [a.format(script=_script(tmp), tmp=tmp) for a in template]


def _run(args: list[str], in_process: bool) -> tuple[int, str, str]:
    if in_process:
        result: Result = CliRunner().invoke(main, args)
        return result.exit_code, result.stdout, result.stderr
    proc = subprocess.run(
        [sys.executable, "-m", "hermes_tui.cli", *args],
        capture_output=True,
        text=True,
        timeout=SERVE_TIMEOUT_S,
        env=hermes_env(),
    )
    return proc.returncode, proc.stdout, proc.stderr


ALL = [(name, cmd, True) for name, cmd in IN_PROCESS.items()] + [
    (name, cmd, False) for name, cmd in SUBPROCESS.items()
]


@pytest.mark.parametrize("name,cmd,in_process", ALL, ids=[a[0] for a in ALL])
def test_db_in_a_missing_directory_is_refused_and_not_created(tmp_path, name, cmd, in_process):
    db = tmp_path / "typo" / "deeper" / "h.db"
    args = [*_args(cmd, tmp_path), "--db", str(db)]
    if cmd and cmd[0] != "batch":
        args += ["--config", str(ROOT / "config.toml")]
    code, out, err = _run(args, in_process)
    assert code == 2, (code, out, err)
    assert err == f"hermes: --db {db}: directory {db.parent} does not exist\n"
    assert "Traceback" not in out + err
    assert not (tmp_path / "typo").exists()  # nothing created on the way


def test_db_given_before_the_command_is_checked_too(tmp_path):
    db = tmp_path / "typo" / "h.db"
    result = CliRunner().invoke(main, ["--db", str(db), "log"])
    assert result.exit_code == 2
    assert result.stderr == f"hermes: --db {db}: directory {db.parent} does not exist\n"
    assert not db.parent.exists()


@pytest.mark.parametrize("value", ["typo/h.db", "dbs/", ""], ids=["missing-dir", "slash", "empty"])
def test_python_m_hermes_tui_server_refuses_it_the_same_way(tmp_path, value):
    db = f"{tmp_path}/{value}" if value else ""
    proc = subprocess.run(
        [sys.executable, "-m", "hermes_tui.server", "--socket", str(tmp_path / "s.sock")]
        + ["--db", db],
        capture_output=True,
        text=True,
        timeout=SERVE_TIMEOUT_S,
        env=hermes_env(),
    )
    assert proc.returncode == 2, proc.stderr
    why = {
        "typo/h.db": f"directory {tmp_path}/typo does not exist",
        "dbs/": "names a directory, not a database file",
        "": "",
    }[value]
    line = (
        f"hermes: --db {db}: {why}" if value else "hermes: --db '': expected a database file path"
    )
    assert proc.stderr == line + "\n"
    assert not (tmp_path / "s.sock").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing created


def test_db_under_a_file_and_an_empty_db_are_usage_errors(tmp_path):
    note = tmp_path / "notes.txt"
    note.write_text("keep me\n")
    result = CliRunner().invoke(main, ["log", "--db", str(note / "sub" / "h.db")])
    assert result.exit_code == 2
    assert result.stderr == f"hermes: --db {note}/sub/h.db: {note} is not a directory\n"
    assert note.read_text() == "keep me\n"
    # a trailing slash meant a directory: it made a database file of that name
    result = CliRunner().invoke(main, ["log", "--db", f"{tmp_path}/dbs/"])
    assert result.exit_code == 2
    assert (
        result.stderr == f"hermes: --db {tmp_path}/dbs/: names a directory, not a database file\n"
    )
    assert not (tmp_path / "dbs").exists()
    # `--db ""` used to mean "the default database": a script's empty variable read another one
    result = CliRunner().invoke(main, ["log", "--db", ""])
    assert result.exit_code == 2
    assert result.stderr == "hermes: --db '': expected a database file path\n"


def _config_with_db(tmp: Path, db: str) -> Path:
    config = write_small_config(tmp, max_tokens=4)
    text = config.read_text().replace('db = ""', f'db = "{db}"')
    assert f'db = "{db}"' in text
    config.write_text(text)
    return config


@pytest.mark.parametrize("name,cmd,in_process", ALL, ids=[a[0] for a in ALL])
def test_config_db_in_a_missing_directory_is_a_config_error(tmp_path, name, cmd, in_process):
    db = tmp_path / "typo" / "h.db"
    config = _config_with_db(tmp_path, str(db))
    code, out, err = _run([*_args(cmd, tmp_path), "--config", str(config)], in_process)
    assert code == 2, (code, out, err)
    assert err == (f"hermes: {config}: storage.db: {db}: directory {db.parent} does not exist\n")
    assert not db.parent.exists()


def test_a_relative_config_db_is_named_where_it_resolves(tmp_path):
    config = _config_with_db(tmp_path, "typo/h.db")  # relative to the config's directory
    result = CliRunner().invoke(main, ["log", "--config", str(config)])
    assert result.exit_code == 2
    db = tmp_path / "typo" / "h.db"
    assert result.stderr == (
        f"hermes: {config}: storage.db: {db}: directory {db.parent} does not exist\n"
    )


def test_db_on_the_command_line_wins_over_a_bad_config_db(tmp_path):
    import asyncio

    from hermes_tui.store import Store

    good = tmp_path / "good.db"

    async def seed() -> None:
        async with await Store.open(good) as store:
            await store.create_session("chat", title="the real one")

    asyncio.run(seed())
    config = _config_with_db(tmp_path, str(tmp_path / "typo" / "h.db"))
    result = CliRunner().invoke(main, ["log", "--config", str(config), "--db", str(good)])
    assert result.exit_code == 0, result.stderr
    assert "the real one" in result.stdout


def test_doctor_reports_a_config_db_in_a_missing_directory(tmp_path):
    """doctor reports a bad config as a finding (exit 1) rather than refusing to run: it is
    the command one runs to find out what is wrong."""
    db = tmp_path / "typo" / "h.db"
    config = _config_with_db(tmp_path, str(db))
    result = CliRunner().invoke(main, ["doctor", "--config", str(config)])
    assert result.exit_code == 1, result.output
    problem = f"{config}: storage.db: {db}: directory {db.parent} does not exist"
    assert f"database      {db} (CANNOT BE CREATED)" in result.output
    assert f"PROBLEM       {problem}" in result.output
    report = json.loads(
        CliRunner().invoke(main, ["doctor", "--config", str(config), "--json"]).output
    )
    assert report["ok"] is False and problem in report["problems"]
    assert report["database"]["problem"] == problem
    assert not db.parent.exists()


def test_doctor_with_a_bad_db_flag_is_a_usage_error(tmp_path):
    db = tmp_path / "typo" / "h.db"
    result = CliRunner().invoke(
        main, ["doctor", "--config", str(ROOT / "config.toml"), "--db", str(db)]
    )
    assert result.exit_code == 2
    assert result.stderr == f"hermes: --db {db}: directory {db.parent} does not exist\n"
    assert result.stdout == ""


def test_the_default_location_is_still_created(tmp_path):
    """No --db and no [storage] db: the user data directory is made on first use, as always
    (the test's XDG_DATA_HOME does not exist yet)."""
    default = default_db_path()
    assert not default.parent.exists()
    result = CliRunner().invoke(main, ["doctor", "--config", str(ROOT / "config.toml")])
    assert f"database      {default} (will be created)" in result.output
    assert str(default.parent) not in "\n".join(
        line for line in result.output.splitlines() if line.startswith("PROBLEM")
    )
    config = write_small_config(tmp_path, max_tokens=4)
    result = CliRunner().invoke(main, ["batch", str(_script(tmp_path)), "--config", str(config)])
    assert result.exit_code == 0, result.stderr
    assert default.is_file()
    log = CliRunner().invoke(main, ["log", "--json"])
    (session,) = [json.loads(line) for line in log.stdout.splitlines()]
    assert log.exit_code == 0 and session["mode"] == "batch" and session["message_count"] == 2


def test_naming_the_default_path_is_not_a_typo():
    default = default_db_path()
    assert not default.parent.exists()
    result = CliRunner().invoke(
        main, ["doctor", "--config", str(ROOT / "config.toml"), "--db", str(default)]
    )
    assert f"database      {default} (will be created)" in result.output


def test_db_and_config_given_before_serve_are_the_ones_it_serves(tmp_path):
    """`hermes --db x.db --config c.toml serve` used to ignore both (serve has its own options):
    the API's sessions went to the default database."""
    import signal
    import time

    db = tmp_path / "mine.db"
    log = tmp_path / "serve.log"
    config = write_small_config(tmp_path)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hermes_tui.cli", "--db", str(db), "--config", str(config)]
            + ["serve", "--socket", str(tmp_path / "s.sock"), "--no-judge"],
            stdout=out,
            stderr=out,
            env=hermes_env(),
        )
        try:
            deadline = time.monotonic() + SERVE_TIMEOUT_S
            while "listening on" not in log.read_text() and time.monotonic() < deadline:
                assert proc.poll() is None, log.read_text()
                time.sleep(0.1)
            assert db.exists()  # the store it opened is the one named before the command
            assert not default_db_path().exists()
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(SERVE_TIMEOUT_S)
    assert proc.returncode == 0, log.read_text()
