"""What leaves the process: secrets hidden and controls neutralised at every exit point
(screen, clipboard, batch JSONL, exports, `hermes log`), engines' invalid Unicode repaired,
and `--out` to anything writable.

The model output here is a replay (a real HTTP server process sending recorded server-sent
events, `tests/sse_replay.py`): the 135M model cannot be made to print a GitHub token, a lone
surrogate or a C1 control on demand. Everything after it is real: `hermes batch` and
`hermes log` as subprocesses, the pool, session, sentinel and store.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from hermes_tui import outbound
from hermes_tui.redact import find_secrets, redact
from tests.conftest import ROOT, hermes_env, write_small_config

TOKEN = "ghp_" + "Zq8vX2mPn4Rt7Kw1Ls5Hj9Dc3Fb6Gy0Ua2Ei"  # the GitHub token shape (40 chars)
AWS = "AKIA" + "QX7ZP2LMN4RT6WVB"
HOSTILE = "csi \u009b2J bidi \u202egnp.exe rtl esc \x1b]0;title\x07 end"


class Replay:
    """``python -m tests.sse_replay``: a server process that replays recorded SSE streams."""

    def __init__(self, tmp_path: Path, recordings: list[list[str]], pace: float = 0.0):
        file = tmp_path / f"recordings-{id(self)}.json"
        file.write_text(json.dumps(recordings))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.sse_replay", str(file), str(pace)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env=hermes_env(),
        )
        self.port = int(self.proc.stdout.readline())

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


def lit(text: str) -> str:
    """A JSON string literal as a server sends it (non-ASCII as \\u escapes)."""
    return json.dumps(text)


def replay_config(tmp_path: Path, port: int, redact: bool = True) -> Path:
    path = write_small_config(tmp_path, max_tokens=64)
    text = path.read_text()
    text = text.replace(
        'path = "embedded:smollm2-135m"',
        f'url = "http://127.0.0.1:{port}/v1"\nremote_model = "replay"',
    )
    text = text.replace('contract = "json"', 'contract = "text"')
    text = text.replace('contract = "code"', 'contract = "text"')
    if not redact:
        text = text.replace("redact_secrets = true", "redact_secrets = false")
    path.write_text(text)
    return path


def hermes(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hermes_tui.cli", *args],
        capture_output=True,
        env=hermes_env(),
        cwd=kw.pop("cwd", ROOT),
        timeout=kw.pop("timeout", 180),
        stdin=subprocess.DEVNULL,
        **kw,
    )


def script(tmp_path: Path, *texts: str) -> Path:
    path = tmp_path / "s.jsonl"
    path.write_text("".join(json.dumps({"to": "critic", "text": t}) + "\n" for t in texts))
    return path


@pytest.fixture
def leaky(tmp_path):
    """A model that prints a GitHub token split over three events, an AWS key id, and
    terminal controls."""
    pieces = ["Your key: ", TOKEN[:10], TOKEN[10:25], TOKEN[25:], " and ", AWS, ". ", HOSTILE]
    server = Replay(tmp_path, [[lit(p) for p in pieces]])
    yield server
    server.stop()


def _no_raw_controls(data: bytes) -> None:
    text = data.decode("utf-8")
    for ch in ("\x1b", "\x9b", "\u202e", "\x07"):
        assert ch not in text, f"raw {ch!r} in the output"


def test_batch_jsonl_hides_secrets_escapes_controls_and_is_0600(tmp_path, leaky):
    config = replay_config(tmp_path, leaky.port)
    # The secret is critical, and a halt may land before the controls after it arrive: made
    # minor here, so the whole answer (secrets and controls) always reaches the JSONL.
    config.write_text(config.read_text() + '\n[sentinel.severity]\nE_SECRET = "minor"\n')
    out = tmp_path / "events.jsonl"
    result = hermes(
        "batch",
        str(script(tmp_path, "hi")),
        "--config",
        str(config),
        "--db",
        str(tmp_path / "h.db"),
        "--no-judge",
        "--out",
        str(out),
    )
    assert result.returncode in (0, 1), result.stderr
    data = out.read_bytes()
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert TOKEN.encode() not in data and AWS.encode() not in data
    assert TOKEN[4:14].encode() not in data  # not even a part of it
    _no_raw_controls(data)
    message = next(e for e in map(json.loads, data.splitlines()) if e["event"] == "message")
    assert "[REDACTED" in message["text"]
    assert "\u009b2J" in message["text"] and "\u202e" in message["text"]  # kept, escaped


def test_log_and_exports_hide_what_the_database_kept(tmp_path, leaky):
    """A database written with redact_secrets = false (or before the detector knew a shape)
    holds the key; every `hermes log` output under a redacting config hides it."""
    db = tmp_path / "h.db"
    plain = replay_config(tmp_path, leaky.port, redact=False)
    # As above: the secret made minor, so a halt cannot land before the controls after it
    # arrive (CI saw the answer end at the AWS key once).
    plain.write_text(plain.read_text() + '\n[sentinel.severity]\nE_SECRET = "minor"\n')
    result = hermes(
        "batch", str(script(tmp_path, "hi")), "--config", str(plain), "--db", str(db), "--no-judge"
    )
    assert result.returncode in (0, 1), result.stderr
    assert TOKEN.encode() in result.stdout  # redaction off: the user asked for it
    redacting = tmp_path / "redacting"
    redacting.mkdir()
    config = replay_config(redacting, leaky.port)
    sid = json.loads(result.stdout.splitlines()[0])["session"]
    for args in (
        ["log", "show", str(sid)],
        ["log", "show", str(sid), "--json"],
        ["log", "search", "key"],
        ["log", "search", "key", "--json"],
        ["log", "--json"],
    ):
        shown = hermes(*args, "--config", str(config), "--db", str(db))
        assert shown.returncode == 0, (args, shown.stderr)
        assert TOKEN[4:14].encode() not in shown.stdout, args
        assert AWS.encode() not in shown.stdout, args
        _no_raw_controls(shown.stdout)
    exported = json.loads(hermes("log", "show", str(sid), "--json", "--db", str(db)).stdout)
    answer = next(m for m in exported["messages"] if m["role"] == "assistant")
    assert "\u202e" in answer["content"]  # JSON keeps the character, escaped


def test_dumps_round_trips_what_it_escapes():
    value = {"text": HOSTILE + " \u2028 \u0085", "n": 3}
    dumped = outbound.dumps(value)
    assert all(ch not in dumped for ch in "\x9b\u202e\u2028\x85\x1b")
    assert json.loads(dumped) == value


def _emoji_script(tmp_path: Path) -> Path:
    return script(tmp_path, "first", "second")


def test_lone_and_split_surrogates_from_a_server_are_repaired(tmp_path):
    # Raw JSON literals: the emoji's two halves in two events, then a lone low surrogate.
    server = Replay(tmp_path, [['"A\\ud83d"', '"\\ude00 ok"', '" lone \\udc00 end"']])
    try:
        config = replay_config(tmp_path, server.port)
        result = hermes(
            "batch",
            str(_emoji_script(tmp_path)),
            "--config",
            str(config),
            "--db",
            str(tmp_path / "u.db"),
            "--no-judge",
        )
    finally:
        server.stop()
    assert result.returncode in (0, 1), result.stderr
    messages = [e for e in map(json.loads, result.stdout.splitlines()) if e["event"] == "message"]
    assert len(messages) == 2  # the script's later turn ran too
    assert all(m["status"] != "error" for m in messages), messages
    assert messages[0]["text"] == "A\U0001f600 ok lone \ufffd end"


@pytest.fixture
def quiet(tmp_path):
    server = Replay(tmp_path, [[lit("Fine, thanks.")]])
    yield replay_config(tmp_path, server.port)
    server.stop()


def _batch_to(tmp_path: Path, config: Path, out: str, **kw) -> subprocess.CompletedProcess:
    return hermes(
        "batch",
        str(script(tmp_path, "hi")),
        "--config",
        str(config),
        "--db",
        str(tmp_path / "o.db"),
        "--no-judge",
        "--out",
        out,
        **kw,
    )


def test_out_dev_null_and_dev_stdout_into_a_pipe(tmp_path, quiet):
    result = _batch_to(tmp_path, quiet, os.devnull)
    assert result.returncode == 0, result.stderr
    assert result.stderr == b""
    result = _batch_to(tmp_path, quiet, "/dev/stdout")  # stdout is a pipe here
    assert result.returncode == 0, result.stderr
    assert b'"event": "message"' in result.stdout


def test_out_a_fifo_waits_for_its_reader_and_creates_nothing_before(tmp_path, quiet):
    fifo = tmp_path / "events.fifo"
    os.mkfifo(fifo)
    db = tmp_path / "o.db"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hermes_tui.cli",
            "batch",
            str(script(tmp_path, "hi")),
            "--config",
            str(quiet),
            "--db",
            str(db),
            "--no-judge",
            "--out",
            str(fifo),
        ],
        env=hermes_env(),
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(3)  # waiting for a reader ...
        assert not db.exists()  # ... with nothing created in the database
        got: list[bytes] = []
        reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
        reader.start()
        assert proc.wait(120) == 0, proc.stderr.read()
        reader.join(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert b'"event": "message"' in got[0]


# -- the chat screen, the clipboard and the review export (Textual's Pilot) ----------------------
async def test_the_screen_and_the_clipboard_never_show_a_streamed_key(small_config, tmp_path):
    from hermes_tui.app import HermesApp
    from hermes_tui.config import load_config
    from hermes_tui.widgets.markdown_body import MarkdownBody
    from tests.replay import ReplayEngine, replay_config
    from tests.test_tui import replay_runtime, send, started, until

    # A replay: the key arrives in four pieces, paced, so the screen paints between them.
    pieces = ["Use ", "this: ", TOKEN[:6], TOKEN[6:20], TOKEN[20:], " to log in.\n", HOSTILE]
    engine = ReplayEngine([pieces], tokens_per_s=20)
    config = replay_config(load_config(small_config))
    app = HermesApp(config, runtime_factory=replay_runtime(config, tmp_path / "c.db", engine))
    shown: list[str] = []
    copied: list[str] = []
    original_append, original_update = MarkdownBody.append, MarkdownBody.update

    def append(self, piece):
        shown.append(piece)
        return original_append(self, piece)

    def update(self, text):
        shown.append(text)
        return original_update(self, text)

    async with app.run_test(size=(100, 30)) as pilot:
        MarkdownBody.append, MarkdownBody.update = append, update
        try:
            app.copy_to_clipboard = copied.append
            chat = await started(pilot)
            await send(pilot, "@critic what is my key")
            await until(pilot, lambda: chat.idle and len(shown) > 2, what="turn end")
            await pilot.press("ctrl+y")
            await pilot.pause(0.1)
        finally:
            MarkdownBody.append, MarkdownBody.update = original_append, original_update
        screen_text = "".join(shown)
        assert "[REDACTED" in screen_text
        for part in (TOKEN[4:12], TOKEN[12:20], TOKEN[20:28], TOKEN[28:]):
            assert part not in screen_text, "a piece of the key was painted"
        assert copied and "[REDACTED" in copied[0] and TOKEN[4:12] not in copied[0]
        assert all(ch not in copied[0] for ch in "\x1b\x9b\u202e")


async def test_review_exports_hide_secrets_and_controls(tmp_path):
    from hermes_tui.app import HermesApp
    from hermes_tui.screens.session_view import SessionScreen
    from hermes_tui.store import Store
    from tests.test_tui import until

    db = tmp_path / "r.db"
    store = await Store.open(db)  # stored raw: redaction was off, or the shape was new
    sid = await store.create_session("chat", title="leaky \x1b]0;t\x07", personas=["coder"])
    await store.add_message(sid, "coder", "assistant", f"key {TOKEN}\n{HOSTILE}\n")
    await store.flush()
    await store.close()
    app = HermesApp(None, db_path=db, review=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(0.2)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, SessionScreen), what="session")
        session = app.screen
        session.export_dir = tmp_path
        await session.action_export("markdown")
        await session.action_export("json")
    md = (tmp_path / f"hermes-session-{sid}.md").read_bytes()
    js = (tmp_path / f"hermes-session-{sid}.json").read_bytes()
    for data in (md, js):
        assert TOKEN[4:14].encode() not in data
        _no_raw_controls(data)
    assert "\u202e" in json.loads(js)["messages"][0]["content"]


@pytest.mark.skipif(os.geteuid() != 0, reason="mounts a small tmpfs (needs root)")
def test_a_disk_that_fills_is_one_line_and_keeps_what_was_written(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(disk)]).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        # A replay: a long answer (1 MB, no loop to halt it) fills the 512 KiB disk.
        pieces = [
            lit(f"{i} " + " ".join(f"w{i}x{j}" for j in range(40)) + "\n") for i in range(6000)
        ]
        server = Replay(tmp_path, [pieces])
        try:
            config = replay_config(tmp_path, server.port)
            db = disk / "h.db"
            result = hermes(
                "batch",
                str(script(tmp_path, "hi", "again")),
                "--config",
                str(config),
                "--db",
                str(db),
                "--no-judge",
                "--out",
                os.devnull,
            )
        finally:
            server.stop()
        assert result.returncode == 3
        assert result.stderr.decode() == (
            f"hermes: cannot write database {db} (database or disk is full); "
            "free disk space and retry\n"
        )
        shown = hermes("log", "show", "1", "--db", str(db))  # the session is still readable
        assert shown.returncode == 0 and b"@critic hi" in shown.stdout, shown.stderr
    finally:
        subprocess.run(["umount", "-l", str(disk)])


PEM = (
    "-----BEGIN RSA PRIVATE KEY-----\n"
    + "\n".join("MIIEpAIBAAKCAQEA" * 4 for _ in range(30))
    + "\n-----END RSA PRIVATE KEY-----\n"
)


def test_a_streamed_message_is_redacted_as_the_whole_text_would_be():
    """The recorder's StreamScrubber re-reads only the end of a growing message; whatever the
    cuts, the checkpoint it stores hides exactly what redacting the whole text hides."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from hermes_tui.redact import redact

    parts = st.sampled_from(
        [
            f" {TOKEN} ",
            f" {AWS} ",
            "word ",
            "x" * 600,
            "\n",
            PEM,
            PEM[:900],
            'pw = "a1B2c3D4e5F6g7H8i9" ',
        ]
    )

    @settings(max_examples=150, deadline=None)
    @given(st.lists(parts, min_size=1, max_size=20), st.lists(st.integers(1, 300), min_size=1))
    def check(pieces, steps):
        text = "".join(pieces)
        scrub, pos, out = outbound.StreamScrubber(), 0, ""
        i = 0
        while pos < len(text):  # to the end, whatever the steps (1 char at a time included)
            pos = min(len(text), pos + steps[i % len(steps)])
            out = scrub.update(text[:pos])
            i += 1
        assert out == redact(text, keep_offsets=True)

    check()


