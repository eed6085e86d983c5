"""One chat completion of ``hermes serve``: admission, the token loop through the sentinel's
watcher, the store record (an ``api`` session), and how it ends.

``Completion.open()`` admits the request (429/400 before any byte is sent) and
``Completion.pieces()`` is the one loop over a completion's tokens; ``Completion.seq_key`` is
the pool "persona" whose KV sequence (and saved state) a request uses: one per client and
target, so a client continuing its conversation reuses the cached prefix. ``ServerCore``
(``service.py``) holds what all completions share.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from agents.engine import EngineError, PromptTooLongError
from agents.pool.pool import GenerationInfo
from agents.pool.queue import NeverFitsError, PoolBusyError
from hermes_tui.outbound import StreamScrubber, bounded
from hermes_tui.redact import redact
from hermes_tui.server.openai_schema import ApiError, ChatRequest
from hermes_tui.server.service import ServerCore, Target, busy

OFF_LOOP_CHARS = 20_000  # a message this long is redacted off the event loop (~20 ms of work)
LOGGED_WINDOW = 4_000  # --log-prompts shows 200 characters, redacted from this many

log = logging.getLogger("hermes.serve")

CHECKPOINT_EVERY_S = 0.25


class Completion:
    """One chat completion through the pool, recorded in the store as an ``api`` session.

    ``pieces()`` yields the text; afterwards ``text``, ``finish_reason``, ``info`` (token counts)
    and ``status`` say how it ended. ``stop(why)`` ends it early from outside (shutdown).
    """

    def __init__(
        self,
        core: ServerCore,
        request: ChatRequest,
        target: Target,
        client: str,
        *,
        priority: str = "api",
        record: bool = True,
        seq_key: str | None = None,
    ) -> None:
        self.core = core
        self.request = request
        self.target = target
        self.client = client
        self.priority = priority if priority in core.pool.queue.priorities else "api"
        self.record = record
        from hermes_tui.server.gateway import options_from

        # Checked first, so a malformed tools / response_format / hermes field is a 400.
        self.options = options_from(request.raw, core.config.sentinel)
        self.seq_key = core.lane(seq_key or f"{client}:{target.name}")
        self.params = request.sampling(target.sampling())
        self.messages = core.renderer.render(request, target)
        self.watcher: Any = None
        self.corrections_used = 0  # > 0: a hidden correction / Fix_Syntax turn
        self.hidden_prompt = ""  # ... and the message that asked for it
        self.parent_session: int | None = None  # ... recorded in the first turn's session
        self.halt_code: str | None = None
        self.halt_detail = ""
        self.info = GenerationInfo()
        self.cancel = asyncio.Event()
        self.stopped: str | None = None
        self.text = ""
        # what is stored of the answer: redacted in time proportional to what was added, at
        # most MAX_STORED_CHARS (a whole-text redaction per checkpoint made long answers slow)
        self._scrub = StreamScrubber(core.config.redact_secrets)
        self.tokens = 0
        self.status = "streaming"
        self.code: str | None = None
        self.error: ApiError | None = None
        self.verdicts: list[Any] = []
        self.session_id: int | None = None
        self._message_id: int | None = None
        self._agen: Any = None
        self._first: asyncio.Future[str] | None = None
        self._record: asyncio.Future[None] | None = None
        self._halter: asyncio.Future[None] | None = None
        self._opened = False
        self._iterated = False
        self._finished = False
        self.orphaned = False  # a detached request whose client left: the server finishes it
        self.request_id: str | None = None  # x-hermes-request: what POST /hermes/cancel names
        self.t0 = time.perf_counter()
        self.first_token_s: float | None = None

    @property
    def finish_reason(self) -> str:
        if self.status == "halted":
            return "content_filter"
        return self.info.finish_reason

    def stop(self, why: str) -> None:
        self.stopped = why
        self.cancel.set()

    async def _start_record(self, note: str = "") -> None:
        if not self.record:
            return
        store, target = self.core.store, self.target
        if self.parent_session is not None:  # a hidden turn of the same request
            self.session_id = self.parent_session
            await store.add_message(
                self.session_id, target.name, "user", self._clean(self.hidden_prompt), hidden=True
            )
            self._message_id = await store.start_message(self.session_id, target.name)
            return
        self.session_id = await store.create_session(
            "api",
            title=f"{self.client} → {target.name}{note}",
            config_hash=self.core.config.digest,
            personas=[target.name],
        )
        last_user = next(
            (m["content"] for m in reversed(self.request.messages) if m["role"] == "user"), ""
        )
        stored = await self._clean_off_loop(last_user)
        await store.add_message(self.session_id, target.name, "user", stored)
        self._message_id = await store.start_message(self.session_id, target.name)

    def _clean(self, text: str) -> str:
        return redact(text, keep_offsets=True) if self.core.config.redact_secrets else text

    async def _clean_off_loop(self, text: str) -> str:
        """A client's message as stored: at most MAX_STORED_CHARS, redacted in a worker thread
        when it is long (redaction takes about 1 s a MB: a 5 MB message held every other
        client's stream for 5 s on the event loop)."""
        if len(text) < OFF_LOOP_CHARS:
            return self._clean(text)
        return await asyncio.to_thread(self._clean, bounded(text))

    async def _on_verdict(self, verdict: Any) -> None:
        self.verdicts.append(verdict)
        if self._record is not None and not self._record.done():
            # A verdict on the first tokens comes before the rows it belongs to exist: the
            # sentinel's task waits for them (the stream does not), then stores it.
            with contextlib.suppress(Exception):
                await asyncio.shield(self._record)
        if self.session_id is not None:
            v = dataclasses.replace(verdict, detail=self._clean(verdict.detail))
            await self.core.store.add_verdict(
                self.session_id, self._message_id, self.target.name, v
            )

    async def open(self) -> None:
        """Admission, before any response is sent: a full queue or a model that can never fit
        raises ``ApiError`` (429 / 400) here, so the client gets a real HTTP status. Then the
        request is recorded in the background (the first token never waits for the disk) and
        its watcher starts. ``pieces`` opens by itself when nobody did (hidden turns)."""
        core = self.core
        self._opened = True
        core.active.add(self)
        if core.stopping:  # arrived while the server began to stop
            self.stop("shutdown")
        from agents.tool_prompt import offered_tools

        tools = offered_tools(self.options.tools, self.options.tool_choice) or None
        self._agen = core.pool.generate(
            self.seq_key,
            self.target.model,
            self.messages,
            self.params,
            self.cancel,
            self.priority,
            client=self.client,
            info=self.info,
            tools=tools,
            tool_choice=self.options.tool_choice if tools else None,
        )
        # The pool admits (or refuses) synchronously on the generator's first step: run that
        # step now (one loop turn), and keep the pending first piece for ``pieces``.
        self._first = asyncio.ensure_future(self._agen.__anext__())
        await asyncio.sleep(0)
        if self._first.done() and not self._first.cancelled():
            exc = self._first.exception()
            if isinstance(exc, PoolBusyError | NeverFitsError):
                self.status, self.code = "refused", exc.code
                self.error = (
                    busy(str(exc))
                    if isinstance(exc, PoolBusyError)
                    else ApiError(400, str(exc), code=exc.code)
                )
                self._first = None
                await self._finish(None)
                raise self.error
        self._record = asyncio.ensure_future(self._start_record())
        watcher = self.watcher = core.watch_for(self.target, self.request, self._on_verdict)
        if watcher is not None:
            watcher.start()
            self._halter = asyncio.ensure_future(self._halt_on(watcher))

    async def _next(self) -> str | None:
        if self._first is not None:
            first, self._first = self._first, None
            try:
                return await first
            except StopAsyncIteration:
                return None
        try:
            return await self._agen.__anext__()
        except StopAsyncIteration:
            return None

    async def pieces(self) -> AsyncIterator[str]:
        """The completion's text pieces. Raises ``ApiError`` for a failure (before or during
        the stream); the record is finished whatever happens, client gone included."""
        if not self._opened:
            await self.open()
        core, watcher = self.core, self.watcher
        self._iterated = True
        try:
            last_ckpt = time.monotonic()
            while (piece := await self._next()) is not None:
                if self.first_token_s is None:
                    self.first_token_s = time.perf_counter() - self.t0
                self.text += piece
                self.tokens += 1
                if watcher is not None:
                    watcher.feed(piece)
                yield piece
                now = time.monotonic()
                if now - last_ckpt >= CHECKPOINT_EVERY_S and self._record.done():
                    last_ckpt = now
                    if self._message_id is not None:
                        await core.store.checkpoint_message(
                            self._message_id, bounded(self.text, self._scrub), self.tokens
                        )
            if self.stopped == "halted":
                self.status, self.code = "halted", self.halt_code
            elif self.stopped == "cancelled":  # the client asked (POST /hermes/cancel/ID)
                self.status = "cancelled"
            elif self.stopped == "shutdown":
                self.status, self.code = "interrupted", "E_SERVER_DOWN"
                self.error = ApiError(
                    503,
                    "hermes serve is shutting down; this completion was interrupted",
                    type="server_error",
                    code="E_SERVER_DOWN",
                )
            else:
                self.status = "done"
        except PoolBusyError as exc:
            self.status, self.code = "error", exc.code
            self.error = busy(str(exc))
        except NeverFitsError as exc:
            self.status, self.code = "error", exc.code
            self.error = ApiError(400, str(exc), code=exc.code)
        except PromptTooLongError as exc:  # the client's to fix: a 400, not a retried 500
            self.status, self.code = "error", exc.code
            self.error = ApiError(400, str(exc), param="messages", code="context_length_exceeded")
        except EngineError as exc:
            self.status, self.code = "error", "E_ENGINE"
            self.error = ApiError(500, str(exc), type="server_error", code="E_ENGINE")
        except (asyncio.CancelledError, GeneratorExit):
            self.status, self.code = "cancelled", "E_CLIENT_GONE"
            raise
        finally:
            # One shielded task: a cancelled caller (the client left) is cancelled again at
            # each await under anyio, and the record must still be finished.
            await asyncio.shield(self._end(watcher))
        if self.error is not None:
            raise self.error

    async def _end(self, watcher: Any) -> None:
        await self._close_stream()
        await self._finish(watcher)

    async def abandon(self) -> None:
        """The response ended before ``pieces`` ran (the client left at once): clean up."""
        if self._iterated or self._finished or not self._opened:
            return
        self.status, self.code = "cancelled", "E_CLIENT_GONE"
        await asyncio.shield(self._end(self.watcher))

    async def _close_stream(self) -> None:
        """Stop the pool's generator (frees its slot and KV sequence at the next token)."""
        if self._halter is not None:
            self._halter.cancel()
        if self._first is not None and not self._first.done():
            self._first.cancel()
            with contextlib.suppress(BaseException):
                await self._first
        if self._agen is not None:
            with contextlib.suppress(Exception):
                await self._agen.aclose()

    async def _halt_on(self, watcher: Any) -> None:
        """A critical verdict stops generation at once (finish_reason content_filter)."""
        await watcher.halt.wait()
        verdict = getattr(watcher, "halt_verdict", None)
        self.halt_code = getattr(verdict, "code", None) or "E_HALTED"
        self.halt_detail = getattr(verdict, "detail", "")
        self.stop("halted")

    async def _finish(self, watcher: Any) -> None:
        if self._finished:
            return
        self._finished = True
        core = self.core
        try:
            if self._record is not None:
                await self._record  # the session and message rows exist before they end
            kept = self.orphaned and self.stopped != "cancelled"  # Esc: the client's to record
            if kept and self._message_id is None and not self.record:
                # A hermes client that records its own turns went away (SIGHUP, SSH drop)
                # while the server finished its turn: the answer is stored here instead.
                self.record = True
                await self._start_record(" (finished after the client left)")
            if watcher is not None:
                if self.status in ("done", "halted"):
                    # Stopped at max_tokens mid-word: that word is not judged (a cut URL
                    # is not a malformed one).
                    cut_off = self.status == "done" and self.info.finish_reason == "length"
                    decision = await watcher.finish(self.corrections_used, cut_off=cut_off)
                    if getattr(decision, "escalated", None) is not None:
                        await self._on_verdict(decision.escalated)
                    self._halted_at_end(watcher, decision)
                else:
                    await watcher.cancel()
            if self._message_id is not None:
                status = "interrupted" if self.status == "streaming" else self.status
                await core.store.finish_message(
                    self._message_id,
                    bounded(self.text, self._scrub),
                    self.tokens,
                    status,
                    self.code,
                )
        except Exception as exc:  # the store failing must not hide the completion's outcome
            log.error("cannot record completion: %s", exc)
        finally:
            core.active.discard(self)
            if self.request_id is not None and core.by_request.get(self.request_id) is self:
                del core.by_request[self.request_id]
            core.release_lane(self.seq_key)
            self._log()

    async def withheld(self, code: str, detail: str) -> None:
        """The gateway did not deliver this answer after it ended (a tool call it could not
        fix, none where tool_choice required one): the record says so, as the client is told
        (``halted`` with the code, ``finish_reason: "content_filter"``)."""
        self.status, self.code = "halted", code
        self.halt_code, self.halt_detail = code, detail
        if self._message_id is None:
            return
        try:
            await self.core.store.finish_message(
                self._message_id, bounded(self.text, self._scrub), self.tokens, "halted", code
            )
        except Exception as exc:  # the store failing must not hide the outcome
            log.error("cannot record completion: %s", exc)
        log.info(
            "%s %s %s halted %s (after it ended)",
            self.client,
            self.target.name,
            self.priority,
            code,
        )

    def _halted_at_end(self, watcher: Any, decision: Any) -> None:
        """A critical verdict that became certain only when the answer ended (a secret as its
        last word, a stop sequence right after it) halts it as one found mid-stream does: the
        client gets ``content_filter`` with the code and detail, the record says ``halted``."""
        if self.status != "done" or getattr(decision, "action", None) != "halt":
            return
        if not getattr(watcher, "enforce", False):
            return
        critical = decision.escalated or next(
            (v for v in decision.verdicts if v.severity == "critical"), None
        )
        self.status = "halted"
        self.code = self.halt_code = decision.code or getattr(critical, "code", None) or "E_HALTED"
        self.halt_detail = getattr(critical, "detail", "")

    def _log(self) -> None:
        ttft = f"{self.first_token_s * 1e3:.0f}ms" if self.first_token_s is not None else "-"
        line = (
            f"{self.client} {self.target.name} {self.priority} {self.status}"
            f"{' ' + self.code if self.code else ''} prompt={self.info.prompt_tokens} "
            f"completion={self.tokens} ttft={ttft} total={time.perf_counter() - self.t0:.2f}s"
        )
        if self.core.log_prompts:
            last = next(
                (m["content"] for m in reversed(self.request.messages) if m["role"] == "user"),
                "",
            )
            line += f" prompt_text={redact(last[:LOGGED_WINDOW])[:200]!r}"
        log.info(line)
