"""`hermes doctor` on databases a user could have: broken, foreign, too new, unwritable, fine."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from hermes_tui.cli import main
from hermes_tui.store import SCHEMA_VERSION, Store

from .conftest import ROOT
from .test_store import locked_dir


def doctor(db: Path, *, as_json: bool = False):
    argv = ["doctor", "--config", str(ROOT / "config.toml"), "--db", str(db)]
    return CliRunner().invoke(main, argv + (["--json"] if as_json else []))


async def _hermes_db(db: Path, sessions: int = 1) -> None:
    async with await Store.open(db) as store:
        for i in range(sessions):
            sid = await store.create_session("chat", title=f"chat {i}")
            await store.add_message(sid, "coder", "user", "fix the parser " * 200)


def _truncated(tmp_path: Path) -> bytes:
    good = tmp_path / "good.db"
    asyncio.run(_hermes_db(good, sessions=5))
    data = good.read_bytes()
    return data[: len(data) // 2]


BROKEN = {
    "random bytes": lambda tmp_path: os.urandom(8192),
    "plain text": lambda tmp_path: b"these are my notes, not a database\n" * 50,
    "truncated": _truncated,
}


@pytest.mark.parametrize("kind", BROKEN)
def test_doctor_reports_a_broken_database_and_leaves_it_alone(tmp_path: Path, kind: str):
    db = tmp_path / "garbage.db"
    data = BROKEN[kind](tmp_path)
    db.write_bytes(data)
    result = doctor(db)
    assert result.exit_code == 1, result.output
    assert f"database      {db} (UNUSABLE)" in result.output
    assert f"PROBLEM       database {db} is corrupt or not a hermes database" in result.output, (
        result.output
    )
    assert "move it aside" in result.output
    assert result.output.rstrip().endswith("1 problem(s)")
    assert db.read_bytes() == data
    assert not (tmp_path / "garbage.db-writers").exists()  # doctor never opens it to write


def test_doctor_reports_damaged_pages_inside_a_hermes_database(tmp_path: Path):
    db = tmp_path / "hermes.db"
    asyncio.run(_hermes_db(db, sessions=5))
    data = bytearray(db.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = b"\xba" * 64  # a bad sector mid-file
    db.write_bytes(bytes(data))
    result = doctor(db, as_json=True)
    assert result.exit_code == 1
    report = json.loads(result.output)
    assert not report["ok"]
    assert any(f"database {db} is corrupt" in p for p in report["problems"])
    assert db.read_bytes() == bytes(data)


def test_doctor_names_an_sqlite_file_that_is_not_hermes(tmp_path: Path):
    db = tmp_path / "other.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE invoices(id INTEGER PRIMARY KEY)")
    conn.close()
    result = doctor(db)
    assert result.exit_code == 1
    assert f"PROBLEM       {db} is an SQLite database but not a hermes one" in result.output
    assert "'invoices'" in result.output


def test_doctor_says_to_upgrade_for_a_newer_database(tmp_path: Path):
    db = tmp_path / "hermes.db"
    asyncio.run(_hermes_db(db))
    with sqlite3.connect(db) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    result = doctor(db)
    assert result.exit_code == 1
    assert "newer than this hermes" in result.output and "upgrade hermes" in result.output


def test_doctor_on_a_good_database_counts_its_sessions(tmp_path: Path):
    db = tmp_path / "hermes.db"
    asyncio.run(_hermes_db(db, sessions=3))
    result = doctor(db)
    assert result.exit_code == 0, result.output
    assert f"database      {db} (schema {SCHEMA_VERSION}, 3 session(s))" in result.output
    assert result.output.rstrip().endswith("ok")
    report = json.loads(doctor(db, as_json=True).output)
    assert report["database"]["sessions"] == 3 and report["database"]["problem"] is None


def test_doctor_accepts_the_empty_file_hermes_creates_before_its_first_write(tmp_path: Path):
    db = tmp_path / "hermes.db"
    db.touch()
    result = doctor(db)
    assert result.exit_code == 0, result.output
    assert "PROBLEM" not in result.output


def test_doctor_reports_a_database_in_a_directory_it_cannot_write(tmp_path: Path):
    shelf = tmp_path / "shelf"
    shelf.mkdir()
    db = shelf / "hermes.db"
    asyncio.run(_hermes_db(db, sessions=2))
    with locked_dir(shelf):
        result = doctor(db, as_json=True)
        text = doctor(db).output
    assert result.exit_code == 1, result.output
    report = json.loads(result.output)
    assert report["database"]["writable_dir"] is False
    assert report["database"]["sessions"] == 2  # still readable, for `hermes log`
    (problem,) = report["problems"]
    assert problem.startswith(f"directory {shelf} of database {db} is not writable")
    assert f"PROBLEM       {problem}" in text and "NOT WRITABLE" in text


def test_doctor_reports_a_database_that_cannot_be_created(tmp_path: Path):
    shelf = tmp_path / "shelf"
    shelf.mkdir()
    db = shelf / "hermes.db"
    with locked_dir(shelf):
        result = doctor(db, as_json=True)
    assert result.exit_code == 1
    report = json.loads(result.output)
    assert report["problems"] == [
        f"cannot create database {db}: {shelf} is not writable; pass another --db"
    ]
    assert not db.exists()


def test_doctor_flags_a_judge_on_a_gpu_this_build_cannot_use(tmp_path):
    import llama_cpp

    if llama_cpp.llama_supports_gpu_offload():
        pytest.skip("this llama-cpp-python can offload to a GPU")
    config = tmp_path / "config.toml"
    config.write_text(
        (ROOT / "config.toml")
        .read_text()
        .replace('[sentinel]\ndevice = "cpu"', '[sentinel]\ndevice = "cuda:7"')
    )
    result = CliRunner().invoke(
        main, ["doctor", "--config", str(config), "--db", str(tmp_path / "d.db")]
    )
    assert result.exit_code == 1
    assert "a judge on 'cuda:7'" in result.output and "CPU-only build" in result.output


def _config_with_model(tmp_path: Path, model_lines: str, budget: str = "8GiB") -> Path:
    text = (ROOT / "config.toml").read_text().replace('memory = "8GiB"', f'memory = "{budget}"')
    start = text.index("[models.smollm2]")
    end = text.index("\n[", start + 1)
    config = tmp_path / "config.toml"
    config.write_text(text[:start] + "[models.smollm2]\n" + model_lines + text[end:])
    return config


def _doctor(config: Path, tmp_path: Path) -> dict:
    result = CliRunner().invoke(
        main, ["doctor", "--json", "--config", str(config), "--db", str(tmp_path / "d.db")]
    )
    return json.loads(result.output)


def test_doctor_reads_every_models_header_and_says_a_truncated_one_is_broken(tmp_path):
    from agents.models import resolve_model_path

    real = resolve_model_path("embedded:smollm2-135m")
    cut = tmp_path / "cut.gguf"
    with real.open("rb") as src:
        cut.write_bytes(src.read(2_000_000))  # the header, then nothing: a broken download
    config = _config_with_model(tmp_path, f'path = "{cut}"\nn_ctx = 2048\n')
    report = _doctor(config, tmp_path)
    assert not report["ok"]
    assert any(p.startswith("model smollm2: ") for p in report["problems"]), report["problems"]


def test_doctor_says_a_model_that_can_never_fit_its_budget_with_the_pools_number(tmp_path):
    config = _config_with_model(
        tmp_path, 'path = "embedded:smollm2-135m"\nn_ctx = 2048\n', "200MiB"
    )
    report = _doctor(config, tmp_path)
    [problem] = [p for p in report["problems"] if "can never be loaded" in p]
    from agents.pool.pool import estimate_bytes
    from hermes_tui.config import load_config

    spec = load_config(config).models["smollm2"]
    assert report["models"]["smollm2"]["estimate_bytes"] == estimate_bytes(spec, 3)
    assert "budget of 200.0 MiB" in problem


def test_doctor_probes_a_remote_models_server_with_a_short_timeout(tmp_path):
    import socket
    import time

    with socket.socket() as listener:  # accepts and never answers: a hung server
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        config = tmp_path / "config.toml"
        text = (ROOT / "config.toml").read_text()
        config.write_text(text + f'\n[models.far]\nurl = "http://127.0.0.1:{port}/v1"\n')
        report = _doctor(config, tmp_path)
        from agents.remote import RemoteEngine
        from hermes_tui.config import load_config

        t0 = time.monotonic()
        why = RemoteEngine.from_spec(load_config(config).models["far"]).probe(1.5)
        took = time.monotonic() - t0
    assert report["models"]["far"]["answers"] is False
    said = [p for p in report["problems"] if "server does not answer" in p]
    assert said and "no answer (within 1.5 s)" in said[0]
    assert why is not None and took < 5  # a hung server costs the probe's timeout, no more
