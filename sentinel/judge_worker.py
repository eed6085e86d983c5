"""The judge's child process: loads the small model once and answers JSON-line requests.

Run as ``python -m sentinel.judge_worker --model PATH [--device cpu|cuda:N|vulkan:N]``
(``--list-devices``: the devices its llama.cpp build sees, as JSON, then exit).
It lives in its own process so that a crash in llama.cpp or in a GPU driver stack (the seed:
"an error in the iGPU's Vulkan stack must not crash the desktop") kills only this process;
the parent (``sentinel.judge.JudgeWorker``) notices the closed pipe and restarts it.

Protocol (one JSON object per line):

* startup, child -> parent: ``{"ready": true, "load_s": 0.2}`` or ``{"error": "..."}`` (exit 2)
* parent -> child: ``{"id": 1, "contract_kind": "code", "instructions": "...", "text": "...",
  "expires_at": 12345.6}`` (``expires_at``: the parent's deadline on ``time.monotonic()``, the
  same clock in both processes of one machine)
* child -> parent: ``{"id": 1, "on_task": false, "reason": "...", "latency_s": 0.4}`` or
  ``{"id": 1, "error": "..."}``; ``{"id": 1, "error": "expired", "expired": true}`` for a request
  whose deadline passed before or while it was judged (nobody waits for it: the child stops and
  takes the next one instead of working through a stale backlog)
* child -> parent, while judging: ``{"progress": 1}`` every ``PROGRESS_EVERY_S`` in which the
  process used CPU time: the parent's watchdog tells a slow judge (a loaded CPU) from a hung
  one (a frozen process, a stuck device call) by these, and kills only the hung one
* parent -> child, at any time: ``{"primary_busy": true}`` / ``false``: the personas stream (or
  stopped); read at once by a reader thread, even mid-verdict. While busy, the judge keeps its
  device work to ``--busy-share`` of the time for at most ``--busy-deadline-s`` per request
  (``sentinel.judge_yield``).

The child exits when its stdin closes, so it never outlives the parent's pipe.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import re
import signal
import sys
import threading
import time
from typing import IO, Any

from sentinel import cpu_backend
from sentinel.judge_yield import Yielder

# The verdict the model must produce. ``on_task`` comes first so that even an answer cut
# short by ``max_tokens`` still carries the decision; ``maxLength`` keeps the reason short.
VERDICT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "on_task": {"type": "boolean"},
        "reason": {"type": "string", "maxLength": 80},
    },
    "required": ["on_task", "reason"],
}

MAX_TOKENS = 48
PROGRESS_EVERY_S = 0.5
MIN_BEAT_CPU_S = 0.01  # CPU time a beat's interval must show for the process to count as working
MAX_INSTRUCTIONS_CHARS = 1000
MAX_TEXT_CHARS = 1500

SYSTEM_PROMPT = (
    "You check whether an assistant's reply answers a request. A reply about an unrelated "
    "subject, or of the wrong kind of output, is off task (on_task false). A reply that works "
    "towards what the request asks is on task (on_task true). Answer in JSON with the keys "
    "on_task and reason; the reason is a short phrase of your own."
)

_ON_TASK_RE = re.compile(r'"on_task"\s*:\s*(true|false)')
_REASON_RE = re.compile(r'"reason"\s*:\s*"((?:[^"\\]|\\.)*)')


def device_settings(device: str) -> tuple[dict[str, Any], dict[str, str]]:
    """Llama keyword arguments and extra environment for ``device``.

    ``cpu`` keeps every layer on the CPU. ``cuda:N`` / ``vulkan:N`` offload all layers to GPU
    N; the child's environment is restricted to that one GPU, so inside the child it is
    device 0 (hence ``main_gpu=0``: the restricted process sees a single device). A judge on
    Vulkan also hides every CUDA device: a llama.cpp built with both backends then never
    opens a CUDA context in the judge's process (the primary's stack stays its own).
    """
    if device == "cpu":
        return {"n_gpu_layers": 0}, {}
    backend, sep, index = device.partition(":")
    if backend not in ("cuda", "vulkan") or not sep or not index.isdigit():
        raise ValueError(f"unknown judge device {device!r} (expected cpu, cuda:N or vulkan:N)")
    if backend == "cuda":
        return {"n_gpu_layers": -1, "main_gpu": 0}, {"CUDA_VISIBLE_DEVICES": index}
    env = {"GGML_VK_VISIBLE_DEVICES": index, "CUDA_VISIBLE_DEVICES": ""}
    return {"n_gpu_layers": -1, "main_gpu": 0}, env


def list_devices() -> list[dict[str, Any]]:
    """The devices this process's llama.cpp build can offload to (ggml's backend registry):
    name, description and memory as the driver reports it, after the environment's limits."""
    import ctypes
    from pathlib import Path

    import llama_cpp

    lib_dir = Path(os.environ.get("LLAMA_CPP_LIB_PATH") or Path(llama_cpp.__file__).parent / "lib")
    ggml = (
        ctypes.CDLL(str(next(iter(sorted(lib_dir.glob("libggml.*"))))))
        if lib_dir.is_dir()
        else None
    )
    if ggml is None:
        return []
    ggml.ggml_backend_dev_count.restype = ctypes.c_size_t
    ggml.ggml_backend_dev_get.restype = ctypes.c_void_p
    ggml.ggml_backend_dev_get.argtypes = [ctypes.c_size_t]
    for fn in ("ggml_backend_dev_name", "ggml_backend_dev_description"):
        getattr(ggml, fn).restype = ctypes.c_char_p
        getattr(ggml, fn).argtypes = [ctypes.c_void_p]
    ggml.ggml_backend_dev_type.restype = ctypes.c_int
    ggml.ggml_backend_dev_type.argtypes = [ctypes.c_void_p]
    ggml.ggml_backend_dev_memory.argtypes = [ctypes.c_void_p] + [
        ctypes.POINTER(ctypes.c_size_t)
    ] * 2
    out = []
    for i in range(ggml.ggml_backend_dev_count()):
        dev = ggml.ggml_backend_dev_get(i)
        free, total = ctypes.c_size_t(0), ctypes.c_size_t(0)
        ggml.ggml_backend_dev_memory(dev, ctypes.byref(free), ctypes.byref(total))
        kind = {0: "cpu", 1: "gpu", 2: "igpu", 3: "accel"}.get(ggml.ggml_backend_dev_type(dev), "?")
        out.append(
            {
                "name": ggml.ggml_backend_dev_name(dev).decode("utf-8", "replace"),
                "description": ggml.ggml_backend_dev_description(dev).decode("utf-8", "replace"),
                "type": kind,
                "free_bytes": free.value,
                "total_bytes": total.value,
            }
        )
    return out


