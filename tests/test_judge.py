"""The judge runs the real embedded model in a real child process that we really kill."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from agents.models import resolve_model_path
from sentinel.judge import JudgeError, JudgeRequest, JudgeResult, JudgeWorker, to_verdict
from sentinel.judge_worker import device_settings, parse_verdict

LONG_MESSAGE = "Sure! " * 300 + "My favourite banana bread: mash three bananas, add flour, bake."
OFF_TASK = JudgeRequest.tail(
    "code", "Write a Python function add(a, b) that returns the sum of two numbers.", LONG_MESSAGE
)
# A short prompt keeps the tests that need *some* answer fast on a busy 2-core machine.
SHORT = JudgeRequest("code", "Write add(a, b).", "Banana bread: mash bananas, add flour, bake.")


@pytest.fixture(scope="module")
def model_path() -> str:
    return str(resolve_model_path("embedded:smollm2-135m"))


def _process_exists(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True


def _child_env() -> dict[str, str]:
    root = str(Path(__file__).resolve().parent.parent)
    return {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}


async def _wait_until(predicate, limit_s: float = 15.0) -> None:
    deadline = time.monotonic() + limit_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def test_off_task_text_gets_a_structured_grammar_constrained_verdict(model_path):
    # The full 1500-character tail takes the judge ~14 s on this 2-core VM at load 1.6 (the
    # grammar-constrained decode is slow): under more load its default 30 s hang limit and a
    # 60 s wait cut it off (None). This test is about the verdict, not the judge's deadlines
    # (test_judge_deadline and the SIGKILL/SIGSTOP tests below are): both are generous here.
    async with JudgeWorker(model_path, hang_timeout_s=400) as worker:
        assert worker.alive and worker.load_s is not None
        result = await worker.judge(OFF_TASK, timeout_s=400)
        assert isinstance(result, JudgeResult)
        assert isinstance(result.on_task, bool)
        assert isinstance(result.reason, str) and len(result.reason) <= 80
        assert result.latency_s > 0
        # Only the tail of a long message is sent; the verdict points at that tail.
        assert 0 < OFF_TASK.offset and len(OFF_TASK.text) <= 1500
        assert OFF_TASK.text.endswith("bake.") and OFF_TASK.span[1] == len(LONG_MESSAGE)
        verdict = to_verdict(result, OFF_TASK.span)
        assert (verdict is None) == result.on_task


def test_an_off_task_answer_becomes_a_minor_drift_and_on_task_none():
    off = to_verdict(JudgeResult(False, "talks about baking", 0.3), (10, 40))
    assert off is not None
    assert (off.check, off.code, off.severity, off.span) == ("judge", "E_DRIFT", "minor", (10, 40))
    assert "baking" in off.detail
    assert to_verdict(JudgeResult(True, "fine", 0.3), (0, 5)) is None
    assert to_verdict(None, (0, 5)) is None


def test_tail_windows_of_a_growing_message_share_their_start():
    message = "x" * 2100
    first = JudgeRequest.tail("text", "task", message)
    later = JudgeRequest.tail("text", "task", message + "y" * 300)
    assert first.offset == later.offset == 1000  # same prompt prefix: KV cache reuse
    assert message[first.offset :] == first.text and len(later.text) <= 1500
    assert JudgeRequest.tail("text", "task", "short").span == (0, 5)


def test_an_answer_cut_short_by_max_tokens_still_carries_the_decision():
    assert parse_verdict('{"on_task": false, "reason": "it is about cake and') == (
        False,
        "it is about cake and",
    )
    assert parse_verdict('{ "on_task": true, "reason": "ok" }') == (True, "ok")
    with pytest.raises(ValueError):
        parse_verdict('{"reason": "')


async def test_sigkill_mid_request_three_times_is_survived_and_reported(model_path):
    downs = []
    async with JudgeWorker(model_path, on_down=downs.append) as worker:
        for round_no in range(1, 4):
            pid = worker.pid
            pending = asyncio.create_task(worker.judge(OFF_TASK, timeout_s=30))
            await _wait_until(lambda: worker.pending > 0)
            os.kill(pid, signal.SIGKILL)
            killed_at = time.monotonic()
            assert await pending is None
            assert time.monotonic() - killed_at < 3.0  # not the 30 s timeout
            assert len(worker.down_verdicts) == round_no
            down = worker.down_verdicts[-1]
            assert (down.check, down.code, down.severity) == ("judge", "E_SENTINEL_DOWN", "minor")
            assert "SIGKILL" in down.detail and down.span == OFF_TASK.span
            # While it restarts, asking is answered at once with no opinion.
            if not worker.alive:
                assert await worker.judge(OFF_TASK) is None
            await _wait_until(lambda: worker.alive)
            assert worker.pid != pid and worker.restarts == round_no
        assert downs == worker.down_verdicts
        assert isinstance(await worker.judge(SHORT, timeout_s=30), JudgeResult)
        assert len(worker.take_down_verdicts()) == 3 and worker.down_verdicts == []


async def test_a_hung_child_is_killed_by_the_watchdog_and_restarted(model_path):
    async with JudgeWorker(model_path, hang_timeout_s=0.5) as worker:
        pid = worker.pid
        pending = asyncio.create_task(worker.judge(OFF_TASK, timeout_s=30))
        await _wait_until(lambda: worker.pending > 0)
        os.kill(pid, signal.SIGSTOP)  # a frozen driver: alive but never answers
        assert await pending is None
        assert "hung" in worker.down_verdicts[-1].detail
        await _wait_until(lambda: worker.alive)
        assert not _process_exists(pid)


# About 800 characters: a few seconds of judging on this CPU, long enough to throttle.
MEDIUM = JudgeRequest.tail(
    "code", "Write a Python function add(a, b) that returns the sum.", "Sure! " * 120 + "Bake."
)


async def test_a_slow_judge_is_not_taken_for_a_hung_one(model_path):
    """On a loaded CPU a judgement can take longer than the hang limit (the chat's is
    judge_timeout_s, 5 s; a 1,500-character tail took 14 s on a busy 2-core machine): the
    watchdog killed the judge as 'hung' and reloaded its model, again every turn, and no
    verdict ever came. A slow child reports progress and is left to finish. Slowed for real:
    SIGSTOP/SIGCONT in turn, half the time stopped."""
    async with JudgeWorker(model_path, hang_timeout_s=3.0) as worker:
        pid = worker.pid
        assert pid is not None
        stop = asyncio.Event()

        async def throttle() -> None:
            with contextlib.suppress(ProcessLookupError):  # killed: the assertions say so
                while not stop.is_set():
                    os.kill(pid, signal.SIGSTOP)
                    await asyncio.sleep(0.2)
                    os.kill(pid, signal.SIGCONT)
                    await asyncio.sleep(0.2)

        started = time.monotonic()
        throttler = asyncio.create_task(throttle())
        try:
            result = await worker.judge(MEDIUM, timeout_s=120)
        finally:
            stop.set()
            await throttler
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        took = time.monotonic() - started
        assert isinstance(result, JudgeResult), worker.down_verdicts
        assert took > worker.hang_timeout_s  # it was slower than the hang limit...
        assert (
            worker.restarts == 0 and worker.pid == pid and not worker.down_verdicts
        )  # ...and kept


async def test_a_request_nobody_waits_for_is_dropped_not_judged(model_path):
    """The caller gave up (the monitor's deadline): the child stops that judgement at its next
    decode and takes the next request, instead of finishing a verdict nobody reads."""
    async with JudgeWorker(model_path) as worker:
        assert await worker.judge(MEDIUM, timeout_s=0.3) is None
        await _wait_until(lambda: worker.expired == 1 and worker.pending == 0, 30)
        assert isinstance(await worker.judge(SHORT, timeout_s=60), JudgeResult)
        assert worker.expired == 1 and worker.restarts == 0


async def test_a_caller_timeout_gives_none_and_the_judge_keeps_working(model_path):
    async with JudgeWorker(model_path) as worker:
        assert await worker.judge(SHORT, timeout_s=0.001) is None
        # The abandoned answer is dropped; the next caller gets its own.
        assert isinstance(await worker.judge(SHORT, timeout_s=30), JudgeResult)
        assert worker.alive and worker.down_verdicts == []


@pytest.mark.parametrize(
    "content", [None, b"GGUF" + b"\0" * 64, b"not a model"], ids=["missing", "corrupt", "not-gguf"]
)
async def test_a_bad_model_file_fails_start_with_one_clear_line(tmp_path, capfd, content):
    path = tmp_path / "judge.gguf"
    if content is not None:
        path.write_bytes(content)
    worker = JudgeWorker(str(path))
    with pytest.raises(JudgeError) as caught:
        await worker.start()
    message = str(caught.value)
    assert message.startswith(f"judge model {path}") and "\n" not in message
    assert not worker.alive and await worker.judge(OFF_TASK) is None
    await worker.close()
    assert capfd.readouterr().err == ""  # llama.cpp's complaints never reach the terminal


def test_an_unknown_device_is_refused_and_gpus_are_pinned_per_child():
    with pytest.raises(JudgeError, match="tpu:0"):
        JudgeWorker("model.gguf", device="tpu:0")
    assert device_settings("cpu") == ({"n_gpu_layers": 0}, {})
    # The child sees only its own GPU, which is then device 0 inside it.
    assert device_settings("cuda:1") == (
        {"n_gpu_layers": -1, "main_gpu": 0},
        {"CUDA_VISIBLE_DEVICES": "1"},
    )
    # On Vulkan every CUDA device is hidden too (a build with both backends).
    assert device_settings("vulkan:0")[1] == {
        "GGML_VK_VISIBLE_DEVICES": "0",
        "CUDA_VISIBLE_DEVICES": "",
    }


async def test_the_child_dies_with_a_crashed_parent(model_path, tmp_path):
    script = tmp_path / "parent.py"
    script.write_text(
        "import asyncio, os, sys\n"
        "from sentinel.judge import JudgeWorker\n"
        "async def main():\n"
        f"    w = JudgeWorker({model_path!r})\n"
        "    await w.start()\n"
        "    print(w.pid, flush=True)\n"
        "    os._exit(9)  # a crash: no close(), no cleanup\n"
        "asyncio.run(main())\n"
    )
    parent = await asyncio.create_subprocess_exec(
        sys.executable, str(script), stdout=asyncio.subprocess.PIPE, env=_child_env()
    )
    out, _ = await parent.communicate()
    child = int(out.split()[0])
    await _wait_until(lambda: not _process_exists(child) or _is_zombie(child), limit_s=10)


async def test_close_leaves_no_child_process_and_stops_answering(model_path):
    worker = JudgeWorker(model_path)
    assert await worker.judge(OFF_TASK) is None  # not started yet: no opinion, no error
    await worker.start()
    pid = worker.pid
    assert pid is not None and _process_exists(pid)
    await worker.close()
    assert not _process_exists(pid)
    assert not worker.alive and await worker.judge(OFF_TASK) is None
    assert worker.down_verdicts == []  # a deliberate close is not an outage
