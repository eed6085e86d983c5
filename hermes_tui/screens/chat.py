"""The chat screen: the transcript, a status line, the input, the pool dashboard.

Nothing here waits on a model. The app starts the runtime (``HermesApp._start_runtime``) and
hands it over with ``RuntimeReady``; every ``Runtime.send`` runs in a Textual worker on the
app's event loop; the session reports progress through ``receive``, which only buffers, and the
handlers below update widgets. The first paint happens before the runtime exists, and models
load lazily on the first message.

Size (over 500 lines): the handlers of one screen; its widgets live in ``widgets/``.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.events import Resize
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Input, ProgressBar, Static

from agents.events import TokenReceived, TurnEnded, TurnStarted, VerdictRaised
from agents.session import UnknownPersonaError, parse_mentions
from hermes_tui.config import Config
from hermes_tui.screens.compositor import BoxedCompositor
from hermes_tui.skipped import Skipped, skipped_after_cancel
from hermes_tui.widgets.dashboard import PoolDashboard
from hermes_tui.widgets.prompt import PromptInput
from hermes_tui.widgets.records import ChatMessage, records_from_rows
from hermes_tui.widgets.transcript import WIDE_AT, Transcript

if TYPE_CHECKING:
    from hermes_tui.runtime import ScreenRuntime

WORKFLOWS = ("pipeline", "parallel")
FLUSH_S = 0.1  # how often streamed events reach the widgets (10 Hz)


class SessionEvent(Message):
    """An ``agents.events`` event, delivered on the UI's message queue."""

    def __init__(self, event: Any) -> None:
        super().__init__()
        self.event = event


class RuntimeReady(Message):
    def __init__(self, runtime: Any) -> None:
        super().__init__()
        self.runtime = runtime