def build_messages(contract_kind: str, instructions: str, text: str) -> list[dict[str, str]]:
    """The chat prompt for one verdict, trimmed to fit a small context window."""
    instructions = instructions[:MAX_INSTRUCTIONS_CHARS]
    text = text[-MAX_TEXT_CHARS:]
    user = (
        f"Request: {instructions}\n"
        f"Reply so far ({contract_kind}):\n<<<\n{text}\n>>>\n"
        "Is the reply on task?"
    )
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def parse_verdict(content: str) -> tuple[bool, str]:
    """Read the model's JSON verdict; tolerate an answer truncated by ``max_tokens``.

    The grammar guarantees a valid JSON prefix, so a truncated answer still has ``on_task``
    (it is the first property) and maybe part of the reason.
    """
    try:
        data = json.loads(content)
        return bool(data["on_task"]), str(data.get("reason", ""))
    except (ValueError, KeyError, TypeError):
        pass
    match = _ON_TASK_RE.search(content)
    if match is None:
        raise ValueError(f"no verdict in model output {content[:80]!r}")
    reason = _REASON_RE.search(content)
    return match.group(1) == "true", reason.group(1) if reason else ""


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this child when its parent dies, even mid-inference (a hung GPU
    call never reads the closed stdin). Elsewhere stdin EOF is the only signal."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _send(out: IO[str], obj: dict[str, Any]) -> None:
    out.write(json.dumps(obj) + "\n")
    out.flush()


def _load(model: str, device: str, n_ctx: int, n_threads: int | None) -> Any:
    kwargs, _env = device_settings(device)  # the parent already applied the environment
    if not os.path.isfile(model):
        raise FileNotFoundError(f"no such file: {model}")
    cpu_backend.apply()  # the parent's choice is in the environment: no second probe
    from llama_cpp import Llama

    return Llama(
        model_path=model, n_ctx=n_ctx, n_threads=n_threads, verbose=False, seed=0, **kwargs
    )


class Expired(Exception):
    """The request's deadline passed: nobody waits for its verdict any more."""


class RequestWatch:
    """The request being judged, watched from two sides.

    * The judge model's decode is wrapped: before each, a request past its deadline is stopped
      (``Expired``: the batch is not decoded, so the model's state stays consistent).
    * A heartbeat thread sends ``{"progress": id}`` every ``PROGRESS_EVERY_S`` while a request
      is judged and this process used CPU time since the last beat (a loaded CPU: slow, not
      hung). A frozen process sends nothing, nor does one blocked in a stuck device call,
      which uses no CPU: those the parent's watchdog kills.
    """

    def __init__(self, llm: Any, out: IO[str], lock: threading.Lock) -> None:
        self.out = out
        self.lock = lock
        self.request_id: Any = None
        self.expires_at: float | None = None
        ctx = llm._ctx
        decode = ctx.decode

        def watched(batch: Any) -> None:
            if self.expires_at is not None and time.monotonic() > self.expires_at:
                raise Expired
            decode(batch)

        ctx.decode = watched
        threading.Thread(target=self._beat, daemon=True).start()

    def _beat(self) -> None:
        cpu = time.process_time()
        while True:
            time.sleep(PROGRESS_EVERY_S)
            now = time.process_time()
            rid, used, cpu = self.request_id, now - cpu, now
            if rid is not None and used >= MIN_BEAT_CPU_S:
                with self.lock:
                    _send(self.out, {"progress": rid})

    def expired(self, request: dict[str, Any]) -> bool:
        deadline = request.get("expires_at")
        return isinstance(deadline, (int, float)) and time.monotonic() > deadline

    def begin(self, request: dict[str, Any]) -> None:
        deadline = request.get("expires_at")
        self.expires_at = float(deadline) if isinstance(deadline, (int, float)) else None
        self.request_id = request.get("id")

    def end(self) -> None:
        self.request_id = self.expires_at = None


