"""The SQLite store on real database files: what a user would notice if it broke."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import aiosqlite
import pytest

from hermes_tui.export import export_session
from hermes_tui.store import (
    SCHEMA_VERSION,
    Store,
    StoreError,
    default_db_path,
    fts_query,
    migrate,
)
from sentinel.verdict import Verdict

ROOT = Path(__file__).resolve().parents[1]


def stored(db: Path, sql: str) -> list[tuple]:
    """What is in the database file, read by a plain sqlite3 connection of its own."""
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def V(code: str = "E_LOOP", severity: str = "minor", detail: str = "repeated text", span=(0, 4)):
    return Verdict(check=code.lower(), severity=severity, code=code, span=span, detail=detail)


@pytest.fixture
async def store(tmp_path: Path):
    s = await Store.open(tmp_path / "hermes.db")
    yield s
    await s.close()


async def _chat(store: Store, *, started: float | None = None, persona: str = "coder") -> int:
    sid = await store.create_session(
        "chat", title="fix the parser", personas=["architect", persona], started=started
    )
    await store.add_message(sid, "user", "user", "please fix the parser")
    mid = await store.start_message(sid, persona)
    await store.finish_message(mid, "here is the parser fix", 6, "done")
    await store.add_verdict(sid, mid, persona, V("E_LOOP", "minor", "loop in parser output"))
    await store.add_verdict(sid, mid, persona, V("E_SECRET", "critical", "api key leaked"))
    return sid


# ---- round trips ------------------------------------------------------------------------------


async def test_session_messages_and_verdicts_round_trip(store: Store, tmp_path: Path):
    sid = await _chat(store)
    hidden = await store.start_message(sid, "coder", hidden=True)
    await store.finish_message(hidden, "corrected answer", 2, "done")

    session = await store.get_session(sid)
    assert session is not None
    assert (session.title, session.mode, session.personas) == (
        "fix the parser",
        "chat",
        ["architect", "coder"],
    )
    assert (session.message_count, session.minor, session.critical) == (2, 1, 1)

    transcript = await store.get_transcript(sid)
    assert [(m.persona, m.content, m.status) for m in transcript] == [
        ("user", "please fix the parser", "done"),
        ("coder", "here is the parser fix", "done"),
    ]
    assert [v.code for v in transcript[1].verdicts] == ["E_LOOP", "E_SECRET"]
    assert transcript[1].verdicts[1].to_verdict() == V("E_SECRET", "critical", "api key leaked")

    full = await store.get_transcript(sid, include_hidden=True)
    assert full[-1].hidden and full[-1].content == "corrected answer"

    # Everything is on disk: a fresh store (another process, later) sees the same.
    await store.close()
    async with await Store.open(tmp_path / "hermes.db") as again:
        assert (await again.get_session(sid)) == session
        assert await again.get_session(sid + 100) is None


async def test_checkpoints_keep_latest_text_and_never_override_finish(store: Store):
    sid = await store.create_session("chat")
    mid = await store.start_message(sid, "coder")
    for i in range(1, 200):
        await store.checkpoint_message(mid, "x" * i, i)
    await store.flush()
    (msg,) = await store.get_transcript(sid)
    assert (msg.content, msg.tokens, msg.status) == ("x" * 199, 199, "streaming")

    await store.checkpoint_message(mid, "stale partial", 3)
    await store.finish_message(mid, "final answer", 12, "halted", error_code="E_SECRET")
    await store.checkpoint_message(mid, "late checkpoint", 13)  # e.g. a racing timer
    await store.flush()
    (msg,) = await store.get_transcript(sid)
    assert (msg.content, msg.tokens, msg.status, msg.error_code) == (
        "final answer",
        12,
        "halted",
        "E_SECRET",
    )
    assert msg.finished is not None


async def test_bad_write_is_rejected_alone_and_others_in_batch_commit(store: Store):
    sid = await store.create_session("chat")
    import asyncio

    good, bad = await asyncio.gather(
        store.add_verdict(sid, None, "critic", V()),
        store.add_verdict(sid + 999, None, "critic", V()),  # no such session
        return_exceptions=True,
    )
    assert isinstance(good, int)
    assert isinstance(bad, StoreError) and "write rejected" in str(bad)
    assert [r[0] for r in stored(store.path, "SELECT id FROM verdicts")] == [good]
    with pytest.raises(ValueError):
        await store.finish_message(1, "x", 1, "streaming")
    with pytest.raises(StoreError, match="no message 4242"):
        await store.finish_message(4242, "x", 1, "done")


async def test_pool_events_are_saved_on_flush(store: Store):
    await store.add_pool_event("load", model="smollm2", persona="coder", bytes=90_000_000)
    await store.add_pool_event("wait", model="smollm2", persona="critic", wait_ms=120.5)
    await store.flush()
    events = stored(store.path, "SELECT kind, persona, bytes, wait_ms FROM pool_events ORDER BY id")
    assert events == [("load", "coder", 90_000_000, 0.0), ("wait", "critic", 0, 120.5)]


# ---- crash safety -------------------------------------------------------------------------------


def spawn_writer(tmp_path: Path, script: str, db: Path) -> subprocess.Popen[str]:
    """Run ``script`` (a hermes process writing ``db``) with pipes to talk to it."""
    path = tmp_path / "child.py"
    path.write_text(script)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, str(path), str(db)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )


CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from hermes_tui.store import Store

    async def main(path):
        store = await Store.open(path)
        sid = await store.create_session("chat", personas=["coder"])
        mid = await store.start_message(sid, "coder")
        print("message", mid, flush=True)
        text, i = "", 0
        while True:
            text += f"tok{i} "
            i += 1
            await store.checkpoint_message(mid, text, i)
            if i % 5 == 0:
                await store.flush()
                print("committed", i, flush=True)
            await asyncio.sleep(0.001)

    asyncio.run(main(sys.argv[1]))
    """
)


