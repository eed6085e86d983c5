"""Feeding a check the way a stream does: in random pieces, and checking split invariance."""

from __future__ import annotations

import random
from collections.abc import Callable

from sentinel.verdict import Verdict


def run(make: Callable, text: str, seed: int | None = 1) -> list[Verdict]:
    """Feed ``text`` to ``make()`` in random pieces of 1-7 chars (``seed=None``: one piece)."""
    check = make()
    out: list[Verdict] = []
    rng = random.Random(seed)
    i = 0
    while i < len(text):
        n = len(text) if seed is None else rng.randint(1, 7)
        out += check.feed(text[i : i + n])
        i += n
    return out + check.finish()


def split_invariant(make: Callable, text: str) -> list[Verdict]:
    """The verdicts for ``text``, asserting they are the same however the text is split."""
    ref = run(make, text, None)
    for seed in (0, 1, 2):
        assert sorted(map(repr, run(make, text, seed))) == sorted(map(repr, ref))
    return ref
