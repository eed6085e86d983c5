"""A stored session as Markdown (for reading and sharing) or JSON (for tools)."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime

from hermes_tui.fences import close_open_fence
from hermes_tui.skipped import NOTE_ROLE
from hermes_tui.store import SCHEMA_VERSION, MessageRow, SessionRow, Store, StoreError


async def export_session(
    store: Store, session_id: int, fmt: str = "markdown", *, include_hidden: bool = False
) -> str:
    """The session as Markdown or JSON; StoreError when there is no such session."""
    if fmt not in ("markdown", "json"):
        raise ValueError(f"fmt must be 'markdown' or 'json', not {fmt!r}")
    session = await store.get_session(session_id)
    if session is None:
        raise StoreError(f"no session {session_id} in database {store.path}")
    messages = await store.get_transcript(session_id, include_hidden=include_hidden)
    if fmt == "json":
        doc = {
            "schema_version": SCHEMA_VERSION,
            "session": asdict(session),
            "messages": [asdict(m) for m in messages],
        }
        return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    return markdown(session, messages)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _iso(ts: float | None) -> str:
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def markdown(session: SessionRow, messages: list[MessageRow]) -> str:
    """The Markdown document for one session's messages."""
    # one line each: a newline in a stored title or name must not forge the lines after it
    title = _one_line(session.title) or f"Session {session.id}"
    lines = [
        f"# {title}",
        "",
        f"- session: {session.id}",
        f"- started: {_iso(session.started)}",
        f"- mode: {session.mode}",
        f"- personas: {', '.join(map(_one_line, session.personas))}",
        f"- verdicts: {session.minor} minor, {session.critical} critical",
    ]
    if session.config_hash:
        lines.append(f"- config: {session.config_hash}")
    for m in messages:
        if m.role == "user":  # its persona is whom it was sent to
            to = ", ".join(p for p in m.persona.split(",") if p not in ("", "user"))
            head = f"## you → {to}" if to else "## you"
        elif m.role == "assistant":
            head = f"## {m.persona}"
        elif m.role == NOTE_ROLE:  # hermes about the turn: who was skipped
            head = "## hermes"
        else:
            head = f"## {m.persona} ({m.role})"
        notes = [m.status] if m.status != "done" else []
        if m.error_code:
            notes.append(m.error_code)
        if m.hidden:
            notes.append("hidden correction")
        if notes:
            head += " — " + ", ".join(notes)
        lines += ["", head, "", close_open_fence(m.content.rstrip()) or "_(empty)_"]
        if m.verdicts:
            lines.append("")
            for v in m.verdicts:
                detail = v.detail.replace("\n", " ")
                lines.append(
                    f"> **{v.severity}** `{v.code}` ({v.check_name}, chars "
                    f"{v.span_start}–{v.span_end}): {detail}"
                )
    return "\n".join(lines) + "\n"
