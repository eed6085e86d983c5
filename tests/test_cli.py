"""The CLI surface: help for every command, doctor on good and broken configs, clean errors."""

from __future__ import annotations

import asyncio
import json

import pytest
from click.testing import CliRunner

from hermes_tui.cli import main
from hermes_tui.config import load_config

from .conftest import ROOT

COMMANDS = [
    [],
    ["chat"],
    ["batch"],
    ["log"],
    ["log", "show"],
    ["log", "search"],
    ["review"],
    ["plan"],
    ["doctor"],
    ["web"],
]


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: " ".join(c) or "hermes")
def test_every_command_has_help(cmd):
    result = CliRunner().invoke(main, [*cmd, "--help"])
    assert result.exit_code == 0
    assert result.output.startswith("Usage: ")
    assert "--help" in result.output


def test_doctor_on_the_default_config(tmp_path):
    result = CliRunner().invoke(
        main,
        ["doctor", "--json", "--config", str(ROOT / "config.toml"), "--db", str(tmp_path / "d.db")],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["ok"] and report["problems"] == []
    assert "CPU" in report["llama_cpp"]["backends"]
    assert report["models"]["smollm2"]["bytes"] > 50_000_000
    assert report["database"]["path"] == str(tmp_path / "d.db")


def test_doctor_on_a_broken_config_names_the_problem(tmp_path):
    bad = tmp_path / "config.toml"
    bad.write_text((ROOT / "config.toml").read_text().replace("embedded:smollm2-135m", "gone.gguf"))
    result = CliRunner().invoke(main, ["doctor", "--config", str(bad)])
    assert result.exit_code == 1
    assert (
        f"PROBLEM       {bad}: models.smollm2.path: model file not found: {tmp_path}/gone.gguf"
        in result.output
    )


def test_log_on_a_corrupt_database_is_one_line(tmp_path):
    db = tmp_path / "junk.db"
    db.write_bytes(b"this is not sqlite" * 100)
    result = CliRunner().invoke(main, ["log", "--db", str(db)])
    assert result.exit_code == 3
    assert result.stderr.count("\n") == 1 and str(db) in result.stderr
    assert db.read_bytes() == b"this is not sqlite" * 100  # nothing overwritten


async def _empty_store(path):
    from hermes_tui.store import Store

    store = await Store.open(path)
    await store.close()


def test_log_show_unknown_session(tmp_path):
    db = tmp_path / "h.db"
    asyncio.run(_empty_store(db))
    result = CliRunner().invoke(main, ["log", "--db", str(db), "show", "42"])
    assert result.exit_code == 2
    assert "no session 42" in result.stderr


async def _store_with_session(path, title):
    from hermes_tui.store import Store

    async with await Store.open(path) as store:
        sid = await store.create_session("chat", title=title)
        await store.add_message(sid, "architect", "user", f"a question of {title}")


@pytest.mark.parametrize(
    "argv",
    [
        ["--db", "{db}", "log"],
        ["log", "--db", "{db}"],
        ["--db", "{db}", "log", "search", "mine"],
        ["log", "--db", "{db}", "search", "mine"],
        ["log", "search", "mine", "--db", "{db}"],
    ],
    ids=lambda a: " ".join(a),
)
def test_db_before_or_after_the_command_is_the_db_used(tmp_path, argv):
    db = tmp_path / "mine.db"
    asyncio.run(_store_with_session(db, "mine"))
    result = CliRunner().invoke(main, [a.format(db=db) for a in argv])
    assert result.exit_code == 0, result.output
    assert "mine" in result.output


def test_config_before_the_command_is_the_config_used(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("x = [\n")
    for argv in (["--config", str(bad), "log"], ["--config", str(bad), "batch", "s.toml"]):
        result = CliRunner().invoke(main, argv)
        assert result.exit_code == 2, (argv, result.output)
        assert result.stderr.startswith(f"hermes: {bad}: invalid TOML")


def test_log_with_a_broken_hermes_config_says_so(tmp_path, monkeypatch):
    bad = tmp_path / "bad.toml"
    bad.write_text("x = [\n")
    monkeypatch.setenv("HERMES_CONFIG", str(bad))
    result = CliRunner().invoke(main, ["log"])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"hermes: {bad}: invalid TOML")


def test_log_search_prints_one_line_per_match(tmp_path):
    db = tmp_path / "h.db"

    async def fill():
        from hermes_tui.store import Store

        async with await Store.open(db) as store:
            sid = await store.create_session("chat")
            await store.add_message(sid, "coder", "assistant", "import os\nimport pickle\nx = 1")

    asyncio.run(fill())
    result = CliRunner().invoke(main, ["log", "search", "pick*", "--db", str(db)])
    assert result.exit_code == 0
    [line] = result.output.splitlines()
    assert line.startswith("session 1  coder") and "pickle" in line


def test_log_search_says_who_wrote_it_folds_repeats_and_says_when_cut(tmp_path):
    db = tmp_path / "h.db"

    async def fill():
        from hermes_tui.store import Store

        async with await Store.open(db) as store:
            sid = await store.create_session("chat")
            await store.add_message(sid, "coder", "user", "@coder where is the password file")
            await store.add_message(sid, "coder", "assistant", "The password is in vault.txt")
            for _ in range(3):
                await store.add_message(
                    sid, "coder", "sentinel", "Fix the password leak", hidden=True
                )
            for i in range(4):
                await store.add_message(sid, "critic", "assistant", f"passwords note {i}")

    asyncio.run(fill())
    out = CliRunner().invoke(main, ["log", "search", "passw", "--db", str(db)]).output
    lines = out.splitlines()
    assert any(" you → coder " in line and "where is" in line for line in lines)
    assert any(line.startswith("session 1  coder ") and "vault" in line for line in lines)
    assert len(lines) == 6  # prefix "passw" matched every message; none hidden shown twice
    js = CliRunner().invoke(main, ["log", "search", "password", "--db", str(db), "--json"])
    roles = {json.loads(line)["role"] for line in js.output.splitlines()}
    assert roles == {"user", "assistant"}
    cut = CliRunner().invoke(main, ["log", "search", "pass", "--db", str(db), "--limit", "2"])
    assert cut.output.splitlines()[-1] == "(the first 2 matches; --limit N shows more)"


def test_log_search_folds_identical_lines(tmp_path):
    db = tmp_path / "h.db"

    async def fill():
        from hermes_tui.store import Store

        async with await Store.open(db) as store:
            for _ in range(3):
                sid = await store.create_session("chat")
                await store.add_message(sid, "coder", "assistant", "same answer again")

    asyncio.run(fill())
    out = CliRunner().invoke(main, ["log", "search", "same", "--db", str(db)]).output
    [line] = out.splitlines()
    assert line.startswith("sessions 1, 2, 3  coder") and line.endswith("(×3)")


def test_unknown_command_is_usage_error():
    result = CliRunner().invoke(main, ["fly"])
    assert result.exit_code == 2
    assert "No such command 'fly'" in result.output


def test_plan_for_the_seed_rig(tmp_path):
    """The seed's rig: 4 + 8 + 6 GiB cards and 64 GiB RAM, a Qwen2.5-32B Q4_K_M-shaped GGUF."""
    from .gguf_factory import write_qwen25_32b_q4_k_m

    model = write_qwen25_32b_q4_k_m(tmp_path / "qwen32b.gguf")
    rig = ["--device", "cuda:0=4GiB", "--device", "cuda:1=8GiB", "--device", "cuda:2=6GiB"]
    result = CliRunner().invoke(main, ["plan", str(model), *rig, "--ram", "64GiB", "--json"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)
    assert plan["fits"]
    layers = {d["name"]: d["n_layers"] for d in plan["devices"]}
    assert layers["cuda:1"] > layers["cuda:2"] > layers["cuda:0"] > 0
    assert 36 <= plan["n_gpu_layers"] <= 56 and layers["cpu"] == 64 - plan["n_gpu_layers"]
    table = CliRunner().invoke(main, ["plan", str(model), *rig, "--ram", "64GiB"]).output
    assert f"n_gpu_layers={plan['n_gpu_layers']}" in table
    assert all(len(line) <= 80 for line in table.splitlines())


def test_plan_that_cannot_fit_exits_1_with_the_reason(tmp_path):
    from .gguf_factory import write_qwen25_32b_q4_k_m

    model = write_qwen25_32b_q4_k_m(tmp_path / "qwen32b.gguf")
    result = CliRunner().invoke(
        main, ["plan", str(model), "--device", "cuda:0=4GiB", "--ram", "8GiB"]
    )
    assert result.exit_code == 1
    assert "fits: NO - does not fit" in result.output


def test_plan_of_a_config_model_with_a_broken_config_names_the_configs_problem(tmp_path):
    config = tmp_path / "config.toml"
    text = (ROOT / "config.toml").read_text().replace("temperature =", "temprature =", 1)
    config.write_text(text)
    result = CliRunner().invoke(main, ["--config", str(config), "plan", "smollm2"])
    assert result.exit_code == 2
    # It used to read the name as a path: "model file not found: smollm2".
    assert result.output.startswith(f"hermes: {config}: personas.")
    assert "temprature: unknown key" in result.output and len(result.output.splitlines()) == 1


def test_plan_for_a_config_model_uses_its_n_ctx_and_the_pools_budget(tmp_path):
    config = tmp_path / "config.toml"
    text = (ROOT / "config.toml").read_text().replace('memory = "8GiB"', 'memory = "3GiB"')
    config.write_text(text)
    result = CliRunner().invoke(main, ["--config", str(config), "plan", "smollm2", "--json"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)
    # The model's n_ctx in config.toml (not the 4096 default), once per sequence the pool
    # gives it (seqs_per_model): the bytes the pool itself will reserve, the same number.
    assert plan["n_ctx"] == 2048 * 3 and plan["sequences"] == 3
    assert [d["usable_bytes"] for d in plan["devices"]] == [3 * 2**30]
    from agents.pool.pool import estimate_bytes

    spec = load_config(config).models["smollm2"]
    assert sum(d["total_bytes"] for d in plan["devices"]) == estimate_bytes(spec, 3)
    flags = ["--ram", "5GiB", "--n-ctx", "1024", "--json"]
    plan = json.loads(
        CliRunner().invoke(main, ["plan", "smollm2", "--config", str(config), *flags]).output
    )
    assert plan["n_ctx"] == 1024 and plan["devices"][0]["usable_bytes"] == 5 * 2**30


@pytest.mark.parametrize(
    "devices, said",
    [
        (["cuda:0=1GiB", "cuda:0=2GiB"], "--device cuda:0 is given twice"),
        (["cpu=4GiB"], "the CPU's budget is --ram"),
        (["foo=4GiB"], "expected cuda:N or vulkan:N"),
        (["gpu0=8G"], "expected cuda:N or vulkan:N"),
    ],
)
def test_plan_refuses_device_lists_that_mean_nothing(devices, said):
    flags = [x for d in devices for x in ("--device", d)]
    result = CliRunner().invoke(main, ["plan", "embedded:smollm2-135m", *flags])
    assert result.exit_code == 2 and said in result.stderr and result.stderr.count("\n") == 1


def test_log_show_of_an_impossible_session_id_is_a_usage_error():
    result = CliRunner().invoke(main, ["log", "show", "99999999999999999999999"])
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_plan_with_no_context_is_a_usage_error():
    result = CliRunner().invoke(main, ["plan", "embedded:smollm2-135m", "--n-ctx", "0"])
    assert result.exit_code == 2
    assert result.stderr == "hermes: --n-ctx 0: expected a positive number of tokens\n"


def test_plan_bad_device_spec_is_usage_error(tmp_path):
    result = CliRunner().invoke(main, ["plan", "embedded:smollm2-135m", "--device", "cuda:0"])
    assert result.exit_code == 2
    assert (
        result.stderr.strip() == "hermes: --device 'cuda:0': expected NAME=SIZE, e.g. cuda:0=8GiB"
    )


def test_sentinel_check_flags_saved_text_like_a_stream(tmp_path):
    saved = tmp_path / "answer.md"
    saved.write_text("To clean up run:\n```sh\nrm -rf /\n```\n")
    result = CliRunner().invoke(
        main, ["sentinel", "check", str(saved), "--persona", "coder", "--json"]
    )
    assert result.exit_code == 1  # a critical verdict
    [verdict] = [json.loads(line) for line in result.output.splitlines()]
    assert verdict["code"] == "E_UNSAFE_COMMAND" and verdict["severity"] == "critical"
    start, end = verdict["span"]
    assert saved.read_text()[start:end] == "rm -rf /"


def test_sentinel_check_json_persona_minor_only_exits_0():
    result = CliRunner().invoke(
        main, ["sentinel", "check", "-", "--persona", "architect"], input='Sure! {"goal": "x"}\n'
    )
    assert result.exit_code == 0
    assert "E_JSON_BROKEN" in result.output and "«S»" in result.output


def test_sentinel_check_without_persona_applies_no_personas_contract():
    """Plain prose was judged with the default persona's JSON contract: E_JSON_BROKEN."""
    prose = "The deployment went fine. We restarted the web tier and cleared the cache.\n"
    plain = CliRunner().invoke(main, ["sentinel", "check", "-"], input=prose)
    assert plain.exit_code == 0
    assert plain.output.splitlines() == [
        "contract: none (only the checks that need no persona; --persona NAME adds one's)",
        "pass: no verdicts",
    ]
    as_json = CliRunner().invoke(main, ["sentinel", "check", "-", "--json"], input=prose)
    assert as_json.exit_code == 0 and as_json.output == ""  # JSONL stays JSONL
    # the general checks still run: a secret or a destructive command is caught
    leak = "Run this:\n```sh\nrm -rf /\n```\n"
    unsafe = CliRunner().invoke(main, ["sentinel", "check", "-", "--json"], input=leak)
    assert unsafe.exit_code == 1
    assert [json.loads(line)["code"] for line in unsafe.output.splitlines()] == ["E_UNSAFE_COMMAND"]
    # with --persona, that persona's contract: the same prose is not the architect's JSON
    named = CliRunner().invoke(
        main, ["sentinel", "check", "-", "--persona", "architect"], input=prose
    )
    assert named.output.splitlines()[0] == "contract: architect's (json)"
    assert "E_JSON_BROKEN" in named.output
    assert "--persona NAME" in CliRunner().invoke(main, ["sentinel", "check", "--help"]).output


def test_sentinel_check_unknown_persona_is_exit_2():
    result = CliRunner().invoke(main, ["sentinel", "check", "-", "--persona", "poet"], input="hi")
    assert result.exit_code == 2
    assert (
        result.stderr.strip()
        == "hermes: unknown persona 'poet' (expected one of: architect, coder, critic)"
    )


def test_log_filters_sessions_like_the_review_screen(tmp_path):
    from .test_tui import seed_store

    db = tmp_path / "r.db"
    asyncio.run(seed_store(db))

    def titles(*flags):
        result = CliRunner().invoke(main, ["log", "--db", str(db), "--json", *flags])
        assert result.exit_code == 0, result.output
        return [json.loads(line)["title"] for line in result.output.splitlines()]

    assert titles() == ["leaky coder", "broken json", "clean plan"]
    assert titles("--code", "E_SECRET") == ["leaky coder"]
    assert titles("--severity", "minor") == ["broken json"]
    assert titles("--persona", "architect") == ["clean plan"]
    assert titles("--since", "2025-03-11", "--until", "2025-03-11") == ["broken json"]
    none = CliRunner().invoke(main, ["log", "--db", str(db), "--until", "2025-03-01"])
    assert none.output == f"no sessions matching until=2025-03-01 in {db}\n"
    bad = CliRunner().invoke(main, ["log", "--db", str(db), "--since", "yesterday"])
    assert bad.exit_code == 2 and "'yesterday' does not match the format" in bad.output


def test_sentinel_check_uses_the_personas_patterns_and_the_severity_overrides(tmp_path):
    """``[personas.X.patterns]`` and ``[sentinel.severity]`` reach the checks of a stream."""
    from tests.conftest import ROOT

    text = "Filed as TKT-1234567 and TKT-42.\n"  # 7 digits: malformed; 2: well formed
    base = (ROOT / "config.toml").read_text()
    plain = tmp_path / "plain.toml"
    plain.write_text(base)
    mine = tmp_path / "mine.toml"
    mine.write_text(
        base.replace(
            "# [personas.coder.patterns]",
            "[personas.coder.patterns]\n"
            "ticket = { trigger = '^TKT-\\d', strict = '^TKT-\\d{1,6}[.,]?$' }\n#",
        ).replace("# [sentinel.severity]", '[sentinel.severity]\nE_PATTERN = "critical"\n#')
    )
    args = ["sentinel", "check", "-", "--persona", "coder", "--json"]
    before = CliRunner().invoke(main, [*args, "--config", str(plain)], input=text)
    assert before.exit_code == 0 and before.output == ""
    after = CliRunner().invoke(main, [*args, "--config", str(mine)], input=text)
    assert after.exit_code == 1, after.output  # critical now
    [verdict] = [json.loads(line) for line in after.output.splitlines()]
    assert (verdict["code"], verdict["severity"]) == ("E_PATTERN", "critical")
    start, end = verdict["span"]
    assert text[start:end] == "TKT-1234567"


def test_sentinel_check_flags_a_password_given_to_a_command_as_critical():
    line = "PGPASSWORD=s3cr3tpass psql -h db -U app shop\n"
    result = CliRunner().invoke(main, ["sentinel", "check", "-", "--json"], input=line)
    assert result.exit_code == 1
    [verdict] = [json.loads(v) for v in result.output.splitlines()]
    assert (verdict["code"], verdict["severity"]) == ("E_SECRET", "critical")
    assert line[slice(*verdict["span"])] == "s3cr3tpass"


def test_web_with_a_port_out_of_range_is_a_usage_error():
    """`hermes web --port 99999` was an internal error (OverflowError from bind)."""
    result = CliRunner().invoke(main, ["web", "--port", "99999"])
    assert result.exit_code == 2
    assert "99999 is not in the range 1<=x<=65535" in result.output
    assert "internal error" not in result.output


def test_error_lines_show_the_escapes_in_a_file_name_never_send_them(tmp_path):
    """A file named with a terminal escape (a title change) was quoted raw in the error."""
    name = tmp_path / "a\x1b]0;pwned\x07b.txt"
    name.write_bytes(b"\xff\xfe")
    result = CliRunner().invoke(main, ["sentinel", "check", str(name)])
    assert result.exit_code == 2
    assert result.stderr == (
        f"hermes: {tmp_path}/a\\x1b]0;pwned\\x07b.txt: expected UTF-8 text, found invalid bytes\n"
    )


def test_doctor_and_plan_show_the_escapes_in_a_config_value(tmp_path):
    from tests.conftest import ROOT

    config = tmp_path / "config.toml"
    config.write_text(
        (ROOT / "config.toml")
        .read_text()
        .replace('path = "embedded:smollm2-135m"', 'path = "m\\u001b]0;pwned\\u0007.gguf"')
    )
    doctor = CliRunner().invoke(main, ["doctor", "--config", str(config)])
    assert doctor.exit_code == 1
    assert "m\\x1b]0;pwned\\x07.gguf" in doctor.output and "model file not found" in doctor.output
    plan = CliRunner().invoke(main, ["plan", "smollm2", "--config", str(config)])
    assert plan.exit_code == 2
    for out in (doctor.output, plan.output):
        assert "\x1b" not in out and "\x07" not in out


def test_sentinel_check_text_output_neutralises_escapes_and_hides_secrets():
    text = "spam \x1b]0;pwned\x07 " * 6 + "\nPGPASSWORD=s3cr3tpass psql -h db\n"
    result = CliRunner().invoke(main, ["sentinel", "check", "-"], input=text)
    assert result.exit_code == 1
    assert "\x1b" not in result.output and "\x07" not in result.output
    assert "\\x1b]0;pwned\\x07" in result.output  # shown, not obeyed
    assert "s3cr3tpass" not in result.output  # this output lands in terminals and CI logs
    assert "«[REDACTED: 10 characters]»" in result.output


@pytest.mark.parametrize(
    "argv,said",
    [
        (["batch"], "hermes: Missing argument 'SCRIPT'. (see hermes batch --help)"),
        (
            ["log", "show", "x"],
            "hermes: Invalid value for 'SESSION_ID': 'x' is not a valid integer range. "
            "(see hermes log show --help)",
        ),
        (["fly"], "hermes: No such command 'fly'. (see hermes --help)"),
        (
            ["log", "--bogus\x1b[2J"],
            "hermes: No such option '--bogus\\x1b[2J'. (see hermes log --help)",
        ),
    ],
)
def test_a_usage_error_is_one_line(argv, said):
    """click's usage block (Usage:, Try ..., a blank line, Error: ...) is one line now, and
    what it quotes from the command line cannot clear the screen. (CliRunner names the
    program 'main'; the installed script says 'hermes'.)"""
    result = CliRunner().invoke(main, argv)
    assert result.exit_code == 2
    assert result.stderr == said + "\n" and result.stdout == ""


def test_a_group_without_its_command_still_shows_its_help():
    result = CliRunner().invoke(main, ["sentinel"])
    assert result.exit_code == 2 and "check" in result.output and "Usage:" in result.output


def test_log_on_another_programs_database_says_so_and_leaves_it_alone(tmp_path):
    """`hermes log` said 'schema version 0 (not a hermes database...); open it once writable
    with hermes to upgrade' of another program's SQLite file: advice to let hermes write it."""
    import hashlib
    import sqlite3

    db = tmp_path / "app.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE sessions(token TEXT)")
    con.commit()
    con.close()
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    for argv in (["log"], ["log", "show", "1"], ["log", "search", "x"]):
        result = CliRunner().invoke(main, [*argv, "--db", str(db)])
        assert result.exit_code == 3, result.output
        assert result.stderr == (
            f"hermes: {db} is an SQLite database but not a hermes one (it has a table "
            "'sessions'); move it aside or pass another --db\n"
        )
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before


def test_log_takes_any_limit_and_any_day(tmp_path):
    """A --limit past SQLite's integers, or a day no timestamp reaches (0001-01-01,
    9999-12-31), was an internal error (OverflowError, 'year 0 is out of range')."""
    from .test_tui import seed_store

    db = tmp_path / "r.db"
    asyncio.run(seed_store(db))
    huge = "99999999999999999999"
    for argv in (
        ["log", "--limit", huge],
        ["log", "--since", "0001-01-01"],
        ["log", "--until", "9999-12-31"],
        ["log", "--since", "0001-01-01", "--until", "9999-12-31"],
    ):
        result = CliRunner().invoke(main, [*argv, "--db", str(db), "--json"])
        assert result.exit_code == 0, (argv, result.output)
        assert len(result.output.splitlines()) == 3  # every session
    search = CliRunner().invoke(main, ["log", "search", "plan", "--limit", huge, "--db", str(db)])
    assert search.exit_code == 0 and "internal error" not in search.output


def test_a_newline_in_a_stored_title_or_name_cannot_forge_rows(tmp_path):
    """A title holding a newline printed a second, fake row in `hermes log` (and a fake line
    under `hermes log show`'s heading): each session is one row, each heading one line."""
    from hermes_tui.store import Store

    db = tmp_path / "forged.db"
    fake = "\n    2  2026-01-01 00:00  chat      9      0     0  paid invoice"

    async def seed() -> None:
        store = await Store.open(db)
        sid = await store.create_session("batch", title="real" + fake, personas=["coder\nx"])
        await store.add_message(sid, "coder\nx", "user", "find the needle")
        await store.close()

    asyncio.run(seed())
    listed = CliRunner().invoke(main, ["log", "--db", str(db)])
    assert listed.exit_code == 0
    [_, row] = listed.output.splitlines()
    assert row.startswith("    1  ") and row.endswith("paid invoice [coder x]")
    shown = CliRunner().invoke(main, ["log", "show", "1", "--db", str(db)])
    lines = shown.output.splitlines()
    assert lines[0] == "# real 2 2026-01-01 00:00 chat 9 0 0 paid invoice" and lines[1] == ""
    assert "- personas: coder x" in lines
    found = CliRunner().invoke(main, ["log", "search", "needle", "--db", str(db)])
    assert len(found.output.splitlines()) == 1 and "you → coder x" in found.output
