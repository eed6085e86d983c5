"""Widgets of the hermes TUI."""
