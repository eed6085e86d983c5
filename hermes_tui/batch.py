"""Batch mode: run a scripted session headless and write JSONL events.

A script is TOML (``title``, ``workflow``, ``[[turn]] to = ..., text = ...``) or JSONL (one
``{"to": ..., "text": ...}`` per line). Exit codes: 0 done, 1 a critical verdict or halt,
2 usage or config error, 3 runtime failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import click

from agents.errors import HermesError
from agents.events import Event, TurnEnded, TurnStarted, VerdictRaised
from agents.session import UnknownPersonaError, parse_mentions
from hermes_tui.config import Config, tomllib
from hermes_tui.errors import Fail
from hermes_tui.outbound import dumps
from hermes_tui.readfile import InputFileError, read_limited
from hermes_tui.terminal_text import show_controls

EXIT_OK, EXIT_CRITICAL, EXIT_USAGE, EXIT_RUNTIME = 0, 1, 2, 3
MAX_SCRIPT_BYTES = 10 * 2**20


class ScriptError(HermesError):
    """A batch script problem, phrased as one line (exit 2)."""

    code = "E_SCRIPT"
    exit_status = 2


@dataclass(frozen=True)
class Turn:
    to: list[str]  # persona names, or ["all"]
    text: str


@dataclass(frozen=True)
class Script:
    title: str
    workflow: str | None
    turns: list[Turn]


def _turn(where: str, item: Any) -> Turn:
    if not isinstance(item, dict):
        raise ScriptError(f"{where}: expected a table with 'to' and 'text'")
    unknown = set(item) - {"to", "text"}
    if unknown:
        raise ScriptError(f"{where}: unknown key {sorted(unknown)[0]!r} (expected 'to', 'text')")
    text = item.get("text")
    if not isinstance(text, str) or not text.strip():
        raise ScriptError(f"{where}.text: expected a non-empty string")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ScriptError(f"{where}.text: invalid Unicode (a lone surrogate)") from None
    to = item.get("to", [])
    if isinstance(to, str):
        to = [to]
    if not isinstance(to, list) or not all(isinstance(t, str) and t for t in to):
        raise ScriptError(f'{where}.to: expected a persona name, a list of names, or "all"')
    if "to" in item and not to:  # an empty list would quietly go to the default persona
        raise ScriptError(
            f'{where}.to: empty list (name a persona, a list of them, or "all"; '
            "leave 'to' out for the default persona)"
        )
    return Turn(to=to, text=text)


def parse_script(path: Path) -> Script:
    """Read and check a batch script; raise ScriptError with one line on any problem."""
    try:
        raw = read_limited(path, MAX_SCRIPT_BYTES)
    except InputFileError as exc:
        raise ScriptError(f"{path}: script {exc}") from None
    except OSError as exc:
        raise ScriptError(f"{path}: cannot read script: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ScriptError(f"{path}: expected UTF-8 text, found invalid bytes") from None
    if path.suffix in (".jsonl", ".json", ".ndjson"):
        turns = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ScriptError(f"{path}: line {n}: invalid JSON: {exc.msg}") from None
            except RecursionError:
                raise ScriptError(f"{path}: line {n}: invalid JSON: nested too deeply") from None
            turns.append(_turn(f"{path}: line {n}", item))
        title, workflow = path.stem, None
    else:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ScriptError(f"{path}: invalid TOML: {exc}") from None
        except RecursionError:
            raise ScriptError(f"{path}: invalid TOML: nested too deeply") from None
        unknown = set(data) - {"title", "workflow", "turn"}
        if unknown:
            name = sorted(unknown)[0]
            raise ScriptError(f"{path}: {name}: unknown key (expected title, workflow, turn)")
        title = data.get("title", path.stem)
        if not isinstance(title, str):
            raise ScriptError(f"{path}: title: expected a string")
        workflow = data.get("workflow")
        if workflow not in (None, "pipeline", "parallel"):
            raise ScriptError(f'{path}: workflow: expected "pipeline" or "parallel"')
        items = data.get("turn", [])
        if not isinstance(items, list):
            raise ScriptError(f"{path}: turn: expected [[turn]] tables")
        # Turns are counted from 1, as people count them (and as JSONL scripts count lines).
        turns = [_turn(f"{path}: turn {i}", item) for i, item in enumerate(items, start=1)]
    if not turns:
        raise ScriptError(f"{path}: no turns (expected at least one [[turn]] or JSON line)")
    return Script(title=title, workflow=workflow, turns=turns)


def check_personas(script: Script, config: Config, path: Path) -> None:
    """Every persona a turn reaches exists, in ``to`` and in @mentions inside its text."""
    known = list(config.personas)
    for i, turn in enumerate(script.turns, start=1):
        for name in turn.to:
            if name != "all" and name not in config.personas:
                raise ScriptError(
                    f"{path}: turn {i}.to: unknown persona {name!r} "
                    f"(expected one of: {', '.join(known)}, all)"
                )
        try:
            parse_mentions(as_message(turn), known, config.default_persona)
        except UnknownPersonaError as exc:
            raise ScriptError(f"{path}: turn {i}.text: {exc}") from None


def as_message(turn: Turn) -> str:
    return " ".join(f"@{t}" for t in turn.to) + " " + turn.text


class JsonlWriter:
    """Writes batch events as JSON lines, flushed each line (a crash keeps what was written)."""

    def __init__(self, out: IO[str], session_id: int) -> None:
        self.out = out
        self.session_id = session_id
        self.critical = False
        self.failed = False
        self.first_error = ""
        self.progress = sys.stderr.isatty()
        self._corrections: set[int] = set()  # turns that answer a hidden correction request
        self.script_turn = 0  # the script's turn being run (from 1); set by the runner
        self.script_turns = 0
        self._verdicts: dict[int, list[str]] = {}  # event turn -> codes, for progress lines

    def write(self, record: dict) -> None:
        self.out.write(dumps(record) + "\n")  # secrets hidden, controls escaped
        self.out.flush()

    async def __call__(self, event: Event) -> None:
        if isinstance(event, TurnStarted):
            if event.hidden:
                self._corrections.add(event.turn_id)
            if self.progress:
                kind = "correction for" if event.hidden else "turn:"
                print(f"… {self._where()}{kind} {event.persona}", file=sys.stderr, flush=True)
        elif isinstance(event, VerdictRaised):
            v = event.verdict
            self.critical |= v.severity == "critical"
            self._verdicts.setdefault(event.turn_id, []).append(v.code)
            self.write(
                {
                    "event": "verdict",
                    "session": self.session_id,
                    "turn": event.turn_id,  # the message event with this turn is its message
                    "script_turn": self.script_turn,
                    "persona": event.persona,
                    **v.as_dict(),
                }
            )
        elif isinstance(event, TurnEnded):
            self.critical |= event.status == "halted"
            if event.status == "error" and not self.failed:
                self.failed = True
                detail = " ".join((event.detail or event.code or "failed").split())
                self.first_error = f"{event.persona}: {detail}"
            record = {
                "event": "message",
                "session": self.session_id,
                "turn": event.turn_id,
                "script_turn": self.script_turn,
                "persona": event.persona,
                "text": event.text,
                "tokens": event.tokens,
                "status": event.status,
                "correction": event.turn_id in self._corrections,
            }
            if event.code:
                record["code"] = event.code
            if event.detail:
                record["detail"] = event.detail
            self.write(record)
            if self.progress:
                print(self._outcome(event), file=sys.stderr, flush=True)

    def _where(self) -> str:
        return f"[{self.script_turn}/{self.script_turns}] " if self.script_turns else ""

    def _outcome(self, event: TurnEnded) -> str:
        """One progress line per message: how it ended and what the sentinel found."""
        icon = {"done": "✓", "halted": "✖", "error": "✗", "cancelled": "⊘"}.get(event.status, "·")
        line = f"{icon} {self._where()}{event.persona} {event.status}, {event.tokens} tok"
        if event.code:
            line += f" ({event.code})"
        codes = self._verdicts.pop(event.turn_id, [])
        if codes:
            counts = {c: codes.count(c) for c in dict.fromkeys(codes)}
            line += "; " + ", ".join(f"{c}×{n}" if n > 1 else c for c, n in counts.items())
        if event.turn_id in self._corrections:
            line += " (after a correction)"
        return line


# ---- the run ------------------------------------------------------------------------------


def open_out(out: str) -> IO[str]:
    """Open --out for writing without truncating it yet (see ``run_batch``).

    A new file is created 0600 (its text is as private as the database); a pipe, a FIFO,
    /dev/null or /dev/stdout is written as it is (a FIFO waits here for its reader, before
    anything is created in the database)."""
    if out == "-":
        return sys.stdout
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise Fail(f"--out {out}: cannot write there ({exc.strerror})", 2) from None
    return os.fdopen(fd, "w", encoding="utf-8")


def _empty_if_file(out: IO[str]) -> None:
    """Empty a regular file (an earlier run's events); anything else cannot be truncated."""
    if out is sys.stdout:
        return
    if stat.S_ISREG(os.fstat(out.fileno()).st_mode):
        out.truncate(0)


async def run_batch(
    config: Config,
    script: Script,
    db_path: str | os.PathLike[str] | None,
    out: str,
    seed: int | None,
    judge: bool,
    resume: int | None = None,
) -> int:
    """``hermes batch``: run ``script``'s turns headless, JSONL events to ``out``; the exit code."""
    from hermes_tui.runtime import Runtime

    # SIGTERM ends a batch run like Ctrl-C does (asyncio.run turns SIGINT into this itself):
    # the running turn is cancelled and recorded as such, and the database is closed cleanly.
    with contextlib.suppress(NotImplementedError, RuntimeError):
        main_task = asyncio.current_task()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    # Opened before hermes starts (an unwritable --out leaves no empty session behind) but
    # emptied only once it has: a bad database must not destroy an earlier run's events.
    writer = JsonlWriter(open_out(out), 0)
    try:
        runtime = await Runtime.start(
            config,
            db_path=Path(db_path) if db_path else None,
            mode="batch",
            title=script.title,
            listener=writer,
            judge=judge,
            seed=seed,
            resume=resume,
        )
        try:
            _empty_if_file(writer.out)
            return await _run_turns(runtime, writer, script, config)
        finally:
            await runtime.close()
    finally:
        if writer.out is not sys.stdout:
            writer.out.close()


async def _run_turns(runtime: Any, writer: JsonlWriter, script: Script, config: Config) -> int:
    if runtime.judge_start is not None:  # a batch run waits for its judge (chat does not)
        await asyncio.wait([runtime.judge_start], timeout=120)
        if runtime.judge.start_error:
            click.echo(
                f"hermes: warning: {runtime.judge.start_error}; the judge is off, "
                "the other checks still run",
                err=True,
            )
    await runtime.prepare(as_message(script.turns[0]))  # before the session is stored
    await runtime.ensure_session(script.turns[0].text)
    writer.session_id = runtime.session_id
    writer.write(
        {
            "event": "session",
            "session": runtime.session_id,
            "resumed": runtime.restored is not None,
            "title": runtime.title,
            "workflow": script.workflow or config.workflow,
            "db": str(runtime.store.path),
            "config": str(config.path),
        }
    )
    writer.script_turns = len(script.turns)
    for n, turn in enumerate(script.turns, start=1):
        writer.script_turn = n
        await runtime.send(as_message(turn), workflow=script.workflow)
    if writer.failed:
        click.echo(f"hermes: {show_controls(writer.first_error)}", err=True)
        return EXIT_RUNTIME
    return EXIT_CRITICAL if writer.critical else EXIT_OK
