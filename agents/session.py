"""A conversation between the user and the personas.

Routing: ``@coder ...`` goes to the coder, ``@coder @critic ...`` to both, ``@all ...`` to
everyone, anything else to the default persona. Workflows: ``parallel`` (the addressed
personas answer concurrently) and ``pipeline`` (in order, each sees the earlier answers).
Each persona keeps its own chat history. A watcher (the sentinel) may ask for a hidden
correction turn or halt the turn; the session only knows the small ``Watcher`` protocol.
"""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from agents.engine import EngineError, Message, SamplingParams
from agents.errors import HermesError
from agents.events import (
    EndStatus,
    Event,
    TokenReceived,
    TurnEnded,
    TurnStarted,
    VerdictLike,
    VerdictRaised,
)
from agents.persona import Persona
from agents.pool.pool import GenerationInfo

_MENTION = re.compile(r"(?<![\w@])@([A-Za-z_][\w-]*)")


_PER_MESSAGE_TOKENS = 8  # chat-template markers around each message


def approx_tokens(text: str) -> int:
    """A safe over-estimate of the token count of ``text`` (see ``Session._trimmed``)."""
    ascii_chars = len(text.encode("ascii", "ignore"))  # in C: a 1 MB message took 0.2 s
    return ascii_chars // 3 + 1 + len(text.encode("utf-8", "replace")) - ascii_chars


class UnknownPersonaError(HermesError, ValueError):
    """A message addressed a persona that the config does not define."""


class Outcome(Protocol):
    """What the sentinel decided about a finished answer (``sentinel.decision.Decision``)."""

    @property
    def action(self) -> str: ...  # "pass" | "correct" | "halt"

    @property
    def code(self) -> str | None: ...  # the error code of a halt

    @property
    def correction(self) -> str | None: ...  # the hidden message sent back to the persona

    @property
    def escalated(self) -> VerdictLike | None: ...  # a minor problem that became critical


class TurnPool(Protocol):
    """The model pool as the session sees it (``agents.pool.pool.ModelPool``, or the client
    of a running ``hermes serve``). A pool may also offer ``prefetch(model)``."""

    def generate(
        self,
        persona: str,
        model: str,
        messages: list[Message],
        params: SamplingParams,
        cancel: asyncio.Event | None = None,
        priority: str = "interactive",
        *,
        info: GenerationInfo | None = None,
    ) -> AsyncIterator[str]: ...


class Watcher(Protocol):
    """What the session needs from a sentinel monitor (see ``sentinel.monitor.Monitor``)."""

    halt: asyncio.Event

    def start(self) -> None: ...

    def feed(self, piece: str) -> None: ...

    async def finish(self, corrections_used: int = 0, *, cut_off: bool = False) -> Outcome: ...

    async def cancel(self) -> None: ...


WatcherFactory = Callable[[Persona, Callable[[VerdictLike], Awaitable[None]]], Watcher]
Listener = Callable[[Event], Awaitable[None]]


@dataclass
class TurnResult:
    persona: str
    text: str
    tokens: int
    status: str
    code: str | None = None
    corrections: int = 0
    verdicts: list[VerdictLike] = field(default_factory=list)


def parse_mentions(text: str, personas: list[str], default: str) -> tuple[list[str], str]:
    """Return (addressed personas in config order, message without the mentions)."""
    names = [m.group(1) for m in _MENTION.finditer(text)]
    if not names:
        return [default], text.strip()
    wanted: list[str] = []
    for name in names:
        if name == "all":
            wanted = list(personas)
            continue
        if name not in personas:
            raise UnknownPersonaError(
                f"unknown persona @{name} (expected one of: {', '.join(personas)}, all)"
            )
        if name not in wanted:
            wanted.append(name)
    ordered = [p for p in personas if p in wanted]
    return ordered, _MENTION.sub("", text).strip()