async def test_sigkilled_writer_leaves_intact_db_with_interrupted_message(tmp_path: Path):
    db = tmp_path / "hermes.db"
    proc = spawn_writer(tmp_path, CHILD, db)
    try:
        assert proc.stdout is not None
        mid = int(proc.stdout.readline().split()[1])
        committed = 0
        while committed < 40:
            line = proc.stdout.readline()
            assert line, "child died before checkpointing"
            committed = int(line.split()[1])
        os.kill(proc.pid, signal.SIGKILL)  # mid-stream, writer still running
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL

    store = await Store.open(db)
    try:
        assert store.recovered == 1
        (msg,) = await store.get_transcript(1)
        assert msg.id == mid and msg.status == "interrupted"
        # At least everything acknowledged as committed survived, and the text is one of the
        # checkpoints (never torn): exactly tokens 0..n-1.
        assert msg.tokens >= committed
        assert msg.content == "".join(f"tok{k} " for k in range(msg.tokens))
    finally:
        await store.close()
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    # Recovery happens once: the next open finds nothing left streaming.
    async with await Store.open(db) as again:
        assert again.recovered == 0


LIVE_CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from hermes_tui.store import Store

    async def main(path):
        store = await Store.open(path)
        sid = await store.create_session("batch", personas=["coder"])
        mid = await store.start_message(sid, "coder")
        await store.checkpoint_message(mid, "half an answer", 3)
        await store.flush()
        print("streaming", mid, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

    asyncio.run(main(sys.argv[1]))
    """
)


async def test_a_second_hermes_never_marks_a_live_writers_message_interrupted(tmp_path: Path):
    db = tmp_path / "hermes.db"
    proc = spawn_writer(tmp_path, LIVE_CHILD, db)
    try:
        assert proc.stdout is not None
        mid = int(proc.stdout.readline().split()[1])
        # Another hermes (the chat beside a batch run) opens the same database.
        async with await Store.open(db) as second:
            assert second.recovered == 0
            (msg,) = await second.get_transcript(1)
            assert msg.id == mid and msg.status == "streaming"
        async with await Store.open(db, readonly=True) as viewer:  # hermes log / review
            assert viewer.live_writer
            assert (await viewer.get_transcript(1))[0].status == "streaming"
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            # The writer is gone: a review screen that stayed open sees it on its next read...
            assert not viewer.live_writer
            (msg,) = await viewer.get_transcript(1)
            assert msg.status == "interrupted" and msg.content == "half an answer"
        # ...and so does a new hermes log.
        async with await Store.open(db, readonly=True) as viewer:
            (msg,) = await viewer.get_transcript(1)
            assert msg.status == "interrupted"
        # ...and the next writable open marks it so, once.
        async with await Store.open(db) as third:
            assert third.recovered == 1
    finally:
        proc.kill()
        proc.wait()


# ---- files, permissions, errors -----------------------------------------------------------------


async def test_db_file_is_private(tmp_path: Path):
    db = tmp_path / "new" / "dir" / "hermes.db"
    async with await Store.open(db) as s:
        await s.create_session("chat")
        assert stat.S_IMODE(db.stat().st_mode) == 0o600
        wal = db.with_name("hermes.db-wal")
        assert wal.exists() and stat.S_IMODE(wal.stat().st_mode) == 0o600
    assert stat.S_IMODE(db.parent.stat().st_mode) == 0o700


def test_default_path_is_in_user_data_dir():
    import platformdirs

    path = default_db_path()
    assert path.name == "hermes.db"
    assert path.parent == Path(platformdirs.user_data_dir("hermes-tui"))


async def test_newer_schema_is_refused_with_upgrade_hint(tmp_path: Path):
    db = tmp_path / "hermes.db"
    async with await Store.open(db):
        pass
    with sqlite3.connect(db) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    expected = (
        f"database {db} has schema version {SCHEMA_VERSION + 5}, newer than this hermes "
        f"\\({SCHEMA_VERSION}\\); upgrade hermes"
    )
    with pytest.raises(StoreError, match=expected):
        await Store.open(db)
    with pytest.raises(StoreError, match=expected):
        await Store.open(db, readonly=True)


async def test_corrupt_file_is_reported_not_overwritten(tmp_path: Path):
    db = tmp_path / "hermes.db"
    garbage = os.urandom(8192)
    db.write_bytes(garbage)
    for readonly in (False, True):
        with pytest.raises(StoreError) as info:
            await Store.open(db, readonly=readonly)
        msg = str(info.value)
        assert str(db) in msg and "not a database" in msg
        # Opening to write, hermes would start a fresh file once this one is moved aside; a
        # read-only command (hermes log --db /etc/passwd) was just given the wrong path.
        advice = "check the path or pass another --db" if readonly else "move it aside"
        assert advice in msg and ("move it aside" in msg) is not readonly, msg
        assert "\n" not in msg
    assert db.read_bytes() == garbage


async def test_locked_db_at_open_and_on_write(tmp_path: Path):
    db = tmp_path / "hermes.db"
    async with await Store.open(db):
        pass
    other = sqlite3.connect(db, isolation_level=None)
    try:
        other.execute("BEGIN EXCLUSIVE")
        other.execute("INSERT INTO pool_events(at, kind) VALUES (0, 'x')")
        with pytest.raises(StoreError, match=f"database {db} is locked .* 100 ms"):
            await Store.open(db, busy_timeout_ms=100)
        other.execute("COMMIT")

        store = await Store.open(db, busy_timeout_ms=100)
        try:
            other.execute("BEGIN IMMEDIATE")
            with pytest.raises(StoreError, match="is locked"):
                await store.create_session("chat")
            other.execute("ROLLBACK")
            # Once the other program lets go, saving works again.
            sid = await store.create_session("chat")
            assert (await store.get_session(sid)) is not None
        finally:
            await store.close()
    finally:
        other.close()


async def test_unwritable_path_is_reported(tmp_path: Path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError, match="cannot create .*a-file.*writable database path"):
        await Store.open(blocker / "hermes.db")
    with pytest.raises(StoreError, match="no hermes database at"):
        await Store.open(tmp_path / "missing.db", readonly=True)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
async def test_read_only_file_is_reported(tmp_path: Path):
    db = tmp_path / "hermes.db"
    async with await Store.open(db):
        pass
    db.chmod(0o400)
    with pytest.raises(StoreError, match="is read-only"):
        await Store.open(db)
    async with await Store.open(db, readonly=True) as ro:
        assert await ro.list_sessions() == []


async def test_readonly_open_never_writes(tmp_path: Path):
    db = tmp_path / "hermes.db"
    async with await Store.open(db) as s:
        sid = await _chat(s)
        mid = await s.start_message(sid, "critic")  # left streaming on purpose
        await s.checkpoint_message(mid, "half", 1)
        await s.flush()
    # Simulate the writer having died mid-message: reopen raw and put it back to streaming.
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE messages SET status = 'streaming' WHERE id = ?", (mid,))
    conn.close()
    before = db.read_bytes()
    async with await Store.open(db, readonly=True) as ro:
        assert ro.recovered == 0
        transcript = await ro.get_transcript(sid)
        # Shown as interrupted (no live process writes it), but the file is not touched.
        assert transcript[-1].status == "interrupted"
        assert [h.kind for h in await ro.search("parser")]
        with pytest.raises(StoreError, match="read-only"):
            await ro.create_session("chat")
    assert db.read_bytes() == before


async def test_readonly_refuses_unmigrated_db(tmp_path: Path):
    db = tmp_path / "old.db"
    async with aiosqlite.connect(db, isolation_level=None) as conn:
        await migrate(conn, target=1)
    with pytest.raises(StoreError, match="schema version 1 .*open it once writable"):
        await Store.open(db, readonly=True)


async def _filled_db(db: Path) -> None:
    async with await Store.open(db) as s:
        sid = await _chat(s)
        for i in range(20):  # enough text that the messages table spans several pages
            await s.add_message(sid, "user", "user", f"question {i} about the parser " * 30)


def _damage(db: Path, copy: Path, marker: bytes) -> bytes:
    """Copy ``db`` with 64 bytes of 0xBA written where ``marker`` sits on a page after the
    first (as a bad disk sector would); returns the damaged bytes."""
    data = bytearray(db.read_bytes())
    at = data.find(marker, 4096)
    assert at > 0, marker
    data[at : at + 64] = b"\xba" * 64
    copy.write_bytes(bytes(data))
    return bytes(data)


@pytest.mark.parametrize(
    "marker",
    [b"AFTER UPDATE OF content", b"question 7 about"],
    ids=["schema page", "message page"],
)
def test_damaged_pages_give_the_corrupt_database_error_and_stay_untouched(
    tmp_path: Path, marker: bytes
):
    from click.testing import CliRunner

    from hermes_tui.cli import main

    good = tmp_path / "good.db"
    asyncio.run(_filled_db(good))
    db = tmp_path / "damaged.db"
    damaged = _damage(good, db, marker)
    failed = 0
    for cmd in (["log"], ["log", "show", "1"], ["log", "search", "parser"]):
        result = CliRunner().invoke(main, [*cmd, "--db", str(db)])
        if result.exit_code == 0:
            continue  # the damage is on a page this command does not read
        failed += 1
        err = result.stderr
        assert result.exit_code == 3, (cmd, result.output)
        assert "internal error" not in err and err.count("\n") == 1, (cmd, err)
        assert f"database {db} is corrupt" in err and "move it aside" in err, (cmd, err)
        assert err.isprintable() or err[:-1].isprintable()  # no raw page bytes on the terminal
    assert failed, "the damage went unnoticed by every command"
    assert db.read_bytes() == damaged


async def test_no_damaged_page_makes_reads_fail_other_than_with_a_store_error(tmp_path: Path):
    """Damage each page in turn (beyond the header page): every read either works or says
    the database is corrupt, and never changes the file."""
    good = tmp_path / "good.db"
    await _filled_db(good)
    data = good.read_bytes()
    db = tmp_path / "damaged.db"
    noticed = 0
    for page in range(1, len(data) // 4096):
        for offset in (100, 2048):
            damaged = bytearray(data)
            at = page * 4096 + offset
            damaged[at : at + 64] = b"\xba" * 64
            db.write_bytes(bytes(damaged))
            for suffix in ("-wal", "-shm"):
                Path(f"{db}{suffix}").unlink(missing_ok=True)
            try:
                async with await Store.open(db, readonly=True) as ro:
                    await ro.list_sessions()
                    await export_session(ro, 1, "json")
                    await ro.search("parser")
            except StoreError as exc:
                if str(exc).startswith("no session 1"):  # damage hid the row: also fine
                    continue
                noticed += 1
                assert "corrupt" in str(exc) and "move it aside" in str(exc), (page, str(exc))
            assert db.read_bytes() == damaged, page
    assert noticed


@contextlib.contextmanager
def locked_dir(path: Path) -> Iterator[Path]:
    """Make ``path`` a directory this process cannot create files in, as on read-only media.

    A normal user gets ``chmod 555``; root ignores modes, so root uses ``chattr +i``
    (ext4, xfs, btrfs). Skips where neither works.
    """
    if os.geteuid() != 0:
        path.chmod(0o555)

        def undo() -> None:
            path.chmod(0o755)

    else:
        if shutil.which("chattr") is None:
            pytest.skip("root ignores chmod and there is no chattr")
        done = subprocess.run(["chattr", "+i", str(path)], capture_output=True)
        if done.returncode:
            pytest.skip(f"chattr +i is not supported here: {done.stderr.decode().strip()}")

        def undo() -> None:
            subprocess.run(["chattr", "-i", str(path)], check=True)

    try:
        try:
            (path / "probe").touch()
        except OSError:
            pass
        else:
            (path / "probe").unlink()
            pytest.skip("cannot make a directory unwritable here")
        yield path
    finally:
        undo()


async def test_readonly_open_works_in_a_directory_that_cannot_be_written(tmp_path: Path):
    shelf = tmp_path / "shelf"
    shelf.mkdir()
    db = shelf / "hermes.db"
    async with await Store.open(db) as s:
        sid = await _chat(s)
    before = sorted(p.name for p in shelf.iterdir())
    data = db.read_bytes()
    with locked_dir(shelf):
        async with await Store.open(db, readonly=True) as ro:
            assert [r.title for r in await ro.list_sessions()] == ["fix the parser"]
            assert "parser fix" in (await ro.get_transcript(sid))[1].content
            assert [h.kind for h in await ro.search("parser")]
        with pytest.raises(StoreError, match=f"database {db} cannot be written: .* read-only"):
            await Store.open(db)  # saving there cannot work: said so, in one line
    assert sorted(p.name for p in shelf.iterdir()) == before
    assert db.read_bytes() == data


async def test_readonly_open_refuses_to_skip_a_wal_it_cannot_read(tmp_path: Path):
    """A copy taken while hermes was writing holds commits in -wal; in a directory where the
    -shm cannot be made, reading the file alone would silently drop them, so it says so."""
    shelf = tmp_path / "shelf"
    shelf.mkdir()
    db = tmp_path / "hermes.db"
    async with await Store.open(db) as s:
        await s.create_session("chat", title="only in the wal")
        for suffix in ("", "-wal"):
            shutil.copyfile(f"{db}{suffix}", f"{shelf / 'hermes.db'}{suffix}")
    copy = shelf / "hermes.db"
    with locked_dir(shelf):
        with pytest.raises(StoreError, match="-wal; copy the database and its -wal file") as info:
            await Store.open(copy, readonly=True)
        assert "\n" not in str(info.value)
    async with await Store.open(copy, readonly=True) as ro:  # writable again: all there
        assert [r.title for r in await ro.list_sessions()] == ["only in the wal"]


def test_hermes_log_reads_a_database_on_a_read_only_mount(tmp_path: Path):
    """The real thing: a read-only bind mount (in a user namespace, so no root needed)."""
    if shutil.which("unshare") is None:
        pytest.skip("no unshare")
    shelf = tmp_path / "shelf"
    shelf.mkdir()
    db = shelf / "hermes.db"
    asyncio.run(_filled_db(db))
    script = (
        f"{{ mount --bind -o ro {shelf} {shelf} && ! touch {shelf}/probe; }} 2>/dev/null "
        f"|| exit 99; exec {sys.executable} -m hermes_tui.cli log --db {db}"
    )
    probe = subprocess.run(["unshare", "-rm", "true"], capture_output=True)
    if probe.returncode:
        pytest.skip("user namespaces are not available here")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        ["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, env=env
    )
    if done.returncode == 99:
        pytest.skip("cannot make a read-only bind mount here")
    assert done.returncode == 0, done.stderr
    assert "fix the parser" in done.stdout


# ---- migrations ----------------------------------------------------------------------------------

STEP_OBJECTS = {
    1: {"sessions", "messages", "verdicts", "pool_events", "verdicts_message"},
    2: {"messages_fts", "verdicts_fts", "messages_fts_au", "verdicts_fts_ai"},
    3: {"verdicts_code_at", "verdicts_session_severity", "messages_streaming"},
}
# What a step removes: v4 drops the indexes that no product query reads.
STEP_DROPS = {
    4: {"verdicts_severity_at", "verdicts_persona_at", "verdicts_check_at", "verdicts_at"},
}


async def _objects(conn: aiosqlite.Connection) -> set[str]:
    rows = await conn.execute_fetchall("SELECT name FROM sqlite_schema")
    return {r[0] for r in rows}


def test_every_step_is_covered():
    assert set(STEP_OBJECTS) | set(STEP_DROPS) == set(range(1, SCHEMA_VERSION + 1))


@pytest.mark.parametrize("step", range(1, SCHEMA_VERSION + 1))
async def test_each_migration_step_from_empty_db(tmp_path: Path, step: int):
    db = tmp_path / "m.db"
    async with aiosqlite.connect(db, isolation_level=None) as conn:
        assert await migrate(conn, target=step - 1) == step - 1
        before = await _objects(conn)
        assert await migrate(conn, target=step) == step
        after = await _objects(conn)
        assert STEP_OBJECTS.get(step, set()) <= after - before
        assert STEP_DROPS.get(step, set()) <= before - after
        rows = await conn.execute_fetchall("PRAGMA user_version")
        assert list(rows)[0][0] == step
    # Whatever step it stopped at, opening brings it to the latest schema and works.
    async with await Store.open(db) as s:
        await _chat(s)
        assert len(await s.list_sessions()) == 1


async def test_upgrade_makes_old_data_searchable(tmp_path: Path):
    db = tmp_path / "v1.db"
    async with aiosqlite.connect(db, isolation_level=None) as conn:
        await migrate(conn, target=1)
        await conn.execute("INSERT INTO sessions(id, started) VALUES (1, 0)")
        await conn.execute(
            "INSERT INTO messages(session_id, persona, role, content, started, status) "
            "VALUES (1, 'coder', 'assistant', 'an ancient zebra appears', 0, 'done')"
        )
    async with await Store.open(db) as s:
        hits = await s.search("zebra")
        assert [(h.kind, h.session_id) for h in hits] == [("message", 1)]


# ---- search --------------------------------------------------------------------------------------


async def test_search_messages_and_verdict_details(store: Store):
    sid = await _chat(store)
    hidden = await store.start_message(sid, "coder", hidden=True)
    await store.finish_message(hidden, "secret parser retry", 1, "done")

    hits = await store.search("parser")
    kinds = sorted((h.kind, h.message_id is not None) for h in hits)
    assert kinds == [("message", True), ("message", True), ("verdict", True)]
    verdict_hit = next(h for h in hits if h.kind == "verdict")
    assert verdict_hit.code == "E_LOOP" and "«parser»" in verdict_hit.snippet
    assert "retry" not in " ".join(h.snippet for h in hits)
    assert any("retry" in h.snippet for h in await store.search("retry", include_hidden=True))
    # Terms must all match, in any order, case-insensitively.
    assert [h.kind for h in await store.search("KEY api")] == ["verdict"]
    assert await store.search("parser zebra") == []


@pytest.mark.parametrize(
    "query",
    [
        'foo"bar',
        "AND(",
        "NEAR(",
        "OR",
        "*",
        '"',
        "-x",
        "content:abc",
        "^start",
        "a AND",
        "",
        "  ",
        "(((",
        "it's",
        "naïve café",
        "🙂",
        "NOT parser",
        "*",
        "a*b*",
        '"x*',
    ],
)
async def test_search_never_raises_on_odd_input(store: Store, query: str):
    sid = await store.create_session("chat")
    await store.add_message(sid, "coder", "assistant", "say foo\"bar AND( it's a naive cafe")
    hits = await store.search(query)
    assert isinstance(hits, list)


async def test_search_treats_operators_as_words(store: Store):
    sid = await store.create_session("chat")
    await store.add_message(sid, "coder", "assistant", 'the value foo"bar and near things')
    await store.add_message(sid, "coder", "assistant", "unrelated naive text")
    assert len(await store.search('foo"bar')) == 1
    assert len(await store.search("AND(")) == 1  # the word "and", not an operator
    assert len(await store.search("NAÏVE")) == 1  # case and accents folded
    assert fts_query('foo"bar AND(') == '"foo""bar" "AND("*'
    with pytest.raises(StoreError, match="bad search query"):
        await store.search("AND(", raw=True)


async def test_search_for_what_is_not_a_word_finds_it_as_typed(store: Store):
    sid = await store.create_session("chat")
    await store.add_message(sid, "coder", "assistant", "Shipped it 🚀 today, then x -> y.")
    await store.add_message(sid, "coder", "assistant", "nothing here")
    [hit] = await store.search("🚀")
    assert hit.kind == "message" and hit.snippet == "Shipped it «🚀» today, then x -> y."
    assert len(await store.search("->")) == 1 and await store.search("<-") == []


async def test_search_for_an_error_code_finds_its_verdicts(store: Store):
    sid = await _chat(store)  # verdicts E_LOOP and E_SECRET
    [hit] = await store.search("e_secret")
    assert (hit.kind, hit.code, hit.session_id, hit.snippet) == (
        "verdict",
        "E_SECRET",
        sid,
        "api key leaked",
    )
    assert await store.search("E_DRIFT") == []


async def test_search_with_a_trailing_star_finds_words_that_start_so(store: Store):
    sid = await store.create_session("chat")
    await store.add_message(sid, "coder", "assistant", "import pickle and unpickle it")
    assert len(await store.search("pick*")) == 1
    assert len(await store.search("pick")) == 1  # the last word is a prefix (being typed)
    assert await store.search("pick import") == []  # an earlier word is a whole word
    assert await store.search("*") == [] and await store.search("pi**ck") == []


# ---- listing and filters -------------------------------------------------------------------------


async def _populate(store: Store) -> list[int]:
    ids = []
    for i, (persona, code, sev) in enumerate(
        [
            ("coder", "E_JSON_SCHEMA", "minor"),
            ("critic", "E_SECRET", "critical"),
            ("coder", "E_LOOP", "minor"),
            ("architect", None, None),
        ]
    ):
        sid = await store.create_session("chat", title=f"s{i}", started=1000.0 + i * 100)
        mid = await store.start_message(sid, persona, started=1000.0 + i * 100)
        await store.finish_message(mid, f"answer {i}", 3, "done")
        if code:
            await store.add_verdict(sid, mid, persona, V(code, sev), at=1001.0 + i * 100)
        ids.append(sid)
    return ids


async def test_list_sessions_filters(store: Store):
    s0, s1, s2, s3 = await _populate(store)

    def ids(rows):
        return [r.id for r in rows]

    assert ids(await store.list_sessions()) == [s3, s2, s1, s0]  # newest first
    assert ids(await store.list_sessions(limit=2, offset=1)) == [s2, s1]
    assert ids(await store.list_sessions(code="E_SECRET")) == [s1]
    assert ids(await store.list_sessions(severity="minor")) == [s2, s0]
    assert ids(await store.list_sessions(check="e_loop")) == [s2]
    assert ids(await store.list_sessions(persona="coder")) == [s2, s0]
    assert ids(await store.list_sessions(persona="architect")) == [s3]
    # persona with a verdict filter means "a verdict by that persona".
    assert ids(await store.list_sessions(persona="critic", severity="minor")) == []
    assert ids(await store.list_sessions(since=1100, until=1300)) == [s2, s1]
    from datetime import UTC, datetime

    assert ids(await store.list_sessions(since=datetime.fromtimestamp(1250, UTC))) == [s3]
    row = (await store.list_sessions(code="E_SECRET"))[0]
    assert (row.message_count, row.minor, row.critical, row.title) == (1, 0, 1, "s1")


async def test_persona_names_are_the_personas_that_answered(store: Store):
    sid = (await _populate(store))[0]
    await store.add_message(sid, "coder,critic", "user", "both of you, please")  # not a persona
    assert await store.persona_names() == ["architect", "coder", "critic"]


async def test_verdict_timeline_spreads_counts_over_messages(store: Store):
    sid = await store.create_session("chat")
    assert await store.verdict_timeline(sid) == []
    for i in range(40):
        mid = await store.start_message(sid, "coder")
        await store.finish_message(mid, "m", 1, "done")
        for _ in range(i // 10):  # 0,0,..,1,1,..,2,..,3
            await store.add_verdict(sid, mid, "coder", V())
    line = await store.verdict_timeline(sid, buckets=4)
    assert line == [0, 10, 20, 30]
    assert len(await store.verdict_timeline(sid)) == 20
    assert sum(await store.verdict_timeline(sid)) == 60
    other = await store.create_session("chat")
    mid = await store.start_message(other, "coder")
    await store.add_verdict(other, mid, "coder", V())
    assert await store.verdict_timeline(other) == [1]


# ---- export --------------------------------------------------------------------------------------


async def test_export_markdown_and_json(store: Store):
    sid = await _chat(store)
    md = await export_session(store, sid)
    assert md.startswith("# fix the parser\n")
    assert "## you\n\nplease fix the parser" in md
    assert "## coder\n\nhere is the parser fix" in md
    assert "**critical** `E_SECRET`" in md and "api key leaked" in md

    doc = json.loads(await export_session(store, sid, fmt="json"))
    assert doc["session"]["id"] == sid and doc["session"]["critical"] == 1
    assert [m["content"] for m in doc["messages"]] == [
        "please fix the parser",
        "here is the parser fix",
    ]
    assert doc["messages"][1]["verdicts"][0]["code"] == "E_LOOP"
    with pytest.raises(StoreError, match="no session 999"):
        await export_session(store, 999)


async def test_export_closes_the_code_block_of_an_answer_cut_off_mid_code(store: Store):
    sid = await store.create_session("chat")
    await store.add_message(sid, "architect,coder", "user", "write it")
    cut = "Here:\n\n````python\nprint(1)\n```\nstill code"  # a ``` inside a ```` block
    await store.add_message(sid, "coder", "assistant", cut, status="cancelled")
    await store.add_message(sid, "critic", "assistant", "Looks fine.")
    md = await export_session(store, sid)
    assert "## you → architect, coder\n\nwrite it" in md
    assert cut + "\n````\n\n## critic\n\nLooks fine." in md
    with pytest.raises(ValueError):
        await export_session(store, sid, fmt="html")


async def test_search_on_very_common_words_returns_recent_matches(store: Store, monkeypatch):
    import hermes_tui.store.search as store_module

    monkeypatch.setattr(store_module, "SEARCH_WINDOW", 3)
    sid = await store.create_session("chat")
    ids = [
        await store.add_message(sid, "coder", "assistant", f"apple number {i}") for i in range(10)
    ]
    hits = await store.search("apple", limit=5)
    assert sorted(h.message_id for h in hits) == ids[-3:]
    assert [h.message_id for h in await store.search("apple number 2")] == [ids[2]]


async def test_close_saves_queued_checkpoints_and_events(tmp_path: Path):
    db = tmp_path / "hermes.db"
    store = await Store.open(db)
    sid = await store.create_session("chat")
    mid = await store.start_message(sid, "critic")
    await store.checkpoint_message(mid, "partial critique", 2)
    await store.add_pool_event("evict", model="smollm2")
    await store.close()  # no flush: close must not drop queued writes
    async with await Store.open(db) as again:
        assert again.recovered == 1
        (msg,) = await again.get_transcript(sid)
        assert (msg.content, msg.status) == ("partial critique", "interrupted")
        assert stored(db, "SELECT kind FROM pool_events") == [("evict",)]


async def test_concurrent_writers_share_batches_and_reviewer_sees_commits(tmp_path: Path):
    import asyncio

    db = tmp_path / "hermes.db"
    async with await Store.open(db) as store:
        sid = await store.create_session("chat")
        mid = await store.start_message(sid, "coder")
        ids = await asyncio.gather(
            *(store.add_verdict(sid, mid, "coder", V(span=(i, i + 1))) for i in range(300))
        )
        assert len(set(ids)) == 300
        # A read-only reviewer (another process, say) sees what the live writer committed.
        async with await Store.open(db, readonly=True) as reviewer:
            row = await reviewer.get_session(sid)
            assert row is not None and row.minor == 300
