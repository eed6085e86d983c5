"""Contract limits: a word budget and imports the persona must not use.

Imports are found by *parsing code*, not by grepping the message: prose that mentions
"requests" is fine, ``import requests`` inside a fenced block is not. Python blocks that parse
are walked with ``ast`` (which also sees ``__import__("x")`` and
``importlib.import_module("x")``); other languages, and Python that does not parse yet (a
block still streaming), are matched line by line with per-language regexes.
"""

from __future__ import annotations

import ast
import re

from sentinel.checks.patterns import Line, LineStream, severity_for
from sentinel.verdict import Verdict

_WORD = re.compile(r"\S+")
_ALNUM = re.compile(r"[^\W_]")


class WordLimitCheck:
    """E_LENGTH at the word that crosses ``max_words`` (words = whitespace-separated runs
    containing a letter or digit, so bullets and table pipes do not count)."""

    name = "word_limit"

    def __init__(self, max_words: int, severity: dict[str, str] | None = None) -> None:
        self.max_words = max_words
        self._sev = severity_for("E_LENGTH", severity)
        self._count = 0
        self._pos = 0
        self._word: list[str] = []
        self._word_alnum = False
        self._word_len = 0
        self._word_start = 0
        self._done = False

    def feed(self, piece: str) -> list[Verdict]:
        out: list[Verdict] = []
        if self._done:
            self._pos += len(piece)
            return out
        for m in re.finditer(r"\S+|\s+", piece):
            text = m.group()
            if text[0].isspace():
                out.extend(self._end_word())
            else:
                if not self._word:
                    self._word_start = self._pos + m.start()
                    self._word_len = 0
                self._word.append(text)
                self._word_len += len(text)
                if not self._word_alnum:
                    self._word_alnum = _ALNUM.search(text) is not None
        self._pos += len(piece)
        return out

    def finish(self) -> list[Verdict]:
        return [] if self._done else self._end_word()

    def _end_word(self) -> list[Verdict]:
        if not self._word:
            return []
        n, alnum = self._word_len, self._word_alnum
        self._word, self._word_alnum = [], False
        if not alnum:
            return []
        self._count += 1
        if self._count <= self.max_words or self._done:
            return []
        self._done = True
        span = (self._word_start, self._word_start + n)
        return [Verdict(self.name, self._sev, "E_LENGTH", span, f"over {self.max_words} words")]


# ---------------------------------------------------------------------------- imports
_PY_LINE = [
    re.compile(r"^\s*import\s+(?P<mods>[\w.]+(?:\s+as\s+\w+)?(?:\s*,\s*[\w.]+(?:\s+as\s+\w+)?)*)"),
    re.compile(r"^\s*from\s+(?P<mod>[\w.]+)\s+import\s+(?P<names>[\w*, ()]+)"),
    re.compile(r"""__import__\(\s*['"](?P<mod>[\w.]+)['"]"""),
    re.compile(r"""import_module\(\s*['"](?P<mod>[\w.]+)['"]"""),
]
_OTHER_LINE = {
    "js": [
        re.compile(r"""^\s*import\s+(?:[\w*{}\s,$]+\s+from\s+)?['"](?P<mod>[^'"]+)['"]"""),
        re.compile(r"""^\s*export\s+[\w*{}\s,$]+\s+from\s+['"](?P<mod>[^'"]+)['"]"""),
        re.compile(r"""\brequire\(\s*['"](?P<mod>[^'"]+)['"]\s*\)"""),
        re.compile(r"""\bimport\(\s*['"](?P<mod>[^'"]+)['"]\s*\)"""),
    ],
    "rust": [
        re.compile(r"^\s*(?:pub\s+)?use\s+(?:::)?(?P<mod>[\w]+(?:::\w+)*)"),
        re.compile(r"^\s*extern\s+crate\s+(?P<mod>\w+)"),
    ],
    "c": [re.compile(r"""^\s*#\s*include\s*[<"](?P<mod>[^>"]+)[>"]""")],
    "go": [
        re.compile(r"""^\s*import\s+(?:\w+\s+|\.\s+)?"(?P<mod>[^"]+)\""""),
    ],
}
_GO_BLOCK_LINE = re.compile(r"""^\s*(?:[\w.]+\s+)?"(?P<mod>[^"]+)"\s*$""")
_LANGS = {
    "py": "python", "python": "python", "python3": "python", "py3": "python",
    "js": "js", "javascript": "js", "ts": "js", "typescript": "js", "jsx": "js", "tsx": "js",
    "node": "js", "mjs": "js",
    "rs": "rust", "rust": "rust",
    "c": "c", "cpp": "c", "c++": "c", "h": "c", "hpp": "c", "cc": "c", "cxx": "c", "objc": "c",
    "go": "go", "golang": "go",
}  # fmt: skip
_MAX_AST_CHARS = 6_000  # ast.parse of 20,000 characters held the event loop ~16 ms
_MAX_IMPORT_LINE = 1_000  # an import statement is short; the regexes see at most this much


