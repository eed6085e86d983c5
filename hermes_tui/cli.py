"""The ``hermes`` command: chat (default), batch, log, review, plan, doctor, web, serve.

Every expected failure is one line on stderr and an exit code (2 usage/config, 3 runtime);
never a traceback.
"""

from __future__ import annotations

import logging

import click

from hermes_tui.cli_checks import MAX_CHECK_BYTES, doctor, plan, sentinel
from hermes_tui.cli_errors import OneLineErrors, friendly
from hermes_tui.cli_log import log
from hermes_tui.cli_options import config_option, db_option, load_config
from hermes_tui.cli_sessions import batch, chat, review, web
from hermes_tui.cli_sessions import session_to_continue as _session_to_continue

__all__ = ["MAX_CHECK_BYTES", "friendly", "load_config", "main", "_session_to_continue"]


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


for _command in (chat, batch, log, review, plan, doctor, sentinel, web):
    main.add_command(_command)


def _add_serve() -> None:
    from hermes_tui.server.command import serve_command

    main.add_command(serve_command)  # `hermes serve`: the machine-wide pool (hermes_tui/server)


_add_serve()

if __name__ == "__main__":
    main()
