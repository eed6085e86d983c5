"""``hermes log``: past sessions listed and filtered, one printed, all searched."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import click

from hermes_tui.cli_errors import friendly
from hermes_tui.cli_options import (
    SESSION_ID,
    TEXT,
    config_option,
    db_for,
    db_option,
    limit_option,
)
from sentinel.registry import CHECK_NAMES
from sentinel.verdict import SEVERITIES


@click.group(invoke_without_command=True)
@config_option
@db_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@limit_option("How many sessions to list.")
@click.option("--persona", type=TEXT, default=None, help="Sessions in which this persona wrote.")
@click.option(
    "--code", type=TEXT, default=None, metavar="E_CODE", help="Sessions with this verdict code."
)
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
    ctx.obj["db"] = db_for(config_path, db_path)
    if ctx.invoked_subcommand is not None:
        return
    from hermes_tui import log_view

    chosen = {k: v for k, v in filters.items() if v is not None}
    click.echo(asyncio.run(log_view.sessions(ctx.obj["db"], as_json, limit, chosen)), nl=False)


def sub_db(ctx: click.Context, config_path: str | None, db_path: str | None) -> Path:
    """`hermes log show 3 --db x.db` and `hermes log --db x.db show 3` both work."""
    if db_path or config_path:
        return db_for(config_path, db_path)
    return ctx.obj["db"]


@log.command("show")
@click.argument("session_id", type=SESSION_ID)
@config_option
@db_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--hidden", is_flag=True, help="Include hidden correction turns.")
@click.pass_context
@friendly
def log_show(ctx, session_id: int, config_path, db_path, as_json: bool, hidden: bool) -> None:
    """Print one session's transcript with its verdicts."""
    from hermes_tui import log_view

    db = sub_db(ctx, config_path, db_path)
    click.echo(asyncio.run(log_view.show(db, session_id, as_json, hidden)), nl=False)


@log.command("search")
@click.argument("query", type=TEXT)
@config_option
@db_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@limit_option("How many matches.")
@click.pass_context
@friendly
def log_search(ctx, query: str, config_path, db_path, as_json: bool, limit: int) -> None:
    """Full-text search over messages and verdict details (the last word is a prefix)."""
    from hermes_tui import log_view

    db = sub_db(ctx, config_path, db_path)
    click.echo(asyncio.run(log_view.search(db, query, as_json, limit)), nl=False)
