"""What QA found in ``hermes serve`` (a real server process; real clients; the real model where a
turn runs): a bearer token no compare can take, bodies read whole before the size check, a
``--socket`` directory re-moded, a shutdown that left the next turn without its fallback."""

from __future__ import annotations

import json
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import time

import httpx2

from tests.conftest import write_small_config
from tests.serve_util import ServeProc
from tests.test_serve_clients import batch, pool_snapshot, script


def peak_rss_kib(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_a_non_ascii_bearer_token_is_401_not_a_500_with_a_traceback(tmp_path):
    proc = ServeProc(write_small_config(tmp_path), tmp_path / "s.db", "--port", "0", "--no-judge")
    proc.start()
    try:
        for value in ("Bearer ü".encode(), b"Bearer \xff\xfe", b"Bearer hermes-\xc3\xa9"):
            resp = httpx2.get(f"{proc.url}/models", headers={"Authorization": value})
            assert resp.status_code == 401, resp.text
            assert resp.json()["error"]["type"] == "authentication_error"
        ok = httpx2.get(f"{proc.url}/models", headers={"Authorization": f"Bearer {proc.token}"})
        assert ok.status_code == 200
        assert "Traceback" not in proc.log()
    finally:
        proc.cleanup()


def test_a_body_over_the_limit_is_refused_without_reading_it_whole(tmp_path):
    proc = ServeProc(write_small_config(tmp_path), tmp_path / "s.db", "--no-judge").start()
    try:
        # A declared 10 GiB body: 413 at once (it used to wait for all of it).
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(20)
            s.connect(str(proc.socket))
            s.sendall(
                b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                b"Content-Length: 10737418240\r\n\r\n{"
            )
            assert s.recv(200).startswith(b"HTTP/1.1 413")
        # 400 MiB streamed (chunked, no length): refused as it passes 8 MiB, memory flat.
        before = peak_rss_kib(proc.proc.pid)
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(60)
            s.connect(str(proc.socket))
            s.sendall(
                b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n"
            )
            chunk = b"%x\r\n" % 2**20 + b"a" * 2**20 + b"\r\n"
            try:
                for _ in range(400):
                    s.sendall(chunk)
                s.sendall(b"0\r\n\r\n")
            except OSError:
                pass  # the server answered and closed: the rest is never read
            assert s.recv(200).startswith(b"HTTP/1.1 413")
        assert peak_rss_kib(proc.proc.pid) - before < 100 * 1024
        with proc.uds_client() as http:  # still serving
            assert http.get("/health").json() == {"status": "ok"}
    finally:
        proc.cleanup()


def test_socket_in_an_existing_directory_leaves_that_directory_as_it_was(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)  # like /tmp: hermes serve --socket /tmp/hermes.sock
    sock = shared / "s.sock"
    proc = ServeProc(
        write_small_config(tmp_path), tmp_path / "s.db", "--socket", str(sock), "--no-judge"
    )
    proc.socket = sock
    proc.start()
    try:
        assert stat.S_IMODE(shared.stat().st_mode) == 0o1777
        assert stat.S_IMODE(sock.stat().st_mode) == 0o600
        with proc.uds_client() as http:
            assert http.get("/health").json() == {"status": "ok"}
    finally:
        proc.cleanup()
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777


def test_server_stopped_mid_turn_by_sigterm_then_the_next_turn_runs_in_process(tmp_path):
    cfg = write_small_config(tmp_path, max_tokens=300)
    proc = ServeProc(cfg, tmp_path / "server.db", "--no-judge").start()
    long = "Tell a very long story about a lighthouse keeper and the sea."
    # --seed 2: the coder's first answer runs to its 300 tokens (a sampled one could end, or
    # be halted as a loop, before the signal: then its status is not E_SERVER_DOWN).
    turns = script(tmp_path, turns=("coder", "critic"), text=long)
    run = batch(proc, turns, tmp_path / "c.db", "--seed", "2")
    try:
        deadline = time.monotonic() + 120
        while not pool_snapshot(proc)["running"] and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
        proc.send(signal.SIGTERM)  # an orderly stop: the server says goodbye in-band
        out, err = run.communicate(timeout=300)
    finally:
        proc.cleanup()
    messages = [json.loads(line) for line in out.splitlines() if '"message"' in line]
    first, second = messages[0], messages[-1]
    assert (first["status"], first["code"]) == ("error", "E_SERVER_DOWN"), first
    assert "shutting down" in first["detail"]
    assert second["persona"] == "critic" and second["status"] in ("done", "halted"), second
    assert run.returncode == 3, err


def test_a_prompt_longer_than_the_context_is_a_400_the_sdk_does_not_retry(tmp_path):
    import openai

    proc = ServeProc(write_small_config(tmp_path), tmp_path / "s.db", "--no-judge").start()
    try:
        long = [{"role": "user", "content": "word " * 3000}]  # n_ctx is 2048
        client = proc.openai(max_retries=2)
        try:
            client.chat.completions.create(model="smollm2", messages=long, max_tokens=4)
            raise AssertionError("a prompt over n_ctx was answered")
        except openai.BadRequestError as exc:  # a 500 would be retried twice by the SDK
            assert exc.code == "context_length_exceeded"
            assert "does not fit n_ctx=2048" in exc.message
        assert proc.log().count("smollm2 api error") == 1  # asked once, not three times
        ok = client.chat.completions.create(
            model="smollm2", messages=[long[0] | {"content": "hi"}], max_tokens=2, temperature=0
        )
        assert ok.choices[0].message.content
    finally:
        proc.cleanup()


def test_a_default_socket_that_others_could_have_placed_is_not_used(monkeypatch):
    """Without XDG_RUNTIME_DIR the default socket is /tmp/hermes-tui-<uid>/serve.sock: another
    local user can make that directory first and listen there (QA: a batch sent its prompts to
    such a server and printed its answers). Only a socket of ours in a directory nobody else
    can write to is used."""
    import tempfile
    import warnings
    from pathlib import Path

    from hermes_tui.server.client import locate
    from hermes_tui.server.listener import runtime_dir

    base = Path(tempfile.mkdtemp(prefix="q-"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(base))
    monkeypatch.delenv("HERMES_SERVER", raising=False)
    here = base / "hermes-tui"
    here.mkdir(mode=0o700)
    with socket.socket(socket.AF_UNIX) as listening:
        listening.bind(str(here / "serve.sock"))
        assert locate() is not None  # ours, private: used
        for mode in (0o777, 0o1777, 0o770):  # what another user's directory would allow
            here.chmod(mode)
            assert locate() is None, oct(mode)
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        runtime_dir()
    assert not caught  # no RuntimeDirWarning printed on every hermes command


def test_no_auth_refuses_what_a_web_page_could_send(tmp_path):
    """With --no-auth on loopback, a page the user visits could POST a completion (text/plain:
    no CORS preflight) or read answers through DNS rebinding (QA did both with curl). API
    clients send no Origin and no Sec-Fetch-*; browsers always do."""
    proc = ServeProc(
        write_small_config(tmp_path), tmp_path / "s.db", "--no-judge", "--port", "0", "--no-auth"
    )
    proc.start()
    try:
        page = {"Origin": "http://attacker.example", "Content-Type": "text/plain"}
        body = (
            '{"model": "smollm2", "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]}'
        )
        post = httpx2.post(f"{proc.url}/chat/completions", content=body, headers=page)
        assert post.status_code == 403 and "web browser" in post.json()["error"]["message"]
        rebound = {
            "Host": "attacker.example",
            "Sec-Fetch-Mode": "cors",
            "Sec-Fetch-Site": "same-origin",
        }
        assert httpx2.get(f"{proc.url}/models", headers=rebound).status_code == 403
        assert httpx2.get(f"{proc.url}/models").status_code == 200  # an API client
        with proc.uds_client() as http:  # the socket is not affected
            assert http.get("/v1/models", headers=page).status_code == 200
    finally:
        proc.cleanup()


def test_nan_and_infinity_are_not_json_and_are_a_400():
    import pytest

    from hermes_tui.server.openai_schema import ApiError, parse_chat_request

    for value in ("NaN", "Infinity", "-Infinity"):
        body = '{"model": "smollm2", "temperature": %s, "messages": [{"role": "user", "content": "hi"}]}'
        with pytest.raises(ApiError) as err:
            parse_chat_request((body % value).encode())
        assert err.value.status == 400 and f"{value} is not a JSON number" in err.value.message


def test_sentinel_check_reads_its_input_bounded(tmp_path):
    """``hermes sentinel check /dev/zero`` ran until memory ran out; a FIFO with no writer hung."""
    import os
    import subprocess
    import sys

    from tests.conftest import hermes_env

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    cmd = [sys.executable, "-m", "hermes_tui.cli", "sentinel", "check"]
    for arg, why in (("/dev/zero", "is a device, not a file"), (str(fifo), None)):
        if why is None:  # a FIFO: read to its end, bounded, once a writer comes
            writer = subprocess.Popen(
                ["sh", "-c", f"head -c 20000000 /dev/zero | tr '\\0' a > {fifo}"]
            )
            why = "is larger than 16 MiB"
        run = subprocess.run(
            [*cmd, arg], env=hermes_env(), capture_output=True, text=True, timeout=60
        )
        assert run.returncode == 2, run.stderr
        assert run.stderr.strip().splitlines() == [f"hermes: {arg}: {why}"]
    writer.kill()
    big = subprocess.run(
        [*cmd, "-"], input="a" * (17 * 2**20), env=hermes_env(), capture_output=True, text=True
    )
    assert big.returncode == 2 and big.stderr.strip() == "hermes: stdin: is larger than 16 MiB"


def test_a_judge_request_with_an_impossible_offset_is_a_400(tmp_path):
    proc = ServeProc(write_small_config(tmp_path), tmp_path / "s.db", "--no-judge").start()
    try:
        with proc.uds_client() as http:
            body = b'{"contract_kind": "json", "instructions": "x", "text": "y", "offset": 1e999}'
            resp = http.post("/hermes/judge", content=body)
            assert resp.status_code == 400 and "invalid judge request" in resp.text
        assert "Traceback" not in proc.log()
    finally:
        proc.cleanup()


def test_hermes_web_refuses_a_host_header_it_cannot_parse(tmp_path):
    """A Host with a bad port raised ValueError in the handler: a 500 and a traceback."""
    import asyncio

    import aiohttp

    from tests.test_web import WebServer

    srv = WebServer(tmp_path)
    try:

        async def get() -> int:
            async with aiohttp.ClientSession() as s:
                bad = {"Host": f'127.0.0.1:{srv.port}"><script>'}
                async with s.get(srv.url, headers=bad) as r:
                    return r.status

        assert asyncio.run(get()) == 403
    finally:
        err = srv.stop()
    assert "Traceback" not in err and "ValueError" not in err


def test_a_tool_whose_ref_does_not_resolve_is_a_400(tmp_path):
    """The call checker raised mid-stream on such a tool (referencing's Unresolvable) once the
    model called it; the request is refused up front instead. Nothing is fetched."""
    import openai
    import pytest

    proc = ServeProc(write_small_config(tmp_path), tmp_path / "s.db", "--no-judge").start()
    try:
        client = proc.openai(max_retries=0)
        ask = [{"role": "user", "content": "weather in Paris?"}]
        for ref in ("http://127.0.0.1:9/x.json", "file:///etc/passwd", "#/definitions/nope"):
            fn = {"name": "get_weather", "parameters": {"$ref": ref}}
            with pytest.raises(openai.BadRequestError) as err:
                client.chat.completions.create(
                    model="smollm2", messages=ask, tools=[{"type": "function", "function": fn}]
                )
            assert f"$ref {ref!r} does not resolve" in err.value.message
        local = {
            "type": "object",
            "properties": {"city": {"$ref": "#/$defs/city"}},
            "$defs": {"city": {"type": "string"}},
        }
        fn = {"name": "get_weather", "parameters": local}
        ok = client.chat.completions.create(
            model="smollm2",
            messages=ask,
            tools=[{"type": "function", "function": fn}],
            max_tokens=2,
            temperature=0.0,
        )
        assert ok.choices[0].finish_reason in ("length", "stop", "tool_calls")
    finally:
        proc.cleanup()


def test_a_judge_request_with_an_unknown_kind_or_non_text_is_a_400(tmp_path):
    proc = ServeProc(write_small_config(tmp_path), tmp_path / "s.db", "--no-judge").start()
    try:
        with proc.uds_client() as http:
            for bad, says in (
                ({"contract_kind": "yaml", "instructions": "x", "text": "y"}, "contract_kind"),
                ({"contract_kind": "json", "instructions": "x", "text": {"a": 1}}, "strings"),
                ({"contract_kind": "json", "instructions": "x", "text": "y", "offset": -3}, ">= 0"),
            ):
                resp = http.post("/hermes/judge", json=bad)
                assert resp.status_code == 400 and says in resp.text, (bad, resp.text)
            ok = {"contract_kind": "json", "instructions": "x", "text": "y", "offset": 2}
            assert http.post("/hermes/judge", json=ok).status_code == 200
    finally:
        proc.cleanup()


def test_socket_in_a_missing_directory_is_refused_without_creating_it(tmp_path):
    sock = tmp_path / "no" / "such" / "dir" / "s.sock"
    out = subprocess.run(
        [sys.executable, "-m", "hermes_tui.cli", "serve", "--socket", str(sock), "--no-judge"],
        env=ServeProc(write_small_config(tmp_path), tmp_path / "s.db").env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2, out.stderr
    assert out.stderr.count("\n") == 1 and "does not exist" in out.stderr, out.stderr
    assert not (tmp_path / "no").exists()


def test_a_host_that_does_not_resolve_fails_without_the_remote_warning(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "hermes_tui.cli", "serve", "--host", "999.1.1.1", "--no-judge"],
        env=ServeProc(write_small_config(tmp_path), tmp_path / "s.db").env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "--host 999.1.1.1" in out.stderr, out.stderr
    assert "reachable from other machines" not in out.stderr


def test_show_token_says_when_an_exposed_token_file_was_replaced(tmp_path):
    proc = ServeProc(tmp_path / "unused.toml", tmp_path / "s.db")
    proc.token_path.parent.mkdir(parents=True, exist_ok=True)
    proc.token_path.write_text("hermes-old-token\n")
    proc.token_path.chmod(0o640)  # readable by the group: no longer a secret
    out = subprocess.run(
        [sys.executable, "-m", "hermes_tui.cli", "serve", "--show-token"],
        env=proc.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0
    new = out.stdout.strip()
    assert new.startswith("hermes-") and new != "hermes-old-token"
    assert "replaced by a new token" in out.stderr and "restart" in out.stderr
    assert stat.S_IMODE(proc.token_path.stat().st_mode) == 0o600


def test_a_secret_found_only_as_the_answer_ends_halts_it_and_is_recorded_halted(tmp_path):
    """Greedy SmolLM2 repeats the token and the stop sequence "." ends the answer right after
    it: the secret becomes certain only at the end. That used to reach a streaming client as
    ``length``/``stop`` (no code), a non-streaming one as ``content_filter`` without a detail,
    and both were stored as ``done`` with no error code."""
    proc = ServeProc(write_small_config(tmp_path), tmp_path / "s.db", "--no-judge").start()
    secret = "ghp_R4nd0mT0k3nV4lu3xYzAbCdEfGh123456789"
    ask = dict(
        model="smollm2",
        messages=[
            {
                "role": "user",
                "content": f"My github token is {secret}. Repeat my token back: {secret}",
            }
        ],
        max_tokens=40,
        temperature=0,
        seed=1,
        stop=["."],
    )
    try:
        client = proc.openai(max_retries=0)
        whole = client.chat.completions.create(**ask)
        # what this test relies on: the answer repeats the token (it used to arrive as it was)
        answer = whole.choices[0].message.content
        assert "[REDACTED:github-token]" in answer and secret[:8] not in answer
        assert whole.choices[0].finish_reason == "content_filter"
        hermes = whole.model_extra["hermes"]
        assert (hermes["code"], hermes["detail"]) == ("E_SECRET", "GitHub Token")
        chunks = list(client.chat.completions.create(**ask, stream=True))
        last = next(c for c in reversed(chunks) if c.choices)
        assert last.choices[0].finish_reason == "content_filter"
        assert last.model_extra["hermes"]["code"] == "E_SECRET"
        sent = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert "[REDACTED:github-token]" in sent and secret[:8] not in sent
        assert proc.log().count("smollm2 api halted E_SECRET") == 2
        assert "Traceback" not in proc.log()
    finally:
        proc.cleanup()
    with sqlite3.connect(tmp_path / "s.db") as db:
        rows = db.execute(
            "SELECT status, error_code FROM messages WHERE role = 'assistant'"
        ).fetchall()
    assert rows == [("halted", "E_SECRET")] * 2


def test_a_huge_wrong_value_is_not_quoted_back_whole_in_the_400(tmp_path):
    import openai

    proc = ServeProc(write_small_config(tmp_path), tmp_path / "s.db", "--no-judge").start()
    try:
        client = proc.openai(max_retries=0)
        hi = [{"role": "user", "content": "hi"}]
        try:  # 90,000 stop strings (1 MB): the message used to repeat all of them
            client.chat.completions.create(model="smollm2", messages=hi, stop=["abcdefgh"] * 90000)
            raise AssertionError("a 90,000-item stop list was accepted")
        except openai.BadRequestError as exc:
            assert exc.param == "stop"
            assert "stop: ['abcdefgh', " in exc.message and "is too long" in exc.message
            assert len(exc.message) < 400 and len(exc.response.content) < 1000
        with proc.uds_client() as http:  # 5 MB of text where the messages list belongs
            body = json.dumps({"model": "smollm2", "messages": "a" * 5_000_000})
            resp = http.post("/v1/chat/completions", content=body)
        assert resp.status_code == 400 and len(resp.content) < 1000
        assert "is not of type 'array'" in resp.json()["error"]["message"]
        assert "Traceback" not in proc.log()
    finally:
        proc.cleanup()


def test_a_prompt_far_over_the_context_is_refused_from_a_prefix_of_it():
    """The real tokenizer of the embedded model: 5 MB, or 20,000 short messages rendered,
    are found too long for n_ctx=2048 after tokenizing a few tens of KB of them (all of it
    took 30 s and 15 s while the model's slot waited); a prompt that fits is not cut."""
    import llama_cpp

    from agents.models import resolve_model_path
    from agents.pool.prompt_limit import estimated_tokens_over

    llama = llama_cpp.Llama(
        str(resolve_model_path("embedded:smollm2-135m")), vocab_only=True, verbose=False
    )
    seen: list[int] = []

    def tokenize(part: bytes) -> list[int]:
        seen.append(len(part))
        return llama.tokenize(part, add_bos=False, special=True)

    big = b"a" * 5_000_000
    about = estimated_tokens_over(tokenize, big, 2048)
    assert about is not None and 1_000_000 < about < 1_500_000  # 4 a's a token: 1,250,000
    assert sum(seen) < 64_000
    seen.clear()
    turns = b"<|im_start|>user\nhi<|im_end|>\n" * 20_000
    assert estimated_tokens_over(tokenize, turns, 2048) is not None and sum(seen) < 64_000
    seen.clear()
    fits = "".join(f"word{i} " for i in range(1500)).encode()  # ~3,000 tokens in 13 KB
    assert estimated_tokens_over(tokenize, fits, 4096) is None
    assert estimated_tokens_over(tokenize, fits, 2048) is not None


def test_a_5_mb_message_is_a_400_and_the_next_request_is_answered(tmp_path):
    import openai

    proc = ServeProc(write_small_config(tmp_path), tmp_path / "s.db", "--no-judge").start()
    try:
        client = proc.openai(max_retries=0)
        for messages in (
            [{"role": "user", "content": "a" * 5_000_000}],
            [{"role": "user", "content": "hi"}] * 20_000,
        ):
            try:
                client.chat.completions.create(model="smollm2", messages=messages, max_tokens=2)
                raise AssertionError("a prompt far over n_ctx was answered")
            except openai.BadRequestError as exc:
                assert exc.code == "context_length_exceeded"
                assert "tokens" in exc.message and "does not fit n_ctx=2048" in exc.message
        ok = client.chat.completions.create(
            model="smollm2", messages=[{"role": "user", "content": "hi"}], max_tokens=2
        )
        assert ok.choices[0].message.content
        assert "Traceback" not in proc.log()
    finally:
        proc.cleanup()


def test_a_5_mb_message_does_not_hold_the_other_clients_while_it_is_redacted(tmp_path):
    """Storing a client's message redacts it (~1 s a MB): that ran on the server's event
    loop, so nothing else was answered until it was done (/health asked 1 s after a 5 MB
    message took 4.6 s of that message's 9). Now it is answered at once, and the message is
    stored cut at MAX_STORED_CHARS with a note, as long answers are."""
    import threading

    import openai

    proc = ServeProc(write_small_config(tmp_path), tmp_path / "s.db", "--no-judge").start()
    done: dict[str, float] = {}

    def big() -> None:
        try:
            proc.openai(max_retries=0, timeout=300).chat.completions.create(
                model="smollm2", messages=[{"role": "user", "content": "a " * 2_500_000}]
            )
        except openai.BadRequestError:
            done["big"] = time.monotonic()

    try:
        sender = threading.Thread(target=big)
        t0 = time.monotonic()
        sender.start()
        time.sleep(1)
        with proc.uds_client() as http:
            asked = time.monotonic()
            assert http.get("/health").json() == {"status": "ok"}
            health_s = time.monotonic() - asked
        sender.join(300)
        assert "big" in done, proc.log()
        # Paired in this run: /health waited a quarter of the big request's time or more.
        assert health_s < (done["big"] - t0) / 8, (health_s, done["big"] - t0)
    finally:
        proc.cleanup()
    with sqlite3.connect(tmp_path / "s.db") as db:
        (stored,) = db.execute("SELECT content FROM messages WHERE role = 'user'").fetchone()
    assert stored.startswith("a a a ") and stored.endswith("more characters not stored]")


def test_a_wrong_shape_in_the_fields_the_gateway_reads_is_a_400_naming_it(tmp_path):
    """Each of these was a 500 with a traceback in the server's output (or answered as if the
    field were not there); the official SDK sends them as given."""
    import openai

    proc = ServeProc(write_small_config(tmp_path), tmp_path / "s.db", "--no-judge").start()
    hi = [{"role": "user", "content": "hi"}]
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    call = {"id": "1", "type": "function", "function": "f"}
    cases = [
        (
            "response_format.json_schema",
            {"response_format": {"type": "json_schema", "json_schema": "x"}},
        ),
        ("response_format.type", {"response_format": {"type": "xml"}}),
        (
            "tool_choice.function",
            {"tools": tools, "tool_choice": {"type": "function", "function": "f"}},
        ),
        ("tool_choice", {"tool_choice": "required"}),
        ("messages[0].tool_calls", {"messages": [{"role": "assistant", "tool_calls": "y"}, *hi]}),
        (
            "messages[0].tool_calls[0].function",
            {"messages": [{"role": "assistant", "tool_calls": [call]}, *hi]},
        ),
    ]
    try:
        client = proc.openai(max_retries=0)
        for param, fields in cases:
            ask = {"model": "smollm2", "messages": hi, "max_tokens": 2, **fields}
            try:
                client.chat.completions.create(**ask)
                raise AssertionError(f"{param}: answered")
            except openai.BadRequestError as exc:
                assert exc.param == param, (param, exc.message)
                assert exc.message.startswith(f"Error code: 400 - {param}: "), exc.message
        ok = client.chat.completions.create(
            model="smollm2",
            messages=hi,
            max_tokens=2,
            tools=tools,
            tool_choice="auto",
            response_format={"type": "text"},
        )
        assert ok.choices[0].finish_reason in ("stop", "length", "tool_calls")
        assert "Traceback" not in proc.log() and " 500 " not in proc.log()
    finally:
        proc.cleanup()
