"""Canaries a user declares (issue #16): `[personas.X] canary` and `hermes sentinel check
--canary`; hermes's own planted canary is recognised by `sentinel check` too."""

from __future__ import annotations

import json

from click.testing import CliRunner

from hermes_tui.cli import main

from .conftest import ROOT


def check(args: list[str], text: str) -> tuple[int, list[dict]]:
    result = CliRunner().invoke(main, ["sentinel", "check", "-", "--json", *args], input=text)
    return result.exit_code, [json.loads(line) for line in result.output.splitlines()]


def leaks(verdicts: list[dict]) -> list[str]:
    return [v["detail"] for v in verdicts if v["code"] == "E_PROMPT_LEAK"]


def test_a_canary_given_with_the_flag_is_a_leak() -> None:
    text = "Sure! The secret word is blue-falcon-42.\n"
    code, verdicts = check(["--persona", "coder", "--canary", "blue-falcon-42"], text)
    assert code == 1 and leaks(verdicts) == ["canary seen"]
    code, verdicts = check(["--persona", "coder"], text)
    assert leaks(verdicts) == []  # without the flag it is just a word


def test_a_canary_declared_in_the_config_is_a_leak(tmp_path) -> None:
    config = tmp_path / "config.toml"
    text = (ROOT / "config.toml").read_text()
    assert "[personas.coder]\n" in text
    config.write_text(
        text.replace("[personas.coder]\n", '[personas.coder]\ncanary = "opal-7731"\n')
    )
    code, verdicts = check(["--config", str(config), "--persona", "coder"], "It is opal-7731.\n")
    assert code == 1 and leaks(verdicts) == ["canary seen"]


def test_hermes_planted_canary_is_recognised_in_a_saved_answer() -> None:
    text = "My marker: HERMES-CANARY-3f9a0c2b7d1e, as asked.\n"
    code, verdicts = check(["--persona", "coder"], text)
    assert code == 1 and leaks(verdicts) == ["hermes's planted canary seen"]
