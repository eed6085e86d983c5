"""``python -m hermes_tui.server``: the same as ``hermes serve``."""

import sys

import click

from hermes_tui.errors import Fail
from hermes_tui.server.command import serve_command


def main() -> None:
    try:
        serve_command.main(standalone_mode=False)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2)
    except Fail as exc:
        click.echo(f"hermes: {exc}", err=True)
        sys.exit(exc.code)


if __name__ == "__main__":
    main()
