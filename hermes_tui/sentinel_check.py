"""`hermes sentinel check`: run the sentinel's checks on saved text, as if it streamed."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random

from hermes_tui.config import Config
from hermes_tui.errors import Fail
from hermes_tui.runtime import contract_for
from hermes_tui.terminal_text import show_controls
from sentinel.contract import Contract
from sentinel.monitor import Monitor
from sentinel.verdict import Verdict


async def check_text(
    config: Config,
    persona: str | None,
    text: str,
    seed: int = 0,
    canaries: tuple[str, ...] = (),
) -> list[Verdict]:
    """Feed ``text`` in randomly sized chunks (1-8 characters, as tokens arrive) through the
    same monitor a live stream uses (no judge), and return its verdicts.

    Past the first 100,000 characters the chunks are 64-512 characters: the verdicts do not
    depend on the split, and a 5 MB file is checked in seconds rather than minutes.

    With ``persona`` None no persona's contract applies (no schema, code rules, word limit
    or system prompt): only the checks that need none (safety, secrets, loops, patterns...)."""
    contract = contract_of(config, persona)  # and the --canary markers:
    contract = dataclasses.replace(contract, canaries=contract.canaries + tuple(canaries))
    monitor = Monitor(contract, config.sentinel)
    monitor.start()
    rng = random.Random(seed)
    i = 0
    while i < len(text):
        n = rng.randint(1, 8) if i < 100_000 else rng.randint(64, 512)
        monitor.feed(text[i : i + n])
        i += n
        if i % 512 < 8:
            await asyncio.sleep(0)  # let the checks keep up, as they would on a live stream
    await monitor.finish()
    return monitor.verdicts


def contract_of(config: Config, persona: str | None) -> Contract:
    """The contract ``persona`` answers under; None: the empty one (a plain "text" answer)."""
    if persona is None:
        return Contract()
    if persona not in config.personas:
        known = ", ".join(config.personas)
        raise Fail(f"unknown persona {persona!r} (expected one of: {known})", 2)
    p = config.personas[persona]
    # As in a chat: the persona's prompt and declared canary; any hermes-planted canary is
    # recognised by its shape (its value was random).
    return contract_for(p, p.system_prompt, None)


def scope(config: Config, persona: str | None) -> str:
    """The line saying which contract the text was checked against."""
    if persona is None:
        return "contract: none (only the checks that need no persona; --persona NAME adds one's)"
    return f"contract: {persona}'s ({config.personas[persona].contract})"


def render(verdicts: list[Verdict], text: str, as_json: bool, heading: str = "") -> str:
    if as_json:
        return "".join(json.dumps(v.as_dict()) + "\n" for v in verdicts)
    lines = [heading] if heading else []
    if not verdicts:
        return "\n".join([*lines, "pass: no verdicts"]) + "\n"
    for v in verdicts:
        start, end = v.span
        quoted = text[start:end].replace("\n", "\\n")
        quoted = quoted if len(quoted) <= 40 else quoted[:37] + "..."
        if v.code == "E_SECRET":  # this output goes to terminals and CI logs: not the secret
            quoted = f"[REDACTED: {end - start} characters]"
        # the saved text is untrusted: its escapes are shown, never sent to the terminal
        quoted = show_controls(quoted)
        detail = show_controls(v.detail)
        lines.append(f"{v.severity:8} {v.code:17} {start}-{end:<6} {v.check}: {detail}")
        if quoted:
            lines.append(f"{'':8} «{quoted}»")
    return "\n".join(lines) + "\n"
