"""What the sentinel is told about the persona it watches (no import of ``agents``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

ContractKind = Literal["text", "code", "json"]


@dataclass(frozen=True)
class Contract:
    """The rules one persona's output must follow."""

    kind: ContractKind = "text"
    schema: dict[str, Any] | None = None  # JSON Schema for contract "json" (or fenced json blocks)
    max_words: int | None = None
    banned_imports: tuple[str, ...] = ()
    system_prompt: str = ""
    canary: str | None = None  # a marker planted in the system prompt; seeing it = leak
    canaries: tuple[str, ...] = ()  # markers the user declared (config, --canary)
    patterns: dict[str, str] = field(default_factory=dict)  # name -> regex a match must obey
    max_tokens: int | None = None  # what the persona was asked for (drift: far longer)
