"""The review screen's filters offer only what exists, and each one finds its sessions.

The database is seeded with the verdicts the REAL checks raise on sample text (see
``check_samples``), never with hand-written check names.
"""

from __future__ import annotations

from pathlib import Path

from textual.widgets import DataTable, Select

from hermes_tui.app import HermesApp
from hermes_tui.screens.review import ReviewScreen
from hermes_tui.store import Store
from sentinel.registry import CHECK_NAMES, checks_raising
from sentinel.verdict import CODES, SEVERITIES

from .check_samples import real_verdicts


async def until(pilot, condition, timeout: float = 30.0, what: str = "condition") -> None:
    for _ in range(int(timeout / 0.05)):
        if condition():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def seed(db: Path) -> dict[int, set[str]]:
    """One session per sample text; returns each session's set of check names."""
    checks_of: dict[int, set[str]] = {}
    store = await Store.open(db)
    try:
        for i, (persona, text, verdicts) in enumerate(await real_verdicts()):
            sid = await store.create_session("chat", title=f"sample {i}", personas=[persona])
            mid = await store.add_message(sid, persona, "assistant", text)
            for v in verdicts:
                await store.add_verdict(sid, mid, persona, v)
            checks_of[sid] = {v.check for v in verdicts}
    finally:
        await store.close()
    return checks_of


def shown(screen: ReviewScreen) -> set[int]:
    table = screen.query_one("#sessions", DataTable)
    return {
        int(str(table.coordinate_to_cell_key((i, 0)).row_key.value)) for i in range(table.row_count)
    }


def test_every_filter_option_is_something_the_sentinel_emits() -> None:
    screen = ReviewScreen(db_path=Path("unused.db"))
    assert screen.checks == CHECK_NAMES
    for code in CODES:
        assert checks_raising(code), f"code {code} offered but no check raises it"
    assert SEVERITIES == ("minor", "critical")


async def test_each_check_filter_returns_the_sessions_whose_verdicts_came_from_that_check(
    tmp_path: Path,
) -> None:
    db = tmp_path / "review.db"
    checks_of = await seed(db)
    app = HermesApp(None, db_path=db, review=True)
    async with app.run_test(size=(160, 50)) as pilot:
        screen = app.screen
        assert isinstance(screen, ReviewScreen)
        await until(pilot, lambda: len(shown(screen)) == len(checks_of), what="all sessions")
        select = screen.query_one("#check", Select)
        for name in screen.checks:  # setting a value the Select does not offer would raise
            expected = {sid for sid, names in checks_of.items() if name in names}
            assert expected, f"no real check produced a {name!r} verdict"
            select.value = name
            await until(pilot, lambda e=expected: shown(screen) == e, what=f"check {name}")
        select.clear()
        # The persona filter offers each persona that wrote in this database.
        personas = screen.query_one("#persona", Select)
        assert set(screen.personas) == {"architect", "coder", "critic"}
        personas.value = "critic"
        await until(pilot, lambda: len(shown(screen)) == 1, what="persona critic")