def answer(llm: Any, request: dict[str, Any], yielder: Yielder | None = None) -> dict[str, Any]:
    """One grammar-constrained verdict for one request."""
    started = time.perf_counter()
    paused = yielder.paused_s if yielder is not None else 0.0
    if yielder is not None:
        yielder.begin()
    result = llm.create_chat_completion(
        messages=build_messages(
            str(request.get("contract_kind", "text")),
            str(request.get("instructions", "")),
            str(request.get("text", "")),
        ),
        response_format={"type": "json_object", "schema": VERDICT_SCHEMA},
        max_tokens=MAX_TOKENS,
        temperature=0.0,
    )
    on_task, reason = parse_verdict(result["choices"][0]["message"]["content"] or "")
    out = {
        "id": request.get("id"),
        "on_task": on_task,
        "reason": reason,
        "latency_s": round(time.perf_counter() - started, 4),
    }
    if yielder is not None and yielder.paused_s > paused:
        out["paused_s"] = round(yielder.paused_s - paused, 4)  # gave way to the personas
    return out


def _read_requests(stdin: IO[str], requests: queue.Queue[Any], yielder: Yielder) -> None:
    """The reader thread: control lines take effect at once, requests queue up; EOF ends."""
    try:
        for line in stdin:
            if not line.strip():
                continue
            try:
                message = json.loads(line)
            except ValueError as exc:
                requests.put(ValueError(f"bad request line: {exc}"))
                continue
            if isinstance(message, dict) and "primary_busy" in message and "id" not in message:
                yielder.set_busy(bool(message["primary_busy"]))
                continue
            if not isinstance(message, dict):
                requests.put(ValueError("bad request line: not a JSON object"))
                continue
            requests.put(message)
    finally:
        requests.put(None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sentinel.judge_worker")
    parser.add_argument("--model", required=True)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--n-ctx", type=int, default=2048)
    parser.add_argument("--n-threads", type=int, default=None)
    parser.add_argument(
        "--busy-share", type=float, default=1.0, help="device share while the personas stream"
    )
    parser.add_argument("--busy-deadline-s", type=float, default=2.5)
    parser.add_argument(
        "--list-devices", action="store_true", help="print the devices as JSON and exit"
    )
    args = parser.parse_args(argv)
    if args.list_devices:  # `hermes doctor`: what the judge's own process would see
        try:
            print(json.dumps({"devices": list_devices()}))
        except Exception as exc:
            print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
            return 2
        return 0
    _die_with_parent()

    # Keep the protocol on a private copy of stdout and point fd 1 at stderr, so nothing that
    # llama.cpp or a GPU driver prints from C can corrupt the JSON lines.
    out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    started = time.perf_counter()
    try:
        llm = _load(args.model, args.device, args.n_ctx, args.n_threads)
    except Exception as exc:  # any load failure becomes one clear line
        reason = " ".join(str(exc).split()) or type(exc).__name__
        _send(out, {"error": f"judge model {args.model} ({args.device}): {reason}"})
        return 2
    try:
        yielder = Yielder(args.busy_share, args.busy_deadline_s)
    except ValueError as exc:
        _send(out, {"error": f"judge model {args.model} ({args.device}): {exc}"})
        return 2
    yielder.attach(llm)
    _send(out, {"ready": True, "load_s": round(time.perf_counter() - started, 4)})

    requests: queue.Queue[Any] = queue.Queue()
    threading.Thread(
        target=_read_requests, args=(sys.stdin, requests, yielder), daemon=True
    ).start()
    lock = threading.Lock()  # the heartbeat thread writes lines too
    watch = RequestWatch(llm, out, lock)
    while (request := requests.get()) is not None:
        if isinstance(request, ValueError):
            reply: dict[str, Any] = {"id": None, "error": str(request)}
        elif watch.expired(request):
            reply = {"id": request.get("id"), "error": "expired", "expired": True}
        else:
            watch.begin(request)
            try:
                reply = answer(llm, request, yielder)
            except Expired:
                reply = {"id": request.get("id"), "error": "expired", "expired": True}
            except Exception as exc:  # a failed verdict must not end the worker
                reply = {"id": request.get("id"), "error": f"{type(exc).__name__}: {exc}"}
            finally:
                watch.end()
        with lock:
            _send(out, reply)
    return 0


if __name__ == "__main__":
    sys.exit(main())
