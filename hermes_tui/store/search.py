"""Full-text search over message text and verdict details (SQLite FTS5), mixed into ``Store``.

Plain user input is made safe by ``fts_query``; a query that is one error code finds that
code's verdicts; what the word index cannot hold (emoji, ``->``) is found as typed.
"""

from __future__ import annotations

import re
import sqlite3

from hermes_tui.store.errors import DB_ERRORS, StoreError, map_error
from hermes_tui.store.queries import ReadBase
from hermes_tui.store.rows import SearchHit

# Full-text hits are ranked among this many newest matches per table (see Search.search).
SEARCH_WINDOW = 10_000

_ERROR_CODE = re.compile(r"E_[A-Z0-9_]+", re.IGNORECASE)


def fts_query(text: str) -> str | None:
    """Turn user input into an FTS5 query of plain terms (all must match).

    Every whitespace-separated term becomes a quoted FTS5 string (inner quotes doubled), so
    operators and punctuation (``foo"bar``, ``AND(``, ``NEAR``) are just text; a trailing
    ``*`` keeps its meaning, a prefix (``pick*`` finds pickle), and the last term is always a
    prefix (``passw`` finds password: the word being typed). Terms without a letter or digit
    would tokenize to nothing and are dropped. Returns None when nothing searchable is left.
    """
    out = []
    terms = text.split()
    for i, term in enumerate(terms):
        prefix = term.endswith("*") or i == len(terms) - 1
        term = term.rstrip("*") if prefix else term
        if any(ch.isalnum() for ch in term):
            out.append('"' + term.replace('"', '""') + '"' + ("*" if prefix else ""))
    return " ".join(out) or None


class Search(ReadBase):
    """``search`` and the ways it answers."""

    async def search(
        self,
        query: str,
        limit: int = 20,
        *,
        include_hidden: bool = False,
        raw: bool = False,
        mark: tuple[str, str] = ("«", "»"),
    ) -> list[SearchHit]:
        """Full-text search over message text and verdict details, best matches first.

        The query is plain terms that must all appear (see ``fts_query``), so any user input
        is safe; ``raw=True`` passes FTS5 syntax through (and its syntax errors become
        StoreError).

        Ranking is bm25 among the newest ``SEARCH_WINDOW`` matches of each table: scoring
        every match of a very common word in a million verdicts takes about half a second,
        and for such a word the recent matches are the useful ones anyway.
        """
        if not raw and _ERROR_CODE.fullmatch(query.strip()):
            return await self._verdicts_with_code(query.strip().upper(), limit)
        match = query if raw else fts_query(query)
        left, right = mark
        if not match:
            # Nothing the word index holds (emoji, "->", "{}"): plain substring search.
            needle = query.strip()
            return await self._substring_hits(needle, limit, include_hidden, mark) if needle else []
        hidden_cond = "" if include_hidden else " AND m.hidden = 0"
        msg_sql = (
            "SELECT f.rank AS rank, snippet(messages_fts, 0, ?, ?, '…', 12) AS snippet, "
            "m.session_id AS session_id, m.id AS message_id, m.persona AS persona, "
            "m.role AS role FROM messages_fts f JOIN messages m ON m.id = f.rowid "
            f"WHERE messages_fts MATCH ? AND f.rowid >= ?{hidden_cond} "
            "ORDER BY f.rank, f.rowid DESC LIMIT ?"
        )
        ver_sql = (
            "SELECT f.rank AS rank, snippet(verdicts_fts, 0, ?, ?, '…', 12) AS snippet, "
            "v.session_id AS session_id, v.message_id AS message_id, v.persona AS persona, "
            "v.id AS verdict_id, v.code AS code FROM verdicts_fts f "
            "JOIN verdicts v ON v.id = f.rowid "
            "WHERE verdicts_fts MATCH ? AND f.rowid >= ? ORDER BY f.rank, f.rowid DESC LIMIT ?"
        )
        try:
            msg_floor = await self._search_floor("messages_fts", match)
            msgs = await self._r.execute_fetchall(msg_sql, (left, right, match, msg_floor, limit))
            ver_floor = await self._search_floor("verdicts_fts", match)
            vers = await self._r.execute_fetchall(ver_sql, (left, right, match, ver_floor, limit))
        except DB_ERRORS as exc:
            low = str(exc).lower()
            damaged = isinstance(exc, sqlite3.DatabaseError) and "corrupt" in low
            if raw and not damaged and ("fts5" in low or "syntax" in low):
                raise StoreError(f"bad search query {query!r}: {exc}") from exc
            raise map_error(exc, self.path, self.busy_timeout_ms, self.readonly) from exc
        hits = [SearchHit.from_row("message", r) for r in msgs]
        hits += [SearchHit.from_row("verdict", r) for r in vers]
        hits.sort(key=lambda h: h.rank)
        return hits[:limit]

    async def _substring_hits(
        self, needle: str, limit: int, include_hidden: bool, mark: tuple[str, str]
    ) -> list[SearchHit]:
        """Messages containing ``needle`` as typed, newest first (instr() scans the text, so
        this is for what full-text search cannot find, not for words)."""
        hidden_cond = "" if include_hidden else " AND hidden = 0"
        rows = await self._fetchall(
            "SELECT content, session_id, id, persona, role FROM messages "
            f"WHERE instr(content, ?) > 0{hidden_cond} ORDER BY id DESC LIMIT ?",
            (needle, int(limit)),
        )
        hits = []
        for r in rows:
            content = r["content"]
            at = content.find(needle)
            start, end = max(0, at - 30), at + len(needle) + 30
            snippet = (
                ("…" if start else "")
                + content[start:at]
                + mark[0]
                + needle
                + mark[1]
                + content[at + len(needle) : end]
                + ("…" if end < len(content) else "")
            )
            hits.append(
                SearchHit(
                    kind="message",
                    rank=0.0,
                    snippet=snippet,
                    session_id=r["session_id"],
                    message_id=r["id"],
                    verdict_id=None,
                    persona=r["persona"],
                    code=None,
                    role=r["role"],
                )
            )
        return hits

    async def _verdicts_with_code(self, code: str, limit: int) -> list[SearchHit]:
        """A query that is one error code (E_DRIFT) finds that code's verdicts, newest first:
        codes are not in the full-text index, and the user means the code, not the word."""
        rows = await self._fetchall(
            "SELECT 0.0 AS rank, detail AS snippet, session_id, message_id, persona, "
            "id AS verdict_id, code FROM verdicts "
            "WHERE code = ? ORDER BY at DESC, id DESC LIMIT ?",
            (code, int(limit)),
        )
        return [SearchHit.from_row("verdict", r) for r in rows]

    async def _search_floor(self, fts: str, match: str) -> int:
        """Smallest rowid among the newest SEARCH_WINDOW matches (FTS5 walks its doclist
        backwards and stops, so this is cheap), or 0 if there are fewer."""
        rows = await self._r.execute_fetchall(
            f"SELECT min(rowid), count(*) FROM (SELECT rowid FROM {fts} WHERE {fts} MATCH ? "
            "ORDER BY rowid DESC LIMIT ?)",
            (match, SEARCH_WINDOW),
        )
        floor, count = list(rows)[0]
        return 0 if floor is None or count < SEARCH_WINDOW else int(floor)
