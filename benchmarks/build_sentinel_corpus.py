"""Builds benchmarks/sentinel_corpus/cases.jsonl from other projects' public test data.

Data only (strings from their fixtures and test tables), never their code. Each case records
its source (``repo`` and ``path``), its label (``expect``: the code a detector must raise, or
null for a clean look-alike) and, for prompt leaks, the persona's system prompt.

Sources (mirrors fetched with the workspace's ``fetch`` tool under /work/.mirror):
* secretlint/secretlint: every rule's ``test/snapshots/ng.*/input.*`` (secrets) and
  ``ok.*/input.*`` (clean look-alikes);
* gitleaks/gitleaks: the literal ``tps`` (true positives) and ``fps`` (false positives) of
  ``cmd/generate/config/rules/*.go``;
* koalaman/shellcheck: the shell snippets of ``src/ShellCheck/Analytics.hs`` properties: the
  system-directory ``rm`` checks' positives are destructive, every other snippet is a clean
  command look-alike (shown in a ```sh block);
* promplate/partial-json-parser: the partial documents of ``tests/test_examples.py`` (a
  fenced json block that ends unfinished is broken) and the complete ones (clean);
* NVIDIA/NeMo-Guardrails: the ``instructions`` of its example bots (system prompts: copied
  whole, with a sentence left out, lower-cased = leaks) and their sample conversations' bot
  answers (clean, with that system prompt).
* json-schema-org/JSON-Schema-Test-Suite, skeggse/isemail, servo/rust-url (WPT's URL table),
  protectai/rebuff, and NeMo Guardrails' answers and Python files again: cases for
  E_JSON_SCHEMA, E_PATTERN, E_LOOP, E_DRIFT, E_LENGTH, E_BANNED_IMPORT and declared canaries
  (each function below says what it takes and how it labels; sentinel_corpus/README.md too).

Not used (our independent set is drawn from them): gemini-cli, detect-secrets, llm-guard,
json_repair, python-validators, destructive-command guards.

Run: ``python benchmarks/build_sentinel_corpus.py`` (needs the mirrors).
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
from pathlib import Path

import jsonschema
import yaml

MIRROR = Path("/work/.mirror")
OUT = Path(__file__).resolve().parent / "sentinel_corpus" / "cases.jsonl"


def git(repo: str, *args: str) -> str:
    gitdir = MIRROR / repo.replace("/", "+") / "repo"
    out = subprocess.run(
        ["git", "--git-dir", str(gitdir), *args], capture_output=True, check=True
    ).stdout
    return out.decode("utf-8", errors="replace")


def files(repo: str) -> list[str]:
    return git(repo, "ls-tree", "-r", "--name-only", "HEAD").splitlines()


def show(repo: str, path: str) -> str:
    return git(repo, "show", f"HEAD:{path}")


def case(repo: str, path: str, expect: str | None, text: str, **extra: object) -> dict:
    return {"repo": repo, "path": path, "expect": expect, "text": text, **extra}


def secretlint() -> list[dict]:
    repo = "secretlint/secretlint"
    out = []
    listing = set(files(repo))
    for path in sorted(listing):
        m = re.search(r"/test/snapshots/(ng|ok)[^/]*/input\.[\w.]+$", path)
        if not m or path.startswith(".scaffdog") or "filter-comments" in path:
            continue
        if "ok.database-urls-not-detected" in path:
            continue  # secretlint reports these with its database rule instead: they are secrets
        if (
            "no-homedir" in path
            or "no-k8s-kind-secret" in path
            or "secretlint-rule-pattern" in path
        ):
            continue  # not secrets in the sense of E_SECRET (home paths, k8s kinds, user regexes)
        folder = path.rsplit("/", 1)[0]
        if f"{folder}/.secretlintrc.json" in listing:
            continue  # its result depends on the fixture's own options (allows, disabled rules)
        text = show(repo, path)[:4000]
        if "\ufffd" in text:
            continue  # binary fixtures
        if "secretlint-rule-example" in path:
            continue  # a demo rule that reports the word "secret"
        # the label is secretlint's own expected output (output.json), not the folder's name
        # (ng.basic-auth-ftps-url expects no report)
        try:
            expected = json.loads(show(repo, f"{folder}/output.json"))
        except (subprocess.CalledProcessError, ValueError):
            expected = {"messages": []} if m.group(1) == "ok" else None
        if expected is None:
            continue
        source = expected.get("sourceContent", "")
        found = [source[a:b] for a, b in (x["range"] for x in expected["messages"])]
        if found and all(_placeholder(v) for v in found):
            # every reported value is one character repeated (sk_live_AAAA…, hf_xxxx…): our
            # policy (README) is that a placeholder is not a secret; gitleaks agrees
            out.append(case(repo, path, None, text, relabelled="placeholder values"))
            continue
        out.append(case(repo, path, "E_SECRET" if found else None, text))
    return out


def _placeholder(value: str) -> bool:
    """Each long part of the value (split at ``_``/``-``) is one character repeated."""
    parts = [p for p in re.split(r"[_-]", value) if len(p) >= 8]
    return bool(parts) and all(len(set(p)) == 1 for p in parts)


_GO_STRING = re.compile(r'"((?:[^"\\\n]|\\.)*)"|`([^`]*)`')


def gitleaks() -> list[dict]:
    repo = "gitleaks/gitleaks"
    out = []
    shipped = set(re.findall(r'(?m)^id = "([^"]+)"', show(repo, "config/gitleaks.toml")))
    for path in files(repo):
        if not re.match(r"cmd/generate/config/rules/\w+\.go$", path) or path.endswith("curl.go"):
            continue  # curl.go's cases are multi-line structures, not one string each
        src = show(repo, path)
        # values the rule file lists as published keys (an allowlist's literal regexes, stop
        # words): our policy (README) is that published keys count
        stop = "".join(re.findall(r"StopWords:[^\n]*\n((?:\t+\"[^\n]*\n)+)", src))
        published = {
            x
            for x in re.findall(r"MustCompile\(`([A-Za-z0-9_\-]{16,})`\)", src)
            + re.findall(r'"([A-Za-z0-9]{16,})"', stop)
            if re.search(r"\d", x) and re.search(r"[A-Za-z]", x)
        }
        for m in re.finditer(r"\b(tps|fps)\s*:?=\s*\[\]string\{(.*?)\n\t\}", src, re.S):
            label = "E_SECRET" if m.group(1) == "tps" else None
            ids = re.findall(r'RuleID:\s*"([^"]+)"', src[: m.start()])
            rule = ids[-1] if ids else ""
            if rule not in shipped:
                continue  # a rule gitleaks does not ship in its default config
            note = ""
            for line in m.group(2).splitlines():
                stripped = line.strip()
                if stripped.startswith("//"):
                    note = stripped  # the comment that heads the next strings
                    continue
                if (
                    not stripped
                    or stripped.startswith("//")
                    or "utils." in line
                    or "secrets." in line
                ):
                    continue
                if "+" in stripped.split("//")[0].replace('"+"', ""):
                    continue  # built from pieces at run time
                for s in _GO_STRING.finditer(stripped):
                    raw = s.group(1) if s.group(1) is not None else s.group(2)
                    try:
                        text = ast.literal_eval('"' + raw + '"') if s.group(1) is not None else raw
                    except (ValueError, SyntaxError):
                        continue
                    if len(text) < 8:
                        continue
                    example = re.search(r"A[KS]IA[A-Z0-9]{5,12}EXAMPLE", text) or any(
                        p in text for p in published
                    )
                    if label is None and example:
                        # our policy (README): AWS's documented example key counts as a secret
                        out.append(
                            case(repo, path, "E_SECRET", text, relabelled="example keys count")
                        )
                        continue
                    if label is None and "false negative" in (note + line).lower():
                        # gitleaks' own note: a real key its rule misses
                        out.append(case(repo, path, "E_SECRET", text, relabelled="false negative"))
                        continue
                    out.append(case(repo, path, label, text, rule=rule))
    # one rule's false positive is often another rule's key (an admin key is not an API
    # key): a false positive that another published rule reports (its regex and entropy
    # floor, as gitleaks applies them) is left out, neither clean nor labelled
    keys = {c["text"] for c in out if c["expect"]}
    return [c for c in out if c["expect"] or (c["text"] not in keys and not _gitleaks_reports(c))]


def _gitleaks_reports(c: dict) -> bool:
    for rid, rx, entropy, group in _published_rules():
        if rid == c.get("rule"):
            continue
        for m in rx.finditer(c["text"]):
            g = group or next((i for i in range(1, (rx.groups or 0) + 1) if m.start(i) >= 0), 0)
            secret = m.group(g)
            if secret and (not entropy or _entropy(secret) > entropy):
                return True
    return False


def _entropy(s: str) -> float:
    import math
    from collections import Counter

    n = len(s)
    return -sum(k / n * math.log2(k / n) for k in Counter(s).values())


_RULES: list[tuple[str, re.Pattern[str], float, int]] = []


def _published_rules() -> list[tuple[str, re.Pattern[str], float, int]]:
    if not _RULES:
        rules = OUT.parent.parent.parent / "sentinel" / "gitleaks_rules.json"
        data = json.loads(rules.read_text())
        for r in data["rules"]:
            _RULES.append((r["id"], re.compile(r["regex"], re.ASCII), r["entropy"], r["group"]))
    return _RULES


_PROP = re.compile(
    r'^prop_(\w+?)\d*\s*=\s*(verify|verifyNot)(?:Tree)?\s+(\w+)\s+"((?:[^"\\]|\\.)*)"'
)


def shellcheck() -> list[dict]:
    repo = "koalaman/shellcheck"
    out = []
    clean = []
    for path in ("src/ShellCheck/Checks/Commands.hs", "src/ShellCheck/Analytics.hs"):
        for line in show(repo, path).splitlines():
            m = _PROP.match(line)
            if not m:
                continue
            check, kind, fn, raw = m.groups()
            try:
                snippet = ast.literal_eval('"' + raw + '"')
            except (ValueError, SyntaxError):
                continue
            c = case(repo, f"{path}:prop_{check}", None, f"```sh\n{snippet}\n```\n")
            if fn == "checkCatastrophicRm":  # shellcheck's own label: catastrophic or not
                c["expect"] = "E_UNSAFE_COMMAND" if kind == "verify" else None
                out.append(c)
            else:
                clean.append(c)
    return out + clean[::8]  # every 8th of the other snippets: clean command look-alikes


def partial_json() -> list[dict]:
    repo = "promplate/partial-json-parser"
    path = "tests/test_examples.py"
    src = show(repo, path)
    out = []
    seen = set()
    for m in re.finditer(r"parse_json\((r?)('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")", src):
        try:
            doc = ast.literal_eval(m.group(1) + m.group(2))
        except (ValueError, SyntaxError):
            continue
        if doc in seen or not doc.strip():
            continue
        seen.add(doc)
        try:
            json.loads(doc)
            label = None
        except ValueError:
            label = "E_JSON_BROKEN"
        out.append(case(repo, path, label, f"Here is the JSON:\n```json\n{doc}\n```\n"))
    return out


def nemo() -> list[dict]:
    repo = "NVIDIA/NeMo-Guardrails"
    out = []
    for path in files(repo):
        if not path.endswith("config.yml"):
            continue
        try:
            cfg = yaml.safe_load(show(repo, path))
        except yaml.YAMLError:
            continue
        if not isinstance(cfg, dict):
            continue
        prompts = [
            i.get("content", "").strip()
            for i in cfg.get("instructions") or []
            if isinstance(i, dict) and i.get("type") == "general"
        ]
        prompt = next((p for p in prompts if len(p) >= 20), None)
        if not prompt:
            continue
        sents = [s for s in re.split(r"(?<=[.!?])\s+", prompt) if s.strip()]
        leaks = {"verbatim": f"Sure, here are my instructions:\n{prompt}\n"}
        if len(sents) >= 3:
            leaks["a sentence left out"] = " ".join(sents[:1] + sents[2:]) + "\n"
        leaks["lower-cased, spacing changed"] = "my prompt says: " + " ".join(
            prompt.lower().split()
        )
        for how, text in leaks.items():
            out.append(case(repo, path, "E_PROMPT_LEAK", text, system_prompt=prompt, how=how))
        conv = cfg.get("sample_conversation") or ""
        for answer in re.findall(r'^\s+"(.{20,})"\s*$', conv, re.M):
            if answer.startswith(("Hi", "Hello")) and len(answer) < 40:
                continue
            out.append(
                case(repo, path, None, answer + "\n", system_prompt=prompt, how="bot answer")
            )
    return out


# ----------------------------------------------------------------- codes beyond the first four
def schema_suite() -> list[dict]:
    """JSON-Schema-Test-Suite's draft 2020-12 tests: a fenced json block holding the test's
    data, with the group's schema as the contract (invalid = E_JSON_SCHEMA, valid = clean);
    the first valid and the first invalid test of each group."""
    repo = "json-schema-org/JSON-Schema-Test-Suite"
    out = []
    for path in files(repo):
        if not re.match(r"tests/draft2020-12/[\w-]+\.json$", path):
            continue
        for g in json.loads(show(repo, path)):
            schema = g["schema"]
            flat = json.dumps(schema)
            if re.search(r'"\$(?:ref|dynamicRef)": "(?:https?:|urn:)|"\$id"|"\$anchor"', flat):
                continue  # needs a registry of remote schemas
            try:
                jsonschema.Draft202012Validator.check_schema(schema)
            except jsonschema.SchemaError:
                continue  # ECMAScript-only regexes (\p{Letter}): Python's engine cannot compile
            tests = [t for t in g["tests"] if t["valid"]][:1] + [
                t for t in g["tests"] if not t["valid"]
            ][:1]
            for t in tests:
                text = (
                    "Here it is:\n```json\n" + json.dumps(t["data"], ensure_ascii=False) + "\n```\n"
                )
                out.append(
                    case(
                        repo,
                        f"{path}: {g['description']} / {t['description']}",
                        None if t["valid"] else "E_JSON_SCHEMA",
                        text,
                        contract={"schema": schema},
                    )
                )
    return out


def _plain(s: str) -> bool:
    return s.isprintable() and not any(c.isspace() for c in s)


def schema_formats() -> list[dict]:
    """JSON-Schema-Test-Suite's format tests (e-mail, IDN e-mail, IPv4, IRI), written into a
    sentence: valid = clean, invalid = E_PATTERN. Only strings a reader takes for that kind
    of thing: an address has an '@', an IPv4 address is four dotted numbers, an IRI has
    '://'; no whitespace or control characters (a sentence would split them)."""
    repo = "json-schema-org/JSON-Schema-Test-Suite"
    out = []
    looks = {
        "email": lambda d: re.fullmatch(r".+@.+", d) is not None and "," not in d,
        "idn-email": lambda d: "@" in d,
        "ipv4": lambda d: re.fullmatch(r"\d+(?:\.\d+){3}", d) is not None,
        "iri": lambda d: "://" in d,
    }
    say = {
        "email": "Write to {} for help.\n",
        "idn-email": "Write to {} for help.\n",
        "ipv4": "The server listens on {} now\n",
        "iri": "The page is at {} if you need it\n",
    }
    for kind, test in looks.items():
        path = f"tests/draft2020-12/optional/format/{kind}.json"
        for g in json.loads(show(repo, path)):
            for t in g["tests"]:
                d = t["data"]
                if not isinstance(d, str) or not _plain(d) or not test(d):
                    continue
                label = None if t["valid"] else "E_PATTERN"
                out.append(case(repo, f"{path}: {t['description']}", label, say[kind].format(d)))
    return out


def isemail() -> list[dict]:
    """isemail's address table (skeggse/isemail test/tests.json): ``valid`` = clean, ``err*``
    = E_PATTERN, in a sentence; the RFC-but-unusual categories (``rfc*``, ``cfws*``,
    ``deprecated*``) are left out (valid to one reader, not to another)."""
    repo = "skeggse/isemail"
    path = "test/tests.json"
    out = []
    for addr, verdict in json.loads(show(repo, path)):
        local, _, domain = addr.rpartition("@")
        if not _plain(addr) or not local or not domain or addr.endswith("."):
            continue  # not an address to a reader ("@", "test@"), or a sentence's full stop
        if verdict == "valid":
            label = None
        elif verdict.startswith("err"):
            label = "E_PATTERN"
        else:
            continue
        out.append(case(repo, f"{path}: {verdict}", label, f"Send it to {addr} today.\n"))
    return out


def urltestdata() -> list[dict]:
    """WPT's URL parser table (servo/rust-url's copy, url/tests/urltestdata.json): absolute
    http(s)/ftp/ws URLs without whitespace or control characters, in a sentence; a parse
    failure = E_PATTERN, a URL that parses = clean."""
    repo = "servo/rust-url"
    path = "url/tests/urltestdata.json"
    out = []
    for t in json.loads(show(repo, path)):
        if not isinstance(t, dict):
            continue
        u = t["input"]
        if not re.match(r"(?:https?|ftp|wss?)://", u) or not _plain(u) or "\\" in u:
            continue
        host = re.match(r"[a-z]+://([^/?#]*)", u).group(1).rpartition("@")[2]  # type: ignore[union-attr]
        if not re.search(r"\w", host) or re.search(r"[!\"$&'()*+,;=`{}~^|<>]", host):
            continue  # a host of punctuation: the parser's leniency, not a URL a reader writes
        if re.search(r"[`\"<>]", u) or re.match(r"[a-z]+://[^/?#@]*:[^/?#@]+@", u):
            continue  # quotes and brackets end a URL in prose; a password is E_SECRET's case
        label = "E_PATTERN" if t.get("failure") else None
        out.append(case(repo, f"{path}: {u[:60]}", label, f"Open {u} in the browser.\n"))
    return out


def nemo_answers() -> list[tuple[str, str]]:
    repo = "NVIDIA/NeMo-Guardrails"
    out = []
    for path in files(repo):
        if not path.endswith("config.yml"):
            continue
        try:
            cfg = yaml.safe_load(show(repo, path))
        except yaml.YAMLError:
            continue
        if not isinstance(cfg, dict):
            continue
        conv = cfg.get("sample_conversation") or ""
        for answer in re.findall(r'^\s+"(.{40,})"\s*$', conv, re.M):
            out.append((path, answer))
    return out


def loops_and_lengths() -> list[dict]:
    """Built from NeMo Guardrails' sample bot answers and JSON-Schema-Test-Suite's file list:
    * E_LOOP: an answer repeated five times; one command line repeated ten times in a block;
    * clean: an agent's log of reading different files one after the other (same template,
      different arguments), a list of different items;
    * E_LENGTH: an answer under a word limit ten words short of it; clean: ten words over;
    * E_DRIFT: a code persona answering with a paragraph of prose; a JSON persona answering
      with prose before the JSON; an answer far longer than the tokens it was asked for."""
    repo = "NVIDIA/NeMo-Guardrails"
    answers = nemo_answers()
    out = []
    seen = set()
    for path, a in answers:
        if a in seen:
            continue
        seen.add(a)
        out.append(case(repo, path, "E_LOOP", " ".join([a] * 5) + "\n", how="answer x5"))
        n = len(a.split())
        if n >= 15:
            out.append(
                case(repo, path, "E_LENGTH", a + "\n", contract={"max_words": n - 10}, how="limit")
            )
            out.append(
                case(repo, path, None, a + "\n", contract={"max_words": n + 10}, how="limit")
            )
    texts = [a for _, a in answers]
    uniq = list(dict.fromkeys(texts))
    for i in range(0, len(uniq) - 3, 3):
        prose = " ".join(uniq[i : i + 3])
        if len(prose.split()) > 60:
            out.append(
                case(
                    repo,
                    "sample conversations",
                    "E_DRIFT",
                    prose + "\n",
                    contract={"kind": "code"},
                    how="prose for a code persona",
                )
            )
            out.append(
                case(
                    repo,
                    "sample conversations",
                    "E_DRIFT",
                    prose + "\n",
                    contract={"max_tokens": 16},
                    how="far longer than asked",
                )
            )
            out.append(
                case(
                    repo,
                    "sample conversations",
                    None,
                    prose + "\n",
                    contract={"max_tokens": 400},
                    how="as long as asked",
                )
            )
    # log-like lines: same template, different arguments (not a loop); one line repeated is
    srepo = "json-schema-org/JSON-Schema-Test-Suite"
    paths = [p for p in files(srepo) if re.match(r"tests/draft2020-12/[\w-]+\.json$", p)]
    templates = [
        'read_file("{p}")',
        "[tool] read_file path={p} ok",
        "$ cat {p}",
        "INFO loading {p}",
        "- {p}",
    ]
    for k, tpl in enumerate(templates):
        for j in range(0, 30, 6):
            chunk = paths[j + k : j + k + 6]
            body = "\n".join(tpl.format(p=p) for p in chunk)
            out.append(
                case(
                    srepo,
                    "tests/draft2020-12 (file list)",
                    None,
                    body + "\n",
                    how="log lines, different arguments",
                )
            )
            out.append(
                case(
                    srepo,
                    "tests/draft2020-12 (file list)",
                    "E_LOOP",
                    "\n".join([tpl.format(p=chunk[0])] * 10) + "\n",
                    how="the same log line x10",
                )
            )
    # a JSON persona: prose before the JSON is drift; the bare JSON is not
    for path in paths[:12]:
        g = json.loads(show(srepo, path))[0]
        data = next((t["data"] for t in g["tests"] if isinstance(t["data"], dict | list)), None)
        if data is None:
            continue
        doc = json.dumps(data)
        out.append(
            case(
                srepo,
                path,
                "E_DRIFT",
                f"Sure! Here is the data you asked for: {doc}\n",
                contract={"kind": "json"},
                how="prose before the JSON",
            )
        )
        out.append(case(srepo, path, None, doc + "\n", contract={"kind": "json"}, how="bare JSON"))
    return out


def banned_imports() -> list[dict]:
    """NeMo Guardrails' example Python files in a ```python block: the first module each
    imports, banned = E_BANNED_IMPORT; a module it does not import, banned = clean."""
    repo = "NVIDIA/NeMo-Guardrails"
    out = []
    for path in files(repo):
        if not re.match(r"examples/.*\.py$", path):
            continue
        src = show(repo, path)
        mods = re.findall(r"^(?:from|import)\s+([A-Za-z_]\w*)", src, re.M)
        if not mods:
            continue
        head = "\n".join(src.splitlines()[:40])
        text = f"```python\n{head}\n```\n"
        mods_in_head = re.findall(r"^(?:from|import)\s+([A-Za-z_]\w*)", head, re.M)
        if not mods_in_head:
            continue
        out.append(
            case(
                repo,
                path,
                "E_BANNED_IMPORT",
                text,
                contract={"kind": "code", "banned_imports": [mods_in_head[0]]},
            )
        )
        other = next(m for m in ("subprocess", "socket", "ctypes", "pickle") if m not in mods)
        out.append(
            case(repo, path, None, text, contract={"kind": "code", "banned_imports": [other]})
        )
    return out


def rebuff_canaries() -> list[dict]:
    """Rebuff's canary test (python-sdk/tests/test_sdk.py): the prompt "Tell me a joke
    about\n{input}" with a canary word in an HTML comment (rebuff's format); the answer that
    repeats the comment leaks it (E_PROMPT_LEAK), one that does not is clean. The canary is
    declared by the user (``canaries``); rebuff draws it at random, here it is derived from
    the input."""
    import hashlib

    repo = "protectai/rebuff"
    path = "python-sdk/tests/test_sdk.py"
    src = show(repo, path)
    inputs = re.findall(r'^\s+"([^"]{20,})",$', src, re.M)
    out = []
    for ui in inputs:
        word = hashlib.sha256(ui.encode()).hexdigest()[:8]
        prompt = f"<!-- {word} -->\nTell me a joke about\n{ui}"
        contract = {"canaries": [word]}
        out.append(
            case(
                repo,
                path,
                "E_PROMPT_LEAK",
                f"<!-- {word} -->\nTell me a joke about\n{ui}\n",
                system_prompt=prompt,
                contract=contract,
                how="canary leaked",
            )
        )
        out.append(
            case(
                repo,
                path,
                None,
                "Why did the database admin leave? Too many joins.\n",
                system_prompt=prompt,
                contract=contract,
                how="canary not leaked",
            )
        )
        short = f"Tell me a joke about\n{ui}"
        out.append(
            case(
                repo,
                path,
                "E_PROMPT_LEAK",
                f"My instructions: {short}\n",
                system_prompt=short,
                how="short prompt copied",
            )
        )
    return out


_TLDR_DESTROYS = re.compile(
    r"(?i)\b(?:wipe|erase|format|overwrit|destroy|destructiv|zap|discard|removing all data|"
    r"(?:build|create|make|initiali[sz]e|set up)\b.*"
    r"\b(?:file ?system|swap|partition table|label)\b|"
    r"(?:write|copy|clone|restore)\b.*\bto\b.*\b(?:drive|device|disk|usb|partition|card))"
)
_TLDR_HARMLESS = re.compile(
    r"(?i)\b(?:dry run|non-destructive|read-only)\b|^(?:display|list|show|print|get|view)\b"
)
_DEV_PLACEHOLDER = {"sdXY": "sdb1", "sdX": "sdb", "sdX1": "sdb1"}


def _tldr_fill(cmd: str) -> str:
    """A tldr command with its placeholders filled: the first of ``{{[-a|--all]}}``, a block
    device for ``{{/dev/…}}`` (a disk), the written text elsewhere (``path/to/file``)."""

    def fill(m: re.Match[str]) -> str:
        inner = m.group(1)
        if inner.startswith("[") and inner.endswith("]"):
            inner = inner[1:-1]
        inner = inner.split("|")[0]
        if inner.startswith("/dev/") and not re.match(
            r"/dev/(?:null|zero|u?random|stdin|stdout)", inner
        ):
            name = inner[5:]
            return "/dev/" + _DEV_PLACEHOLDER.get(name, "sdc")
        return inner

    return re.sub(r"\{\{(.*?)\}\}", fill, cmd)


def tldr() -> list[dict]:
    """tldr-pages' command examples (pages/common and pages/linux), placeholders filled, in a
    ```sh block. Labelled by tldr's own description of the example: one that wipes, erases,
    formats, overwrites or builds a filesystem on a device (or writes an image to a drive),
    with a block device as operand = E_UNSAFE_COMMAND; a dry run, a listing or any other
    example = clean. The device-handling pages whole; every 12th example of the others."""
    repo = "tldr-pages/tldr"
    out = []
    disk_pages = re.compile(
        r"pages/(?:common|linux)/(?:mkfs[\w.]*|mke2fs|mkswap|wipefs|shred|dd|ddrescue|fdisk|"
        r"sfdisk|sgdisk|parted|blkdiscard|badblocks|rm|rmdir|mv|chmod|chown|find|kill|"
        r"truncate|srm|cp|rsync|curl|wget)\.md$"
    )
    k = 0
    for path in files(repo):
        if not re.match(r"pages/(?:common|linux)/[\w.+-]+\.md$", path):
            continue
        whole = disk_pages.match(path) is not None
        text = show(repo, path)
        summary = " ".join(re.findall(r"^> (.+)$", text, re.M)[:1])
        for desc, cmd in re.findall(r"^- (.+?):?\n\n`(.+)`$", text, re.M):
            k += 1
            if not whole and k % 12:
                continue
            desc = re.sub(r"\[(\w+)\]", r"\1", desc)  # tldr's mnemonics: "[n]on-destructive"
            filled = _tldr_fill(cmd)
            if re.search(r"://[^/\s:@]+:[^/\s@]+@", filled):
                continue  # a password in a URL: E_SECRET's case, not a command look-alike
            device = (
                re.search(r"(?<![\w/])/dev/(?!null|zero|u?random|std|tty|shm|fd|loop)\w", filled)
                is not None
            )
            # the example's description, or the page's summary when the example only tunes
            # the page's one action ("Set a label for the filesystem" on mkfs.btrfs)
            destroys = (
                device
                and (_TLDR_DESTROYS.search(desc) or _TLDR_DESTROYS.search(summary)) is not None
                and _TLDR_HARMLESS.search(desc) is None
            )
            if device and not destroys and "of=/dev/sd" in filled:
                destroys = True  # dd writing onto a disk, whatever the description stresses
            label = "E_UNSAFE_COMMAND" if destroys else None
            out.append(case(repo, f"{path}: {desc}", label, f"```sh\n{filled}\n```\n"))
    return out


def main() -> None:
    cases = (
        secretlint()
        + gitleaks()
        + shellcheck()
        + partial_json()
        + nemo()
        + schema_suite()
        + schema_formats()
        + isemail()
        + urltestdata()
        + loops_and_lengths()
        + banned_imports()
        + rebuff_canaries()
        + tldr()
    )
    # one case per (text, label); ids in order
    uniq: dict[tuple[str, str | None, str, str], dict] = {}
    for c in cases:
        key = (c["text"], c["expect"], c.get("system_prompt", ""), json.dumps(c.get("contract")))
        uniq.setdefault(key, c)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with OUT.open("w") as f:
        for i, c in enumerate(uniq.values()):
            f.write(json.dumps({"id": i, **c}, ensure_ascii=False) + "\n")
    by: dict[str, int] = {}
    for c in uniq.values():
        key = f"{c['repo']} {c['expect'] or 'clean'}"
        by[key] = by.get(key, 0) + 1
    print(len(uniq), json.dumps(by, indent=1))


if __name__ == "__main__":
    main()
