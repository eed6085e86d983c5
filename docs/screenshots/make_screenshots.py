"""Regenerate the README screenshots: ``PYTHONPATH=. python docs/screenshots/make_screenshots.py``.

The chat is driven by recorded answers (``tests.replay.ReplayEngine``) through the real
session, sentinel and store, so the marks shown are the sentinel's own. SVGs are converted to
PNG with ``rsvg-convert`` when it is installed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import subprocess
import tempfile
from pathlib import Path

from hermes_tui.app import HermesApp
from hermes_tui.config import load_config
from hermes_tui.runtime import Runtime
from tests.conftest import write_small_config
from tests.replay import BROKEN_JSON, FIXED_JSON, ReplayEngine, install, replay_config
from tests.test_tui import seed_store

HERE = Path(__file__).resolve().parent
CODE = [
    "```python\n",
    "def ",
    "release",
    "(version",
    ": str",
    ") -> None",
    ":\n",
    "    ",
    "build",
    "(version",
    ")\n",
    "    ",
    "test",
    "()\n",
    "    ",
    "tag",
    "(version",
    ")\n",
    "```\n",
]
CRITIC = [
    '{"verdict": ',
    '"revise"',
    ', "issues": ',
    '["no rollback step", ',
    '"tests run after tagging"]}',
]


class PerPersona(ReplayEngine):
    """One recording per persona (picked from the system prompt), for the screenshots."""

    def __init__(self) -> None:
        super().__init__([[]], tokens_per_s=40)
        self.by_persona = {
            "architect": [BROKEN_JSON, FIXED_JSON],
            "coder": [CODE],
            "critic": [CRITIC],
        }

    async def stream(self, messages, params, cancel=None):
        name = next(n for n in self.by_persona if f"You are the {n}" in messages[0]["content"])
        queue = self.by_persona[name]
        self.recordings = [queue.pop(0) if len(queue) > 1 else queue[0]]
        self.calls = 0
        async for piece in super().stream(messages, params, cancel):
            yield piece


def convert(svg: Path) -> None:
    if shutil.which("rsvg-convert"):
        subprocess.run(["rsvg-convert", str(svg), "-o", str(svg.with_suffix(".png"))], check=True)


async def chat(size: tuple[int, int], name: str, dashboard: bool = False) -> None:
    tmp = Path(tempfile.mkdtemp())
    config = replay_config(load_config(write_small_config(tmp, max_tokens=200)))
    config = dataclasses.replace(config, workflow="parallel")

    async def start(listener):
        runtime = await Runtime.start(config, db_path=tmp / "s.db", listener=listener, judge=False)
        install(runtime, PerPersona())
        return runtime

    app = HermesApp(config, runtime_factory=start)
    async with app.run_test(size=size) as pilot:
        screen = app.screen
        while screen.runtime is None:
            await pilot.pause(0.05)
        screen.query_one("#prompt").value = "@all plan, code and review the release script"
        await pilot.press("enter")
        while not screen.idle:
            await pilot.pause(0.05)
        if dashboard:
            await pilot.press("f2")
            await pilot.pause(0.5)
        else:
            await pilot.press("shift+tab")  # focus the last message
        await pilot.pause(0.2)
        path = HERE / f"{name}.svg"
        app.save_screenshot(str(path))
        convert(path)


async def review(size: tuple[int, int], name: str, open_session: bool) -> None:
    db = Path(tempfile.mkdtemp()) / "review.db"
    await seed_store(db)
    app = HermesApp(None, db_path=db, review=True)
    async with app.run_test(size=size) as pilot:
        await pilot.pause(0.5)
        if open_session:
            await pilot.press("enter")
            await pilot.pause(0.5)
        path = HERE / f"{name}.svg"
        app.save_screenshot(str(path))
        convert(path)


async def marks(size: tuple[int, int], name: str) -> None:
    """A minor span underlined and a critical one reversed inside the text, one explained."""
    tmp = Path(tempfile.mkdtemp())
    config = replay_config(load_config(write_small_config(tmp, max_tokens=200)))
    broken = ['{"goal": ', '"ship it"', ', "steps": ', '["build", ', '"test"]', "}}", "\n"]
    wipe = ["Clean the build tree with ", "`rm -rf /`", " and start again."]
    engine = ReplayEngine([broken, FIXED_JSON, wipe], tokens_per_s=40)

    async def start(listener):
        runtime = await Runtime.start(config, db_path=tmp / "m.db", listener=listener, judge=False)
        install(runtime, engine)
        return runtime

    app = HermesApp(config, runtime_factory=start)
    async with app.run_test(size=size) as pilot:
        screen = app.screen
        while screen.runtime is None:
            await pilot.pause(0.05)
        for text in ("@architect plan the release", "@coder how do I clean the build?"):
            screen.query_one("#prompt").value = text
            await pilot.press("enter")
            await pilot.pause(0.3)
            while not screen.idle:
                await pilot.pause(0.05)
        views = [v for v in screen.query("MessageView") if v.record.role == "assistant"]
        views[0].focus()
        await pilot.press("m")  # the first answer's mark: the JSON break, explained
        await pilot.pause(0.3)
        path = HERE / f"{name}.svg"
        app.save_screenshot(str(path))
        convert(path)


async def main() -> None:
    await marks((100, 30), "marks-100x30")
    await chat((200, 50), "chat-200x50")
    await chat((80, 24), "chat-80x24")
    await chat((120, 40), "dashboard-120x40", dashboard=True)
    await review((120, 40), "review-120x40", open_session=False)
    await review((120, 40), "session-120x40", open_session=True)


if __name__ == "__main__":
    asyncio.run(main())
