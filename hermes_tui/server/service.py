"""The server's core: what a ``model`` names, how a request becomes a prompt, and what every
completion shares (the pool, the judge, the store, admission, lanes). One completion's
pipeline (admission, tokens, sentinel, store) is ``completion.Completion``.

Seams for the layers built on top (tool calls, the sentinel's in-band verdicts, prompt-prefix
KV caching; issue #15):

* ``PromptRenderer.render(request, target)`` turns a checked request into the messages the
  pool formats with the model's chat template. Replace ``ServerCore.renderer`` to add tools
  or a different system-prompt policy.
* ``ServerCore.watch_for(target, request, on_verdict)`` builds the watcher every token of a
  completion passes through (``Watcher`` protocol: ``start/feed/finish/cancel`` and a
  ``halt`` event). Today: the persona's sentinel ``Monitor`` for a persona (verdicts stored
  with the request), nothing for a bare model.
* ``Completion.open()`` (``completion.py``) admits the request (429/400 before any byte is sent) and
  ``Completion.pieces()`` is the one loop over a completion's tokens; ``Completion.seq_key``
  is the pool "persona" whose KV sequence (and saved state) a request uses: one per client and
  target, so a client continuing its conversation reuses the cached prefix.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from agents.engine import Message, SamplingParams
from agents.persona import Persona
from agents.pool.pool import ModelPool, placement_bytes
from agents.pool.queue import PRIORITIES, NeverFitsError, PoolBusyError
from agents.specs import DeviceSpec, ModelSpec
from hermes_tui.config import Config
from hermes_tui.server.openai_schema import ApiError, ChatRequest
from sentinel import cpu_backend

log = logging.getLogger("hermes.serve")

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


class Running(Protocol):
    """A completion in flight as the core sees it (``completion.Completion``)."""

    client: str

    def stop(self, why: str) -> None: ...


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
        self.active: set[Running] = set()
        self.by_request: dict[str, Running] = {}  # x-hermes-request ids of running ones
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

            # One judge for every client: a restart costs all of them a model load, so only a
            # child silent for 30 s is deemed hung (the chat's limit is judge_timeout_s).
            worker = JudgeWorker.from_settings(config.sentinel, hang_timeout_s=30.0)
        # The judge runs on the same memory: the pool gets what it leaves of each device.
        devices = tuple(
            DeviceSpec(name, budget - reserved.get(name, 0)) for name, budget in budgets.items()
        )
        spec = dataclasses.replace(config.pool, devices=devices)
        store = await Store.open(db_path or config.db_path or default_db_path())
        await asyncio.to_thread(cpu_backend.apply)  # before any model loads (see the module)
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

    async def admit(self, target: Target) -> None:
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
        # The first request for a model reads its GGUF's header to price it: not on the
        # event loop, where it held every other client's stream (the pool's generate must
        # then admit in one loop turn: Completion.open).
        await self.pool.price(target.model)
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
