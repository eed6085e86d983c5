"""Batch mode end to end on the real embedded model and a real SQLite file."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import ROOT, hermes_env, write_small_config

HERMES = [sys.executable, "-m", "hermes_tui.cli"]


def wait_streaming(proc: subprocess.Popen, db: Path, more_than: int = -1) -> None:
    """Until ``proc`` (a hermes batch run) has a message streaming into ``db`` with more than
    ``more_than`` characters stored (at most 120 s; returns early if it exits)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
        with contextlib.suppress(sqlite3.Error):
            con = sqlite3.connect(db, timeout=1)
            row = con.execute("SELECT content FROM messages WHERE status = 'streaming'").fetchone()
            con.close()
            if row and len(row[0]) > more_than:
                return


SCRIPT = """
title = "three personas"
workflow = "pipeline"
[[turn]]
to = "architect"
text = "Plan a tiny CLI that counts words."
[[turn]]
to = "coder"
text = "Write a Python function that reverses a string."
[[turn]]
to = "critic"
text = "Review: def rev(s): return s[::-1]"
"""


def run(args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        HERMES + args,
        capture_output=True,
        text=True,
        env=hermes_env(),
        cwd=kw.pop("cwd", ROOT),
        timeout=kw.pop("timeout", 300),
        stdin=subprocess.DEVNULL,
        **kw,
    )


