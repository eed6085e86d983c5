"""Secret redaction before text is stored or shown.

Why here and not in the sentinel: the sentinel *reports* a leaked key (E_SECRET) while the
message streams; the store must additionally never *keep* it, whether it came from the model
or was pasted by the user. The patterns are the sentinel's own (``sentinel.checks.safety``),
imported rather than copied, so that what the sentinel flags and what the store hides never
drift apart: a key the sentinel calls a secret is a key the database never sees.

``redact`` is idempotent (a ``[REDACTED:...]`` marker never matches a pattern again) and works
on partial text too: a PEM block without its END line is hidden up to the end of the text, so
a checkpoint taken mid-key stores nothing of it.
"""

from __future__ import annotations

import re
from functools import lru_cache

from sentinel.checks.safety import (
    _KNOWN_PREFIXES,
    _PEM_BEGIN,
    SECRET_PATTERNS,
    _looks_random,
)

__all__ = ["find_secrets", "redact"]

# A PEM private key: BEGIN line, then everything up to the END line (or the end of the text,
# for a key that is still streaming or was cut off).
_PEM_BLOCK = re.compile(
    _PEM_BEGIN.pattern + r"(?:.*?-----END (?:[A-Z]+ )*PRIVATE KEY(?: BLOCK)?-----|.*\Z)",
    re.DOTALL,
)


def _kind(name: str) -> str:
    """'AWS access key id' -> 'aws-access-key-id' (no spaces: the marker stays one token)."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


@lru_cache(maxsize=1)
def _compiled() -> list[tuple[str, re.Pattern[str], bool, str]]:
    return [
        (name, re.compile(pattern), entropy, _kind(name))
        for name, (pattern, entropy) in SECRET_PATTERNS.items()
    ]


def find_secrets(text: str) -> list[tuple[int, int, str]]:
    """Non-overlapping ``(start, end, kind)`` spans of the secrets in ``text``, in order.

    The same rules as the sentinel's ``SecretCheck``: entropy-checked patterns skip
    placeholders (``sk-your-key-here``), the generic credential rule leaves keys with a known
    prefix to their specific pattern, and AWS's documented example key is not a secret.
    """
    spans: list[tuple[int, int, str]] = [
        (m.start(), m.end(), "pem-private-key") for m in _PEM_BLOCK.finditer(text)
    ]
    for name, pattern, needs_entropy, kind in _compiled():
        for m in pattern.finditer(text):
            value = m.group("v")
            if needs_entropy and not _looks_random(value):
                continue
            if name == "generic credential" and value.startswith(_KNOWN_PREFIXES):
                continue
            if name == "AWS access key id" and value.endswith("EXAMPLE"):
                continue
            spans.append((m.start("v"), m.end("v"), kind))
    spans.sort(key=lambda s: (s[0], -s[1]))
    out: list[tuple[int, int, str]] = []
    for span in spans:
        if out and span[0] < out[-1][1]:
            if span[1] > out[-1][1]:  # overlapping matches: hide their union
                out[-1] = (out[-1][0], span[1], out[-1][2])
            continue
        out.append(span)
    return out


def redact(text: str, keep_offsets: bool = False) -> str:
    """``text`` with each secret replaced by ``[REDACTED:<kind>]``, e.g.
    ``[REDACTED:github-token]``.

    With ``keep_offsets`` the replacement has exactly the secret's length (the marker cut or
    padded with ``*``), so the sentinel's verdict spans, which are character offsets into the
    message, still point at the same text.
    """
    spans = find_secrets(text)
    if not spans:
        return text
    parts: list[str] = []
    pos = 0
    for start, end, kind in spans:
        parts.append(text[pos:start])
        marker = f"[REDACTED:{kind}]"
        if keep_offsets:
            width = end - start
            marker = (
                marker[:width] if len(marker) >= width else marker + "*" * (width - len(marker))
            )
        parts.append(marker)
        pos = end
    parts.append(text[pos:])
    return "".join(parts)
