"""A judge that hangs (issue #12 item 12): a real `hermes batch` with the real judge process,
frozen with SIGSTOP (alive, never answering, as a stuck driver would be). Every judge child,
the restarted ones too, is frozen as soon as it appears.

Before: the hang was found only after a fixed 30 s and the turns in between were neither
judged nor marked. Now `[sentinel] judge_timeout_s` (default 5 s; 2 s here) bounds both: the
request is given up and the child killed within it, and every turn the judge missed has one
`E_SENTINEL_DOWN` saying so.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.conftest import ROOT, hermes_env, write_small_config


def _judges(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            kids = [int(k) for k in Path(f"/proc/{p}/task/{p}/children").read_text().split()]
        except OSError:
            continue
        todo += kids
        for k in kids:
            try:
                if b"sentinel.judge_worker" in Path(f"/proc/{k}/cmdline").read_bytes():
                    found.append(k)
            except OSError:
                pass
    return found


def test_a_hung_judge_is_found_within_its_deadline_and_every_unjudged_turn_says_so(tmp_path):
    config = write_small_config(tmp_path, max_tokens=40, judge=True)
    text = config.read_text().replace('contract = "json"', 'contract = "text"')
    text = text.replace('contract = "code"', 'contract = "text"')
    text = text.replace(
        "stall_halt_s = 30.0", "stall_halt_s = 30.0\njudge_every_chars = 50\njudge_timeout_s = 2"
    )
    config.write_text(text)
    script = tmp_path / "s.jsonl"
    asks = ["Describe the sea.", "Describe a forest.", "Describe a city.", "Describe the sky."]
    script.write_text("".join(json.dumps({"to": "critic", "text": a}) + "\n" for a in asks))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hermes_tui.cli",
            "batch",
            str(script),
            "--config",
            str(config),
            "--db",
            str(tmp_path / "j.db"),
            "--seed",
            "3",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=hermes_env(),
        cwd=ROOT,
    )
    frozen: dict[int, float] = {}
    freezing = threading.Event()
    done = threading.Event()

    def freeze() -> None:  # every judge child, once the first answer is out
        freezing.wait()
        while not done.is_set():
            for pid in _judges(proc.pid):
                if pid not in frozen:
                    os.kill(pid, signal.SIGSTOP)
                    frozen[pid] = time.monotonic()
            time.sleep(0.05)

    thread = threading.Thread(target=freeze, daemon=True)
    thread.start()
    events: list[tuple[float, dict]] = []
    try:
        for line in proc.stdout:
            events.append((time.monotonic(), json.loads(line)))
            if events[-1][1]["event"] == "message":
                freezing.set()
        rc = proc.wait(300)
    finally:
        done.set()
        if proc.poll() is None:
            proc.kill()
    assert rc in (0, 1), proc.stderr.read()
    first_frozen = min(frozen.values())
    messages = [e for _, e in events if e["event"] == "message"]
    assert len(messages) >= len(asks)
    later = [m for m in messages if m["turn"] > messages[0]["turn"]]
    down = {e["turn"] for _, e in events if e.get("code") == "E_SENTINEL_DOWN"}
    hung = [t for t, e in events if e.get("code") == "E_SENTINEL_DOWN" and "hung" in e["detail"]]
    assert hung, "the frozen judge was never reported"
    assert hung[0] - first_frozen < 2 + 4  # its deadline plus a loaded machine's slack, not 30 s
    # A turn that ends after the hang was found was not judged (the judge is asked every 50
    # characters): each says so. (A turn right after the freeze may still have been judged
    # before the freezer stopped the judge: on an idle machine it answers in time.)
    ended_after = [
        m for t, m in events if m["event"] == "message" and t > hung[0] and len(m["text"]) >= 50
    ]
    assert later and all(m["turn"] in down for m in ended_after), (
        down,
        [m["turn"] for m in ended_after],
    )