def test_a_flood_is_stored_bounded_with_one_verdict_per_kind(tmp_path):
    """A replayed 2 MB answer in 64 KB events (issue #12 item 11: halted, yet 3.3 million
    characters and 6,681 E_LOOP verdicts were stored for that one message)."""
    from hermes_tui.outbound import MAX_STORED_CHARS

    # ~64 KB events of words that never repeat a line (nothing for the loop check to halt)
    chunks = [" ".join(f"c{i}w{j}" for j in range(8000)) + "\n" for i in range(30)]
    server = Replay(tmp_path, [[lit(c) for c in chunks]])
    try:
        config = replay_config(tmp_path, server.port)
        db = tmp_path / "f.db"
        out = tmp_path / "f.jsonl"
        result = hermes(
            "batch",
            str(script(tmp_path, "hi")),
            "--config",
            str(config),
            "--db",
            str(db),
            "--no-judge",
            "--out",
            str(out),
        )
    finally:
        server.stop()
    assert result.returncode in (0, 1), result.stderr
    import sqlite3

    con = sqlite3.connect(db)
    (size,) = con.execute("SELECT max(length(content)) FROM messages").fetchone()
    assert size <= MAX_STORED_CHARS + 100
    rows = con.execute("SELECT message_id, check_name, code, severity FROM verdicts").fetchall()
    assert rows and len(rows) == len(set(rows)), rows[:20]  # per message, one of each kind
    jsonl = [json.loads(x) for x in out.read_text().splitlines()]
    kinds = [
        (e["turn"], e["check"], e["code"], e["severity"]) for e in jsonl if e["event"] == "verdict"
    ]
    assert len(kinds) == len(set(kinds))


