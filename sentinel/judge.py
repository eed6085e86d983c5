"""The sentinel's small-model judge, run in a supervised child process.

The deterministic checks run in-process; the judge is a small LLM asked "is this output still
on task?". It runs in its own process (``sentinel.judge_worker``) on its own device so that a
crash in llama.cpp or a GPU driver stack takes down only the child, never the app: the parent
notices the closed pipe, answers every pending ``judge()`` with ``None`` at once, records an
``E_SENTINEL_DOWN`` verdict and restarts the child in the background.

The parent side never blocks the event loop and never raises into the caller after
``start()``: a dead, restarting, hung or slow judge simply yields ``None`` (no opinion).
The judge only ever produces *minor* verdicts on its own (see :func:`to_verdict`).

Size (over 500 lines): the child process's whole supervision (start, read loop, watchdog,
restart, outage verdicts) is one lifecycle over one process handle.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sentinel.judge_worker import MAX_TEXT_CHARS, device_settings
from sentinel.settings import SentinelSettings
from sentinel.verdict import Verdict

_PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)


class JudgeError(Exception):
    """The judge could not be started (bad model path, bad device, child failed to load).

    Not a ``agents.errors.HermesError``: the sentinel imports nothing of hermes.
    """

    code = "E_JUDGE"


@dataclass(frozen=True, slots=True)
class JudgeRequest:
    """What the judge is shown: the task, the contract kind and the tail of the output.

    ``offset`` is the character offset of ``text[0]`` in the whole message, so a verdict can
    point at the part of the message that was judged.
    """

    contract_kind: str
    instructions: str
    text: str
    offset: int = 0

    @classmethod
    def tail(
        cls,
        contract_kind: str,
        instructions: str,
        message: str,
        limit: int = MAX_TEXT_CHARS,
        step: int = 500,
    ) -> JudgeRequest:
        """A request for at most the last ``limit`` characters of ``message``.

        The small model's context is short and drift shows at the end. The window start is
        rounded up to a multiple of ``step`` so that successive requests on a growing message
        share a long prompt prefix, which llama.cpp then reuses from its KV cache instead of
        evaluating it again.
        """
        offset = max(0, len(message) - limit)
        if step > 0:
            offset = -(-offset // step) * step
        return cls(contract_kind, instructions, message[offset:], offset)

    @property
    def span(self) -> tuple[int, int]:
        return (self.offset, self.offset + len(self.text))


@dataclass(frozen=True, slots=True)
class JudgeResult:
    """The judge's answer; ``latency_s`` is the round trip seen by the caller."""

    on_task: bool
    reason: str
    latency_s: float
    paused_s: float = 0.0  # how long the judge gave way to streaming personas (judge_yield)


def to_verdict(result: JudgeResult | None, span: tuple[int, int]) -> Verdict | None:
    """An off-task answer becomes a *minor* ``E_DRIFT``; anything else is no verdict.

    The judge is a tiny model and can be wrong, so it never escalates on its own.
    """
    if result is None or result.on_task:
        return None
    reason = result.reason.strip() or "no reason given"
    return Verdict(
        check="judge", severity="minor", code="E_DRIFT", span=span, detail=f"off task: {reason}"
    )


@dataclass(slots=True)
class _Pending:
    future: asyncio.Future[JudgeResult | None]
    sent_at: float
    span: tuple[int, int]


def _check_llama_cpp_path(path: str | None) -> str | None:
    """``path`` (a directory holding a ``llama_cpp`` package) made absolute, or ValueError."""
    if not path:
        return None
    where = Path(path).expanduser().resolve()
    if not (where / "llama_cpp").is_dir():
        raise ValueError(f"llama_cpp_path {path}: no llama_cpp package there")
    return str(where)


