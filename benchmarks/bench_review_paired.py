"""P8 paired: the same product reads and verdict inserts on two copies of one big database
(e.g. before and after a schema step), alternating in one process, with their query plans.

    cp /tmp/hermes-bench/review.db /tmp/hermes-bench/new.db      # a bench_review.py database
    PYTHONPATH=. python -c "import asyncio; from hermes_tui.store import Store; \\
        asyncio.run(Store.open('/tmp/hermes-bench/new.db'))"       # migrate the copy
    PYTHONPATH=. python benchmarks/bench_review_paired.py /tmp/hermes-bench/review.db \\
        /tmp/hermes-bench/new.db                                  # writes JSON to stdout

Both files get (and lose again) 1,000 test verdicts. Ratios are new/old per pair.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import statistics
import time

from hermes_tui.store import Store


async def product_selects(db: str) -> list[str]:
    """Every SELECT the store runs for bench_review.py's cases, as SQLite saw it."""
    s = await Store.open(db, readonly=True)
    seen: list[str] = []
    try:
        big = (
            await s._fetchall(
                "SELECT session_id FROM verdicts GROUP BY session_id ORDER BY count(*) DESC LIMIT 1"
            )
        )[0][0]
        await s._r.set_trace_callback(seen.append)
        await s.list_sessions(limit=50)
        await s.list_sessions(limit=50, offset=4000)
        await s.list_sessions(code="E_JSON_SCHEMA")
        await s.list_sessions(code="E_SENTINEL_DOWN")
        await s.list_sessions(severity="critical")
        await s.list_sessions(persona="coder")
        await s.list_sessions(persona="architect", code="E_LOOP", severity="critical")
        await s.list_sessions(since=time.time() - 7 * 86400, severity="critical")
        await s.list_sessions(check="judge")
        await s.persona_names()
        await s.verdict_timeline(big)
        await s.get_transcript(big)
        for query in ("E_SECRET", "ctypes", "banned pickle", "parser", "property"):
            await s.search(query)
    finally:
        await s.close()
    return [q for q in seen if q.lstrip().upper().startswith("SELECT")]


def reads(old: str, new: str, sqls: list[str], reps: int) -> list[dict[str, object]]:
    conns = {
        k: sqlite3.connect(f"file:{p}?mode=ro", uri=True) for k, p in (("old", old), ("new", new))
    }
    out: list[dict[str, object]] = []
    for sql in sqls:
        plans = {
            k: [r[3] for r in c.execute("EXPLAIN QUERY PLAN " + sql)] for k, c in conns.items()
        }
        times: dict[str, list[float]] = {"old": [], "new": []}
        for _ in range(reps):
            for k in ("old", "new"):
                t0 = time.perf_counter()
                conns[k].execute(sql).fetchall()
                times[k].append((time.perf_counter() - t0) * 1000)
        ratios = sorted(b / a for a, b in zip(times["old"], times["new"], strict=True) if a > 0)
        row: dict[str, object] = {
            "sql": " ".join(sql.split())[:110],
            "same_plan": plans["old"] == plans["new"],
            "old_median_ms": round(statistics.median(times["old"]), 2),
            "new_median_ms": round(statistics.median(times["new"]), 2),
            "ratio_median": round(statistics.median(ratios), 3) if ratios else None,
            "ratio_range": [round(ratios[0], 3), round(ratios[-1], 3)] if ratios else None,
        }
        if plans["old"] != plans["new"]:
            row |= {"plan_old": plans["old"], "plan_new": plans["new"]}
        out.append(row)
    return out


def writes(old: str, new: str) -> dict[str, object]:
    conns = {}
    for k, p in (("old", old), ("new", new)):
        c = sqlite3.connect(p, isolation_level=None)
        c.execute("PRAGMA journal_mode=WAL")
        c.execute("PRAGMA synchronous=NORMAL")
        conns[k] = c
    sid, mid = (
        conns["old"].execute("SELECT session_id, id FROM messages ORDER BY id DESC").fetchone()
    )
    top = {k: c.execute("SELECT max(id) FROM verdicts").fetchone()[0] for k, c in conns.items()}
    sql = (
        "INSERT INTO verdicts(message_id, session_id, persona, check_name, severity, code, "
        "span_start, span_end, detail, at) VALUES (?, ?, 'coder', 'loops', 'minor', 'E_LOOP', "
        "0, 4, ?, ?)"
    )
    times: dict[str, list[float]] = {"old": [], "new": []}
    for rnd in range(10):
        for k in ("old", "new") if rnd % 2 == 0 else ("new", "old"):
            for i in range(100):
                t0 = time.perf_counter()
                conns[k].execute("BEGIN IMMEDIATE")
                conns[k].execute(sql, (mid, sid, f"phrase repeated {i} times", time.time()))
                conns[k].execute("COMMIT")
                times[k].append((time.perf_counter() - t0) * 1000)
    for k, c in conns.items():
        c.execute("DELETE FROM verdicts WHERE id > ?", (top[k],))
        c.close()
    out: dict[str, object] = {
        k: {
            "median_ms": round(statistics.median(x), 3),
            "p95_ms": round(sorted(x)[int(len(x) * 0.95)], 3),
        }
        for k, x in times.items()
    }
    out["ratio_median"] = round(
        statistics.median(times["new"]) / statistics.median(times["old"]), 3
    )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    sqls = asyncio.run(product_selects(args.new))
    doc = {
        "reads": reads(args.old, args.new, sqls, args.reps),
        "writes": writes(args.old, args.new),
    }
    print(json.dumps(doc, indent=1))


if __name__ == "__main__":
    main()
