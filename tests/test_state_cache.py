"""The saved-KV-state cache: longest-prefix lookup, LRU, budget, disk spill; on real llama.cpp."""

from __future__ import annotations

import ctypes
import stat
from pathlib import Path

from agents.engine import SamplingParams
from agents.models import resolve_model_path
from agents.pool.pool import ModelPool
from agents.pool.state_cache import CachedState, StateCache
from agents.specs import ModelSpec, PoolSpec

EMBEDDED = resolve_model_path("embedded:smollm2-135m")
GREEDY = SamplingParams(max_tokens=8, temperature=0.0)
SYSTEM = "You are a patient teacher. " * 12


def _state(key: str, tokens: list[int], nbytes: int = 100) -> CachedState:
    buf = (ctypes.c_uint8 * nbytes)(*([7] * nbytes))
    return CachedState(key, "p", tokens, nbytes, buf)


def test_longest_common_prefix_wins_and_longer_states_supersede_prefixes() -> None:
    cache = StateCache()
    a = _state("m", [1, 2, 3, 4])
    b = _state("m", [1, 2, 9])
    other_model = _state("n", [1, 2, 3, 4, 5])
    for e in (a, b, other_model):
        cache.put(e)
    found = cache.best("m", [1, 2, 3, 4, 5, 6])
    assert found is not None and found[0] is a and found[1] == 4
    assert cache.best("m", [5]) is None
    longer = _state("m", [1, 2, 3, 4, 5, 6, 7])
    assert cache.put(longer) == [a]  # a's tokens are a prefix of the new state's: superseded
    assert len(cache) == 3


def test_over_budget_the_least_recently_used_goes_to_disk_0600_and_reads_back(
    tmp_path: Path,
) -> None:
    cache = StateCache(budget_bytes=250, spill_dir=tmp_path / "kv", disk_budget_bytes=1000)
    first, second = _state("m", [1, 2]), _state("m", [3, 4])
    cache.put(first)
    cache.put(second)
    assert cache.over_budget(100) and cache.oldest_in_memory() is first
    path = cache.write_spill(first)
    cache.spilled_to(first, path)
    assert first.on_disk and cache.memory_bytes == 100 and cache.disk_bytes == 100
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "kv").stat().st_mode) == 0o700
    assert bytes(StateCache.read_spill(first)) == bytes([7] * 100)
    cache.hit(first)
    assert not path.exists() and len(cache) == 1
    assert not StateCache(budget_bytes=50).room(100)


async def test_another_client_continuing_a_conversation_after_eviction_restores_it(
    tmp_path: Path,
) -> None:
    """Client A's conversation is saved when client B takes the only KV sequence; when the
    model is evicted B's state is saved too, and the 3 MB budget pushes A's (older) state to
    the spill directory. A request from a third client continuing A's messages, on the
    reloaded model, restores A's state from disk instead of re-prefilling the history."""
    models = {"smol": ModelSpec("smol", EMBEDDED, n_ctx=1024)}
    spill = tmp_path / "spill"
    spec = PoolSpec(state_cache_bytes=3_000_000, state_cache_dir=spill)
    pool = ModelPool(models, spec, seqs_per_model=1)
    try:
        conv_a = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "A colour?"}]
        conv_b = [
            {"role": "system", "content": "You answer in French. " * 4},
            {"role": "user", "content": "Bonjour."},
        ]
        answer = "".join([p async for p in pool.generate("client-a", "smol", conv_a, GREEDY)])
        async for _ in pool.generate("client-b", "smol", conv_b, GREEDY):
            pass
        assert await pool.evict("smol")
        kinds = [e.kind for e in pool.events]
        assert kinds.count("save_state") == 2 and kinds.count("spill_state") == 1, kinds
        snap = pool.snapshot()
        assert snap.cache is not None and snap.cache.disk_states == 1
        assert snap.cache.memory_bytes <= 3_000_000
        assert len(list(spill.iterdir())) == 1
        more = [
            *conv_a,
            {"role": "assistant", "content": answer},
            {"role": "user", "content": "Another?"},
        ]
        async for _ in pool.generate("client-c", "smol", more, GREEDY):
            pass
        restores = [e for e in pool.events if e.kind == "restore_state"]
        assert len(restores) == 1, [(e.kind, e.detail) for e in pool.events]
        assert restores[0].persona == "client-c"
        assert "from disk" in restores[0].detail and "saved by client-a" in restores[0].detail
        assert list(spill.iterdir()) == []  # the restored state's file is gone
    finally:
        await pool.close()


async def test_a_request_continuing_a_resident_conversation_takes_its_sequence() -> None:
    """Two clients on one sequence each; the third request continues client A's conversation
    under another name: it reuses A's resident KV (prefills only the new tokens)."""
    models = {"smol": ModelSpec("smol", EMBEDDED, n_ctx=1024)}
    pool = ModelPool(models, PoolSpec(), seqs_per_model=2)
    try:
        conv_a = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Hi."}]
        conv_b = [{"role": "system", "content": "Terse."}, {"role": "user", "content": "Yo."}]
        ans = "".join([p async for p in pool.generate("a", "smol", conv_a, GREEDY)])
        async for _ in pool.generate("b", "smol", conv_b, GREEDY):
            pass
        runner = next(iter(pool.scheduler.slots.values())).runner
        held = [len(t) for t in runner.seq_tokens]
        cont = [*conv_a, {"role": "assistant", "content": ans}, {"role": "user", "content": "Ok."}]
        async for _ in pool.generate("a-again", "smol", cont, GREEDY):
            pass
        slot = next(iter(pool.scheduler.slots.values()))
        assert "a-again" in slot.owner.values() and "b" in slot.owner.values()
        assert max(len(t) for t in runner.seq_tokens) > max(held)
        assert "save_state" not in [e.kind for e in pool.events]  # nothing had to be copied
    finally:
        await pool.close()


def test_dashboard_shows_the_cache_line() -> None:
    from agents.pool.pool import StateCacheInfo
    from hermes_tui.widgets.dashboard import cache_line

    assert cache_line(None) == ""
    assert cache_line(StateCacheInfo(0, 0, None, 0, 0, 0, 0, 0)) == ""  # unused: no line
    line = cache_line(StateCacheInfo(3, 12 * 2**20, 2 * 2**30, 1, 40 * 2**20, 2, 5, 1))
    assert line == (
        "KV cache: 3 saved, 12.0 MiB of 2.0 GiB, 1 on disk (40.0 MiB); 5 restored, 1 re-prefilled"
    )
