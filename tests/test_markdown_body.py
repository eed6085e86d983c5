"""The streamed message body shows the same lines while streaming as after its final render."""

from __future__ import annotations

import random

from textual.app import App, ComposeResult

from hermes_tui.widgets.markdown_body import MarkdownBody, grow_step

ANSWER = """Here is the plan.

1. Build the package.
2. Run the tests.

```python
def release(version: str) -> None:
    build(version)

    tag(version)
```

A closing paragraph that is long enough to wrap at sixty columns, so wrapping is covered too.

- one
- two
"""


class BodyApp(App):
    def __init__(self, text: str, streaming: bool) -> None:
        super().__init__()
        self.body = MarkdownBody(text, streaming=streaming)

    def compose(self) -> ComposeResult:
        yield self.body


def shown(body: MarkdownBody) -> list[str]:
    """The body's lines of text (a streaming body's blank lines below them left out)."""
    assert body.size.height >= body.text_lines
    assert all(
        not body.render_line(y).text.strip() for y in range(body.text_lines, body.size.height)
    )
    return [body.render_line(y).text.rstrip() for y in range(body.text_lines)]


async def whole_render(text: str, width: int = 60) -> list[str]:
    app = BodyApp(text, streaming=False)
    async with app.run_test(size=(width, 40)) as pilot:
        await pilot.pause()
        return shown(app.body)


async def test_streamed_pieces_show_the_same_lines_as_one_render() -> None:
    expected = await whole_render(ANSWER)
    assert any("def release" in line for line in expected)
    rng = random.Random(7)
    app = BodyApp("", streaming=True)
    async with app.run_test(size=(60, 40)) as pilot:
        at = 0
        while at < len(ANSWER):
            step = rng.randint(1, 9)
            app.body.append(ANSWER[at : at + step])
            at += step
            if rng.random() < 0.3:
                await pilot.pause()
        await pilot.pause()
        assert app.body.source == ANSWER
        assert shown(app.body) == expected


async def test_a_blank_line_inside_a_code_fence_does_not_split_the_block() -> None:
    app = BodyApp("", streaming=True)
    async with app.run_test(size=(60, 40)) as pilot:
        app.body.append("```python\nx = 1\n\n")
        await pilot.pause()
        app.body.append("y = 2\n```\n")
        await pilot.pause()
        streamed = shown(app.body)
    whole = await whole_render("```python\nx = 1\n\ny = 2\n```\n")
    assert streamed == whole
    # One code block: both lines sit in it, with the blank line between them kept.
    xs = [i for i, line in enumerate(whole) if "x = 1" in line or "y = 2" in line]
    assert len(xs) == 2 and xs[1] - xs[0] == 2


async def test_a_narrower_terminal_rewraps_the_streamed_text() -> None:
    app = BodyApp("", streaming=True)
    async with app.run_test(size=(80, 30)) as pilot:
        app.body.append("word " * 40 + "\n\n" + "more " * 10)
        await pilot.pause()
        wide = len(shown(app.body))
        await pilot.resize_terminal(40, 30)
        await pilot.pause()
        narrow = shown(app.body)
        assert len(narrow) > wide
        assert all(len(line) <= 40 for line in narrow)


async def test_fences_close_only_on_a_matching_fence_while_streaming() -> None:
    """A longer fence holds a shorter one and a fence with an info string never closes one:
    blank lines inside them never cut the block while it streams."""
    texts = [
        "````md\n```\n\ninside\n```\n````\n\nafter\n",
        "```\nx = 1\n```python\n\ny = 2\n```\n\nafter\n",
    ]
    for text in texts:
        expected = await whole_render(text)
        assert await streamed_render(text) == expected, text


async def test_a_fence_indented_in_a_list_item_stays_code_while_streaming() -> None:
    text = "1. step one:\n\n    ```sh\n    make\n\n    make test\n    ```\n\n2. step two\n"
    lines = await streamed_render(text)
    assert not any("```" in line for line in lines), lines  # never shown as literal text
    assert sum("make test" in line for line in lines) == 1
    assert lines[0].strip().startswith("1") and any("2 step two" in line for line in lines)


async def streamed_render(text: str, width: int = 60) -> list[str]:
    """What the body shows after ``text`` streamed in line by line, before the final render."""
    app = BodyApp("", streaming=True)
    async with app.run_test(size=(width, 40)) as pilot:
        for line in text.splitlines(keepends=True):
            app.body.append(line)
            await pilot.pause()
        return shown(app.body)


async def test_a_streaming_body_grows_a_few_lines_at_a_time_and_fits_its_text_when_done() -> None:
    # A change of height is a layout of the screen and a repaint of the whole pane (all of it
    # scrolls); growing in steps, most streamed pieces repaint only the lines they changed.
    app = BodyApp("", streaming=True)
    async with app.run_test(size=(60, 40)) as pilot:
        step = grow_step(40)
        heights = set()
        for i in range(30):
            app.body.append(f"line {i} of a long answer\n\n")
            await pilot.pause()
            heights.add(app.body.size.height)
            assert app.body.size.height % step == 0
            assert app.body.size.height - step < app.body.text_lines <= app.body.size.height
        assert len(heights) <= -(-59 // step)  # one layout per step, not one per piece
        app.body.update(app.body.source)
        await pilot.pause()
        assert app.body.size.height == app.body.text_lines == 59  # 30 lines and 29 gaps
