"""Snapshot tests of the chat, dashboard and review screens (no model output, no clocks).

Update after an intended change with ``pytest tests/test_tui_snapshots.py --snapshot-update``
and look at the SVGs in ``tests/__snapshots__/`` before committing them.
"""

from __future__ import annotations

import pytest
from textual.css.query import NoMatches

from hermes_tui.app import HermesApp
from hermes_tui.config import load_config
from tests.test_tui import seed_store

SIZES = [(80, 24), (120, 40)]


async def settle(pilot, condition, loops: int = 200) -> None:
    """Let the app run until ``condition()`` holds (widgets may not be composed yet)."""
    for _ in range(loops):
        try:
            if condition():
                break
        except NoMatches:
            pass
        await pilot.pause(0.02)
    await pilot.pause()


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_chat_screen(snap_compare, small_config, size):
    app = HermesApp(load_config(small_config), autostart=False)
    assert snap_compare(app, terminal_size=size, press=[*"@cod"])


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_pool_dashboard(snap_compare, small_config, size):
    app = HermesApp(load_config(small_config), autostart=False)
    assert snap_compare(app, terminal_size=size, press=["f2"])


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_review_screen(snap_compare, tmp_path, size):
    import asyncio

    db = tmp_path / "review.db"
    asyncio.run(seed_store(db))
    app = HermesApp(None, db_path=db, review=True)

    async def loaded(pilot):
        await settle(pilot, lambda: pilot.app.screen.query_one("#sessions").row_count == 3)

    assert snap_compare(app, terminal_size=size, run_before=loaded)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_review_session_view(snap_compare, tmp_path, size):
    import asyncio

    db = tmp_path / "review.db"
    asyncio.run(seed_store(db))
    app = HermesApp(None, db_path=db, review=True)

    async def opened(pilot):
        await settle(pilot, lambda: pilot.app.screen.query_one("#sessions").row_count == 3)
        await pilot.press("enter")  # the newest session: a critical E_SECRET
        await settle(pilot, lambda: getattr(pilot.app.screen, "verdict_rows", None))

    assert snap_compare(app, terminal_size=size, run_before=opened)
