"""The model pool on real llama.cpp: admission, LRU eviction, budgets, slicing, KV swaps.

Many-model tests use tiny synthetic GGUFs (tests/gguf_factory.py, ~0.3 MB each, loaded for real
by llama.cpp); the swap-equivalence tests use the embedded SmolLM2.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.engine import SamplingParams
from agents.models import resolve_model_path
from agents.pool import runner as runner_module
from agents.pool.pool import ModelPool, NeverFitsError, PoolBusyError
from agents.pool.runner import SeqRunner
from agents.specs import DeviceSpec, ModelSpec, PoolSpec
from tests.gguf_factory import write_llama_gguf

HI = [{"role": "user", "content": "hi"}]
GREEDY = SamplingParams(max_tokens=6, temperature=0.0)
EMBEDDED = resolve_model_path("embedded:smollm2-135m")


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Four loadable synthetic models; m3 is about twice the size of the others."""
    d = tmp_path_factory.mktemp("gguf")
    out = {f"m{i}": write_llama_gguf(d / f"m{i}.gguf", n_embd=64, seed=i) for i in range(3)}
    out["m3"] = write_llama_gguf(d / "m3.gguf", n_embd=128, n_ff=256, seed=3)
    return out


def _models(paths: dict[str, Path], **kw: object) -> dict[str, ModelSpec]:
    return {name: ModelSpec(name, path, n_ctx=256, **kw) for name, path in paths.items()}


def _budget_pool(models: dict[str, ModelSpec], n_fit: float, **spec: object) -> ModelPool:
    probe = ModelPool(models, PoolSpec(devices=(DeviceSpec("cpu", 1 << 40),)))
    biggest = max(probe.estimate(m) for m in models)
    devices = (DeviceSpec("cpu", int(biggest * n_fit)),)
    return ModelPool(models, PoolSpec(devices=devices, **spec))  # type: ignore[arg-type]


async def _text(pool: ModelPool, persona: str, model: str, **kw: object) -> str:
    params = kw.pop("params", GREEDY)
    msgs = kw.pop("messages", HI)
    return "".join([p async for p in pool.generate(persona, model, msgs, params, **kw)])  # type: ignore[arg-type]


def _kinds(pool: ModelPool, kind: str) -> list[str]:
    return [e.model for e in pool.events if e.kind == kind]


async def test_least_recently_used_idle_model_is_evicted_first(synth: dict[str, Path]) -> None:
    models = _models({k: synth[k] for k in ("m0", "m1", "m2")})
    pool = _budget_pool(models, 2.5)
    try:
        await _text(pool, "architect", "m0")
        await _text(pool, "coder", "m1")
        await _text(pool, "architect", "m0")  # m0 is now more recent than m1
        await _text(pool, "critic", "m2")  # needs room for one model: m1 must go
        assert _kinds(pool, "evict") == ["m1"]
        assert sorted(r.name for r in pool.snapshot().resident) == ["m0", "m2"]
    finally:
        await pool.close()


async def test_queue_full_raises_pool_busy_at_once(synth: dict[str, Path]) -> None:
    pool = _budget_pool(_models({"m0": synth["m0"]}), 4, queue_size=1)
    first = pool.generate("architect", "m0", HI, GREEDY)
    second = pool.generate("coder", "m0", HI, GREEDY)
    try:
        waiting = asyncio.ensure_future(first.__anext__())
        await asyncio.sleep(0)  # admitted, not yet served: the queue (size 1) is full
        with pytest.raises(PoolBusyError, match=r"pool busy: 1 requests queued \(queue_size=1\)"):
            await second.__anext__()
        assert isinstance(await waiting, str)  # the admitted one still runs
        assert [e.kind for e in pool.events].count("reject") == 1
    finally:
        await first.aclose()
        await pool.close()


async def test_model_larger_than_the_budget_never_fits(synth: dict[str, Path]) -> None:
    models = _models({"m0": synth["m0"], "m3": synth["m3"]})
    small = ModelPool(models).estimate("m0")
    pool = ModelPool(models, PoolSpec(devices=(DeviceSpec("cpu", small + 1),)))
    try:
        with pytest.raises(NeverFitsError, match=r"'m3' needs about .* MiB .* budget of .* MiB"):
            await _text(pool, "critic", "m3")
        assert await _text(pool, "critic", "m0")  # the small one still works
        assert not any(r.name == "m3" for r in pool.snapshot().resident)
    finally:
        await pool.close()


