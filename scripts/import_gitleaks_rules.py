"""Writes sentinel/gitleaks_rules.json from gitleaks' published default rules (data, not code).

gitleaks (https://github.com/gitleaks/gitleaks, MIT License, Copyright (c) 2019 Zachary Rice)
publishes its detection rules as ``config/gitleaks.toml``: for each rule a regex (Go RE2
syntax), the keywords every match contains, an entropy floor, the secret's capture group and
allowlists. This script converts the regexes to Python's syntax (a mid-pattern ``(?i)``
becomes a scoped ``(?i:…)``, ``\\z`` becomes ``\\Z``, a literal ``[`` inside a class is
escaped) and keeps what the sentinel can use on one line of text.

Left out, each for a reason:
* rules the sentinel covers otherwise or that need more than a line: ``generic-api-key``
  and ``hashicorp-tf-password`` (detect-secrets' keyword detector is the generic rule),
  ``jwt``/``jwt-base64`` (detect-secrets' JWT plugin decodes the token), ``aws-access-token``
  (detect-secrets' AWS plugin), ``kubernetes-secret-yaml`` and ``curl-auth-*`` (multi-line),
  ``pkcs12-file`` (a file, not text);
* allowlists keyed on file paths or commits (the sentinel reads an answer, not a repository),
  and the ``gcp-api-key`` allowlist of published Firebase keys: our policy (README) is that
  published example keys count.

Run: ``python scripts/import_gitleaks_rules.py [path/to/gitleaks.toml [commit]]`` (default:
the mirror under /work/.mirror).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "sentinel" / "gitleaks_rules.json"
MIRROR = Path("/work/.mirror/gitleaks+gitleaks/repo")
SKIP = {
    "generic-api-key",
    "hashicorp-tf-password",
    "jwt",
    "jwt-base64",
    "aws-access-token",
    "kubernetes-secret-yaml",
    "curl-auth-header",
    "curl-auth-user",
    "pkcs12-file",
}
POLICY_ALLOWLISTS = {"gcp-api-key"}  # published keys count (README)


def go_to_python(rx: str) -> str:
    """Go RE2 syntax -> Python ``re``: scoped mid-pattern flags, ``\\z``, ``[`` in classes."""
    out: list[str] = []
    closes: list[int] = []  # per open group: how many ')' to add when it closes
    closes_top = 0
    i, n = 0, len(rx)
    in_class = False
    while i < n:
        c = rx[i]
        if c == "\\" and i + 1 < n:
            nxt = rx[i + 1]
            out.append("\\Z" if nxt == "z" and not in_class else c + nxt)
            i += 2
            continue
        if in_class:
            if c == "]" and not (out and out[-1] in ("[", "[^")):
                in_class = False
                out.append(c)
            elif c == "[":
                out.append("\\[")
            else:
                out.append(c)
            i += 1
            continue
        if c == "[":
            in_class = True
            if rx.startswith("[^", i):
                out.append("[^")
                i += 2
            else:
                out.append("[")
                i += 1
            if i < n and rx[i] == "]":  # a ']' first in a class is literal
                out.append("\\]")
                i += 1
            continue
        m = re.match(r"\(\?([a-zA-Z-]+)\)", rx[i:])
        if m and (i > 0 or closes or "".join(out)):
            out.append(f"(?{m.group(1)}:")
            if closes:
                closes[-1] += 1
            else:
                closes_top += 1
            i += m.end()
            continue
        if c == "(":
            closes.append(0)
        elif c == ")" and closes:
            out.append(")" * closes.pop())
        out.append(c)
        i += 1
    out.append(")" * closes_top)
    return "".join(out)


def convert(cfg: dict, commit: str) -> dict:
    glob = cfg.get("allowlist", {})
    rules = []
    for r in cfg["rules"]:
        if r["id"] in SKIP or "regex" not in r:
            continue
        lists = []
        for a in r.get("allowlists", []):
            if r["id"] in POLICY_ALLOWLISTS or a.get("paths") or a.get("commits"):
                continue
            lists.append(
                {
                    "target": a.get("regexTarget", "secret"),
                    "regexes": [go_to_python(x) for x in a.get("regexes", [])],
                    "stopwords": [s.lower() for s in a.get("stopwords", [])],
                }
            )
        rx = go_to_python(r["regex"])
        re.compile(rx)
        rules.append(
            {
                "id": r["id"],
                "regex": rx,
                "keywords": sorted({k.lower() for k in r.get("keywords", [])}),
                "entropy": r.get("entropy", 0.0),
                "group": r.get("secretGroup", 0),
                "allowlists": lists,
            }
        )
    # the generic rule's allowlist of names that hold no secret (key_id, secret_name,
    # keyVaultToStoreSecrets, csrf_token, token_url, ...): applied to the keyword detector
    generic = next(r for r in cfg["rules"] if r["id"] == "generic-api-key")
    names = [
        go_to_python(x)
        for a in generic.get("allowlists", [])
        if a.get("regexTarget") == "match" and not a.get("paths")
        for x in a.get("regexes", [])
    ]
    return {
        "source": "gitleaks/gitleaks config/gitleaks.toml",
        "keyword_name_allowlist": names,
        "commit": commit,
        "license": "MIT License, Copyright (c) 2019 Zachary Rice",
        "made_by": "scripts/import_gitleaks_rules.py",
        "global_regexes": [go_to_python(x) for x in glob.get("regexes", [])],
        "global_stopwords": [s.lower() for s in glob.get("stopwords", [])],
        "rules": rules,
    }


def main() -> None:
    if len(sys.argv) > 1:
        text = Path(sys.argv[1]).read_text()
        commit = sys.argv[2] if len(sys.argv) > 2 else "unknown"
    else:
        git = ["git", "--git-dir", str(MIRROR)]
        text = subprocess.run(
            [*git, "show", "HEAD:config/gitleaks.toml"], capture_output=True, text=True, check=True
        ).stdout
        commit = subprocess.run(
            [*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    data = convert(tomllib.loads(text), commit)
    for rx in data["global_regexes"] + data["keyword_name_allowlist"]:
        re.compile(rx)
    OUT.write_text(json.dumps(data, indent=1) + "\n")
    print(f"{len(data['rules'])} rules -> {OUT}")


if __name__ == "__main__":
    main()