def judge_env(device_env: dict[str, str], llama_cpp_path: str | None = None) -> dict[str, str]:
    """The judge child's environment: the parent's, limited to the judge's device, importing
    this very package (wherever the parent found it) and ``llama_cpp`` from
    ``llama_cpp_path`` first when one is given."""
    env = dict(os.environ)
    env.update(device_env)
    if llama_cpp_path:
        env.pop("LLAMA_CPP_LIB_PATH", None)  # the other build's libraries must not be used
    first = [_PACKAGE_ROOT] + ([llama_cpp_path] if llama_cpp_path else [])
    rest = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p not in first]
    env["PYTHONPATH"] = os.pathsep.join(first + rest)
    return env


def judge_devices(
    device: str, llama_cpp_path: str | None = None, timeout_s: float = 60.0
) -> list[dict[str, object]]:
    """The devices a judge on ``device`` would see in its own process (its build, its limits);
    raise :class:`JudgeError` with one line when that process cannot tell."""
    import subprocess

    try:
        _kwargs, device_env = device_settings(device)
        env = judge_env(device_env, _check_llama_cpp_path(llama_cpp_path))
    except ValueError as exc:
        raise JudgeError(str(exc)) from None
    cmd = [sys.executable, "-m", "sentinel.judge_worker", "--model", "-", "--list-devices"]
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout_s)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise JudgeError(f"cannot list the judge's devices: {exc}") from None
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    data = _parse_line(lines[-1].encode()) if lines else {}
    if "devices" not in data:
        why = data.get("error") or (proc.stderr.strip().splitlines() or ["no answer"])[-1]
        raise JudgeError(f"cannot list the judge's devices: {why}")
    return list(data["devices"])


def _exit_detail(returncode: int | None) -> str:
    if returncode is None:
        return "pipe closed"
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with code {returncode}"


