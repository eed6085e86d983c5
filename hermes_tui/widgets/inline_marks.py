"""Sentinel marks inside rendered Markdown: find each verdict's span on the rendered lines.

A verdict's span is a character range of the raw answer; the body shows that answer rendered
as Markdown (fences, ``**``, ``#`` and list markers gone, lines wrapped), so offsets do not
carry over. The span's text does: its non-whitespace characters appear in the same order on the
rendered lines (wrapping only moves whitespace). ``locate`` finds them there, the occurrence
nearest to where the span sits in the raw text (a repeated phrase is marked where it was
flagged), and ``style_lines`` styles those cells. A span whose text was changed by the rendering
(markup inside it) is found by its first characters; one that cannot be found at all stays
listed under the message only.

Cost: one pass over the rendered lines of a message that has marks, when its lines change
(at most a paint, ten times a second while it streams); messages without marks pay nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from textual.strip import Strip

PREFIX = 12  # characters of a span tried alone when the whole span is not found


@dataclass(frozen=True)
class InlineMark:
    needle: str  # the span's non-whitespace characters
    at: int  # how many non-whitespace characters precede the span in the raw text
    severity: str  # "minor" | "critical"
    index: int  # the verdict's position in the message's list


@dataclass(frozen=True)
class Placement:
    line: int
    start: int  # cells
    end: int  # cells, exclusive
    mark: InlineMark


def _dense(text: str) -> str:
    return "".join(text.split())


def inline_mark(text: str, span: tuple[int, int], severity: str, index: int) -> InlineMark:
    """The mark for a verdict at ``span`` of ``text`` (the raw answer)."""
    start, end = max(0, span[0]), max(0, min(span[1], len(text)))
    needle = _dense(text[start:end])
    if not needle:  # zero-width or whitespace only: the character at (or before) the point
        after = _dense(text[start : start + 8])[:1]
        before = _dense(text[max(0, start - 8) : start])[-1:]
        needle = after or before
        if not after and before:
            start = max(0, start - 1)
    return InlineMark(needle, len(_dense(text[:start])), severity, index)


def index_lines(lines: list[str], first_row: int = 0) -> tuple[str, list[tuple[int, int]]]:
    """The non-whitespace characters of ``lines`` and the (row, column) of each."""
    where: list[tuple[int, int]] = []
    extend = where.extend
    for row, line in enumerate(lines, first_row):
        if line.isspace() or not line:
            continue
        extend([(row, col) for col, ch in enumerate(line) if not ch.isspace()])
    return "".join("".join(line.split()) for line in lines), where


def locate(
    lines: list[str],
    marks: list[InlineMark],
    index: tuple[str, list[tuple[int, int]]] | None = None,
) -> list[Placement]:
    """Where each mark's text is on the rendered ``lines`` (plain text, one per row);
    ``index`` is ``index_lines(lines)`` when the caller keeps it between calls."""
    dense, where = index if index is not None else index_lines(lines)
    out: list[Placement] = []
    for mark in marks:
        if not mark.needle:
            continue
        found = _nearest(dense, mark.needle, mark.at)
        length = len(mark.needle)
        if found < 0 and length > PREFIX:
            found, length = _nearest(dense, mark.needle[:PREFIX], mark.at), PREFIX
        if found < 0:
            continue
        spans: dict[int, list[int]] = {}
        for row, col in where[found : found + length]:
            spans.setdefault(row, [col, col])[1] = col
        for row, (first, last) in spans.items():
            line = lines[row]
            if line.isascii():
                a, b = first, last + 1
            else:
                a, b = cell_len(line[:first]), cell_len(line[: last + 1])
            out.append(Placement(row, a, b, mark))
    return out


def _nearest(haystack: str, needle: str, at: int, limit: int = 64) -> int:
    """The occurrence of ``needle`` whose start is nearest to ``at`` (-1 if none)."""
    best, best_d = -1, None
    i = haystack.find(needle)
    tries = 0
    while i >= 0 and tries < limit:
        d = abs(i - at)
        if best_d is None or d < best_d:
            best, best_d = i, d
        if i > at:
            break  # later occurrences are only farther
        i = haystack.find(needle, i + 1)
        tries += 1
    return best


def style_lines(
    strips: list[Strip], placements: list[Placement], styles: dict[str, Style]
) -> list[Strip]:
    """``strips`` with each placement's cells styled (the mark's style wins over the text's)."""
    by_line: dict[int, list[Placement]] = {}
    for p in placements:
        by_line.setdefault(p.line, []).append(p)
    out = list(strips)
    for row, marks in by_line.items():
        strip = out[row]
        for p in sorted(marks, key=lambda m: m.start):
            style = styles.get(p.mark.severity)
            end = min(p.end, strip.cell_length)
            if style is None or p.start >= end:
                continue
            total = strip.cell_length
            left, middle, right = strip.crop(0, p.start), strip.crop(p.start, end), None
            if end < total:
                right = strip.crop(end, total)
            styled = Strip(
                list(Segment.apply_style(list(middle), post_style=style)), middle.cell_length
            )
            strip = Strip.join([left, styled, right])
        out[row] = strip
    return out
