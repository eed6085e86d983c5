"""A message body that streams Markdown cheaply: finished blocks render once, only the tail again.

Textual's ``Markdown`` widget mounts one widget per block. With three answers streaming at
200 tokens/s, every frame re-laid out and repainted a few hundred block widgets and a key
press waited behind them (keypress-to-screen p95 167 ms, ``benchmarks/bench_tui.py``). This
body is ONE widget (Textual's line API) whose lines are cached ``Strip`` objects:

* the streamed text is cut where later text cannot change what came before — after a blank
  line outside a code fence, when the next line starts at column 0 (an indented one may
  continue a list item) — and each finished chunk is rendered once with Rich's Markdown;
* only the open tail (the block still being written) is rendered again on each update, and
  the layout is refreshed only when the number of lines changed;
* ``update()`` (the end of a turn) renders the whole text once from scratch, so a construct
  that spans a blank line (a loose list, say) ends up exactly as Rich renders it;
* a width change renders the chunks again at the new width.

Links are rendered as plain styled text (no OSC 8 hyperlinks: they misbehave over some SSH
and multiplexer setups); control characters are removed before text gets here.
"""

from __future__ import annotations

from typing import Any

from rich.markdown import Markdown as RichMarkdown
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.geometry import Region, Size
from textual.strip import Strip
from textual.widget import Widget

from hermes_tui.fences import fence_after
from hermes_tui.widgets.inline_marks import (
    InlineMark,
    Placement,
    index_lines,
    locate,
    style_lines,
)


