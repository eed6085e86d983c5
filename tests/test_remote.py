"""RemoteEngine against a real llama_cpp.server serving the embedded model."""

from __future__ import annotations

import asyncio
import http.client
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest

from agents.engine import EngineError, SamplingParams
from agents.models import resolve_model_path
from agents.remote import RemoteEngine
from agents.specs import ModelSpec
from sentinel import cpu_backend

MESSAGES = [{"role": "user", "content": "Name three colours."}]
PARAMS = SamplingParams(max_tokens=12, temperature=0.0, seed=1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    port = _free_port()
    proc = subprocess.Popen(
        [
            # llama-cpp-python's own server, after what hermes applies before a load (where
            # AMX faults, its first batched prompt died with SIGSEGV)
            *cpu_backend.python_m("llama_cpp.server"),
            "--model",
            str(resolve_model_path("embedded:smollm2-135m")),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            "512",
            "--n_threads",
            "2",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                pytest.fail("llama_cpp.server exited during start-up")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.request("GET", "/v1/models")
                if conn.getresponse().status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("llama_cpp.server did not start in 90 s")
            time.sleep(0.5)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


async def _collect(engine: RemoteEngine, log: list[tuple[str, str]], tag: str) -> str:
    text = ""
    async for piece in engine.stream(MESSAGES, PARAMS):
        log.append((tag, piece))
        text += piece
    return text


async def test_streams_text_pieces_from_a_real_server(server_url: str) -> None:
    engine = RemoteEngine.from_spec(ModelSpec("remote-smol", url=server_url))
    log: list[tuple[str, str]] = []
    text = await _collect(engine, log, "a")
    assert text.strip(), "no text streamed"
    assert len(log) > 1, "the answer arrived in one piece: not streamed"


async def test_concurrency_limit_one_serialises_two_requests(server_url: str) -> None:
    engine = RemoteEngine("remote-smol", server_url, max_concurrency=1)
    log: list[tuple[str, str]] = []
    a, b = await asyncio.gather(_collect(engine, log, "a"), _collect(engine, log, "b"))
    # Both complete (llama_cpp.server would interrupt the first stream if a second arrived),
    # with the same greedy text, and the pieces of the two streams never interleave.
    assert a == b and a.strip()
    tags = [tag for tag, _ in log]
    first = tags[0]
    switch = tags.index("b" if first == "a" else "a")
    assert set(tags[:switch]) == {first} and first not in tags[switch:]


async def test_connection_refused_is_a_clear_engine_error() -> None:
    engine = RemoteEngine("gone", f"http://127.0.0.1:{_free_port()}/v1")
    with pytest.raises(EngineError, match="connection refused"):
        async for _ in engine.stream(MESSAGES, PARAMS):
            pass


async def test_http_error_status_is_reported(server_url: str) -> None:
    engine = RemoteEngine("wrong-path", server_url.replace("/v1", "/nope/v1"))
    with pytest.raises(EngineError, match="HTTP 404"):
        async for _ in engine.stream(MESSAGES, PARAMS):
            pass


async def test_a_server_that_never_answers_ends_the_turn_after_timeout_s() -> None:
    with socket.socket() as listener:  # accepts the connection, then says nothing
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        spec = ModelSpec("mute", url=f"http://127.0.0.1:{port}/v1", timeout_s=0.5)
        engine = RemoteEngine.from_spec(spec)
        with pytest.raises(EngineError, match=r"sent nothing for 0.5 s.*models.mute.timeout_s"):
            async for _ in engine.stream(MESSAGES, PARAMS):
                pass
