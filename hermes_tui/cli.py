"""The ``hermes`` command: chat (default), batch, log, review, plan, doctor, web, serve.

Every expected failure is one line on stderr and an exit code (2 usage/config, 3 runtime);
never a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from hermes_tui import outbound
from hermes_tui.batch import (
    EXIT_RUNTIME,
    EXIT_USAGE,
    ScriptError,
    check_personas,
    parse_script,
    run_batch,
)
from hermes_tui.config import Config, ConfigError
from hermes_tui.config import load_config as _load_config
from hermes_tui.errors import Fail
from hermes_tui.terminal_text import show_controls
from sentinel.registry import CHECK_NAMES
from sentinel.verdict import SEVERITIES


def load_config(path: str | None) -> Config:
    """The config, and what leaves the process follows its ``redact_secrets``."""
    config = _load_config(path)
    outbound.set_redaction(config.redact_secrets)
    return config


def _fail(message: str, status: int) -> NoReturn:
    """The one line on stderr, and the exit: a file name, config value or persona quoted in
    it shows its control characters written out (``\\x1b``), so a name cannot retitle the
    terminal or hide the line."""
    click.echo(f"hermes: {show_controls(message)}", err=True)
    sys.exit(status)


def friendly(fn):
    """Turn the errors users can cause into one line + exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from hermes_tui.store import StoreError

        try:
            return fn(*args, **kwargs)
        except (ConfigError, ScriptError) as exc:
            _fail(str(exc), EXIT_USAGE)
        except StoreError as exc:
            _fail(str(exc), EXIT_RUNTIME)
        except Fail as exc:
            _fail(str(exc), exc.exit_status)
        except KeyboardInterrupt:
            _fail("interrupted", 130)
        except BrokenPipeError:  # `hermes batch ... | head`: the reader left; leave quietly
            with contextlib.suppress(OSError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(141)
        except Exception as exc:  # the last safety net: one line, not a traceback
            if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO):
                where = f" {exc.filename}" if exc.filename else ""
                _fail(f"cannot write{where}: {exc.strerror}", EXIT_RUNTIME)
            if os.environ.get("HERMES_DEBUG"):
                raise
            _fail(
                f"internal error: {type(exc).__name__}: {exc} "
                "(set HERMES_DEBUG=1 to see the traceback)",
                EXIT_RUNTIME,
            )

    return wrapper


def _inherit(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """An option given before the command counts for it too: `hermes --db x.db log` reads
    x.db, as `hermes log --db x.db` does (the nearest one given wins)."""
    while value is None and ctx.parent is not None:
        ctx = ctx.parent
        value = ctx.params.get(param.name or "")
    return value


config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    default=None,
    callback=_inherit,
    help="config.toml to use (default: $HERMES_CONFIG, ./config.toml, user config, packaged).",
)
db_option = click.option(
    "--db",
    "db_path",
    type=click.Path(dir_okay=False),
    default=None,
    callback=_inherit,
    help="SQLite database file.",
)


