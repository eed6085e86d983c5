"""``Store``'s write methods, mixed into it: each is an operation run by the writer task.

Those that return something (ids) or must be durable before the caller goes on
(``finish_message``) wait for their transaction to commit. ``checkpoint_message``,
``add_pool_event`` and the ``queue_*`` methods (the runtime's recorder: a streaming turn never
waits for the disk) only enqueue; ``flush()`` waits until everything queued is committed and
raises if one of those background writes failed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from agents.events import FINAL_STATUSES
from hermes_tui.store.errors import StoreError
from hermes_tui.store.times import TimeLike, to_ts
from hermes_tui.store.writer import MessageKey, MessageRef, WriteFn, Writer, exec_fn, insert_fn
from sentinel.verdict import Verdict

if TYPE_CHECKING:
    from agents.pool.scheduler import PoolEvent


class Writes:
    """The write methods (see the module docstring); ``Store`` sets the attributes."""

    path: Path
    readonly: bool
    _writer: Writer | None
    _closed: bool

    def _writable(self) -> Writer:
        if self.readonly or self._writer is None:
            raise StoreError(f"database {self.path} is open read-only; nothing can be saved")
        if self._closed:
            raise StoreError(f"database {self.path} is closed")
        return self._writer

    async def flush(self) -> None:
        """Wait until every write queued so far is committed.

        Raises the error of a background write (checkpoint, pool event) that failed since
        the last flush, so those failures are not silent.
        """
        await self._writable().flush()

    async def create_session(
        self,
        mode: str,
        *,
        config_hash: str = "",
        title: str = "",
        personas: Sequence[str] = (),
        started: TimeLike | None = None,
    ) -> int:
        """Start a session; returns its id."""
        params = (
            to_ts(started) or time.time(),
            mode,
            config_hash,
            title,
            json.dumps(list(personas)),
        )
        result: int = await self._writable().submit(
            insert_fn(
                "INSERT INTO sessions(started, mode, config_hash, title, personas) "
                "VALUES (?, ?, ?, ?, ?)",
                params,
            )
        )
        return result

    async def update_session(
        self, session_id: int, *, title: str | None = None, personas: Sequence[str] | None = None
    ) -> None:
        """Change a session's title and/or personas (e.g. once the first prompt is known)."""
        sets: list[str] = []
        params: list[object] = []
        if title is not None:
            sets.append("title = ?")
            params.append(title)
        if personas is not None:
            sets.append("personas = ?")
            params.append(json.dumps(list(personas)))
        if sets:
            sql = f"UPDATE sessions SET {', '.join(sets)} WHERE id = ?"
            await self._writable().submit(exec_fn(sql, (*params, session_id)))

    async def start_message(
        self,
        session_id: int,
        persona: str,
        role: str = "assistant",
        *,
        content: str = "",
        hidden: bool = False,
        started: TimeLike | None = None,
    ) -> int:
        """Insert a message in status ``streaming``; returns its id for checkpoints."""
        params = (session_id, persona, role, content, to_ts(started) or time.time(), int(hidden))
        result: int = await self._writable().submit(
            insert_fn(
                "INSERT INTO messages(session_id, persona, role, content, started, hidden, status)"
                " VALUES (?, ?, ?, ?, ?, ?, 'streaming')",
                params,
            )
        )
        return result

    async def add_message(
        self,
        session_id: int,
        persona: str,
        role: str,
        content: str,
        *,
        tokens: int = 0,
        status: str = "done",
        hidden: bool = False,
        started: TimeLike | None = None,
    ) -> int:
        """Insert a complete message in one go (user prompts, system notes)."""
        if status not in FINAL_STATUSES:
            raise ValueError(f"status must be one of {FINAL_STATUSES}, not {status!r}")
        now = to_ts(started) or time.time()
        params = (session_id, persona, role, content, now, now, tokens, status, int(hidden))
        result: int = await self._writable().submit(
            insert_fn(
                "INSERT INTO messages(session_id, persona, role, content, started, finished, "
                "tokens, status, hidden) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                params,
            )
        )
        return result

    async def checkpoint_message(self, message_id: MessageKey, content: str, tokens: int) -> None:
        """Record the text streamed so far. Cheap: does not wait for the disk.

        Several checkpoints of one message before the writer gets to it become one write of
        the latest text. A checkpoint never overwrites a message that is no longer streaming.
        """
        self._writable().checkpoint(message_id, content, tokens)

    async def finish_message(
        self,
        message_id: MessageKey,
        content: str,
        tokens: int,
        status: str,
        error_code: str | None = None,
    ) -> None:
        """Store the final text and status; returns once it is committed."""
        await self._writable().submit(
            self._finish_fn(message_id, content, tokens, status, error_code)
        )

    def _finish_fn(
        self, message: MessageKey, content: str, tokens: int, status: str, error_code: str | None
    ) -> WriteFn:
        if status not in FINAL_STATUSES:
            raise ValueError(f"status must be one of {FINAL_STATUSES}, not {status!r}")
        self._writable().drop_checkpoint(message)  # the final text supersedes any checkpoint
        return exec_fn(
            "UPDATE messages SET content = ?, tokens = ?, status = ?, error_code = ?, "
            "finished = ? WHERE id = ?",
            (content, int(tokens), status, error_code, time.time(), message),
            must_change=f"no message {message}",
        )

    # ---- queued writes (the recorder: nothing here waits for a commit) ---------------------

    async def queue_message_start(
        self, session_id: int, persona: str, role: str = "assistant", *, hidden: bool = False
    ) -> MessageRef:
        """``start_message`` without waiting: the returned ref gets its id when it commits."""
        ref = MessageRef()
        params = (session_id, persona, role, "", time.time(), int(hidden))
        await self._writable().enqueue(
            insert_fn(
                "INSERT INTO messages(session_id, persona, role, content, started, hidden, status)"
                " VALUES (?, ?, ?, ?, ?, ?, 'streaming')",
                params,
                ref,
            ),
            ref,
        )
        return ref

    async def queue_message(
        self, session_id: int, persona: str, role: str, content: str, *, hidden: bool = False
    ) -> None:
        """``add_message`` (status done) without waiting for the commit."""
        now = time.time()
        await self._writable().enqueue(
            insert_fn(
                "INSERT INTO messages(session_id, persona, role, content, started, finished, "
                "tokens, status, hidden) VALUES (?, ?, ?, ?, ?, ?, 0, 'done', ?)",
                (session_id, persona, role, content, now, now, int(hidden)),
            )
        )

    async def queue_message_finish(
        self,
        message: MessageKey,
        content: str,
        tokens: int,
        status: str,
        error_code: str | None = None,
    ) -> None:
        """``finish_message`` without waiting for the commit."""
        fn = self._finish_fn(message, content, tokens, status, error_code)
        await self._writable().enqueue(fn)

    async def queue_verdict(
        self, session_id: int, message: MessageKey | None, persona: str, verdict: Verdict
    ) -> None:
        """``add_verdict`` without waiting for the commit."""
        await self._writable().enqueue(
            insert_fn(
                VERDICT_SQL, verdict_params(session_id, message, persona, verdict, time.time())
            )
        )

    async def queue_session_update(self, session_id: int, *, personas: Sequence[str]) -> None:
        """``update_session(personas=...)`` without waiting for the commit."""
        await self._writable().enqueue(
            exec_fn(
                "UPDATE sessions SET personas = ? WHERE id = ?",
                (json.dumps(list(personas)), session_id),
            )
        )

    async def add_verdict(
        self,
        session_id: int,
        message_id: int | None,
        persona: str,
        verdict: Verdict,
        *,
        at: TimeLike | None = None,
    ) -> int:
        """Store one sentinel verdict on a message; returns its id."""
        params = verdict_params(session_id, message_id, persona, verdict, to_ts(at) or time.time())
        result: int = await self._writable().submit(insert_fn(VERDICT_SQL, params))
        return result

    async def record_pool_event(self, event: PoolEvent) -> None:
        """A pool listener: a ``PoolEvent`` into the pool_events table (used by
        the in-process runtime and by ``hermes serve`` alike)."""
        await self.add_pool_event(
            event.kind, model=event.model, persona=event.persona, detail=event.detail, at=event.ts
        )

    async def add_pool_event(
        self,
        kind: str,
        *,
        model: str = "",
        persona: str = "",
        bytes: int = 0,  # noqa: A002 - the column's name
        wait_ms: float = 0.0,
        detail: str = "",
        at: TimeLike | None = None,
    ) -> None:
        """Record a model-pool event (load, evict, wait...). Does not wait for the disk."""
        params = (
            to_ts(at) or time.time(),
            kind,
            model,
            persona,
            int(bytes),
            float(wait_ms),
            detail,
        )
        self._writable().submit_nowait(
            exec_fn(
                "INSERT INTO pool_events(at, kind, model, persona, bytes, wait_ms, detail) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                params,
            )
        )

    async def recover_interrupted(self) -> int:
        """Mark messages left ``streaming`` by a dead process as ``interrupted``; returns how
        many. Called by ``open``; their last checkpointed text is kept."""
        result: int = await self._writable().submit(
            exec_fn(
                "UPDATE messages SET status = 'interrupted', "
                "finished = coalesce(finished, ?) WHERE status = 'streaming'",
                (time.time(),),
            )
        )
        return result


VERDICT_SQL = (
    "INSERT INTO verdicts(message_id, session_id, persona, check_name, severity, "
    "code, span_start, span_end, detail, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def verdict_params(
    session_id: int, message: MessageKey | None, persona: str, verdict: Verdict, at: float
) -> tuple[object, ...]:
    return (
        message,
        session_id,
        persona,
        verdict.check,
        verdict.severity,
        verdict.code,
        int(verdict.span[0]),
        int(verdict.span[1]),
        verdict.detail,
        at,
    )
