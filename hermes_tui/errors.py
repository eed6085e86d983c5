"""The one exception type the CLI turns into a one-line message and an exit code."""

from __future__ import annotations


class Fail(Exception):
    """A user-facing failure: ``str(exc)`` is the line shown, ``code`` the exit status."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code
