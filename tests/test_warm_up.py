"""A model loaded ahead of need is warmed up in the background, never in the user's turn.

The GPU is faked (labelled in the names): SeqRunner is told the build can offload, so it takes
its GPU path (warm-up included) while llama.cpp runs the synthetic model on the CPU.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from agents.engine import SamplingParams
from agents.pool.pool import ModelPool
from agents.pool.runner import SeqRunner
from agents.specs import DeviceSpec, ModelSpec, PoolSpec
from tests.gguf_factory import write_llama_gguf

GREEDY = SamplingParams(max_tokens=24, temperature=0.0)


@pytest.fixture
def fake_gpu_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModelSpec:
    import llama_cpp

    monkeypatch.setattr(llama_cpp, "llama_supports_gpu_offload", lambda: True)
    path = write_llama_gguf(tmp_path / "m.gguf", 2, 64, 4, 2, 128, 512, n_ctx_train=8192)
    return ModelSpec("m", path=path, n_ctx=512, n_gpu_layers=-1, device="cpu")


def _pool(spec: ModelSpec) -> ModelPool:
    return ModelPool({"m": spec}, PoolSpec(devices=(DeviceSpec("cpu", 2**33),)), seqs_per_model=3)


async def _answers(pool: ModelPool) -> dict[str, str]:
    async def one(who: str) -> tuple[str, str]:
        msgs = [{"role": "user", "content": f"hello from {who}"}]
        return who, "".join([p async for p in pool.generate(who, "m", msgs, GREEDY)])

    return dict(await asyncio.gather(*(one(w) for w in ("architect", "coder", "critic"))))


def _warm_events(pool: ModelPool) -> list[str]:
    return [e.detail for e in pool.events if e.kind == "warm_up"]


async def _until(cond, timeout_s: float = 60.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout_s
    while not cond():
        assert loop.time() < end, "timed out"
        await asyncio.sleep(0.01)


async def test_fake_gpu_model_loaded_ahead_is_warmed_up_and_answers_exactly_as_cold(
    fake_gpu_spec: ModelSpec,
) -> None:
    warm = _pool(fake_gpu_spec)
    try:
        assert await warm.prefetch("m")
        await _until(lambda: bool(_warm_events(warm)))
        [detail] = _warm_events(warm)
        assert detail.split()[0].isdigit() and int(detail.split()[0]) > 3, detail
        warmed = await _answers(warm)
    finally:
        await warm.close()
    cold = _pool(fake_gpu_spec)  # loaded by the turns themselves: no warm-up step before them
    try:
        unwarmed = await _answers(cold)
        [detail] = _warm_events(cold)
        assert detail.startswith("a turn came first (0 steps in "), detail
    finally:
        await cold.close()
    assert warmed == unwarmed and all(warmed.values())  # the warm-up left nothing in the KV


async def test_fake_gpu_turn_that_arrives_during_the_warm_up_stops_it(
    fake_gpu_spec: ModelSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(SeqRunner, "WARM_UP_STEPS", 1_000_000)  # minutes of steps if not stopped
    pool = _pool(fake_gpu_spec)
    try:
        assert await pool.prefetch("m")
        await _until(lambda: any(r.state == "ready" for r in pool.snapshot().resident))
        await asyncio.sleep(0.3)  # the warm-up is now running on the slot's thread
        answers = await _answers(pool)
        await _until(lambda: bool(_warm_events(pool)))
        [detail] = _warm_events(pool)
        assert detail.startswith("stopped for a turn ("), detail
        assert 0 < int(detail.split("(")[1].split()[0]) < 3 * 1_000_000
    finally:
        await pool.close()
    assert all(answers.values())
