"""The interface every incremental check implements."""

from __future__ import annotations

from typing import Protocol

from sentinel.verdict import Verdict


class Check(Protocol):
    """An incremental check over one streaming message.

    ``feed`` receives each new piece of text (usually one token) in order; the check keeps
    its own state and character offset, and does O(len(piece)) amortised work. It returns the
    verdicts that became certain with this piece (each at most once). ``finish`` is called
    once when the message ends and returns what can only be decided at the end. A check
    that judges whole words may also define ``finish_cut_off()``, called instead when the
    answer stopped at its token limit (its last word is unfinished, not wrong).
    """

    name: str

    def feed(self, piece: str) -> list[Verdict]: ...

    def finish(self) -> list[Verdict]: ...
