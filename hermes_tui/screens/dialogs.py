"""Small modal screens: the keys-and-glyphs legend (F1), renaming a session, a yes/no question."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Input, Static

KEYS: list[tuple[str, list[tuple[str, str]]]] = [
    (
        "chat",
        [
            ("Enter", "send (@coder …, @coder @critic …, @all …; no @ → the default persona)"),
            ("→", "complete the @name being typed"),
            ("↑ / ↓", "earlier / later messages you sent"),
            ("Esc", "cancel the running turn (personas not reached yet are skipped, shown)"),
            ("PageUp / PageDown", "scroll the transcript"),
            ("Home / End", "oldest / newest message (on an empty prompt; Ctrl+Home / Ctrl+End)"),
            ("Tab / Shift+Tab", "move focus: prompt → messages → their marks"),
            ("c", "(a focused message) copy it"),
            ("m", "(a focused message) go to its marks; a focused mark explains itself"),
            ("any other key", "(transcript focused) typed into the prompt"),
            ("Ctrl+Y", "copy the last answer"),
            ("Ctrl+T", "rename this session"),
            ("Ctrl+N", "new session"),
            ("F1", "this legend"),
            ("F2", "pool dashboard"),
            ("F3", "show / hide the sentinel's hidden correction turns"),
            ("F4", "review past sessions"),
            ("F5", "workflow: pipeline / parallel"),
            ("Ctrl+P", "every action by name"),
            ("Ctrl+Q", "quit"),
        ],
    ),
    (
        "review",
        [
            ("Enter", "open the session (or search match)"),
            ("Ctrl+F", "search messages and verdict details"),
            ("Ctrl+L / Ctrl+R", "clear filters / read the database again"),
            ("↑ / ↓", "(a session) choose a verdict: its span is scrolled into view"),
            ("c", "(a session) continue it in the chat"),
            ("Ctrl+E / Ctrl+J", "(a session) export Markdown / JSON"),
            ("Esc", "back one level (session → list → chat; asks before quitting)"),
        ],
    ),
]

GLYPHS: list[tuple[str, str]] = [
    ("…", "streaming"),
    ("✓", "done"),
    ("✖", "halted by the sentinel (a critical verdict)"),
    ("✗", "error (engine, pool)"),
    ("⊘", "cancelled (Esc), or personas skipped by a cancel"),
    ("↯", "interrupted (hermes lost its terminal or was killed)"),
    ("✖2", "two critical marks on the message"),
    ("⚑3", "three minor marks on the message"),
    ("121 tok", "tokens in the answer"),
]


def legend_content() -> Content:
    """The legend as text (also what the README's key table lists)."""
    parts: list[Content | str | tuple[str, str]] = []
    for section, keys in KEYS:
        parts.append((f"Keys: {section}\n", "bold"))
        for key, what in keys:
            parts.append(f"  {key:<18} {what}\n")
        parts.append("\n")
    parts.append(("Message headers\n", "bold"))
    for glyph, what in GLYPHS:
        parts.append(f"  {glyph:<8} {what}\n")
    parts.append(("\nMarks in the text\n", "bold"))
    parts.append("  ")
    parts.append(("underlined", "underline"))
    parts.append("   a minor verdict's span (yellow)\n  ")
    parts.append(("reversed", "bold reverse"))
    parts.append("     a critical verdict's span (red)\n")
    parts.append(
        "  Each mark is also listed under its message (⚑ minor, ✖ critical) with the span in\n"
        "  context; focus one (Tab, or m on a message) or hover it to read its check, code,\n"
        "  explanation and the correction that was sent.\n"
    )
    return Content.assemble(*parts)


class LegendScreen(ModalScreen[None]):
    """F1: every key and what every glyph means. Esc, F1 or q closes it."""

    BINDINGS = [
        Binding("escape", "dismiss", "Close"),
        Binding("f1", "dismiss", "Close", show=False),
        Binding("q", "dismiss", "Close", show=False),
    ]
    DEFAULT_CSS = """
    LegendScreen { align: center middle; }
    LegendScreen > VerticalScroll {
        width: 96; max-width: 100%; height: 90%; border: round $accent; padding: 0 1;
        background: $surface;
    }
    """

    def compose(self) -> ComposeResult:
        with VerticalScroll() as box:
            box.border_title = "keys and glyphs (Esc closes)"
            yield Static(legend_content(), id="legend")


class TitleScreen(ModalScreen[str | None]):
    """Ctrl+T: rename the session. Enter keeps the new title, Esc the old one."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]
    DEFAULT_CSS = """
    TitleScreen { align: center middle; }
    TitleScreen > Vertical {
        width: 70; max-width: 100%; height: auto; border: round $accent; padding: 0 1;
        background: $surface;
    }
    """

    def __init__(self, title: str) -> None:
        super().__init__()
        self.current = title

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = "session title (Enter keeps it, Esc cancels)"
            yield Input(self.current, placeholder="a title for this session", id="title")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        self.dismiss(None)


class ConfirmScreen(ModalScreen[bool]):
    """A yes/no question: y or Enter says yes, n or Esc no."""

    BINDINGS = [
        Binding("y,enter", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
    ]
    DEFAULT_CSS = """
    ConfirmScreen { align: center middle; }
    ConfirmScreen > Static {
        width: auto; max-width: 100%; border: round $warning; padding: 0 2; background: $surface;
    }
    """

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        yield Static(f"{self.question}  [y/n]", markup=False)

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)
