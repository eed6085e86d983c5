"""Text and JSON renderings of stored sessions for `hermes log`."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path
from typing import Any

from hermes_tui.errors import Fail
from hermes_tui.export import export_session
from hermes_tui.outbound import display as sanitize_for_terminal
from hermes_tui.outbound import dumps, export
from hermes_tui.skipped import NOTE_ROLE
from hermes_tui.store import Store, day_range


def _when(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M")


async def sessions(
    db: Path, as_json: bool, limit: int, filters: dict[str, Any] | None = None
) -> str:
    """The session list; ``filters`` are ``Store.list_sessions`` keyword arguments, except
    that ``until`` is a day included in the range (as in the review screen)."""
    query = dict(filters or {})
    query["since"], query["until"] = day_range(query.get("since"), query.get("until"))
    store = await Store.open(db, readonly=True)
    try:
        rows = await store.list_sessions(limit=limit, **query)
    finally:
        await store.close()
    if as_json:
        return "".join(dumps(dataclasses.asdict(r), ensure_ascii=True) + "\n" for r in rows)
    if not rows:
        matching = " matching " + _describe(filters) if filters else ""
        return f"no sessions{matching} in {db}\n"
    head = f"{'ID':>5}  {'STARTED':16}  {'MODE':5}  {'MSGS':>4}  {'MINOR':>5}  {'CRIT':>4}  TITLE"
    lines = [head]
    for r in rows:
        # one row each: a newline in a stored title or name must not forge the rows after it
        title = _one_line(r.title) or "(untitled)"
        names = ", ".join(map(_one_line, r.personas))
        lines.append(
            f"{r.id:>5}  {_when(r.started):16}  {r.mode:5}  {r.message_count:>4}  "
            f"{r.minor:>5}  {r.critical:>4}  {title} [{names}]"
        )
    return sanitize_for_terminal("\n".join(lines) + "\n")


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _describe(filters: dict[str, Any]) -> str:
    def show(v: Any) -> str:
        return f"{v:%Y-%m-%d}" if isinstance(v, dt.datetime) else str(v)

    return ", ".join(f"{k}={show(v)}" for k, v in filters.items())


async def show(db: Path, session_id: int, as_json: bool, hidden: bool) -> str:
    store = await Store.open(db, readonly=True)
    try:
        if await store.get_session(session_id) is None:
            raise Fail(f"no session {session_id} in {db} (see `hermes log`)", 2)
        if as_json:
            text = await export_session(store, session_id, "json", include_hidden=hidden)
            return export(text, "json")
        text = await export_session(store, session_id, "markdown", include_hidden=hidden)
        return export(text, "markdown")  # stored model text must not drive the terminal
    finally:
        await store.close()


async def search(db: Path, query: str, as_json: bool, limit: int = 50) -> str:
    """``hermes log search``: one line per match, ``you → coder`` for your own messages;
    identical lines folded into one (``×3``); a note when ``limit`` cut the list short."""
    store = await Store.open(db, readonly=True)
    try:
        hits = await store.search(query, limit=limit + 1)
    finally:
        await store.close()
    more, hits = len(hits) > limit, hits[:limit]
    if as_json:
        return "".join(dumps(dataclasses.asdict(h), ensure_ascii=True) + "\n" for h in hits)
    if not hits:
        return "no matches\n"
    folded: dict[tuple[str, str, str, str], list[int]] = {}
    for h in hits:
        persona = _one_line(h.persona)
        who = f"you → {persona.replace(',', ' ')}" if h.role == "user" else persona
        if h.role == "sentinel":
            who = f"sentinel → {persona}"
        elif h.role == NOTE_ROLE:
            who = "hermes"
        key = (who, h.kind, h.code or "", " ".join(h.snippet.split()))
        folded.setdefault(key, []).append(h.session_id)
    lines = []
    for (who, kind, code, snippet), sessions in folded.items():
        where = f"session {sessions[0]}"
        if len(sessions) > 1:
            ids = sorted(set(sessions))
            shown = ", ".join(map(str, ids[:5])) + (", …" if len(ids) > 5 else "")
            where = f"sessions {shown}" if len(ids) > 1 else where
            snippet += f"  (×{len(sessions)})"
        lines.append(f"{where}  {who:16} {kind:7} {code:16} {snippet}\n")
    if more:
        lines.append(f"(the first {limit} matches; --limit N shows more)\n")
    return sanitize_for_terminal("".join(lines))
