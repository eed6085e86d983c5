"""Plain records of what the chat shows, kept apart from the widgets that show them.

The transcript can be rebuilt from these at any time (for example when the terminal becomes
wide enough for three panes), so widgets never own the only copy of a message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agents.events import MessageStatus
from hermes_tui.skipped import NOTE_ROLE


@dataclass
class ChatMessage:
    """One message on screen: a user prompt or one persona's (possibly hidden) turn."""

    key: str  # unique, stable id ("u3", "t12")
    role: str  # "user" | "assistant" | "sentinel" (a correction request)
    persona: str  # the persona answering (or "you")
    text: str = ""
    targets: tuple[str, ...] = ()  # for a user message: who it was addressed to
    status: MessageStatus = "streaming"
    code: str | None = None
    detail: str = ""
    tokens: int = 0
    hidden: bool = False  # hidden unless asked for (the sentinel's correction requests)
    retry: bool = False  # an answer given after a correction request
    prompt: str = ""  # the user-side message this turn answers (the correction if hidden)
    verdicts: list[Any] = field(default_factory=list)  # sentinel Verdicts
    correction: str = ""  # the correction sent after this turn, if any

    @property
    def finished(self) -> bool:
        return self.status != "streaming"

    @property
    def worst(self) -> str | None:
        """'critical', 'minor' or None: the most severe verdict on this message."""
        if any(v.severity == "critical" for v in self.verdicts):
            return "critical"
        return "minor" if self.verdicts else None


def records_from_rows(rows: list[Any]) -> list[ChatMessage]:
    """What the chat shows for a stored transcript (``Store.get_transcript`` rows, hidden
    correction turns included): the correction requests hidden, the answers after them marked
    as retries, each answer with its verdicts and the correction it was sent."""
    out: list[ChatMessage] = []
    last_answer: dict[str, ChatMessage] = {}
    corrected: set[str] = set()  # personas whose next answer follows a correction
    for m in rows:
        key = f"m{m.id}"
        if m.role == "user":
            targets = tuple(p for p in m.persona.split(",") if p)
            out.append(ChatMessage(key, "user", "you", m.content, targets, "done"))
            continue
        if m.role == NOTE_ROLE:  # what hermes said about the turn (who was skipped)
            targets = tuple(p for p in m.persona.split(",") if p)
            out.append(ChatMessage(key, "note", "hermes", m.content, targets, "done"))
            continue
        if m.role == "sentinel":
            out.append(
                ChatMessage(
                    key, "sentinel", "sentinel", m.content, (m.persona,), "done", hidden=True
                )
            )
            earlier = last_answer.get(m.persona)
            if earlier is not None:
                earlier.correction = m.content
            corrected.add(m.persona)
            continue
        status = m.status if m.status != "streaming" else "interrupted"
        record = ChatMessage(
            key,
            "assistant",
            m.persona,
            m.content,
            status=status,
            code=m.error_code,
            tokens=m.tokens,
            retry=m.persona in corrected,
            verdicts=[v.to_verdict() for v in m.verdicts],
        )
        corrected.discard(m.persona)
        last_answer[m.persona] = record
        out.append(record)
    return out
