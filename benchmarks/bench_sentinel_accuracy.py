"""The sentinel's accuracy on a corpus built from other projects' public test data.

``benchmarks/sentinel_corpus/cases.jsonl`` (built by ``build_sentinel_corpus.py``; each case
names its source repository and path) holds flawed cases (``expect``: the code the sentinel
must raise) and clean look-alikes (``expect: null``). Every case is fed, in random pieces of
1-8 characters as tokens arrive, through every check a text persona gets (``build_checks``),
with the case's system prompt and persona contract (kind, schema, word limit, banned imports,
declared canaries, requested length) where it has them.

Reported (``benchmarks/results/sentinel_accuracy.json``): flawed cases detected, overall and
per code; clean cases flagged, minor and critical separately; the misses and false alarms
themselves, with their sources. Goals (issue #16): detected >= 95% overall and >= 90% per code,
clean flagged <= 1%, no critical verdict on a clean case.

Run: ``PYTHONPATH=. python benchmarks/bench_sentinel_accuracy.py`` (``--help``: options;
``--only CODE`` measures one code's cases and writes nothing)
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sentinel.checks import build_checks  # noqa: E402
from sentinel.contract import Contract  # noqa: E402
from sentinel.settings import SentinelSettings  # noqa: E402
from sentinel.verdict import Verdict  # noqa: E402

CORPUS = ROOT / "benchmarks" / "sentinel_corpus" / "cases.jsonl"
OUT = ROOT / "benchmarks" / "results" / "sentinel_accuracy.json"


def verdicts_for(case: dict, seed: int = 0) -> list[Verdict]:
    c = case.get("contract") or {}
    contract = Contract(
        kind=c.get("kind", "text"),
        schema=c.get("schema"),
        max_words=c.get("max_words"),
        banned_imports=tuple(c.get("banned_imports", ())),
        system_prompt=case.get("system_prompt", ""),
        canaries=tuple(c.get("canaries", ())),
        max_tokens=c.get("max_tokens"),
    )
    checks = build_checks(contract, SentinelSettings())
    rng = random.Random(seed)
    text = case["text"]
    out: list[Verdict] = []
    i = 0
    while i < len(text):
        n = rng.randint(1, 8)
        for c in checks:
            out += c.feed(text[i : i + n])
        i += n
    for c in checks:
        out += c.finish()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--only",
        metavar="CODE",
        help="only the cases that expect CODE (E_SECRET; 'clean' for the clean ones); "
        f"prints the figures, does not write {OUT.relative_to(ROOT)}",
    )
    args = ap.parse_args()
    cases = [json.loads(line) for line in CORPUS.read_text().splitlines() if line.strip()]
    if args.only:
        want = None if args.only == "clean" else args.only
        cases = [c for c in cases if c["expect"] == want]
    per_code: dict[str, list[int]] = {}
    misses, false_alarms = [], []
    clean = {"cases": 0, "minor": 0, "critical": 0}
    sources = Counter(c["repo"] for c in cases)
    for case in cases:
        got = verdicts_for(case)
        where = f"{case['repo']}:{case['path']}"
        if case["expect"]:
            hit = any(v.code == case["expect"] for v in got)
            per_code.setdefault(case["expect"], [0, 0])
            per_code[case["expect"]][0] += hit
            per_code[case["expect"]][1] += 1
            if not hit:
                misses.append({"id": case["id"], "source": where, "text": case["text"][:160]})
        else:
            clean["cases"] += 1
            crit = [v for v in got if v.severity == "critical"]
            if crit:
                clean["critical"] += 1
            elif got:
                clean["minor"] += 1
            if got:
                false_alarms.append(
                    {
                        "id": case["id"],
                        "source": where,
                        "verdicts": [f"{v.severity} {v.code}: {v.detail[:80]}" for v in got],
                        "text": case["text"][:160],
                    }
                )
    flawed = sum(t for _, t in per_code.values())
    detected = sum(d for d, _ in per_code.values())
    n = len(cases)
    results = {
        "cases": n,
        "sources": dict(sources),
        "flawed": flawed,
        "clean": clean["cases"],
        "clean_share": round(clean["cases"] / n, 3),
        "detected": detected,
        "detected_rate": round(detected / max(flawed, 1), 4),
        "per_code": {
            code: {"detected": d, "cases": t, "rate": round(d / t, 4)}
            for code, (d, t) in sorted(per_code.items())
        },
        "clean_flagged_minor": clean["minor"],
        "clean_flagged_critical": clean["critical"],
        "clean_flagged_rate": round(
            (clean["minor"] + clean["critical"]) / max(clean["cases"], 1), 4
        ),
        "misses": misses,
        "false_alarms": false_alarms,
    }
    if not args.only:
        OUT.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    summary = {k: v for k, v in results.items() if k not in ("misses", "false_alarms")}
    print(json.dumps(summary, indent=2))
    print(f"{len(misses)} misses, {len(false_alarms)} clean cases flagged")
    if args.only:  # nothing written: show them here
        for item in misses + false_alarms:
            print(json.dumps(item, ensure_ascii=False)[:300])


if __name__ == "__main__":
    main()
