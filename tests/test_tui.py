"""The TUI driven by Textual's Pilot: real model, real sentinel, real store."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import re
from pathlib import Path

import pytest
from textual.widgets import DataTable, Input, Select

from hermes_tui.app import HermesApp
from hermes_tui.config import load_config
from hermes_tui.runtime import Runtime
from hermes_tui.screens.chat import ChatScreen
from hermes_tui.screens.review import ReviewScreen
from hermes_tui.screens.session_view import SessionScreen
from hermes_tui.store import Store
from hermes_tui.terminal_text import escape_controls, sanitize_for_terminal, split_unfinished
from hermes_tui.widgets.markdown_body import MarkdownBody
from hermes_tui.widgets.marks import MarkedText, VerdictMark
from hermes_tui.widgets.message import MessageView
from hermes_tui.widgets.prompt import PersonaSuggester
from hermes_tui.widgets.transcript import Transcript
from sentinel.verdict import Verdict
from tests.conftest import write_small_config
from tests.replay import BROKEN_JSON, FIXED_JSON, ReplayEngine, install, replay_config


async def until(pilot, condition, timeout: float = 60.0, what: str = "condition") -> None:
    """Let the app run until ``condition()`` holds (fails the test after ``timeout`` s)."""
    loops = int(timeout / 0.05)
    for _ in range(loops):
        if condition():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def chat_of(app: HermesApp) -> ChatScreen:
    assert isinstance(app.screen, ChatScreen)
    return app.screen


async def send(pilot, text: str) -> None:
    prompt = pilot.app.screen.query_one("#prompt", Input)
    prompt.focus()
    prompt.value = text
    await pilot.press("enter")


# -- sanitising --------------------------------------------------------------------------------
def test_sanitize_removes_escape_sequences_and_keeps_text() -> None:
    hostile = (
        "ok\x1b[31mred\x1b[0m \x1b]0;pwned title\x07 \x1b]52;c;Y2xpcA==\x07"
        "\x9b2J clear\rover\r\nline\tTab \u202eevil\x00\x07!"
    )
    clean = sanitize_for_terminal(hostile)
    assert "\x1b" not in clean and "\x9b" not in clean and "\x07" not in clean
    assert "\x00" not in clean and "\r" not in clean and "\u202e" not in clean
    assert "pwned" not in clean and "Y2xp" not in clean  # OSC payloads go with the sequence
    assert clean.startswith("okred ")
    assert "\tTab" in clean and "over\nline" in clean and clean.endswith("evil!")


def test_escape_controls_keeps_offsets_for_verdict_spans() -> None:
    text = "a\x1b[2Jb\nc"
    shown = escape_controls(text)
    assert len(shown) == len(text) and "\x1b" not in shown and shown.endswith("b\nc")


async def test_persona_suggester_completes_the_mention_being_typed() -> None:
    s = PersonaSuggester(["architect", "coder", "critic"])
    assert await s.get_suggestion("@co") == "@coder "
    assert await s.get_suggestion("fix this @cr") == "fix this @critic "
    assert await s.get_suggestion("@a") == "@architect "
    assert await s.get_suggestion("email me@co") is None  # not a mention
    assert await s.get_suggestion("plain text") is None


# -- chat on the real model ------------------------------------------------------------------
async def test_coder_answer_streams_into_its_view_on_the_real_model(tmp_path, monkeypatch):
    config = load_config(write_small_config(tmp_path, max_tokens=48))
    appended: list[str] = []
    original_append = MarkdownBody.append

    def counting_append(self, piece):
        appended.append(piece)
        original_append(self, piece)

    monkeypatch.setattr(MarkdownBody, "append", counting_append)
    db = tmp_path / "chat.db"

    async def start(listener):
        # Seeded: the test wants one answer, uncorrected ("done", two stored messages); a
        # sampled one that the sentinel corrects (a loop, a banned import) would not be.
        return await Runtime.start(config, db_path=db, listener=listener, judge=False, seed=1)

    app = HermesApp(config, db_path=db, runtime_factory=start)
    async with app.run_test(size=(80, 24)) as pilot:
        chat = chat_of(app)
        assert chat.query_one("#status").render()  # painted before any model loads
        await until(pilot, lambda: chat.runtime is not None, what="runtime")
        await send(pilot, "@coder write a bubble sort function in python with comments")
        transcript = chat.query_one(Transcript)
        await until(pilot, lambda: any(r.role == "assistant" for r in transcript.records))
        record = next(r for r in transcript.records if r.role == "assistant")
        assert record.persona == "coder"
        await until(pilot, lambda: chat.idle, what="turn end")
        view = transcript.view(record.key)
        assert isinstance(view, MessageView) and view.has_class("persona-coder")
        assert record.status == "done" and record.tokens > 1 and record.text.strip()
        assert len(appended) > 1, "text should reach the screen in several paints"
        assert sanitize_for_terminal(record.text).startswith("".join(appended))
        assert view.query_one(MarkdownBody).source == sanitize_for_terminal(record.text)
        assert "coder" in str(view.query_one(".msg-header").render())
        # The pool dashboard lists the model load among its recent events, readably.
        await pilot.press("f2")
        await pilot.pause(0.5)
        events = str(chat.query_one("#events").render())
        assert " load " in events and "@coder started" in events
        assert "PoolEvent(" not in events
    # The answer was recorded in the session's database.
    store = await Store.open(db, readonly=True)
    try:
        sessions = await store.list_sessions()
        messages = await store.get_transcript(sessions[0].id)
        assert [m.role for m in messages] == ["user", "assistant"]
        assert messages[1].persona == "coder" and messages[1].content == record.text
    finally:
        await store.close()


def replay_runtime(config, db_path, engine):
    """A runtime factory whose model is served by ``engine`` (a recording, not a model)."""

    async def start(listener):
        runtime = await Runtime.start(config, db_path=db_path, listener=listener, judge=False)
        install(runtime, engine)
        return runtime

    return start


def replay_app(small_config: Path, db: Path, engine: ReplayEngine) -> HermesApp:
    """The chat on the real session, pool, sentinel and store; the model is played back."""
    config = replay_config(load_config(small_config))
    return HermesApp(config, runtime_factory=replay_runtime(config, db, engine))


async def started(pilot) -> ChatScreen:
    """The chat screen once its runtime is up."""
    chat = chat_of(pilot.app)
    await until(pilot, lambda: chat.runtime is not None, what="runtime")
    return chat


# -- a replayed JSON break through the real session + sentinel ----------------------------------
async def test_replayed_json_break_shows_an_e_json_broken_mark(small_config, tmp_path):
    engine = ReplayEngine([BROKEN_JSON, FIXED_JSON])
    app = replay_app(small_config, tmp_path / "r.db", engine)
    async with app.run_test(size=(80, 24)) as pilot:
        chat = await started(pilot)
        await send(pilot, "@architect plan the release")
        await until(pilot, lambda: chat.idle and engine.calls == 2, what="both turns")
        await pilot.pause(0.1)
        transcript = chat.query_one(Transcript)
        answers = [r for r in transcript.records if r.role == "assistant"]
        first, retry = answers
        assert [v.code for v in first.verdicts] == ["E_JSON_BROKEN"]
        start_, _ = first.verdicts[0].span
        assert "".join(BROKEN_JSON)[start_] == "}"  # the stray brace
        marks = list(transcript.view(first.key).query(VerdictMark))
        assert len(marks) == 1 and marks[0].has_class("verdict-minor")
        assert "E_JSON_BROKEN" in str(marks[0].render())
        # The correction request is hidden until asked for; the retry is a normal answer.
        assert retry.retry and retry.status == "done" and not retry.verdicts
        note = next(r for r in transcript.records if r.role == "sentinel")
        assert "E_JSON_BROKEN" in note.text
        hidden_view = next(v for v in transcript.query(MessageView) if v.record is note)
        assert not hidden_view.display or transcript.has_class("hide-hidden")
        assert hidden_view.region.height == 0
        await pilot.press("f3")
        await pilot.pause(0.1)
        assert hidden_view.region.height > 0
        # Focusing the mark (keyboard only) explains it, with the correction that was sent.
        transcript.view(first.key).focus()
        await pilot.press("m")
        await pilot.pause(0.05)
        assert app.focused is marks[0]
        detail = str(marks[0].render())
        assert "check: json" in detail and "correction sent" in detail


async def test_a_critical_halt_shows_its_code_where_the_stream_stopped(small_config, tmp_path):
    leak = ["Sure. ", "Run ", "`rm -rf /`", " to clean up", " everything."]
    engine = ReplayEngine([leak])
    app = replay_app(small_config, tmp_path / "h.db", engine)
    async with app.run_test(size=(80, 24)) as pilot:
        chat = await started(pilot)
        await send(pilot, "@coder how do I clean my disk")
        await until(pilot, lambda: chat.idle, what="turn end")
        await pilot.pause(0.1)
        record = next(r for r in chat.query_one(Transcript).records if r.role == "assistant")
        assert record.status == "halted" and record.code == "E_UNSAFE_COMMAND"
        view = chat.query_one(Transcript).view(record.key)
        assert "halted here: E_UNSAFE_COMMAND" in str(view.query_one(".halt-code").render())
        assert view.query(VerdictMark).first().has_class("verdict-critical")
        # Widening into three panes rebuilds the views: the halt line is still there.
        await pilot.resize_terminal(170, 40)
        await pilot.pause(0.3)
        view = chat.query_one(Transcript).view(record.key)
        assert view.parent.id == "pane-coder"
        assert "halted here: E_UNSAFE_COMMAND" in str(view.query_one(".halt-code").render())


async def test_sending_brings_the_new_turn_into_view_after_scrolling_up(small_config, tmp_path):
    long = [f"Line {i} of a long answer.\n\n" for i in range(40)]
    engine = ReplayEngine([long, ["Short answer."]])
    app = replay_app(small_config, tmp_path / "s.db", engine)
    async with app.run_test(size=(80, 24)) as pilot:
        chat = await started(pilot)
        await send(pilot, "@architect tell me everything")
        await until(pilot, lambda: chat.idle, what="first turn")
        pane = chat.query_one("#pane-all")
        pane.scroll_home(animate=False)  # the user scrolls back to read the start
        await pilot.pause(0.1)
        assert pane.max_scroll_y > 0 and pane.scroll_y == 0
        await send(pilot, "@architect and briefly?")
        await until(pilot, lambda: chat.idle, what="second turn")
        await pilot.pause(0.2)
        assert pane.scroll_y == pane.max_scroll_y  # the question and its answer are in view


async def test_three_panes_when_wide_and_escape_codes_never_reach_the_screen(
    small_config, tmp_path
):
    engine = ReplayEngine([["hi ", "\x1b[2J\x1b]0;owned\x07", "there"]])
    app = replay_app(small_config, tmp_path / "w.db", engine)
    async with app.run_test(size=(200, 50)) as pilot:
        chat = await started(pilot)
        panes = [p.id for p in chat.query("PersonaPane")]
        assert panes == ["pane-architect", "pane-coder", "pane-critic"]
        await send(pilot, "@critic @coder hello")
        await until(pilot, lambda: chat.idle, what="turn end")
        coder_pane = chat.query_one("#pane-coder")
        views = [v for v in coder_pane.query(MessageView) if v.record.role == "assistant"]
        assert len(views) == 1 and views[0].record.persona == "coder"
        source = views[0].query_one(MarkdownBody).source
        assert source == "hi there"
        # Narrowing the terminal rebuilds the same messages in one column.
        await pilot.resize_terminal(80, 24)
        await pilot.pause(0.2)
        assert [p.id for p in chat.query("PersonaPane")] == ["pane-all"]
        records = chat.query_one(Transcript).records
        shown = [v.record for v in chat.query_one("#pane-all").query(MessageView)]
        assert shown == records and [r.role for r in records[:2]] == ["user", "assistant"]


async def test_a_chat_that_cannot_start_says_why_when_you_send(small_config, tmp_path):
    db = tmp_path / "junk.db"
    db.write_bytes(b"not a database" * 100)
    app = HermesApp(load_config(small_config), db_path=db)
    async with app.run_test(size=(80, 24)) as pilot:
        chat = chat_of(app)
        await until(pilot, lambda: chat._start_error, what="start failure")
        assert "could not start" in str(chat.query_one("#status").render())
        # the start failure's own toast is posted to the app after the error is set
        await until(pilot, lambda: list(app._notifications), what="the start failure's toast")
        app.clear_notifications()
        await send(pilot, "hello?")
        [note] = list(app._notifications)
        assert str(db) in note.message and "still starting" not in note.message
    assert db.read_bytes() == b"not a database" * 100


async def test_a_draft_longer_than_the_prompt_scrolls_to_keep_the_cursor_visible(small_config):
    app = HermesApp(load_config(small_config), autostart=False)
    async with app.run_test(size=(80, 24)) as pilot:
        prompt = chat_of(app).query_one("#prompt", Input)
        prompt.focus()
        for ch in "abcdefghij" * 12:
            await pilot.press(ch)
        await pilot.pause(0.1)
        assert len(prompt.value) == 120 > prompt.size.width
        x = prompt.cursor_screen_offset.x
        assert prompt.scroll_offset.x > 0 and prompt.region.x <= x < prompt.region.right


async def test_a_paste_lands_once_as_one_clean_line_and_the_prompt_keeps_working(small_config):
    from textual import events

    app = HermesApp(load_config(small_config), autostart=False)
    async with app.run_test(size=(80, 24)) as pilot:
        prompt = chat_of(app).query_one("#prompt", Input)
        prompt.focus()
        prompt.post_message(events.Paste("@critic one\ttwo\x7f\r\nthree \x07four\x00"))
        await pilot.pause(0.1)
        assert prompt.value == "@critic one two three four"
        await pilot.press("!")
        assert prompt.value.endswith("four!") and prompt.has_focus


async def test_input_history_and_status_line_show_who_is_addressed(small_config):
    app = HermesApp(load_config(small_config), autostart=False)
    async with app.run_test(size=(80, 24)) as pilot:
        chat = chat_of(app)
        prompt = chat.query_one("#prompt", Input)
        prompt.remember("first")
        prompt.remember("@coder second")
        await pilot.press("up")
        assert prompt.value == "@coder second"
        await pilot.press("up")
        assert prompt.value == "first"
        await pilot.press("down", "down")
        assert prompt.value == ""
        await pilot.press(*"@critic @co")
        await pilot.pause(0.1)
        await pilot.press("right")  # accept the suggestion
        status = str(chat.query_one("#status").render())
        assert prompt.value == "@critic @coder "
        assert "to @coder @critic" in status and "pipeline" in status
        await pilot.press("f5")
        assert "parallel" in str(chat.query_one("#status").render())


async def test_every_chat_action_is_in_the_command_palette(small_config):
    app = HermesApp(load_config(small_config), autostart=False)
    async with app.run_test(size=(80, 24)):
        titles = {c.title for c in app.get_system_commands(app.screen)}
        for title in ("Cancel", "New", "Pool", "Hidden", "Review", "Flow", "Copy"):
            assert title in titles


async def test_escape_closes_the_keys_panel(small_config):
    app = HermesApp(load_config(small_config), autostart=False)
    async with app.run_test(size=(80, 24)) as pilot:
        app.action_show_help_panel()
        await pilot.pause(0.1)
        assert app.screen.query("HelpPanel")
        await pilot.press("escape")
        await pilot.pause(0.1)
        assert not app.screen.query("HelpPanel")
        assert app.screen.query_one("#prompt").has_focus  # still typing into the prompt


# -- review on a real store ---------------------------------------------------------------------
DAY = dt.datetime(2025, 3, 10, 9, 30).timestamp()


async def seed_store(path: Path) -> dict[str, int]:
    """Three sessions: a clean one, one with a minor JSON break, one with a critical secret."""
    store = await Store.open(path)
    ids = {}
    try:
        ids["clean"] = await store.create_session(
            "chat", title="clean plan", personas=["architect"], started=DAY
        )
        await store.add_message(ids["clean"], "architect", "assistant", '{"goal": "tidy"}')
        ids["json"] = await store.create_session(
            "chat", title="broken json", personas=["architect", "critic"], started=DAY + 86400
        )
        mid = await store.add_message(ids["json"], "critic", "assistant", '{"verdict": }}')
        await store.add_verdict(
            ids["json"],
            mid,
            "critic",
            Verdict("json", "minor", "E_JSON_BROKEN", (12, 13), "unexpected '}'"),
        )
        ids["secret"] = await store.create_session(
            "chat", title="leaky coder", personas=["coder"], started=DAY + 2 * 86400
        )
        text = "line one\nline two\nkey = AKIAIOSFODNN7EXAMPLE\n"
        mid = await store.add_message(ids["secret"], "coder", "assistant", text, status="halted")
        await store.add_verdict(
            ids["secret"],
            mid,
            "coder",
            Verdict("secrets", "critical", "E_SECRET", (24, 44), "an AWS access key"),
        )
        await store.flush()
    finally:
        await store.close()
    return ids


def table_titles(screen) -> list[str]:
    table = screen.query_one("#sessions", DataTable)
    return [str(table.get_row_at(i)[1]) for i in range(table.row_count)]


async def test_review_filters_and_search_return_the_right_sessions(tmp_path):
    db = tmp_path / "review.db"
    ids = await seed_store(db)
    app = HermesApp(None, db_path=db, review=True)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        assert isinstance(screen, ReviewScreen)
        await until(pilot, lambda: screen.query_one("#sessions", DataTable).row_count == 3)
        assert table_titles(screen) == ["leaky coder", "broken json", "clean plan"]
        screen.query_one("#severity", Select).value = "critical"
        await until(pilot, lambda: table_titles(screen) == ["leaky coder"], what="severity")
        screen.query_one("#severity", Select).clear()
        screen.query_one("#code", Select).value = "E_JSON_BROKEN"
        await until(pilot, lambda: table_titles(screen) == ["broken json"], what="code")
        await screen.action_clear_filters()
        screen.query_one("#persona", Select).value = "architect"
        await until(pilot, lambda: table_titles(screen) == ["clean plan"], what="persona")
        await screen.action_clear_filters()
        since = screen.query_one("#since", Input)
        since.value = "2025-03-11"
        await screen.reload()
        assert table_titles(screen) == ["leaky coder", "broken json"]
        since.value = "yesterday"  # not a date: said so, not silently ignored
        await screen.reload()
        assert len(table_titles(screen)) == 3 and since.has_class("-invalid")
        summary = str(screen.query_one("#summary").render())
        assert summary.startswith("since 'yesterday' is not a date (YYYY-MM-DD) · 3 sessions")
        await screen.action_clear_filters()
        # Full-text search over verdict details finds the session; Enter goes to the results,
        # and Enter again opens it at the span.
        await pilot.press("ctrl+f", *"AWS", "enter")
        table = screen.query_one("#sessions", DataTable)
        await until(pilot, lambda: screen.mode == "hits" and table.row_count == 1, what="hits")
        assert str(table.get_row_at(0)[0]) == str(ids["secret"])
        await until(pilot, lambda: table.has_focus, what="focus on the results")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, SessionScreen), what="session view")
        session = app.screen
        await until(pilot, lambda: session.verdict_rows, what="verdicts")
        marked = session.query_one(MarkedText)
        await until(pilot, lambda: marked.active == 0, what="jump to span")
        # Export as Markdown and JSON.
        session.export_dir = tmp_path
        await session.action_export("markdown")
        await session.action_export("json")
        md = (tmp_path / f"hermes-session-{ids['secret']}.md").read_text()
        doc = json.loads((tmp_path / f"hermes-session-{ids['secret']}.json").read_text())
        assert "leaky coder" in md and "E_SECRET" in md
        assert doc["messages"][0]["verdicts"][0]["code"] == "E_SECRET"
        # Private like the database, and a second export never overwrites the first.
        assert (tmp_path / f"hermes-session-{ids['secret']}.md").stat().st_mode & 0o777 == 0o600
        await session.action_export("markdown")
        assert session.last_export == tmp_path / f"hermes-session-{ids['secret']}-2.md"
        assert (tmp_path / f"hermes-session-{ids['secret']}.md").read_text() == md


def screen_colours(svg: str) -> set[str]:
    """Non-grey fill colours in an exported screenshot (#c5c8c6 is the SVG's default text)."""
    found = {c.lower() for c in re.findall(r"fill: (#[0-9a-fA-F]{6})", svg)}
    return {c for c in found if not (c[1:3] == c[3:5] == c[5:7]) and c != "#c5c8c6"}


@pytest.mark.parametrize("no_color", [None, "1"])
async def test_no_color_is_respected(monkeypatch, small_config, no_color):
    if no_color:
        monkeypatch.setenv("NO_COLOR", no_color)
    app = HermesApp(load_config(small_config), autostart=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f2")
        await pilot.pause()
        colours = screen_colours(app.export_screenshot())
        if no_color:
            assert app.no_color and not colours, f"colours with NO_COLOR: {colours}"
        else:
            assert colours  # the same screen is coloured otherwise


def test_pieces_split_inside_crlf_or_an_escape_sanitize_like_the_whole_text() -> None:
    """Every way of cutting the text into 2 or 3 streamed pieces shows the same text."""
    text = "one\r\ntwo \x1b[31mred\x1b[0m three\r\n\x1b]0;title\x07four"
    cuts = [[i] for i in range(1, len(text))]
    cuts += [list(pair) for pair in itertools.combinations(range(1, len(text)), 2)]
    for cut_points in cuts:
        shown, held = "", ""
        pieces = [
            text[a:b] for a, b in zip([0, *cut_points], [*cut_points, len(text)], strict=True)
        ]
        for piece in pieces:
            ready, held = split_unfinished(held + piece)
            shown += sanitize_for_terminal(ready)
        shown += sanitize_for_terminal(held)
        assert shown == sanitize_for_terminal(text) == "one\ntwo red three\nfour"


async def test_dashboard_says_who_runs_on_which_model() -> None:
    from textual.app import App
    from textual.widgets import Static

    from agents.pool.pool import PoolSnapshot
    from hermes_tui.widgets.dashboard import PoolDashboard

    snap = PoolSnapshot([], [], [("coder", "smollm2"), ("critic", "qwen")], [], [], [])

    class Pool:
        def snapshot(self) -> PoolSnapshot:
            return snap

    class Host(App):
        def compose(self):
            yield PoolDashboard([("cpu", 2**33)], source=lambda: Pool(), running=lambda: [])

    async with Host().run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.1)
        running = str(pilot.app.query_one("#running", Static).render())
        assert running == "@coder on smollm2, @critic on qwen"
