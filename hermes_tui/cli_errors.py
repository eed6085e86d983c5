"""One line and an exit code for every failure a user can cause: the ``hermes`` group's
usage errors and each command's expected failures (2 usage/config, 3 runtime); never a
traceback."""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import sys
from typing import Any, NoReturn

import click

from hermes_tui.batch import EXIT_RUNTIME, EXIT_USAGE, ScriptError
from hermes_tui.config import ConfigError
from hermes_tui.errors import Fail
from hermes_tui.terminal_text import show_controls


def fail(message: str, status: int) -> NoReturn:
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
            fail(str(exc), EXIT_USAGE)
        except StoreError as exc:
            fail(str(exc), EXIT_RUNTIME)
        except Fail as exc:
            fail(str(exc), exc.exit_status)
        except KeyboardInterrupt:
            fail("interrupted", 130)
        except BrokenPipeError:  # `hermes batch ... | head`: the reader left; leave quietly
            with contextlib.suppress(OSError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(141)
        except Exception as exc:  # the last safety net: one line, not a traceback
            if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO):
                where = f" {exc.filename}" if exc.filename else ""
                fail(f"cannot write{where}: {exc.strerror}", EXIT_RUNTIME)
            if os.environ.get("HERMES_DEBUG"):
                raise
            fail(
                f"internal error: {type(exc).__name__}: {exc} "
                "(set HERMES_DEBUG=1 to see the traceback)",
                EXIT_RUNTIME,
            )

    return wrapper


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
            # "hermes log show", whatever the program was started as (python -m, a test runner)
            names, ctx = [], exc.ctx
            while ctx is not None and ctx.parent is not None:
                names.insert(0, ctx.info_name or "")
                ctx = ctx.parent
            where = " ".join(["hermes", *names])
            fail(f"{exc.format_message()} (see {where} --help)", exc.exit_code)
        except click.ClickException as exc:
            fail(exc.format_message(), exc.exit_code)
        except click.Abort:
            fail("aborted", 1)
        sys.exit(rv if isinstance(rv, int) else 0)  # an int: --help's or --version's exit
