"""A persona: a name, a model, a system prompt, an output contract and sampling settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from agents.engine import SamplingParams

ContractKind = Literal["text", "code", "json"]


@dataclass(frozen=True)
class Persona:
    name: str
    model: str
    system_prompt: str
    contract: ContractKind = "text"
    schema: dict[str, Any] | None = None
    max_words: int | None = None
    banned_imports: tuple[str, ...] = ()
    temperature: float = 0.7
    max_tokens: int = 256
    color: str = "white"
    canary: str | None = None  # a marker the user wrote into system_prompt (leak if repeated)
    # E_PATTERN's patterns: name -> strict regex, or (trigger, strict); see sentinel's Contract
    patterns: dict[str, str | tuple[str, str]] = field(default_factory=dict)

    def sampling(self, seed: int | None = None) -> SamplingParams:
        return SamplingParams(max_tokens=self.max_tokens, temperature=self.temperature, seed=seed)
