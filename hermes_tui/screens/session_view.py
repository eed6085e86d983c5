"""One stored session: its transcript with every verdict span marked, its verdicts, export.

Opened from the review screen's list (``review.ReviewScreen``); choosing a verdict jumps to
its span; ``c`` continues the session in the chat.
"""

from __future__ import annotations

import datetime as dt
import errno
import os
from pathlib import Path
from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Sparkline, Static

from hermes_tui.outbound import display as sanitize_for_terminal
from hermes_tui.outbound import export as export_safe
from hermes_tui.widgets.marks import MarkedText


def fmt_time(ts: float, short: bool = False) -> str:
    return dt.datetime.fromtimestamp(ts).strftime("%m-%d %H:%M" if short else "%Y-%m-%d %H:%M")


class MessageBlock(Vertical):
    """One stored message in the session view: a header and the marked text."""

    DEFAULT_CSS = """
    MessageBlock { height: auto; margin-bottom: 1; border-left: wide $panel; }
    MessageBlock.hidden { border-left: dashed $warning; }
    MessageBlock > .block-header { text-style: bold; color: $text-accent; }
    MessageBlock > .halt { color: $text-error; text-style: bold; padding: 0 1; }
    """

    def __init__(self, message: Any) -> None:
        super().__init__(classes="hidden" if message.hidden else "")
        self.message = message
        self.verdicts = [v.to_verdict() for v in message.verdicts]

    def compose(self) -> ComposeResult:
        m = self.message
        header = f"#{m.id} {m.role} {m.persona} · {m.status}" + (" · hidden" if m.hidden else "")
        if m.tokens:
            header += f" · {m.tokens} tok"
        yield Static(header, classes="block-header", markup=False)
        yield MarkedText(m.content, self.verdicts)
        if m.error_code:
            yield Static(f"✖ stopped here: {m.error_code}", classes="halt", markup=False)


