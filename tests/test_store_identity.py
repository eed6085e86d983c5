"""The writers' lock is keyed by the database file, not by the name it was opened by
(issue #12 item 5): real `hermes batch` processes, one through a symlink.

Model output is a replay (tests/sse_replay.py) so that the first answer streams for seconds
at a known pace while the second process starts.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time

from tests.conftest import ROOT, hermes_env
from tests.test_outbound import Replay, lit, replay_config, script


def _batch(config, script_path, db, out):
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hermes_tui.cli",
            "batch",
            str(script_path),
            "--config",
            str(config),
            "--db",
            str(db),
            "--no-judge",
            "--out",
            str(out),
        ],
        env=hermes_env(),
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_second_writer_through_a_symlink_leaves_the_first_ones_message_alone(tmp_path):
    real_dir, link_dir = tmp_path / "real", tmp_path / "link"
    real_dir.mkdir()
    link_dir.mkdir()
    slow = Replay(real_dir, [[lit(f"w{i} ") for i in range(60)]], pace=0.25)  # ~15 s
    quick = Replay(link_dir, [[lit("Fine.")]])
    try:
        db = real_dir / "h.db"
        link = link_dir / "same.db"
        link.symlink_to(db)
        first = _batch(
            replay_config(real_dir, slow.port), script(real_dir, "go"), db, real_dir / "o.jsonl"
        )
        deadline = time.monotonic() + 60
        streaming = []
        while not streaming and time.monotonic() < deadline:
            time.sleep(0.2)
            if db.exists():
                try:
                    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
                    streaming = con.execute(
                        "SELECT id FROM messages WHERE status = 'streaming'"
                    ).fetchall()
                    con.close()
                except sqlite3.Error:
                    pass
        assert streaming, "the first answer never started streaming"
        second = _batch(
            replay_config(link_dir, quick.port), script(link_dir, "hi"), link, link_dir / "o.jsonl"
        )
        assert second.wait(120) == 0, second.stderr.read()
        assert first.poll() is None, "the first answer ended too soon for this test"
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        (during,) = con.execute(
            "SELECT status FROM messages WHERE id = ?", (streaming[0][0],)
        ).fetchone()
        con.close()
        assert during == "streaming"  # was 'interrupted': its later checkpoints were dropped
        assert first.wait(120) == 0, (real_dir / "o.jsonl").read_text()
    finally:
        slow.stop()
        quick.stop()
    con = sqlite3.connect(db)
    status, content = con.execute(
        "SELECT status, content FROM messages WHERE id = ?", (streaming[0][0],)
    ).fetchone()
    assert status == "done"
    assert content == "".join(f"w{i} " for i in range(60))
    events = [json.loads(x) for x in (link_dir / "o.jsonl").read_text().splitlines()]
    assert any(e["event"] == "message" and e["text"] == "Fine." for e in events)
