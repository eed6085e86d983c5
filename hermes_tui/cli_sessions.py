"""The commands that run sessions: the chat (and --continue / --resume), batch scripts, the
review screen and the chat in a browser (hermes web)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import click

from hermes_tui.batch import EXIT_USAGE, check_personas, parse_script, run_batch
from hermes_tui.cli_errors import friendly
from hermes_tui.cli_options import (
    SESSION_ID,
    check_config_db,
    config_option,
    db_for,
    db_option,
    load_config,
    server_option,
)
from hermes_tui.config import Config
from hermes_tui.errors import Fail


@click.command()
@config_option
@db_option
@click.option("--continue", "-c", "cont", is_flag=True, help="Continue the latest session.")
@click.option(
    "--resume",
    type=SESSION_ID,
    default=None,
    metavar="ID",
    help="Continue session ID (see `hermes log`).",
)
@server_option
@friendly
def chat(config_path: str | None, db_path: str | None, cont: bool, resume: int | None) -> None:
    """Open the chat screen (the default command)."""
    from hermes_tui.app import needs_terminal, run_chat

    if cont and resume is not None:
        raise Fail("--continue and --resume ID: choose one", EXIT_USAGE)
    config = load_config(config_path)  # a config mistake is named first, terminal or not
    if not db_path:
        check_config_db(config)
    if (why := needs_terminal()) is not None:
        raise Fail(why, EXIT_USAGE)
    db = Path(db_path) if db_path else None
    session = None
    if cont or resume is not None:
        session = asyncio.run(session_to_continue(db or db_for(config_path, None), resume))
    run_chat(config, db, resume=session)


async def session_to_continue(db: Path, resume: int | None) -> int:
    """The session ``--continue`` / ``--resume ID`` means, checked before anything starts."""
    from hermes_tui.resume import ResumeError, busy_session, latest
    from hermes_tui.store import Store
    from hermes_tui.store.files import SessionClaims

    if not db.exists():
        raise Fail(f"no session to continue: {db} does not exist", EXIT_USAGE)
    store = await Store.open(db, readonly=True)
    try:
        if resume is None:
            resume = await latest(store)
        elif await store.get_session(resume) is None:
            raise ResumeError(f"no session {resume} in {db} (`hermes log` lists them)")
        if SessionClaims.claimed(db, resume):
            raise ResumeError(busy_session(resume))
        return resume
    except ResumeError as exc:
        raise Fail(str(exc), EXIT_USAGE) from None
    finally:
        await store.close()


@click.command()
@click.argument("script", type=click.Path(dir_okay=False, path_type=Path))
@config_option
@db_option
@click.option("--out", default="-", help="Where JSONL events go (default: stdout).")
@click.option(
    "--seed",
    type=click.IntRange(0, 2**32 - 2),  # 2**32 - 1 is llama.cpp's "draw one from the clock"
    default=None,
    help="Sampling seed, for repeatable runs (0..4294967294; omit it for a random one).",
)
@click.option("--no-judge", is_flag=True, help="Run the deterministic checks only.")
@click.option(
    "--resume",
    type=SESSION_ID,
    default=None,
    metavar="ID",
    help="Append the script's turns to session ID (its histories restored).",
)
@server_option
@friendly
def batch(
    script: Path,
    config_path: str | None,
    db_path: str | None,
    out: str,
    seed: int | None,
    no_judge: bool,
    resume: int | None,
) -> None:
    """Run a scripted session headless (TOML or JSONL SCRIPT); events as JSONL.

    Exit codes: 0 done, 1 a critical verdict occurred, 2 usage or config error,
    3 runtime failure.
    """
    config = load_config(config_path)
    if not db_path:
        check_config_db(config)
    parsed = parse_script(script)
    check_personas(parsed, config, script)
    if out != "-":
        _refuse_out_over_inputs(Path(out), script, Path(db_path) if db_path else None, config)
    if resume is not None:
        asyncio.run(
            session_to_continue(Path(db_path) if db_path else db_for(config_path, None), resume)
        )
    from hermes_tui.resume import ResumeError

    try:
        code = asyncio.run(run_batch(config, parsed, db_path, out, seed, not no_judge, resume))
    except ResumeError as exc:  # another process took the session since the check above
        raise Fail(str(exc), EXIT_USAGE) from None
    except asyncio.CancelledError:  # SIGTERM (see _run_batch): the turn ended as cancelled
        click.echo("hermes: terminated", err=True)
        sys.exit(143)
    sys.exit(code)


def _same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` are one file (a symlink or hard link too), or would be."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


def _refuse_out_over_inputs(out: Path, script: Path, db: Path | None, config: Config) -> None:
    """--out is emptied before the events are written: never the script, the database (its
    journal files) or the config. `--out x.db --db x.db` emptied the database."""
    from hermes_tui.store import default_db_path

    db = db or config.db_path or default_db_path()
    named = [(script, "the script itself"), (db, f"the database {db}")]
    named += [(Path(f"{db}{tail}"), f"the database's {tail[1:]} file") for tail in _DB_FILES]
    if config.path is not None:
        named.append((Path(config.path), "the config file"))
    for path, what in named:
        if _same_file(out, path):
            raise Fail(f"--out {out} is {what}; write the events somewhere else", EXIT_USAGE)


_DB_FILES = ("-wal", "-shm", "-journal")


@click.command()
@config_option
@db_option
@friendly
def review(config_path: str | None, db_path: str | None) -> None:
    """Review past sessions: filter by verdict, search, export."""
    from hermes_tui.app import needs_terminal, run_review

    db = db_for(config_path, db_path)  # a config mistake is named first, terminal or not
    if (why := needs_terminal()) is not None:
        raise Fail(why, EXIT_USAGE)
    run_review(db)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=8000,
    show_default=True,
    help="Port to listen on.",
)
@click.option(
    "--max-sessions",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    help="Browser sessions at once (each is a chat process).",
)
@click.option("--new-token", is_flag=True, help="Replace the stored token (old URLs stop working).")
@config_option
@db_option
@friendly
def web(
    host: str,
    port: int,
    max_sessions: int,
    new_token: bool,
    config_path: str | None,
    db_path: str | None,
) -> None:
    """Serve the chat TUI in a web browser (textual-serve), behind a secret token.

    Prints the URL to open once, with its token (kept 0600 in the user config dir). The page
    and its websocket need the token, the websocket must come from this server's own page,
    and at most --max-sessions chats run at once. Loopback only unless --host is given; any
    other address gets a loud warning: plain http, so use an SSH tunnel or an https proxy.
    """
    from hermes_tui import web as web_server

    config = load_config(config_path)  # fail early, in this terminal, on a bad config
    if not db_path:
        check_config_db(config)
    web_server.serve(host, port, config_path, db_path, max_sessions, new_token)
