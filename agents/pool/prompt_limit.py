"""Refuse a prompt that cannot fit the context before tokenizing all of it.

llama.cpp's tokenizer is slow on huge prompts, and the model's slot waits for it: a 5 MB
message took 30 s to be refused on a 2-core machine, 20,000 short messages 15 s and 50,000
135 s (its special-token partition grows with the square of their number), while every other
client of that model waited. Tokenizing growing prefixes (4 bytes a token of the context, then
twice as many bytes each time) finds such a prompt too long after a few times the context's
worth of text instead.
"""

from __future__ import annotations

from collections.abc import Callable

# A prefix cut inside a word or a special token's text can take a few more tokens than the
# same bytes inside the whole prompt: a prefix must exceed the limit by this much to count.
CUT_SLACK = 64


def estimated_tokens_over(
    tokenize: Callable[[bytes], list[int]], data: bytes, limit: int
) -> int | None:
    """About how many tokens ``data`` takes when a prefix of it already takes more than
    ``limit`` (+ ``CUT_SLACK``); None when no prefix shorter than ``data`` does (tokenize it
    whole to know). Costs at most about twice the tokenizing of the prefix that decided."""
    size = 4 * max(limit, 1)
    while size < len(data):
        n = len(tokenize(data[:size]))
        if n > limit + CUT_SLACK:
            return max(n, n * len(data) // size)
        size *= 2
    return None
