"""Who a cancelled multi-persona turn never reached: shown in the chat and stored.

The chat shows the note under the cancelled answer; the runtime stores the same text with the
session (role ``note``, status ``cancelled``), so ``hermes review``, ``hermes log show`` and a
continued chat say it too."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

NOTE_ROLE = "note"  # a stored message hermes wrote about a turn (no persona's answer)


@dataclass(frozen=True)
class Skipped:
    """Personas a cancelled multi-persona turn never reached, and who was cancelled."""

    personas: tuple[str, ...]
    cancelled: tuple[str, ...]

    @property
    def text(self) -> str:
        names = " ".join(f"@{p}" for p in self.personas)
        who = " ".join(f"@{p}" for p in self.cancelled) or "the turn"
        return f"⊘ cancelled {who}: {names} skipped (not asked)"


def skipped_after_cancel(targets: Sequence[str], results: Iterable[Any]) -> Skipped | None:
    """The personas of ``targets`` with no result (``TurnResult``s), or None if all answered."""
    results = list(results)
    answered = {r.persona for r in results}
    skipped = tuple(t for t in targets if t not in answered)
    if not skipped:
        return None
    return Skipped(skipped, tuple(r.persona for r in results if r.status == "cancelled"))
