"""The gateway on ``hermes serve`` (issue #15): a real server process, the official ``openai``
SDK as the client. Broken JSON, broken tool calls, ``rm -rf /`` and loops come from a replay
engine (tests/replay_server.py: a remote OpenAI endpoint streaming recorded pieces), run
through the real pipeline; the prompt-prefix KV cache and tools in the template use the real
model."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
import time
from typing import Any

import openai
import pytest

from tests.conftest import ROOT, write_small_config
from tests.serve_util import ServeProc

SHELL_TOOL = {
    "type": "function",
    "function": {
        "name": "run_shell",
        "description": "Run a shell command",
        "parameters": {
            "type": "object",
            "properties": {"command": {"type": "string"}},
            "required": ["command"],
            "additionalProperties": False,
        },
    },
}


@pytest.fixture(scope="module")
def replay(tmp_path_factory):
    port_file = tmp_path_factory.mktemp("replay") / "port"
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "replay_server.py"), port_file])
    for _ in range(200):
        if port_file.exists() and port_file.read_text():
            break
        time.sleep(0.02)
    yield int(port_file.read_text())
    proc.terminate()
    proc.wait()


@pytest.fixture(scope="module")
def server(tmp_path_factory, replay):
    tmp = tmp_path_factory.mktemp("gateway")
    config = write_small_config(tmp)
    text = (
        config.read_text()
        + f"""
[models.replay]
url = "http://127.0.0.1:{replay}/v1"
remote_model = "replay"
max_concurrency = 4

[personas.planner]
model = "replay"
contract = "json"
temperature = 0.0
max_tokens = 400
system_prompt = "Answer with one JSON object."