def events(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def text_contract_config(tmp_path: Path) -> Path:
    """The default personas with free-text contracts: the 135M model cannot be relied on to
    write valid JSON, and this test is about the plumbing, not the model's skill."""
    path = write_small_config(tmp_path, max_tokens=16)
    text = path.read_text().replace('contract = "json"', 'contract = "text"')
    text = text.replace('contract = "code"', 'contract = "text"')
    path.write_text(text)
    return path


def test_three_turn_batch_reaches_every_persona_and_is_logged(tmp_path):
    config = text_contract_config(tmp_path)
    script = tmp_path / "demo.toml"
    script.write_text(SCRIPT)
    db = tmp_path / "h.db"
    result = run(["batch", str(script), "--config", str(config), "--db", str(db), "--seed", "1"])
    evs = events(result.stdout)
    assert result.stderr == ""  # progress only when stderr is a TTY
    session = evs[0]
    assert session["event"] == "session" and session["title"] == "three personas"
    messages = [e for e in evs if e["event"] == "message" and not e["correction"]]
    assert [m["persona"] for m in messages][:1] == ["architect"]
    assert {m["persona"] for m in messages} == {"architect", "coder", "critic"}
    assert all(m["tokens"] > 0 and m["text"] for m in messages)
    critical = [e for e in evs if e["event"] == "verdict" and e["severity"] == "critical"]
    halted = [m for m in messages if m["status"] == "halted"]
    assert result.returncode == (1 if critical else 0), result.stderr
    assert not halted or critical  # a halt always comes with the critical verdict behind it
    # Each verdict names the turn of the message it was raised on.
    turns = {m["turn"]: m["persona"] for m in evs if m["event"] == "message"}
    assert all(turns[v["turn"]] == v["persona"] for v in evs if v["event"] == "verdict")
    # The same messages are in the database ...
    con = sqlite3.connect(db)
    rows = con.execute(
        "SELECT persona, content, status FROM messages WHERE role = 'assistant' ORDER BY id"
    ).fetchall()
    assert [(r[0], r[1]) for r in rows] == [
        (m["persona"], m["text"]) for m in evs if m["event"] == "message"
    ]
    assert oct(os.stat(db).st_mode & 0o777) == "0o600"
    # ... and `hermes log` lists the session.
    log = run(["log", "--db", str(db)])
    assert log.returncode == 0
    assert "three personas" in log.stdout
    listed = events(run(["log", "--db", str(db), "--json"]).stdout)
    assert listed[0]["id"] == session["session"]
    assert listed[0]["message_count"] >= 3 + 3  # three user turns + three answers
    show = run(["log", "show", str(session["session"]), "--db", str(db)])
    assert show.returncode == 0 and messages[0]["text"].strip()[:20] in show.stdout


def test_default_contracts_produce_verdicts_and_corrections(tmp_path):
    """On the real default config the JSON personas get checked; a truncated or malformed
    answer earns a verdict, a hidden correction turn, and the exit code says so."""
    config = write_small_config(tmp_path, max_tokens=12)
    script = tmp_path / "one.jsonl"
    script.write_text(json.dumps({"to": "architect", "text": "Plan a word counter."}) + "\n")
    db = tmp_path / "h.db"
    result = run(["batch", str(script), "--config", str(config), "--db", str(db), "--seed", "3"])
    evs = events(result.stdout)
    verdicts = [e for e in evs if e["event"] == "verdict"]
    messages = [e for e in evs if e["event"] == "message"]
    # 12 tokens can't hold the whole plan: the JSON check must notice.
    assert any(v["code"] in ("E_JSON_BROKEN", "E_DRIFT", "E_JSON_SCHEMA") for v in verdicts)
    assert len(messages) >= 2, "a minor verdict must lead to a correction turn"
    con = sqlite3.connect(db)
    hidden = con.execute("SELECT content FROM messages WHERE hidden = 1").fetchall()
    assert hidden and "sentinel found problems" in hidden[0][0]
    stored = con.execute("SELECT code FROM verdicts").fetchall()
    assert sorted(r[0] for r in stored) == sorted(v["code"] for v in verdicts)
    assert result.returncode in (0, 1)
    assert result.returncode == (
        1
        if any(m["status"] == "halted" for m in messages)
        or any(v["severity"] == "critical" for v in verdicts)
        else 0
    )


def test_sigkill_mid_stream_leaves_a_sound_db_with_the_partial_message(tmp_path):
    config = write_small_config(tmp_path, max_tokens=400)
    text = config.read_text().replace('contract = "json"', 'contract = "text"')
    config.write_text(text.replace('contract = "code"', 'contract = "text"'))
    script = tmp_path / "long.jsonl"
    ask = "Count from 1 to 300, one number per line, and nothing else."
    script.write_text(json.dumps({"to": "coder", "text": ask}) + "\n")
    db = tmp_path / "h.db"
    proc = subprocess.Popen(
        # --seed 6: an answer that runs to max_tokens, so the kill always finds it streaming
        HERMES + ["batch", str(script), "--config", str(config), "--db", str(db), "--seed", "6"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=hermes_env(),
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    partial = ""
    while time.monotonic() < deadline:
        time.sleep(0.1)
        if proc.poll() is not None:
            break  # finished before we caught it streaming: reported below
        if db.exists():
            try:
                row = (
                    sqlite3.connect(db, timeout=1)
                    .execute("SELECT content FROM messages WHERE status = 'streaming'")
                    .fetchone()
                )
            except sqlite3.OperationalError:
                continue
            if row and len(row[0]) > 40:
                partial = row[0]
                break
    assert partial, (
        f"no streaming checkpoint seen (exit {proc.poll()}): {proc.stderr.read()[:300]!r}"
    )
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    con.close()
    # The next start marks it interrupted and lists it.
    log = run(["log", "--db", str(db), "--json"])
    assert log.returncode == 0
    con = sqlite3.connect(db)
    rows = con.execute("SELECT status, content FROM messages WHERE role = 'assistant'").fetchall()
    assert rows[0][0] in ("streaming", "interrupted")
    assert rows[0][1].startswith(partial)
    assert events(log.stdout)[0]["message_count"] >= 2


@pytest.mark.parametrize(
    "script,expected",
    [
        ("", "no turns (expected at least one [[turn]] or JSON line)"),
        (
            '[[turn]]\nto = "poet"\ntext = "hi"\n',
            "turn 1.to: unknown persona 'poet' (expected one of: architect, coder, critic, all)",
        ),
        ('[[turn]]\nto = "coder"\n', "turn 1.text: expected a non-empty string"),
        (
            '[[turn]]\nto = []\ntext = "hi"\n',
            'turn 1.to: empty list (name a persona, a list of them, or "all"; '
            "leave 'to' out for the default persona)",
        ),
        (
            "[[turn]\n",
            "invalid TOML: Expected ']]' at the end of an array declaration (at line 1, column 7)",
        ),
        (
            'speed = 3\n[[turn]]\nto = "coder"\ntext = "x"\n',
            "speed: unknown key (expected title, workflow, turn)",
        ),
    ],
)
def test_bad_batch_scripts_are_one_line_exit_2(tmp_path, script, expected):
    path = tmp_path / "s.toml"
    path.write_text(script)
    result = run(
        ["batch", str(path), "--config", str(ROOT / "config.toml"), "--db", str(tmp_path / "x.db")]
    )
    assert result.returncode == 2
    assert result.stderr.strip() == f"hermes: {path}: {expected}"
    assert result.stdout == ""


def test_an_unwritable_out_is_one_line_exit_2_and_a_bad_run_keeps_the_old_events(tmp_path):
    script = tmp_path / "s.toml"
    script.write_text('[[turn]]\nto = "coder"\ntext = "hi"\n')
    common = ["--config", str(ROOT / "config.toml"), "--db", str(tmp_path / "x.db")]
    nowhere = tmp_path / "no" / "such" / "dir" / "e.jsonl"
    result = run(["batch", str(script), *common, "--out", str(nowhere)])
    assert result.returncode == 2
    assert (
        result.stderr
        == f"hermes: --out {nowhere}: cannot write there (No such file or directory)\n"
    )
    assert not (tmp_path / "x.db").exists()  # nothing was started: no empty session left
    earlier = tmp_path / "events.jsonl"
    earlier.write_text('{"event": "session"}\n')
    script.write_text("[[turn]\n")  # broken: nothing runs, so nothing may be overwritten
    assert run(["batch", str(script), *common, "--out", str(earlier)]).returncode == 2
    assert earlier.read_text() == '{"event": "session"}\n'


def test_a_judge_that_cannot_load_is_one_warning_and_an_e_sentinel_down(tmp_path):
    from agents.models import resolve_model_path

    real = resolve_model_path("embedded:smollm2-135m").read_bytes()
    broken = tmp_path / "judge.gguf"
    broken.write_bytes(real[: len(real) // 2])  # a header that parses, tensors cut off
    config = text_contract_config(tmp_path)
    text = config.read_text().replace(
        'model = ""\nmax_corrections', 'model = "judge"\nmax_corrections'
    )
    text = text.replace(
        "[models.smollm2]", f'[models.judge]\npath = "{broken}"\n\n[models.smollm2]'
    )
    config.write_text(text)
    script = tmp_path / "s.jsonl"
    script.write_text(json.dumps({"to": "coder", "text": "Say hi."}) + "\n")
    result = run(["batch", str(script), "--config", str(config), "--db", str(tmp_path / "h.db")])
    assert "Traceback" not in result.stderr and "never retrieved" not in result.stderr
    [warning] = result.stderr.splitlines()
    assert warning.startswith("hermes: warning: judge model ") and "the judge is off" in warning
    evs = events(result.stdout)
    down = [e for e in evs if e["event"] == "verdict" and e["code"] == "E_SENTINEL_DOWN"]
    assert len(down) == 1 and down[0]["severity"] == "minor"
    assert [e["status"] for e in evs if e["event"] == "message"] == ["done"]
    assert result.returncode == 0


def test_out_that_is_the_script_or_a_failed_start_never_destroys_a_file(tmp_path):
    script = tmp_path / "s.jsonl"
    script.write_text(json.dumps({"to": "coder", "text": "hi"}) + "\n")
    config = ["--config", str(ROOT / "config.toml")]
    result = run(
        ["batch", str(script), *config, "--db", str(tmp_path / "x.db"), "--out", str(script)]
    )
    assert result.returncode == 2 and "is the script itself" in result.stderr
    assert script.read_text() == json.dumps({"to": "coder", "text": "hi"}) + "\n"
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database" * 100)
    keep = tmp_path / "events.jsonl"
    keep.write_text("precious\n")
    result = run(["batch", str(script), *config, "--db", str(junk), "--out", str(keep)])
    assert result.returncode == 3 and keep.read_text() == "precious\n"


@pytest.mark.parametrize(
    "sig, code, said", [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")]
)
def test_ctrl_c_or_sigterm_ends_the_turn_on_record(tmp_path, sig, code, said):
    config = write_small_config(tmp_path, max_tokens=400)
    config.write_text(config.read_text().replace('contract = "code"', 'contract = "text"'))
    script = tmp_path / "long.jsonl"
    ask = "Count from 1 to 300, one number per line, and nothing else."
    script.write_text(json.dumps({"to": "coder", "text": ask}) + "\n")
    db, out = tmp_path / "h.db", tmp_path / "e.jsonl"
    argv = ["batch", str(script), "--config", str(config), "--db", str(db), "--out", str(out)]
    argv += ["--seed", "6"]  # a seed whose answer runs to max_tokens (the signal finds it busy)
    proc = subprocess.Popen(
        HERMES + argv, stderr=subprocess.PIPE, text=True, env=hermes_env(), cwd=ROOT
    )
    wait_streaming(proc, db, more_than=20)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code and err == f"hermes: {said}\n"
    last = events(out.read_text())[-1]
    assert last["event"] == "message" and last["status"] == "cancelled" and last["text"]
    con = sqlite3.connect(db)
    rows = con.execute("SELECT status, content FROM messages WHERE role = 'assistant'").fetchall()
    assert rows == [("cancelled", last["text"])]


def test_the_same_seed_gives_the_same_answers(tmp_path):
    config = text_contract_config(tmp_path)
    script = tmp_path / "s.jsonl"
    script.write_text(json.dumps({"to": "all", "text": "Name a colour."}) + "\n")
    texts = []
    for run_no in range(2):
        db = tmp_path / f"h{run_no}.db"
        argv = ["batch", str(script), "--config", str(config), "--db", str(db), "--seed", "7"]
        evs = events(run(argv).stdout)
        texts.append([(e["persona"], e["text"]) for e in evs if e["event"] == "message"])
    assert texts[0] == texts[1] and len(texts[0]) >= 3


def test_resume_appends_a_scripts_turns_and_events_carry_the_script_turn(tmp_path):
    config = text_contract_config(tmp_path)
    db = tmp_path / "r.db"
    first = tmp_path / "one.toml"
    first.write_text('[[turn]]\nto = "coder"\ntext = "Say hello."\n')
    a = run(["batch", str(first), "--config", str(config), "--db", str(db), "--no-judge"])
    assert a.returncode in (0, 1), a.stderr
    session = events(a.stdout)[0]
    assert session["title"] == "one" and session["resumed"] is False
    second = tmp_path / "two.toml"
    second.write_text(
        '[[turn]]\nto = "critic"\ntext = "Say bye."\n[[turn]]\nto = "coder"\ntext = "Again."\n'
    )
    args = ["batch", str(second), "--config", str(config), "--db", str(db), "--no-judge"]
    b = run([*args, "--resume", str(session["session"])])
    assert b.returncode in (0, 1), b.stderr
    evs = events(b.stdout)
    assert evs[0]["session"] == session["session"] and evs[0]["resumed"] is True
    messages = [e for e in evs if e["event"] == "message"]
    assert [(m["script_turn"], m["persona"]) for m in messages if not m["correction"]] == [
        (1, "critic"),
        (2, "coder"),
    ]
    con = sqlite3.connect(db)
    assert con.execute("SELECT count(*) FROM sessions").fetchone() == (1,)
    users = con.execute("SELECT content FROM messages WHERE role = 'user' ORDER BY id").fetchall()
    assert [u[0].split(" ", 1)[1] for u in users] == ["Say hello.", "Say bye.", "Again."]
    missing = run([*args, "--resume", "99"])
    assert missing.returncode == 2 and missing.stderr.startswith("hermes: no session 99 in ")


def test_progress_says_how_each_turn_ended():
    import io

    from agents.events import TurnEnded, TurnStarted, VerdictRaised
    from hermes_tui.batch import JsonlWriter
    from sentinel.verdict import Verdict

    writer = JsonlWriter(io.StringIO(), 1)
    writer.script_turn, writer.script_turns = 2, 3
    asyncio_run = __import__("asyncio").run
    v = Verdict("json", "minor", "E_JSON_BROKEN", (1, 2), "x")
    asyncio_run(writer(TurnStarted(5, "coder", "hi")))
    asyncio_run(writer(VerdictRaised(5, "coder", v)))
    line = writer._outcome(TurnEnded(5, "coder", "text", 12, "halted", "E_LOOP"))
    assert line == "✖ [2/3] coder halted, 12 tok (E_LOOP); E_JSON_BROKEN"


def test_resume_of_a_hermes_serve_session_keeps_its_record(tmp_path):
    """An API request (hermes serve) to a model, continued by a batch: the session's personas
    were rewritten to the batch's (["smollm2"] became ["coder"]), so `hermes log --persona
    smollm2` no longer found it. Its own names, title, mode and messages stay."""
    from click.testing import CliRunner

    from hermes_tui.cli import main

    from .serve_util import ServeProc

    config = text_contract_config(tmp_path)
    db = tmp_path / "s.db"
    server = ServeProc(config, db, "--no-judge").start()
    try:
        asked = [{"role": "user", "content": "Say hi."}]
        server.openai().chat.completions.create(model="smollm2", messages=asked, max_tokens=4)
    finally:
        server.stop()
        server.cleanup()
    con = sqlite3.connect(db)
    [(sid, before)] = con.execute("SELECT id, personas FROM sessions").fetchall()
    assert json.loads(before) == ["smollm2"]
    api_rows = con.execute("SELECT persona, role, content FROM messages ORDER BY id").fetchall()

    script = tmp_path / "more.toml"
    script.write_text('[[turn]]\nto = "coder"\ntext = "Say hello."\n')
    resumed = run(
        ["batch", str(script), "--config", str(config), "--db", str(db), "--no-judge"]
        + ["--resume", str(sid)]
    )
    assert resumed.returncode == 0, resumed.stderr
    row = con.execute("SELECT mode, title, personas FROM sessions WHERE id = ?", (sid,)).fetchone()
    assert row[:2] == ("api", "OpenAI → smollm2")
    assert json.loads(row[2]) == ["coder", "smollm2"]  # who wrote in it: both, none lost
    after = con.execute("SELECT persona, role, content FROM messages ORDER BY id").fetchall()
    assert after[: len(api_rows)] == api_rows and len(after) > len(api_rows)

    def listed(persona: str) -> list[int]:
        out = CliRunner().invoke(main, ["log", "--db", str(db), "--json", "--persona", persona])
        assert out.exit_code == 0, out.output
        return [json.loads(line)["id"] for line in out.output.splitlines()]

    assert listed("smollm2") == [sid] and listed("coder") == [sid]


def test_out_onto_the_database_or_the_config_is_refused_and_loses_nothing(tmp_path):
    """`hermes batch s.toml --db x.db --out x.db` emptied the database (--out is emptied once
    hermes has started), and every session in it was lost."""
    config = text_contract_config(tmp_path)
    db = tmp_path / "keep.db"
    script = tmp_path / "s.toml"
    script.write_text('[[turn]]\nto = "coder"\ntext = "Say hello."\n')
    first = run(["batch", str(script), "--config", str(config), "--db", str(db), "--no-judge"])
    assert first.returncode == 0, first.stderr
    kept = {p.name: p.read_bytes() for p in (db, config)}
    for out, what in (
        (db, f"the database {db}"),
        (Path(f"{db}-wal"), "the database's wal file"),
        (tmp_path / "." / "keep.db", f"the database {db}"),
        (config, "the config file"),
    ):
        argv = ["batch", str(script), "--config", str(config), "--db", str(db), "--out", str(out)]
        refused = run([*argv, "--no-judge"])
        assert refused.returncode == 2
        assert refused.stderr == f"hermes: --out {out} is {what}; write the events somewhere else\n"
    assert {p.name: p.read_bytes() for p in (db, config)} == kept
    con = sqlite3.connect(db)
    assert con.execute("SELECT count(*) FROM sessions").fetchone() == (1,)


@pytest.mark.parametrize("seed", ["-1", "4294967295"])
def test_a_seed_llama_cpp_reads_as_random_is_refused(tmp_path: Path, seed: str) -> None:
    """--seed -1 (llama.cpp's "random") or 2**32 - 1 used to run unrepeatably under a flag
    whose help promises repeatable runs."""
    script = tmp_path / "s.jsonl"
    script.write_text(json.dumps({"to": "coder", "text": "hi"}) + "\n")
    proc = subprocess.run(
        [sys.executable, "-m", "hermes_tui.cli", "batch", str(script), "--seed", seed]
        + ["--db", str(tmp_path / "h.db"), "--config", str(write_small_config(tmp_path))],
        capture_output=True,
        text=True,
        timeout=120,
        env=hermes_env(),
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"hermes: Invalid value for '--seed': {seed} is not in the range 0<=x<=4294967294. "
        "(see hermes batch --help)"
    ]
    assert not (tmp_path / "h.db").exists()  # nothing ran


def test_ctrl_c_as_the_session_starts_leaves_no_empty_session(tmp_path):
    """The session event is written when the session is stored; a Ctrl-C right then (the
    first message's model was still being read, 1-3 s) left a session with no messages."""
    config = text_contract_config(tmp_path)
    script = tmp_path / "s.jsonl"
    script.write_text(json.dumps({"to": "coder", "text": "Say hello."}) + "\n")
    db, out = tmp_path / "h.db", tmp_path / "e.jsonl"
    argv = ["batch", str(script), "--config", str(config), "--db", str(db), "--out", str(out)]
    proc = subprocess.Popen(
        HERMES + [*argv, "--no-judge"], stderr=subprocess.PIPE, text=True, env=hermes_env()
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        with contextlib.suppress(OSError):
            if '"event": "session"' in out.read_text():
                break
        time.sleep(0.005)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode in (0, 130), err
    con = sqlite3.connect(db)
    sessions = con.execute(
        "SELECT id, (SELECT count(*) FROM messages m WHERE m.session_id = s.id) FROM sessions s"
    ).fetchall()
    assert sessions == [(1, sessions[0][1])] and sessions[0][1] >= 1