class ChatScreen(Screen):
    """Talk to the personas. Every binding is also in the command palette (ctrl+p)."""

    BINDINGS = [
        Binding("escape", "cancel_turn", "Cancel"),
        Binding("ctrl+n", "new_session", "New"),
        Binding("f2", "toggle_dashboard", "Pool"),
        Binding("f3", "toggle_hidden", "Hidden"),
        Binding("f4", "review", "Review"),
        Binding("f5", "toggle_workflow", "Flow"),
        Binding("ctrl+y", "copy_last", "Copy", show=False),
        Binding("ctrl+t", "edit_title", "Title", show=False),
        Binding("f1", "legend", "Keys"),
        Binding("pageup", "scroll('page_up')", "Scroll up", show=False),
        Binding("pagedown", "scroll('page_down')", "Scroll down", show=False),
        Binding("ctrl+home", "scroll('home')", "Oldest", show=False),
        Binding("ctrl+end", "scroll('end')", "Newest", show=False),
    ]

    def __init__(
        self,
        config: Config,
        *,
        db_path: Path | None = None,
        starting: bool = True,
    ) -> None:
        super().__init__()
        self._compositor = BoxedCompositor()  # a frame draws only the panes that changed
        self.config = config
        self.db_path = db_path
        self.starting = starting  # the app is starting a runtime for this screen
        self.runtime: ScreenRuntime | None = None  # the app's, handed over by RuntimeReady
        self.workflow = config.workflow
        self.personas = list(config.personas)
        self.records: dict[int, ChatMessage] = {}  # turn id -> record
        self.streaming: dict[str, ChatMessage] = {}  # persona -> its running turn
        self.waiting_first_token: set[int] = set()
        self._cancel: asyncio.Event | None = None
        self._busy = False
        self._user_count = 0
        self._state = "starting…"
        self._start_error = ""  # why the runtime could not start, if it could not
        self._status_line = ""  # what #status shows now
        self._pending: list[Any] = []
        self._flush_scheduled = False
        self._targets: list[str] = []  # who the running turn was addressed to
        self._started: set[str] = set()  # ... and who of them has started answering
        self._notes = 0

    # -- layout ---------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        colors = {name: p.color for name, p in self.config.personas.items()}
        with Vertical(id="main"):
            yield Static("", id="status", markup=False)
            with Horizontal(id="body"):
                yield Transcript(colors, wide=self.app.size.width >= WIDE_AT, id="transcript")
                dashboard = PoolDashboard(
                    [(d.name, d.memory_bytes) for d in self.config.pool.devices],
                    source=lambda: getattr(self.runtime, "pool", None),
                    running=lambda: list(self.streaming),
                    id="dashboard",
                )
                dashboard.display = False
                yield dashboard
            yield ProgressBar(total=None, show_eta=False, show_percentage=False, id="loading")
            yield PromptInput(
                self.personas,
                placeholder="Message (@architect @coder @critic @all; ↑ history, → complete)",
                id="prompt",
            )
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(Transcript).add_class("hide-hidden")
        self._show_loading(self.starting and self.runtime is None and not self._start_error)
        self.query_one("#prompt", PromptInput).focus()
        if not self.starting:
            self._state = "not started"
        self._update_status()

    def runtime_failed(self, error: str) -> None:
        """The app could not start the runtime: said here, never a crash (the user can still
        read and review)."""
        self._start_error = error
        self._state = "could not start (Enter shows why)"  # the whole error fits no line
        if self.is_mounted:
            self._show_loading(False)
            self._update_status()
        self._show_start_error()

    def _show_start_error(self) -> None:
        self.notify(
            f"{self._start_error}\nFix it, then restart hermes (Ctrl+Q quits; F4 still reviews).",
            title="hermes could not start",
            severity="error",
            timeout=30,
        )

    async def on_runtime_ready(self, message: RuntimeReady) -> None:
        self.runtime = message.runtime
        self._state = "ready"
        self._show_loading(False)
        self._update_status()  # the session's number is known before its messages show
        if self.runtime.restored is not None:
            await self._show_restored(self.runtime.restored)
            self._update_status()

    async def _show_restored(self, restored: Any) -> None:
        """A continued session: its messages on screen, its workflow, and the prompt
        addressed to the personas the last message went to."""
        transcript = self.query_one(Transcript)
        await transcript.clear()
        self.records.clear()
        self.streaming.clear()
        await transcript.add_all(records_from_rows(restored.messages))
        self.workflow = restored.workflow or self.workflow
        targets = restored.last_targets
        prompt = self.query_one("#prompt", PromptInput)
        if targets and targets != [self.config.default_persona] and not prompt.value:
            if targets == list(self.personas) and len(targets) > 1:
                prompt.prefill("@all ")
            else:
                prompt.prefill("".join(f"@{t} " for t in targets))
        for row in reversed(restored.messages):  # ↑ recalls what you said in this session
            if row.role == "user":
                prompt.history.insert(0, row.content)
        prompt.remember("")
        prompt.focus()  # mounting the restored messages must not leave focus in them
        n = sum(1 for m in restored.messages if not m.hidden)
        self.notify(f"continuing session {restored.session_id} ({n} messages)", timeout=3)

    async def continue_session(self, session_id: int) -> None:
        """Continue a stored session here (from the review screen's session view)."""
        if self.runtime is None:
            self.notify("still starting; try again in a moment", severity="warning")
            return
        if self._busy:
            self.notify("a turn is running: Esc cancels it first", severity="warning")
            return
        try:
            restored = await self.runtime.resume(session_id)
        except Exception as exc:
            self.notify(str(exc), title="cannot continue", severity="error")
            return
        await self._show_restored(restored)
        self._update_status()

    async def on_resize(self, event: Resize) -> None:
        await self.query_one(Transcript).set_wide(event.size.width >= WIDE_AT)

    def _show_loading(self, shown: bool) -> None:
        self.query_one("#loading", ProgressBar).display = shown

    def _update_status(self, draft: str | None = None) -> None:
        value = self.query_one("#prompt", PromptInput).value if draft is None else draft
        try:
            targets, _ = parse_mentions(value, self.personas, self.config.default_persona)
            to = " ".join(f"@{t}" for t in targets)
        except UnknownPersonaError as exc:
            to = f"⚠ {exc}"
        if self.runtime is None:
            session = "no session"
        elif self.runtime.session_id:
            title = self.runtime.title
            title = title if len(title) <= 24 else title[:23] + "…"
            session = f"session {self.runtime.session_id}" + (f" “{title}”" if title else "")
        else:
            session = "new session"
        running = " ".join(f"@{p}" for p in self.streaming)
        state = self._state + (f" · streaming {running}" if running else "")
        line = f"to {to} · {self.workflow} · {state} · {session}"
        if line != self._status_line:
            # One line of fixed height: no layout pass (typing changes it on @mentions only,
            # and a layout pass per key press showed in keypress-to-screen latency).
            self._status_line = line
            self.query_one("#status", Static).update(line, layout=False)

    @on(Input.Changed, "#prompt")
    def _draft_changed(self, event: Input.Changed) -> None:
        self._update_status(event.value)

    @property
    def idle(self) -> bool:
        """No turn running and every event it produced is on screen."""
        return not self._busy and not self._pending and not self._flush_scheduled

    # -- sending --------------------------------------------------------------------------
    @on(Input.Submitted, "#prompt")
    async def _submit(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        if not text:
            return
        if self.runtime is None:
            if self._start_error:
                self._show_start_error()
            else:
                self.notify("still starting; try again in a moment", severity="warning")
            return
        if self._busy:
            self.notify("a turn is running: Esc cancels it", severity="warning")
            return
        try:
            targets, _ = parse_mentions(text, self.personas, self.config.default_persona)
        except UnknownPersonaError as exc:
            self.notify(str(exc), severity="error")
            return
        prompt = self.query_one("#prompt", PromptInput)
        prompt.remember(text)
        # What was typed after Enter (in the same burst) is the start of the next message.
        sent, now = event.value, prompt.value
        prompt.value = now[len(sent) :] if now.startswith(sent) else ""
        self._user_count += 1
        record = ChatMessage(f"u{self._user_count}", "user", "you", text, tuple(targets), "done")
        await self.query_one(Transcript).add(record)
        self._busy = True
        self._cancel = asyncio.Event()
        self._targets = list(targets)
        self._started = set()
        self.run_worker(self._send(text, self._cancel, targets), name="send", exclusive=False)

    async def _send(self, text: str, cancel: asyncio.Event, targets: list[str]) -> None:
        try:
            results = await self.runtime.send(text, workflow=self.workflow, cancel=cancel)
            skipped = skipped_after_cancel(targets, results) if cancel.is_set() else None
            if skipped is not None:  # queued with the session's events: after the answer
                await self.receive(skipped)
        except Exception as exc:
            self.notify(f"{type(exc).__name__}: {exc}", title="turn failed", severity="error")
        finally:
            self._busy = False
            self._cancel = None
            if self.is_attached:  # the app may be closing
                self._show_loading(False)
                self._update_status()

    async def receive(self, event: Any) -> None:
        """The runtime's listener: called by the session for every event; returns at once.

        Events are buffered and applied in one batch every ``FLUSH_S`` (10 Hz): three
        streams at 200 tokens/s would otherwise put 600 messages a second on the screen's
        queue, ahead of key presses and repaints.
        """
        self._pending.append(event)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.set_timer(FLUSH_S, self._flush)

    async def _flush(self) -> None:
        try:
            while self._pending:  # events that arrive meanwhile are taken in the next round
                events, self._pending = self._pending, []
                tokens: dict[int, list[str]] = {}  # turn id -> pieces not yet shown
                for event in events:
                    if isinstance(event, TokenReceived):
                        tokens.setdefault(event.turn_id, []).append(event.text)
                        continue
                    if tokens:
                        await self._show_tokens(tokens)
                        tokens = {}
                    await self.on_session_event(SessionEvent(event))
                if tokens:
                    await self._show_tokens(tokens)
        finally:
            self._flush_scheduled = False

    async def _show_tokens(self, tokens: dict[int, list[str]]) -> None:
        transcript = self.query_one(Transcript)
        for turn_id, pieces in tokens.items():
            record = self.records.get(turn_id)
            if record is None:
                continue
            text = "".join(pieces)
            record.text += text
            record.tokens += len(pieces)
            self.query_one(PoolDashboard).note_tokens(len(pieces))
            if turn_id in self.waiting_first_token:
                self.waiting_first_token.discard(turn_id)
                if not self.waiting_first_token:
                    self._show_loading(False)
            view = transcript.view(record.key)
            if view is not None:
                await view.append(text)

    async def on_session_event(self, message: SessionEvent) -> None:
        event = message.event
        transcript = self.query_one(Transcript)
        dashboard = self.query_one(PoolDashboard)
        if isinstance(event, TokenReceived):
            await self._show_tokens({event.turn_id: [event.text]})
        elif isinstance(event, Skipped):
            names = " ".join(f"@{p}" for p in event.personas)
            self._notes += 1
            await transcript.add(
                ChatMessage(f"n{self._notes}", "note", "hermes", event.text, event.personas, "done")
            )
            dashboard.note_event(f"{time.strftime('%H:%M:%S')} skipped {names}")
        elif isinstance(event, TurnStarted):
            await self._turn_started(event, transcript)
            dashboard.note_event(f"{time.strftime('%H:%M:%S')} @{event.persona} started")
        elif isinstance(event, VerdictRaised):
            record = self.records.get(event.turn_id)
            if record is None:
                return
            record.verdicts.append(event.verdict)
            v = event.verdict
            dashboard.note_event(f"{time.strftime('%H:%M:%S')} @{event.persona} {v.code}")
            view = transcript.view(record.key)
            if view is not None:
                await view.add_verdict(v)
        elif isinstance(event, TurnEnded):
            record = self.records.get(event.turn_id)
            if record is None:
                return
            record.text, record.tokens = event.text, event.tokens
            record.status, record.code, record.detail = event.status, event.code, event.detail
            self.streaming.pop(event.persona, None)
            self.waiting_first_token.discard(event.turn_id)
            if not self.waiting_first_token:
                self._show_loading(False)
            end = f"{event.status}" + (f" {event.code}" if event.code else "")
            dashboard.note_event(f"{time.strftime('%H:%M:%S')} @{event.persona} {end}")
            view = transcript.view(record.key)
            if view is not None:
                await view.finish()
            self._update_status()

    async def _turn_started(self, event: TurnStarted, transcript: Transcript) -> None:
        if event.hidden:
            # The sentinel's correction request: hidden unless asked for (F3); the previous
            # answer's marks show which correction was sent.
            for earlier in reversed(transcript.records):
                if earlier.role == "assistant" and earlier.persona == event.persona:
                    earlier.correction = event.prompt
                    view = transcript.view(earlier.key)
                    if view is not None:
                        view.show_correction()
                    break
            note = ChatMessage(
                f"c{event.turn_id}",
                "sentinel",
                "sentinel",
                event.prompt,
                (event.persona,),
                "done",
                hidden=True,
            )
            await transcript.add(note)
        record = ChatMessage(
            f"t{event.turn_id}",
            "assistant",
            event.persona,
            retry=event.hidden,
            prompt=event.prompt,
        )
        self.records[event.turn_id] = record
        self.streaming[event.persona] = record
        self._started.add(event.persona)
        self.waiting_first_token.add(event.turn_id)
        self._show_loading(True)
        await transcript.add(record)
        self._update_status()

    # -- actions --------------------------------------------------------------------------
    def action_cancel_turn(self) -> None:
        if self.query("HelpPanel"):  # Esc closes the keys panel first
            self.app.action_hide_help_panel()
            return
        if self._cancel is not None and not self._cancel.is_set():
            self._cancel.set()
            running = list(self.streaming)
            waiting = [t for t in self._targets if t not in self._started]
            what = " ".join(f"@{p}" for p in running) or "the turn"
            more = f"; {' '.join(f'@{p}' for p in waiting)} will be skipped" if waiting else ""
            self.notify(f"cancelling {what}{more}", timeout=3)

    async def action_new_session(self) -> None:
        if self.runtime is None:
            return
        if self._cancel is not None:
            self._cancel.set()
        await self.runtime.new_session()
        await self.query_one(Transcript).clear()
        self.records.clear()
        self.streaming.clear()
        self.query_one("#prompt", PromptInput).focus()
        self.notify("new session (stored with its first message)", timeout=2)
        self._update_status()

    def action_scroll(self, how: str) -> None:
        """Scroll the transcript (PageUp/PageDown; Home/End on an empty prompt)."""
        self.query_one(Transcript).scroll_panes(how)

    def on_key(self, event: events.Key) -> None:
        """A printable key typed while the transcript has focus goes to the prompt (except
        the focused message's own keys, c and m)."""
        focused = self.focused
        prompt = self.query_one("#prompt", PromptInput)
        if focused is None or focused is prompt or not event.is_printable or not event.character:
            return
        if not any(focused is w or w in focused.ancestors for w in self.query(Transcript)):
            return
        if any(event.key == b.key for b in getattr(focused, "BINDINGS", ())):
            return
        event.stop()
        event.prevent_default()
        prompt.focus()
        prompt.insert_text_at_cursor(event.character)

    def action_legend(self) -> None:
        """Every key, and what each glyph and mark style means."""
        from hermes_tui.screens.dialogs import LegendScreen

        self.app.push_screen(LegendScreen())

    def action_edit_title(self) -> None:
        """Rename this session."""
        from hermes_tui.screens.dialogs import TitleScreen

        if self.runtime is None:
            return

        async def done(title: str | None) -> None:
            if title is not None and self.runtime is not None:
                await self.runtime.set_title(title)
                self._status_line = ""
                self._update_status()

        self.app.push_screen(TitleScreen(self.runtime.title), done)

    def action_toggle_dashboard(self) -> None:
        dashboard = self.query_one(PoolDashboard)
        dashboard.set_shown(not dashboard.display)

    def action_toggle_hidden(self) -> None:
        transcript = self.query_one(Transcript)
        transcript.toggle_class("hide-hidden")
        shown = not transcript.has_class("hide-hidden")
        self.notify("correction turns shown" if shown else "correction turns hidden", timeout=2)

    def action_toggle_workflow(self) -> None:
        self.workflow = WORKFLOWS[(WORKFLOWS.index(self.workflow) + 1) % len(WORKFLOWS)]
        self._update_status()

    def action_copy_last(self) -> None:
        record = self.query_one(Transcript).latest_answer()
        if record is None:
            self.notify("nothing to copy yet", timeout=2)
            return
        from hermes_tui.outbound import display

        self.app.copy_to_clipboard(display(record.text))
        self.notify(f"copied @{record.persona}'s last answer", timeout=2)

    def action_review(self) -> None:
        from hermes_tui.screens.review import ReviewScreen

        store = getattr(self.runtime, "store", None)
        db = self.db_path or self.config.db_path
        personas = tuple(self.config.personas)
        self.app.push_screen(ReviewScreen(store=store, db_path=db, personas=personas))
