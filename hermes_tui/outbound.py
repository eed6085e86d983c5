"""Everything that leaves the process goes through here: the chat screen, the clipboard, the
batch JSONL, exports and ``hermes log`` output.

Two things happen to text on its way out, always in this order:

1. **Secrets are hidden** (``scrub``), with the detector of :mod:`hermes_tui.redact`, when
   ``[storage] redact_secrets`` is on (the default). The database already holds redacted
   text; this catches what never went through it (the live screen, the JSONL, a copy) and
   what was stored before the detector knew a shape. Markers keep the secret's length, so
   verdict spans (character offsets) still point at the same text.
2. **Terminal controls are neutralised**, the same way for every output: text for a
   terminal or a Markdown file loses escape sequences, C0/C1 controls and bidi overrides
   (``display``); one-line quotes keep their offsets with U+FFFD in their place
   (``inline``); JSON keeps every character but writes C1 controls, bidi overrides and line
   separators as ``\\uXXXX`` escapes (``dumps``), so no JSON line can drive a terminal that
   ``cat``\\s it and tools still get the exact value.
"""

from __future__ import annotations

import json
import re
from typing import Any

from hermes_tui.redact import find_secrets, marker, redact
from hermes_tui.terminal_text import escape_controls, sanitize_for_terminal
from sentinel.secrets import MAX_SECRET_CHARS

__all__ = [
    "HeldBackScrubber",
    "display",
    "dumps",
    "export",
    "inline",
    "redaction",
    "scrub",
    "set_redaction",
]

_state = {"redact": True}

_PEM_END = re.compile(r"-----END (?:[A-Z]+ )*PRIVATE KEY(?: BLOCK)?-----")  # as redact.py's
WORD_END = (" ", "\n", "\t", "\r")  # where a secret ends: what follows is released
_PASSWORD_NAME = re.compile(r"(?i)pass|pwd")  # a line naming a password is held to its end
OFF_LOOP_CHARS = 20_000  # redacting more than this (~20 ms) belongs in a worker thread

# The BEGIN lines the detector calls a private key (sentinel.secrets' headers): a line that
# can still become one is held back until the detector knows.
_PEM_HEADERS = tuple(
    f"-----BEGIN {kind}PRIVATE KEY-----"
    for kind in ("", "RSA ", "DSA ", "EC ", "OPENSSH ", "ENCRYPTED ", "SSH2 ENCRYPTED ")
) + ("-----BEGIN PGP PRIVATE KEY BLOCK-----",)
# The start of a secret whose end was never written (max_tokens cut it): a known key prefix
# with something after it, or the value of a credential assignment, as the text's last word.
_KEY_START = re.compile(
    r"(?<![\w-])(?:sk-|sk_live_|rk_live_|gh[pousr]_|github_pat_|glpat-|xox[abposr]-|AIza"
    r"|(?:AKIA|ASIA|ABIA|ACCA)(?=[0-9A-Z]))[\w-]+$"
)
_ASSIGNED = re.compile(
    r"(?i:pass(?:word|wd|phrase)?|pwd|secret|token|api[_-]?key|access[_-]?key)"
    r"[\"']?\s*[:=]\s*[\"']?([^\s\"'}\],;]+)$"
)


def pem_open_at(text: str) -> int | None:
    """Where a line that is, or can still become, a private key's BEGIN line starts in
    ``text`` (its last such line, not closed by an END line); None: there is none."""
    b = text.rfind("-----B")
    if b == -1 or "-----END" in text[b:]:
        return None
    nl = text.find("\n", b)
    head = text[b : nl if nl >= 0 else len(text)]
    if any(h.startswith(head) or head.startswith(h) for h in _PEM_HEADERS):
        return b
    return None


def unfinished_secret_at(text: str) -> int | None:
    """Where a secret cut short at the end of ``text`` begins (a key prefix and part of its
    value, a private-key BEGIN line and what follows it, a credential's assigned value) that
    the detector does not know as a whole secret; None: the text does not end inside one.
    Looks at the last 400 characters only."""
    base = max(0, len(text) - 400)
    tail = text[base:]
    pem = pem_open_at(tail)  # only a BEGIN line cut short: the detector knows a whole one
    found = [pem if pem is not None and "\n" not in tail[pem:] else None]
    if (m := _KEY_START.search(tail)) is not None:
        found.append(m.start())
    line = tail[tail.rfind("\n") + 1 :]
    if (m := _ASSIGNED.search(line)) is not None:
        found.append(len(tail) - len(line) + m.start(1))
    # a secret the detector knows up to the end is finished (the stop sequence came right
    # after it): it keeps its own marker, ``[REDACTED:github-token]``
    known = [(s, e) for s, e, _ in find_secrets(tail) if e == len(tail)]
    starts = [f for f in found if f is not None and not any(s <= f < e for s, e in known)]
    return base + min(starts) if starts else None


def hide_unfinished(text: str) -> str:
    """``text`` with a secret cut short at its end replaced by a marker of its length."""
    at = unfinished_secret_at(text)
    if at is None:
        return text
    return text[:at] + marker("unfinished-secret", len(text) - at)


