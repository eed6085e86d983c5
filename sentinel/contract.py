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
    # [personas.X] patterns: name -> a strict regex replacing a known one (url, email, path,
    # ipv4), or a (trigger, strict) pair for a new kind of token (see checks/patterns.py)
    patterns: dict[str, str | tuple[str, str]] = field(default_factory=dict)
    max_tokens: int | None = None  # what the persona was asked for (drift: far longer)
