"""Continue a stored session: each persona's chat history rebuilt from the database.

``restore(store, session_id, personas)`` reads a session's transcript (hidden correction turns
included) and returns what a running session needs to go on where it stopped: every persona's
history in the order the live session built it, the workflow the session was using, the
personas the last message addressed and those that actually answered. It takes only a store
and names, so the chat, batch and a server process can all use it.

How the live session built each history (``agents.session.Session``): a user message is sent to
each addressed persona (mentions removed); in a pipeline each later persona also got the earlier
answers of that turn ("The architect answered: ..."); a hidden correction request is a user
message of the persona it went to, and its answer follows. The workflow is not stored: a
multi-persona turn whose answers ran one after another was a pipeline, overlapping ones were
parallel.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from agents.errors import HermesError

_MENTION = re.compile(r"(?<![\w@])@([A-Za-z_][\w-]*)")

Message = dict[str, str]


class ResumeError(HermesError):
    """The session to continue does not exist (or has nothing in it)."""


@dataclass
class Restored:
    """A stored session, ready to be continued."""

    session_id: int
    title: str
    messages: list[Any]  # the store's MessageRows in order, hidden ones included
    histories: dict[str, list[Message]]  # persona -> user/assistant messages (no system prompt)
    workflow: str | None = None  # "pipeline" | "parallel" | None (no multi-persona turn)
    last_targets: list[str] = field(default_factory=list)
    spoke: list[str] = field(default_factory=list)  # personas with an answer, config order
    # the session's stored names (its sessions.personas), this config's personas or not: a
    # hermes serve request names a model ("smollm2"), an older config a persona since removed
    personas: list[str] = field(default_factory=list)


def strip_mentions(text: str) -> str:
    return _MENTION.sub("", text).strip()


def rebuild(messages: list[Any], personas: list[str]) -> Restored:
    """Histories, workflow, last targets and speakers from a transcript (MessageRows)."""
    histories: dict[str, list[Message]] = {p: [] for p in personas}
    workflow: str | None = None
    last_targets: list[str] = []
    spoke: set[str] = set()
    turn: list[str] = []  # the current user message's targets
    body = ""
    answers: dict[str, Any] = {}  # target -> its latest answer (row) in this user turn
    opened: set[str] = set()  # targets whose first answer of this turn was seen
    for m in messages:
        if m.role == "user":
            turn = [p for p in m.persona.split(",") if p in histories]
            last_targets = turn
            body = strip_mentions(m.content)
            answers, opened = {}, set()
            continue
        if m.persona not in histories:
            continue
        history = histories[m.persona]
        if m.role == "sentinel":  # a hidden correction request, sent as the persona's user turn
            history.append({"role": "user", "content": m.content})
            continue
        if m.role != "assistant":
            continue
        if m.persona in turn and m.persona not in opened:
            opened.add(m.persona)
            earlier = [a for p, a in answers.items() if p != m.persona and a.finished is not None]
            before = [a for a in earlier if a.finished <= m.started]
            if answers:
                flow = "pipeline" if len(before) == len(answers) else "parallel"
                workflow = workflow if workflow == "parallel" else flow
            prompt = body
            if before and len(before) == len(answers):  # a pipeline: it saw the earlier answers
                done = "\n\n".join(
                    f"The {a.persona} answered:\n{a.content}" for a in before if a.content
                )
                prompt = f"{body}\n\n{done}" if done else body
            history.append({"role": "user", "content": prompt})
        history.append({"role": "assistant", "content": m.content})
        answers[m.persona] = m
        if m.content:
            spoke.add(m.persona)
    return Restored(
        session_id=0,
        title="",
        messages=messages,
        histories=histories,
        workflow=workflow,
        last_targets=last_targets,
        spoke=[p for p in personas if p in spoke],
    )


async def restore(store: Any, session_id: int, personas: list[str]) -> Restored:
    """Read session ``session_id`` from ``store`` (a ``hermes_tui.store.Store``)."""
    session = await store.get_session(session_id)
    if session is None:
        raise ResumeError(f"no session {session_id} in {store.path}")
    messages = await store.get_transcript(session_id, include_hidden=True)
    restored = rebuild(messages, personas)
    restored.session_id = session_id
    restored.title = session.title
    restored.personas = list(session.personas)
    return restored


def busy_session(session_id: int) -> str:
    """Why session ``session_id`` cannot be continued now: another process writes to it."""
    return (
        f"session {session_id} is open in another hermes process (a chat or a batch run "
        "writing to it); wait for it to end, or start a new session"
    )


async def latest(store: Any) -> int:
    """The newest session with at least one message (``hermes chat --continue``)."""
    for row in await store.list_sessions(50):
        if row.message_count:
            return int(row.id)
    raise ResumeError(f"no session to continue in {store.path}")


def title_from(text: str, width: int = 60) -> str:
    """A session title from its first message: mentions removed, one line, clipped."""
    from hermes_tui.terminal_text import sanitize_for_terminal

    line = " ".join(sanitize_for_terminal(strip_mentions(text)).split())
    return line if len(line) <= width else line[: width - 1].rstrip() + "…"
