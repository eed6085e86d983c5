"""Sentinel verdict marks: a quoted span styled by severity, and text with marked spans.

In the chat each span is styled inside the message body (``inline_marks``) and the verdicts
are also listed under it, each quoting the offending span in context; focusing or hovering
one explains it and shows its span in the body as the active mark. The review screen shows
whole messages as plain text with every span highlighted (``MarkedText``).
"""

from __future__ import annotations

from typing import Any

from textual.content import Content
from textual.widget import Widget

from hermes_tui.outbound import inline, scrub

CONTEXT = 24  # characters of context either side of a quoted span


def _one_line(text: str) -> str:
    return inline(text).replace("\n", "⏎").replace("\t", " ")


def quote(text: str, span: tuple[int, int]) -> tuple[str, str, str]:
    """(before, span, after) on one line, the context trimmed to CONTEXT characters."""
    text = scrub(text)  # whole, before slicing: a secret cut in two still matches
    start, end = max(0, span[0]), max(span[0], min(span[1], len(text)))
    before = text[max(0, start - CONTEXT) : start]
    marked = text[start:end] or "∅"
    if len(marked) > 3 * CONTEXT:
        marked = marked[: 3 * CONTEXT] + "…"
    after = text[end : end + CONTEXT]
    lead = "…" if start > CONTEXT else ""
    tail = "…" if end + CONTEXT < len(text) else ""
    return lead + _one_line(before), _one_line(marked), _one_line(after) + tail


class VerdictMark(Widget, can_focus=True):
    """One verdict under a message. Focus it (tab) to read the check, detail and correction."""

    COMPONENT_CLASSES = {"verdict-mark--span", "verdict-mark--label"}
    DEFAULT_CSS = """
    VerdictMark { height: auto; padding: 0 1; }
    VerdictMark > .verdict-mark--label { text-style: bold; }
    VerdictMark.verdict-minor > .verdict-mark--span {
        background: $warning-muted; text-style: underline;
    }
    VerdictMark.verdict-critical > .verdict-mark--span {
        background: $error; color: $text; text-style: bold underline;
    }
    VerdictMark.verdict-minor > .verdict-mark--label { color: $text-warning; }
    VerdictMark.verdict-critical > .verdict-mark--label { color: $text-error; }
    VerdictMark:focus { background: $boost; }
    """

    def __init__(self, verdict: Any, text: str, *, correction: str = "") -> None:
        super().__init__(classes=f"verdict-{verdict.severity}")
        self.verdict = verdict
        self.text = text
        self.correction = correction

    def update_context(self, text: str, correction: str) -> None:
        self.text, self.correction = text, correction
        self.refresh(layout=True)

    hovered = False

    def on_focus(self) -> None:
        self.refresh(layout=True)
        self.scroll_visible()
        self._tell_message()

    def on_blur(self) -> None:
        self.refresh(layout=True)
        self._tell_message()

    def on_enter(self) -> None:
        self.hovered = True
        self.refresh(layout=True)
        self._tell_message()

    def on_leave(self) -> None:
        self.hovered = False
        self.refresh(layout=True)
        self._tell_message()

    def _tell_message(self) -> None:
        for node in self.ancestors:
            sync = getattr(node, "sync_marks", None)
            if sync is not None:
                sync()
                return

    def render(self) -> Content:
        v = self.verdict
        icon = "✖" if v.severity == "critical" else "⚑"
        label = f"{icon} {v.code} "
        before, marked, after = quote(self.text, v.span)
        content = Content.assemble(
            (label, self.get_visual_style("verdict-mark--label")),
            before,
            (marked, self.get_visual_style("verdict-mark--span")),
            after,
        )
        if self.has_focus or self.hovered:
            body = describe(v, self.correction).replace("\n", "\n  ")
            content = content.append("\n  " + body)
        return content


def describe(verdict: Any, correction: str = "") -> str:
    """A verdict explained: check, code, severity, span, detail and the correction sent."""
    v = verdict
    lines = [
        f"{v.code}  check: {v.check}   severity: {v.severity}   span: {v.span[0]}-{v.span[1]}",
        _one_line(v.detail),
    ]
    if correction:
        lines.append(f"correction sent: {_one_line(correction)}")
    return "\n".join(lines)


def marked_content(
    text: str, verdicts: list[Any], styles: dict[str, Any], active: int = -1
) -> Content:
    """``text`` with each verdict span styled by severity (``styles`` maps severity -> style)."""
    content = Content(inline(text))
    for i, v in enumerate(verdicts):
        start, end = v.span
        end = max(end, start + 1)  # a zero-width mark still shows one cell
        style = styles.get("active" if i == active else v.severity)
        if style is not None:
            content = content.stylize(style, start, end)
    return content


class MarkedText(Widget):
    """A message as plain text with its verdict spans highlighted (used by review)."""

    COMPONENT_CLASSES = {"marked--minor", "marked--critical", "marked--active"}
    DEFAULT_CSS = """
    MarkedText { height: auto; padding: 0 1; }
    MarkedText > .marked--minor { background: $warning-muted; text-style: underline; }
    MarkedText > .marked--critical { background: $error; color: $text; text-style: bold underline; }
    MarkedText > .marked--active { background: $accent; text-style: bold reverse; }
    """

    def __init__(self, text: str, verdicts: list[Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.text = text
        self.verdicts = verdicts
        self.active = -1

    def activate(self, index: int) -> None:
        self.active = index
        self.refresh()

    def line_of(self, index: int) -> int:
        """The row (0 = first) on which verdict ``index``'s span starts, as wrapped now."""
        if not (0 <= index < len(self.verdicts)) or not self.content_size.width:
            return 0
        # Wrapped as render() wraps it, with only this span styled, so it can be found.
        content = marked_content(self.text, [self.verdicts[index]], {"active": "reverse"}, 0)
        for row, line in enumerate(content.wrap(self.content_size.width)):
            if any(span.style == "reverse" for span in line.spans):
                return row
        return 0

    def render(self) -> Content:
        styles = {
            name: self.get_visual_style(f"marked--{name}")
            for name in ("minor", "critical", "active")
        }
        return marked_content(self.text, self.verdicts, styles, self.active)