async def test_model_on_an_unconfigured_device_never_fits(synth: dict[str, Path]) -> None:
    pool = ModelPool({"g": ModelSpec("g", synth["m0"], n_ctx=256, device="gpu7")})
    with pytest.raises(NeverFitsError, match="gpu7"):
        await _text(pool, "coder", "g")
    await pool.close()


async def test_personas_on_the_same_gguf_share_one_loaded_model(synth: dict[str, Path]) -> None:
    models = {
        "fast": ModelSpec("fast", synth["m0"], n_ctx=256),
        "alias": ModelSpec("alias", synth["m0"], n_ctx=256),
    }
    pool = ModelPool(models, PoolSpec(slice_tokens=2))
    try:
        await asyncio.gather(
            _text(pool, "architect", "fast"),
            _text(pool, "coder", "fast"),
            _text(pool, "critic", "alias"),
        )
        resident = pool.snapshot().resident
        assert len(resident) == 1 and resident[0].name == "alias, fast"
        assert len(_kinds(pool, "load")) == 1
    finally:
        await pool.close()


async def test_personas_take_turns_in_time_slices(
    synth: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    pool = ModelPool(_models({"m0": synth["m0"]}), PoolSpec(slice_tokens=3))
    # The order the model produced the pieces in (each hand-off to the event loop lists them
    # in that order). Not the order the readers got them: the pool hands pieces over in
    # batches every few ms, and on a loaded machine one batch can hold a persona's whole
    # answer, so the readers' order said more about the load than about the schedule.
    order: list[str] = []
    put_all = runner_module._put_all

    def recording(batch):
        order.extend(job.persona for job, piece in batch if isinstance(piece, str))
        put_all(batch)

    monkeypatch.setattr(runner_module, "_put_all", recording)
    params = SamplingParams(max_tokens=12, temperature=0.0)

    async def run(persona: str) -> int:
        return len([p async for p in pool.generate(persona, "m0", HI, params)])

    try:
        got = await asyncio.gather(run("architect"), run("coder"), run("critic"))
        assert sum(got) == len(order)  # every piece read was produced, in this order
        runs = [p for i, p in enumerate(order) if i == 0 or order[i - 1] != p]
        # Round-robin: every persona gets a slice before anyone gets a second one.
        assert sorted(runs[:3]) == ["architect", "coder", "critic"]
        assert len(runs) >= 6, f"no time slicing happened: {runs}"
    finally:
        await pool.close()


async def test_interactive_requests_go_ahead_of_batch(synth: dict[str, Path]) -> None:
    # One seat on the model: the two late requests must wait, and the interactive one goes first.
    models = {"m0": ModelSpec("m0", synth["m0"], n_ctx=4096)}  # room for a long answer
    pool = ModelPool(models, PoolSpec(slice_tokens=100_000), seqs_per_model=1)
    first_piece: list[str] = []

    async def run(
        persona: str,
        priority: str,
        params: SamplingParams = GREEDY,
        cancel: asyncio.Event | None = None,
    ) -> None:
        async for _ in pool.generate(persona, "m0", HI, params, cancel, priority=priority):
            if persona not in first_piece:
                first_piece.append(persona)

    try:
        # The seat stays taken until both late requests wait for it (the tiny model's 180-token
        # answer took 20-75 ms: on a loaded machine it could end before the two were admitted,
        # and the batch request, admitted first, then found the seat free).
        long = SamplingParams(max_tokens=2000, temperature=0.0)
        stop_busy = asyncio.Event()
        busy = asyncio.ensure_future(run("architect", "interactive", long, stop_busy))
        while not first_piece:
            await asyncio.sleep(0.001)
        batch = asyncio.ensure_future(run("batcher", "batch"))
        await asyncio.sleep(0)
        inter = asyncio.ensure_future(run("critic", "interactive"))
        for _ in range(6000):
            if len(pool.snapshot().queue) == 2 or busy.done():
                break
            await asyncio.sleep(0.01)
        assert not busy.done(), "the long answer ended before the others were waiting"
        assert {q.persona for q in pool.snapshot().queue} == {"batcher", "critic"}
        stop_busy.set()  # the seat frees with both waiting: the interactive one goes first
        await asyncio.gather(busy, batch, inter)
        assert first_piece.index("critic") < first_piece.index("batcher")
    finally:
        await pool.close()


async def test_cancel_stops_generation_and_frees_the_model(synth: dict[str, Path]) -> None:
    pool = ModelPool(_models({"m0": synth["m0"]}))
    cancel = asyncio.Event()
    pieces = 0
    try:
        params = SamplingParams(max_tokens=200, temperature=0.0)
        async for _ in pool.generate("architect", "m0", HI, params, cancel):
            pieces += 1
            cancel.set()
        assert pieces == 1
        assert await _text(pool, "coder", "m0")
        assert pool.snapshot().running == []
    finally:
        await pool.close()


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    requests=st.lists(
        st.tuples(
            st.sampled_from(["m0", "m1", "m2", "m3"]),
            st.sampled_from(["architect", "coder", "critic"]),
            st.sampled_from(["interactive", "batch"]),
        ),
        min_size=1,
        max_size=8,
    ),
    queue_size=st.integers(1, 8),
    n_fit=st.sampled_from([1.2, 2.2]),
)
def test_budget_is_never_exceeded(
    synth: dict[str, Path],
    requests: list[tuple[str, str, str]],
    queue_size: int,
    n_fit: float,
) -> None:
    async def scenario() -> None:
        pool = _budget_pool(_models(synth), n_fit, queue_size=queue_size, slice_tokens=2)
        params = SamplingParams(max_tokens=3, temperature=0.0)
        try:
            results = await asyncio.wait_for(
                asyncio.gather(
                    *(
                        _text(pool, persona, model, params=params, priority=prio)
                        for model, persona, prio in requests
                    ),
                    return_exceptions=True,
                ),
                timeout=60,
            )
            for r in results:
                assert isinstance(r, (str, PoolBusyError)), r
            assert any(isinstance(r, str) for r in results)  # the first is always admitted
            for dev in pool.snapshot().devices:
                assert dev.peak_bytes <= dev.budget_bytes
                assert dev.used_bytes <= dev.budget_bytes
        finally:
            await pool.close()

    asyncio.run(scenario())


