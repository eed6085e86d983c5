"""Widgets of the hermes TUI."""

from hermes_tui.widgets.sanitize import sanitize_for_terminal

__all__ = ["sanitize_for_terminal"]
