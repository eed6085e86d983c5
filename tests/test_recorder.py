"""The runtime's recorder never waits for the disk, and loses nothing (real SQLite files).

The database is held locked by a second connection (another process's write transaction, as a
``hermes log`` vacuum or a backup tool would hold it): the recorder must still take a whole turn
(start, tokens, a verdict, the end) without waiting, and everything must be stored once the lock
goes.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from agents.events import TokenReceived, TurnEnded, TurnStarted, VerdictRaised
from hermes_tui import runtime as runtime_module
from hermes_tui.runtime import Recorder
from hermes_tui.store import MessageRef, Store
from hermes_tui.store import writer as writer_module
from sentinel.verdict import Verdict

LOCKED_WAIT_S = 120  # how long the writer waits for the lock (much longer than the test)


def _lock(db: Path) -> sqlite3.Connection:
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("BEGIN IMMEDIATE")  # the write lock: nobody else can commit now
    return con


def _count(db: Path, sql: str) -> int:
    con = sqlite3.connect(db)
    try:
        return con.execute(sql).fetchone()[0]
    finally:
        con.close()


async def test_a_whole_turn_is_recorded_while_the_database_is_locked(tmp_path, monkeypatch):
    monkeypatch.setattr(runtime_module, "CHECKPOINT_EVERY_S", 0.0)  # a checkpoint per token
    db = tmp_path / "h.db"
    store = await Store.open(db, busy_timeout_ms=LOCKED_WAIT_S * 1000)
    try:
        sid = await store.create_session("chat")
        recorder = Recorder(store, sid)
        lock = _lock(db)
        verdict = Verdict("patterns", "minor", "E_PATTERN", (0, 4), "a pattern")
        events = [
            TurnStarted(1, "critic", "check this", hidden=True),
            *(TokenReceived(1, "critic", f"word{i} ", i) for i in range(50)),
            VerdictRaised(1, "critic", verdict),
            TurnEnded(1, "critic", "".join(f"word{i} " for i in range(50)), 50, "done"),
        ]
        # Every event is taken while nothing can be committed: none waited for the disk.
        for event in events:
            await asyncio.wait_for(recorder(event), timeout=LOCKED_WAIT_S / 4)
        assert lock.in_transaction
        assert _count(db, "SELECT count(*) FROM messages") == 0  # still nothing on disk
        lock.rollback()
        lock.close()
        await store.flush()
        (message,) = await store.get_transcript(sid)  # the hidden correction prompt is hidden
        assert (message.persona, message.status, message.tokens) == ("critic", "done", 50)
        assert message.content == events[-1].text
        assert [(v.code, v.severity) for v in message.verdicts] == [("E_PATTERN", "minor")]
        shown = await store.get_transcript(sid, include_hidden=True)
        assert [m.role for m in shown] == ["sentinel", "assistant"]
    finally:
        await store.close()


async def test_queued_writes_beyond_the_bound_wait_for_room_and_none_is_lost(tmp_path, monkeypatch):
    monkeypatch.setattr(writer_module, "MAX_QUEUED", 5)
    db = tmp_path / "h.db"
    store = await Store.open(db, busy_timeout_ms=LOCKED_WAIT_S * 1000)
    try:
        sid = await store.create_session("chat")
        lock = _lock(db)
        verdict = Verdict("loops", "minor", "E_LOOP", (0, 1), "again")
        writes = [
            asyncio.ensure_future(store.queue_verdict(sid, None, "coder", verdict))
            for _ in range(12)
        ]
        await asyncio.sleep(0.2)  # let the writer start its (locked) transaction
        # The writer holds at most one batch (the first 5) while it waits for the lock; the
        # rest wait for room instead of piling up in memory.
        assert sum(w.done() for w in writes) == 5
        lock.rollback()
        lock.close()
        await asyncio.wait_for(asyncio.gather(*writes), timeout=LOCKED_WAIT_S / 4)
        await store.flush()
        assert _count(db, "SELECT count(*) FROM verdicts") == 12
    finally:
        await store.close()


async def test_a_message_whose_insert_failed_keeps_its_verdicts_and_says_so_at_flush(tmp_path):
    db = tmp_path / "h.db"
    store = await Store.open(db)
    try:
        ref = await store.queue_message_start(4242, "coder")  # no such session: rejected
        await store.queue_verdict(
            (await store.create_session("chat")),
            ref,
            "coder",
            Verdict("secrets", "critical", "E_SECRET", (0, 1), "a key"),
        )
        await store.queue_message_finish(ref, "text", 1, "done")
        try:
            await store.flush()
        except Exception as exc:  # the failed writes are reported, not silent
            assert "write rejected" in str(exc)
        else:
            raise AssertionError("flush did not report the rejected writes")
        assert isinstance(ref, MessageRef) and ref.id is None
        assert _count(db, "SELECT count(*) FROM verdicts WHERE message_id IS NULL") == 1
    finally:
        await store.close()


async def test_a_rolled_back_insert_never_lends_its_id_to_the_next_message(tmp_path):
    """A batch that fails as a whole (here: a write in it hits a missing table, injected
    through the writer) rolls the message insert back; SQLite would give its id to the next
    message, so the first message's later writes must not land on that one."""
    db = tmp_path / "h.db"
    store = await Store.open(db)
    try:
        sid = await store.create_session("chat")

        async def broken(conn):
            await conn.execute("INSERT INTO no_such_table VALUES (1)")

        ref = await store.queue_message_start(sid, "coder")
        await store._writable().enqueue(broken)  # fault injection: same batch as the insert
        try:
            await store.flush()
        except Exception as exc:
            assert "no_such_table" in str(exc) or "database" in str(exc)
        assert ref.id is None
        other = await store.start_message(sid, "critic")
        await store.queue_message_finish(ref, "the first answer", 3, "done")
        try:
            await store.flush()  # the first message's final text has nowhere to go: said so
        except Exception as exc:
            assert "write rejected" in str(exc)
        else:
            raise AssertionError("a write of a never-stored message was not reported")
        (row,) = await store.get_transcript(sid)
        assert (row.id, row.persona, row.content, row.status) == (other, "critic", "", "streaming")
    finally:
        await store.close()
