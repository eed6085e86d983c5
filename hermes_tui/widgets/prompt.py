"""The message input: history on up/down and ``@persona`` completion (a Textual Suggester)."""

from __future__ import annotations

import re

from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.reactive import Reactive
from textual.suggester import Suggester
from textual.widgets import Input

from hermes_tui.screens.compositor import draw_now
from hermes_tui.terminal_text import sanitize_for_terminal

_LAST_MENTION = re.compile(r"(?:^|\s)@([\w-]*)$")


class PersonaSuggester(Suggester):
    """Completes the ``@mention`` being typed at the end of the input (right arrow accepts)."""

    def __init__(self, names: list[str]) -> None:
        super().__init__(use_cache=False, case_sensitive=True)
        self.names = [*names, "all"]

    async def get_suggestion(self, value: str) -> str | None:
        match = _LAST_MENTION.search(value)
        if match is None:
            return None
        typed = match.group(1)
        for name in self.names:
            if name.startswith(typed) and name != typed:
                return value + name[len(typed) :] + " "
        return None


class PromptInput(Input):
    """An Input that remembers what was sent; up/down walk through it like a shell."""

    BINDINGS = [
        Binding("up", "history(-1)", "Previous", show=False),
        Binding("down", "history(1)", "Next", show=False),
    ]

    # Input sets its virtual size on every key press, and Widget declares that reactive with
    # layout=True: a layout pass of the whole screen per key. The prompt has a fixed size
    # (one line, full width), so a repaint is enough; measured in benchmarks/bench_tui.py.
    virtual_size = Reactive(Size(0, 0), layout=False)

    def __init__(self, personas: list[str], **kwargs) -> None:
        # No select-all on focus: a key typed from the transcript lands here, and the next
        # one must not replace it.
        kwargs.setdefault("select_on_focus", False)
        super().__init__(suggester=PersonaSuggester(personas), **kwargs)
        self.history: list[str] = []
        self._index = 0
        self._draft = ""
        self._prefill: str | None = None

    def prefill(self, text: str) -> None:
        """Offer ``text`` (e.g. a continued session's ``@coder ``) as the start of the next
        message. Typing a mention first replaces it: ``@critic hi`` goes to the critic alone,
        not to ``@coder @critic``; anything else is added after it."""
        self.value = text
        self.cursor_position = len(text)
        self._prefill = text

    async def _on_key(self, event: events.Key) -> None:
        """Every key typed into the prompt acts here, in the order typed, and the prompt is
        drawn on the terminal at once (``draw_now``: a key no longer waits for the next frame,
        which may also lay out and repaint a scrolled pane).

        The prompt's own keys (Backspace, Delete, arrows, Home/End, Ctrl+W, Enter...) too:
        Input inserts a printable key in its own handler, but leaves every other key to bubble
        up through the DOM (one message queue per widget) to the app, which only then finds
        the binding. Keys that arrive in one burst are all queued before the first is
        handled, so a letter typed after a Backspace was inserted before the Backspace ran
        and the Backspace deleted it (or Enter sent letters typed after it)."""
        if event.is_printable:  # as Input's own handler (skipped below), then drawn at once
            event.stop()
            event.prevent_default()
            assert event.character is not None
            self._restart_blink()
            if self.selection.is_empty:
                self.insert_text_at_cursor(event.character)
            else:
                self.replace(event.character, *self.selection)
            draw_now(self)
            return
        for binding in self._bindings.key_to_bindings.get(event.key, ()):
            if not binding.priority and await self.app.run_action(binding.action, self):
                event.stop()
                event.prevent_default()  # also skips Input's handler
                if self.is_attached:
                    draw_now(self)
                return

    def insert_text_at_cursor(self, text: str) -> None:
        if self._prefill is not None:
            if text.startswith("@") and self.value == self._prefill:
                self.value = ""
            self._prefill = None
        super().insert_text_at_cursor(text)

    def _on_paste(self, event: events.Paste) -> None:
        """Paste as one line of plain text. Input keeps the first line only, and would keep
        escape sequences and control characters, which the terminal then acts on when the
        prompt is drawn (the line shows out of order, and may stop responding)."""
        event.stop()
        event.prevent_default()  # Input's own handler would insert it a second time
        text = " ".join(sanitize_for_terminal(event.text).replace("\t", " ").split("\n"))
        if not text:
            return
        if self.selection.is_empty:
            self.insert_text_at_cursor(text)
        else:
            self.replace(text, *self.selection)

    def action_home(self, select: bool = False) -> None:
        """Home: the start of the draft, or the oldest message when the draft is empty."""
        if not self.value and not select:
            self.call_later(self.screen.run_action, "scroll('home')")  # the chat scrolls
            return
        super().action_home(select)

    def action_end(self, select: bool = False) -> None:
        """End: the end of the draft, or the newest message when the draft is empty."""
        if not self.value and not select:
            self.call_later(self.screen.run_action, "scroll('end')")
            return
        super().action_end(select)

    def remember(self, text: str) -> None:
        if text and (not self.history or self.history[-1] != text):
            self.history.append(text)
        self._index = len(self.history)
        self._draft = ""

    def action_history(self, step: int) -> None:
        if not self.history:
            return
        if self._index == len(self.history):
            self._draft = self.value
        self._index = max(0, min(len(self.history), self._index + step))
        self.value = self._draft if self._index == len(self.history) else self.history[self._index]
        self.cursor_position = len(self.value)
