"""The ``hermes serve`` command (defined here, added to the CLI group in ``hermes_tui.cli``)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from hermes_tui.errors import Fail

EXIT_RUNTIME = 3


def _inherit(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """`hermes --db x.db serve` serves x.db, as `hermes serve --db x.db` does (and --config)."""
    from hermes_tui.cli_options import inherit

    return inherit(ctx, param, value)


@click.command("serve")
@click.option(
    "--socket",
    "socket_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Unix socket to listen on (default: serve.sock in the user runtime directory).",
)
@click.option("--host", default=None, help="Also listen on TCP at this address (token required).")
@click.option("--port", type=click.IntRange(0, 65535), default=None, help="TCP port (8642).")
@click.option("--no-auth", is_flag=True, help="TCP without a bearer token (not recommended).")
@click.option("--show-token", is_flag=True, help="Print the TCP bearer token and exit.")
@click.option("--log-prompts", is_flag=True, help="Log each request's last user message.")
@click.option("--no-judge", is_flag=True, help="Run the sentinel's deterministic checks only.")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    default=None,
    callback=_inherit,
    help="config.toml to use (default: $HERMES_CONFIG, ./config.toml, user config, packaged).",
)
@click.option(
    "--db",
    "db_path",
    type=click.Path(dir_okay=False),  # as given: "dbs/" must not become "dbs" before the check
    default=None,
    callback=_inherit,
    help="SQLite database for API requests (default: the config's).",
)
def serve_command(
    socket_path: Path | None,
    host: str | None,
    port: int | None,
    no_auth: bool,
    show_token: bool,
    log_prompts: bool,
    no_judge: bool,
    config_path: str | None,
    db_path: str | None,
) -> None:
    """Serve the model pool to every hermes process and OpenAI-compatible client (the
    OpenAI API at unix:SOCKET and, with --host/--port, http://HOST:PORT/v1).

    Listens on a Unix socket (mode 0600) in the user runtime directory; --host/--port add
    TCP (loopback unless another address is given) with a bearer token. Exit codes: 0 stopped
    by SIGINT/SIGTERM, 2 usage or config error, 3 cannot listen (e.g. already running).
    """
    try:
        _serve(
            socket_path,
            host,
            port,
            no_auth,
            show_token,
            log_prompts,
            no_judge,
            config_path,
            db_path,
        )
    except Fail as exc:
        click.echo(f"hermes: {exc}", err=True)
        sys.exit(exc.exit_status)


def _serve(
    socket_path: Path | None,
    host: str | None,
    port: int | None,
    no_auth: bool,
    show_token: bool,
    log_prompts: bool,
    no_judge: bool,
    config_path: str | None,
    db_path: str | None,
) -> None:
    from hermes_tui.cli_options import check_config_db, db_path_problem
    from hermes_tui.config import ConfigError, load_config
    from hermes_tui.server.auth import load_or_create_token, token_path
    from hermes_tui.server.listener import ListenError
    from hermes_tui.server.run import ServeOptions, serve

    if db_path is not None and (problem := db_path_problem(db_path)) is not None:
        raise Fail(problem, 2)  # the check the other commands' --db makes
    if show_token:
        token = load_or_create_token(warn=lambda note: click.echo(f"hermes: {note}", err=True))
        click.echo(token)
        click.echo(f"(stored in {token_path()})", err=True)
        return
    if no_auth and host is None and port is None:
        raise Fail("--no-auth only applies to TCP (--host/--port)", 2)
    try:
        config = load_config(config_path)
        if db_path is None:
            check_config_db(config)
    except ConfigError as exc:
        raise Fail(str(exc), 2) from None
    options = ServeOptions(
        socket_path=socket_path,
        host=host,
        port=port,
        no_auth=no_auth,
        log_prompts=log_prompts,
        judge=not no_judge,
        db_path=Path(db_path) if db_path is not None else None,
    )
    try:
        code = serve(config, options)
    except ListenError as exc:
        raise Fail(str(exc), exc.exit_status) from None
    sys.exit(code)