def grow_step(screen_height: int) -> int:
    """How many lines a streaming body grows at a time: 8 on a 50-line terminal, 4 on 24
    lines, 2 at least (a sixth of the screen: the blank lines below the streamed text stay a
    small part of a pane, several streamed lines fit before the next layout)."""
    return max(2, min(8, screen_height // 6))


class MarkdownBody(Widget):
    """Markdown text as cached lines; ``append`` while streaming, ``update`` when done.

    ``set_marks`` styles the sentinel's spans inside the rendered text: a minor verdict's
    span underlined, a critical one reversed (both readable with NO_COLOR), the focused one
    as the active mark (see ``hermes_tui.widgets.inline_marks``)."""

    COMPONENT_CLASSES = {"mark--minor", "mark--critical", "mark--active"}
    DEFAULT_CSS = """
    MarkdownBody { height: auto; }
    MarkdownBody > .mark--minor { color: $text-warning; text-style: underline; }
    MarkdownBody > .mark--critical { color: $text-error; text-style: bold reverse; }
    MarkdownBody > .mark--active { color: $text-accent; text-style: bold reverse underline; }
    """

    def __init__(self, text: str = "", *, streaming: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        # While streaming, the body's height grows a few lines at a time (see ``_grown``).
        self.growing = streaming
        self._source = ""
        self._chunks: list[str] = []  # finished chunks of the source, in order
        self._frozen_upto = 0  # characters of the source held by ``_chunks``
        self._scan_at = 0  # start of the first line not yet scanned for a cut
        self._fence: str | None = None  # the open fence marker at ``_scan_at``, if any
        self._candidate: int | None = None  # a cut after a blank line, if the next line allows
        self._width = 0  # the width ``_frozen`` and ``_tail`` were rendered at
        self._frozen: list[Strip] = []  # rendered lines of the first ``_rendered`` chunks
        self._rendered = 0
        self._tail: list[Strip] = []
        self._all: list[Strip] | None = None
        self._style: Style | None = None
        self._marks: list[InlineMark] = []
        self.active_mark = -1  # the verdict index shown as the active mark
        self.placements: list[Placement] = []  # where the marks are on the lines now
        # The frozen lines' text and mark index, kept while they only grow (a paint then
        # indexes only the new lines and the tail; a long answer is not re-scanned).
        self._frozen_index: tuple[int, int, list[str], str, list[tuple[int, int]]] = (
            0,
            0,
            [],
            "",
            [],
        )
        if streaming:
            self._source = text
            self._cut()
        else:
            self._set_whole(text)

    @property
    def text_lines(self) -> int:
        """Lines of text shown (while streaming the body may be a few blank lines taller)."""
        width = self.content_size.width
        return len(self._lines(width)) if width else 0

    @property
    def source(self) -> str:
        """The Markdown text shown."""
        return self._source

    # -- text in ----------------------------------------------------------------------
    def append(self, piece: str) -> None:
        """Add streamed text: finished blocks are rendered once, the open tail again."""
        if not piece:
            return
        self._source += piece
        before = self._height()
        if self._cut() and self._width:
            self._frozen.extend(self._render_chunks(self._chunks[self._rendered :]))
        self._rendered = len(self._chunks)
        if self._width:
            self._tail = self._render(self._source[self._frozen_upto :], self._width)
        self._changed(before)

    def update(self, text: str, *, final: bool = True) -> None:
        """Show ``text`` rendered as one document (the final render of a turn: the height is
        the text's own from then on)."""
        before = self._height()
        self.growing = self.growing and not final
        self._set_whole(text)
        self._changed(before)

    def _set_whole(self, text: str) -> None:
        self._source = text
        self._chunks = [text] if text else []
        self._rendered = 0
        self._frozen_upto = self._scan_at = len(text)
        self._fence = None
        self._candidate = None
        self._width = 0  # render lazily at the laid-out width
        self._all = None

    def _cut(self) -> bool:
        """Move finished blocks from the tail into ``_chunks``; True when any moved."""
        src = self._source
        cut = None
        at = self._scan_at
        while True:
            end = src.find("\n", at)
            if end < 0:
                break
            line = src[at:end]
            if self._fence is None:
                if not line.strip():
                    if at > self._frozen_upto:
                        self._candidate = end + 1
                else:
                    # A blank line ends a block only if what follows starts at column 0: an
                    # indented line may continue a list item (or an indented code block).
                    if self._candidate is not None and not line[:1].isspace():
                        cut = self._candidate
                    self._candidate = None
            self._fence = fence_after(self._fence, line)
            at = end + 1
        self._scan_at = at
        rest = src[at:]  # the line being written: its first character is enough to decide
        if self._fence is None and self._candidate is not None and rest.strip():
            if not rest[:1].isspace():
                cut = self._candidate
                self._candidate = None
        if cut is None:
            return False
        self._chunks.append(src[self._frozen_upto : cut])
        self._frozen_upto = cut
        return True

    def set_marks(self, marks: list[InlineMark], active: int = -1) -> None:
        """Style these verdict spans in the text (replacing the earlier marks)."""
        if marks == self._marks and active == self.active_mark:
            return
        self._marks, self.active_mark = list(marks), active
        self._all = None
        self.refresh()

    def _marked(self, lines: list[Strip]) -> list[Strip]:
        if not self._marks:
            self.placements = []
            return lines
        texts, index = self._indexed(lines)
        self.placements = locate(texts, self._marks, index)
        styles = {
            name: self.get_component_rich_style(f"mark--{name}", partial=True)
            for name in ("minor", "critical", "active")
        }
        if self.active_mark >= 0:
            placements = [
                Placement(p.line, p.start, p.end, _as_active(p.mark))
                if p.mark.index == self.active_mark
                else p
                for p in self.placements
            ]
        else:
            placements = self.placements
        return style_lines(lines, placements, styles)

    def on_mouse_move(self, event: events.MouseMove) -> None:
        """Hovering a marked span explains it (a tooltip)."""
        index = self.mark_at(event.x, event.y)
        describe = getattr(self.parent, "describe_mark", None)
        tip = describe(index) if index >= 0 and describe is not None else None
        if tip != self.tooltip:
            self.tooltip = tip

    def _indexed(self, lines: list[Strip]) -> tuple[list[str], Any]:
        """(texts, index) for ``lines`` = frozen lines, a gap, the tail: the frozen part
        from the cache (extended when it grew), the rest indexed now."""
        frozen = len(self._frozen) if lines and len(lines) >= len(self._frozen) else 0
        width, count, texts, dense, where = self._frozen_index
        if width != self._width or count > frozen or texts[:1] != [line.text for line in lines[:1]]:
            width, count, texts, dense, where = self._width, 0, [], "", []
        if count < frozen:
            more = [line.text for line in lines[count:frozen]]
            d, w = index_lines(more, count)
            texts, dense, where = texts + more, dense + d, where + w
            count = frozen
        self._frozen_index = (width, count, texts, dense, where)
        rest = [line.text for line in lines[frozen:]]
        d, w = index_lines(rest, frozen)
        return texts + rest, (dense + d, where + w)

    def mark_at(self, x: int, y: int) -> int:
        """The verdict index of the mark at content cell (x, y), or -1."""
        for p in self.placements:
            if p.line == y and p.start <= x < p.end:
                return p.mark.index
        return -1

    # -- rendering --------------------------------------------------------------------
    def _render(self, text: str, width: int) -> list[Strip]:
        if not text.strip():
            return []
        console = self.app.console
        options = console.options.update(width=width, height=None, highlight=False)
        markdown = RichMarkdown(text, hyperlinks=False)
        lines = [Strip(line) for line in Segment.split_lines(console.render(markdown, options))]
        # Rich puts an empty line between blocks (and before a list); drop those at the ends,
        # the gap between chunks is added once. A code block's padding is not empty: kept.
        while lines and not lines[0].cell_length:
            lines.pop(0)
        while lines and not lines[-1].cell_length:
            lines.pop()
        strips = [line.adjust_cell_length(width) for line in lines]
        return strips

    def _render_chunks(self, chunks: list[str]) -> list[Strip]:
        out: list[Strip] = []
        for chunk in chunks:
            strips = self._render(chunk, self._width)
            if strips:
                if self._frozen or out:
                    out.append(Strip.blank(self._width))  # the gap Rich puts between blocks
                out.extend(strips)
        return out

    def _lines(self, width: int) -> list[Strip]:
        """Every line at ``width``: the frozen chunks, a gap, the tail (cached)."""
        if width != self._width:
            self._width = width
            self._frozen = []
            self._frozen = self._render_chunks(self._chunks)
            self._rendered = len(self._chunks)
            self._tail = self._render(self._source[self._frozen_upto :], width)
            self._all = None
        if self._all is None:
            gap = [Strip.blank(width)] if self._frozen and self._tail else []
            self._all = self._marked([*self._frozen, *gap, *self._tail])
        return self._all

    def _grown(self, lines: int) -> int:
        """The height shown for ``lines`` lines of text.

        While streaming, a round number of ``grow_step()`` lines (the last few blank until
        text reaches them). A change of height is a layout pass of the screen and a repaint
        of the whole pane (everything in it moves up a line); growing a few lines at a time,
        most paints only redraw the lines that changed."""
        if not self.growing or lines <= 0:
            return lines
        step = grow_step(self.screen.size.height if self.is_attached else 0)
        return -(-lines // step) * step

    def _height(self) -> int:
        return self._grown(len(self._lines(self._width))) if self._width else -1

    def _changed(self, height_before: int) -> None:
        old = self._all
        self._all = None
        height = self._height()
        if height != height_before or height < 0 or old is None or self._all is None:
            self.refresh(layout=True)
            return
        # Same height: repaint from the first line that changed (the open tail, mostly).
        new = self._all
        first = next(
            (i for i, (a, b) in enumerate(zip(old, new, strict=False)) if a is not b and a != b),
            min(len(old), len(new)),
        )
        last = max(len(old), len(new))
        if first < last:
            self.refresh(Region(0, first, self._width, last - first))

    # -- Textual line API ---------------------------------------------------------------
    def get_content_width(self, container: Size, viewport: Size) -> int:
        return container.width

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return self._grown(len(self._lines(width)))

    def render_lines(self, crop: Region) -> list[Strip]:
        self._style = self.rich_style  # looked up once per paint, not once per line
        try:
            return super().render_lines(crop)
        finally:
            self._style = None

    def render_line(self, y: int) -> Strip:
        width = self.content_size.width
        lines = self._lines(width) if width else []
        style = self._style or self.rich_style
        if y >= len(lines):
            return Strip.blank(width, style)
        return lines[y].apply_style(style)


def _as_active(mark: InlineMark) -> InlineMark:
    return InlineMark(mark.needle, mark.at, "active", mark.index)
