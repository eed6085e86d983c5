"""Make model output safe to put on a terminal.

Model text is untrusted: a model (or a prompt injection) can emit ESC sequences that would
move the cursor, retitle the window, write to the clipboard (OSC 52) or hide text. Textual
renders strings through its own segment pipeline, but Markdown code blocks, the clipboard
and exports pass text through, so everything from a model goes through here first.
"""

from __future__ import annotations

import re

# C0 controls except \t and \n, DEL, and C1 controls (0x80-0x9f, e.g. the 8-bit CSI 0x9b).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# Whole escape sequences first, so their parameters ("[31m") do not survive as litter.
_ESCAPE_SEQ = re.compile(
    r"\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC ... BEL / ST (titles, clipboard, links)
    r"|\x1b[P_^X][^\x1b]*(?:\x1b\\)?"  # DCS / APC / PM / SOS strings
    r"|\x1b\[[0-?]*[ -/]*[@-~]"  # CSI (colours, cursor moves, erase)
    r"|\x9b[0-?]*[ -/]*[@-~]"  # 8-bit CSI
    r"|\x1b[ -/]*[0-~]"  # two-character escapes (ESC c = reset, ESC 7, ...)
)
_BIDI = re.compile(r"[\u202a-\u202e\u2066-\u2069]")  # bidi overrides (Trojan Source)


def sanitize_for_terminal(text: str) -> str:
    """Return ``text`` with escape sequences and control characters removed.

    Keeps ``\\n`` and ``\\t``; turns ``\\r\\n`` into ``\\n`` and a lone ``\\r`` (which would
    overwrite the line on a terminal) into ``\\n``. Bidi override characters are dropped so
    text cannot be displayed in a different order from how it is stored.
    """
    if not text:
        return text
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _ESCAPE_SEQ.sub("", text)
    text = _CONTROL.sub("", text)
    return _BIDI.sub("", text)


def split_unfinished(text: str) -> tuple[str, str]:
    """Split streamed ``text`` into what can be sanitized now and a tail to hold back.

    Sanitizing pieces one by one must give what sanitizing their concatenation gives: a
    ``\r`` at the end may be the first half of ``\r\n``, and an escape sequence near the end
    may still be arriving (its parameters would otherwise be shown as litter).
    """
    esc = max(text.rfind("\x1b", len(text) - 256), text.rfind("\x9b", len(text) - 256))
    if esc >= 0 and not _complete_escape(text[esc:]):
        return text[:esc], text[esc:]
    if text.endswith("\r"):
        return text[:-1], "\r"
    return text, ""


_CSI = re.compile(r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]")


def _complete_escape(tail: str) -> bool:
    """Whether the escape sequence at the start of ``tail`` has fully arrived."""
    if tail.startswith(("\x1b[", "\x9b")):
        return _CSI.match(tail) is not None
    if tail.startswith(("\x1b]", "\x1bP", "\x1b_", "\x1b^", "\x1bX")):  # strings end BEL/ST
        return "\x07" in tail or "\x1b\\" in tail[1:]
    return len(tail) >= 2 and _ESCAPE_SEQ.match(tail) is not None


_VISIBLE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def show_controls(text: str) -> str:
    """``text`` with each control character (except ``\\n`` and ``\\t``) and bidi override
    written out as an escape (ESC as ``\\x1b``): for the CLI's own lines, which quote file
    names, config values and saved text, so that what was there is seen, never obeyed."""
    return _VISIBLE.sub(lambda m: ascii(m.group())[1:-1], text)


def escape_controls(text: str) -> str:
    """Replace each control character (except ``\\n`` and ``\\t``) with U+FFFD, one for one.

    Unlike ``sanitize_for_terminal`` this keeps every character offset, so sentinel spans
    (character offsets into the raw message) still point at the right text.
    """
    return _BIDI.sub("\ufffd", _CONTROL.sub("\ufffd", text))
