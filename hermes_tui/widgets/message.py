"""One message in the chat: a header, the Markdown body streamed live, and verdict marks.

While a turn streams, pieces go to a ``MarkdownBody``, which renders each finished block once
and only re-renders the block still being written; when the turn ends the body gets one full
``update()`` with the final text (the last render is from scratch, so nothing stale is left).
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Static

from agents.events import MessageStatus
from hermes_tui.outbound import display as sanitize_for_terminal
from hermes_tui.outbound import redaction, scrub
from hermes_tui.terminal_text import split_unfinished
from hermes_tui.widgets.inline_marks import inline_mark
from hermes_tui.widgets.markdown_body import MarkdownBody
from hermes_tui.widgets.marks import VerdictMark, describe
from hermes_tui.widgets.records import ChatMessage

# How far back a secret may start before the painted end and still be caught when it
# completes (a key's longest shape is well under this; a PEM block re-renders).
SECRET_LOOKBACK = 512

STATUS_ICON: dict[MessageStatus, str] = {
    "streaming": "…",
    "done": "✓",
    "halted": "✖",
    "error": "✗",
    "cancelled": "⊘",
    "interrupted": "↯",
}


class MessageView(Vertical, can_focus=True):
    """Shows one ``ChatMessage``; focus it and press ``c`` to copy, ``m`` to read its marks."""

    BINDINGS = [
        Binding("c", "copy", "Copy"),
        Binding("m", "marks", "Marks"),
    ]
    DEFAULT_CSS = """
    MessageView { height: auto; margin: 0 0 1 0; padding: 0 0 0 1; border-left: wide $panel; }
    MessageView:focus { background: $boost; border-left: thick $accent; }
    MessageView:focus > .msg-header { text-style: bold reverse; }
    MessageView.-note { border-left: none; margin: 0 0 1 1; }
    MessageView.-note > .msg-header { color: $text-warning; text-style: italic; }
    MessageView.-user { border-left: wide $secondary; color: $text-muted; }
    MessageView.hidden-turn { border-left: dashed $warning; opacity: 80%; }
    MessageView > .msg-header { height: 1; text-style: bold; }
    MessageView > MarkdownBody { margin: 0; padding: 0; }
    MessageView > .halt-code { color: $text-error; text-style: bold; display: none; }
    MessageView > .halt-code.-shown { display: block; }
    MessageView > .marks { height: auto; }
    MessageView.-worst-minor > .msg-header { color: $text-warning; }
    MessageView.-worst-critical > .msg-header { color: $text-error; }
    """

    def __init__(self, record: ChatMessage, *, color: str = "white") -> None:
        classes = f"persona-{record.persona}"
        if record.role == "note":
            classes += " -note"
        elif record.role != "assistant":
            classes += " -user"
        if record.hidden:
            classes += " hidden-turn"
        super().__init__(classes=classes)
        self.record = record
        self.color = color
        self._unpainted: list[str] = []
        self._held = ""  # the end of the painted text that may continue (see split_unfinished)
        self._painted = 0  # raw characters of the record's text shown so far

    def compose(self) -> ComposeResult:
        yield Static(self._header(), classes="msg-header", markup=False)
        if self.record.role == "note":
            return
        if self.record.role != "assistant":
            yield Static(sanitize_for_terminal(self.record.text), markup=False)
            return
        yield MarkdownBody(
            sanitize_for_terminal(self.record.text), streaming=not self.record.finished
        )
        yield Static("", classes="halt-code", markup=False)
        with Vertical(classes="marks"):
            for v in self.record.verdicts:
                yield VerdictMark(v, self.record.text, correction=self.record.correction)

    def on_mount(self) -> None:
        if self.record.role != "note":
            self.styles.border_left = ("wide", self.color)
        if self.record.finished:  # rebuilt (a layout switch): show where it stopped again
            self._show_halt()
        self._refresh_status()
        self.sync_marks()

    def sync_marks(self) -> None:
        """Style every verdict's span inside the body; the focused or hovered mark's as active."""
        r = self.record
        bodies = self.query(MarkdownBody)
        if r.role != "assistant" or not bodies:
            return
        focused = self.screen.focused if self.is_attached else None
        active = next(
            (i for i, m in enumerate(self.query(VerdictMark)) if m is focused or m.hovered), -1
        )
        shown = scrub(r.text)  # what the body shows (same length: spans stay true)
        marks = [inline_mark(shown, v.span, v.severity, i) for i, v in enumerate(r.verdicts)]
        bodies.first().set_marks(marks, active)

    def describe_mark(self, index: int) -> str:
        """What a mark means (the body's tooltip when the mouse is over its span)."""
        if not (0 <= index < len(self.record.verdicts)):
            return ""
        return describe(self.record.verdicts[index], self.record.correction)

    def _show_halt(self) -> None:
        """Under a halted, failed or cancelled answer: where and why it stopped."""
        r = self.record
        halts = self.query(".halt-code")
        if r.status not in ("halted", "error", "cancelled", "interrupted") or not halts:
            return
        label = {
            "halted": "✖ halted",
            "error": "✗ error",
            "cancelled": "⊘ cancelled",
            "interrupted": "↯ interrupted",
        }
        where = f"{label[r.status]} here" + (f": {r.code}" if r.code else "")
        if r.detail:
            where += f" — {sanitize_for_terminal(r.detail)}"
        halt = halts.first(Static)
        halt.update(where)
        halt.add_class("-shown")

    # -- header -----------------------------------------------------------------------
    def _header(self) -> str:
        r = self.record
        to = " ".join(f"@{t}" for t in r.targets)
        if r.role == "user":
            return f"you → {to}" if to else "you"
        if r.role == "sentinel":
            return f"sentinel → {to} (hidden correction request)"
        if r.role == "note":  # something hermes says about the turn (what was skipped)
            return r.text
        parts = [r.persona]
        if r.retry:
            parts.append("(after a correction)")
        parts.append(STATUS_ICON.get(r.status, r.status))
        if r.finished:
            parts.append(f"{r.tokens} tok")
        if r.verdicts:
            minor = sum(v.severity == "minor" for v in r.verdicts)
            crit = len(r.verdicts) - minor
            marks = []
            if crit:
                marks.append(f"✖{crit}")
            if minor:
                marks.append(f"⚑{minor}")
            parts.append(" ".join(marks))
        return " ".join(parts)

    def _refresh_status(self) -> None:
        self.query_one(".msg-header", Static).update(self._header())
        worst = self.record.worst
        self.set_class(worst == "minor", "-worst-minor")
        self.set_class(worst == "critical", "-worst-critical")

    # -- streaming ----------------------------------------------------------------------
    async def append(self, piece: str) -> None:
        """Take a streamed piece (the record already holds it); ``paint()`` shows it."""
        self._unpainted.append(piece)

    @property
    def unpainted(self) -> bool:
        return bool(self._unpainted)

    def paint(self) -> None:
        """Show the pieces taken since the last paint (the transcript decides when)."""
        raw, self._unpainted = self._held + "".join(self._unpainted), []
        ready, self._held = split_unfinished(raw)  # a \r\n or an escape split across paints
        if redaction():
            ready = self._paint_redacted(ready)
            if ready is None:
                return
        self._painted += len(ready)
        for body in self.query(MarkdownBody):  # none before compose(), which uses the record
            body.append(sanitize_for_terminal(ready))

    def _paint_redacted(self, ready: str) -> str | None:
        """``ready`` with secrets hidden, judged with the text painted before it; None when a
        secret reaches back into painted text (then the whole body is drawn again, hidden).

        The last word is held back until it ends: a key still arriving is never shown in part.
        """
        lo = max(0, len(ready) - SECRET_LOOKBACK)  # a longer word is no key: show it
        cut = max(ready.rfind(" ", lo), ready.rfind("\n", lo), ready.rfind("\t", lo)) + 1
        cut = cut or lo
        ready, self._held = ready[:cut], ready[cut:] + self._held
        if not ready:
            return ""
        text = self.record.text
        start = max(0, self._painted - SECRET_LOOKBACK)
        window = text[start : self._painted] + ready
        hidden = scrub(window)
        if hidden == window:
            return ready
        before = self._painted - start
        if hidden[:before] == window[:before]:
            return hidden[before:]  # same length: the new part's secrets only
        self._painted += len(ready)
        for body in self.query(MarkdownBody):
            body.update(sanitize_for_terminal(text[: self._painted]), final=False)
        return None

    async def finish(self) -> None:
        """The turn ended: render the final text once and show a halt code."""
        self._unpainted, self._held = [], ""  # the final render below shows the whole text
        self._painted = len(self.record.text)
        r = self.record
        bodies = self.query(MarkdownBody)
        if r.role != "assistant" or not bodies:
            return
        bodies.first().update(sanitize_for_terminal(r.text))
        self.sync_marks()
        self._show_halt()
        for mark in self.query(VerdictMark):
            mark.update_context(r.text, r.correction)
        self._refresh_status()

    async def add_verdict(self, verdict: object) -> None:
        """Show a verdict as soon as the sentinel raises it (the record already holds it)."""
        if self.record.role != "assistant":
            return
        containers = self.query(".marks")
        if not containers:  # not composed yet: compose() draws every verdict of the record
            return
        mark = VerdictMark(verdict, self.record.text, correction=self.record.correction)
        await containers.first(Vertical).mount(mark)
        self.sync_marks()
        self._refresh_status()

    def show_correction(self) -> None:
        for mark in self.query(VerdictMark):
            mark.update_context(self.record.text, self.record.correction)

    # -- actions ------------------------------------------------------------------------
    def action_copy(self) -> None:
        self.app.copy_to_clipboard(sanitize_for_terminal(self.record.text))  # redacted
        self.notify(f"copied {len(self.record.text)} characters", timeout=2)

    def action_marks(self) -> None:
        marks = list(self.query(VerdictMark))
        if marks:
            marks[0].focus()
        else:
            self.notify("no sentinel marks on this message", timeout=2)
