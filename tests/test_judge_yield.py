"""The judge gives way while the personas stream (sentinel/judge_yield.py, issue #18).

The real judge child process runs the embedded SmolLM2 on the CPU; the parent says when the
personas stream and the child, while they do, spaces its decodes out (``paused_s`` in its
answer) yet still answers, and runs at full speed again once they stop or its deadline passes.
The pool's side: ModelPool tells its activity listeners when local streaming starts and stops.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from agents.engine import SamplingParams
from agents.models import resolve_model_path
from agents.pool.pool import ModelPool
from agents.specs import DeviceSpec, ModelSpec, PoolSpec
from sentinel.judge import JudgeError, JudgeRequest, JudgeWorker
from sentinel.judge_yield import Yielder
from sentinel.settings import BUSY_SHARE_GPU, SentinelSettings

SHORT = JudgeRequest("code", "Write add(a, b).", "Banana bread: mash bananas, add flour, bake.")


@pytest.fixture(scope="module")
def model_path() -> str:
    return str(resolve_model_path("embedded:smollm2-135m"))


def test_the_pause_keeps_device_work_to_the_share_and_ends_at_the_deadline() -> None:
    y = Yielder(share=0.2, deadline_s=60)
    y.begin()
    assert y.planned(0.01) == 0  # the personas are not streaming: full speed
    y.set_busy(True)
    assert y.planned(0.01) == pytest.approx(0.04)  # 0.01 s of work, then 0.04 s off: 20%
    late = Yielder(share=0.2, deadline_s=0.0)
    late.set_busy(True)
    late.begin()
    assert late.planned(0.01) == 0  # past its deadline the request runs at full speed
    assert Yielder(share=1.0).planned(5.0) == 0
    with pytest.raises(ValueError):
        Yielder(share=0)


def test_a_pause_ends_as_soon_as_the_personas_stop() -> None:
    y = Yielder(share=0.001, deadline_s=60)
    y.set_busy(True)
    y.begin()
    threading.Timer(0.1, y.set_busy, args=(False,)).start()
    t0 = time.monotonic()
    took = y.pause(1.0)  # would be ~1,000 s
    assert took < 5 and time.monotonic() - t0 < 5


def test_a_judge_on_a_gpu_gives_way_by_default_and_on_the_cpu_does_not() -> None:
    assert SentinelSettings(device="vulkan:0").busy_share == BUSY_SHARE_GPU < 1
    assert SentinelSettings(device="cpu").busy_share == 1.0
    assert SentinelSettings(device="cpu", judge_busy_share=0.2).busy_share == 0.2
    with pytest.raises(JudgeError, match="busy share"):
        JudgeWorker("m.gguf", busy_share=1.5)


async def test_a_busy_primary_slows_the_judge_which_still_answers(model_path: str) -> None:
    async with JudgeWorker(model_path, busy_share=0.5, busy_deadline_s=60) as worker:
        idle = await worker.judge(SHORT, timeout_s=120)
        assert idle is not None and idle.paused_s == 0
        worker.set_primary_busy(True)
        busy = await worker.judge(SHORT, timeout_s=120)
        assert busy is not None and busy.on_task == idle.on_task
        # Half the time off: the pauses are about as long as the decodes themselves (the
        # grammar and the rest of the request run unpaused): a good part of its latency.
        assert busy.paused_s > 0.1 * busy.latency_s
        worker.set_primary_busy(False)
        again = await worker.judge(SHORT, timeout_s=120)
        assert again is not None and again.paused_s == 0


async def test_the_deadline_bounds_how_long_a_verdict_waits(model_path: str) -> None:
    async with JudgeWorker(model_path, busy_share=0.01, busy_deadline_s=0.5) as worker:
        idle = await worker.judge(SHORT, timeout_s=120)
        assert idle is not None
        worker.set_primary_busy(True)
        busy = await worker.judge(SHORT, timeout_s=120)
        assert busy is not None
        assert 0 < busy.paused_s <= 0.6  # 1% would have meant ~100x its work in pauses


async def test_the_personas_stopping_mid_verdict_lets_it_finish_at_full_speed(
    model_path: str,
) -> None:
    async with JudgeWorker(model_path, busy_share=0.001, busy_deadline_s=600) as worker:
        worker.set_primary_busy(True)
        task = asyncio.ensure_future(worker.judge(SHORT, timeout_s=300))
        await asyncio.sleep(1.0)
        assert not task.done()  # 0.1% of the time: it crawls
        worker.set_primary_busy(False)
        t0 = time.monotonic()
        result = await task
        assert result is not None
        assert time.monotonic() - t0 < 60


async def test_a_restarted_judge_hears_that_the_personas_still_stream(model_path: str) -> None:
    async with JudgeWorker(model_path, busy_share=0.5, busy_deadline_s=60) as worker:
        worker.set_primary_busy(True)
        first_pid = worker.pid
        assert first_pid is not None
        os.kill(first_pid, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while not (worker.alive and worker.pid != first_pid):
            assert time.monotonic() < deadline, "judge not restarted"
            await asyncio.sleep(0.02)
        result = await worker.judge(SHORT, timeout_s=120)
        assert result is not None and result.paused_s > 0
        assert [v.code for v in worker.take_down_verdicts()] == ["E_SENTINEL_DOWN"]


async def test_the_pool_says_when_local_streaming_starts_and_stops() -> None:
    spec = ModelSpec("m", path=Path(resolve_model_path("embedded:smollm2-135m")), n_ctx=512)
    pool = ModelPool({"m": spec}, PoolSpec(devices=(DeviceSpec("cpu", 8 << 30),)))
    heard: list[bool] = []
    pool.add_activity_listener(heard.append)
    pool.add_activity_listener(lambda busy: 1 / 0)  # a failing listener breaks nothing

    async def turn(who: str) -> str:
        msgs = [{"role": "user", "content": f"Say hello to {who}."}]
        params = SamplingParams(max_tokens=6, temperature=0)
        return "".join([p async for p in pool.generate(who, "m", msgs, params)])

    try:
        texts = await asyncio.gather(turn("coder"), turn("critic"))
        assert all(texts)
        assert heard == [True, False]  # two at once: busy once, idle when the last ended
        assert pool.streaming == 0
        await turn("architect")
        assert heard == [True, False, True, False]
    finally:
        await pool.close()