class SessionScreen(Screen):
    """One session: the marked transcript and its verdicts. Enter on a verdict jumps to it."""

    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("ctrl+e", "export('markdown')", "Export .md"),
        Binding("ctrl+j", "export('json')", "Export .json"),
        Binding("f3", "toggle_hidden", "Hidden"),
        Binding("c", "continue_session", "Continue"),
    ]

    def __init__(
        self,
        store: Any,
        session_id: int,
        *,
        message_id: int | None = None,
        verdict_id: int | None = None,
        export_dir: Path | None = None,
    ) -> None:
        super().__init__()
        self.store = store
        self.session_id = session_id
        self.message_id = message_id
        self.verdict_id = verdict_id
        self.export_dir = export_dir
        self.include_hidden = False
        self.verdict_rows: list[Any] = []

    def compose(self) -> ComposeResult:
        with Vertical(id="session"):
            yield Static("", id="session-title", markup=False)
            yield Sparkline([], id="timeline")
            yield DataTable(id="verdicts", cursor_type="row", zebra_stripes=True)
            yield VerticalScroll(id="messages")
        yield Footer()

    async def on_mount(self) -> None:
        await self.load()

    async def load(self) -> None:
        session = await self.store.get_session(self.session_id)
        if session is None:
            self.query_one("#session-title", Static).update(f"no session {self.session_id}")
            return
        title = sanitize_for_terminal(session.title or f"session {session.id}")
        self.query_one("#session-title", Static).update(
            f"{title} · {fmt_time(session.started)} · {' '.join(session.personas)} · "
            f"⚑ {session.minor} minor · ✖ {session.critical} critical"
        )
        self.query_one("#timeline", Sparkline).data = await self.store.verdict_timeline(
            self.session_id, 40
        )
        messages = await self.store.get_transcript(
            self.session_id, include_hidden=self.include_hidden
        )
        box = self.query_one("#messages", VerticalScroll)
        await box.remove_children()
        await box.mount_all([MessageBlock(m) for m in messages])
        table = self.query_one("#verdicts", DataTable)
        table.clear(columns=True)
        table.add_columns("severity", "code", "check", "persona", "span", "detail")
        self.verdict_rows = [v for m in messages for v in m.verdicts]
        for v in self.verdict_rows:
            table.add_row(
                v.severity,
                v.code,
                v.check_name,
                v.persona,
                f"{v.span_start}-{v.span_end}",
                sanitize_for_terminal(v.detail).replace("\n", " ")[:60],
                key=str(v.id),
            )
        table.focus()
        if self.verdict_id is not None:
            for i, v in enumerate(self.verdict_rows):
                if v.id == self.verdict_id:
                    table.move_cursor(row=i)
                    self.call_after_refresh(self.jump_to, v)
        elif self.message_id is not None:
            self.call_after_refresh(self._scroll_to_message, self.message_id)

    def _block(self, message_id: int | None) -> MessageBlock | None:
        for block in self.query(MessageBlock):
            if block.message.id == message_id:
                return block
        return None

    def _scroll_to_message(self, message_id: int) -> None:
        block = self._block(message_id)
        if block is not None:
            self.query_one("#messages", VerticalScroll).scroll_to_widget(block, top=True)

    def jump_to(self, verdict_row: Any, tries: int = 5) -> None:
        """Highlight the verdict's span and scroll it into view, wherever it is."""
        block = self._block(verdict_row.message_id)
        if block is None:
            self.notify("that verdict's message is hidden: F3 shows hidden turns")
            return
        for other in self.query(MarkedText):
            other.activate(-1)
        marked = block.query_one(MarkedText)
        index = next(
            (i for i, v in enumerate(block.message.verdicts) if v.id == verdict_row.id), -1
        )
        marked.activate(index)
        scroll = self.query_one("#messages", VerticalScroll)
        if not marked.size.width or not scroll.size.height:
            if tries:  # not laid out yet (the session just opened): after the next refresh
                self.call_after_refresh(self.jump_to, verdict_row, tries - 1)
            return
        # The span's row inside the wrapped text, then its row in the scrolled content.
        line = marked.line_of(index)
        top = marked.virtual_region.y + line  # relative to the scroll's content
        node = marked.parent
        while node is not None and node is not scroll:
            top += node.virtual_region.y
            node = node.parent
        wanted = max(0, top - min(3, scroll.size.height // 3))
        scroll.scroll_to(y=wanted, animate=False, immediate=True)

    @on(DataTable.RowHighlighted, "#verdicts")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        if 0 <= event.cursor_row < len(self.verdict_rows):
            self.jump_to(self.verdict_rows[event.cursor_row])

    def action_back(self) -> None:
        """Back to the session list."""
        self.app.pop_screen()

    async def action_continue_session(self) -> None:
        """Continue this session in the chat (its histories restored)."""
        chat = getattr(self.app, "chat", None)
        if chat is None:  # `hermes review` on its own: the CLI opens the chat on it
            self.app.exit(result=("continue", self.session_id))
            return
        while len(self.app.screen_stack) > 1:
            self.app.pop_screen()
        await chat.continue_session(self.session_id)

    async def action_toggle_hidden(self) -> None:
        """Show or hide the sentinel's hidden correction turns."""
        self.include_hidden = not self.include_hidden
        await self.load()

    async def action_export(self, fmt: str) -> None:
        """Export this session as Markdown or JSON into the current directory."""
        from hermes_tui.export import export_session

        text = export_safe(await export_session(self.store, self.session_id, fmt), fmt)
        suffix = "json" if fmt == "json" else "md"
        folder = self.export_dir or Path.cwd()
        try:
            path = write_private(folder, f"hermes-session-{self.session_id}", suffix, text)
        except OSError as exc:
            self.notify(f"cannot export to {folder}: {exc.strerror}", severity="error")
            return
        self.last_export = path
        self.notify(f"exported to {path}", timeout=4)


def write_private(folder: Path, stem: str, suffix: str, text: str) -> Path:
    """Write ``stem.suffix`` in ``folder`` readable by the owner only (a transcript is as
    private as the database it came from), never over an existing file: an earlier export
    keeps its name and this one becomes ``stem-2.suffix``, ``stem-3.suffix``, ..."""
    for n in range(1, 10_000):
        path = folder / (f"{stem}.{suffix}" if n == 1 else f"{stem}-{n}.{suffix}")
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            continue
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        return path
    raise FileExistsError(errno.EEXIST, "too many earlier exports", str(folder))
