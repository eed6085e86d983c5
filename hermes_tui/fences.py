"""Markdown code fences (CommonMark's rules, the part a streamed or saved answer needs)."""

from __future__ import annotations

import re

# A code fence: any indentation (fences inside list items are indented), the marker, the rest.
_FENCE = re.compile(r"^\s*(`{3,}|~{3,})(.*)$")


def fence_after(open_marker: str | None, line: str) -> str | None:
    """The fence open after ``line`` (without its newline), given the one open before it.

    A fence opens with 3+ backticks or tildes (a backtick fence's info string has no
    backtick) and closes with the same character, at least as many, and nothing after.
    """
    fence = _FENCE.match(line)
    if fence is None:
        return open_marker
    marker, rest = fence.group(1), fence.group(2)
    if open_marker is None:
        return None if marker[0] == "`" and "`" in rest else marker
    if marker[0] == open_marker[0] and len(marker) >= len(open_marker) and not rest.strip():
        return None
    return open_marker


def close_open_fence(text: str) -> str:
    """``text`` with a closing fence added if it ends inside a code block (an answer cut off
    mid-code), so that what follows it in a document is not swallowed into the code."""
    marker = None
    for line in text.split("\n"):
        marker = fence_after(marker, line)
    if marker is None:
        return text
    return text + ("" if text.endswith("\n") else "\n") + marker
