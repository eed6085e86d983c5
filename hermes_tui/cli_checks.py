"""The commands that check things without a session: hermes plan (how a model splits across
devices), hermes doctor (build, models, config, database) and hermes sentinel check."""

from __future__ import annotations

import asyncio
import json
import sys

import click

from hermes_tui.cli_errors import friendly
from hermes_tui.cli_options import TEXT, config_option, db_option, load_config
from hermes_tui.errors import Fail
from hermes_tui.terminal_text import show_controls


@click.command()
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


@click.command()
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


@click.group()
def sentinel() -> None:
    """The sentinel's checks, outside a chat."""


MAX_CHECK_BYTES = 16 * 2**20  # saved text to check: /dev/zero or a runaway pipe stop here


@sentinel.command("check")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@click.option(
    "--persona",
    type=TEXT,
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
    type=TEXT,
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
