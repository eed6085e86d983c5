"""The parts of the docs that list what the code defines, generated from the code.

Between ``<!-- generated:NAME -->`` and ``<!-- /generated:NAME -->`` in README.md and docs/,
the text is this module's output: the CLI commands (from the click commands), the sentinel's
checks and codes (from ``sentinel.registry`` and ``sentinel.verdict``) and the config keys
(from ``hermes_tui.config_schema``), and the modules of the three packages (docs/architecture.md).

    python -m hermes_tui.docs_gen           # rewrite the generated blocks
    python -m hermes_tui.docs_gen --check   # exit 1 (and say which) if any block is stale
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

ROOT = Path(__file__).resolve().parent.parent
FILES = ("README.md", "docs/architecture.md")
_BLOCK = re.compile(
    r"(<!-- generated:(?P<name>[a-z-]+) [^>]*-->\n)(?P<body>.*?)(<!-- /generated:(?P=name) -->)",
    re.S,
)


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def commands() -> str:
    """Every ``hermes`` command: its usage, options and the first paragraph of its help."""
    from hermes_tui.cli import main

    rows = ["| command | options | what it does |", "|---|---|---|"]

    def walk(group: click.Group, ctx: click.Context, prefix: str) -> Iterator[str]:
        for name in group.list_commands(ctx):
            cmd = group.get_command(ctx, name)
            if cmd is None or cmd.hidden:
                continue
            sub = click.Context(cmd, info_name=name, parent=ctx)
            args = [p.human_readable_name for p in cmd.params if isinstance(p, click.Argument)]
            opts = [
                max(p.opts, key=len)
                for p in cmd.params
                if isinstance(p, click.Option) and not p.hidden and p.name != "help"
            ]
            usage = " ".join([prefix + name, *args])
            what = (cmd.help or "").split("\n\n")[0]
            shown = " ".join(f"`{o}`" for o in opts)
            yield f"| `{usage}` | {shown} | {_cell(what)} |"
            if isinstance(cmd, click.Group):
                yield from walk(cmd, sub, prefix + name + " ")

    ctx = click.Context(main, info_name="hermes")
    rows += walk(main, ctx, "hermes ")
    return "\n".join(rows) + "\n"


def checks() -> str:
    """The sentinel's checks by the name their verdicts carry, with each code's default."""
    from sentinel.registry import CHECKS
    from sentinel.verdict import DEFAULT_SEVERITY

    rows = ["| check | codes (default severity) | what it looks for |", "|---|---|---|"]
    for c in CHECKS:
        codes = ", ".join(f"`{code}` ({DEFAULT_SEVERITY[code]})" for code in c.codes)
        rows.append(f"| `{c.name}` | {codes} | {_cell(c.summary)} |")
    return "\n".join(rows) + "\n"


def _describe(schema: dict[str, Any]) -> str:
    if "description" in schema:
        return str(schema["description"])
    if "enum" in schema:
        return " \\| ".join(f"`{v!r}`".replace("'", '"') for v in schema["enum"])
    kind = schema.get("type", "")
    if kind == "array":
        return f"list of {_describe(schema.get('items', {}))}"
    if kind == "string" and schema.get("pattern", "").endswith("TiB)\\s*$"):
        return "size (`512MiB`, `8GiB`)"
    bounds = []
    for key, sign in (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<=")):
        if key in schema:
            bounds.append(f"{sign} {schema[key]}")
    return " ".join([kind or "table", *bounds]).strip()


def _keys(schema: dict[str, Any], prefix: str) -> Iterator[tuple[str, str]]:
    props = schema.get("properties")
    extra = schema.get("additionalProperties")
    if props:
        for name, sub in props.items():
            key = f"{prefix}{name}"
            if sub.get("type") == "object" and (
                "properties" in sub or "additionalProperties" in sub
            ):
                if sub.get("additionalProperties") is not False and "properties" not in sub:
                    inner = sub["additionalProperties"]
                    if isinstance(inner, dict) and "properties" in inner:
                        yield from _keys(inner, f"{key}.NAME.")
                    else:
                        yield f"{key}.NAME", _describe(inner if isinstance(inner, dict) else {})
                else:
                    yield from _keys(sub, f"{key}.")
            elif sub.get("type") == "array" and "properties" in sub.get("items", {}):
                yield from _keys(sub["items"], f"[[{key}]] ")
            else:
                yield key, _describe(sub)
    elif isinstance(extra, dict):
        yield f"{prefix}NAME", _describe(extra)


def config_keys() -> str:
    """Every key config.toml may set, with the values it accepts (from the JSON Schema)."""
    from hermes_tui.config_schema import CONFIG_SCHEMA

    rows = ["| key | accepts |", "|---|---|"]
    rows += [f"| `{key}` | {value} |" for key, value in _keys(CONFIG_SCHEMA, "")]
    return "\n".join(rows) + "\n"


def modules() -> str:
    """Every module of the three packages with the first line of its docstring."""
    import ast

    rows = ["| module | what it is |", "|---|---|"]
    for package in ("hermes_tui", "agents", "sentinel"):
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            text = path.read_text(encoding="utf-8")
            doc = ast.get_docstring(ast.parse(text)) or ""
            first = doc.strip().split("\n\n")[0]
            if path.name == "__init__.py" and not first:
                continue
            rows.append(f"| `{rel}` | {_cell(first)} |")
    return "\n".join(rows) + "\n"


GENERATORS: dict[str, Callable[[], str]] = {
    "modules": modules,
    "commands": commands,
    "checks": checks,
    "config-keys": config_keys,
}


def render(text: str) -> str:
    """``text`` with every generated block replaced by what the code says now."""

    def fill(m: re.Match[str]) -> str:
        name = m.group("name")
        if name not in GENERATORS:
            raise SystemExit(f"unknown generated block {name!r} (known: {', '.join(GENERATORS)})")
        return m.group(1) + GENERATORS[name]() + m.group(4)

    return _BLOCK.sub(fill, text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="fail if a generated block is stale")
    args = ap.parse_args(argv)
    stale = []
    for rel in FILES:
        path = ROOT / rel
        old = path.read_text(encoding="utf-8")
        new = render(old)
        if new != old:
            stale.append(rel)
            if not args.check:
                path.write_text(new, encoding="utf-8")
    if args.check and stale:
        print(
            f"generated docs are stale in {', '.join(stale)}; run: python -m hermes_tui.docs_gen",
            file=sys.stderr,
        )
        return 1
    if not args.check:
        print(f"updated {', '.join(stale)}" if stale else "docs up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
