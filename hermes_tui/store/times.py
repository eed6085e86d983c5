"""What the store accepts as a time, and the one meaning of a time range (``since`` inclusive,
``until`` exclusive)."""

from __future__ import annotations

import contextlib
import datetime as dt
from datetime import datetime
from typing import Any

TimeLike = float | int | datetime


def to_ts(value: TimeLike | None) -> float | None:
    """Epoch seconds; a naive datetime means local time, as a user typed it."""
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.astimezone()
        return value.timestamp()
    return float(value)


def time_range(
    where: list[str], params: list[Any], column: str, since: TimeLike | None, until: TimeLike | None
) -> None:
    """Add ``since <= column < until`` (either end optional) to a WHERE clause being built."""
    if since is not None:
        where.append(f"{column} >= ?")
        params.append(to_ts(since))
    if until is not None:
        where.append(f"{column} < ?")
        params.append(to_ts(until))


def day_range(since: dt.date | None, until: dt.date | None) -> tuple[float | None, float | None]:
    """The ``since``/``until`` filters for a range of whole days as a user types them: from
    ``since``'s local midnight up to the midnight after ``until`` (both days included). The
    review screen and ``hermes log`` both use this, so "until" means the same everywhere."""
    start = end = None
    # a day no timestamp reaches (0001-01-01, 9999-12-31) bounds nothing: all sessions
    with contextlib.suppress(ValueError, OverflowError, OSError):
        start = to_ts(_midnight(since)) if since is not None else None
    with contextlib.suppress(ValueError, OverflowError, OSError):
        end = to_ts(_midnight(until) + dt.timedelta(days=1)) if until is not None else None
    return start, end


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day)  # naive: local time
