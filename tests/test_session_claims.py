"""One session, one writer: continuing a session another live hermes process is writing to
is refused (two processes appending to one session interleaved their turns)."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import subprocess

from hermes_tui.store import Store

from .conftest import ROOT, hermes_env, write_small_config
from .test_batch import HERMES, run, wait_streaming


def test_batch_resume_of_a_session_another_process_is_writing_is_refused(tmp_path):
    config = write_small_config(tmp_path, max_tokens=400)
    config.write_text(config.read_text().replace('contract = "code"', 'contract = "text"'))
    long = tmp_path / "long.jsonl"
    ask = "Count from 1 to 300, one number per line, and nothing else."
    long.write_text(json.dumps({"to": "coder", "text": ask}) + "\n")
    db = tmp_path / "h.db"
    base = ["--config", str(config), "--db", str(db), "--no-judge"]
    holder = subprocess.Popen(
        HERMES + ["batch", str(long), *base, "--seed", "6", "--out", str(tmp_path / "a.jsonl")],
        stderr=subprocess.PIPE,
        text=True,
        env=hermes_env(),
        cwd=ROOT,
    )
    try:
        wait_streaming(holder, db)
        assert holder.poll() is None, holder.stderr.read() if holder.stderr else ""
        more = tmp_path / "more.jsonl"
        more.write_text(json.dumps({"to": "critic", "text": "Say hi."}) + "\n")
        second = run(["batch", str(more), *base, "--resume", "1"], timeout=120)
        assert second.returncode == 2, second.stderr
        assert second.stderr == (
            "hermes: session 1 is open in another hermes process (a chat or a batch run "
            "writing to it); wait for it to end, or start a new session\n"
        )
    finally:
        holder.send_signal(signal.SIGTERM)
        holder.communicate(timeout=60)
    con = sqlite3.connect(db)
    rows = con.execute("SELECT role, persona FROM messages ORDER BY id").fetchall()
    con.close()
    assert rows == [("user", "coder"), ("assistant", "coder")]  # nothing of the refused run
    # The claim ends with its process: the session can be continued now.
    again = run(["batch", str(more), *base, "--resume", "1", "--out", str(tmp_path / "b.jsonl")])
    assert again.returncode in (0, 1), again.stderr
    assert [p for (p,) in sqlite3.connect(db).execute("SELECT persona FROM messages")][-1] == (
        "critic"
    )


def test_a_store_claims_a_session_until_it_releases_it_or_closes(tmp_path):
    async def go() -> None:
        db = tmp_path / "c.db"
        one = await Store.open(db)
        two = await Store.open(db)  # another open file description: as another process
        try:
            assert one.claim_session(1) and one.claim_session(1)  # again: still its own
            assert not two.claim_session(1) and two.claim_session(2)
            one.release_session(1)
            assert two.claim_session(1)
            assert not one.claim_session(1)
            await two.close()
            assert one.claim_session(1) and one.claim_session(2)
        finally:
            await one.close()
            await two.close()

    asyncio.run(go())
