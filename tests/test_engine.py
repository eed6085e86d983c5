"""LocalEngine on the real embedded model: streams, never blocks the loop, cancels promptly."""

from __future__ import annotations

import asyncio

import pytest

from agents.engine import EngineError, LocalEngine, SamplingParams
from agents.models import ModelFileError, resolve_model_path

MESSAGES = [{"role": "user", "content": "Tell me a long story about the sea."}]


@pytest.fixture(scope="module")
def model_path():
    return resolve_model_path("embedded:smollm2-135m")


async def test_streams_pieces_while_the_event_loop_keeps_ticking(model_path):
    engine = LocalEngine("smol", model_path, n_ctx=512)
    ticks = 0
    stop = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0.005)

    task = asyncio.create_task(ticker())
    pieces = [p async for p in engine.stream(MESSAGES, SamplingParams(max_tokens=32, seed=1))]
    stop.set()
    await task
    await engine.close()
    assert len(pieces) >= 16 and "".join(pieces).strip()
    # The loop ran all along: loading and generating happen in worker threads.
    assert ticks >= 20


async def test_cancel_stops_generation_promptly_and_frees_the_model(model_path):
    engine = LocalEngine("smol", model_path, n_ctx=512)
    # Count what the worker thread produces (not how long it takes: on a loaded 2-core
    # machine one token can take most of a second).
    produced: list[object] = []
    generate = engine._generate

    def counting(messages, params, emit, stop_flag):
        def counted(item):
            produced.append(item)
            emit(item)

        generate(messages, params, counted, stop_flag)

    engine._generate = counting
    cancel = asyncio.Event()
    got = 0
    params = SamplingParams(max_tokens=400, seed=1)  # a story that runs long
    async for _ in engine.stream(MESSAGES, params, cancel):
        got += 1
        if got == 3:
            cancel.set()
            at_cancel = len(produced)
    # The stream returned only once the worker had stopped (the model is free).
    assert got == 3  # nothing is delivered after the cancel
    after = len(produced) - at_cancel  # pieces the worker produced after it (DONE included)
    assert after <= 3, f"the worker went on for {after} pieces, not stopping at its next token"
    # The model is free at once for the next turn.
    again = [p async for p in engine.stream(MESSAGES, SamplingParams(max_tokens=4))]
    assert again
    await engine.close()


async def test_chat_template_comes_from_the_gguf(model_path):
    engine = LocalEngine("smol", model_path, n_ctx=512)
    await engine.load()
    template = engine.llama.metadata.get("tokenizer.chat_template", "")
    assert "<|im_start|>" in template  # SmolLM2's ChatML template, read from the file
    await engine.close()


async def test_corrupt_gguf_is_a_clear_engine_error(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\x00" * 64)
    engine = LocalEngine("bad", bad)
    with pytest.raises(EngineError, match="cannot load model 'bad'"):
        await engine.load()


def test_missing_and_non_gguf_files_are_refused(tmp_path):
    with pytest.raises(ModelFileError, match="model file not found"):
        resolve_model_path(str(tmp_path / "none.gguf"))
    (tmp_path / "x.gguf").write_bytes(b"PK\x03\x04 zip, not gguf")
    with pytest.raises(ModelFileError, match="bad magic"):
        resolve_model_path(str(tmp_path / "x.gguf"))
