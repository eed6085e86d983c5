"""The pool dashboard: device memory, resident models, who runs now, the queue, events.

It reads ``pool.snapshot()`` (a plain structure of dicts or dataclasses; read defensively so
a pool without it, or a snapshot missing a field, still shows what is known) plus the chat's
own view of which persona is streaming. A timer refreshes it every 0.4 s while visible; one
refresh is a few widget updates, so the chat keeps streaming.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.widgets import DataTable, Label, ProgressBar, Sparkline, Static

from hermes_tui.terminal_text import sanitize_for_terminal

REFRESH_S = 0.4


def field_of(obj: Any, name: str, default: Any = None) -> Any:
    """``obj[name]`` for a mapping, ``obj.name`` otherwise."""
    if isinstance(obj, dict):
        return obj.get(name, default)
    return getattr(obj, name, default)


def pool_event_line(event: Any) -> str:
    """``12:03:04 load smollm2 @coder 0.4 s`` for a pool event (load, evict, save_state...)."""
    when = time.strftime("%H:%M:%S", time.localtime(field_of(event, "ts", 0.0)))
    persona = field_of(event, "persona", "")
    parts = [when, field_of(event, "kind", "?"), field_of(event, "model", "")]
    parts += [f"@{persona}" if persona else "", field_of(event, "detail", "")]
    return sanitize_for_terminal(" ".join(p for p in parts if p))


def human_bytes(n: float | int | None) -> str:
    if n is None:
        return "?"
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


class DeviceBar(Vertical):
    """One device: its name, used / budget, and a bar."""

    DEFAULT_CSS = """
    DeviceBar { height: 2; }
    DeviceBar ProgressBar Bar { width: 1fr; }
    DeviceBar ProgressBar { width: 100%; }
    """

    def __init__(self, name: str) -> None:
        super().__init__(id=f"device-{name.replace(':', '-')}")
        self.device = name

    def compose(self) -> ComposeResult:
        yield Label(self.device, classes="device-label")
        yield ProgressBar(total=1, show_eta=False, show_percentage=True)

    def set_usage(self, used: int, budget: int) -> None:
        self.query_one(Label).update(f"{self.device}  {human_bytes(used)} / {human_bytes(budget)}")
        self.query_one(ProgressBar).update(total=max(1, budget), progress=min(used, budget))


class PoolDashboard(VerticalScroll):
    """Toggle with F2. ``source`` returns the pool (or None before the runtime starts)."""

    DEFAULT_CSS = """
    PoolDashboard {
        width: 44; dock: right; border: round $accent; padding: 0 1; scrollbar-size-vertical: 1;
    }
    PoolDashboard #devices { height: auto; }
    PoolDashboard .section { text-style: bold; color: $text-accent; }
    PoolDashboard DataTable { height: auto; max-height: 8; }
    PoolDashboard Sparkline { height: 1; }
    PoolDashboard #events { height: auto; }
    """

    def __init__(
        self,
        devices: list[tuple[str, int]],
        source: Callable[[], Any],
        running: Callable[[], list[str]],
        **kwargs: Any,
    ) -> None:
        """``devices``: (name, budget bytes) from the config, shown before the pool reports."""
        super().__init__(**kwargs)
        self.border_title = "pool"
        self.config_devices = devices
        self.source = source
        self.running = running
        self.events: deque[tuple[float, str]] = deque(maxlen=8)  # (wall time, line)
        self.rates: deque[float] = deque([0.0] * 30, maxlen=30)
        self._tokens_since = 0

    def compose(self) -> ComposeResult:
        yield Static("devices", classes="section")
        with Vertical(id="devices"):
            for name, _ in self.config_devices:
                yield DeviceBar(name)
        yield Static("resident models", classes="section")
        yield Static("none loaded yet", id="resident", markup=False)
        yield Static("running now", classes="section")
        yield Static("idle", id="running", markup=False)
        yield Static("tokens / s", classes="section")
        yield Sparkline(list(self.rates), id="rate")
        yield Static("queue", classes="section")
        table: DataTable = DataTable(id="queue", show_cursor=False, zebra_stripes=True)
        table.add_columns("persona", "model", "wait ≈")
        yield table
        yield Static("recent events", classes="section")
        yield Static("", id="events", markup=False)

    def on_mount(self) -> None:
        self._timer = self.set_interval(REFRESH_S, self.refresh_data, pause=not self.display)
        self.refresh_data()

    def set_shown(self, shown: bool) -> None:
        self.display = shown
        if shown:
            self.refresh_data()
            self._timer.resume()
        else:
            self._timer.pause()

    # -- inputs from the chat -------------------------------------------------------------
    def note_event(self, line: str) -> None:
        self.events.append((time.time(), sanitize_for_terminal(line)))

    def note_tokens(self, n: int = 1) -> None:
        self._tokens_since += n

    # -- refresh --------------------------------------------------------------------------
    def snapshot(self) -> Any:
        pool = self.source()
        if pool is not None and hasattr(pool, "snapshot"):
            try:
                return pool.snapshot()
            except Exception as exc:  # a dashboard must never take the chat down
                self.note_event(f"snapshot failed: {exc}")
        return None

    def refresh_data(self) -> None:
        self.rates.append(self._tokens_since / REFRESH_S)
        self._tokens_since = 0
        self.query_one("#rate", Sparkline).data = list(self.rates)
        snap = self.snapshot()
        self._show_devices(snap)
        self._show_resident(snap)
        running = list(field_of(snap, "running", None) or []) if snap is not None else []
        if isinstance(running, str):
            running = [running]
        names = [_who(r) for r in running] or [f"@{n}" for n in self.running()]
        self.query_one("#running", Static).update(", ".join(names) or "idle")
        self._show_queue(snap)
        lines = list(self.events)
        for ev in list(field_of(snap, "events", None) or [])[-8:] if snap is not None else []:
            lines.append((field_of(ev, "ts", 0.0), pool_event_line(ev)))
        lines.sort(key=lambda item: item[0])
        text = "\n".join(line for _, line in lines[-8:])
        self.query_one("#events", Static).update(text or "none yet")

    def _show_devices(self, snap: Any) -> None:
        devices = list(field_of(snap, "devices", None) or []) if snap is not None else []
        usage = {
            str(field_of(d, "name", "?")): (
                int(field_of(d, "used", field_of(d, "used_bytes", 0)) or 0),
                int(field_of(d, "budget", field_of(d, "budget_bytes", 0)) or 0),
            )
            for d in devices
        }
        for name, budget in self.config_devices:
            usage.setdefault(name, (0, budget))
        box = self.query_one("#devices", Vertical)
        for name, (used, budget) in usage.items():
            bars = [b for b in box.query(DeviceBar) if b.device == name]
            if not bars:
                bar = DeviceBar(name)
                box.mount(bar)
                bar.call_after_refresh(bar.set_usage, used, budget)
            else:
                bars[0].set_usage(used, budget)

    def _show_resident(self, snap: Any) -> None:
        resident = list(field_of(snap, "resident", None) or []) if snap is not None else []
        lines = []
        for r in resident:
            name = field_of(r, "model", field_of(r, "name", r))
            where = field_of(r, "device", "")
            size = field_of(r, "bytes", field_of(r, "memory_bytes", None))
            line = f"{name}"
            if where:
                line += f" on {where}"
            if size:
                line += f" ({human_bytes(size)})"
            lines.append(line)
        cache = cache_line(field_of(snap, "cache", None) if snap is not None else None)
        if cache:
            lines.append(cache)
        self.query_one("#resident", Static).update("\n".join(lines) or "none loaded yet")

    def _show_queue(self, snap: Any) -> None:
        table = self.query_one("#queue", DataTable)
        table.clear()
        for q in list(field_of(snap, "queue", None) or []) if snap is not None else []:
            wait = field_of(q, "wait_estimate_s", field_of(q, "wait_s", None))
            table.add_row(
                str(field_of(q, "persona", "?")),
                str(field_of(q, "model", "?")),
                f"{wait:.1f} s" if isinstance(wait, int | float) else "?",
            )


def cache_line(cache: Any) -> str:
    """One line on the saved-KV-state cache (``PoolSnapshot.cache``), or "" when unused."""
    if cache is None:
        return ""
    states = int(field_of(cache, "states", 0) or 0)
    restores = int(field_of(cache, "restores", 0) or 0)
    reprefills = int(field_of(cache, "reprefills", 0) or 0)
    if not (states or restores or reprefills):
        return ""
    budget = field_of(cache, "budget_bytes", None)
    line = f"KV cache: {states} saved, {human_bytes(field_of(cache, 'memory_bytes', 0))}"
    if budget:
        line += f" of {human_bytes(budget)}"
    disk = int(field_of(cache, "disk_states", 0) or 0)
    if disk:
        line += f", {disk} on disk ({human_bytes(field_of(cache, 'disk_bytes', 0))})"
    return line + f"; {restores} restored, {reprefills} re-prefilled"


def _who(entry: Any) -> str:
    """One running generation: "@coder on smollm2" from the pool's (persona, model) pairs."""
    if isinstance(entry, tuple) and len(entry) == 2:
        return f"@{entry[0]} on {entry[1]}"
    return f"@{field_of(entry, 'persona', entry)}"