# -- KV save/restore on the embedded model ------------------------------------------------

SYSTEM = "You are a helpful assistant. Answer briefly."


def _conv(question: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}]


@pytest.fixture(scope="module")
def embedded_models() -> dict[str, ModelSpec]:
    return {"smol": ModelSpec("smol", EMBEDDED, n_ctx=512)}


QUESTIONS = {
    "architect": "Name three colours.",
    "coder": "What is a list in Python?",
    "critic": "Why is the sky blue?",
}


async def _solo_and_together(
    models: dict[str, ModelSpec], params: SamplingParams, **pool_kw: object
) -> tuple[dict[str, str], dict[str, str], ModelPool]:
    """Each persona's text alone on the model, then all three at once (pool left open)."""
    alone = ModelPool(models, PoolSpec(slice_tokens=4), **pool_kw)  # type: ignore[arg-type]
    try:
        solo = {
            p: await _text(alone, p, "smol", messages=_conv(q), params=params)
            for p, q in QUESTIONS.items()
        }
    finally:
        await alone.close()
    pool = ModelPool(models, PoolSpec(slice_tokens=4), **pool_kw)  # type: ignore[arg-type]
    texts = await asyncio.gather(
        *(_text(pool, p, "smol", messages=_conv(q), params=params) for p, q in QUESTIONS.items())
    )
    return solo, dict(zip(QUESTIONS, texts, strict=True)), pool


@pytest.mark.parametrize("mode", ["batched", "interleaved"])
async def test_greedy_text_is_identical_when_personas_share_a_model(
    embedded_models: dict[str, ModelSpec], mode: str
) -> None:
    params = SamplingParams(max_tokens=24, temperature=0.0)
    solo, together, pool = await _solo_and_together(embedded_models, params, decode_mode=mode)
    try:
        assert together == solo
        assert all(together.values())
        kinds = [e.kind for e in pool.events]
        assert "save_state" not in kinds and kinds.count("load") == 1  # no KV copies at all
    finally:
        await pool.close()


async def test_seeded_sampling_does_not_depend_on_who_else_runs(
    embedded_models: dict[str, ModelSpec],
) -> None:
    params = SamplingParams(max_tokens=16, temperature=0.9, seed=42)
    solo, together, pool = await _solo_and_together(embedded_models, params, decode_mode="batched")
    await pool.close()
    assert together == solo


