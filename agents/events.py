"""Events a session emits while it runs. The TUI, batch mode and the store all consume them;
nothing in ``agents`` knows who listens."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol, get_args

# What becomes of a message: the one list the store's schema, the events and the widgets use.
# ``streaming`` while tokens arrive; ``interrupted`` when the process that wrote it died.
MessageStatus = Literal["streaming", "done", "halted", "error", "cancelled", "interrupted"]
# How a turn can end (``TurnEnded.status``).
EndStatus = Literal["done", "halted", "error", "cancelled"]
MESSAGE_STATUSES: tuple[MessageStatus, ...] = get_args(MessageStatus)
FINAL_STATUSES: tuple[MessageStatus, ...] = MESSAGE_STATUSES[1:]  # every status but streaming


class VerdictLike(Protocol):
    """A sentinel verdict as agents sees it (``sentinel.verdict.Verdict``; agents does not
    import sentinel)."""

    @property
    def check(self) -> str: ...

    @property
    def severity(self) -> str: ...

    @property
    def code(self) -> str: ...

    @property
    def span(self) -> tuple[int, int]: ...

    @property
    def detail(self) -> str: ...


@dataclass(frozen=True)
class TurnStarted:
    turn_id: int
    persona: str
    prompt: str  # the user-side message this turn answers (a correction when hidden)
    hidden: bool = False  # a hidden correction turn


@dataclass(frozen=True)
class TokenReceived:
    turn_id: int
    persona: str
    text: str
    offset: int  # character offset of ``text`` in the message


@dataclass(frozen=True)
class VerdictRaised:
    turn_id: int
    persona: str
    verdict: VerdictLike


@dataclass(frozen=True)
class TurnEnded:
    turn_id: int
    persona: str
    text: str
    tokens: int
    status: EndStatus
    code: str | None = None  # error code of a halt (E_...) or engine error
    detail: str = ""


Event = TurnStarted | TokenReceived | VerdictRaised | TurnEnded
