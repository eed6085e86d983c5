"""Review-screen latency on a big database: 1,000,000 verdicts over ~5,000 sessions.

Builds (or reuses) a synthetic but realistically skewed database with the real schema, FTS
triggers and indexes, then times what the review screen and the CLI do: opening the store,
the first page of sessions, filtering sessions and verdicts by code/severity/persona, a
transcript, a sparkline and full-text searches. Target: every operation <= 300 ms.

    PYTHONPATH=. python benchmarks/bench_review.py            # build + time, write JSON
    PYTHONPATH=. python benchmarks/bench_review.py --verdicts 20000 --out /tmp/r.json  # quick

The timings are with the database in the OS page cache (it was just built or read), which
is the common case for a review right after a session; a truly cold disk adds I/O time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import sqlite3
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

from hermes_tui.export import export_session
from hermes_tui.store import SCHEMA_VERSION, Store
from sentinel.registry import checks_raising
from sentinel.verdict import DEFAULT_SEVERITY

TARGET_MS = 300.0
PERSONAS = ("architect", "coder", "critic")
PERSONA_WEIGHTS = (25, 60, 15)
# How often each code fires in practice: schema/JSON problems dominate, leaks are rare.
CODE_WEIGHTS = {
    "E_JSON_SCHEMA": 25,
    "E_JSON_BROKEN": 15,
    "E_PATTERN": 15,
    "E_LOOP": 12,
    "E_LENGTH": 8,
    "E_DRIFT": 8,
    "E_STALL": 5,
    "E_BANNED_IMPORT": 5,
    "E_UNSAFE_COMMAND": 3,
    "E_SECRET": 2,
    "E_PROMPT_LEAK": 1.5,
    "E_SENTINEL_DOWN": 0.5,
}
# The name of the check that raises each code, from the sentinel's registry.
CHECK_NAME = {code: checks_raising(code)[0] for code in CODE_WEIGHTS}
FIELDS = ("name", "path", "args", "steps", "language", "tests", "summary", "risk", "files")
MODULES = ("subprocess", "os", "socket", "ctypes", "pickle", "shutil", "requests")
COMMANDS = ("rm -rf /", "curl | sh", "chmod 777", "dd if=/dev/zero", "mkfs.ext4", "sudo su")
WORDS = (
    "the parser returns a list of tokens and the function should handle empty input "
    "carefully before calling the tokenizer we refactor the module into smaller pieces "
    "with tests for every branch then update the documentation and check performance "
    "against the baseline using the benchmark harness architect proposes a plan coder "
    "writes the implementation critic reviews the diff for correctness security and style"
).split()


def detail_for(code: str, rng: random.Random) -> str:
    """A detail string shaped like what the real checks write."""
    match code:
        case "E_JSON_SCHEMA":
            return (
                f"missing required property '{rng.choice(FIELDS)}' at $.items[{rng.randrange(20)}]"
            )
        case "E_JSON_BROKEN":
            return f"unexpected character '{rng.choice('}],:x')}' at offset {rng.randrange(4000)}"
        case "E_PATTERN":
            return f"output does not match pattern for field {rng.choice(FIELDS)}"
        case "E_LOOP":
            w = rng.choice(WORDS)
            return f"phrase '{w} {w}' repeated {rng.randrange(3, 30)} times"
        case "E_LENGTH":
            return f"message exceeds {rng.choice((2000, 4000, 8000))} characters"
        case "E_DRIFT":
            return f"answer drifted from the task topic ({rng.random():.2f} similarity)"
        case "E_STALL":
            return f"no token for {rng.randrange(5, 60)} seconds"
        case "E_BANNED_IMPORT":
            return f"banned import '{rng.choice(MODULES)}'"
        case "E_UNSAFE_COMMAND":
            return f"unsafe shell command '{rng.choice(COMMANDS)}'"
        case "E_SECRET":
            kind = rng.choice(("AWS access key", "GitHub token", "private key block"))
            return f"possible {kind} in output"
        case "E_PROMPT_LEAK":
            return "system prompt text echoed in answer"
        case _:
            return "sentinel worker stopped responding; checks skipped"


def build(db: Path, n_verdicts: int, n_sessions: int, seed: int = 7) -> dict[str, float]:
    """Create the schema with the real store, then bulk insert in one transaction."""
    asyncio.run(_create_empty(db))
    rng = random.Random(seed)
    t0 = time.perf_counter()
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA synchronous=OFF")  # bulk build only; the store itself uses NORMAL
    conn.execute("PRAGMA cache_size=-400000")
    conn.execute("BEGIN")
    now = time.time()
    span_days = 180
    starts = sorted(now - rng.random() * span_days * 86400 for _ in range(n_sessions))
    conn.executemany(
        "INSERT INTO sessions(id, started, mode, config_hash, title, personas) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (
            (
                i + 1,
                starts[i],
                rng.choice(("chat", "chat", "plan", "review")),
                f"{rng.getrandbits(64):016x}",
                " ".join(rng.choices(WORDS, k=rng.randrange(3, 8))),
                json.dumps(list(PERSONAS)),
            )
            for i in range(n_sessions)
        ),
    )
    # Messages: 5..40 per session, alternating user and a persona.
    messages: list[tuple[int, int, str, float]] = []  # (id, session, persona, started)
    rows = []
    mid = 0
    for sid in range(1, n_sessions + 1):
        t = starts[sid - 1]
        for k in range(rng.randrange(5, 41)):
            mid += 1
            t += rng.uniform(2, 60)
            persona = "user" if k % 4 == 0 else PERSONAS[k % 4 - 1]
            role = "user" if persona == "user" else "assistant"
            hidden = int(persona != "user" and rng.random() < 0.03)
            content = " ".join(rng.choices(WORDS, k=rng.randrange(10, 80)))
            rows.append((mid, sid, persona, role, content, t, t + 5, len(content) // 4, hidden))
            if persona != "user":
                messages.append((mid, sid, persona, t))
    conn.executemany(
        "INSERT INTO messages(id, session_id, persona, role, content, started, finished, "
        "tokens, status, hidden) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'done', ?)",
        rows,
    )
    t_msgs = time.perf_counter() - t0
    # Verdicts: skewed per session (a few bad sessions hold many), persona-weighted.
    by_persona: dict[str, list[tuple[int, int, str, float]]] = {p: [] for p in PERSONAS}
    for m in messages:
        by_persona[m[2]].append(m)
    codes = list(CODE_WEIGHTS)
    weights = list(CODE_WEIGHTS.values())

    def verdict_rows() -> Iterator[tuple]:
        for _ in range(n_verdicts):
            persona = rng.choices(PERSONAS, PERSONA_WEIGHTS)[0]
            pool = by_persona[persona]
            # Squaring the uniform draw skews towards recent sessions (people use it more).
            m = pool[int((1 - rng.random() ** 2) * len(pool)) % len(pool)]
            code = rng.choices(codes, weights)[0]
            sev = DEFAULT_SEVERITY[code]
            if sev == "minor" and rng.random() < 0.05:
                sev = "critical"  # escalated after repeated failures
            start = rng.randrange(0, 3000)
            yield (
                m[0],
                m[1],
                persona,
                CHECK_NAME[code],
                sev,
                code,
                start,
                start + rng.randrange(1, 200),
                detail_for(code, rng),
                m[3] + rng.uniform(0, 5),
            )

    conn.executemany(
        "INSERT INTO verdicts(message_id, session_id, persona, check_name, severity, code, "
        "span_start, span_end, detail, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        verdict_rows(),
    )
    conn.execute("COMMIT")
    t_total = time.perf_counter() - t0
    conn.execute("PRAGMA optimize")
    conn.execute("ANALYZE")
    conn.close()
    return {
        "build_s": round(t_total, 1),
        "build_sessions_messages_s": round(t_msgs, 1),
        "messages": mid,
    }


async def _create_empty(db: Path) -> None:
    async with await Store.open(db):
        pass


async def timed(fn: Callable[[], Awaitable[object]], repeat: int = 5) -> dict[str, float]:
    t0 = time.perf_counter()
    await fn()
    first = (time.perf_counter() - t0) * 1000
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        await fn()
        runs.append((time.perf_counter() - t0) * 1000)
    return {"first_ms": round(first, 2), "median_ms": round(statistics.median(runs), 2)}


async def measure(db: Path) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}

    async def open_close(readonly: bool) -> None:
        s = await Store.open(db, readonly=readonly)
        await s.close()

    out["open_writable"] = await timed(lambda: open_close(False))
    out["open_readonly"] = await timed(lambda: open_close(True))
    store = await Store.open(db, readonly=True)
    try:
        big = (
            await store._fetchall(
                "SELECT session_id FROM verdicts GROUP BY session_id ORDER BY count(*) DESC LIMIT 1"
            )
        )[0][0]
        cases: dict[str, Callable[[], Awaitable[object]]] = {
            "list_sessions_first_page": lambda: store.list_sessions(limit=50),
            "list_sessions_page_80": lambda: store.list_sessions(limit=50, offset=4000),
            "list_sessions_code_common": lambda: store.list_sessions(code="E_JSON_SCHEMA"),
            "list_sessions_code_rare": lambda: store.list_sessions(code="E_SENTINEL_DOWN"),
            "list_sessions_severity_critical": lambda: store.list_sessions(severity="critical"),
            "list_sessions_persona": lambda: store.list_sessions(persona="critic"),
            "list_sessions_persona_code_severity": lambda: store.list_sessions(
                persona="critic", code="E_PROMPT_LEAK", severity="critical"
            ),
            "list_sessions_since_last_week": lambda: store.list_sessions(
                since=time.time() - 7 * 86400, severity="critical"
            ),
            "list_sessions_check_rare": lambda: store.list_sessions(
                check=CHECK_NAME["E_SENTINEL_DOWN"]
            ),
            "persona_names": lambda: store.persona_names(),
            "search_error_code": lambda: store.search("E_SECRET"),
            "verdict_timeline_biggest_session": lambda: store.verdict_timeline(big),
            "get_transcript_biggest_session": lambda: store.get_transcript(big),
            "search_rare_term": lambda: store.search("ctypes"),
            "search_two_terms": lambda: store.search("banned pickle"),
            "search_common_term": lambda: store.search("parser"),
            "search_very_common_term": lambda: store.search("property"),
            "export_biggest_session_markdown": lambda: export_session(store, big),
        }
        for name, fn in cases.items():
            out[name] = await timed(fn)
    finally:
        await store.close()
    return out


async def measure_writes(tmp_dir: Path, n: int = 200) -> dict[str, dict[str, float]]:
    """Write-path latencies on a fresh database: what a streaming persona waits for."""
    import tempfile

    from sentinel.verdict import Verdict

    out: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(dir=tmp_dir) as d:
        store = await Store.open(Path(d) / "w.db")
        try:
            sid = await store.create_session("chat", personas=list(PERSONAS))
            mid = await store.start_message(sid, "coder")
            verdict = Verdict("loop", "minor", "E_LOOP", (0, 4), "phrase repeated 5 times")
            lat: dict[str, list[float]] = {"add_verdict": [], "checkpoint_to_durable": []}
            text = ""
            for i in range(n):
                t0 = time.perf_counter()
                await store.add_verdict(sid, mid, "coder", verdict)
                lat["add_verdict"].append((time.perf_counter() - t0) * 1000)
                text += f"token{i} "
                t0 = time.perf_counter()
                await store.checkpoint_message(mid, text, i)
                await store.flush()
                lat["checkpoint_to_durable"].append((time.perf_counter() - t0) * 1000)
            # Three personas checkpointing 2,000 times each without waiting: coalescing
            # means far fewer writes than checkpoints.
            mids = [await store.start_message(sid, p) for p in PERSONAS]
            t0 = time.perf_counter()
            for i in range(2000):
                for m in mids:
                    await store.checkpoint_message(m, text + str(i), i)
                if i % 50 == 0:
                    await asyncio.sleep(0)
            await store.flush()
            burst = (time.perf_counter() - t0) * 1000
        finally:
            await store.close()
    for name, xs in lat.items():
        xs.sort()
        out[name] = {
            "median_ms": round(statistics.median(xs), 3),
            "p95_ms": round(xs[int(len(xs) * 0.95) - 1], 3),
        }
    out["burst_6000_checkpoints_3_personas"] = {"total_ms": round(burst, 1)}
    return out


def machine() -> dict[str, object]:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = None
    try:
        mem = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError):
        pass
    return {
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "sqlite": sqlite3.sqlite_version,
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "mem_gib": mem,
        "note": "shared machine (2 cores used by several engineers at once); DB in page cache",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--verdicts", type=int, default=1_000_000)
    ap.add_argument("--sessions", type=int, default=5_000)
    ap.add_argument("--db", type=Path, default=Path("/tmp/hermes-bench/review.db"))
    ap.add_argument("--rebuild", action="store_true", help="rebuild even if --db exists")
    ap.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parent / "results" / "review.json",
    )
    args = ap.parse_args()

    build_info: dict[str, object] = {"reused": True}
    if args.rebuild or not args.db.exists():
        for suffix in ("", "-wal", "-shm"):
            Path(f"{args.db}{suffix}").unlink(missing_ok=True)
        print(f"building {args.db}: {args.verdicts:,} verdicts, {args.sessions:,} sessions")
        build_info = {"reused": False, **build(args.db, args.verdicts, args.sessions)}
        print(f"built in {build_info['build_s']} s")
    with sqlite3.connect(args.db) as conn:
        n_verdicts = conn.execute("SELECT count(*) FROM verdicts").fetchone()[0]
        n_sessions = conn.execute("SELECT count(*) FROM sessions").fetchone()[0]
        n_messages = conn.execute("SELECT count(*) FROM messages").fetchone()[0]
    conn.close()

    timings = asyncio.run(measure(args.db))
    writes = asyncio.run(measure_writes(args.db.parent))
    for name, t in writes.items():
        print(f"write {name:34s} {t}")
    worst = max(t["median_ms"] for t in timings.values())
    worst_first = max(t["first_ms"] for t in timings.values())
    over = sorted(k for k, t in timings.items() if t["median_ms"] > TARGET_MS)
    for name, t in timings.items():
        flag = "  OVER" if t["median_ms"] > TARGET_MS else ""
        print(f"{name:40s} first {t['first_ms']:8.1f} ms  median {t['median_ms']:8.1f} ms{flag}")
    result = {
        "benchmark": "review",
        "target_ms": TARGET_MS,
        "schema_version": SCHEMA_VERSION,
        "db": {
            "verdicts": n_verdicts,
            "sessions": n_sessions,
            "messages": n_messages,
            "size_mib": round(args.db.stat().st_size / 2**20, 1),
            **build_info,
        },
        "machine": machine(),
        "timings": timings,
        "writes": writes,
        "worst_median_ms": worst,
        "worst_first_ms": worst_first,
        "over_target": over,
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"worst median {worst:.1f} ms (target {TARGET_MS:.0f} ms); wrote {args.out}")


if __name__ == "__main__":
    main()