# What json.dumps(ensure_ascii=False) leaves raw that a terminal would act on or reorder.
_JSON_UNSAFE = re.compile(r"[\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]")


def set_redaction(enabled: bool) -> None:
    """Follow the config's ``[storage] redact_secrets`` (the commands call this once)."""
    _state["redact"] = bool(enabled)


def redaction() -> bool:
    return _state["redact"]


def scrub(text: str) -> str:
    """The one place secrets are hidden on the way out (same length: offsets stay true)."""
    if not _state["redact"] or not text:
        return text
    return redact(text, keep_offsets=True)


def display(text: str) -> str:
    """For a terminal, the clipboard, a Markdown file: secrets hidden, controls removed."""
    return sanitize_for_terminal(scrub(text))


def inline(text: str) -> str:
    """For quoting spans: secrets hidden, each control one U+FFFD (offsets kept)."""
    return escape_controls(scrub(text))


def scrub_value(value: Any) -> Any:
    """Every string inside ``value`` (dict values, list items) scrubbed; keys kept."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {k: scrub_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub_value(v) for v in value]
    return value


def _escape(m: re.Match[str]) -> str:
    return f"\\u{ord(m.group()):04x}"


def dumps(value: Any, **kwargs: Any) -> str:
    """JSON for a machine-readable output: secrets hidden, unsafe characters ``\\u``-escaped.

    Only string contents can hold these characters, so escaping them in the dumped text is
    valid JSON that decodes to the same value."""
    kwargs.setdefault("ensure_ascii", False)
    return _JSON_UNSAFE.sub(_escape, json.dumps(scrub_value(value), **kwargs))


def export(text: str, fmt: str) -> str:
    """An export made by the store (``markdown`` or ``json``), made safe to leave."""
    if fmt == "json":
        return dumps(json.loads(text), indent=2) + "\n"
    return display(text)


class StreamScrubber:
    """``redact`` for a text that grows (a message while it streams), in time proportional
    to what was added: redacting the whole message at every checkpoint made a long answer
    quadratic (a 2.6 MB answer held the event loop for minutes).

    Only the last ``LOOKBACK`` characters before the previous end are looked at again (a
    secret is shorter than that; an unfinished PEM block is re-read from its BEGIN line), and
    what an earlier call hid stays hidden. A text that does not continue the previous one is
    redacted whole.
    """

    LOOKBACK = 512

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._raw = ""
        self._clean = ""
        self._pem_from = 0  # every "-----BEGIN" block before this is closed

    def _pem_block_at(self, text: str, x: int) -> int | None:
        """Where the PEM-like block holding position ``x`` begins (None: x is in none). Blocks
        pair a BEGIN with the first END after it, as the redactor's pattern does."""
        pos = self._pem_from
        while True:
            b = text.find("-----BEGIN ", pos)
            if b == -1 or b > x:
                return None
            m = _PEM_END.search(text, b)
            if m is None:
                return b
            end = m.end()
            if end > x:
                return b
            pos = self._pem_from = end

    def update(self, text: str) -> str:
        if not self.enabled or not text:
            return text
        old = len(self._raw)
        if old == 0 or not text.startswith(self._raw):
            clean = redact(text, keep_offsets=True)
        else:
            start = max(0, old - self.LOOKBACK)
            begin = self._pem_block_at(text, start)
            if begin is not None:
                start = begin  # inside a private key (open, or closing now): re-read it whole
            window = redact(text[start:], keep_offsets=True)
            before = self._clean[start:old]
            if before != self._raw[start:old]:  # keep what was hidden before
                raw, fresh = self._raw[start:old], window[: old - start]
                merged = "".join(
                    p if p != r else w for p, r, w in zip(before, raw, fresh, strict=True)
                )
                window = merged + window[old - start :]
            clean = self._clean[:start] + window
        self._raw, self._clean = text, clean
        return clean


# At most this much of one message is stored (the rest is counted in a closing note): a flood
# halted at 5 MB stored 3.3 million characters for one message.
MAX_STORED_CHARS = 1_000_000


def bounded(text: str, scrub: StreamScrubber | None = None) -> str:
    """``text`` as stored: cut at MAX_STORED_CHARS, with a note of what was left out.

    ``scrub``: the message's redactor, given only the stored part. The note changes with every
    checkpoint, so a redactor shown the note too would see a text that no longer continues
    the previous one and re-read all of it each time (a 2 MB answer took minutes)."""
    head = text[:MAX_STORED_CHARS]
    if scrub is not None:
        head = scrub.update(head)
    if len(text) <= MAX_STORED_CHARS:
        return head
    return head + f"\n[… {len(text) - MAX_STORED_CHARS} more characters not stored]"


