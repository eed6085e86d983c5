"""The hermes Textual app: chat (the default) or review, plus the entry points the CLI calls.

The app owns the runtime: it starts it (in a worker, after the first paint), hands it to the
chat screen, marks it when the terminal goes away, and closes it on exit. Screens only use it.
Every binding of the current screen is also offered in the command palette (ctrl+p), so a
keyboard-only user over SSH can find each action by name.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import termios
import threading
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual import events
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from hermes_tui import gc_pauses
from hermes_tui.config import Config
from hermes_tui.screens.chat import ChatScreen, RuntimeReady

if TYPE_CHECKING:
    from hermes_tui.runtime import ScreenRuntime

# A test's (or benchmark's) way to start the runtime: called with the chat screen's listener.
RuntimeFactory = Callable[[Callable[[Any], Awaitable[None]]], Awaitable["ScreenRuntime"]]


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
        resume: int | None = None,
    ) -> None:
        super().__init__()
        self.resume = resume
        self.config = config
        if config is not None:
            from hermes_tui import outbound

            outbound.set_redaction(config.redact_secrets)  # the screen and the clipboard
        self.db_path = db_path
        self.review_only = review or config is None
        self.runtime_factory = runtime_factory
        self.autostart = autostart
        self.runtime: ScreenRuntime | None = None  # the app's; the chat screen is handed it
        self._closing = False

    def get_default_screen(self) -> Screen:
        if self.review_only:
            from hermes_tui.screens.review import ReviewScreen

            return ReviewScreen(store=None, db_path=self.db_path, standalone=True)
        assert self.config is not None
        return ChatScreen(self.config, db_path=self.db_path, starting=self.autostart)

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

    hung_up = False  # the terminal went away (SIGHUP, or the tty stopped answering)

    def on_mount(self) -> None:
        import asyncio

        # Not on every platform or thread (the terminal is then polled only).
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self.hang_up)
        if _terminal_fd() is not None:
            self.set_interval(HANGUP_POLL_S, self._check_terminal, name="terminal-watch")
        if self.chat is not None and self.autostart:
            self.run_worker(self._start_runtime(), name="runtime-start", exclusive=False)

    async def _start_runtime(self) -> None:
        """Start the runtime for the chat screen (models load lazily, at the first message)."""
        chat = self.chat
        assert chat is not None and self.config is not None
        try:
            if self.runtime_factory is not None:
                runtime = await self.runtime_factory(chat.receive)
            else:
                from hermes_tui.runtime import Runtime

                runtime = await Runtime.start(
                    self.config, db_path=self.db_path, mode="chat", listener=chat.receive
                )
        except Exception as exc:  # shown, never a crash: the user can still read and review
            chat.runtime_failed(str(exc))
            return
        self.runtime = runtime
        if self._closing:  # the user quit while it started
            await runtime.close()
            return
        if self.resume is not None:
            try:
                await runtime.resume(self.resume)
            except Exception as exc:
                chat.runtime_failed(str(exc))
                return
        chat.post_message(RuntimeReady(runtime))

    def _check_terminal(self) -> None:
        fd = _terminal_fd()
        if fd is None:
            return
        try:
            termios.tcgetattr(fd)  # a hung-up tty answers EIO (its reads only give EOF)
            poller = select.poll()
            poller.register(fd, select.POLLIN)
            gone = any(ev & (select.POLLHUP | select.POLLNVAL) for _, ev in poller.poll(0))
        except (termios.error, OSError):
            gone = True
        if gone:  # the other side of the terminal closed (an SSH client that vanished)
            self.hang_up()

    def hang_up(self) -> None:
        """The terminal is gone: end the running turn as interrupted and exit within a
        second, the judge with us (a watchdog makes sure of it if closing stalls)."""
        if self.hung_up:
            return
        self.hung_up = True
        runtime = self.runtime
        if runtime is not None:
            runtime.interrupted = True
        judge = getattr(runtime, "judge", None)
        _start_watchdog(getattr(judge, "pid", None))
        self.exit(return_code=EXIT_HANGUP)

    def on_ready(self, event: events.Ready) -> None:
        gc_pauses.settle()  # the first screen is up: keep later full collections short

    async def on_unmount(self) -> None:
        gc_pauses.restore()
        self._closing = True
        if self.runtime is not None:
            await self.runtime.close()  # cancels (and records) a running turn first


EXIT_HANGUP = 129  # 128 + SIGHUP, as a shell reports a process ended by it
HANGUP_POLL_S = 0.5
HANGUP_DEADLINE_S = 0.8  # after this, the watchdog ends hermes (and its judge) the hard way


def _terminal_fd() -> int | None:
    """The terminal Textual reads from, if it is one (not under the web driver)."""
    stream = sys.__stdin__
    try:
        fd = stream.fileno() if stream is not None else -1
    except (OSError, ValueError):
        return None
    return fd if fd >= 0 and os.isatty(fd) else None


def _start_watchdog(judge_pid: int | None) -> None:
    def run() -> None:
        threading.Event().wait(HANGUP_DEADLINE_S)
        if judge_pid:
            with contextlib.suppress(OSError):
                os.kill(judge_pid, signal.SIGKILL)
        os._exit(EXIT_HANGUP)

    threading.Thread(target=run, name="hangup-watchdog", daemon=True).start()


def needs_terminal() -> str | None:
    """Why the TUI cannot run here (no terminal on stdin or stderr), or None."""
    if os.environ.get("TEXTUAL_DRIVER"):  # textual-serve / a custom driver draws elsewhere
        return None
    for stream in (sys.__stdin__, sys.__stderr__):
        try:
            if stream is None or not os.isatty(stream.fileno()):
                return "hermes needs a terminal; use ssh -t, or hermes batch"
        except (OSError, ValueError):
            return "hermes needs a terminal; use ssh -t, or hermes batch"
    return None


def _doc(screen: Screen, action: str) -> str:
    method = getattr(screen, f"action_{action.split('(')[0]}", None)
    doc = (method.__doc__ or "").strip().splitlines() if method else []
    return doc[0] if doc else action.replace("_", " ")


def _runner(screen: Screen, action: str) -> Any:
    async def run() -> None:
        await screen.run_action(action)

    return run


def _run(app: HermesApp) -> Any:
    result = app.run()
    if app.hung_up:
        os._exit(EXIT_HANGUP)  # nothing left to say to a terminal that is gone
    return result


def run_chat(config: Config, db_path: Path | None = None, resume: int | None = None) -> None:
    """``hermes chat``: open the chat screen (returns when the user quits); ``resume``
    continues that stored session."""
    _run(HermesApp(config, db_path=db_path, resume=resume))


def run_review(db_path: Path | None = None) -> Any:
    """``hermes review [--db PATH]``: open the review screen on a database, read-only.
    Returns ``("continue", ID)`` when the user chose to continue a session."""
    return _run(HermesApp(None, db_path=db_path, review=True))
