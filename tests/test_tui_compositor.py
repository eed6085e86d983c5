"""The chat's compositor (``hermes_tui.screens.compositor``) draws exactly what Textual's
would: the same dirty regions in, the same bytes for the terminal out. Three streams at
200×50 and key presses, frames where two panes and the prompt change together."""

from __future__ import annotations

import re

from rich.console import Console
from textual import events
from textual._compositor import Compositor
from textual.geometry import Region

from hermes_tui.app import HermesApp
from hermes_tui.config import load_config
from hermes_tui.screens.compositor import BoxedCompositor, merge_boxes
from hermes_tui.widgets.records import ChatMessage
from hermes_tui.widgets.transcript import Transcript
from tests.conftest import write_small_config

# A cursor move with nothing drawn after it: Textual's own update emits one for a chop that
# starts where a span ends (it draws nothing there); it changes nothing on the screen.
IDLE_MOVE = re.compile(r"\x1b\[\d+;\d+H(?=\x1b\[\d+;\d+H|\n|$)")


def drawn(update, console: Console) -> str:
    return IDLE_MOVE.sub("", update.render_segments(console))


def test_merge_boxes_joins_only_what_costs_nothing_to_join():
    left, right = Region(0, 1, 66, 45), Region(133, 1, 67, 45)
    prompt = Region(0, 46, 200, 3)
    assert sorted(merge_boxes([left, right, prompt])) == sorted([left, right, prompt])
    assert merge_boxes([left, Region(66, 1, 67, 45)]) == [Region(0, 1, 133, 45)]  # side by side
    assert merge_boxes([left, Region(2, 5, 10, 10)]) == [left]  # inside


async def test_frames_of_two_panes_and_the_prompt_are_drawn_as_textual_would(tmp_path):
    app = HermesApp(load_config(write_small_config(tmp_path)), autostart=False)
    console = Console(width=200, height=50, force_terminal=True, color_system="truecolor")
    async with app.run_test(size=(200, 50)) as pilot:
        chat = app.screen
        compositor = chat._compositor
        assert isinstance(compositor, BoxedCompositor)
        boxed = compositor.render_partial_update
        split: list[bool] = []  # per frame: drawn box by box?

        def both():
            dirty = set(compositor._dirty_regions)
            ours = boxed()
            compositor._dirty_regions = set(dirty)
            theirs = Compositor.render_partial_update(compositor)
            if dirty:
                assert ours is not None and theirs is not None
                assert drawn(ours, console) == drawn(theirs, console)
                split.append(len(merge_boxes(list(dirty))) > 1)
            return ours

        compositor.render_partial_update = both
        transcript = chat.query_one(Transcript)
        transcript._ticker.stop()  # this test paints the panes itself
        views = []
        for i, persona in enumerate(chat.personas):
            await transcript.add(ChatMessage(f"t{i}", "assistant", persona))
            views.append(transcript.view(f"t{i}"))
        prompt = chat.query_one("#prompt")
        for step in range(30):
            painted = views if step < 10 else (views[0], views[2])  # then two panes apart
            for view in painted:
                piece = " ".join(f"w{step}x{n}" for n in range(40)) + ("\n\n" if step % 3 else " ")
                view.record.text += piece
                await view.append(piece)
                view.paint()
            prompt.insert_text_at_cursor("x")
            await pilot.pause(0.05)
        assert sum(split) >= 5, split  # the frames it exists for did happen, and matched


async def test_a_key_is_drawn_at_once_and_as_the_next_frame_draws_it(tmp_path):
    app = HermesApp(load_config(write_small_config(tmp_path)), autostart=False)
    console = Console(width=200, height=50, force_terminal=True, color_system="truecolor")
    async with app.run_test(size=(200, 50)) as pilot:
        chat = app.screen
        prompt = chat.query_one("#prompt")
        shown: list[tuple[str, object]] = []  # (prompt text, update) as each reached the screen
        original = app._display

        def display(screen, renderable):
            shown.append((prompt.value, renderable))
            original(screen, renderable)

        app._display = display
        chat._update_timer.pause()  # no frame at all: the key must still reach the screen
        app._driver.send_message(events.Key("q", "q"))
        for _ in range(20):
            await pilot.pause(0.01)
            if any(text == "q" for text, _ in shown):
                break
        first = next(update for text, update in shown if text == "q")
        assert {y for y, _, _ in first.spans} == set(prompt.region.line_range)  # the prompt only
        # ... drawn as Textual draws that region in a frame
        compositor = chat._compositor
        compositor._dirty_regions = {prompt.region}
        frame = Compositor.render_partial_update(compositor)
        assert drawn(first, console) == drawn(frame, console)
        chat._update_timer.resume()