class HeldBackScrubber:
    """``redact`` for text sent while it streams (``hermes serve``'s deltas): what could still
    become part of a secret is held back, what is released has been redacted with the text
    before it, so a secret never leaves in the clear, and normal text is late by one word.

    * Held back: the last word, until the next one begins (after a space, tab or line
      break), and a line that names a password (``pass``, ``pwd``: a passphrase is several
      words, judged with its line) until it ends; at most ``MAX_SECRET_CHARS`` characters
      (the longest secret the detector reports whole): of more, all but the last
      ``MAX_SECRET_CHARS`` are released.
    * Each release is redacted as part of a window: the last ``CONTEXT`` characters already
      released (the keyword of ``password = "..."``), then the released text. Inside an open
      private-key block the window starts with its BEGIN line, however long the body.
    * Markers keep the secret's length (``[REDACTED:kind]`` cut or padded with ``*``), as
      everywhere else, so verdict spans still point at the same text.

    The work per release is bounded by its own length plus about 1,000 characters
    (``feed`` of a huge piece: see ``costly``)."""

    CONTEXT = 512
    HOLD = MAX_SECRET_CHARS

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._ctx = ""  # raw text released last (at most CONTEXT characters)
        self._held = ""  # raw text not released yet
        self._pem_head = ""  # the BEGIN line of an open private-key block

    def costly(self, piece: str) -> bool:
        """Whether ``feed(piece)`` redacts enough text to belong in a worker thread."""
        return self.enabled and len(self._held) + len(piece) > OFF_LOOP_CHARS

    def feed(self, piece: str) -> str:
        """The text that can be sent now (redacted), ``piece`` taken in."""
        if not self.enabled:
            return piece
        self._held += piece
        held = self._held
        # A word is over once the next one has begun: what follows a value decides some
        # detectors (``PGPASSWORD=s3cr3t psql``: a command follows), a line end others.
        body = held[: len(held.rstrip())]
        cut = max(body.rfind(c) for c in WORD_END) + 1
        if cut:
            nl = held.rfind("\n", 0, cut)
            line = held[nl + 1 :] if nl >= 0 else self._ctx[self._ctx.rfind("\n") + 1 :] + held
            if _PASSWORD_NAME.search(line):  # a passphrase is words: its whole line is judged
                cut = nl + 1
            pem = pem_open_at(held)
            if pem is not None and pem < cut and not self._pem_decided(held, pem):
                cut = pem  # a private key's BEGIN line leaves only once it is known
        cut = max(cut, len(held) - self.HOLD)
        return self._release(cut) if cut > 0 else ""

    def _pem_decided(self, held: str, at: int) -> bool:
        """Whether the detector has decided on the BEGIN line at ``held[at:]``: it calls it a
        private key (then it leaves as a marker), or its line and the next are complete and
        it does not (``-----BEGIN PRIVATE KEY-----`` quoted in a sentence)."""
        nl = held.find("\n", at)
        head = held[at : nl if nl >= 0 else len(held)]
        if not any(head.startswith(h) for h in _PEM_HEADERS):
            return False  # still a prefix of one
        window = self._ctx + held
        x = len(self._ctx) + at
        if any(s <= x < e and k == "pem-private-key" for s, e, k in find_secrets(window)):
            return True
        return held.count("\n", at) >= 2

    def flush(self) -> str:
        """Everything held back (the answer ended), redacted; a secret cut short at the end
        (max_tokens stopped it: ``sk-proj-R4nd``, half a BEGIN line, ``password=hun``), which
        the detector cannot recognise, is hidden too."""
        if not self.enabled:
            return ""
        ctx, n = self._ctx, len(self._held)
        at = unfinished_secret_at(ctx + self._held)
        out = self._release(n)
        if at is None:
            return out
        hidden = marker("unfinished-secret", len(ctx) + n - at)[max(0, len(ctx) - at) :]
        return out[: n - len(hidden)] + hidden

    def drop(self) -> None:
        """Forget what is held back (a halted answer: its unfinished word is not sent)."""
        self._held = ""

    def _release(self, n: int) -> str:
        raw, self._held = self._held[:n], self._held[n:]
        # the held tail is read too: a secret that goes on past the cut is hidden up to it
        head = self._pem_head + "\n" if self._pem_head and self._pem_head not in self._ctx else ""
        window = head + self._ctx + raw + self._held
        base, end = len(head) + len(self._ctx), len(head) + len(self._ctx) + len(raw)
        out: list[str] = []
        pos = base
        self._pem_head = ""
        for start, stop, kind in find_secrets(window):
            # a block still open, or whose END line is not all released yet, is read from
            # its BEGIN line next time too: the END line's last word is part of the key
            closed = stop < end or (stop == end and _PEM_END.search(window, start))
            if kind == "pem-private-key" and not closed:
                line = window.find("\n", start)
                self._pem_head = window[start : line if line >= 0 else len(window)][:120]
            lo, hi = max(start, pos), min(stop, end)
            if lo >= hi:
                continue
            out.append(window[pos:lo])
            out.append(marker(kind, stop - start)[lo - start : hi - start])
            pos = hi
        out.append(window[pos:end])
        self._ctx = (self._ctx + raw)[-self.CONTEXT :]
        return "".join(out)