class JudgeWorker:
    """Supervises one judge child process speaking JSON lines over stdin/stdout.

    ``on_down`` (optional) is called with each ``E_SENTINEL_DOWN`` verdict; they are also kept
    in :attr:`down_verdicts` until :meth:`take_down_verdicts`. ``hang_timeout_s`` is how long
    a child holding a request may stay silent (no answer, no progress line) before it is
    deemed hung and killed (a per-call
    ``timeout_s`` only stops waiting, and the child drops the request when it passes; a child
    that is slow, not hung, sends progress lines and is not killed). ``log_path`` receives the
    child's stderr (llama.cpp logs); by default it is discarded so it never hits the terminal.

    ``set_primary_busy(True)`` while the personas stream makes the child keep its device work
    to ``busy_share`` of the time (1: never gives way), for at most ``busy_deadline_s`` per
    request (``sentinel.judge_yield``); the state is sent again to a restarted child.
    """

    @classmethod
    def from_settings(
        cls, settings: SentinelSettings, *, hang_timeout_s: float | None = None
    ) -> JudgeWorker:
        """The judge that ``[sentinel]`` describes (chat, batch and hermes serve all build it
        here): its model, device and llama-cpp-python build; it gives way to streaming personas
        (``judge_busy_share``) for at most half of ``judge_timeout_s`` a request, and a child
        that answers nothing for ``hang_timeout_s`` (default ``judge_timeout_s``) is deemed
        hung and restarted."""
        if not settings.judge_model_path:
            raise ValueError("[sentinel] names no judge model")
        return cls(
            settings.judge_model_path,
            settings.device,
            llama_cpp_path=settings.judge_llama_cpp_path,
            busy_share=settings.busy_share,
            busy_deadline_s=settings.judge_timeout_s / 2,
            hang_timeout_s=settings.judge_timeout_s if hang_timeout_s is None else hang_timeout_s,
        )

    def __init__(
        self,
        model_path: str,
        device: str = "cpu",
        n_ctx: int = 2048,
        restart_delay_s: float = 0.2,
        *,
        n_threads: int | None = None,
        on_down: Callable[[Verdict], None] | None = None,
        hang_timeout_s: float = 30.0,
        start_timeout_s: float = 60.0,
        log_path: str | None = None,
        llama_cpp_path: str | None = None,
        busy_share: float = 1.0,
        busy_deadline_s: float = 2.5,
    ) -> None:
        try:
            _kwargs, self._device_env = device_settings(device)
        except ValueError as exc:
            raise JudgeError(f"judge model {model_path} : {exc}") from None
        if not 0 < busy_share <= 1:
            raise JudgeError(f"judge model {model_path} : busy share {busy_share} not in (0, 1]")
        self.busy_share = busy_share
        self.busy_deadline_s = busy_deadline_s
        self._primary_busy = False
        # A second llama-cpp-python build for the judge alone (e.g. Vulkan beside a CUDA
        # primary): the child imports llama_cpp from there first.
        try:
            self.llama_cpp_path = _check_llama_cpp_path(llama_cpp_path)
        except ValueError as exc:
            raise JudgeError(f"judge model {model_path} : {exc}") from None
        self.model_path = str(model_path)
        self.device = device
        self.n_ctx = n_ctx
        self.restart_delay_s = restart_delay_s
        self.n_threads = n_threads
        self.on_down = on_down
        self.hang_timeout_s = hang_timeout_s
        self.start_timeout_s = start_timeout_s
        self.log_path = log_path
        self.load_s: float | None = None  # child start to model loaded, last start
        self.last_restart_s: float | None = None  # death noticed to ready again, last restart
        self._proc: asyncio.subprocess.Process | None = None
        self._ready = False
        self._closed = False
        self._restarts = 0
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._last_life = 0.0  # the child's last line (answer or progress), time.monotonic()
        self.expired = 0  # requests the child dropped because their deadline had passed
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._restart_task: asyncio.Task[None] | None = None
        self._kill_reason: str | None = None
        self._down: list[Verdict] = []
        self.start_error: str | None = None  # why the first start failed, if it did

    # -- public state -------------------------------------------------------------------

    @property
    def alive(self) -> bool:
        """True when a loaded child is running and can take requests."""
        proc = self._proc
        return self._ready and not self._closed and proc is not None and proc.returncode is None

    @property
    def restarts(self) -> int:
        return self._restarts

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def pending(self) -> int:
        """Requests sent to the child and not yet answered (including abandoned ones)."""
        return len(self._pending)

    @property
    def down_verdicts(self) -> list[Verdict]:
        return list(self._down)

    @property
    def primary_busy(self) -> bool:
        return self._primary_busy

    def set_primary_busy(self, busy: bool) -> None:
        """The personas started (True) or stopped (False) streaming: tell the child at once
        (a control line on its stdin; a dead or starting child gets it when it is ready)."""
        if busy == self._primary_busy:
            return
        self._primary_busy = busy
        if self.alive:
            self._send_busy()

    def _send_busy(self) -> None:
        proc = self._proc
        if proc is None or proc.stdin is None or self.busy_share >= 1:
            return
        with contextlib.suppress(Exception):  # a dying child: the reader restarts it
            proc.stdin.write(
                b'{"primary_busy": %s}\n' % (b"true" if self._primary_busy else b"false")
            )

    def take_down_verdicts(self) -> list[Verdict]:
        """Return and forget the ``E_SENTINEL_DOWN`` verdicts recorded so far."""
        taken, self._down = self._down, []
        return taken

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Start the child and wait until the model is loaded; raise :class:`JudgeError`."""
        if self._closed:
            raise JudgeError(f"judge model {self.model_path} : worker is closed")
        if self.alive:
            return
        await self._spawn()

    async def start_in_background(self) -> None:
        """``start`` for callers that go on without waiting (the chat, batch runs). A judge
        that cannot start does not stop them: the deterministic checks still run, and the
        next judged message gets one ``E_SENTINEL_DOWN`` saying why (no retries: a model
        that failed to load fails again)."""
        try:
            await self.start()
        except (JudgeError, OSError) as exc:
            self.start_error = str(exc)
            verdict = Verdict(
                check="judge",
                severity="minor",
                code="E_SENTINEL_DOWN",
                span=(0, 0),
                detail=f"{exc}; the judge is off, the other checks still run",
            )
            self._down.append(verdict)
            if self.on_down is not None:
                with contextlib.suppress(Exception):
                    self.on_down(verdict)

    async def close(self) -> None:
        """Stop the child (EOF first, then kill) and any restart; pending calls get None."""
        self._closed = True
        self._ready = False
        if self._restart_task is not None:
            self._restart_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._restart_task
        proc = self._proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(Exception):
                proc.stdin.close()  # type: ignore[union-attr]
            await _reap(proc, grace_s=2.0)
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._fail_pending()

    async def __aenter__(self) -> JudgeWorker:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- judging ------------------------------------------------------------------------

    async def judge(self, request: JudgeRequest, timeout_s: float = 10) -> JudgeResult | None:
        """Ask the judge; ``None`` when it is down, restarting, slow or gave no verdict."""
        if not self.alive:
            return None
        try:
            expires_at = time.monotonic() + timeout_s
            return await asyncio.wait_for(self._round_trip(request, expires_at), timeout_s)
        except TimeoutError:
            return None
        except Exception:  # the judge is advisory: never let it break the caller
            return None

    async def _round_trip(self, request: JudgeRequest, expires_at: float) -> JudgeResult | None:
        async with self._lock:  # one request in the child at a time: no stale backlog
            proc = self._proc
            if not self.alive or proc is None or proc.stdin is None:
                return None
            rid = next(self._ids)
            future: asyncio.Future[JudgeResult | None] = asyncio.get_running_loop().create_future()
            self._pending[rid] = _Pending(future, time.monotonic(), request.span)
            line = {
                "id": rid,
                "contract_kind": request.contract_kind,
                "instructions": request.instructions,
                "text": request.text,
                "expires_at": expires_at,  # the child drops it once nobody waits for it
            }
            try:
                proc.stdin.write((json.dumps(line) + "\n").encode("utf-8"))
                await proc.stdin.drain()
            except (BrokenPipeError, ConnectionResetError, RuntimeError):
                self._pending.pop(rid, None)
                return None  # the reader notices the death and restarts the child
            return await future

    # -- child management ---------------------------------------------------------------

    def _command(self) -> list[str]:
        cmd = [sys.executable, "-m", "sentinel.judge_worker", "--model", self.model_path]
        cmd += ["--device", self.device, "--n-ctx", str(self.n_ctx)]
        if self.n_threads is not None:
            cmd += ["--n-threads", str(self.n_threads)]
        if self.busy_share < 1:
            cmd += ["--busy-share", f"{self.busy_share:g}"]
            cmd += ["--busy-deadline-s", f"{self.busy_deadline_s:g}"]
        return cmd

    def _env(self) -> dict[str, str]:
        return judge_env(self._device_env, self.llama_cpp_path)

    async def _spawn(self) -> None:
        started = time.monotonic()
        log = open(self.log_path, "ab") if self.log_path else None
        proc: asyncio.subprocess.Process | None = None
        try:
            proc = await asyncio.create_subprocess_exec(
                *self._command(),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=log if log is not None else asyncio.subprocess.DEVNULL,
                env=self._env(),
            )
            assert proc.stdout is not None
            try:
                first = await asyncio.wait_for(proc.stdout.readline(), self.start_timeout_s)
            except TimeoutError:
                raise JudgeError(
                    f"judge model {self.model_path} : not loaded after {self.start_timeout_s} s"
                ) from None
            message = _parse_line(first)
            if not message.get("ready"):
                await _reap(proc)
                reason = message.get("error") or f"worker {_exit_detail(proc.returncode)}"
                if not str(reason).startswith("judge model"):
                    reason = f"judge model {self.model_path} : {reason}"
                raise JudgeError(str(reason))
        except BaseException:
            if proc is not None:
                await _reap(proc)
            raise
        finally:
            if log is not None:
                log.close()
        self.load_s = time.monotonic() - started
        self._proc = proc
        self._kill_reason = None
        self._ready = True
        if self._primary_busy:
            self._send_busy()
        self._track(self._read_loop(proc))
        self._track(self._watchdog(proc))

    def _track(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _read_loop(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        while True:
            try:
                raw = await proc.stdout.readline()
            except (ValueError, ConnectionError):  # an over-long line: treat as broken child
                raw = b""
            if not raw:
                break
            message = _parse_line(raw)
            self._last_life = time.monotonic()
            if "progress" in message:  # still judging: slow, not hung
                continue
            if message.get("expired"):
                self.expired += 1
            entry = self._pending.pop(message.get("id", -1), None)
            if entry is None or entry.future.done():
                continue  # an answer nobody waits for any more (caller timed out)
            latency = time.monotonic() - entry.sent_at
            if "on_task" in message:
                result = JudgeResult(
                    bool(message["on_task"]),
                    str(message.get("reason", "")),
                    latency,
                    float(message.get("paused_s", 0.0)),
                )
                entry.future.set_result(result)
            else:
                entry.future.set_result(None)
        # stdout closed: the child is dead or dying; give it a moment, then make sure.
        await _reap(proc, grace_s=1.0)
        self._child_down(proc)

    async def _watchdog(self, proc: asyncio.subprocess.Process) -> None:
        """Kill a child that holds a request and says nothing for ``hang_timeout_s`` (a hung
        driver, a stuck kernel, a frozen process). A slow one (a loaded CPU) sends a progress
        line after its decodes and is left alone: its late requests expire instead."""
        period = max(0.05, min(1.0, self.hang_timeout_s / 4))
        while proc.returncode is None:
            await asyncio.sleep(period)
            if self._pending and proc is self._proc:
                oldest = min(p.sent_at for p in self._pending.values())
                if time.monotonic() - max(oldest, self._last_life) > self.hang_timeout_s:
                    self._kill_reason = (
                        f"no answer and no progress for {self.hang_timeout_s:g} s (hung)"
                    )
                    _kill(proc)
                    return

    def _child_down(self, proc: asyncio.subprocess.Process) -> None:
        if proc is not self._proc:
            return
        self._ready = False
        span = next(iter(self._pending.values())).span if self._pending else (0, 0)
        busy = bool(self._pending)
        self._fail_pending()
        if self._closed:
            return
        cause = self._kill_reason or _exit_detail(proc.returncode)
        verdict = Verdict(
            check="judge",
            severity="minor",
            code="E_SENTINEL_DOWN",
            span=span,
            detail=f"judge worker {cause}{' while judging' if busy else ''}; restarting",
        )
        self._down.append(verdict)
        if self.on_down is not None:
            with contextlib.suppress(Exception):
                self.on_down(verdict)
        if self._restart_task is None or self._restart_task.done():
            self._restart_task = asyncio.get_running_loop().create_task(
                self._restart(time.monotonic())
            )

    async def _restart(self, down_at: float) -> None:
        delay = self.restart_delay_s
        while not self._closed:
            await asyncio.sleep(delay)
            try:
                await self._spawn()
            except JudgeError:
                delay = min(max(delay * 2, 0.5), 5.0)  # e.g. the model file went away
                continue
            self._restarts += 1
            self.last_restart_s = time.monotonic() - down_at
            return

    def _fail_pending(self) -> None:
        pending, self._pending = self._pending, {}
        for entry in pending.values():
            if not entry.future.done():
                entry.future.set_result(None)


def _parse_line(raw: bytes) -> dict[str, Any]:
    try:
        message = json.loads(raw.decode("utf-8", "replace"))
    except ValueError:
        return {}
    return message if isinstance(message, dict) else {}


def _kill(proc: asyncio.subprocess.Process) -> None:
    """SIGKILL without ``Popen.kill()``, whose internal ``poll()`` would reap the child behind
    asyncio's child watcher (which then reports a bogus exit code 255)."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)


async def _reap(proc: asyncio.subprocess.Process, grace_s: float = 2.0) -> None:
    """Close the child's stdin, wait ``grace_s`` for it to exit, then kill it."""
    if proc.stdin is not None:
        with contextlib.suppress(Exception):
            proc.stdin.close()
    if proc.returncode is None:
        try:
            await asyncio.wait_for(proc.wait(), grace_s)
        except TimeoutError:
            _kill(proc)
            await proc.wait()