class BannedImportCheck:
    """E_BANNED_IMPORT when code imports a module in ``banned`` (or a submodule of it).

    ``contract_kind="code"`` also treats text outside fences as code (a code persona may
    answer without fences); otherwise only fenced blocks are read.
    """

    name = "banned_imports"

    def __init__(
        self,
        banned: list[str] | tuple[str, ...],
        contract_kind: str = "text",
        severity: dict[str, str] | None = None,
    ) -> None:
        self.banned = tuple(b.strip() for b in banned if b.strip())
        self.unfenced_is_code = contract_kind == "code"
        self._sev = severity_for("E_BANNED_IMPORT", severity)
        self._lines = LineStream()
        self._block: list[Line] = []
        self._block_chars = 0
        self._block_lang = ""
        self._go_group = False
        self._reported: set[tuple[int, str]] = set()  # (line start, banned name)

    def feed(self, piece: str) -> list[Verdict]:
        if not self.banned:
            return []
        out: list[Verdict] = []
        for line in self._lines.feed(piece):
            out.extend(self._line(line))
        return out

    def finish(self) -> list[Verdict]:
        if not self.banned:
            return []
        out: list[Verdict] = []
        for line in self._lines.finish():
            out.extend(self._line(line))
        return out

    def _line(self, line: Line) -> list[Verdict]:
        if line.kind == "fence":
            self._block = []
            self._block_chars = 0
            self._go_group = False
            self._block_lang = _LANGS.get(line.lang, line.lang)
            return []
        if line.kind == "prose":
            if not self.unfenced_is_code:
                return []
            if self._lines.fences_seen:
                return []  # fenced answers: text outside the fences is prose
            if not self._block:
                self._block_lang = ""
        self._block.append(line)
        self._block_chars += len(line.text) + 1
        out = self._regex(line)
        lang = self._block_lang
        head = line.text[:_MAX_IMPORT_LINE]
        if lang in ("python", "") and ("import" in head or not line.text.strip()):
            out.extend(self._ast())
        return out

    def _banned_hit(self, module: str) -> str | None:
        module = module.strip().strip("<>\"'")
        for b in self.banned:
            stem = module.rsplit("/", 1)[-1].removesuffix(".h")
            if (
                module == b
                or module.startswith(b + ".")
                or module.startswith(b + "::")
                or module.startswith(b + "/")
                or stem == b
            ):
                return b
        return None

    def _report(self, line: Line, col: int, module: str, b: str) -> list[Verdict]:
        key = (line.start, b)
        if key in self._reported:
            return []
        self._reported.add(key)
        start = line.start + col
        return [
            Verdict(
                self.name,
                self._sev,
                "E_BANNED_IMPORT",
                (start, start + len(module)),
                f"banned import {module!r} ({b})",
            )
        ]

    def _regex(self, line: Line) -> list[Verdict]:
        lang = self._block_lang
        text = line.text[:_MAX_IMPORT_LINE]
        out: list[Verdict] = []
        groups: list[list[re.Pattern[str]]] = []
        if lang in ("python", ""):
            groups.append(_PY_LINE)
        if lang in _OTHER_LINE:
            groups.append(_OTHER_LINE[lang])
        elif lang not in ("python",):
            groups.extend(_OTHER_LINE.values())
        for pats in groups:
            for pat in pats:
                for m in pat.finditer(text):
                    out.extend(self._from_match(line, m))
        if lang in ("go", "") or lang not in _LANGS.values():
            stripped = text.strip()
            if re.match(r"^import\s*\($", stripped):
                self._go_group = True
            elif self._go_group:
                if stripped == ")":
                    self._go_group = False
                else:
                    block = _GO_BLOCK_LINE.match(text)
                    if block:
                        out.extend(self._from_match(line, block))
        return out

    def _from_match(self, line: Line, m: re.Match[str]) -> list[Verdict]:
        gd = m.groupdict()
        out: list[Verdict] = []
        if gd.get("mods"):
            base = m.start("mods")
            for part in re.finditer(r"[\w.]+(?:\s+as\s+\w+)?", gd["mods"]):
                mod = part.group().split()[0]
                b = self._banned_hit(mod)
                if b:
                    out.extend(self._report(line, base + part.start(), mod, b))
            return out
        mod = gd["mod"]
        b = self._banned_hit(mod)
        if b is None and gd.get("names"):
            for name in re.findall(r"\w+", gd["names"]):
                b = self._banned_hit(f"{mod}.{name}")
                if b:
                    break
        if b:
            out.extend(self._report(line, m.start("mod"), mod, b))
        return out

    def _ast(self) -> list[Verdict]:
        """Re-parse the current block (bounded) and report imports the regexes missed."""
        lines = self._block
        if self._block_chars > _MAX_AST_CHARS:
            return []
        source = "\n".join(line.text for line in lines)
        try:
            tree = ast.parse(source)
        except (SyntaxError, ValueError):
            return []
        out: list[Verdict] = []
        for node in ast.walk(tree):
            mods: list[str] = []
            if isinstance(node, ast.Import):
                mods = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                mods = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif (
                isinstance(node, ast.Call)
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
                and (
                    (isinstance(node.func, ast.Name) and node.func.id == "__import__")
                    or (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                )
            ):
                mods = [node.args[0].value]
            for mod in mods:
                b = self._banned_hit(mod)
                if not b:
                    continue
                if isinstance(node, ast.Call):
                    arg = node.args[0]
                    line = lines[arg.lineno - 1]
                    col = len(line.text.encode()[: arg.col_offset].decode(errors="ignore")) + 1
                    if line.text[col : col + len(mod)] == mod:
                        out.extend(self._report(line, col, mod, b))
                        break
                assert isinstance(node, ast.Import | ast.ImportFrom)
                line = lines[node.lineno - 1]
                shown = mod.split(".")[0] if "." in mod and mod not in line.text else mod
                col = line.text.find(shown)
                col = col if col >= 0 else len(line.text[: node.col_offset])
                out.extend(self._report(line, col, shown, b))
                break
        return out
