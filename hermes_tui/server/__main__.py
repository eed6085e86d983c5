"""``python -m hermes_tui.server``: the same as ``hermes serve``."""

from hermes_tui.server.command import serve_command

if __name__ == "__main__":
    serve_command(prog_name="hermes serve")
