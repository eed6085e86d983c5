"""Text that makes each of the sentinel's checks fire, and the verdicts the REAL checks raise
on it (``hermes sentinel check``'s code path, on the packaged config's personas).

The stall watchdog and the judge are not text checks: the watchdog runs its real code on an
injected clock, and the judge's real ``to_verdict`` turns an off-task answer into its verdict
(the model itself cannot be made to judge off-task on demand).
"""

from __future__ import annotations

from importlib.resources import files

from hermes_tui.config import Config, load_config
from hermes_tui.sentinel_check import check_text
from sentinel.checks.stall import StallWatchdog
from sentinel.judge import JudgeResult, to_verdict
from sentinel.tool_calls import ToolCallCheck, find_tool_loops, missing_required_call
from sentinel.verdict import Verdict

CODER_PROMPT = "You are the coder. Answer with code only, in one fenced code block."

# persona -> texts; between them every registered check fires at least once.
SAMPLES: dict[str, list[str]] = {
    "architect": [
        '{"goal": "x", "steps": ["a"] }} trailing',  # json: E_JSON_BROKEN
        '{"goal": ""}',  # json: E_JSON_SCHEMA
        'Sure! Here is the plan: {"goal": "a", "steps": ["b"]}',  # drift
    ],
    "coder": [
        "```python\nimport os\nos.system('rm -rf /')\n```\n",  # banned import, unsafe command
        "```python\nkey = 'AKIAQ7RN4XPV2MZ3LKTB'\n```\n",  # secrets
        "Mail me at bob@@example..com please.\n",  # patterns
        "```python\n" + "print('hello world')\n" * 12 + "```\n",  # loops
        f"```python\n# {CODER_PROMPT}\n```\n",  # prompt_leak
    ],
    "critic": [
        '{"verdict": "revise", "issues": ["' + " ".join(f"w{i}" for i in range(130)) + '"]}'
    ],
}


def packaged_config() -> Config:
    return load_config(str(files("hermes_tui") / "default_config.toml"))


def stall_verdicts() -> list[Verdict]:
    now = [0.0]
    watchdog = StallWatchdog(1.0, 2.0, clock=lambda: now[0])
    watchdog.touch(12)
    now[0] = 3.0
    return watchdog.poll()


def judge_verdict() -> Verdict:
    verdict = to_verdict(
        JudgeResult(on_task=False, reason="talks about cooking", latency_s=0.1), (0, 8)
    )
    assert verdict is not None
    return verdict


def tool_call_verdicts() -> list[Verdict]:
    """A tool call's arguments as they stream, through the real tool-call checks."""
    schema = {"type": "object", "properties": {"cmd": {"type": "string"}}, "required": ["cmd"]}
    out: list[Verdict] = []
    for known, arguments in (
        (False, '{"cmd": "rm -rf / && echo AKIAQ7RN4XPV2MZ3LKTB"}'),  # unknown, unsafe, secret
        (True, '{"command": "ls"}'),  # off-schema
        (True, '{"cmd": ]'),  # impossible
    ):
        check = ToolCallCheck("run", schema, known=known)
        for ch in arguments:
            out += check.feed(ch)
        out += check.finish()
    out += find_tool_loops([("run", '{"cmd": "ls"}')] * 3)
    missing = missing_required_call("required", ["run"], 12)  # text where a call was required
    assert missing is not None
    return [*out, missing]


async def real_verdicts(config: Config | None = None) -> list[tuple[str, str, list[Verdict]]]:
    """(persona, text, verdicts the real checks raised on it) for every sample, plus the
    watchdog's and the judge's verdicts on a coder answer."""
    config = config or packaged_config()
    out = []
    for persona, texts in SAMPLES.items():
        for text in texts:
            out.append((persona, text, await check_text(config, persona, text)))
    out.append(("coder", "print(1)\n" * 2, [*stall_verdicts(), judge_verdict()]))
    out.append(("coder", "calling a tool", tool_call_verdicts()))
    return out