def test_a_message_past_the_stored_limit_is_redacted_and_cut_as_it_grows():
    """The stored form of a growing answer, checkpoint by checkpoint, is the redacted first
    MAX_STORED_CHARS plus a note, exactly as if the whole text were redacted at the end (the
    redactor is shown only the stored part, so it keeps reading only what was added)."""
    from hermes_tui.outbound import MAX_STORED_CHARS, StreamScrubber, bounded
    from hermes_tui.redact import redact

    key = "ghp_" + "Zq7Lm2Xv9Rt4Wn8Yb3Kd6Hs1Jf5Pc0Ea2Ugh"
    filler = "word " * (MAX_STORED_CHARS // 5 - 20)
    text = filler + f"token {key} end " + "more " * 5000
    scrub = StreamScrubber()
    for cut in range(len(filler) - 50, len(text), 4096):
        stored = bounded(text[:cut], scrub)
    stored = bounded(text, scrub)
    assert key not in stored and "[REDACTED" in stored[MAX_STORED_CHARS - 400 :]
    assert stored == bounded(redact(text, keep_offsets=True))
    assert stored.endswith(f"[… {len(text) - MAX_STORED_CHARS} more characters not stored]")


_STREAMED = [
    'db_password = "correct horse battery staple"\nnext line',
    "passphrase: hunter two cats\nok",
    "PGPASSWORD=s3cr3tpass psql -h db\n",
    "export GITHUB_TOKEN=ghp_R4nd0mT0k3nV4lu3xYzAbCdEfGh123456789 \n",
    'Use these:\npassword = "Hunter2Secret"\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\nDone.',
    "Your token is ghp_R4nd0mT0k3nV4lu3xYzAbCdEfGh123456789. Again: "
    "ghp_R4nd0mT0k3nV4lu3xYzAbCdEfGh123456789",
    '{"password": "Hunter2Secret", "user": "bob"}',
    "export AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\necho ok",
    "key:\n-----BEGIN RSA PRIVATE KEY-----\n"
    + "MIIEowIBAAKCAQEA7bq98WBcD0ZzQqs3p5t9aN8xQ1mV2yZ4kL6rT0uH3wJ5sF8g\n" * 40
    + "-----END RSA PRIVATE KEY-----\nafter the key",
]


@pytest.mark.parametrize("text", _STREAMED)
def test_held_back_scrubber_never_releases_a_secret_the_whole_text_hides(text: str) -> None:
    """Streamed in pieces of 1 to 20 characters, what is released (and only that) reaches
    the client: nothing of a secret that redacting the whole answer hides gets out, however
    the text is split, and the length is the answer's (verdict spans stay true). A private
    key's BEGIN line included: it used to be sent before the block was known to be a key; and
    its END line: after a body longer than the context, its last word ("KEY-----") was sent
    in the clear when the line ended in the same piece as the word before it."""
    import random

    from hermes_tui.outbound import HeldBackScrubber

    whole = redact(text, keep_offsets=True)
    hidden = [text[s:e] for s, e, _ in find_secrets(text)]
    assert hidden
    rng = random.Random(7)
    for _ in range(30):
        scrub, sent, i = HeldBackScrubber(), [], 0
        while i < len(text):
            n = rng.choice([1, 2, 3, 5, 8, 20, 64])
            sent.append(scrub.feed(text[i : i + n]))
            i += n
        sent.append(scrub.flush())
        got = "".join(sent)
        assert len(got) == len(text)
        for secret in hidden:
            for k in range(len(secret) - 7):
                part = secret[k : k + 8]
                assert part not in got or part in whole, (secret, got)


@pytest.mark.parametrize(
    ("said", "secret", "kind"),
    [
        ("Your token is ", "ghp_R4nd0mT0k3nV4lu3xYzAbCdEfGh123456789", "github-token"),
        ("key:\n", "-----BEGIN RSA PRIVATE KEY-----", "pem-private-key"),
        ("Your token is ", "ghp_R4nd0mT0k3nV4lu3", "unfinished-secret"),  # max_tokens cut it
        ("key:\n", "-----BEGIN RSA PRIV", "unfinished-secret"),
        ('password = "', "Hun", "unfinished-secret"),
    ],
)
def test_a_secret_that_ends_the_answer_is_named_as_found_and_a_cut_one_as_unfinished(
    said: str, secret: str, kind: str
) -> None:
    """A secret the detector knows, right at the end (a stop sequence came after it), is sent
    as what it is, streamed and whole: it was sent as ``[REDACTED:unfinished-secret]``
    although the E_SECRET verdict beside it names a GitHub token. One cut short is hidden as
    unfinished: the detector cannot name it."""
    from hermes_tui.outbound import HeldBackScrubber, hide_unfinished
    from hermes_tui.redact import marker

    text = said + secret
    scrub = HeldBackScrubber()
    sent = "".join(scrub.feed(text[i : i + 3]) for i in range(0, len(text), 3)) + scrub.flush()
    assert hide_unfinished(redact(text, keep_offsets=True)) == said + marker(kind, len(secret))
    # streamed, an open key block's marker comes in slices: its name is what a user reads
    name = marker(kind, len(secret))[:22]
    assert sent.startswith(said + name) and len(sent) == len(text), sent


@pytest.mark.parametrize("lines", [3, 12, 40])
def test_the_end_line_of_a_streamed_key_is_hidden_however_long_the_key(lines: int) -> None:
    """A key's END line ending in the piece that holds its last two words (a server sending
    several tokens a chunk): after a body longer than the 512 characters kept as context, its
    last word used to be sent in the clear after the marker ("****KEY-----")."""
    from hermes_tui.outbound import HeldBackScrubber

    body = "MIIEowIBAAKCAQEA7bq98WBcD0ZzQqs3p5t9aN8xQ1mV2yZ4kL6rT0uH3wJ5sF8g\n"
    pieces = ["key:\n-----BEGIN RSA PRIVATE KEY-----\n", *[body] * lines]
    pieces += ["-----END RSA", " PRIVATE KEY-----\n", "Keep it safe."]
    scrub = HeldBackScrubber()
    sent = "".join(scrub.feed(p) for p in pieces) + scrub.flush()
    assert sent.startswith("key:\n[REDACTED:pem-private-k") and sent.endswith("*\nKeep it safe.")
    assert len(sent) == len("".join(pieces)) and "KEY" not in sent and "END" not in sent


def test_held_back_scrubber_holds_one_word_and_at_most_the_longest_secret() -> None:
    from hermes_tui.outbound import OFF_LOOP_CHARS, HeldBackScrubber
    from sentinel.secrets import MAX_SECRET_CHARS

    scrub = HeldBackScrubber()
    assert scrub.feed("Hello") == ""  # could still become a secret
    assert scrub.feed(" ") == ""  # what follows it may decide
    assert scrub.feed("wor") == "Hello "
    assert scrub.feed("ld\nThe") == "world\n"
    assert scrub.feed(" password is") == ""  # a line naming a password: held to its end
    assert scrub.feed(" correct horse battery staple\nok") == (
        "The password is correct horse battery staple\n"
    )
    scrub.flush()
    blob = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY" * 40  # no whitespace, 1,280 characters
    out = scrub.feed(blob)
    assert out == blob[: len(blob) - MAX_SECRET_CHARS]  # held: at most the longest secret
    assert scrub.flush() == blob[len(blob) - MAX_SECRET_CHARS :]
    assert scrub.costly("x" * (OFF_LOOP_CHARS + 1)) and not scrub.costly("word ")
    off = HeldBackScrubber(enabled=False)
    assert off.feed("ghp_R4nd0mT0k3nV4lu3xYzAbCdEfGh123456789") == (
        "ghp_R4nd0mT0k3nV4lu3xYzAbCdEfGh123456789"
    )
    halted = HeldBackScrubber()
    assert halted.feed("token: ghp_R4nd0mT0k3nV4") == "token: "
    halted.drop()
    assert halted.flush() == ""