def _use_server(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """--server URL (or 'off') reaches Runtime.start (see ``server.client.locate``)."""
    if value:
        from hermes_tui.server import client

        client.CLI_SERVER = value
    return value


server_option = click.option(
    "--server",
    default=None,
    metavar="URL",
    expose_value=False,
    callback=_use_server,
    help="hermes serve to use: unix:/path or http://host:port ('off': in-process). "
    "Default: $HERMES_SERVER, [server] url, else the default socket if a server runs.",
)


def _db(config_path: str | None, db_path: str | None, need_config: bool = False) -> Path:
    from hermes_tui.store import default_db_path

    if db_path:
        return Path(db_path)
    try:
        config = load_config(config_path)
    except ConfigError:
        if need_config or config_path or os.environ.get("HERMES_CONFIG"):
            raise  # a config the user named must be valid; a stray ./config.toml need not be
        return default_db_path()
    return config.db_path or default_db_path()


class OneLineErrors(click.Group):
    """The ``hermes`` group: a usage error (a missing argument, a bad option value, an unknown
    command) is one line, ``hermes: <what is wrong> (see <command> --help)``, exit 2, in place
    of click's usage block; what it quotes shows its control characters written out."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        if not kwargs.get("standalone_mode", True):
            return super().main(*args, **kwargs)
        kwargs["standalone_mode"] = False
        try:
            rv = super().main(*args, **kwargs)
        except click.exceptions.NoArgsIsHelpError as exc:  # `hermes sentinel`: its help
            exc.show()
            sys.exit(exc.exit_code)
        except click.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx is not None else "hermes"
            _fail(f"{exc.format_message()} (see {where} --help)", exc.exit_code)
        except click.ClickException as exc:
            _fail(exc.format_message(), exc.exit_code)
        except click.Abort:
            _fail("aborted", 1)
        sys.exit(rv if isinstance(rv, int) else 0)  # an int: --help's or --version's exit


@click.group(
    cls=OneLineErrors,
    invoke_without_command=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@config_option
@db_option
@click.version_option(package_name="hermes-tui")
@click.pass_context
def main(ctx: click.Context, config_path: str | None, db_path: str | None) -> None:
    """hermes: three LLM personas on your own hardware, watched by a sentinel.

    With no command, opens the chat.
    """
    # The store logs a failed background write and raises it again at the next flush, where
    # the command says it once ("cannot write database ..."): without a handler, Python's
    # last-resort one printed each of them on stderr too (a full disk repeated it 8 times).
    logging.getLogger("hermes_tui.store").addHandler(logging.NullHandler())
    if ctx.invoked_subcommand is None:
        ctx.invoke(chat, config_path=config_path, db_path=db_path)


@main.command()
@config_option
@db_option
@click.option("--continue", "-c", "cont", is_flag=True, help="Continue the latest session.")
@click.option(
    "--resume",
    type=click.IntRange(1, 2**63 - 1),
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
    if (why := needs_terminal()) is not None:
        raise Fail(why, EXIT_USAGE)
    db = Path(db_path) if db_path else None
    session = None
    if cont or resume is not None:
        session = asyncio.run(_session_to_continue(db or _db(config_path, None), resume))
    run_chat(config, db, resume=session)


async def _session_to_continue(db: Path, resume: int | None) -> int:
    """The session ``--continue`` / ``--resume ID`` means, checked before anything starts."""
    from hermes_tui.resume import ResumeError, latest
    from hermes_tui.store import Store

    if not db.exists():
        raise Fail(f"no session to continue: {db} does not exist", EXIT_USAGE)
    store = await Store.open(db, readonly=True)
    try:
        if resume is None:
            return await latest(store)
        if await store.get_session(resume) is None:
            raise ResumeError(f"no session {resume} in {db} (`hermes log` lists them)")
        return resume
    except ResumeError as exc:
        raise Fail(str(exc), EXIT_USAGE) from None
    finally:
        await store.close()


@main.command()
@click.argument("script", type=click.Path(dir_okay=False, path_type=Path))
@config_option
@db_option
@click.option("--out", default="-", help="Where JSONL events go (default: stdout).")
@click.option("--seed", type=int, default=None, help="Sampling seed, for repeatable runs.")
@click.option("--no-judge", is_flag=True, help="Run the deterministic checks only.")
@click.option(
    "--resume",
    type=click.IntRange(1, 2**63 - 1),
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
    parsed = parse_script(script)
    check_personas(parsed, config, script)
    if out != "-" and Path(out).resolve() == script.resolve():
        raise Fail(f"--out {out} is the script itself; write the events somewhere else", 2)
    if resume is not None:
        asyncio.run(
            _session_to_continue(Path(db_path) if db_path else _db(config_path, None), resume)
        )
    try:
        code = asyncio.run(run_batch(config, parsed, db_path, out, seed, not no_judge, resume))
    except asyncio.CancelledError:  # SIGTERM (see _run_batch): the turn ended as cancelled
        click.echo("hermes: terminated", err=True)
        sys.exit(143)
    sys.exit(code)


@main.group(invoke_without_command=True)
@config_option
@db_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=50,
    show_default=True,
    help="How many sessions to list.",
)
@click.option("--persona", default=None, help="Sessions in which this persona wrote.")
@click.option("--code", default=None, metavar="E_CODE", help="Sessions with this verdict code.")
@click.option(
    "--check",
    type=click.Choice(CHECK_NAMES),
    default=None,
    help="Sessions with a verdict from this check.",
)
@click.option("--severity", type=click.Choice(SEVERITIES), default=None)
@click.option("--since", type=click.DateTime(["%Y-%m-%d"]), default=None, help="From this day.")
@click.option("--until", type=click.DateTime(["%Y-%m-%d"]), default=None, help="To this day.")
@click.option(
    "--mode",
    type=click.Choice(["chat", "batch", "api"]),
    default=None,
    help="One kind of session (api: requests to hermes serve).",
)
@click.pass_context
@friendly
def log(ctx, config_path, db_path, as_json: bool, limit: int, **filters: Any) -> None:
    """List past sessions (newest first), filtered like the review screen; `hermes log show
    ID` prints one, `hermes log search TEXT` searches them."""
    ctx.ensure_object(dict)
    ctx.obj["db"] = _db(config_path, db_path)
    if ctx.invoked_subcommand is not None:
        return
    from hermes_tui import log_view

    chosen = {k: v for k, v in filters.items() if v is not None}
    click.echo(asyncio.run(log_view.sessions(ctx.obj["db"], as_json, limit, chosen)), nl=False)


def _sub_db(ctx: click.Context, config_path: str | None, db_path: str | None) -> Path:
    """`hermes log show 3 --db x.db` and `hermes log --db x.db show 3` both work."""
    if db_path or config_path:
        return _db(config_path, db_path)
    return ctx.obj["db"]


@log.command("show")
@click.argument("session_id", type=click.IntRange(1, 2**63 - 1))
@config_option
@db_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--hidden", is_flag=True, help="Include hidden correction turns.")
@click.pass_context
@friendly
def log_show(ctx, session_id: int, config_path, db_path, as_json: bool, hidden: bool) -> None:
    """Print one session's transcript with its verdicts."""
    from hermes_tui import log_view

    db = _sub_db(ctx, config_path, db_path)
    click.echo(asyncio.run(log_view.show(db, session_id, as_json, hidden)), nl=False)


@log.command("search")
@click.argument("query")
@config_option
@db_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option(
    "--limit", type=click.IntRange(min=1), default=50, show_default=True, help="How many matches."
)
@click.pass_context
@friendly
def log_search(ctx, query: str, config_path, db_path, as_json: bool, limit: int) -> None:
    """Full-text search over messages and verdict details (the last word is a prefix)."""
    from hermes_tui import log_view

    db = _sub_db(ctx, config_path, db_path)
    click.echo(asyncio.run(log_view.search(db, query, as_json, limit)), nl=False)


@main.command()
@config_option
@db_option
@friendly
def review(config_path: str | None, db_path: str | None) -> None:
    """Review past sessions: filter by verdict, search, export."""
    from hermes_tui.app import needs_terminal, run_review

    if (why := needs_terminal()) is not None:
        raise Fail(why, EXIT_USAGE)

    run_review(_db(config_path, db_path))


@main.command()
@click.argument("model")
@config_option
@click.option(
    "--device",
    "devices",
    multiple=True,
    metavar="NAME=SIZE",
    help="A GPU and its memory budget, e.g. cuda:0=8GiB (repeat for each card).",
)
@click.option("--ram", default=None, metavar="SIZE", help="CPU memory budget (default: free RAM).")
@click.option(
    "--n-ctx",
    type=int,
    default=None,
    help="Context length to plan for (default: the config model's, else 4096).",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@friendly
def plan(model, config_path, devices, ram, n_ctx: int | None, as_json: bool) -> None:
    """Plan how MODEL (a GGUF path or a model name from the config) splits across devices.

    Exit code 1 when the model cannot fit even with CPU offload.
    """
    from hermes_tui import plan_view

    text, fits = plan_view.render(model, config_path, devices, ram, n_ctx, as_json)
    click.echo(text if as_json else show_controls(text), nl=False)
    sys.exit(0 if fits else 1)


@main.command()
@config_option
@db_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@friendly
def doctor(config_path: str | None, db_path: str | None, as_json: bool) -> None:
    """Check the llama.cpp build, models, devices, config and database."""
    from hermes_tui import doctor as doc

    report = doc.collect(config_path, db_path)
    click.echo(json.dumps(report, indent=2) if as_json else show_controls(doc.render(report)))
    sys.exit(0 if report["ok"] else 1)


@main.group()
def sentinel() -> None:
    """The sentinel's checks, outside a chat."""


MAX_CHECK_BYTES = 16 * 2**20  # saved text to check: /dev/zero or a runaway pipe stop here


@sentinel.command("check")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@click.option(
    "--persona",
    default=None,
    metavar="NAME",
    help="Check against this persona's contract too (its JSON schema, code rules, word limit, "
    "system prompt). Without it, only the checks that need no persona's contract run.",
)
@config_option
@click.option("--json", "as_json", is_flag=True, help="One JSON verdict per line.")
@click.option(
    "--canary",
    "canaries",
    multiple=True,
    help="A marker from the system prompt; seeing it is a prompt leak (repeatable).",
)
@friendly
def sentinel_check(
    file, persona: str | None, config_path: str | None, as_json: bool, canaries: tuple[str, ...]
) -> None:
    """Run the sentinel's checks on saved text (FILE, or - for stdin) as if it streamed.

    Without --persona: unsafe_commands, secrets, loops, patterns and the other checks that
    need no persona's contract; with it, that persona's contract as well.
    Exit 0 when no verdict is critical, 1 otherwise, 2 on usage errors.
    """
    from hermes_tui.readfile import InputFileError, read_limited
    from hermes_tui.sentinel_check import check_text, render, scope

    config = load_config(config_path)
    name = "stdin" if file == "-" else file
    try:
        if file == "-":
            raw = sys.stdin.buffer.read(MAX_CHECK_BYTES + 1)
            if len(raw) > MAX_CHECK_BYTES:
                raise InputFileError(f"is larger than {MAX_CHECK_BYTES // 2**20} MiB")
        else:
            raw = read_limited(file, MAX_CHECK_BYTES)
        text = raw.decode("utf-8")
    except InputFileError as exc:
        raise Fail(f"{name}: {exc}", 2) from None
    except UnicodeDecodeError:
        raise Fail(f"{name}: expected UTF-8 text, found invalid bytes", 2) from None
    verdicts = asyncio.run(check_text(config, persona, text, canaries=tuple(canaries)))
    click.echo(render(verdicts, text, as_json, scope(config, persona)), nl=False)
    sys.exit(1 if any(v.severity == "critical" for v in verdicts) else 0)


@main.command()
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

    load_config(config_path)  # fail early, in this terminal, on a bad config
    web_server.serve(host, port, config_path, db_path, max_sessions, new_token)


def _add_serve() -> None:
    from hermes_tui.server.command import serve_command

    main.add_command(serve_command)  # `hermes serve`: the machine-wide pool (hermes_tui/server)


_add_serve()

if __name__ == "__main__":
    main()
