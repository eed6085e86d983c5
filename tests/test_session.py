"""Routing and workflows of a session (agents/session.py), through the real pool.

Answers come from ``ReplayEngine`` recordings so the test can see exactly what each persona
was shown; one test runs the real embedded model in parallel."""

from __future__ import annotations

import asyncio

import pytest

from agents.events import TurnStarted
from agents.pool.pool import ModelPool
from agents.session import Session, UnknownPersonaError, parse_mentions
from hermes_tui.config import load_config

from .conftest import ROOT, write_small_config
from .replay import ReplayEngine, replay_config

NAMES = ["architect", "coder", "critic"]


@pytest.mark.parametrize(
    "text,targets,body",
    [
        ("hello", ["architect"], "hello"),
        ("@coder write it", ["coder"], "write it"),
        ("@critic @coder look", ["coder", "critic"], "look"),  # config order, not typing order
        ("@all go", NAMES, "go"),
        ("mail me at bob@coder.com", ["architect"], "mail me at bob@coder.com"),
        ("@coder @coder twice", ["coder"], "twice"),
    ],
)
def test_routing(text, targets, body):
    assert parse_mentions(text, NAMES, "architect") == (targets, body)


def test_unknown_mention_is_refused_with_the_known_names():
    with pytest.raises(
        UnknownPersonaError,
        match=r"unknown persona @poet \(expected one of: architect, coder, critic, all\)",
    ):
        parse_mentions("@poet hi", NAMES, "architect")


def replay_session(answers: dict[str, str], workflow: str, events: list):
    config = replay_config(load_config(ROOT / "config.toml"))
    pool = ModelPool(config.models, config.pool)
    seen: list[list[dict]] = []

    class ByPersona(ReplayEngine):
        async def stream(self, messages, params, cancel=None):
            seen.append(messages)
            system = messages[0]["content"]
            who = next(n for n in NAMES if f"You are the {n}" in system)
            for word in answers[who].split(" "):
                await asyncio.sleep(0.001)
                yield word + " "

    pool.register_engine("smollm2", ByPersona([[]]))

    async def listen(event):
        events.append(event)

    session = Session(
        config.personas, pool, default_persona="architect", workflow=workflow, listener=listen
    )
    return session, seen


async def test_pipeline_each_persona_sees_the_earlier_answers_in_order():
    answers = {"architect": "PLAN-A", "coder": "CODE-B", "critic": "REVIEW-C"}
    events: list = []
    session, seen = replay_session(answers, "pipeline", events)
    results = await session.send("@all build a counter")
    assert [r.persona for r in results] == NAMES
    assert [m[-1]["content"] for m in seen] == [
        "build a counter",
        "build a counter\n\nThe architect answered:\nPLAN-A ",
        "build a counter\n\nThe architect answered:\nPLAN-A \n\nThe coder answered:\nCODE-B ",
    ]
    starts = [e.persona for e in events if isinstance(e, TurnStarted)]
    assert starts == NAMES  # strictly one after another


async def test_parallel_personas_answer_concurrently_and_keep_their_own_history():
    answers = {"architect": "a1", "coder": "c1", "critic": "r1"}
    events: list = []
    session, seen = replay_session(answers, "parallel", events)
    await session.send("@coder @critic same question")
    # Both turns started before either ended: they ran concurrently.
    kinds = [
        (type(e).__name__, e.persona)
        for e in events
        if type(e).__name__ in ("TurnStarted", "TurnEnded")
    ]
    assert [k for k, _ in kinds[:2]] == ["TurnStarted", "TurnStarted"]
    assert all(m[-1]["content"] == "same question" for m in seen)  # nobody saw the other
    await session.send("@coder again")
    coder = session.histories["coder"]
    assert [m["role"] for m in coder] == ["system", "user", "assistant", "user", "assistant"]
    assert coder[2]["content"] == "c1 " and coder[3]["content"] == "again"
    assert len(session.histories["critic"]) == 3 and len(session.histories["architect"]) == 1


async def test_parallel_on_the_real_model(tmp_path):
    config = load_config(write_small_config(tmp_path, max_tokens=8))
    pool = ModelPool(config.models, config.pool)
    session = Session(config.personas, pool, default_persona="architect", workflow="parallel")
    results = await session.send("@all say hi")
    await pool.close()
    assert {r.persona for r in results} == set(NAMES)
    assert all(r.status == "done" and r.tokens > 0 for r in results)


async def test_an_answer_cut_at_max_tokens_is_known_cut_when_it_came_in_fewer_pieces(tmp_path):
    """A multi-token character (CJK, an emoji) reaches the session as one piece: the real
    model's 24-token greeting in Japanese came in 13 pieces. Counting pieces, the session
    thought the answer finished, and the sentinel judged its unfinished last word (a URL cut
    to "https://" is corrected as malformed). The pool's own finish reason says "length"."""
    import dataclasses

    from hermes_tui.runtime import contract_for
    from sentinel.monitor import Monitor
    from sentinel.settings import SentinelSettings

    config = load_config(write_small_config(tmp_path, max_tokens=24))
    pool = ModelPool(config.models, config.pool)
    personas = {
        "coder": dataclasses.replace(
            config.personas["coder"],
            contract="text",
            temperature=0.0,
            system_prompt="You are a helpful assistant.",
        )
    }
    told: list[bool] = []

    class Told(Monitor):
        async def finish(self, corrections_used=0, *, cut_off=False):
            told.append(cut_off)
            return await super().finish(corrections_used, cut_off=cut_off)

    def watcher(persona, on_verdict):
        contract = contract_for(persona, persona.system_prompt, None)
        return Told(contract, SentinelSettings(), on_verdict=on_verdict)

    session = Session(personas, pool, default_persona="coder", watcher_factory=watcher)
    try:
        [result] = await session.send("日本語で挨拶してください。")
    finally:
        await pool.close()
    assert result.status == "done" and result.tokens < 24  # pieces, not tokens
    assert told == [True]
