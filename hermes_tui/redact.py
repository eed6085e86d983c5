"""Secret redaction before text is stored or shown.

Why here and not in the sentinel: the sentinel *reports* a leaked key (E_SECRET) while the
message streams; hermes must additionally never *keep* or *show* it, whether it came from the
model or was pasted by the user. The detector is the sentinel's own public one
(``sentinel.secrets.find_secrets``: detect-secrets' plugins and keyword rules, with their
filters), so that what the sentinel flags and what hermes hides never drift apart: a key the
sentinel calls a secret is a key the database, the screen and every export never see.

``redact`` is idempotent (a ``[REDACTED:...]`` marker never matches a pattern again) and works
on partial text too: a private-key block without its END line is hidden up to the end of the
text, so a checkpoint taken mid-key stores nothing of it. It is linear in the text's length.
"""

from __future__ import annotations

from sentinel.secrets import find_secrets as _find
from sentinel.secrets import kind_slug

__all__ = ["find_secrets", "marker", "redact"]


def find_secrets(text: str) -> list[tuple[int, int, str]]:
    """Non-overlapping ``(start, end, kind)`` spans of the secrets in ``text``, in order;
    ``kind`` is a slug such as ``github-token`` or ``private-key``.

    The same detector as the sentinel's ``SecretCheck`` (see ``sentinel.secrets`` for what
    counts: documentation example keys do, placeholders and templates do not).
    """
    return [(s, e, kind_slug(k)) for s, e, k in _find(text)]


def marker(kind: str, width: int) -> str:
    """``[REDACTED:<kind>]`` exactly ``width`` characters long (cut, or padded with ``*``)."""
    tag = f"[REDACTED:{kind}]"
    return tag[:width] if len(tag) >= width else tag + "*" * (width - len(tag))


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
        parts.append(marker(kind, end - start) if keep_offsets else f"[REDACTED:{kind}]")
        pos = end
    parts.append(text[pos:])
    return "".join(parts)
