"""A compositor that repaints only the boxes that changed, not the box around all of them.

Textual's partial update renders every widget that overlaps the *bounding box* of the
frame's dirty regions, and every line in it across that box's width. At 200×50 the three
persona panes sit side by side and the prompt spans the bottom row: a frame that shows a
key press (the prompt) and one pane's newly streamed text (that pane) had a bounding box of
the whole screen, so all three panes were rendered and cut into chops again, three times
the work the frame needed; two panes painting in one frame likewise drew the third. Such
frames were the slow tail of keypress-to-screen latency (``benchmarks/bench_tui.py``).

``BoxedCompositor`` merges the dirty regions into a few boxes (two are merged only when
their bounding box is no larger than the two apart), renders each box as Textual would
render a frame of that box alone, and keeps from each only the chops that overlap it, which
are complete: a chop is a run of cells covered by the same widgets, so every widget under a
chop that overlaps a box also overlaps that box and was rendered. What reaches the terminal
is the same spans Textual sends, with the same content.

``draw_now(widget)`` sends one widget's cells to the terminal at once, before the next frame:
the prompt after each key (``hermes_tui.widgets.prompt``). A key press otherwise waited for
the frame after it, and while answers stream that frame may also lay out and repaint a
scrolled pane; now the key is on the screen when its handler returns, and the frame redraws
the prompt once more with everything else.

It uses the compositor's internals (``_dirty_regions``, ``_render_chops``,
``_regions_to_spans``, ``cuts``); on a Textual without them it falls back to Textual's own
update.
"""

from __future__ import annotations

from typing import Any

from textual._compositor import ChopsUpdate, Compositor
from textual.geometry import Region

MAX_BOXES = 8  # more than this: one box around all (as Textual does)


def merge_boxes(regions: list[Region]) -> list[Region]:
    """Boxes covering ``regions``: two merged whenever their union is no larger than both
    apart (overlapping or adjacent in line), so merging never adds cells to draw."""
    boxes = list(regions)
    merged = True
    while merged and len(boxes) > 1:
        merged = False
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                a, b = boxes[i], boxes[j]
                union = a.union(b)
                if union.area <= a.area + b.area - a.intersection(b).area:
                    boxes[i] = union
                    del boxes[j]
                    merged = True
                    break
            if merged:
                break
    return boxes


class BoxedCompositor(Compositor):
    """Textual's compositor, with partial updates rendered box by box (see module doc)."""

    def render_partial_update(self) -> ChopsUpdate | None:
        dirty = getattr(self, "_dirty_regions", None)
        if not dirty or not hasattr(self, "_render_chops"):
            return super().render_partial_update()
        screen_region = self.size.region
        regions = [r.intersection(screen_region) for r in dirty]
        regions = [r for r in regions if r.area]
        boxes = merge_boxes(regions)
        if len(boxes) <= 1 or len(boxes) > MAX_BOXES:
            return super().render_partial_update()
        dirty.clear()
        spans = list(self._regions_to_spans(regions))
        cuts = self.cuts
        chop_ends = [cut_set[1:] for cut_set in cuts]
        chops: list[dict[int, object]] = [dict.fromkeys(cut_set[:-1]) for cut_set in cuts]
        for box in boxes:
            lines = range(box.y, box.bottom)
            rendered = self._render_chops(box, lines.__contains__)
            left, right = box.x, box.right
            for y in lines:
                line = chops[y]
                for (x, strip), end in zip(rendered[y].items(), chop_ends[y], strict=False):
                    if strip is not None and x < right and end > left:
                        line[x] = strip
        return ChopsUpdate(chops, spans, chop_ends)  # type: ignore[arg-type]

    def render_region(self, region: Region) -> ChopsUpdate | None:
        """``region`` as the widgets now draw it, without waiting for (or taking part in) a
        frame: the next frame still draws whatever is dirty, ``region`` included."""
        region = region.intersection(self.size.region)
        if not region or not hasattr(self, "_render_chops"):
            return None
        lines = range(region.y, region.bottom)
        rendered = self._render_chops(region, lines.__contains__)
        cuts = self.cuts
        chop_ends = [cut_set[1:] for cut_set in cuts]
        chops: list[dict[int, object]] = [dict.fromkeys(cut_set[:-1]) for cut_set in cuts]
        for y in lines:
            line = chops[y]
            for (x, strip), end in zip(rendered[y].items(), chop_ends[y], strict=False):
                if strip is not None and x < region.right and end > region.x:
                    line[x] = strip
        spans = [(y, region.x, region.right) for y in lines]
        return ChopsUpdate(chops, spans, chop_ends)  # type: ignore[arg-type]


def draw_now(widget: Any) -> None:
    """Send ``widget``'s region to the terminal now (see the module doc); nothing when its
    screen is not the one shown or does not use ``BoxedCompositor``."""
    if not widget.is_attached:
        return
    screen, app = widget.screen, widget.app
    compositor = getattr(screen, "_compositor", None)
    if screen is not app.screen or not isinstance(compositor, BoxedCompositor):
        return
    region = widget.region
    if not region:
        return
    update = compositor.render_region(region)
    if update is not None:
        app._display(screen, update)
