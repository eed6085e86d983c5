"""Shared fixtures: the repo's config, a small-token variant of it, isolated user dirs."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from sentinel import cpu_backend

ROOT = Path(__file__).resolve().parents[1]

# Tests create llama_cpp.Llama directly too: decide (and where AMX faults, turn llama.cpp's
# extra CPU buffer types off) before any of them, as hermes does before its first load.
cpu_backend.apply()


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path_factory, monkeypatch):
    """Never touch the real user's config or data directories."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "data"))
    # No test may find a hermes serve someone runs on this machine (the default socket).
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(home / "run"))
    monkeypatch.delenv("HERMES_SERVER", raising=False)
    monkeypatch.delenv("HERMES_CONFIG", raising=False)
    monkeypatch.delenv("NO_COLOR", raising=False)
    yield


def write_small_config(tmp_path: Path, max_tokens: int = 24, judge: bool = False) -> Path:
    """The default config with short answers (tests stay fast) and, by default, no judge."""
    text = (ROOT / "config.toml").read_text()
    text = re.sub(r"max_tokens = \d+", f"max_tokens = {max_tokens}", text)
    if not judge:
        text = text.replace('model = "smollm2"\nmax_corrections', 'model = ""\nmax_corrections')
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


@pytest.fixture
def small_config(tmp_path) -> Path:
    return write_small_config(tmp_path)


def hermes_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env
