"""hermes's own commands as clients of one ``hermes serve``, several clients at once, faults,
and scale-out (a server that uses another server as a remote model). Real processes, the real
model, real SQLite."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import subprocess
import sys
import threading
import time

import httpx2

from tests.conftest import write_small_config
from tests.serve_util import ServeProc

HERMES = [sys.executable, "-m", "hermes_tui.cli"]


def batch(proc: ServeProc, script, db, *args, **kw) -> subprocess.Popen:
    """``hermes batch`` run as a user of the server would (same runtime dir: default socket)."""
    return subprocess.Popen(
        [*HERMES, "batch", str(script), "--config", str(proc.config), "--db", str(db), *args],
        env={**proc.env, **kw.pop("env", {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )


def script(tmp_path, name="s.toml", turns=("coder",), text="Write hello world in Python."):
    body = "".join(f'[[turn]]\nto = "{t}"\ntext = "{text}"\n' for t in turns)
    path = tmp_path / name
    path.write_text(f'title = "{name}"\n{body}')
    return path


def pool_snapshot(proc: ServeProc) -> dict:
    with proc.uds_client() as http:
        return http.get("/hermes/pool").json()


def test_batch_and_doctor_use_a_running_server(tmp_path):
    proc = ServeProc(write_small_config(tmp_path), tmp_path / "server.db", "--no-judge").start()
    try:
        doctor = subprocess.run(
            [*HERMES, "doctor", "--config", str(proc.config)],
            env=proc.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert f"pool          hermes serve at unix:{proc.socket} (default socket)" in doctor.stdout
        run = batch(proc, script(tmp_path), tmp_path / "client.db", "--seed", "1")
        out, err = run.communicate(timeout=300)
        assert run.returncode in (0, 1), err
        messages = [json.loads(line) for line in out.splitlines() if '"message"' in line]
        assert messages and messages[-1]["status"] in ("done", "halted") and messages[-1]["text"]
        assert f"hermes-{run.pid} smollm2 batch done" in proc.log()  # the server ran the turn
        # The client records its own session; the server records none for it.
        client = sqlite3.connect(tmp_path / "client.db")
        assert client.execute("SELECT mode FROM sessions").fetchall() == [("batch",)]
        server = sqlite3.connect(tmp_path / "server.db")
        assert server.execute("SELECT count(*) FROM sessions").fetchone() == (0,)
    finally:
        proc.cleanup()
    doctor = subprocess.run(
        [*HERMES, "doctor", "--config", str(proc.config)],
        env=proc.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "pool          in-process" in doctor.stdout


def test_an_explicit_server_that_is_not_there_is_one_line_exit_3(tmp_path):
    proc = ServeProc(write_small_config(tmp_path), tmp_path / "server.db")
    run = batch(proc, script(tmp_path), tmp_path / "c.db", "--server", "unix:/nonexistent.sock")
    out, err = run.communicate(timeout=120)
    assert run.returncode == 3
    assert err.strip().splitlines() == [
        "hermes: no hermes serve at unix:/nonexistent.sock (ConnectError) "
        "(--server; HERMES_SERVER=off runs in-process)"
    ]
    proc.cleanup()


def test_server_killed_mid_turn_is_e_server_down_then_falls_back_in_process(tmp_path):
    cfg = write_small_config(tmp_path, max_tokens=300)
    proc = ServeProc(cfg, tmp_path / "server.db", "--no-judge").start()
    long = "Tell a very long story about a lighthouse keeper and the sea."
    # --seed 2: the coder's first answer runs to its 300 tokens (a sampled one could end, or
    # be halted as a loop, before the kill: then its status is not E_SERVER_DOWN).
    turns = script(tmp_path, turns=("coder", "critic"), text=long)
    run = batch(proc, turns, tmp_path / "c.db", "--seed", "2")
    try:
        deadline = time.monotonic() + 120
        while not pool_snapshot(proc)["running"] and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)  # a few tokens into the coder's answer
        proc.proc.kill()  # SIGKILL: no goodbye to the client
        out, err = run.communicate(timeout=300)
    finally:
        proc.cleanup()
    messages = [json.loads(line) for line in out.splitlines() if '"message"' in line]
    first, second = messages[0], messages[-1]
    assert (first["status"], first["code"]) == ("error", "E_SERVER_DOWN")
    assert "went away mid-turn" in first["detail"]
    assert second["persona"] == "critic" and second["status"] in ("done", "halted")  # in-process
    assert run.returncode == 3
    assert len(err.strip().splitlines()) == 1 and "went away mid-turn" in err
    for db in ("c.db", "server.db"):
        conn = sqlite3.connect(tmp_path / db)
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    statuses = (
        sqlite3.connect(tmp_path / "c.db")
        .execute("SELECT status, error_code FROM messages WHERE role = 'assistant' ORDER BY id")
        .fetchall()
    )
    assert statuses[0] == ("error", "E_SERVER_DOWN")


def test_a_client_leaving_mid_stream_leaks_nothing(tmp_path):
    proc = ServeProc(write_small_config(tmp_path, max_tokens=300), tmp_path / "s.db", "--no-judge")
    proc.start()
    try:
        body = {
            "model": "smollm2",
            "messages": [{"role": "user", "content": "Tell a very long story about a ship."}],
            "max_tokens": 300,
            "temperature": 0,
            "stream": True,
        }
        with proc.uds_client() as http:
            with http.stream("POST", "/v1/chat/completions", json=body) as resp:
                events = []
                for event in httpx2.EventSource(resp):
                    events.append(json.loads(event.data))
                    if len(events) == 6:
                        break  # the client leaves mid-answer
        assert all(e["choices"][0]["finish_reason"] is None for e in events)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            snap = pool_snapshot(proc)
            if not snap["running"] and not snap["clients"] and not snap["queue"]:
                break
            time.sleep(0.1)
        assert (snap["running"], snap["clients"], snap["queue"]) == ([], [], [])
        assert "cancelled E_CLIENT_GONE" in proc.log()
        # The slot and its KV sequence are free: the next request is served at once.
        again = proc.openai().chat.completions.create(
            model="smollm2", messages=body["messages"], max_tokens=3, temperature=0
        )
        assert again.choices[0].message.content
        status = (
            sqlite3.connect(proc.db)
            .execute("SELECT status FROM messages WHERE role = 'assistant' ORDER BY id")
            .fetchall()
        )
        assert status == [("cancelled",), ("done",)]
    finally:
        proc.cleanup()


def test_one_server_three_clients_memory_within_budget_models_loaded_once(tmp_path):
    cfg = write_small_config(tmp_path, max_tokens=24)
    text = cfg.read_text().replace('memory = "8GiB"', 'memory = "600MiB"')
    cfg.write_text(text)
    proc = ServeProc(cfg, tmp_path / "server.db", "--no-judge").start()
    samples: list[dict] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            with contextlib.suppress(httpx2.HTTPError):
                samples.append(pool_snapshot(proc))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        runs = [
            batch(
                proc,
                script(tmp_path, f"b{i}.toml", turns=("coder", "critic")),
                tmp_path / f"c{i}.db",
            )
            for i in range(2)
        ]
        sdk = proc.openai()
        answer = sdk.chat.completions.create(
            model="architect", messages=[{"role": "user", "content": "Plan a CLI."}], max_tokens=16
        )
        outs = [r.communicate(timeout=300) for r in runs]
    finally:
        stop.set()
        sampler.join()
        proc.cleanup()
    assert answer.choices[0].message.content
    for run, (out, err) in zip(runs, outs, strict=True):
        assert run.returncode in (0, 1, 3), err
        for line in out.splitlines():
            event = json.loads(line)
            if event["event"] == "message":
                assert event["status"] != "error" or event.get("code") == "E_POOL_BUSY", event
    assert samples
    for snap in samples:
        for device in snap["devices"]:
            assert device["used_bytes"] <= device["budget_bytes"]
        assert len(snap["resident"]) <= 1  # one copy of the one model, shared by everyone
    loads = [e for e in samples[-1]["events"] if e["kind"] == "load"]
    assert len(loads) == 1


def test_a_hermes_serve_is_a_remote_model_for_another(tmp_path):
    a = ServeProc(write_small_config(tmp_path), tmp_path / "a.db", "--no-judge", "--port", "0")
    a.start()
    try:
        b_cfg = tmp_path / "b" / "config.toml"
        b_cfg.parent.mkdir()
        text = write_small_config(tmp_path / "b").read_text()
        text += (
            f'\n[models.far]\nurl = "{a.url}"\nremote_model = "smollm2"\n'
            'api_key_env = "GPU_BOX_TOKEN"\n'
        )
        b_cfg.write_text(text)
        b = ServeProc(b_cfg, tmp_path / "b.db", "--no-judge", "--port", "0")
        b.env["GPU_BOX_TOKEN"] = a.token
        b.start()
        try:
            stream = b.openai(tcp=True).chat.completions.create(
                model="far",
                messages=[{"role": "user", "content": "Say hello."}],
                max_tokens=6,
                temperature=0.0,
                stream=True,
            )
            text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
            assert text
            assert "OpenAI far api done" in b.log()
            assert "token smollm2 api done" in a.log()  # B's remote engine, with A's token
        finally:
            b.cleanup()
    finally:
        a.cleanup()


def test_a_chat_turn_outlives_its_client_but_esc_still_stops_it(tmp_path):
    """A chat (priority interactive) whose process goes away mid-turn: the server finishes the
    turn and stores it. Esc (the turn's cancel event) stops it on the server too."""
    import asyncio

    from agents.engine import SamplingParams
    from hermes_tui.server.client import ServerPool, parse_address

    proc = ServeProc(write_small_config(tmp_path, max_tokens=60), tmp_path / "s.db", "--no-judge")
    proc.start()
    story = [{"role": "user", "content": "Tell a very long story about a ship."}]
    params = SamplingParams(max_tokens=60, temperature=0.0)

    async def turn(pool: ServerPool, persona: str, cancel: asyncio.Event | None, leave: str):
        got = 0
        gen = pool.generate(persona, "smollm2", story, params, cancel, "interactive")
        async for _ in gen:
            got += 1
            if got == 4:
                if leave == "esc":
                    cancel.set()
                else:
                    break  # the chat's process goes away (its task is torn down)
        await gen.aclose()
        return got

    async def main() -> None:
        pool = ServerPool(parse_address(f"unix:{proc.socket}", "test"))
        await turn(pool, "coder", None, "hangup")
        await turn(pool, "critic", asyncio.Event(), "esc")
        await pool.close()

    try:
        asyncio.run(main())
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.log().count(" interactive ") < 2:
            time.sleep(0.2)
        db = sqlite3.connect(proc.db)
        rows = db.execute(
            "SELECT s.title, m.status, m.tokens FROM sessions s JOIN messages m "
            "ON m.session_id = s.id WHERE m.role = 'assistant'"
        ).fetchall()
        log = proc.log()
    finally:
        proc.cleanup()
    assert len(rows) == 1  # the Esc'd turn was the client's to record, not the server's
    title, status, tokens = rows[0]
    assert title.endswith("→ smollm2 (finished after the client left)")
    assert status == "done" and tokens > 4
    assert " interactive cancelled " in log


def test_a_turn_through_the_server_hears_whether_it_was_cut_at_max_tokens(tmp_path):
    """The chat's session asks the pool whether an answer stopped at its token limit (then
    its last word is unfinished and not judged). Through a server that is the SSE stream's
    finish_reason: counting pieces is not enough, 24 tokens of Japanese came in 13 pieces."""
    import asyncio

    from agents.engine import SamplingParams
    from agents.pool.pool import GenerationInfo
    from hermes_tui.server.client import ServerPool, parse_address

    proc = ServeProc(write_small_config(tmp_path), tmp_path / "s.db", "--no-judge").start()

    async def ask(pool: ServerPool, text: str, max_tokens: int) -> tuple[int, str]:
        info = GenerationInfo()
        params = SamplingParams(max_tokens=max_tokens, temperature=0.0)
        messages = [{"role": "user", "content": text}]
        pieces = [p async for p in pool.generate("coder", "smollm2", messages, params, info=info)]
        return len(pieces), info.finish_reason

    async def main() -> list[tuple[int, str]]:
        pool = ServerPool(parse_address(f"unix:{proc.socket}", "test"))
        try:
            return [
                await ask(pool, "日本語で挨拶してください。", 24),
                await ask(pool, "Say hi.", 200),
            ]
        finally:
            await pool.close()

    try:
        (cut_pieces, cut), (_, whole) = asyncio.run(main())
    finally:
        proc.cleanup()
    assert cut == "length" and cut_pieces < 24
    assert whole == "stop"
