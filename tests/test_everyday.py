"""Everyday use: continue a session, cancel @all, type with the transcript focused, review
jumps, and a terminal that is missing or goes away. Real session, sentinel, store and processes;
the model is a replay (``tests.replay``) where a turn must be a known text or last long."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import pty
import select
import signal
import sqlite3
import subprocess
import sys
import termios
import time
from pathlib import Path

from textual import events
from textual.widgets import DataTable

from hermes_tui import log_view
from hermes_tui.app import HermesApp
from hermes_tui.config import load_config
from hermes_tui.resume import rebuild, restore
from hermes_tui.runtime import Runtime
from hermes_tui.screens.review import ReviewScreen
from hermes_tui.screens.session_view import SessionScreen
from hermes_tui.store import Store
from hermes_tui.widgets.marks import MarkedText
from hermes_tui.widgets.message import MessageView
from hermes_tui.widgets.transcript import Transcript
from sentinel.verdict import Verdict
from tests.conftest import ROOT, hermes_env, write_small_config
from tests.replay import BROKEN_JSON, FIXED_JSON, ReplayEngine, install, replay_config
from tests.test_tui import send, started, until

CODE = ["```python\n", "from collections import deque\n", "q = deque()\n", "```\n"]
CODE2 = ["```python\n", "x = 1\n", "```\n"]


def replay_app(config, db: Path, engine: ReplayEngine, **kwargs) -> HermesApp:
    async def start(listener):
        runtime = await Runtime.start(config, db_path=db, listener=listener, judge=False)
        install(runtime, engine)
        return runtime

    return HermesApp(config, db_path=db, runtime_factory=start, **kwargs)


def rows(db: Path, sql: str) -> list[tuple]:
    con = sqlite3.connect(db)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


# -- continue / resume ------------------------------------------------------------------------
async def test_a_continued_session_shows_its_messages_and_each_persona_remembers(tmp_path):
    config = replay_config(load_config(write_small_config(tmp_path)))
    db = tmp_path / "c.db"
    engine = ReplayEngine([BROKEN_JSON, FIXED_JSON, CODE])
    app = replay_app(config, db, engine)
    async with app.run_test(size=(100, 30)) as pilot:
        chat = await started(pilot)
        assert rows(db, "SELECT count(*) FROM sessions") == [(0,)]  # nothing stored at launch
        await send(pilot, "@architect plan the release")
        await until(pilot, lambda: chat.idle and engine.calls == 2, what="answer + correction")
        await send(pilot, "@coder how do I make a queue?")
        await until(pilot, lambda: chat.idle and engine.calls == 3, what="coder")
    ((sid, title, personas),) = rows(db, "SELECT id, title, personas FROM sessions")
    assert title == "plan the release"  # titled from the first message
    assert json.loads(personas) == ["architect", "coder"]  # who spoke, not all three

    # A new hermes continues it: the messages are back, the correction hidden, and what each
    # persona is sent next starts with its own history.
    seen: list[list[dict]] = []

    class Spy(ReplayEngine):
        async def stream(self, messages, params, cancel=None):
            seen.append(list(messages))
            async for piece in super().stream(messages, params, cancel):
                yield piece

    spy = Spy([FIXED_JSON])
    app = replay_app(config, db, spy, resume=sid)
    async with app.run_test(size=(100, 30)) as pilot:
        chat = await started(pilot)
        transcript = chat.query_one(Transcript)
        prompt = chat.query_one("#prompt")
        await until(
            pilot,
            lambda: len(transcript.records) >= 6 and prompt.value,
            what="restored messages and the prompt addressed",
        )
        roles = [(r.role, r.persona) for r in transcript.records]
        assert roles == [
            ("user", "you"),
            ("assistant", "architect"),
            ("sentinel", "sentinel"),
            ("assistant", "architect"),
            ("user", "you"),
            ("assistant", "coder"),
        ]
        first = transcript.records[1]
        assert [v.code for v in first.verdicts] == ["E_JSON_BROKEN"]
        hidden = next(v for v in transcript.query(MessageView) if v.record.role == "sentinel")
        assert hidden.region.height == 0  # the correction request stays hidden
        prompt = chat.query_one("#prompt")
        assert prompt.value == "@coder "  # addressed like the last message
        assert prompt.has_focus  # ready to type into, not lost among the restored messages
        await pilot.press(*"@critic")  # a mention typed first replaces the offered one
        assert prompt.value == "@critic"
        prompt.prefill("@coder ")
        await pilot.press(*"hi")  # anything else is added after it
        assert prompt.value == "@coder hi"
        assert f"session {sid}" in str(chat.query_one("#status").render())
        await send(pilot, "@architect when do we ship?")
        await until(pilot, lambda: chat.idle and spy.calls == 1, what="architect again")
    sent = seen[0]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert sent[1]["content"] == "plan the release"
    assert "E_JSON_BROKEN" in sent[3]["content"]  # the hidden correction, as it was sent
    assert sent[-1]["content"] == "when do we ship?"
    assert all("queue" not in m["content"] for m in sent)  # the coder's exchange is not its
    assert rows(db, "SELECT count(*) FROM sessions") == [(1,)]  # appended, not a new session


async def test_restore_rebuilds_a_pipelines_prompts_and_workflow(tmp_path):
    db = tmp_path / "p.db"
    store = await Store.open(db)
    try:
        sid = await store.create_session("chat", title="t")
        await store.add_message(sid, "architect,coder", "user", "@architect @coder build it")
        a = await store.add_message(sid, "architect", "assistant", "Plan: A.")
        await store.finish_message(a, "Plan: A.", 3, "done")
        await store.flush()
        time.sleep(0.01)
        await store.add_message(sid, "coder", "assistant", "def a(): ...")
        await store.flush()
        restored = await restore(store, sid, ["architect", "coder", "critic"])
    finally:
        await store.close()
    assert restored.workflow == "pipeline"
    assert restored.last_targets == ["architect", "coder"]
    assert restored.spoke == ["architect", "coder"]
    coder = restored.histories["coder"]
    assert coder[0]["content"] == "build it\n\nThe architect answered:\nPlan: A."
    assert restored.histories["critic"] == []
    assert rebuild([], ["coder"]).histories == {"coder": []}


async def test_review_c_continues_the_session_in_the_chat(tmp_path):
    config = replay_config(load_config(write_small_config(tmp_path)))
    db = tmp_path / "r.db"
    engine = ReplayEngine([CODE, CODE2])
    app = replay_app(config, db, engine)
    async with app.run_test(size=(100, 30)) as pilot:
        chat = await started(pilot)
        await send(pilot, "@coder first")
        await until(pilot, lambda: chat.idle and engine.calls == 1, what="first")
        await pilot.press("ctrl+n")
        await pilot.pause(0.1)
        await send(pilot, "@coder other")
        await until(pilot, lambda: chat.idle and engine.calls == 2, what="second")
        first_id = min(r[0] for r in rows(db, "SELECT id FROM sessions"))
        await pilot.press("f4")
        await until(pilot, lambda: isinstance(app.screen, ReviewScreen), what="review")
        review = app.screen
        await until(pilot, lambda: review.query_one(DataTable).row_count == 2, what="rows")
        table = review.query_one(DataTable)
        table.move_cursor(row=1)  # the older session
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, SessionScreen), what="session view")
        await pilot.pause(0.2)
        await pilot.press("c")
        await until(pilot, lambda: app.screen is chat, what="back in the chat")
        records = chat.query_one(Transcript).records
        await until(pilot, lambda: len(records) == 2, what="restored")
        assert [r.text for r in records] == ["@coder first", "".join(CODE)]
        assert chat.runtime.session_id == first_id


def test_chat_continue_and_resume_errors_are_one_line(tmp_path):
    db = tmp_path / "none.db"
    for args in (["chat", "--continue"], ["chat", "--resume", "7"]):
        proc = _in_pty([sys.executable, "-m", "hermes_tui.cli", *args, "--db", str(db)])
        assert proc[0] == 2, proc
        assert "no session to continue" in proc[1]


# -- cancel @all ------------------------------------------------------------------------------
async def test_escape_during_all_says_who_was_cancelled_and_who_was_skipped(tmp_path):
    config = replay_config(load_config(write_small_config(tmp_path, max_tokens=400)))
    slow = [f"word{i} " for i in range(400)]
    engine = ReplayEngine([slow], tokens_per_s=40)
    app = replay_app(config, tmp_path / "a.db", engine)
    async with app.run_test(size=(100, 30)) as pilot:
        chat = await started(pilot)
        await send(pilot, "@all review this")  # pipeline: architect, then coder, then critic
        transcript = chat.query_one(Transcript)
        await until(pilot, lambda: "architect" in chat.streaming, what="architect streaming")
        await pilot.press("escape")
        await until(pilot, lambda: chat.idle, what="cancelled")
        await pilot.pause(0.2)
        answers = [r for r in transcript.records if r.role == "assistant"]
        assert [(r.persona, r.status) for r in answers] == [("architect", "cancelled")]
        note = next(r for r in transcript.records if r.role == "note")
        assert "@coder @critic skipped" in note.text and "cancelled @architect" in note.text
        view = next(v for v in transcript.query(MessageView) if v.record is note)
        assert view.region.height > 0  # on screen, not only in a toast
    # ... and stored with the session: hermes log show / review and a continued chat say it
    stored = rows(tmp_path / "a.db", "SELECT role, persona, status, content FROM messages")
    assert [r[0] for r in stored] == ["user", "assistant", "note"]
    assert stored[2][1:] == ("coder,critic", "cancelled", note.text)
    ((sid,),) = rows(tmp_path / "a.db", "SELECT id FROM sessions")
    shown = await log_view.show(tmp_path / "a.db", sid, as_json=False, hidden=False)
    assert "## hermes — cancelled" in shown and "@coder @critic skipped" in shown
    app = replay_app(config, tmp_path / "a.db", ReplayEngine([["fine"]]), resume=sid)
    async with app.run_test(size=(100, 30)) as pilot:
        chat = await started(pilot)
        transcript = chat.query_one(Transcript)
        await until(pilot, lambda: len(transcript.records) == 3, what="restored messages")
        assert [(r.role, r.persona) for r in transcript.records] == [
            ("user", "you"),
            ("assistant", "architect"),
            ("note", "hermes"),
        ]
        assert transcript.records[2].text == note.text
        await send(pilot, "@critic and you?")  # the note is no one's history
        await until(pilot, lambda: chat.idle and len(transcript.records) >= 5, what="critic")
        assert transcript.records[4].persona == "critic"  # (a correction turn may follow)


# -- keyboard -----------------------------------------------------------------------------------
async def test_keys_typed_with_the_transcript_focused_reach_the_prompt(tmp_path):
    long = [f"Line {i} of a long answer.\n\n" for i in range(60)]
    config = replay_config(load_config(write_small_config(tmp_path, max_tokens=200)))
    app = replay_app(config, tmp_path / "k.db", ReplayEngine([long]))
    async with app.run_test(size=(80, 24)) as pilot:
        chat = await started(pilot)
        await send(pilot, "@coder tell me")
        await until(pilot, lambda: chat.idle, what="answer")
        await pilot.pause(0.2)
        prompt = chat.query_one("#prompt")
        pane = chat.query_one("#pane-all")
        bottom = pane.scroll_y
        assert bottom > 0
        await pilot.press("pageup")  # from the prompt
        await pilot.pause(0.1)
        assert pane.scroll_y < bottom and prompt.has_focus
        await pilot.press("home")  # empty prompt: the oldest message
        await pilot.pause(0.1)
        assert pane.scroll_y == 0
        await pilot.press("end")
        await pilot.pause(0.1)
        assert pane.scroll_y == pane.max_scroll_y
        await pilot.press("tab", "tab")  # into the transcript: its pane, then a message
        await pilot.pause(0.05)
        assert isinstance(app.focused, MessageView)
        header = app.focused.query_one(".msg-header")
        assert "reverse" in str(header.styles.text_style)  # the focused message stands out
        await pilot.press("h", "i")
        await pilot.pause(0.05)
        assert prompt.has_focus and prompt.value == "hi"


async def test_f1_shows_every_key_and_glyph(tmp_path):
    app = HermesApp(load_config(write_small_config(tmp_path)), autostart=False)
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.press("f1")
        await pilot.pause(0.1)
        text = str(app.screen.query_one("#legend").render())
        for key in ("Ctrl+Y", "Ctrl+T", "PageUp", "Tab", "F5", "Esc"):
            assert key in text
        for glyph in ("⚑", "✖", "⊘", "↯", "underlined", "reversed"):
            assert glyph in text
        await pilot.press("escape")
        await pilot.pause(0.1)
        assert app.screen.query("#prompt")


# -- review -------------------------------------------------------------------------------------
async def test_choosing_a_verdict_scrolls_its_span_into_view(tmp_path):
    db = tmp_path / "v.db"
    store = await Store.open(db)
    try:
        sid = await store.create_session("chat", title="long", personas=["coder"])
        targets = []
        for i in range(23):
            text = "\n".join(f"message {i} line {j} " + "words " * 20 for j in range(30))
            mid = await store.add_message(sid, "coder", "assistant", text)
            if i in (3, 20):
                at = text.index("line 27")
                v = Verdict("loops", "minor", "E_LOOP", (at, at + 7), f"loop in {i}")
                await store.add_verdict(sid, mid, "coder", v)
                targets.append(i)
        await store.flush()
    finally:
        await store.close()
    app = HermesApp(None, db_path=db, review=True)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: app.screen.query_one(DataTable).row_count == 1, what="list")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, SessionScreen), what="session")
        screen = app.screen
        await until(pilot, lambda: len(screen.verdict_rows) == 2, what="verdicts")
        scroll = screen.query_one("#messages")
        for row in (1, 0, 1):
            screen.query_one("#verdicts", DataTable).move_cursor(row=row)
            await pilot.pause(0.3)
            marked = next(m for m in screen.query(MarkedText) if m.active >= 0)
            line = marked.line_of(marked.active)
            y = marked.region.y + line
            assert scroll.region.y <= y < scroll.region.bottom, (row, y, scroll.region)
        await pilot.press("escape")  # session -> list
        await until(pilot, lambda: isinstance(app.screen, ReviewScreen), what="list again")
        await pilot.press("escape")  # standalone: asks first
        await pilot.pause(0.1)
        assert "Quit hermes review?" in str(app.screen.query_one("Static").render())
        await pilot.press("n")
        await pilot.pause(0.1)
        assert isinstance(app.screen, ReviewScreen)


# -- terminal -----------------------------------------------------------------------------------
def _in_pty(argv: list[str], timeout: float = 30) -> tuple[int, str]:
    """Run argv on a pseudo-terminal; (exit code, everything it wrote)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=hermes_env())
    os.close(slave)
    out = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        elif proc.poll() is not None:
            break
    os.close(master)
    return proc.wait(timeout=10), out.decode("utf-8", "replace")


