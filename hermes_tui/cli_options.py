"""The options the ``hermes`` commands share (--config, --db, --server) and how a command
finds its config and database from them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from hermes_tui import outbound
from hermes_tui.config import Config, ConfigError
from hermes_tui.config import load_config as _load_config


def load_config(path: str | None) -> Config:
    """The config, and what leaves the process follows its ``redact_secrets``."""
    config = _load_config(path)
    outbound.set_redaction(config.redact_secrets)
    return config


def inherit(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
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
    callback=inherit,
    help="config.toml to use (default: $HERMES_CONFIG, ./config.toml, user config, packaged).",
)


class DbPathError(click.ClickException):
    """``--db`` names a file hermes will not create: a usage error (exit 2), one line."""

    exit_code = 2


def db_path_problem(value: str) -> str | None:
    """Why ``--db VALUE`` is refused, as the line to print, or None (the check ``hermes serve
    --db`` makes too)."""
    from hermes_tui.store import missing_directory

    if not value.strip():
        return f"--db {value!r}: expected a database file path"
    if value.endswith("/") or Path(value).expanduser().is_dir():  # click misses "" and "new/"
        return f"--db {value}: names a directory, not a database file"
    problem = missing_directory(Path(value))
    return f"--db {value}: {problem}" if problem else None


def checked_db(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """--db (given here or before the command) whose directory exists: a typo used to create
    the directories it named, and every later run with the right path missed those sessions."""
    value = inherit(ctx, param, value)
    if value is not None and (problem := db_path_problem(value)) is not None:
        raise DbPathError(problem)
    return value


db_option = click.option(
    "--db",
    "db_path",
    type=click.Path(dir_okay=False),
    default=None,
    callback=checked_db,
    help="SQLite database file (its directory must exist).",
)


def use_server(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
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
    callback=use_server,
    help="hermes serve to use: unix:/path or http://host:port ('off': in-process). "
    "Default: $HERMES_SERVER, [server] url, else the default socket if a server runs.",
)


def check_config_db(config: Config) -> None:
    """The config's ``[storage] db`` must be in a directory that exists, as ``--db`` must
    (a ConfigError, exit 2); the default location is created."""
    from hermes_tui.store import missing_directory

    if config.db_path is not None and (problem := missing_directory(config.db_path)):
        raise ConfigError(config.path, "storage.db", f"{config.db_path}: {problem}")


def db_for(config_path: str | None, db_path: str | None, need_config: bool = False) -> Path:
    from hermes_tui.store import default_db_path

    if db_path:
        return Path(db_path)
    try:
        config = load_config(config_path)
    except ConfigError:
        if need_config or config_path or os.environ.get("HERMES_CONFIG"):
            raise  # a config the user named must be valid; a stray ./config.toml need not be
        return default_db_path()
    check_config_db(config)
    return config.db_path or default_db_path()


class Utf8Text(click.ParamType):
    """Text that is UTF-8: an argument with bytes that are not (a Latin-1 terminal, a pasted
    binary) reached SQLite and the checks as lone surrogates, an internal error."""

    name = "text"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                self.fail("expected UTF-8 text, found invalid bytes", param, ctx)
        return value


TEXT = Utf8Text()

# a session id as SQLite stores it (INTEGER PRIMARY KEY): 1 .. 2**63 - 1
SESSION_ID = click.IntRange(1, 2**63 - 1)
# more than any database holds: a larger --limit means "all" (it overflowed SQLite integers)
MAX_LIMIT = 10**9


def limit_option(help: str) -> Any:
    """``--limit N`` (default 50), at most ``MAX_LIMIT``."""
    return click.option(
        "--limit",
        type=click.IntRange(min=1),
        callback=lambda ctx, param, value: min(value, MAX_LIMIT),
        default=50,
        show_default=True,
        help=help,
    )