class Session:
    def __init__(
        self,
        personas: dict[str, Persona],
        pool: TurnPool,
        *,
        default_persona: str,
        workflow: str = "pipeline",
        watcher_factory: WatcherFactory | None = None,
        listener: Listener | None = None,
        n_ctx: dict[str, int] | None = None,
        priority: str = "interactive",
        seed: int | None = None,
    ) -> None:
        self.personas = personas
        self.pool = pool
        self.default_persona = default_persona
        self.workflow = workflow
        self.watcher_factory = watcher_factory
        self.listener = listener
        self.n_ctx = n_ctx or {}
        self.priority = priority
        self.seed = seed
        self.histories: dict[str, list[Message]] = {
            name: [{"role": "system", "content": p.system_prompt}] for name, p in personas.items()
        }
        self._turn_ids = itertools.count(1)

    async def _emit(self, event: Event) -> None:
        if self.listener is not None:
            await self.listener(event)

    def route(self, text: str) -> tuple[list[str], str]:
        return parse_mentions(text, list(self.personas), self.default_persona)

    async def send(
        self, text: str, *, workflow: str | None = None, cancel: asyncio.Event | None = None
    ) -> list[TurnResult]:
        """Deliver one user message; returns each addressed persona's final answer."""
        targets, body = self.route(text)
        flow = workflow or self.workflow
        if flow == "parallel" or len(targets) == 1:
            return list(await asyncio.gather(*(self._answer(p, body, cancel) for p in targets)))
        results: list[TurnResult] = []
        for i, name in enumerate(targets):
            prefetch = getattr(self.pool, "prefetch", None)
            if i + 1 < len(targets) and prefetch is not None:
                asyncio.ensure_future(prefetch(self.personas[targets[i + 1]].model))
            prompt = body
            if results:
                earlier = "\n\n".join(
                    f"The {r.persona} answered:\n{r.text}" for r in results if r.text
                )
                prompt = f"{body}\n\n{earlier}" if earlier else body
            results.append(await self._answer(name, prompt, cancel))
            if cancel is not None and cancel.is_set():
                break
        return results

    def _trimmed(self, name: str) -> list[Message]:
        """The persona's history, oldest exchanges dropped to fit its context window.

        Token counts are estimated without a tokenizer, conservatively: ~3 ASCII characters
        per token, and one token per UTF-8 byte of anything else (CJK text costs 2-3 tokens
        a character in English-centred vocabularies)."""
        persona = self.personas[name]
        history = self.histories[name]
        budget = self.n_ctx.get(persona.model, 2048) - persona.max_tokens
        system, rest = history[0], history[1:]
        kept: list[Message] = []
        used = approx_tokens(system["content"]) + _PER_MESSAGE_TOKENS
        for message in reversed(rest):
            used += approx_tokens(message["content"]) + _PER_MESSAGE_TOKENS
            if used > budget and kept:
                break
            kept.append(message)
        return [system, *reversed(kept)]

    async def _answer(self, name: str, prompt: str, cancel: asyncio.Event | None) -> TurnResult:
        """One persona's turn, including hidden correction turns asked for by the watcher."""
        persona = self.personas[name]
        corrections = 0
        hidden = False
        all_verdicts: list[VerdictLike] = []
        while True:
            self.histories[name].append({"role": "user", "content": prompt})
            result, decision = await self._one_pass(persona, prompt, hidden, corrections, cancel)
            self.histories[name].append({"role": "assistant", "content": result.text})
            all_verdicts.extend(result.verdicts)
            if decision is None or decision.action == "pass" or result.status != "done":
                break
            if decision.action == "halt":
                result.status, result.code = "halted", decision.code
                break
            corrections += 1
            prompt, hidden = decision.correction or "", True
        result.corrections = corrections
        result.verdicts = all_verdicts
        return result

    async def _one_pass(
        self,
        persona: Persona,
        prompt: str,
        hidden: bool,
        corrections: int,
        cancel: asyncio.Event | None,
    ) -> tuple[TurnResult, Outcome | None]:
        turn_id = next(self._turn_ids)
        await self._emit(TurnStarted(turn_id, persona.name, prompt, hidden))
        verdicts: list[VerdictLike] = []

        async def on_verdict(verdict: VerdictLike) -> None:
            verdicts.append(verdict)
            await self._emit(VerdictRaised(turn_id, persona.name, verdict))

        watcher = None
        if self.watcher_factory:
            try:
                watcher = self.watcher_factory(persona, on_verdict)
            except Exception as exc:  # noqa: BLE001 - a sentinel that cannot start must not
                # take the turn with it: the answer streams unchecked, and says so
                down = SentinelDown(f"sentinel could not start, answer not checked: {exc!r}")
                await on_verdict(down)
        stop = asyncio.Event()
        relay = asyncio.ensure_future(_relay(cancel, watcher, stop))
        status: EndStatus = "done"
        text, tokens, code, detail = "", 0, None, ""
        if watcher:
            watcher.start()
        info = GenerationInfo()  # the pool's own token count and finish reason
        try:
            async for piece in self.pool.generate(
                persona.name,
                persona.model,
                self._trimmed(persona.name),
                persona.sampling(self.seed),
                stop,
                self.priority,
                info=info,
            ):
                offset = len(text)
                text += piece
                tokens += 1
                if watcher:
                    watcher.feed(piece)
                await self._emit(TokenReceived(turn_id, persona.name, piece, offset))
        except EngineError as exc:
            status, code, detail = "error", "E_ENGINE", str(exc)
        except asyncio.CancelledError:  # Ctrl-C or the app closing: the turn ends, on record
            relay.cancel()
            if watcher:
                await watcher.cancel()
            ended = TurnEnded(turn_id, persona.name, text, tokens, "cancelled", None, "interrupted")
            await asyncio.shield(self._emit(ended))
            raise
        except Exception as exc:  # the pool's busy / never-fits errors end this turn only
            status, detail = "error", str(exc)
            # E_POOL_BUSY, E_NEVER_FITS, E_MODEL_FILE, E_SERVER_DOWN...; else named after it
            code = exc.code if isinstance(exc, HermesError) else f"E_{type(exc).__name__.upper()}"
        finally:
            relay.cancel()
        if stop.is_set() and status == "done":
            user_cancelled = cancel is not None and cancel.is_set()
            status = "cancelled" if user_cancelled else "halted"
        decision: Outcome | None = None
        if watcher and status in ("error", "cancelled"):
            # No answer came, or the user cut it off: nothing to correct or halt.
            await watcher.cancel()
        elif watcher:
            # An answer that stopped at max_tokens ends mid-word: that word is not judged. The
            # pool says so; counting pieces is not enough (a multi-token character, CJK or an
            # emoji, arrives as one piece: 24 tokens of Japanese came in 13 pieces), and too
            # much (a stop string on the last allowed token ends a finished answer).
            cut_off = status == "done" and info.finish_reason == "length"
            decision = await watcher.finish(corrections, cut_off=cut_off)
            if status == "halted" and decision.action != "halt":
                decision = _Halted(decision)  # the stream was stopped: a halt whatever it said
            if decision.action == "halt":
                status, code = "halted", decision.code
            if decision.escalated is not None:
                await on_verdict(decision.escalated)
        await self._emit(TurnEnded(turn_id, persona.name, text, tokens, status, code, detail))
        result = TurnResult(persona.name, text, tokens, status, code, verdicts=verdicts)
        return result, decision


@dataclass(frozen=True)
class _Halted:
    """A decision turned into a halt (the stream had already been stopped)."""

    of: Outcome
    action: str = "halt"

    @property
    def code(self) -> str | None:
        return self.of.code

    @property
    def correction(self) -> str | None:
        return None

    @property
    def escalated(self) -> VerdictLike | None:
        return self.of.escalated


@dataclass(frozen=True)
class SentinelDown:
    """The verdict a turn carries when its sentinel could not be built (a missing package, a
    bad setting): the turn still runs, unchecked, and the record says so."""

    detail: str
    check: str = "sentinel"
    severity: str = "minor"
    code: str = "E_SENTINEL_DOWN"
    span: tuple[int, int] = (0, 0)


async def _relay(
    cancel: asyncio.Event | None, watcher: Watcher | None, stop: asyncio.Event
) -> None:
    """Stop generation when the user cancels or the watcher raises a critical verdict."""
    waits = []
    if cancel is not None:
        waits.append(asyncio.ensure_future(cancel.wait()))
    if watcher is not None:
        waits.append(asyncio.ensure_future(watcher.halt.wait()))
    if not waits:
        return
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        stop.set()
    finally:
        for w in waits:
            w.cancel()
