"""The import rules between hermes's packages, read from the source (ast) and from a real import.

- ``agents`` never imports ``hermes_tui`` or ``sentinel``; ``sentinel`` never imports either.
- No module imports another module's private (``_name``) names.
- The CLI's plain-text commands (``hermes log``) do not load the TUI's widgets or Textual.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, hermes_env

PACKAGES = ("agents", "sentinel", "hermes_tui")


def _modules() -> list[tuple[str, ast.Module]]:
    found = []
    for package in PACKAGES:
        for path in sorted((Path(ROOT) / package).rglob("*.py")):
            found.append((str(path.relative_to(ROOT)), ast.parse(path.read_text(), str(path))))
    return found


def _imports(tree: ast.Module) -> list[tuple[str, list[str], int]]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.module, [a.name for a in node.names], node.lineno))
        elif isinstance(node, ast.Import):
            out.extend((a.name, [], node.lineno) for a in node.names)
    return out


def test_dependencies_point_one_way():
    allowed = {"agents": {"agents"}, "sentinel": {"sentinel"}}
    wrong = []
    for where, tree in _modules():
        package = where.split("/", 1)[0]
        if package not in allowed:
            continue
        for module, _, line in _imports(tree):
            top = module.split(".", 1)[0]
            if top in PACKAGES and top not in allowed[package]:
                wrong.append(f"{where}:{line} imports {module}")
    assert wrong == []


def test_no_module_imports_another_modules_private_names():
    wrong = []
    for where, tree in _modules():
        for module, names, line in _imports(tree):
            if module.split(".", 1)[0] not in PACKAGES:
                continue
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if private:
                wrong.append(f"{where}:{line} imports {', '.join(private)} from {module}")
    assert wrong == []


def test_hermes_log_loads_no_widgets_and_no_textual():
    code = (
        "import sys, hermes_tui.log_view, hermes_tui.cli\n"
        "bad = sorted(m for m in sys.modules if m.startswith(('hermes_tui.widgets', 'textual')))\n"
        "print(bad)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=hermes_env(),
        check=True,
    )
    assert out.stdout.strip() == "[]"
