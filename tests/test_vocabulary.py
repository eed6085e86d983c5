"""Names the packages share are defined once: message statuses, severities, day ranges."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

import pytest

from agents.events import MESSAGE_STATUSES
from hermes_tui.store import Store, day_range
from hermes_tui.widgets.message import STATUS_ICON


def test_every_message_status_has_its_own_icon() -> None:
    assert set(STATUS_ICON) == set(MESSAGE_STATUSES)
    assert len(set(STATUS_ICON.values())) == len(STATUS_ICON)


async def test_the_database_accepts_exactly_the_shared_statuses(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    async with await Store.open(db) as store:
        sid = await store.create_session("chat")
    conn = sqlite3.connect(db)
    try:
        for status in MESSAGE_STATUSES:
            conn.execute(
                "INSERT INTO messages(session_id, persona, role, started, status) "
                "VALUES (?, 'coder', 'assistant', 0, ?)",
                (sid, status),
            )
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute(
                "INSERT INTO messages(session_id, persona, role, started, status) "
                "VALUES (?, 'coder', 'assistant', 0, 'paused')",
                (sid,),
            )
    finally:
        conn.close()


def test_a_day_range_includes_both_days() -> None:
    since, until = day_range(dt.date(2025, 3, 10), dt.date(2025, 3, 11))
    assert since == dt.datetime(2025, 3, 10).timestamp()
    assert until == dt.datetime(2025, 3, 12).timestamp()  # the whole of the 11th
    assert day_range(None, None) == (None, None)
