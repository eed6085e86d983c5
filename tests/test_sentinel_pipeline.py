"""The sentinel inside the real session pipeline: halts, hidden corrections, isolation.

Model output is played back by ``ReplayEngine`` (a recording, clearly not a model) because
a real 135M model cannot be made to write `rm -rf /` or break JSON at a chosen character.
Everything after the engine (pool, session, monitor, checks, decision) is the real code.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random

from agents.events import TurnStarted, VerdictRaised
from agents.pool.pool import ModelPool
from agents.session import Session
from hermes_tui.config import load_config
from hermes_tui.runtime import contract_for
from sentinel.checks.json_stream import JsonStreamCheck
from sentinel.monitor import Monitor
from sentinel.verdict import Verdict

from .conftest import ROOT
from .replay import BROKEN_JSON, FIXED_JSON, ReplayEngine, replay_config

PROSE = ["Here ", "is ", "how ", "to ", "clean ", "up", ":\n", "```sh\n", "rm ", "-rf ", "/", "\n"]
PROSE += ["```\n"] + [f"word{i} " for i in range(200)]


def make_session(recordings, *, settings=None, tokens_per_s=None, events=None):
    config = replay_config(load_config(ROOT / "config.toml"))
    if settings:
        config = dataclasses.replace(
            config, sentinel=dataclasses.replace(config.sentinel, **settings)
        )
    pool = ModelPool(config.models, config.pool)
    engine = ReplayEngine(recordings, tokens_per_s=tokens_per_s)
    pool.register_engine("smollm2", engine)

    def watcher(persona, on_verdict):
        return Monitor(
            contract_for(persona, persona.system_prompt, "HERMES-CANARY-test"),
            config.sentinel,
            on_verdict=on_verdict,
        )

    async def listen(event):
        if events is not None:
            events.append(event)

    session = Session(
        config.personas,
        pool,
        default_persona="architect",
        watcher_factory=watcher,
        listener=listen,
    )
    return session, engine


async def test_unsafe_command_halts_the_stream_where_it_appears():
    session, _ = make_session([PROSE], tokens_per_s=400)
    [result] = await session.send("@coder how do I free disk space?")
    assert result.status == "halted"
    assert result.code == "E_UNSAFE_COMMAND"
    cut = result.text.index("rm -rf /")
    # The stream stopped within a few tokens of the command, not after 200 more words.
    assert len(result.text) - cut < 60
    assert result.corrections == 0


async def test_broken_json_gets_a_hidden_correction_and_the_fixed_answer_passes():
    events = []
    session, engine = make_session([BROKEN_JSON, FIXED_JSON], events=events)
    [result] = await session.send("@architect plan the release")
    assert engine.calls == 2
    assert result.status == "done" and result.corrections == 1
    assert result.text == "".join(FIXED_JSON)
    broken = [e.verdict for e in events if isinstance(e, VerdictRaised)]
    assert broken[0].code == "E_JSON_BROKEN"
    hidden = [e for e in events if isinstance(e, TurnStarted) and e.hidden]
    assert len(hidden) == 1 and "E_JSON_BROKEN" in hidden[0].prompt
    # The persona saw its own broken answer and the correction in its history.
    history = session.histories["architect"]
    assert history[-2]["content"] == hidden[0].prompt
    assert history[-1]["content"] == "".join(FIXED_JSON)


async def test_break_span_points_at_the_stray_brace():
    events = []
    session, _ = make_session([BROKEN_JSON, FIXED_JSON], events=events)
    await session.send("@architect plan")
    first = next(e.verdict for e in events if isinstance(e, VerdictRaised))
    stray = "".join(BROKEN_JSON).index("}}") + 1
    assert first.span == (stray, stray + 1)


async def test_corrections_run_out_then_the_turn_halts_with_a_critical_verdict():
    events = []
    session, engine = make_session([BROKEN_JSON], settings={"max_corrections": 2}, events=events)
    [result] = await session.send("@architect plan")
    assert engine.calls == 3  # the answer + two corrections
    assert result.status == "halted" and result.code == "E_JSON_BROKEN"
    assert result.corrections == 2
    # The halted (last) answer carries the problem as the critical it became, on its span.
    last_turn = max(e.turn_id for e in events if isinstance(e, VerdictRaised))
    last = [e.verdict for e in events if isinstance(e, VerdictRaised) and e.turn_id == last_turn]
    [critical] = [v for v in last if v.severity == "critical"]
    assert critical.code == "E_JSON_BROKEN" and critical.span == last[0].span
    assert critical.detail.startswith("still wrong after 2 corrections: ")
    assert sum(v.severity == "critical" for v in result.verdicts) == 1


async def test_stall_warns_then_halts():
    class Stalling(ReplayEngine):
        async def stream(self, messages, params, cancel=None):
            yield "Thinking"
            for _ in range(100):  # 5 s of silence unless halted
                if cancel is not None and cancel.is_set():
                    return
                await asyncio.sleep(0.05)
            yield " done"

    config_settings = {"stall_warn_s": 0.3, "stall_halt_s": 0.8}
    events = []
    session, _ = make_session([["x"]], settings=config_settings, events=events)
    session.pool.register_engine("smollm2", Stalling([["x"]]))
    [result] = await session.send("@coder hello")
    stalls = [e.verdict for e in events if isinstance(e, VerdictRaised)]
    assert [(v.code, v.severity) for v in stalls if v.code == "E_STALL"] == [
        ("E_STALL", "minor"),
        ("E_STALL", "critical"),
    ]
    assert result.status == "halted" and result.code == "E_STALL"
    assert result.text == "Thinking"


async def test_feed_never_blocks_and_loses_no_text():
    config = load_config(ROOT / "config.toml")
    settings = dataclasses.replace(config.sentinel, queue_size=4)
    monitor = Monitor(contract_for(config.personas["critic"], "", None), settings)
    monitor.start()
    pieces = [f"tok{i} " for i in range(5000)]
    for piece in pieces:  # no await between feeds: the producer never waits on the checks
        monitor.feed(piece)
    decision = await monitor.finish()
    assert monitor.text == "".join(pieces)
    assert monitor.stats["coalesced"] > 0
    assert decision.action in ("correct", "halt", "pass")


async def test_a_crashing_check_is_reported_not_fatal():
    class Exploding:
        name = "exploding"

        def feed(self, piece):
            raise RuntimeError("boom")

        def finish(self):
            return []

    config = load_config(ROOT / "config.toml")
    got: list[Verdict] = []
    monitor = Monitor(
        contract_for(config.personas["coder"], "", None),
        config.sentinel,
        on_verdict=got.append,
        checks=[Exploding(), JsonStreamCheck(mode="fenced")],
    )
    monitor.start()
    monitor.feed('```json\n{"a": 1}\n```\n')
    decision = await monitor.finish()
    assert got and got[0].code == "E_SENTINEL_DOWN" and "boom" in got[0].detail
    assert decision.action == "pass"  # the sentinel's own fault never blames the persona


async def test_a_turn_that_failed_gets_no_verdicts_about_its_missing_answer():
    from agents.engine import EngineError

    class Failing(ReplayEngine):
        async def stream(self, messages, params, cancel=None):
            raise EngineError("the model server went away")
            yield ""  # pragma: no cover (makes this an async generator)

    events = []
    session, _ = make_session([["x"]], events=events)
    session.pool.register_engine("smollm2", Failing([["x"]]))
    [result] = await session.send("@architect plan")  # a JSON persona: "" would be broken JSON
    assert result.status == "error" and "went away" in str(events[-1].detail)
    assert not [e for e in events if isinstance(e, VerdictRaised)]


async def test_a_turn_interrupted_by_cancellation_still_ends_on_record():
    from agents.events import TurnEnded

    events = []
    session, _ = make_session([PROSE], tokens_per_s=50, events=events)
    task = asyncio.ensure_future(session.send("@critic go on"))
    for _ in range(200):
        await asyncio.sleep(0.02)
        if any(type(e).__name__ == "TokenReceived" for e in events):
            break
    task.cancel()  # what Ctrl-C does to a batch run
    try:
        await task
    except asyncio.CancelledError:
        pass
    [ended] = [e for e in events if isinstance(e, TurnEnded)]
    assert ended.status == "cancelled" and ended.detail == "interrupted" and ended.text


async def test_a_sentinel_that_cannot_start_does_not_take_the_turn_with_it(monkeypatch):
    """A check's package missing (here email-validator, as on a machine where it failed to
    install): the answer still streams and ends, unchecked, with E_SENTINEL_DOWN saying so.
    Before, the turn started and never ended (the chat showed it streaming for ever)."""
    import sys

    monkeypatch.setitem(sys.modules, "email_validator", None)  # import raises ImportError
    events: list = []
    session, _ = make_session([["All ", "fine ", "here."]], events=events)
    [result] = await asyncio.wait_for(session.send("@coder hi"), 30)
    assert result.status == "done" and result.text == "All fine here."
    [down] = [v for v in result.verdicts if v.code == "E_SENTINEL_DOWN"]
    assert down.severity == "minor" and "email_validator" in down.detail
    assert [type(e).__name__ for e in events][-1] == "TurnEnded"


async def test_an_answer_cut_by_max_tokens_mid_url_is_not_corrected():
    """A replay: the answer's last word is an unfinished URL because the turn hit max_tokens.
    That word is not judged (no correction, no verdict); the same words ending a finished
    answer are a malformed URL."""
    cut_url = ["See ", "http://", "-x"]
    for limit, expect in ((3, []), (40, ["E_PATTERN"])):
        events = []
        session, _ = make_session([cut_url, ["See the docs."]], events=events)
        coder = session.personas["coder"]
        session.personas["coder"] = dataclasses.replace(coder, max_tokens=limit)
        [result] = await session.send("@coder where are the docs?")
        found = [e.verdict.code for e in events if isinstance(e, VerdictRaised)]
        assert found == expect, limit
        assert result.corrections == len(expect)


async def test_json_cut_by_max_tokens_is_broken_and_says_why():
    """A replay of a JSON answer that the token limit cut inside its list: still broken JSON
    (a hidden correction follows), and the verdict says the answer reached max_tokens."""
    events = []
    cut = [*BROKEN_JSON[:5], ', "owner": ', '"me"']  # the limit falls inside the object
    session, engine = make_session([cut, FIXED_JSON], events=events)
    architect = session.personas["architect"]
    session.personas["architect"] = dataclasses.replace(architect, max_tokens=len(FIXED_JSON))
    await session.send("@architect plan the release")
    [first, *_] = [e.verdict for e in events if isinstance(e, VerdictRaised)]
    assert first.code == "E_JSON_BROKEN"
    assert first.detail.endswith("(the answer reached max_tokens)")
    assert engine.calls == 2  # corrected, like any broken answer


def _one_long_line(setting: list[str], before: int, after: int) -> list[str]:
    """Word-sized tokens of a code block of one line: ``before`` characters of words,
    ``setting``, ``after`` characters more (a minified config or a pasted log line)."""
    words = (
        "the build runs each stage in order and writes its report to a shared folder where "
        "nightly jobs read what changed since yesterday then mail a short summary with counts "
        "of rows files errors warnings retries and minutes spent per host region or cluster"
    ).split()
    rng = random.Random(7)

    def run_of(n: int) -> list[str]:
        out: list[str] = []
        while sum(map(len, out)) < n:
            out.append(f" {rng.choice(words)}" if rng.random() < 0.8 else f" {rng.randint(2, 999)}")
        return out

    return ["Settings:\n", "```", "ini\n", *run_of(before), *setting, *run_of(after), "\n", "```\n"]


async def test_a_password_set_in_the_middle_of_a_very_long_line_halts_the_answer():
    """Streamed token by token through the session, as the app does: a password or an API
    key assigned after 1,800 characters of a one-line answer that runs on for 2,000 more
    halts it as E_SECRET, as on a short line. Only the last few hundred characters of a
    line used to be read for keyword assignments when it ended, so this answer ran to its
    end with the password in it and no verdict."""
    for setting, secret in (
        ([" password", " =", ' "', "Hunter", "2", "Xyz", "9q", '";'], "Hunter2Xyz9q"),
        ([" api", "_key", "=", "Zq81", "vLx0", "Rt5m", "W3kp"], "Zq81vLx0Rt5mW3kp"),
    ):
        tokens = _one_long_line(setting, 1_800, 2_000)
        events = []
        session, _ = make_session([tokens], events=events)
        coder = session.personas["coder"]
        session.personas["coder"] = dataclasses.replace(coder, max_tokens=len(tokens))
        [result] = await session.send("@coder show me the settings")
        assert result.status == "halted" and result.code == "E_SECRET", secret
        found = [e.verdict for e in events if isinstance(e, VerdictRaised)]
        [verdict] = [v for v in found if v.code == "E_SECRET"]
        assert result.text[verdict.span[0] : verdict.span[1]] == secret
        # halted within a window of the line (1,024 characters), not at its end
        assert len(result.text) - result.text.index(secret) < 1_200
        assert not result.text.endswith("```\n")


async def test_a_reference_to_a_password_in_a_very_long_line_is_not_a_secret():
    """The same long line naming where the password comes from (an environment variable),
    not the password: the answer is not halted."""
    setting = [" password", " =", " os", ".environ", '["', "DB", "_PASSWORD", '"]', ";"]
    tokens = _one_long_line(setting, 1_800, 2_000)
    session, _ = make_session([tokens])
    coder = session.personas["coder"]
    session.personas["coder"] = dataclasses.replace(coder, max_tokens=len(tokens))
    [result] = await session.send("@coder show me the settings")
    assert result.status == "done" and result.code is None
    assert result.text == "".join(tokens)