@pytest.mark.parametrize(
    ("mode", "temperature"), [("batched", 0.9), ("batched", 0.0), ("interleaved", 0.9)]
)
async def test_top_k_on_the_device_writes_the_same_texts(
    embedded_models: dict[str, ModelSpec],
    mode: str,
    temperature: float,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """DeviceTopK (SeqRunner.DEVICE_TOP_K) forced on, on llama.cpp's CPU backend: each
    persona's text, greedy or seeded, is the one the host-side sampler writes."""
    from agents.pool.runner import SeqRunner

    params = SamplingParams(max_tokens=16, temperature=temperature, seed=5)

    async def together() -> tuple[dict[str, str], list[str]]:
        pool = ModelPool(embedded_models, PoolSpec(slice_tokens=4), decode_mode=mode)
        try:
            texts = await asyncio.gather(
                *(
                    _text(pool, p, "smol", messages=_conv(q), params=params)
                    for p, q in QUESTIONS.items()
                )
            )
        finally:
            await pool.close()
        return dict(zip(QUESTIONS, texts, strict=True)), [
            e.detail for e in pool.events if e.kind == "load"
        ]

    host, _ = await together()
    monkeypatch.setattr(SeqRunner, "DEVICE_TOP_K", True)
    device, [load] = await together()
    assert load.endswith("; top-k sampled on the device")
    assert device == host and all(device.values())


async def test_a_stop_string_mid_batch_then_the_next_turn_match_the_persona_alone(
    embedded_models: dict[str, ModelSpec],
) -> None:
    # Batched steps are pipelined: the next decode starts before a token's text is checked,
    # so a stop string ends the round with a decode of everyone's next token in flight. The
    # stopped persona's text, and its next turn on the same KV sequence, must not show it.
    greedy = SamplingParams(max_tokens=24, temperature=0.0)
    alone = ModelPool(embedded_models, PoolSpec(slice_tokens=4), decode_mode="batched")
    try:
        full = await _text(alone, "architect", "smol", messages=_conv(QUESTIONS["architect"]))
        words = full.split()
        assert len(words) > 4, full
        stop = " " + words[len(words) // 2]
        params = SamplingParams(max_tokens=24, temperature=0.0, stop=(stop,))
        first = _conv(QUESTIONS["architect"])
        solo1 = await _text(alone, "architect", "smol", messages=first, params=params)
        follow = [*first, {"role": "assistant", "content": solo1}]
        follow.append({"role": "user", "content": "And one more?"})
        solo2 = await _text(alone, "architect", "smol", messages=follow, params=greedy)
    finally:
        await alone.close()
    assert solo1 and full.startswith(solo1) and len(solo1) < len(full)
    pool = ModelPool(embedded_models, PoolSpec(slice_tokens=4), decode_mode="batched")
    try:
        others = [
            _text(pool, p, "smol", messages=_conv(q), params=greedy)
            for p, q in QUESTIONS.items()
            if p != "architect"
        ]
        together1, *_ = await asyncio.gather(
            _text(pool, "architect", "smol", messages=first, params=params), *others
        )
        together2 = await _text(pool, "architect", "smol", messages=follow, params=greedy)
    finally:
        await pool.close()
    assert (together1, together2) == (solo1, solo2)


@pytest.mark.parametrize("mode", ["batched", "interleaved"])
async def test_no_piece_is_lost_or_held_back_when_hand_offs_are_coalesced(
    embedded_models: dict[str, ModelSpec], mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Pieces reach the event loop at most every DELIVER_S; a persona's end (and a round's)
    # must still flush what is waiting, or its last words would be lost or arrive late.
    params = SamplingParams(max_tokens=24, temperature=0.0)
    texts = {}
    for deliver_s in (0.0, 3600.0):
        monkeypatch.setattr(SeqRunner, "DELIVER_S", deliver_s)
        pool = ModelPool(embedded_models, PoolSpec(slice_tokens=4), decode_mode=mode)
        try:
            texts[deliver_s] = await asyncio.gather(
                *(
                    _text(pool, p, "smol", messages=_conv(q), params=params)
                    for p, q in QUESTIONS.items()
                )
            )
        finally:
            await pool.close()
    assert texts[3600.0] == texts[0.0] and all(texts[0.0])


async def test_greedy_text_is_identical_with_and_without_swaps(
    embedded_models: dict[str, ModelSpec],
) -> None:
    # One KV sequence for three personas: they time-slice and swap states through host memory.
    params = SamplingParams(max_tokens=24, temperature=0.0)
    solo, together, pool = await _solo_and_together(embedded_models, params, seqs_per_model=1)
    try:
        assert together == solo
        assert "save_state" in [e.kind for e in pool.events]
        assert "restore_state" in [e.kind for e in pool.events]
    finally:
        await pool.close()


async def _architect_then_coder(pool: ModelPool, params: SamplingParams) -> list[dict[str, str]]:
    """The architect answers a long question, then the coder a short one; returns the
    architect's conversation with its answer and a follow-up question."""
    history = _conv("Tell me about the sea. " * 20)
    answer = await _text(pool, "architect", "smol", messages=history, params=params)
    await _text(pool, "coder", "smol", messages=_conv("Hello?"), params=params)
    return [
        *history,
        {"role": "assistant", "content": answer},
        {"role": "user", "content": "More."},
    ]


async def test_next_turn_keeps_the_personas_kv_while_another_persona_runs(
    embedded_models: dict[str, ModelSpec],
) -> None:
    params = SamplingParams(max_tokens=8, temperature=0.0)
    pool = ModelPool(embedded_models, PoolSpec())
    try:
        history = await _architect_then_coder(pool, params)
        assert await _text(pool, "architect", "smol", messages=history, params=params)
        # Each persona kept its own KV sequence: nothing was copied out or back in.
        assert not [e for e in pool.events if e.kind in ("save_state", "restore_state")]
        assert pool.snapshot().resident[0].context_persona == "architect, coder"
    finally:
        await pool.close()


async def test_next_turn_after_eviction_restores_the_personas_kv(
    embedded_models: dict[str, ModelSpec],
) -> None:
    params = SamplingParams(max_tokens=8, temperature=0.0)
    pool = ModelPool(embedded_models, PoolSpec())
    try:
        history = await _architect_then_coder(pool, params)
        assert await pool.evict("smol")
        saved = sorted(e.persona for e in pool.events if e.kind == "save_state")
        assert saved == ["architect", "coder"]
        again = await _text(pool, "architect", "smol", messages=history, params=params)
        assert again
        restored = [e for e in pool.events if e.kind == "restore_state"]
        assert [e.persona for e in restored] == ["architect"]
    finally:
        await pool.close()


async def test_fake_gpu_split_model_is_accounted_on_the_gpu_and_the_cpu(
    synth: dict[str, Path],
) -> None:
    """A model with half its layers offloaded reserves memory on both devices (the GPU is
    fake: this CPU build of llama.cpp runs every layer on the CPU, only the books differ), so
    a CPU-only model that would fit the CPU's budget alone waits for the split one to go."""
    split = ModelSpec("split", synth["m3"], n_ctx=256, n_gpu_layers=1, device="cuda:0")
    cpu_only = ModelSpec("m0", synth["m0"], n_ctx=256)
    models = {"split": split, "m0": cpu_only}
    big = 1 << 40
    probe = ModelPool(models, PoolSpec(devices=(DeviceSpec("cuda:0", big), DeviceSpec("cpu", big))))
    on = probe.placement("split")
    assert set(on) == {"cuda:0", "cpu"} and all(n > 0 for n in on.values())
    assert probe.estimate("split") == sum(on.values())
    # The CPU's budget holds the split model's host part or m0, not both.
    cpu_budget = max(on["cpu"], probe.placement("m0")["cpu"]) + 1024
    devices = (DeviceSpec("cuda:0", on["cuda:0"] + 1024), DeviceSpec("cpu", cpu_budget))
    pool = ModelPool(models, PoolSpec(devices=devices))
    try:
        assert await _text(pool, "architect", "split")
        used = {d.name: d.used_bytes for d in pool.snapshot().devices}
        assert used["cuda:0"] == on["cuda:0"] and used["cpu"] >= on["cpu"]
        assert await _text(pool, "coder", "m0")
        assert _kinds(pool, "evict") == ["split"]  # the CPU part had to make room
        for d in pool.snapshot().devices:
            assert d.peak_bytes <= d.budget_bytes
    finally:
        await pool.close()


def test_restore_or_reprefill_is_priced_from_long_prefills_and_the_save_rate() -> None:
    """On a GPU a short prompt runs far below the long-prompt rate; a re-prefill of a saved
    history is long, so it is priced at the long rate. Until a restore was measured, the
    measured save rate (the same bytes the other way) prices it."""
    from agents.pool.runner import ModelStats

    stats = ModelStats()
    stats.add_prefill(20, 0.01)  # a short prompt: 2,000 tokens/s
    stats.add_prefill(3000, 0.03)  # a long one: 100,000 tokens/s
    assert stats.reprefill_s(3000) == pytest.approx(0.03)
    stats.add_save(84_000_000, 0.06)
    assert stats.restore_s(84_000_000) == pytest.approx(0.06)


def test_a_cold_first_prefill_after_a_load_does_not_skew_the_restore_choice() -> None:
    """Right after a load the first long prefill runs cold (2x slower on an H200). Priced from
    it, a re-prefill looks dearer than a restore that is in fact slower."""
    from agents.pool.runner import ModelStats

    stats = ModelStats()
    stats.add_save(84_000_000, 0.05)  # restore priced ~50 ms
    stats.loaded(0.4)
    stats.add_prefill(3000, 0.08)  # cold: 80 ms, dearer than a restore
    assert stats.reprefill_s(3000) == pytest.approx(0.08)  # the only figure known
    stats.add_prefill(3000, 0.03)  # warm: 30 ms
    assert stats.reprefill_s(3000) == pytest.approx(0.03)
    assert stats.reprefill_s(3000) < stats.restore_s(84_000_000)
    stats.loaded(0.4)  # evicted and loaded again: its cold prefill leaves the rate alone
    stats.add_prefill(3000, 0.08)
    assert stats.reprefill_s(3000) == pytest.approx(0.03)


async def test_fake_gpu_context_settings_keep_seeded_text_across_seat_swaps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the settings SeqRunner uses on a GPU (one unified KV stream, flash attention,
    ubatch 2048; the GPU is faked by telling SeqRunner the build can offload, and llama.cpp
    runs them on the CPU), a persona's seeded answer does not depend on whether it kept its
    sequence or was swapped out and back every 4 tokens."""
    import llama_cpp

    monkeypatch.setattr(llama_cpp, "llama_supports_gpu_offload", lambda: True)
    path = write_llama_gguf(tmp_path / "m.gguf", 2, 64, 4, 2, 128, 512, n_ctx_train=8192)
    spec = ModelSpec("m", path=path, n_ctx=512, n_gpu_layers=-1, device="cpu")

    async def run(seqs: int, slice_tokens: int) -> dict[str, str]:
        devices = (DeviceSpec("cpu", 2**33),)
        pool = ModelPool(
            {"m": spec},
            PoolSpec(devices=devices, slice_tokens=slice_tokens),
            seqs_per_model=seqs,
        )
        out: dict[str, str] = {}

        async def one(who: str) -> None:
            msgs = [{"role": "user", "content": f"hi {who}"}]
            params = SamplingParams(max_tokens=40, temperature=0.8, seed=3)
            out[who] = "".join([x async for x in pool.generate(who, "m", msgs, params)])

        try:
            await asyncio.gather(*(one(w) for w in "abc"))
            runner = next(iter(pool.scheduler.slots.values())).runner
            assert runner.on_gpu and runner.n_batch == 2048
        finally:
            await pool.close()
        return out

    swapped, kept = await run(1, 4), await run(3, 32)
    assert swapped == kept and all(swapped.values())


async def test_finish_reason_says_what_ended_the_answer() -> None:
    """GenerationInfo.finish_reason: "length" when the context ran out before max_tokens (it
    said "stop", as if the model had finished), "stop" for the model's own end."""
    from agents.pool.pool import GenerationInfo

    models = {"smol": ModelSpec("smol", EMBEDDED, n_ctx=128)}
    pool = ModelPool(models, PoolSpec())
    try:
        long = [{"role": "user", "content": "Tell me a long story about the sea. " * 10}]
        info = GenerationInfo()
        params = SamplingParams(max_tokens=100, temperature=0.0)
        text = "".join([p async for p in pool.generate("a", "smol", long, params, info=info)])
        assert text and info.completion_tokens < 100  # the context ended it
        assert info.finish_reason == "length"
        short = GenerationInfo()
        greedy = SamplingParams(max_tokens=60, temperature=0.0)
        hi = [{"role": "user", "content": "Say hi."}]
        _ = [p async for p in pool.generate("b", "smol", hi, greedy, info=short)]
        assert short.completion_tokens < 60 and short.finish_reason == "stop"
    finally:
        await pool.close()
