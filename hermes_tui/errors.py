"""The one exception type the CLI turns into a one-line message and an exit code."""

from __future__ import annotations

from agents.errors import HermesError


class Fail(HermesError):
    """A user-facing failure: ``str(exc)`` is the line shown, ``exit_status`` the exit status."""

    def __init__(self, message: str, exit_status: int) -> None:
        super().__init__(message)
        self.exit_status = exit_status
        self.code = "E_USAGE" if exit_status == 2 else "E_RUNTIME"
