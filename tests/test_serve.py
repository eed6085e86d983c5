"""``hermes serve``: a real server process, the real model, real SQLite, real clients (the
official ``openai`` SDK and httpx2, over the Unix socket and loopback TCP)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys

import openai
import pytest

from tests.conftest import hermes_env, write_small_config
from tests.serve_util import ServeProc, listening_tcp_ports

PROMPT = [{"role": "user", "content": "Name three colours."}]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve")
    proc = ServeProc(write_small_config(tmp), tmp / "serve.db", "--port", "0", "--no-judge")
    proc.start()
    yield proc
    proc.cleanup()


def test_openai_sdk_over_the_unix_socket_streams_and_answers_whole(server):
    client = server.openai()
    # Greedy: these assert how the answer ended (stop or length), which a sampled answer that
    # the sentinel corrects (a finished "https://", a loop) would change.
    whole = client.chat.completions.create(
        model="smollm2", messages=PROMPT, max_tokens=8, temperature=0.0
    )
    assert whole.choices[0].message.content
    assert whole.choices[0].finish_reason in ("stop", "length")
    assert whole.usage.completion_tokens == 8 or whole.choices[0].finish_reason == "stop"
    assert whole.usage.prompt_tokens > 5
    assert whole.usage.total_tokens == whole.usage.prompt_tokens + whole.usage.completion_tokens

    stream = client.chat.completions.create(
        model="coder",
        messages=PROMPT,
        max_tokens=8,
        temperature=0.0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] in ("stop", "length")
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens >= 1


def test_models_lists_each_persona_and_model(server):
    models = {m.id: m for m in server.openai().models.list()}
    assert {"architect", "coder", "critic", "smollm2"} <= set(models)
    assert models["coder"].owned_by == "hermes"
    assert models["smollm2"].owned_by == "local"


def test_tcp_needs_the_token(server):
    assert stat.S_IMODE(server.token_path.stat().st_mode) == 0o600
    with pytest.raises(openai.AuthenticationError) as err:
        server.openai(tcp=True, api_key="wrong").models.list()
    assert err.value.status_code == 401
    assert "bearer token" in err.value.body["message"]
    import httpx2

    bare = httpx2.get(f"{server.url}/models")
    assert bare.status_code == 401
    assert bare.json()["error"]["type"] == "authentication_error"
    stream = server.openai(tcp=True).chat.completions.create(
        model="smollm2", messages=PROMPT, max_tokens=4, stream=True, seed=1, temperature=0.0
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)


def test_raw_sse_and_error_shapes(server):
    with server.uds_client() as http:
        body = {"model": "smollm2", "messages": PROMPT, "max_tokens": 4, "stream": True}
        with http.stream("POST", "/v1/chat/completions", json=body) as resp:
            assert resp.headers["content-type"].startswith("text/event-stream")
            events = [e.data for e in httpx2_sse(resp)]
        assert events[-1] == "[DONE]"
        assert json.loads(events[0])["object"] == "chat.completion.chunk"

        bad = http.post("/v1/chat/completions", content=b"{not json")
        assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"
        assert "invalid JSON" in bad.json()["error"]["message"]
        unknown = http.post("/v1/chat/completions", json={"model": "gpt-9", "messages": PROMPT})
        assert unknown.status_code == 404
        assert unknown.json()["error"]["code"] == "model_not_found"
        wrong = http.post(
            "/v1/chat/completions",
            json={"model": "coder", "messages": PROMPT, "temperature": "hot"},
        )
        assert wrong.status_code == 400 and wrong.json()["error"]["param"] == "temperature"
        nowhere = http.get("/v1/nothing")
        assert nowhere.status_code == 404 and "error" in nowhere.json()


def httpx2_sse(resp):
    import httpx2

    return iter(httpx2.EventSource(resp))


def test_requests_are_stored_as_api_sessions(server):
    answer = server.openai().chat.completions.create(model="critic", messages=PROMPT, max_tokens=4)
    db = sqlite3.connect(server.db)
    rows = db.execute(
        "SELECT s.mode, s.title, m.role, m.status FROM sessions s JOIN messages m "
        "ON m.session_id = s.id WHERE s.title LIKE '%critic' ORDER BY m.id"
    ).fetchall()
    assert rows[0][:3] == ("api", "OpenAI → critic", "user")
    # 4 tokens are no JSON object for the critic: once its corrections run out the answer
    # ends content_filter, and the record says so (it used to say done).
    halted = answer.choices[0].finish_reason == "content_filter"
    assert rows[-1][2:] == ("assistant", "halted" if halted else "done")


def test_socket_and_dir_modes_and_no_tcp_without_port(tmp_path):
    proc = ServeProc(write_small_config(tmp_path), tmp_path / "s.db", "--no-judge").start()
    try:
        assert stat.S_IMODE(proc.socket.stat().st_mode) == 0o600
        assert stat.S_IMODE(proc.socket.parent.stat().st_mode) == 0o700
        assert listening_tcp_ports(proc.proc.pid) == set()
        again = subprocess.run(
            [sys.executable, "-m", "hermes_tui.server", "--config", str(proc.config)],
            env=proc.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert again.returncode == 3
        assert again.stderr.strip().splitlines() == [
            f"hermes: a hermes serve is already running on {proc.socket} (pid {proc.proc.pid})"
        ]
    finally:
        assert proc.stop() == 0
        proc.cleanup()
    assert not proc.socket.exists()


def test_sigterm_mid_stream_ends_with_a_clear_error_and_stores_interrupted(tmp_path):
    cfg = write_small_config(tmp_path, max_tokens=400)
    proc = ServeProc(cfg, tmp_path / "s.db", "--no-judge").start()
    try:
        client = proc.openai()
        stream = client.chat.completions.create(
            model="smollm2",
            messages=[{"role": "user", "content": "Tell a very long story about a ship."}],
            max_tokens=400,
            stream=True,
        )
        got = 0
        with pytest.raises(openai.APIError) as err:
            for _chunk in stream:
                got += 1
                if got == 5:
                    proc.send(signal.SIGTERM)
        assert "shutting down" in str(err.value)
        assert proc.proc.wait(30) == 0
    finally:
        proc.cleanup() if proc.proc.poll() is not None else proc.stop()
    db = sqlite3.connect(tmp_path / "s.db")
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    status, code = db.execute(
        "SELECT status, error_code FROM messages WHERE role = 'assistant'"
    ).fetchone()
    assert (status, code) == ("interrupted", "E_SERVER_DOWN")


def test_no_auth_only_with_tcp_and_warns(tmp_path):
    env = hermes_env()
    out = subprocess.run(
        [sys.executable, "-m", "hermes_tui.server", "--no-auth"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "--no-auth only applies to TCP" in out.stderr
    proc = ServeProc(
        write_small_config(tmp_path), tmp_path / "s.db", "--no-judge", "--port", "0", "--no-auth"
    )
    try:
        proc.start()
        assert "WARNING: --no-auth" in proc.log()
        import httpx2

        assert httpx2.get(f"{proc.url}/models").status_code == 200
    finally:
        proc.cleanup()


def test_show_token_prints_the_stored_token(tmp_path):
    proc = ServeProc(tmp_path / "unused.toml", tmp_path / "s.db")
    out = subprocess.run(
        [sys.executable, "-m", "hermes_tui.cli", "serve", "--show-token"],
        env=proc.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0
    assert out.stdout.strip() == proc.token
    assert stat.S_IMODE(os.stat(proc.token_path).st_mode) == 0o600


def test_full_queue_is_429_with_retry_after_and_never_fits_is_400(tmp_path):
    cfg = write_small_config(tmp_path, max_tokens=40)
    text = cfg.read_text().replace("queue_size = 16", "queue_size = 1")
    text = text.replace('memory = "8GiB"', 'memory = "600MiB"')
    text += '\n[models.huge]\npath = "embedded:smollm2-135m"\nn_ctx = 131072\n'
    cfg.write_text(text)
    proc = ServeProc(cfg, tmp_path / "s.db", "--no-judge").start()
    try:
        with proc.uds_client() as http:
            huge = http.post("/v1/chat/completions", json={"model": "huge", "messages": PROMPT})
            assert huge.status_code == 400
            err = huge.json()["error"]
            assert err["code"] == "E_NEVER_FITS"
            assert "needs about" in err["message"] and "budget of 600.0 MiB" in err["message"]

        import concurrent.futures

        def ask(i: int):
            with proc.uds_client() as http:
                body = {"model": "smollm2", "messages": PROMPT, "max_tokens": 40}
                return http.post(
                    "/v1/chat/completions", json=body, headers={"user-agent": f"c{i}/1"}
                )

        with concurrent.futures.ThreadPoolExecutor(8) as ex:
            answers = list(ex.map(ask, range(8)))
        codes = sorted(a.status_code for a in answers)
        assert set(codes) == {200, 429}, codes
        busy = next(a for a in answers if a.status_code == 429)
        assert busy.headers["retry-after"] == "2"
        assert busy.json()["error"]["code"] == "E_POOL_BUSY"
        assert busy.json()["error"]["type"] == "rate_limit_error"
        sdk = proc.openai(max_retries=0)
        assert sdk.chat.completions.create(model="smollm2", messages=PROMPT, max_tokens=2)
    finally:
        proc.cleanup()


def test_an_image_part_is_a_400_naming_it_and_text_parts_are_answered(server):
    """The models are text-only: an image part answered as if it were not there is a wrong
    answer (QA: "describe this image" got a confident description of nothing)."""
    client = server.openai(max_retries=0)
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    ask = [
        {"role": "system", "content": "You describe images."},
        {"role": "user", "content": [{"type": "text", "text": "What is in it?"}, image]},
    ]
    for streamed in (False, True):
        with pytest.raises(openai.BadRequestError) as err:
            client.chat.completions.create(
                model="smollm2", messages=ask, max_tokens=4, stream=streamed
            )
        assert err.value.param == "messages[1].content[1]"
        assert err.value.code == "unsupported_content"
        assert "'image_url' content parts are not supported" in err.value.message
        assert "text-only" in err.value.message and "\n" not in err.value.message
    parts = [{"type": "text", "text": "Name three"}, {"type": "text", "text": " colours."}]
    ok = client.chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": parts}],
        max_tokens=4,
        temperature=0.0,
    )
    assert ok.choices[0].message.content


def test_a_stop_string_on_the_last_allowed_token_ends_with_stop_not_length(server):
    """The answer was ended by the client's stop string, on the very token max_tokens allowed:
    that is a finished answer ("stop"), not one cut off ("length"), streamed or whole."""
    client = server.openai()
    ask = dict(model="smollm2", messages=PROMPT, temperature=0.0)
    before = client.chat.completions.create(max_tokens=2, **ask).choices[0].message.content
    for k in range(3, 16):  # the first token whose own text is not in the answer before it
        full = client.chat.completions.create(max_tokens=k, **ask)
        assert full.choices[0].finish_reason == "length"  # greedy SmolLM2 says more
        text = full.choices[0].message.content
        assert text.startswith(before) and len(text) > len(before)
        stop = text[len(before) :].strip() or text[len(before) :]  # the last token's text
        if stop not in before:
            break
        before = text
    else:
        raise AssertionError("no usable token in 3..15")
    whole = client.chat.completions.create(max_tokens=k, stop=[stop], **ask)
    assert whole.choices[0].message.content == text[: text.index(stop)]
    assert whole.choices[0].finish_reason == "stop"
    assert whole.usage.completion_tokens == k
    chunks = list(client.chat.completions.create(max_tokens=k, stop=[stop], stream=True, **ask))
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    # Cut by max_tokens with the stop string not reached: still "length".
    other = client.chat.completions.create(max_tokens=k, stop=["\u2603never"], **ask)
    assert other.choices[0].finish_reason == "length"
