"""Plain records of what the chat shows, kept apart from the widgets that show them.

The transcript can be rebuilt from these at any time (for example when the terminal becomes
wide enough for three panes), so widgets never own the only copy of a message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class ChatMessage:
    """One message on screen: a user prompt or one persona's (possibly hidden) turn."""

    key: str  # unique, stable id ("u3", "t12")
    role: str  # "user" | "assistant" | "sentinel" (a correction request)
    persona: str  # the persona answering (or "you")
    text: str = ""
    targets: tuple[str, ...] = ()  # for a user message: who it was addressed to
    status: str = "streaming"  # streaming | done | halted | error | cancelled
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
