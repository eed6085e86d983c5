"""Keep the garbage collector's full passes short while the TUI runs.

Textual allocates many short-lived container objects per frame (every ``Strip`` carries its
own caches), so while three answers streamed CPython ran a full (generation 2) collection
about every 0.35 s, and each pass, which scans every object the process holds, froze the UI
for up to 77 ms; key presses waited behind it (``benchmarks/bench_tui.py``).

Once the first screen is up, ``settle()`` moves everything alive at that point (modules, the
app, the runtime) out of the collector's reach (``gc.freeze``), so a full pass only scans what
the session created since, and makes young collections rarer. ``restore()`` undoes both when
the app exits, so a process that runs several apps (the test suite) does not keep garbage.

Rarer, not much rarer: a generation-1 pass scans what survived the last ten young ones, so a
young threshold of 20,000 made each such pass up to 74-99 ms of CPU while three answers
streamed at 200×50 and 80×24 (the streamed lines' cached strips survive); at 5,000 the longest
was 23-35 ms and the young passes 5-8 ms instead of 19-27 ms, for about the same total.
"""

from __future__ import annotations

import gc

# Generation-0 threshold while the TUI runs (CPython's default is 700 allocations).
YOUNG_THRESHOLD = 5_000

_saved: tuple[int, int, int] | None = None


def settle() -> None:
    """Freeze the objects alive now out of collection and make young collections rarer."""
    global _saved
    if _saved is None:
        _saved = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, *_saved[1:])


def restore() -> None:
    """Give the frozen objects back to the collector and restore the thresholds."""
    global _saved
    if _saved is not None:
        gc.set_threshold(*_saved)
        _saved = None
    gc.unfreeze()