def test_hermes_without_a_terminal_says_so_in_one_line(tmp_path):
    config = write_small_config(tmp_path)
    for argv in (["hermes_tui.cli"], ["hermes_tui.cli", "chat"], ["hermes_tui.cli", "review"]):
        proc = subprocess.run(
            [sys.executable, "-m", *argv, "--config", str(config)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env=hermes_env(),
            timeout=60,
        )
        assert proc.returncode == 2, proc
        assert proc.stderr == "hermes: hermes needs a terminal; use ssh -t, or hermes batch\n"
        assert "\x1b" not in proc.stdout + proc.stderr  # no TUI drawn into a pipe


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


async def _assert_interrupted(db: Path) -> None:
    store = await Store.open(db)
    try:
        (session,) = await store.list_sessions()
        messages = await store.get_transcript(session.id)
        assert [m.status for m in messages if m.role == "assistant"] == ["interrupted"]
    finally:
        await store.close()


def _own_terminal() -> None:
    """In the child: a new session whose controlling terminal is the pty (as under sshd)."""
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def _hang_up_mid_turn(tmp_path: Path, how: str) -> None:
    config = write_small_config(tmp_path, max_tokens=2000, judge=True)
    db = tmp_path / "hup.db"
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "hermes_tui.cli", "chat", "--config", str(config), "--db", str(db)],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env={**hermes_env(), "TERM": "xterm-256color", "COLUMNS": "100", "LINES": "30"},
        preexec_fn=_own_terminal,
        cwd=ROOT,
    )
    os.close(slave)

    def drain(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if select.select([master], [], [], 0.05)[0]:
                try:
                    os.read(master, 65536)
                except OSError:
                    return

    try:
        drain(4)
        os.write(master, b"@coder write a very long story about a lighthouse keeper\r")
        deadline = time.monotonic() + 120
        judge = []
        while time.monotonic() < deadline:
            drain(0.3)
            streaming = db.exists() and rows(
                db, "SELECT count(*) FROM messages WHERE status = 'streaming' AND content != ''"
            ) == [(1,)]
            judge = _children(proc.pid)
            if streaming and judge:
                break
        else:
            raise AssertionError("the turn never started streaming")
        if how == "sighup":
            os.killpg(proc.pid, signal.SIGHUP)
            os.close(master)
        else:  # the terminal vanishes: its master side is closed (an SSH client gone)
            os.close(master)
        t0 = time.monotonic()
        code = proc.wait(timeout=10)
        took = time.monotonic() - t0
        time.sleep(0.3)
        assert took < 1.5, f"hermes took {took:.2f} s to end"
        assert code in (129, -signal.SIGHUP), code
        assert not [p for p in judge if _alive(p)], "the judge outlived hermes"
        # Stored as interrupted by hermes on its way out, or (when the watchdog had to end it
        # first, under load) by the next hermes that opens the database: either way the user
        # sees the turn as interrupted.
        asyncio.run(_assert_interrupted(db))
    finally:
        if proc.poll() is None:
            proc.kill()


def test_sighup_ends_hermes_and_its_judge_within_a_second(tmp_path):
    _hang_up_mid_turn(tmp_path, "sighup")


def test_a_vanished_terminal_ends_hermes_and_its_judge(tmp_path):
    _hang_up_mid_turn(tmp_path, "close")


# -- marks inside the text ----------------------------------------------------------------------
def _styles_at(body, placement) -> list:
    strip = body._lines(body.content_size.width)[placement.line]
    cells, out = 0, []
    for seg in strip:
        end = cells + seg.cell_length
        if cells < placement.end and end > placement.start and seg.text.strip():
            out.append(seg.style)
        cells = end
    return out


async def test_a_span_is_marked_inside_the_text_while_it_streams(tmp_path, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")  # underline vs reverse must tell them apart alone
    config = replay_config(load_config(write_small_config(tmp_path, max_tokens=80)))
    broken = ['{"goal": ', '"ship it"', "}}", *[f" more{i}" for i in range(40)]]
    engine = ReplayEngine([broken, FIXED_JSON], tokens_per_s=12)
    app = replay_app(config, tmp_path / "m.db", engine)
    async with app.run_test(size=(100, 30)) as pilot:
        chat = await started(pilot)
        await send(pilot, "@architect plan it")
        transcript = chat.query_one(Transcript)

        def body():
            records = [r for r in transcript.records if r.role == "assistant"]
            view = transcript.view(records[0].key) if records else None
            return (records[0], view.query_one("MarkdownBody")) if view else (None, None)

        def broken():
            record, markdown = body()
            if markdown is None:
                return None
            codes = [v.code for v in record.verdicts]
            if "E_JSON_BROKEN" not in codes:
                return None
            i = codes.index("E_JSON_BROKEN")
            return next((p for p in markdown.placements if p.mark.index == i), None)

        await until(pilot, lambda: broken() is not None, what="inline mark")
        record, markdown = body()
        assert record.status == "streaming"  # marked while the text is still arriving
        placement = broken()
        line = markdown._lines(markdown.content_size.width)[placement.line].text
        assert line[placement.start : placement.end] == "}"  # the stray brace itself
        assert all(s is not None and s.underline for s in _styles_at(markdown, placement))
        await until(pilot, lambda: chat.idle and engine.calls == 2, what="turn end")
        await pilot.pause(0.2)
        _, markdown = body()
        assert markdown.placements  # still marked after the final render
        # Focusing its entry under the message explains it and shows the span as active.
        view = transcript.view(record.key)
        view.focus()
        await pilot.press("m")
        await pilot.pause(0.1)
        assert markdown.active_mark == 0  # the first mark's span is shown as the active one
        await pilot.press("tab")  # the next mark
        await pilot.pause(0.1)
        assert markdown.active_mark == 1
        text = str(app.focused.render())
        assert "E_JSON_BROKEN" in text and "check: json" in text and "correction sent" in text
        # Hovering the span in the text explains it too.
        p = broken()
        assert "E_JSON_BROKEN" in view.describe_mark(markdown.mark_at(p.start, p.line))


async def test_a_critical_span_is_reversed_in_the_text(tmp_path, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    config = replay_config(load_config(write_small_config(tmp_path)))
    leak = ["Sure. ", "Run ", "`rm -rf /`", " to clean up", " everything."]
    app = replay_app(config, tmp_path / "k.db", ReplayEngine([leak]))
    async with app.run_test(size=(100, 30)) as pilot:
        chat = await started(pilot)
        await send(pilot, "@coder how do I clean my disk")
        await until(pilot, lambda: chat.idle, what="halt")
        await pilot.pause(0.2)
        record = next(r for r in chat.query_one(Transcript).records if r.role == "assistant")
        markdown = chat.query_one(Transcript).view(record.key).query_one("MarkdownBody")
        critical = [p for p in markdown.placements if p.mark.severity == "critical"]
        assert critical, markdown.placements
        styles = _styles_at(markdown, critical[0])
        assert styles and all(s.reverse and not s.underline for s in styles)


async def test_ctrl_t_renames_the_session(tmp_path):
    config = replay_config(load_config(write_small_config(tmp_path)))
    db = tmp_path / "t.db"
    engine = ReplayEngine([CODE])
    app = replay_app(config, db, engine)
    async with app.run_test(size=(100, 30)) as pilot:
        chat = await started(pilot)
        await send(pilot, "@coder make a queue")
        await until(pilot, lambda: chat.idle and engine.calls == 1, what="answer")
        await pilot.press("ctrl+t")
        await pilot.pause(0.2)
        title = app.screen.query_one("#title")
        assert title.value == "make a queue"  # titled from the first message
        title.value = "queues in Python"
        await pilot.press("enter")
        await until(pilot, lambda: app.screen is chat, what="back in the chat")
        await pilot.pause(0.3)
        assert "queues in Python" in str(chat.query_one("#status").render())
        await chat.runtime.store.flush()
    assert rows(db, "SELECT title FROM sessions") == [("queues in Python",)]


async def test_a_burst_of_keys_with_backspaces_is_applied_in_order(tmp_path):
    # Keys that reach hermes in one read (fast typing over SSH, a loaded machine) are all queued
    # before the prompt handles the first. Letters were inserted by the prompt itself while
    # Backspace, arrows and Enter travelled up to the app to find their binding, so a
    # Backspace typed after "c" deleted a letter typed after it.
    app = HermesApp(load_config(write_small_config(tmp_path)), autostart=False)
    async with app.run_test(size=(80, 24)) as pilot:
        prompt = app.screen.query_one("#prompt")
        keys = ["a", "b", "c", "backspace", "backspace", "d", "e", "left", "X", "end"]
        keys += ["f", "ctrl+w", "g", "h", "home", "delete", "i"]
        for key in keys:  # all queued at once, as the terminal driver posts a burst
            char = key if len(key) == 1 else None
            app._driver.send_message(events.Key(key, char))
        await pilot.pause(0.3)
        assert prompt.value == "ih"


async def test_keys_typed_right_after_enter_start_the_next_message(tmp_path):
    config = replay_config(load_config(write_small_config(tmp_path)))
    app = replay_app(config, tmp_path / "b.db", ReplayEngine([["ok"]]))
    async with app.run_test(size=(80, 24)) as pilot:
        chat = await started(pilot)
        prompt = chat.query_one("#prompt")
        for key in ["h", "i", "x", "backspace", "enter", "n", "e", "x", "backspace", "w"]:
            app._driver.send_message(events.Key(key, key if len(key) == 1 else None))
        await until(pilot, lambda: chat.idle and chat.records, what="the answer")
        sent = [r.text for r in chat.query_one(Transcript).records if r.role == "user"]
        assert sent == ["hi"] and prompt.value == "new"


# -- continue through a running hermes serve ----------------------------------------------------
async def test_continue_and_resume_while_hermes_serve_runs(tmp_path, monkeypatch):
    """``hermes chat --continue`` / ``--resume ID`` as a client of a real ``hermes serve``
    (the real model there), sharing its database as the default paths do."""
    from hermes_tui.cli import _session_to_continue
    from hermes_tui.server.client import ServerPool
    from hermes_tui.widgets.records import records_from_rows
    from tests.serve_util import ServeProc

    cfg = write_small_config(tmp_path, max_tokens=8)
    db = tmp_path / "hermes.db"
    proc = ServeProc(cfg, db, "--no-judge").start()
    try:
        monkeypatch.setenv("HERMES_SERVER", f"unix:{proc.socket}")
        sent: list[tuple[str, list[dict]]] = []  # what each request asked the server
        generate = ServerPool.generate

        def spy(self, persona, model, messages, *args, **kwargs):
            sent.append((persona, [dict(m) for m in messages]))
            return generate(self, persona, model, messages, *args, **kwargs)

        monkeypatch.setattr(ServerPool, "generate", spy)
        config = load_config(cfg)

        async def chat_once(text: str, resume: int | None) -> list:
            app = HermesApp(config, db_path=db, resume=resume)
            async with app.run_test(size=(100, 30)) as pilot:
                chat = await started(pilot)
                assert isinstance(chat.runtime.pool, ServerPool)  # the server's models
                transcript = chat.query_one(Transcript)
                if resume is not None:  # every restored message shown (they mount one by one)
                    restored = records_from_rows(chat.runtime.restored.messages)
                    await until(
                        pilot,
                        lambda: len(transcript.records) == len(restored),
                        what="restored messages",
                    )
                    assert f"session {resume}" in str(chat.query_one("#status").render())
                before = len(transcript.records)
                await send(pilot, text)
                await until(
                    pilot,
                    lambda: chat.idle and len(transcript.records) > before + 1,
                    what="the coder's answer through the server",
                )
                answer = next(r for r in reversed(transcript.records) if r.role == "assistant")
                assert answer.persona == "coder" and answer.status in ("done", "halted")
                return [(r.role, r.text) for r in transcript.records[:before]]

        assert await chat_once("@coder Say hi.", None) == []
        ((sid,),) = rows(db, "SELECT id FROM sessions WHERE mode = 'chat'")
        assert await _session_to_continue(db, None) == sid  # --continue: the latest
        shown = await chat_once("@coder Again.", sid)
        assert shown[0] == ("user", "@coder Say hi.") and shown[1][0] == "assistant"
        shown = await chat_once("@coder Once more.", sid)  # --resume ID
        assert [text for role, text in shown if role == "user"] == [
            "@coder Say hi.",
            "@coder Again.",
        ]
        # The server was sent the coder's history each time, and nothing was stored twice.
        users = [m["content"] for m in sent[-1][1] if m["role"] == "user"]
        assert users[0] == "Say hi." and "Again." in users and users[-1] == "Once more."
        assert rows(db, "SELECT count(*) FROM sessions WHERE mode = 'chat'") == [(1,)]
        stored = rows(db, f"SELECT role FROM messages WHERE session_id = {sid} AND role = 'user'")
        assert len(stored) == 3
    finally:
        proc.cleanup()


async def test_a_pasted_megabyte_does_not_hold_the_chat_while_it_is_redacted(tmp_path):
    """Before a message is stored its secrets are hidden (about 1 s a MB), and its title
    too: both ran on the chat's event loop, so a pasted log froze the screen for as long (a
    1 MB message: 0.57 s of 0.6). The real runtime, in-process pool and SQLite; the model
    refuses the prompt (it is far over n_ctx), which is not what this test is about."""
    from hermes_tui.redact import redact

    config = load_config(str(write_small_config(tmp_path)))
    db = tmp_path / "h.db"
    runtime = await Runtime.start(config, db_path=db, judge=False, server="off")
    secret = "ghp_R4nd0mT0k3nV4lu3xYzAbCdEfGh123456789"
    text = f"@coder {secret} " + "log line " * 110_000 + secret
    t0 = time.perf_counter()
    redact(text)
    redact_s = time.perf_counter() - t0  # the work that held the loop, timed in this run
    lag, stop = 0.0, False
    import gc
    import threading
    import traceback

    held: list[str] = []  # where the loop was when it was held (says what to fix next)
    seen = [time.perf_counter()]

    def watch(main: int) -> None:
        while not stop:
            time.sleep(0.05)
            if time.perf_counter() - seen[0] > 0.1:
                held.append("".join(traceback.format_stack(sys._current_frames()[main])[-4:]))

    async def tick() -> None:
        nonlocal lag
        while not stop:
            t = seen[0] = time.perf_counter()
            await asyncio.sleep(0.005)
            lag = max(lag, time.perf_counter() - t - 0.005)

    # The earlier tests' garbage is collected now, not in a pause that this would time.
    gc.collect()
    gc.disable()
    watcher = threading.Thread(target=watch, args=(threading.get_ident(),), daemon=True)
    watcher.start()
    ticker = asyncio.create_task(tick())
    try:
        await runtime.send(text)
    finally:
        stop = True
        gc.enable()
        await ticker
        await runtime.close()
    assert lag < redact_s / 3, (lag, redact_s, held[:3])
    ((title,),) = rows(db, "SELECT title FROM sessions")
    assert title.startswith("[REDACTED:github-token]") and secret not in title
    ((stored,),) = rows(db, "SELECT content FROM messages WHERE role = 'user'")
    assert secret not in stored and stored.endswith("[REDACTED:github-token]")
