"""The hermes Textual app: chat (the default) or review, plus the entry points the CLI calls.

Every binding of the current screen is also offered in the command palette (ctrl+p), so a
keyboard-only user over SSH can find each action by name.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from textual import events
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from hermes_tui import gc_pauses
from hermes_tui.config import Config
from hermes_tui.screens.chat import ChatScreen, RuntimeFactory


class HermesApp(App):
    """``HermesApp(config)`` opens the chat; ``HermesApp(None, review=True)`` only reviews."""

    TITLE = "hermes"
    # Screen-level CSS_PATH is not applied to a default screen, so the app loads both files.
    CSS_PATH = ["screens/chat.tcss", "screens/review.tcss"]
    BINDINGS = [Binding("ctrl+q", "quit", "Quit", priority=True)]

    def __init__(
        self,
        config: Config | None,
        *,
        db_path: Path | None = None,
        review: bool = False,
        runtime_factory: RuntimeFactory | None = None,
        autostart: bool = True,
    ) -> None:
        super().__init__()
        self.config = config
        self.db_path = db_path
        self.review_only = review or config is None
        self.runtime_factory = runtime_factory
        self.autostart = autostart

    def get_default_screen(self) -> Screen:
        if self.review_only:
            from hermes_tui.screens.review import ReviewScreen

            return ReviewScreen(store=None, db_path=self.db_path, standalone=True)
        assert self.config is not None
        return ChatScreen(
            self.config,
            db_path=self.db_path,
            runtime_factory=self.runtime_factory,
            autostart=self.autostart,
        )

    @property
    def chat(self) -> ChatScreen | None:
        default = self.screen_stack[0] if self.screen_stack else None
        return default if isinstance(default, ChatScreen) else None

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        seen: set[str] = set()
        for binding in [*screen.BINDINGS, *type(screen).BINDINGS]:
            if not isinstance(binding, Binding) or binding.action in seen:
                continue
            seen.add(binding.action)
            action = binding.action
            title = (binding.description or action).strip()
            help_text = f"{_doc(screen, action)} ({binding.key})"
            yield SystemCommand(title, help_text, _runner(screen, action))

    def on_ready(self, event: events.Ready) -> None:
        gc_pauses.settle()  # the first screen is up: keep later full collections short

    async def on_unmount(self) -> None:
        gc_pauses.restore()
        chat = self.chat
        runtime = getattr(chat, "runtime", None) if chat else None
        if chat is not None and chat._cancel is not None:
            chat._cancel.set()  # stop the running turn before the runtime closes
        if runtime is not None:
            await runtime.close()


def _doc(screen: Screen, action: str) -> str:
    method = getattr(screen, f"action_{action.split('(')[0]}", None)
    doc = (method.__doc__ or "").strip().splitlines() if method else []
    return doc[0] if doc else action.replace("_", " ")


def _runner(screen: Screen, action: str) -> Any:
    async def run() -> None:
        await screen.run_action(action)

    return run


def run_chat(config: Config, db_path: Path | None = None) -> None:
    """``hermes chat``: open the chat screen (returns when the user quits)."""
    HermesApp(config, db_path=db_path).run()


def run_review(db_path: Path | None = None) -> None:
    """``hermes review [--db PATH]``: open the review screen on a database, read-only."""
    HermesApp(None, db_path=db_path, review=True).run()
