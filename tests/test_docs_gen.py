"""The lists in the docs are the code's: the generator fills each marked block from the code,
and --check fails on a block that says something else."""

from __future__ import annotations

from hermes_tui import docs_gen
from sentinel.registry import CHECK_NAMES


def test_a_stale_block_is_rewritten_from_the_registry() -> None:
    stale = "intro\n<!-- generated:checks (x) -->\n| secret | E_SECRET |\n<!-- /generated:checks -->\nend\n"
    fresh = docs_gen.render(stale)
    assert fresh.startswith("intro\n<!-- generated:checks (x) -->\n| check |")
    assert fresh.endswith("<!-- /generated:checks -->\nend\n")
    assert all(f"| `{name}` |" in fresh for name in CHECK_NAMES)
    assert "| secret |" not in fresh
    assert docs_gen.render(fresh) == fresh


def test_every_command_and_config_key_is_listed() -> None:
    text = docs_gen.commands() + docs_gen.config_keys()
    for needle in ("`hermes log show SESSION_ID`", "`hermes sentinel check FILE`", "`--check`"):
        assert needle in text
    assert "| `storage.redact_secrets` | boolean |" in text
    assert "| `[[pool.devices]] memory` |" in text


def test_check_mode_fails_on_a_stale_file_and_says_how_to_fix(tmp_path, monkeypatch) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text(
        "<!-- generated:checks (x) -->\nold\n<!-- /generated:checks -->\n"
    )
    (tmp_path / "docs" / "architecture.md").write_text("no blocks\n")
    monkeypatch.setattr(docs_gen, "ROOT", tmp_path)
    assert docs_gen.main(["--check"]) == 1
    assert docs_gen.main([]) == 0  # rewrites
    assert docs_gen.main(["--check"]) == 0
