"""Review past sessions: the session list, filtered by what the sentinel found, and search.

The session list comes from ``Store.list_sessions`` with the filters pushed into SQL; the
search box uses the store's FTS5 index over message text and verdict details. Opening a
session (or a search hit) pushes ``session_view.SessionScreen``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Select, Static

from hermes_tui.outbound import display as sanitize_for_terminal
from hermes_tui.screens.session_view import SessionScreen, fmt_time
from hermes_tui.store.times import day_range
from sentinel.registry import CHECK_NAMES
from sentinel.verdict import CODES, SEVERITIES

BARS = "▁▂▃▄▅▆▇█"


def spark_text(values: list[int]) -> str:
    """A sparkline as block characters (a DataTable cell cannot hold a widget)."""
    if not values:
        return ""
    top = max(values)
    if top == 0:
        return BARS[0] * len(values)
    return "".join(BARS[min(7, round(v / top * 7))] for v in values)


def parse_day(text: str) -> dt.date | None:
    """'2025-01-31' -> that day; '' -> None; anything else raises ValueError."""
    text = text.strip()
    if not text:
        return None
    return dt.datetime.strptime(text, "%Y-%m-%d").date()


def _shown(name: str, value: Any) -> str:
    """A filter as the user typed it: dates as YYYY-MM-DD, not timestamps."""
    if name == "since":
        return dt.datetime.fromtimestamp(value).strftime("%Y-%m-%d")
    if name == "until":  # stored exclusive (the next midnight); typed inclusive
        return dt.datetime.fromtimestamp(value - 86400).strftime("%Y-%m-%d")
    return str(value)


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


class ReviewScreen(Screen):
    """The session list with filters and search. Enter opens a session."""

    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("ctrl+f", "focus_search", "Search"),
        Binding("ctrl+r", "reload", "Reload"),
        Binding("ctrl+l", "clear_filters", "Clear"),
        Binding("down", "to_results", "Results", show=False),
    ]

    def __init__(
        self,
        store: Any = None,
        db_path: Path | None = None,
        *,
        standalone: bool = False,
        personas: tuple[str, ...] = (),
    ) -> None:
        """``personas``: the configured ones, offered in the persona filter together with
        every persona that wrote in the database."""
        super().__init__()
        self.store = store
        self.db_path = db_path
        self.standalone = standalone
        self._own_store = False
        self.checks = CHECK_NAMES
        self.personas = personas
        self.rows: list[Any] = []  # SessionRow or SearchHit, in table order
        self.mode = "sessions"
        self._reload_lock = asyncio.Lock()

    def compose(self) -> ComposeResult:
        with Vertical(id="review"):
            yield Input(
                placeholder="search messages and verdict details (ctrl+f)",
                id="search",
                compact=True,
            )
            with Horizontal(id="filters"):
                yield Select(
                    [(c, c) for c in SEVERITIES], prompt="severity", id="severity", compact=True
                )
                yield Select(
                    [(c, c) for c in self.checks], prompt="check", id="check", compact=True
                )
                yield Select([(c, c) for c in CODES], prompt="code", id="code", compact=True)
                yield Select(
                    [(p, p) for p in self.personas], prompt="persona", id="persona", compact=True
                )
                yield Input(placeholder="since YYYY-MM-DD", id="since", compact=True)
                yield Input(placeholder="until YYYY-MM-DD", id="until", compact=True)
            table: DataTable = DataTable(id="sessions", cursor_type="row", zebra_stripes=True)
            yield table
            yield Static("", id="summary", markup=False)
        yield Footer()

    async def on_mount(self) -> None:
        if self.store is None:
            from hermes_tui.store import Store

            try:
                self.store = await Store.open(self.db_path, readonly=True)
                self._own_store = True
            except Exception as exc:
                self.query_one("#summary", Static).update(f"cannot open the database: {exc}")
                return
        self.query_one("#sessions", DataTable).focus()
        await self._offer_personas()
        await self.reload()

    async def _offer_personas(self) -> None:
        """The persona filter offers the configured personas and every one that wrote here."""
        assert self.store is not None
        try:
            stored = await self.store.persona_names()
        except Exception:  # the list still works with the configured names
            stored = []
        names = tuple(dict.fromkeys([*self.personas, *stored]))
        if names != self.personas:
            self.personas = names
            self.query_one("#persona", Select).set_options([(p, p) for p in names])

    async def on_unmount(self) -> None:
        if self._own_store and self.store is not None:
            await self.store.close()

    # -- filters --------------------------------------------------------------------------
    def filters(self) -> dict[str, Any]:
        """The current filters as ``Store.list_sessions`` keyword arguments."""
        out: dict[str, Any] = {}
        for name in ("severity", "check", "code", "persona"):
            select = self.query_one(f"#{name}", Select)
            if not select.is_blank():
                out[name] = select.value
        days: dict[str, dt.date | None] = {}
        for name in ("since", "until"):
            field = self.query_one(f"#{name}", Input)
            try:
                days[name] = parse_day(field.value)
            except ValueError:
                field.add_class("-invalid")
                days[name] = None
                continue
            field.remove_class("-invalid")
        since, until = day_range(days["since"], days["until"])  # until is inclusive
        for name, when in (("since", since), ("until", until)):
            if when is not None:
                out[name] = when
        return out

    @on(Select.Changed)
    def _filter_changed(self) -> None:
        self._reload_later(0.0)

    @on(Input.Submitted, "#since, #until")
    def _input_submitted(self) -> None:
        self._reload_later(0.0)

    @on(Input.Submitted, "#search")
    async def _search_submitted(self) -> None:
        """Enter in the search box: search now, then go to the results."""
        self.workers.cancel_group(self, "review-reload")
        await self.reload()
        self._to_results()

    def action_to_results(self) -> None:
        """↓ from the search box or a date field: into the table of results."""
        self._to_results()

    def _to_results(self) -> None:
        table = self.query_one("#sessions", DataTable)
        if table.row_count:
            table.focus()

    @on(Input.Changed, "#search")
    def _search_typed(self) -> None:
        self._reload_later(0.15)  # one query per pause in typing, not per key

    @work(exclusive=True, group="review-reload")
    async def _reload_later(self, delay: float) -> None:
        """Reload after ``delay``; a newer request cancels this one (the latest wins)."""
        await asyncio.sleep(delay)
        await self.reload()

    async def reload(self) -> None:
        """Query the store with the current filters (one reload at a time, latest wins)."""
        if self.store is None:
            return
        async with self._reload_lock:
            table = self.query_one("#sessions", DataTable)
            query = self.query_one("#search", Input).value.strip()
            table.clear(columns=True)
            if query:
                await self._show_hits(table, query)
            else:
                await self._show_sessions(table)

    async def _show_sessions(self, table: DataTable) -> None:
        self.mode = "sessions"
        # Below 100 columns (80x24 over SSH) shorter dates, titles and headings keep every
        # column on screen instead of behind a horizontal scroll.
        narrow = self.size.width < 100
        if narrow:
            table.add_columns("date", "title", "personas", "min", "crit", "msgs", "trend")
        else:
            table.add_columns("date", "title", "personas", "minor", "critical", "msgs", "verdicts")
        rows = await self.store.list_sessions(200, **self.filters())
        self.rows = rows
        for row in rows:
            timeline = await self.store.verdict_timeline(row.id, 8 if narrow else 12)
            title = sanitize_for_terminal(row.title or f"session {row.id}")
            personas = ("," if narrow else " ").join(row.personas)
            table.add_row(
                fmt_time(row.started, short=narrow),
                _clip(title, 16 if narrow else 40),
                _clip(personas, 14 if narrow else 40),
                str(row.minor) if row.minor else "",
                str(row.critical) if row.critical else "",
                str(row.message_count),
                spark_text(timeline),
                key=str(row.id),
            )
        label = ", ".join(f"{k}={_shown(k, v)}" for k, v in self.filters().items()) or "none"
        bad = [
            f"{name} {field.value.strip()!r} is not a date (YYYY-MM-DD)"
            for name in ("since", "until")
            if (field := self.query_one(f"#{name}", Input)).has_class("-invalid")
        ]
        noun = "session" if len(rows) == 1 else "sessions"
        self.query_one("#summary", Static).update(
            " · ".join([*bad, f"{len(rows)} {noun}", f"filters: {label}", "Enter opens a session"])
        )

    async def _show_hits(self, table: DataTable, query: str) -> None:
        self.mode = "hits"
        table.add_columns("session", "persona", "found in", "code", "match")
        hits = await self.store.search(query, 100)
        self.rows = hits
        for i, hit in enumerate(hits):
            table.add_row(
                str(hit.session_id),
                hit.persona,
                hit.kind,
                hit.code or "",
                sanitize_for_terminal(hit.snippet).replace("\n", " ")[:80],
                key=f"hit{i}",
            )
        noun = "match" if len(hits) == 1 else "matches"
        self.query_one("#summary", Static).update(
            f"{len(hits)} {noun} for {query!r} · ↓ or Enter goes to them, Enter opens one"
        )

    @on(DataTable.RowSelected, "#sessions")
    def _open(self, event: DataTable.RowSelected) -> None:
        index = event.cursor_row
        if not (0 <= index < len(self.rows)):
            return
        row = self.rows[index]
        if self.mode == "sessions":
            self.app.push_screen(SessionScreen(self.store, row.id))
        else:
            self.app.push_screen(
                SessionScreen(
                    self.store, row.session_id, message_id=row.message_id, verdict_id=row.verdict_id
                )
            )

    # -- actions --------------------------------------------------------------------------
    def action_back(self) -> None:
        """Back to the chat (or, asked first, quit when review was opened on its own)."""
        if not self.standalone:
            self.app.pop_screen()
            return
        from hermes_tui.screens.dialogs import ConfirmScreen

        def answered(yes: bool | None) -> None:
            if yes:
                self.app.exit()

        self.app.push_screen(ConfirmScreen("Quit hermes review?"), answered)

    def action_focus_search(self) -> None:
        """Full-text search over messages and verdict details."""
        self.query_one("#search", Input).focus()

    async def action_reload(self) -> None:
        """Read the database again."""
        await self.reload()

    async def action_clear_filters(self) -> None:
        """Clear every filter and the search."""
        for name in ("severity", "check", "code", "persona"):
            self.query_one(f"#{name}", Select).clear()
        for name in ("since", "until", "search"):
            self.query_one(f"#{name}", Input).value = ""
        await self.reload()