[personas.planner.schema]
type = "object"
required = ["answer"]
"""
    )
    config.write_text(text)
    proc = ServeProc(config, tmp / "serve.db", "--no-judge")
    proc.start()
    yield proc
    proc.cleanup()


def hermes(obj: Any) -> dict[str, Any]:
    extra = getattr(obj, "model_extra", None) or {}
    return extra.get("hermes") or {}


def stream(server, **kw) -> dict[str, Any]:
    """Stream one completion; return its text, assembled tool calls, verdicts, end."""
    chunks = list(server.openai().chat.completions.create(stream=True, **kw))
    text, calls, verdicts = "", {}, []
    for c in chunks:
        verdicts += hermes(c).get("verdicts", [])
        if not c.choices:
            continue
        delta = c.choices[0].delta
        text += delta.content or ""
        for tc in delta.tool_calls or []:
            call = calls.setdefault(tc.index, {"id": None, "name": None, "arguments": ""})
            call["id"] = tc.id or call["id"]
            if tc.function is not None:
                call["name"] = tc.function.name or call["name"]
                call["arguments"] += tc.function.arguments or ""
    last = [c for c in chunks if c.choices][-1]
    return {
        "text": text,
        "calls": [calls[i] for i in sorted(calls)],
        "verdicts": verdicts,
        "finish": last.choices[0].finish_reason,
        "end": hermes(last),
    }


def codes(verdicts: list[dict[str, Any]]) -> list[str]:
    return [v["code"] for v in verdicts]


def user(case: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": f"case:{case} please"}]


def test_json_persona_streaming_broken_json_gets_the_verdict_in_band(server) -> None:
    got = stream(server, model="planner", messages=user("json-broken"))
    assert got["text"] == '{"answer": 42,, "more": true}'  # minor: annotated, not stopped
    assert "E_JSON_BROKEN" in codes(got["verdicts"])
    broken = next(v for v in got["verdicts"] if v["code"] == "E_JSON_BROKEN")
    assert broken["span"][0] == len('{"answer": 42,')  # the first impossible character
    assert got["finish"] == "stop" and got["end"]["sentinel"] == "enforce"


def test_a_critical_verdict_ends_the_stream_with_content_filter(server) -> None:
    got = stream(server, model="planner", messages=user("json-unsafe"))
    assert got["finish"] == "content_filter"
    assert got["end"]["code"] == "E_UNSAFE_COMMAND" and "rm -rf /" in got["end"]["detail"]
    # Generation stopped at once: most of the 600 characters after the command never came.
    assert got["text"].count("more text here") < 20


def test_an_answer_cut_by_max_tokens_mid_url_is_not_a_malformed_url(server) -> None:
    """A replay: cut by the token limit, "http://-" is an unfinished word, not a malformed
    URL to correct until it halts (CI's SmolLM2 once spent its two tokens on "https://");
    a finished answer's malformed URL still is one."""
    client = server.openai()
    ask = user("url-cut")
    cut = client.chat.completions.create(model="replay", messages=ask, max_tokens=4)
    assert cut.choices[0].finish_reason == "length"
    assert cut.choices[0].message.content == "See http://-"
    assert hermes(cut)["verdicts"] == []
    whole = client.chat.completions.create(model="replay", messages=ask)
    assert whole.choices[0].finish_reason == "content_filter"
    assert "malformed url: 'http://-x.com/'" in hermes(whole)["detail"]
    got = stream(server, model="replay", messages=ask, max_tokens=4)
    assert got["finish"] == "length" and got["verdicts"] == []


def test_non_streaming_minor_verdict_is_corrected_inside_the_server(server) -> None:
    whole = server.openai().chat.completions.create(model="planner", messages=user("json-broken"))
    assert whole.choices[0].message.content == '{"answer": 42}'
    meta = hermes(whole)
    assert meta["corrections"] == 1 and "E_JSON_BROKEN" in codes(meta["verdicts"])
    assert whole.choices[0].finish_reason == "stop"
    db = sqlite3.connect(server.db)
    hidden = db.execute(
        "SELECT content FROM messages WHERE hidden = 1 ORDER BY id DESC LIMIT 1"
    ).fetchone()
    assert hidden and hidden[0].startswith("The sentinel found problems")


def test_opt_out_per_request(server) -> None:
    off = stream(
        server,
        model="planner",
        messages=user("json-unsafe"),
        extra_body={"hermes": {"sentinel": "off"}},
    )
    assert off["finish"] == "stop" and off["verdicts"] == []
    assert off["text"].count("more text here") == 40
    annotate = stream(
        server,
        model="planner",
        messages=user("json-unsafe"),
        extra_body={"hermes": {"sentinel": "annotate"}},
    )
    assert annotate["finish"] == "stop" and "E_UNSAFE_COMMAND" in codes(annotate["verdicts"])
    with pytest.raises(openai.BadRequestError, match="hermes.sentinel"):
        server.openai().chat.completions.create(
            model="planner", messages=user("text"), extra_body={"hermes": {"sentinel": "x"}}
        )


def test_tool_call_breaking_mid_stream_is_fixed_and_never_delivered_broken(server) -> None:
    got = stream(server, model="replay", messages=user("args-break"), tools=[SHELL_TOOL])
    assert got["text"] == "Checking.\n"
    assert got["calls"] == [
        {"id": got["calls"][0]["id"], "name": "run_shell", "arguments": '{"command": "ls -la"}'}
    ]
    args = next(v for v in got["verdicts"] if v["code"] == "E_TOOL_ARGS")
    assert args["span"][0] == len('{"command": "ls" ')  # flagged at the first impossible byte
    assert got["finish"] == "tool_calls" and got["end"]["corrections"] == 1
    # annotate: the call goes out as the model wrote it, with its verdict.
    raw = stream(
        server,
        model="replay",
        messages=user("args-break"),
        tools=[SHELL_TOOL],
        extra_body={"hermes": {"sentinel": "annotate"}},
    )
    assert raw["calls"][0]["arguments"] == '{"command": "ls" "-la"}'
    assert "E_TOOL_ARGS" in codes(raw["verdicts"])


def test_schema_violating_call_ends_with_content_filter(server) -> None:
    got = stream(server, model="replay", messages=user("schema"), tools=[SHELL_TOOL])
    assert got["calls"] == [] and got["finish"] == "content_filter"
    assert got["end"]["code"] == "E_TOOL_SCHEMA"
    assert "/command" in got["end"]["detail"]
    whole = server.openai().chat.completions.create(
        model="replay", messages=user("schema"), tools=[SHELL_TOOL]
    )
    assert whole.choices[0].finish_reason == "content_filter"
    assert not whole.choices[0].message.tool_calls
    assert hermes(whole)["code"] == "E_TOOL_SCHEMA" and hermes(whole)["corrections"] == 2


def test_rm_rf_root_in_a_command_argument_is_stopped(server) -> None:
    got = stream(server, model="replay", messages=user("rm-rf"), tools=[SHELL_TOOL])
    assert got["calls"] == [] and got["finish"] == "content_filter"
    assert got["end"]["code"] == "E_UNSAFE_COMMAND"


def test_a_loop_of_identical_calls_across_five_requests(server) -> None:
    messages = user("loop")
    outcomes = []
    for _ in range(5):
        whole = server.openai().chat.completions.create(
            model="replay", messages=messages, tools=[SHELL_TOOL]
        )
        choice = whole.choices[0]
        loops = [v for v in hermes(whole)["verdicts"] if v["code"] == "E_TOOL_LOOP"]
        outcomes.append((choice.finish_reason, [v["severity"] for v in loops]))
        calls = choice.message.tool_calls or []
        if not calls:
            break
        messages = [
            *messages,
            {"role": "assistant", "content": None, "tool_calls": [c.model_dump() for c in calls]},
            {"role": "tool", "tool_call_id": calls[0].id, "content": "notes"},
        ]
    assert outcomes == [
        ("tool_calls", []),
        ("tool_calls", []),
        ("tool_calls", ["minor"]),
        ("tool_calls", ["minor"]),
        ("content_filter", ["critical"]),
    ]
    # An exempt tool is never a loop.
    whole = server.openai().chat.completions.create(
        model="replay",
        messages=messages,
        tools=[SHELL_TOOL],
        extra_body={"hermes": {"loop_exempt": ["run_shell"]}},
    )
    assert whole.choices[0].finish_reason == "tool_calls"


def test_bad_tools_are_a_400(server) -> None:
    bad = {"type": "function", "function": {"name": "f", "parameters": {"type": "strnig"}}}
    with pytest.raises(openai.BadRequestError, match="invalid JSON Schema"):
        server.openai().chat.completions.create(model="replay", messages=user("text"), tools=[bad])


def test_real_model_with_tools_answers_through_its_template(server) -> None:
    """SmolLM2's template has no tools: the documented fallback prompt; whatever it answers
    comes back as content or as checked tool calls, never as a broken call."""
    got = stream(
        server,
        model="smollm2",
        messages=[{"role": "user", "content": "List the files in this directory."}],
        tools=[SHELL_TOOL],
        max_tokens=40,
        temperature=0,
    )
    assert got["finish"] in ("stop", "length", "tool_calls", "content_filter")
    import json

    for call in got["calls"]:
        assert isinstance(json.loads(call["arguments"]), dict)


def test_conversation_continued_after_eviction_restores_its_kv(tmp_path) -> None:
    """Two models, a budget that holds one: a conversation on A, a request on B (A is
    evicted, its state saved), then A's conversation continued: restored, not re-prefilled."""
    from agents.models import resolve_model_path
    from agents.pool.pool import ModelPool
    from agents.specs import ModelSpec, PoolSpec

    copy = tmp_path / "other.gguf"
    shutil.copy(resolve_model_path("embedded:smollm2-135m"), copy)
    spec = ModelSpec("a", resolve_model_path("embedded:smollm2-135m"), n_ctx=1024)
    need = ModelPool({"a": spec}, PoolSpec(), seqs_per_model=3).estimate("a")
    config = write_small_config(tmp_path)
    text = config.read_text().replace('memory = "8GiB"', f'memory = "{int(need * 1.6)}B"')
    text = text.replace("n_ctx = 2048", "n_ctx = 1024")
    text += f'\n[models.other]\npath = "{copy}"\nn_ctx = 1024\n'
    config.write_text(text)
    proc = ServeProc(config, tmp_path / "serve.db", "--no-judge").start()
    try:
        client = proc.openai()
        history = [
            {"role": "system", "content": "You are a patient teacher. " * 20},
            {"role": "user", "content": "Name a colour."},
        ]
        first = client.chat.completions.create(
            model="smollm2", messages=history, max_tokens=8, temperature=0
        )
        client.chat.completions.create(
            model="other", messages=[{"role": "user", "content": "hi"}], max_tokens=4
        )
        more = [
            *history,
            {"role": "assistant", "content": first.choices[0].message.content},
            {"role": "user", "content": "Another one?"},
        ]
        client.chat.completions.create(model="smollm2", messages=more, max_tokens=4)
        events = proc.uds_client().get("/hermes/pool").json()["events"]
        kinds = [(e["kind"], e["model"]) for e in events]
        assert ("evict", "smollm2") in kinds and ("save_state", "smollm2") in kinds
        restores = [e for e in events if e["kind"] == "restore_state"]
        assert [e["model"] for e in restores] == ["smollm2"], kinds
        assert "re-prefill" in restores[0]["detail"]  # the measured costs it chose by
    finally:
        proc.cleanup()


def test_api_requests_show_in_hermes_log_with_their_verdicts(server) -> None:
    from click.testing import CliRunner

    from hermes_tui.cli import main

    stream(server, model="replay", messages=user("rm-rf"), tools=[SHELL_TOOL])
    result = CliRunner().invoke(main, ["log", "--mode", "api", "--db", str(server.db), "--json"])
    assert result.exit_code == 0, result.output
    rows = [__import__("json").loads(line) for line in result.output.splitlines()]
    assert rows and {r["mode"] for r in rows} == {"api"}
    assert any(r["critical"] >= 1 for r in rows)  # the rm -rf / call's verdict is stored
    none = CliRunner().invoke(main, ["log", "--mode", "batch", "--db", str(server.db)])
    assert none.exit_code == 0 and "no sessions matching mode=batch" in none.output


def test_a_remote_server_saying_length_is_believed_when_pieces_were_fewer(server) -> None:
    """A replay whose pieces each stand for two tokens: the remote server stops at max_tokens
    after half as many pieces and says "length"; hermes passes that on (counting pieces,
    it said "stop", and the unfinished last word was judged as finished)."""
    client = server.openai()
    ask = user("two-per-piece")
    cut = client.chat.completions.create(model="replay", messages=ask, max_tokens=6)
    assert cut.choices[0].finish_reason == "length"
    assert cut.choices[0].message.content == "こんにちは、元気で"  # 3 pieces, 6 tokens
    whole = client.chat.completions.create(model="replay", messages=ask, max_tokens=400)
    assert whole.choices[0].finish_reason == "stop"


def test_a_verdict_on_the_first_token_is_stored_with_its_message(server) -> None:
    """A replay whose first character breaks the JSON contract: the verdict comes while the
    request's session and message rows are still being inserted, and is stored all the same,
    attached to the answer it is about."""
    got = stream(server, model="planner", messages=user("json-first-char"))
    assert codes(got["verdicts"])[:1] == ["E_JSON_BROKEN"]
    db = sqlite3.connect(server.db)
    try:
        row = db.execute(
            "SELECT v.code, m.role, m.content FROM verdicts v JOIN messages m"
            " ON m.id = v.message_id WHERE v.code = 'E_JSON_BROKEN' AND m.content LIKE 'x{%'"
        ).fetchall()
    finally:
        db.close()
    assert row and row[0][:2] == ("E_JSON_BROKEN", "assistant")


def test_remote_models_get_the_tools_and_their_tool_call_deltas_are_checked(server) -> None:
    # annotated: the echo is text, which enforced tool_choice "required" would not send
    echo = server.openai().chat.completions.create(
        model="replay",
        messages=user("echo-tools"),
        tools=[SHELL_TOOL],
        tool_choice="required",
        extra_body={"hermes": {"sentinel": "annotate"}},
    )
    assert echo.choices[0].message.content == "tools=run_shell choice=required"
    # The remote server answers with tool_calls deltas whose arguments break mid-stream: the
    # break is flagged, the Fix_Syntax turn's call is delivered, the broken one never is.
    got = stream(server, model="replay", messages=user("native-break"), tools=[SHELL_TOOL])
    assert [c["arguments"] for c in got["calls"]] == ['{"command": "ls -la"}']
    args = next(v for v in got["verdicts"] if v["code"] == "E_TOOL_ARGS")
    assert args["span"][0] == len('{"command": "ls" ')
    assert got["finish"] == "tool_calls" and got["end"]["corrections"] == 1


def test_tool_loop_exemptions_from_the_config_and_the_request() -> None:
    from hermes_tui.server.gateway import options_from
    from sentinel.settings import SentinelSettings

    calls = [{"type": "function", "function": {"name": "wait", "arguments": "{}"}}]
    raw = {
        "messages": [{"role": "assistant", "content": None, "tool_calls": calls}] * 4,
        "hermes": {"loop_exempt": ["poll"]},
    }
    opts = options_from(raw, SentinelSettings(tool_loop_exempt=("wait",)))
    assert opts.loop.exempt == {"wait", "poll"} and (opts.loop.minor, opts.loop.critical) == (3, 5)
    assert opts.history_calls == [("wait", "{}")] * 4


SECRETS = ("Hunter2Secret", "AKIAIOSFODNN7EXAMPLE", "ghp_R4nd0mT0k3nV4lu3xYzAbCdEfGh123456789")


def in_clear(text: str) -> list[str]:
    """Any 7 characters of a secret of the replay found in ``text``."""
    return [s for s in SECRETS if any(s[i : i + 7] in text for i in range(len(s) - 6))]


def test_a_secret_in_the_answer_never_reaches_the_client_in_the_clear(server) -> None:
    """A replay (a model writes no password on demand), in 3-character pieces: the deltas
    used to carry the password and the AWS key as they came, and the E_SECRET halt arrived
    after they had left. Now the unfinished word is held back and released redacted."""
    redacted = (
        'Use these:\npassword = "[REDACTED:gen"\naws_access_key_id = [REDACTED:aws-access\nDone.'
    )
    client = server.openai()
    ask = dict(model="replay", messages=user("secret"))
    annotate = {"hermes": {"sentinel": "annotate"}}
    chunks = list(client.chat.completions.create(stream=True, extra_body=annotate, **ask))
    deltas = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert not in_clear("".join(deltas)) and "".join(deltas) == redacted
    assert deltas[0] == "Use "  # normal text is late by one word, not by the whole answer
    assert len(deltas) > 5
    found = [v for c in chunks for v in hermes(c).get("verdicts", [])]
    assert codes(found).count("E_SECRET") == 2
    assert not in_clear(str(found))
    whole = client.chat.completions.create(extra_body=annotate, **ask)
    assert whole.choices[0].message.content == redacted
    # enforce (the default): halted at the password, and nothing of it was sent before
    got = stream(server, **ask)
    assert got["finish"] == "content_filter" and got["end"]["code"] == "E_SECRET"
    assert got["text"].startswith("Use these:\npassword = ") and not in_clear(got["text"])
    halted = client.chat.completions.create(**ask)
    assert halted.choices[0].finish_reason == "content_filter"
    assert not in_clear(halted.choices[0].message.content or "")


def test_a_secret_in_tool_call_arguments_is_not_sent_in_the_clear(server) -> None:
    """A replay: a shell call exporting a GitHub token. Enforced, the call is not delivered
    (E_SECRET); annotated, its streamed arguments arrive redacted, still one JSON object."""
    annotate = {"hermes": {"sentinel": "annotate"}}
    ask = dict(model="replay", messages=user("secret-call"), tools=[SHELL_TOOL])
    got = stream(server, extra_body=annotate, **ask)
    assert got["calls"] and "E_SECRET" in codes(got["verdicts"])
    args = got["calls"][0]["arguments"]
    assert not in_clear(args) and "[REDACTED:github-token]" in args
    assert __import__("json").loads(args)["command"].startswith("export API_TOKEN=[REDACTED")
    whole = server.openai().chat.completions.create(extra_body=annotate, **ask)
    call = whole.choices[0].message.tool_calls[0]
    assert not in_clear(call.function.arguments)
    enforced = stream(server, **ask)
    assert enforced["calls"] == [] and enforced["finish"] == "content_filter"


PEM_PARTS = ("BEGIN", "PRIVATE", "RSA", "MIIEow", "7bq98WBc", "-----")


def test_a_private_key_never_reaches_the_client_not_even_its_begin_line(server) -> None:
    """A replay (3-character pieces) of an answer quoting a private key: its BEGIN line used
    to leave word by word ("-----BEGIN ", "RSA ", "PRIVATE ") before the detector knew the
    block; now the line is held back until it is known, then sent as a marker."""
    client = server.openai()
    annotate = {"hermes": {"sentinel": "annotate"}}
    for extra in (annotate, {}):  # annotated: the whole answer; enforced: halted at the key
        got = stream(server, model="replay", messages=user("pem"), extra_body=extra)
        assert got["text"].startswith("Here is the key:\n")
        assert [p for p in PEM_PARTS if p in got["text"]] == [], got["text"]
        whole = client.chat.completions.create(
            model="replay", messages=user("pem"), extra_body=extra
        )
        content = whole.choices[0].message.content or ""
        assert [p for p in PEM_PARTS if p in content] == [], content
    assert got["finish"] == "content_filter" and got["end"]["code"] == "E_SECRET"
    kept = stream(server, model="replay", messages=user("pem"), extra_body=annotate)
    assert kept["text"].endswith("\nKeep it safe.") and "[REDACTED:pem-private-k" in kept["text"]


def test_the_end_line_of_a_long_private_key_is_not_sent_after_its_marker(server) -> None:
    """A replay of a 12-line key whose END line ends in the chunk holding its last two words
    (a server sending several tokens a chunk), annotated so the whole answer streams. The
    END line's last word used to reach the client in the clear after the marker
    ("****KEY-----"); now the whole block is one marker, streamed and whole."""
    client = server.openai()
    ask = dict(
        model="replay", messages=user("pem-long"), extra_body={"hermes": {"sentinel": "annotate"}}
    )
    got = stream(server, **ask)
    content = client.chat.completions.create(**ask).choices[0].message.content or ""
    for text in (got["text"], content):
        assert text.startswith("Here is the key:\n[REDACTED:pem-private-k"), text
        assert text.endswith("*\nKeep it safe.") and [p for p in PEM_PARTS if p in text] == []
        assert "KEY" not in text and "END" not in text, text


@pytest.mark.parametrize(
    ("case", "max_tokens", "clear"),
    [
        ("cut-key", 12, ("sk-proj", "R4nd0m")),  # "...to sk-proj-R4nd0m"
        ("pem", 12, ("-----BEGIN", "RSA PR")),  # "...key:\n-----BEGIN RSA PR"
        ("secret", 9, ("Hun",)),  # "...password = \"Hun"
    ],
)
def test_a_secret_cut_short_by_max_tokens_is_not_sent_in_the_clear(
    server, case: str, max_tokens: int, clear: tuple[str, ...]
) -> None:
    """A replay cut by max_tokens inside a secret: the detector does not know the unfinished
    value ("sk-proj-R4nd0m" is no key yet) and the held-back word used to be flushed in the
    clear when the stream ended. Now it is sent as a marker, streamed and whole."""
    ask = dict(model="replay", messages=user(case), max_tokens=max_tokens)
    got = stream(server, **ask)
    assert got["finish"] == "length"
    assert [c for c in clear if c in got["text"]] == [] and "[RE" in got["text"], got["text"]
    whole = server.openai().chat.completions.create(**ask)
    assert whole.choices[0].finish_reason == "length"
    content = whole.choices[0].message.content or ""
    assert [c for c in clear if c in content] == [] and content == got["text"]


READ_TOOL = {
    "type": "function",
    "function": {
        "name": "read_file",
        "description": "Read a file",
        "parameters": {"type": "object", "properties": {"path": {"type": "string"}}},
    },
}


def test_tool_choice_required_is_enforced_text_gets_a_hidden_turn_then_content_filter(
    server,
) -> None:
    """A replay: tool_choice "required" and the model answered text. The client used to get
    that text as the answer (finish_reason "stop"). Now it is a broken tool-call contract:
    the hidden turn asks for the call; when none comes, content_filter and E_TOOL_REQUIRED,
    stored with the answer."""
    client = server.openai()
    ask = dict(model="replay", tools=[SHELL_TOOL], tool_choice="required")
    got = stream(server, messages=user("text-then-call"), **ask)
    assert got["finish"] == "tool_calls" and got["end"]["corrections"] == 1
    assert [c["arguments"] for c in got["calls"]] == ['{"command": "ls"}']
    assert "E_TOOL_REQUIRED" in codes(got["verdicts"])
    whole = client.chat.completions.create(messages=user("text-then-call"), **ask)
    assert whole.choices[0].finish_reason == "tool_calls"
    assert whole.choices[0].message.tool_calls[0].function.name == "run_shell"
    never = stream(server, messages=user("text-only"), **ask)
    assert never["finish"] == "content_filter" and never["calls"] == []
    assert never["end"]["code"] == "E_TOOL_REQUIRED" and never["end"]["corrections"] == 2
    assert "tool_choice 'required'" in never["end"]["detail"]
    refused = client.chat.completions.create(messages=user("text-only"), **ask)
    assert refused.choices[0].finish_reason == "content_filter"
    assert hermes(refused)["code"] == "E_TOOL_REQUIRED" and hermes(refused)["corrections"] == 2
    # a named function: no call is the same breach, a call of another tool is an unknown one
    named = {"type": "function", "function": {"name": "run_shell"}}
    got = stream(server, messages=user("text-only"), **{**ask, "tool_choice": named})
    assert got["finish"] == "content_filter" and got["end"]["code"] == "E_TOOL_REQUIRED"
    other = {"type": "function", "function": {"name": "read_file"}}
    tools = [SHELL_TOOL, READ_TOOL]
    got = stream(server, model="replay", messages=user("good-call"), tools=tools, tool_choice=other)
    assert got["finish"] == "content_filter" and got["calls"] == []
    assert got["end"]["code"] == "E_TOOL_UNKNOWN"
    # tool_choice "auto" (or none given): text is a fine answer
    auto = stream(server, model="replay", messages=user("text-only"), tools=[SHELL_TOOL])
    assert auto["finish"] == "stop" and auto["text"] == "I would list the files."
    db = sqlite3.connect(server.db)
    try:
        rows = db.execute(
            "SELECT status, error_code FROM messages WHERE error_code = 'E_TOOL_REQUIRED'"
        ).fetchall()
    finally:
        db.close()
    assert rows and set(rows) == {("halted", "E_TOOL_REQUIRED")} and len(rows) >= 3


def test_tool_choice_required_sends_no_text_until_a_call_starts(server) -> None:
    """A replay: tool_choice "required" and the model wrote text, no call. That text used to
    stream to the client ("I would list the files.") before the E_TOOL_REQUIRED end: a chat
    client showed an answer the contract refused. Now content waits until a call starts: an
    answer without one sends none (streamed or whole), text before a call still comes first."""
    client = server.openai()
    ask = dict(model="replay", tools=[SHELL_TOOL], tool_choice="required")
    named = {**ask, "tool_choice": {"type": "function", "function": {"name": "run_shell"}}}
    for how in (ask, named):
        chunks = list(
            client.chat.completions.create(stream=True, messages=user("text-only"), **how)
        )
        sent = [c.choices[0].delta.content for c in chunks if c.choices]
        assert [s for s in sent if s] == []
        end = chunks[-1]
        assert end.choices[0].finish_reason == "content_filter"
        assert hermes(end)["code"] == "E_TOOL_REQUIRED"
        whole = client.chat.completions.create(messages=user("text-only"), **how)
        assert whole.choices[0].finish_reason == "content_filter"
        assert whole.choices[0].message.content == ""
    # the hidden turn brings the call: the refused first answer's text is no part of the answer
    fixed = stream(server, messages=user("text-then-call"), **ask)
    assert fixed["finish"] == "tool_calls" and fixed["text"] == ""
    assert [c["arguments"] for c in fixed["calls"]] == ['{"command": "ls"}']
    # text written before a call (broken, fixed by the hidden turn) is sent, before the call
    chunks = list(client.chat.completions.create(stream=True, messages=user("args-break"), **ask))
    parts = [c.choices[0].delta for c in chunks if c.choices]
    kinds = ["text" if d.content else "call" for d in parts if d.content or d.tool_calls]
    assert "".join(d.content or "" for d in parts) == "Checking.\n"
    assert kinds == ["text", "call", "call"] and chunks[-1].choices[0].finish_reason == "tool_calls"
    # the record keeps what the model wrote (hermes log shows the refused answer)
    db = sqlite3.connect(server.db)
    try:
        stored = db.execute(
            "SELECT content FROM messages WHERE error_code = 'E_TOOL_REQUIRED'"
        ).fetchall()
    finally:
        db.close()
    assert ("I would list the files.",) in stored
