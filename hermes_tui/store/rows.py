"""Row types: what the store's reads return, each built from a query row by column name.

Each dataclass's stored fields are the names of its table's columns (``columns()``), so the
SELECT lists come from the dataclass and a row is read by name, never by position.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from typing import ClassVar, Literal

from agents.events import MessageStatus
from sentinel.verdict import Severity, Verdict


def columns(names: tuple[str, ...], alias: str = "") -> str:
    """A SELECT list of ``names``, each prefixed with ``alias.`` when given."""
    prefix = f"{alias}." if alias else ""
    return ", ".join(prefix + n for n in names)


@dataclass(frozen=True, slots=True)
class SessionRow:
    """One session with the counts the session list shows."""

    id: int
    started: float
    mode: str
    config_hash: str
    title: str
    personas: list[str]
    message_count: int = 0
    minor: int = 0
    critical: int = 0

    COLUMNS: ClassVar[tuple[str, ...]] = (
        "id",
        "started",
        "mode",
        "config_hash",
        "title",
        "personas",
    )
    COUNTS: ClassVar[tuple[str, ...]] = ("message_count", "minor", "critical")

    @classmethod
    def from_row(cls, r: sqlite3.Row) -> SessionRow:
        raw = r["personas"]
        try:
            personas = json.loads(raw) if raw else []
        except ValueError:
            personas = [p for p in str(raw).split(",") if p]
        keys = r.keys()
        counts = {k: int(r[k]) for k in cls.COUNTS if k in keys}
        return cls(
            id=r["id"],
            started=r["started"],
            mode=r["mode"],
            config_hash=r["config_hash"],
            title=r["title"],
            personas=personas,
            **counts,
        )


@dataclass(frozen=True, slots=True)
class VerdictRow:
    """One stored sentinel verdict."""

    id: int
    message_id: int | None
    session_id: int
    persona: str
    check_name: str
    severity: Severity
    code: str
    span_start: int
    span_end: int
    detail: str
    at: float

    COLUMNS: ClassVar[tuple[str, ...]] = (
        "id",
        "message_id",
        "session_id",
        "persona",
        "check_name",
        "severity",
        "code",
        "span_start",
        "span_end",
        "detail",
        "at",
    )

    @classmethod
    def from_row(cls, r: sqlite3.Row) -> VerdictRow:
        return cls(**{k: r[k] for k in cls.COLUMNS})

    def to_verdict(self) -> Verdict:
        """The sentinel's own record for this row."""
        return Verdict(
            check=self.check_name,
            severity=self.severity,
            code=self.code,
            span=(self.span_start, self.span_end),
            detail=self.detail,
        )


@dataclass(frozen=True, slots=True)
class MessageRow:
    """One message of a transcript with the verdicts raised on it (ordered by span)."""

    id: int
    session_id: int
    persona: str
    role: str
    content: str
    started: float
    finished: float | None
    tokens: int
    status: MessageStatus
    hidden: bool
    error_code: str | None
    verdicts: list[VerdictRow] = field(default_factory=list)

    COLUMNS: ClassVar[tuple[str, ...]] = (
        "id",
        "session_id",
        "persona",
        "role",
        "content",
        "started",
        "finished",
        "tokens",
        "status",
        "hidden",
        "error_code",
    )

    @classmethod
    def from_row(cls, r: sqlite3.Row, verdicts: list[VerdictRow] | None = None) -> MessageRow:
        values = {k: r[k] for k in cls.COLUMNS}
        values["hidden"] = bool(values["hidden"])
        return cls(**values, verdicts=verdicts or [])


@dataclass(frozen=True, slots=True)
class SearchHit:
    """One full-text match: a message (``verdict_id`` None) or a verdict's detail.

    ``rank`` is FTS5's bm25 (lower is better); ``snippet`` marks matched terms with the
    markers passed to ``search``.
    """

    kind: Literal["message", "verdict"]
    rank: float
    snippet: str
    session_id: int
    message_id: int | None
    verdict_id: int | None
    persona: str
    code: str | None
    # Who wrote the matched message: "user" (persona = whom it was sent to), "assistant" or
    # "sentinel" (a hidden correction request); a verdict is on an assistant's message.
    role: str = "assistant"

    @classmethod
    def from_row(cls, kind: Literal["message", "verdict"], r: sqlite3.Row) -> SearchHit:
        """From a row with columns ``rank, snippet, session_id, message_id, persona`` and,
        for verdicts, ``verdict_id, code`` (for messages, ``role``)."""
        keys = r.keys()
        return cls(
            kind=kind,
            rank=r["rank"],
            snippet=r["snippet"],
            session_id=r["session_id"],
            message_id=r["message_id"],
            verdict_id=r["verdict_id"] if "verdict_id" in keys else None,
            persona=r["persona"],
            code=r["code"] if "code" in keys else None,
            role=r["role"] if "role" in keys else "assistant",
        )
