"""Remote endpoints get a bounded, fair queue: a busy server makes requests wait in order,
and a full queue refuses at once. The model is served by ``ReplayEngine`` (a recording played
back at a fixed rate, clearly not a model) so that the timing of seats is predictable; the
pool, the gate and the events are the real ones."""

from __future__ import annotations

import asyncio

import pytest

from agents.engine import SamplingParams
from agents.pool.pool import ModelPool
from agents.pool.queue import PoolBusyError
from agents.specs import ModelSpec, PoolSpec
from tests.replay import ReplayEngine

WORDS = [f"w{i} " for i in range(12)]


def remote_pool(queue_size: int, capacity: int = 1) -> ModelPool:
    spec = ModelSpec("far", url="http://gpu-box.invalid:8080/v1", max_concurrency=capacity)
    pool = ModelPool({"far": spec}, PoolSpec(queue_size=queue_size))
    pool.register_engine("far", ReplayEngine([WORDS], tokens_per_s=100))
    return pool


async def answer(pool: ModelPool, persona: str, order: list[str], priority: str = "interactive"):
    text = ""
    params = SamplingParams(max_tokens=12)
    async for piece in pool.generate(persona, "far", [], params, priority=priority):
        if not text:
            order.append(persona)
        text += piece
    return text


async def test_a_busy_server_queues_one_and_refuses_the_next_at_once() -> None:
    pool = remote_pool(queue_size=1)
    order: list[str] = []
    first = asyncio.create_task(answer(pool, "architect", order))
    await asyncio.sleep(0.03)
    second = asyncio.create_task(answer(pool, "coder", order))
    await asyncio.sleep(0.01)
    snap = pool.snapshot()
    assert snap.running == [("architect", "far")]
    assert [q.persona for q in snap.queue] == ["coder"]
    assert snap.queue[0].wait_estimate_s > 0
    with pytest.raises(PoolBusyError, match="queue_size=1"):
        await answer(pool, "critic", order)
    assert await first == "".join(WORDS) and await second == "".join(WORDS)
    assert order == ["architect", "coder"]
    kinds = [e.kind for e in pool.events]
    assert kinds.count("admit") == 2 and "wait" in kinds and "reject" in kinds
    assert pool.snapshot().running == [] and pool.snapshot().queue == []
    await pool.close()


async def test_interactive_requests_go_before_batch_ones_and_a_cancelled_wait_leaves() -> None:
    pool = remote_pool(queue_size=4)
    order: list[str] = []
    running = asyncio.create_task(answer(pool, "architect", order))
    await asyncio.sleep(0.02)
    batch = asyncio.create_task(answer(pool, "coder", order, priority="batch"))
    await asyncio.sleep(0.01)
    gone = asyncio.create_task(answer(pool, "critic", order))
    await asyncio.sleep(0.01)
    interactive = asyncio.create_task(answer(pool, "reviewer", order))
    await asyncio.sleep(0.01)
    assert len(pool.snapshot().queue) == 3
    gone.cancel()
    await asyncio.sleep(0.01)
    assert [q.persona for q in pool.snapshot().queue] == ["reviewer", "coder"]
    await asyncio.gather(running, batch, interactive)
    assert order == ["architect", "reviewer", "coder"]
    await pool.close()


async def test_two_seats_run_two_streams_at_once() -> None:
    pool = remote_pool(queue_size=2, capacity=2)
    order: list[str] = []
    tasks = [asyncio.create_task(answer(pool, p, order)) for p in ("a", "b", "c")]
    await asyncio.sleep(0.03)
    assert sorted(p for p, _ in pool.snapshot().running) == ["a", "b"]
    assert [q.persona for q in pool.snapshot().queue] == ["c"]
    assert all(t == "".join(WORDS) for t in await asyncio.gather(*tasks))
    await pool.close()


async def test_cancelling_a_queued_turn_ends_it_at_once_and_frees_its_place() -> None:
    pool = remote_pool(queue_size=2)
    order: list[str] = []
    running = asyncio.create_task(answer(pool, "architect", order))
    await asyncio.sleep(0.02)
    cancel = asyncio.Event()
    params = SamplingParams(max_tokens=12)

    async def queued() -> str:
        return "".join([p async for p in pool.generate("coder", "far", [], params, cancel)])

    waiting = asyncio.create_task(queued())
    await asyncio.sleep(0.01)
    assert [q.persona for q in pool.snapshot().queue] == ["coder"]
    cancel.set()  # Esc while the turn still waits for the server's only seat
    assert await asyncio.wait_for(waiting, 0.05) == ""
    assert pool.snapshot().queue == [] and not running.done()
    await running
    await pool.close()
