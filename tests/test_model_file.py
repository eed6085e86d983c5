"""A model file that changes under a running hermes (issue #12 item 4).

Real `hermes batch` subprocesses on a copy of the embedded GGUF; the file is truncated or
overwritten in place between the first answer and the next turn. Before the fix the process
died of SIGBUS (exit -7/135, nothing on stderr, the message left 'streaming') or every later
answer was dots; now the loaded model is a copy in memory and the run goes on unchanged.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from agents.models import resolve_model_path
from tests.conftest import ROOT, hermes_env, write_small_config


def _setup(tmp_path: Path) -> tuple[Path, Path, Path]:
    model = tmp_path / "model.gguf"
    shutil.copyfile(resolve_model_path("embedded:smollm2-135m"), model)
    config = write_small_config(tmp_path, max_tokens=12)
    text = config.read_text().replace('path = "embedded:smollm2-135m"', f'path = "{model}"')
    text = text.replace('contract = "json"', 'contract = "text"')
    config.write_text(text.replace('contract = "code"', 'contract = "text"'))
    script = tmp_path / "two.jsonl"
    script.write_text(
        json.dumps({"to": "critic", "text": "Name a colour."})
        + "\n"
        + json.dumps({"to": "critic", "text": "Name a fruit."})
        + "\n"
    )
    return model, config, script


def _run(tmp_path: Path, config: Path, script: Path, db: str, damage=None):
    """Run the batch; call ``damage()`` once the first answer is out. Returns (rc, events)."""
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
            str(tmp_path / db),
            "--seed",
            "7",
            "--no-judge",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=hermes_env(),
        cwd=ROOT,
    )
    events = []
    try:
        for line in proc.stdout:
            events.append(json.loads(line))
            if damage and events[-1]["event"] == "message":
                damage()
                damage = None
        rc = proc.wait(300)
    finally:
        if proc.poll() is None:
            proc.kill()
    return rc, [e for e in events if e["event"] == "message"], proc.stderr.read()


@pytest.mark.parametrize("how", ["truncated", "overwritten"])
def test_a_model_file_changed_between_turns_never_kills_or_corrupts_the_run(tmp_path, how):
    model, config, script = _setup(tmp_path)
    rc, reference, err = _run(tmp_path, config, script, "ref.db")
    assert rc == 0 and len(reference) == 2, err

    def damage() -> None:
        if how == "truncated":
            os.truncate(model, 1 << 20)
        else:  # the same size, other bytes: in place, as `cp other.gguf model.gguf` does
            with open(model, "r+b") as f:
                f.seek(1 << 20)
                f.write(b"\x00" * (model.stat().st_size - (1 << 20)))

    rc, messages, err = _run(tmp_path, config, script, "hit.db", damage)
    assert rc == 0, (rc, err)  # SIGBUS was -7 (135 in a shell)
    assert [m["status"] for m in messages] == ["done", "done"]
    assert [m["text"] for m in messages] == [m["text"] for m in reference]  # not dots
