"""``HermesError``: the base of every error hermes raises on purpose.

Each carries ``code``, a stable ``E_…`` name a script or the store can record, and
``exit_status``, what the CLI exits with when it ends a command (2: the user's input was
wrong; 3: something at run time). It lives in ``agents`` because every package that may
raise one can import it: ``hermes_tui`` and ``agents``. The sentinel imports nothing, so its
one error (``JudgeError``, caught inside the runtime and never shown as such) keeps its own
``code`` without this base.
"""

from __future__ import annotations


class HermesError(Exception):
    """An expected failure, already phrased as one line for the user."""

    code: str = "E_HERMESERROR"
    exit_status: int = 3

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if "code" not in cls.__dict__:  # unnamed: E_ and the class name (E_MODELFILEERROR)
            cls.code = f"E_{cls.__name__.upper()}"
