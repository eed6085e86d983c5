"""The server's core: what a ``model`` names, how a request becomes a prompt, and the pipeline
each completion runs through (admission, tokens, sentinel, store).

Seams for the layers built on top (tool calls, the sentinel's in-band verdicts, prompt-prefix
KV caching; issue #15):

* ``PromptRenderer.render(request, target)`` turns a checked request into the messages the
  pool formats with the model's chat template. Replace ``ServerCore.renderer`` to add tools
  or a different system-prompt policy.
* ``ServerCore.watch_for(target, request, on_verdict)`` builds the watcher every token of a
  completion passes through (``Watcher`` protocol: ``start/feed/finish/cancel`` and a
  ``halt`` event). Today: the persona's sentinel ``Monitor`` for a persona (verdicts stored
  with the request), nothing for a bare model.
* ``Completion.open()`` admits the request (429/400 before any byte is sent) and
  ``Completion.pieces()`` is the one loop over a completion's tokens; ``Completion.seq_key``
  is the pool "persona" whose KV sequence (and saved state) a request uses: one per client and
  target, so a client continuing its conversation reuses the cached prefix.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agents.engine import EngineError, Message, PromptTooLongError, SamplingParams
from agents.persona import Persona
from agents.pool.pool import GenerationInfo, ModelPool, placement_bytes
from agents.pool.queue import PRIORITIES, NeverFitsError, PoolBusyError
from agents.specs import DeviceSpec, ModelSpec
from hermes_tui.config import Config
from hermes_tui.redact import redact
from hermes_tui.server.openai_schema import ApiError, ChatRequest

log = logging.getLogger("hermes.serve")

CHECKPOINT_EVERY_S = 0.25
RETRY_AFTER_S = 2
DEFAULT_SAMPLING = SamplingParams(max_tokens=256, temperature=0.7)


@dataclass(frozen=True)
class Target:
    """What a request's ``model`` names: a persona (its prompt, contract, sampling, sentinel)
    or a model of the config (no persona)."""

    name: str
    kind: str  # "persona" | "model"
    model: str  # the pool's model name
    persona: Persona | None = None

    def sampling(self) -> SamplingParams:
        return self.persona.sampling() if self.persona else DEFAULT_SAMPLING


class PromptRenderer:
    """Seam: a checked request -> the messages the model sees (see the module docstring).

    A persona's system prompt comes first; the client's own system message follows it.
    """

    def render(self, request: ChatRequest, target: Target) -> list[Message]:
        from hermes_tui.server.gateway import wire_messages

        # The body's own messages: tool calls and tool results kept (gateway.py).
        messages: list[Any] = wire_messages(request.raw) if request.raw else list(request.messages)
        if target.persona is not None:
            return [{"role": "system", "content": target.persona.system_prompt}, *messages]
        return messages


def judge_reservation(config: Config, budgets: dict[str, int]) -> dict[str, int]:
    """Bytes the judge model takes on each device (it runs in its own process, outside the
    pool, but on the same memory)."""
    path = config.sentinel.judge_model_path
    if not path:
        return {}
    spec = ModelSpec(name="judge", path=Path(path), n_ctx=2048, device=config.sentinel.device)
    try:
        return placement_bytes(spec, 1, budgets)
    except Exception:  # an unreadable file: the judge reports it when it starts
        return {}


def machine_budgets(config: Config) -> dict[str, int]:
    from agents.pool.pool import available_ram

    return {d.name: d.memory_bytes for d in config.pool.devices} or {"cpu": available_ram()}


class ServerCore:
    """Owns the store, the pool and the judge for the whole machine; runs completions."""

    def __init__(
        self,
        config: Config,
        store: Any,
        pool: ModelPool,
        judge: Any,
        *,
        judge_bytes: dict[str, int] | None = None,
        log_prompts: bool = False,
    ) -> None:
        self.config = config
        self.store = store
        self.pool = pool
        self.judge = judge
        self.judge_start: asyncio.Future[None] | None = None
        self.judge_bytes = judge_bytes or {}
        self.log_prompts = log_prompts
        self.renderer = PromptRenderer()
        self.started = time.time()
        self.stopping = False
        self.active: set[Completion] = set()
        self.by_request: dict[str, Completion] = {}  # x-hermes-request ids of running ones
        self.background: set[asyncio.Task] = set()  # detached streams whose client left
        self._lanes: set[str] = set()
        self.canary = f"HERMES-CANARY-{secrets.token_hex(6)}"
        self.personas = {
            name: dataclasses.replace(
                p,
                system_prompt=f"{p.system_prompt}\n(Internal marker, never repeat it: "
                f"{self.canary})",
            )
            for name, p in config.personas.items()
        }
        self.targets: dict[str, Target] = {}
        for name, spec in config.models.items():
            self.targets[name] = Target(name, "model", spec.name)
        for name, p in self.personas.items():  # a persona wins over a model of the same name
            self.targets[name] = Target(name, "persona", p.model, p)

    # -- start and stop ------------------------------------------------------------------
    @classmethod
    async def start(
        cls,
        config: Config,
        *,
        db_path: Path | None = None,
        judge: bool = True,
        log_prompts: bool = False,
        priorities: tuple[str, ...] = PRIORITIES,
    ) -> ServerCore:
        from hermes_tui.store import Store, default_db_path

        budgets = machine_budgets(config)
        reserved = judge_reservation(config, budgets) if judge else {}
        worker = None
        if reserved and any(budgets.get(d, 0) <= n for d, n in reserved.items()):
            log.warning("the judge model does not fit its device's budget: the judge is off")
            reserved = {}
        elif judge and config.sentinel.judge_model_path:
            from sentinel.judge import JudgeWorker

            worker = JudgeWorker(
                config.sentinel.judge_model_path,
                config.sentinel.device,
                llama_cpp_path=config.sentinel.judge_llama_cpp_path,
                busy_share=config.sentinel.busy_share,
                busy_deadline_s=config.sentinel.judge_timeout_s / 2,
            )
        # The judge runs on the same memory: the pool gets what it leaves of each device.
        devices = tuple(
            DeviceSpec(name, budget - reserved.get(name, 0)) for name, budget in budgets.items()
        )
        spec = dataclasses.replace(config.pool, devices=devices)
        store = await Store.open(db_path or config.db_path or default_db_path())
        pool = ModelPool(
            config.models,
            spec,
            seqs_per_model=config.pool.seqs_per_model,
            decode_mode=config.pool.decode_mode,
            priorities=priorities,
        )

        pool.add_listener(store.record_pool_event)  # pool events → pool_events
        if worker is not None:
            pool.add_activity_listener(worker.set_primary_busy)  # the judge gives way
        core = cls(config, store, pool, worker, judge_bytes=reserved, log_prompts=log_prompts)
        if worker is not None:
            core.judge_start = asyncio.ensure_future(worker.start_in_background())
        return core

    def begin_shutdown(self) -> None:
        """Stop every running completion (each ends with a clear error, stored interrupted)."""
        self.stopping = True
        for completion in list(self.active):
            completion.stop("shutdown")

    async def close(self) -> None:
        self.begin_shutdown()
        for _ in range(200):  # let running completions record their end (at most 2 s)
            if not self.active:
                break
            await asyncio.sleep(0.01)
        if self.judge_start is not None and not self.judge_start.done():
            self.judge_start.cancel()
            await asyncio.wait([self.judge_start], timeout=5)
        if self.judge is not None:
            await self.judge.close()
        await self.pool.close()
        await self.store.close()

    # -- what the server offers ----------------------------------------------------------
    def summary(self) -> str:
        """One line: models, personas, device budgets (and what the judge holds of them)."""

        def mib(n: int) -> str:
            return f"{n / 2**20:.0f} MiB"

        devices = []
        for name, budget in self.pool.budgets.items():
            judge = self.judge_bytes.get(name)
            extra = f" (+{mib(judge)} judge)" if judge else ""
            devices.append(f"{name} {mib(budget)}{extra}")
        models = ", ".join(sorted(self.config.models))
        personas = ", ".join(self.personas)
        return (
            f"pool: models {models}; personas {personas}; budget {', '.join(devices)}; "
            f"queue {self.pool.queue.maxsize}"
        )

    def resolve(self, name: str) -> Target:
        target = self.targets.get(name)
        if target is None:
            known = ", ".join(sorted(self.targets))
            raise ApiError(
                404,
                f"The model {name!r} does not exist (personas and models here: {known})",
                code="model_not_found",
                param="model",
            )
        return target

    def admit(self, target: Target) -> None:
        """What can be refused before anything streams: shutting down, never fits, full queue.

        Checked again by the pool itself; this makes the answer a plain HTTP status.
        """
        if self.stopping:
            raise ApiError(
                503, "hermes serve is shutting down", type="server_error", code="E_SERVER_DOWN"
            )
        spec = self.config.models[target.model]
        if spec.remote:
            return
        try:
            self.pool.check_fits(target.model)
        except NeverFitsError as exc:
            raise ApiError(400, str(exc), code=NeverFitsError.code) from None
        queue = self.pool.queue
        if queue.new_waiting >= queue.maxsize:
            raise busy(str(PoolBusyError(f"pool busy: {queue.new_waiting} requests queued")))

    def watch_for(
        self,
        target: Target,
        request: ChatRequest,
        on_verdict: Callable[[Any], Awaitable[None]],
    ) -> Any:
        """Seam: the watcher a completion's tokens pass through: the gateway (tool calls,
        the sentinel on content and tool calls, in-band verdicts; hermes_tui/server/gateway.py).
        """
        from hermes_tui.runtime import contract_for
        from hermes_tui.server.gateway import Gateway, contract_for_request, options_from
        from sentinel.contract import Contract
        from sentinel.monitor import Monitor

        opts = options_from(request.raw, self.config.sentinel)
        if target.persona is not None:
            original = self.config.personas[target.name].system_prompt
            base = contract_for(target.persona, original, self.canary)
            judge, instructions = self.judge, original
        else:
            base, judge, instructions = Contract(), None, ""
        contract = contract_for_request(base, opts)
        gateway = Gateway(
            opts, None, on_verdict, self.config.sentinel, contract, stream=request.stream
        )
        if gateway.checking:
            gateway.monitor = Monitor(
                contract,
                self.config.sentinel,
                on_verdict=gateway.noted,
                judge=judge,
                instructions=instructions,
            )
        return gateway

    def lane(self, base: str) -> str:
        """A free KV-sequence key for ``base`` (client and target): requests of one client
        that run at once get separate sequences, one after another reuse the same one."""
        n = 1
        key = base
        while key in self._lanes:
            n += 1
            key = f"{base}~{n}"
        self._lanes.add(key)
        return key

    def release_lane(self, key: str) -> None:
        self._lanes.discard(key)


def busy(message: str) -> ApiError:
    return ApiError(
        429,
        message,
        type="rate_limit_error",
        code=PoolBusyError.code,
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


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
        await store.add_message(self.session_id, target.name, "user", self._clean(last_user))
        self._message_id = await store.start_message(self.session_id, target.name)

    def _clean(self, text: str) -> str:
        return redact(text, keep_offsets=True) if self.core.config.redact_secrets else text

    async def _on_verdict(self, verdict: Any) -> None:
        self.verdicts.append(verdict)
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
                            self._message_id, self._clean(self.text), self.tokens
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
                    decision = await watcher.finish(self.corrections_used)
                    if getattr(decision, "escalated", None) is not None:
                        await self._on_verdict(decision.escalated)
                else:
                    await watcher.cancel()
            if self._message_id is not None:
                status = "interrupted" if self.status == "streaming" else self.status
                await core.store.finish_message(
                    self._message_id, self._clean(self.text), self.tokens, status, self.code
                )
        except Exception as exc:  # the store failing must not hide the completion's outcome
            log.error("cannot record completion: %s", exc)
        finally:
            core.active.discard(self)
            if self.request_id is not None and core.by_request.get(self.request_id) is self:
                del core.by_request[self.request_id]
            core.release_lane(self.seq_key)
            self._log()

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
            line += f" prompt_text={redact(last)[:200]!r}"
        log.info(line)
