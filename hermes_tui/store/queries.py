"""Reads: sessions and transcripts with their verdicts, with the review screen's filters
pushed into SQL. Mixed into ``Store``; every row is read through the reader connection."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiosqlite

from hermes_tui.store.errors import DB_ERRORS, map_error
from hermes_tui.store.files import WritersLock
from hermes_tui.store.rows import MessageRow, SessionRow, VerdictRow, columns
from hermes_tui.store.times import TimeLike, time_range

_SESSION_COLS = columns(SessionRow.COLUMNS, "s")
_COUNTS = (
    "(SELECT count(*) FROM messages m WHERE m.session_id = s.id AND m.hidden = 0) "
    "AS message_count, "
    "(SELECT count(*) FROM verdicts v WHERE v.session_id = s.id AND v.severity = 'minor') "
    "AS minor, "
    "(SELECT count(*) FROM verdicts v WHERE v.session_id = s.id AND v.severity = 'critical') "
    "AS critical"
)
_MESSAGE_COLS = columns(MessageRow.COLUMNS)
_VERDICT_COLS = columns(VerdictRow.COLUMNS)


class ReadBase:
    """What every read needs: the reader connection (rows by name), and how to report errors."""

    path: Path
    readonly: bool
    busy_timeout_ms: int
    _r: aiosqlite.Connection

    @property
    def live_writer(self) -> bool:
        """Read-only stores: whether another process has the database open to write, asked
        anew each time (a review screen stays open while a chat or batch run starts or dies)."""
        return self.readonly and WritersLock.anyone_writing(self.path)

    async def _fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        try:
            return list(await self._r.execute_fetchall(sql, params))
        except DB_ERRORS as exc:
            raise map_error(exc, self.path, self.busy_timeout_ms, self.readonly) from exc


class Queries(ReadBase):
    """Sessions, their transcripts with verdicts, and who wrote in them."""

    async def get_session(self, session_id: int) -> SessionRow | None:
        """One session with its counts, or None."""
        rows = await self._fetchall(
            f"SELECT {_SESSION_COLS}, {_COUNTS} FROM sessions s WHERE s.id = ?", (session_id,)
        )
        return SessionRow.from_row(rows[0]) if rows else None

    async def list_sessions(
        self,
        limit: int = 50,
        offset: int = 0,
        *,
        persona: str | None = None,
        check: str | None = None,
        code: str | None = None,
        severity: str | None = None,
        since: TimeLike | None = None,
        until: TimeLike | None = None,
        mode: str | None = None,
    ) -> list[SessionRow]:
        """Sessions, newest first, with message count and verdict counts by severity.

        ``check``/``code``/``severity`` keep sessions having at least one verdict matching
        all of them (and ``persona`` too, when given with them). ``persona`` alone keeps
        sessions in which that persona wrote a message. ``since``/``until`` bound the
        session's start (``until`` exclusive). ``mode`` keeps one kind of session (chat,
        batch, api).
        """
        where: list[str] = []
        params: list[Any] = []
        vconds: list[str] = []
        vparams: list[Any] = []
        for col, val in (("check_name", check), ("code", code), ("severity", severity)):
            if val is not None:
                vconds.append(f"v.{col} = ?")
                vparams.append(val)
        if vconds:
            if persona is not None:
                vconds.append("v.persona = ?")
                vparams.append(persona)
            where.append(
                "EXISTS (SELECT 1 FROM verdicts v WHERE v.session_id = s.id AND "
                + " AND ".join(vconds)
                + ")"
            )
            params += vparams
        elif persona is not None:
            where.append(
                "EXISTS (SELECT 1 FROM messages m WHERE m.session_id = s.id AND m.persona = ?)"
            )
            params.append(persona)
        time_range(where, params, "s.started", since, until)
        if mode is not None:
            where.append("s.mode = ?")
            params.append(mode)
        sql = f"SELECT {_SESSION_COLS}, {_COUNTS} FROM sessions s"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY s.started DESC, s.id DESC LIMIT ? OFFSET ?"
        rows = await self._fetchall(sql, (*params, int(limit), int(offset)))
        return [SessionRow.from_row(r) for r in rows]

    async def persona_names(self) -> list[str]:
        """Every persona that answered or was addressed in this database, sorted.

        Reads the covering ``(session_id, persona)`` index, not the messages: a user
        message's persona is whom it was sent to, comma-separated, or ``user``.
        """
        rows = await self._fetchall("SELECT DISTINCT persona FROM messages")
        names = {p for r in rows for p in str(r["persona"]).split(",")}
        return sorted(names - {"", "user"})

    async def verdict_timeline(self, session_id: int, buckets: int = 20) -> list[int]:
        """Verdict counts across the session's messages in order, for a sparkline.

        Messages are split into ``buckets`` equal runs (by position, not time, so a long
        pause doesn't flatten the line); with fewer messages than buckets there is one value
        per message. Empty session: ``[]``.
        """
        rows = await self._fetchall(
            "SELECT (SELECT count(*) FROM verdicts v WHERE v.message_id = m.id) AS n "
            "FROM messages m WHERE m.session_id = ? ORDER BY m.id",
            (session_id,),
        )
        n = len(rows)
        if n == 0 or buckets <= 0:
            return []
        width = min(buckets, n)
        out = [0] * width
        for i, row in enumerate(rows):
            out[i * width // n] += row["n"]
        return out

    async def get_transcript(
        self, session_id: int, include_hidden: bool = False
    ) -> list[MessageRow]:
        """The session's messages in order, each with its verdicts.

        Hidden correction turns (the sentinel's corrective prompts and the retried answers
        they replaced) are left out unless ``include_hidden``.
        """
        hidden_cond = "" if include_hidden else " AND hidden = 0"
        msgs = await self._fetchall(
            f"SELECT {_MESSAGE_COLS} FROM messages WHERE session_id = ?{hidden_cond} ORDER BY id",
            (session_id,),
        )
        verdicts = await self._fetchall(
            f"SELECT {_VERDICT_COLS} FROM verdicts WHERE session_id = ? "
            "ORDER BY message_id, span_start, id",
            (session_id,),
        )
        by_msg: dict[int | None, list[VerdictRow]] = {}
        for r in verdicts:
            by_msg.setdefault(r["message_id"], []).append(VerdictRow.from_row(r))
        rows = [MessageRow.from_row(m, by_msg.get(m["id"])) for m in msgs]
        if self.readonly and not self.live_writer:  # nobody is writing them any more
            rows = [
                replace(m, status="interrupted") if m.status == "streaming" else m for m in rows
            ]
        return rows
