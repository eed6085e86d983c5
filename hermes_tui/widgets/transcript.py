"""The chat transcript: one interleaved column when narrow, one pane per persona when wide.

At 80 columns three panes would be ~26 cells each, too narrow for code, so below
``WIDE_AT`` columns every message goes into one column with a coloured left edge per
persona; from ``WIDE_AT`` columns on each persona gets its own pane and the three streams
are side by side. Switching rebuilds the views from the records (``ChatMessage``).

Streamed text is painted pane by pane: with three panes, one pane gets its new text every
``PAINT_S / 3`` seconds. Each paint scrolls a pane, and Textual repaints whatever moved, so
painting all three at once made one frame three times as long, and a key press arriving
then waited for all of it (``benchmarks/bench_tui.py``).
"""

from __future__ import annotations

import asyncio

from textual.app import ComposeResult
from textual.containers import Container, Horizontal, VerticalScroll
from textual.timer import Timer

from hermes_tui.widgets.message import MessageView
from hermes_tui.widgets.records import ChatMessage

WIDE_AT = 160
PAINT_S = 0.1  # each pane shows newly streamed text ten times a second


class PersonaPane(VerticalScroll):
    """A scrolling column of messages that stays pinned to the newest one."""

    DEFAULT_CSS = """
    PersonaPane { height: 1fr; border: round $panel; padding: 0 1; }
    PersonaPane:focus-within { border: round $accent; }
    """


class Transcript(Container):
    DEFAULT_CSS = """
    Transcript { height: 1fr; }
    Transcript > Horizontal { height: 1fr; }
    Transcript PersonaPane.-wide { width: 1fr; }
    Transcript.hide-hidden MessageView.hidden-turn { display: none; }
    """

    def __init__(self, personas: dict[str, str], *, wide: bool = False, **kwargs) -> None:
        """``personas`` maps each persona name to its colour, in config order."""
        super().__init__(**kwargs)
        self.personas = personas
        self.wide = wide
        self.records: list[ChatMessage] = []
        self.views: dict[str, MessageView] = {}
        self._ticker: Timer | None = None
        # add() runs from the chat's event flush, set_wide() from a resize: never interleaved
        self._layout_lock = asyncio.Lock()
        self.paints = 0  # messages painted with new text (the TUI benchmark reports the rate)
        self._tick = 0

    def compose(self) -> ComposeResult:
        if self.wide:
            with Horizontal():
                for name, color in self.personas.items():
                    pane = PersonaPane(id=f"pane-{name}", classes="-wide")
                    pane.border_title = f"@{name}"
                    pane.styles.border_title_color = color
                    yield pane
        else:
            pane = PersonaPane(id="pane-all")
            pane.border_title = " · ".join(f"@{n}" for n in self.personas)
            yield pane

    def on_mount(self) -> None:
        for pane in self.query(PersonaPane):
            pane.anchor()
        if self._ticker is None:
            slots = max(3, len(self.personas))
            self._ticker = self.set_interval(PAINT_S / slots, self._paint_next, name="paint")

    def _paint_next(self) -> None:
        """Paint the streamed text of the pane whose turn it is. (A key press does not wait
        for this: the prompt is drawn as soon as the key is handled, see
        ``hermes_tui.screens.compositor.draw_now``.)"""
        self._tick = slot = (self._tick + 1) % max(3, len(self.personas))
        panes = list(self.query(PersonaPane))
        if slot >= len(panes):
            return
        pane = panes[slot]
        for view in self.views.values():
            if view.unpainted and view.parent is pane:
                view.paint()
                self.paints += 1

    def _panes_for(self, record: ChatMessage) -> list[PersonaPane]:
        if not self.wide:
            return [self.query_one("#pane-all", PersonaPane)]
        names = record.targets if record.role in ("user", "note") else (record.persona,)
        return [self.query_one(f"#pane-{n}", PersonaPane) for n in names if n in self.personas]

    def _view(self, record: ChatMessage) -> MessageView:
        return MessageView(record, color=self.personas.get(record.persona, "gray"))

    async def add(self, record: ChatMessage) -> MessageView | None:
        """Show a new message; returns its view (the last one for a user message)."""
        async with self._layout_lock:  # not while set_wide() rebuilds the panes
            return await self._add(record)

    async def _add(self, record: ChatMessage) -> MessageView | None:
        self.records.append(record)
        view = None
        for pane in self._panes_for(record):
            view = self._view(record)
            await pane.mount(view)
            if record.role == "user":  # what you just sent, and the answer, come into view
                pane.anchor()
        if view is not None and record.role == "assistant":
            self.views[record.key] = view
        return view

    def view(self, key: str) -> MessageView | None:
        return self.views.get(key)

    async def set_wide(self, wide: bool) -> None:
        """Switch layouts, rebuilding every message from its record."""
        async with self._layout_lock:
            if wide == self.wide:
                return
            self.wide = wide
            self.views.clear()
            await self.recompose()
            records, self.records = self.records, []
            for record in records:
                await self._add(record)
            self.on_mount()

    async def add_all(self, records: list[ChatMessage]) -> None:
        """Show many messages at once (a continued session), newest in view."""
        async with self._layout_lock:
            for record in records:
                await self._add(record)
            for pane in self.query(PersonaPane):
                pane.anchor()

    def scroll_panes(self, how: str) -> None:
        """PageUp/PageDown/Home/End from the prompt: every pane scrolls."""
        for pane in self.query(PersonaPane):
            if how == "page_up":
                pane.scroll_page_up(animate=False)
            elif how == "page_down":
                pane.scroll_page_down(animate=False)
            elif how == "home":
                pane.scroll_home(animate=False)
            else:
                pane.scroll_end(animate=False)

    async def clear(self) -> None:
        """Forget every message (a new session)."""
        async with self._layout_lock:
            self.records.clear()
            self.views.clear()
            for pane in self.query(PersonaPane):
                await pane.remove_children()

    def latest_answer(self) -> ChatMessage | None:
        for record in reversed(self.records):
            if record.role == "assistant" and not record.hidden:
                return record
        return None
