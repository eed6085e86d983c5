"""The one secret detector: the sentinel's E_SECRET check and hermes's redactor both call it.

Size (over 500 lines): one detector, its data loaders (detect-secrets' plugins, gitleaks'
rules, the keyword rules) and the filters that decide what is not a secret. They share the
triggers and the span rules, and the sentinel and the redactor must run exactly this code.

What counts as a secret comes from detect-secrets (Yelp's scanner), used as data: the compiled
``denylist`` regexes of its token plugins (AWS, Azure storage, basic-auth URLs, Discord, GitHub,
GitLab, JWT, Mailchimp, npm, OpenAI, private keys, PyPI, SendGrid, Slack tokens and webhooks,
Square, Stripe, Telegram, Twilio, Artifactory) and its keyword detector's assignment regexes
(``password: …``, ``aws_secret_access_key = …``, ``api_key = "…"``) with its heuristic filters
(templated values, ``$VARIABLES``, indirect references such as ``os.environ["X"]``, sequential
strings, ids), and gitleaks' published default rules (``gitleaks_rules.json``, made from its
``config/gitleaks.toml`` by ``scripts/import_gitleaks_rules.py``: 213 provider shapes, each
with its keywords as the trigger, its entropy floor, its secret group and its allowlists, plus
gitleaks' global allowlist and its list of key names that hold no secret). A few shapes
neither has are added here (secretlint's Cloudflare, Vercel and Shopify patterns, hermes's own
tokens, PGP/PuTTY private keys).

Decisions:

* **Documentation examples count.** AWS's ``AKIAIOSFODNN7EXAMPLE`` (and any value with a
  provider's exact shape) is a secret: the sentinel cannot tell a published example from a real
  key, and an answer that pastes one is one edit away from pasting a real one. Values that are
  not key-shaped are not: ``<YOUR_KEY>``, ``${TOKEN}``, ``sk-your-key-here``, ``xxxx``, ``***``,
  nor a shape filled with filler (one character 8 times, ``tskey-api-AAAA…-BBBB…``, or one unit
  4 times, ``…SAMPLESAMPLE…``), nor one that runs on into a mask (``xoxp-…-####``). AWS marks
  its documented examples with ``EXAMPLE``: in an AWS shape that marker is not filler (gitleaks'
  Bedrock example ``ABSKQmVkcm9ja0FQSUtleS1EXAMPLEEXAMPLE…`` counts, as the access key does).
* **URL passwords**: not a template slot (``{password}``, ``$(PGPASSWORD)``, ``${VAR}``), not a
  placeholder word, not the user name again (``postgres:postgres@``: a default).
* **A 64-hex value** is a secret only with a key named just before it on its line (``private
  key:``, ``wallet``, ``seed``, ``API_TOKEN=``, ``ETH_PK=``) and no digest named there
  (``sha256sum:``, ``commit``, ``public key``, ``fingerprint``, ``tx hash``, ``next_page_token``,
  ``nonce``, ``salt``); alone it is a hash:
  a bare 64-hex string is a SHA-256 digest as often as a key, and a false halt costs more.
* **Keyword values** (``password: hunter2``) must look like a credential: one token, not a
  template or a reference, at least 6 characters mixing two classes of characters (lower,
  upper, digit, symbol), or 16+ characters of high entropy. ``password: required`` is not one.
* **Environment assignments and passphrases** (which detect-secrets' keyword rules miss): a
  credential-named variable assigned before a command (``PGPASSWORD=s3cr3tpass psql …``, the
  value judged as a keyword value) and three or more lowercase words assigned to a password
  or passphrase name, quoted or alone on their line (``db_password = "correct horse battery
  staple"``); not prose about one (``password: at least twelve characters``: a word of prose
  in it), not a name about one (``password_hint``, ``TOKEN_FILE``), not a path (``PWD=/x``).
  Judged on whole lines, as keyword values are.
* **Private keys**: a ``BEGIN … PRIVATE KEY`` header (RSA, EC, DSA, OpenSSH, PKCS#8, encrypted,
  PGP ``PRIVATE KEY BLOCK``, PuTTY) is a secret whatever follows it, unless it sits inside a
  sentence (``the file starts with -----BEGIN RSA PRIVATE KEY-----``): then only if a body or
  END line follows. Public keys and certificates are not secrets.

Every regex here sees a bounded input: a line longer than ``LINE_WINDOW`` characters is read in
overlapping windows of that size (``line_windows``), by ``find_secrets`` and, for the keyword
rules, by the sentinel's check as the line streams; its other windows hold at most 800.
A keyword assignment is judged in the same windows whatever the line's length and wherever
on it the assignment sits (``password = "…"`` after 5,000 characters of a one-line answer).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections import Counter
from collections.abc import Iterable
from functools import lru_cache
from importlib import resources
from typing import NamedTuple

__all__ = [
    "MAX_SECRET_CHARS",
    "secret_triggers",
    "warm_up",
    "Secret",
    "find_secrets",
    "find_in_window",
    "find_in_line_window",
    "line_windows",
    "LINE_WINDOW",
    "LINE_STEP",
    "kind_slug",
]

# The longest secret (apart from PEM blocks) any detector reports whole. Longer candidates
# are cut to this many characters by the windows.
MAX_SECRET_CHARS = 320


class Secret(NamedTuple):
    """One secret found: ``text[start:end]``, and what it is (``"GitHub Token"``)."""

    start: int
    end: int
    kind: str


# The marker names hermes used before this detector, kept so stored markers stay consistent.
_SLUGS = {
    "AWS Access Key": "aws-access-key-id",
    "Secret Keyword": "generic-credential",
    "Private Key": "pem-private-key",
    "OpenAI Token": "openai-anthropic-key",
    "Stripe Access Key": "stripe-key",
}


def kind_slug(kind: str) -> str:
    """'GitHub Token' -> 'github-token' (one token, for ``[REDACTED:…]`` markers)."""
    return _SLUGS.get(kind) or re.sub(r"[^a-z0-9]+", "-", kind.lower()).strip("-")


# ------------------------------------------------------------------- detectors (as data)
class _Detector(NamedTuple):
    kind: str
    pattern: re.Pattern[str]
    group: int  # which group is the secret (0: the whole match)
    trigger: str  # a regex every match contains (cheap pre-filter)
    check: str  # "", "jwt", "random", "keyword", "url", "basic", "cmdpw", "b64key", "hexkey", …


def _plugin_patterns() -> list[_Detector]:
    from detect_secrets.plugins import (
        artifactory,
        aws,
        azure_storage_key,
        basic_auth,
        discord,
        github_token,
        gitlab_token,
        jwt,
        mailchimp,
        npm,
        openai,
        pypi_token,
        sendgrid,
        slack,
        square_oauth,
        stripe,
        telegram_token,
        twilio,
    )

    # what every match of the plugin contains: literals ("|"-separated; "i:" = any case) or
    # one regex ("re:")
    triggers = {
        aws.AWSKeyDetector: "A3T|ABIA|ACCA|AKIA|ASIA|i:aws",
        azure_storage_key.AzureStorageKeyDetector: "AccountKey=",
        basic_auth.BasicAuthDetector: "@",
        discord.DiscordBotTokenDetector: r"re:\.[\w-]{6}\.",
        github_token.GitHubTokenDetector: "ghp_|gho_|ghu_|ghs_|ghr_",
        gitlab_token.GitLabTokenDetector: (
            "glpat-|gldt-|glft-|glsoat-|glrt-|glcbt-|glimt-|glptt-|glagent-|gloas-|GR1348941"
        ),
        jwt.JwtTokenDetector: "eyJ",
        mailchimp.MailchimpDetector: r"re:-us\d",
        npm.NpmDetector: "_authToken",
        openai.OpenAIDetector: "T3BlbkFJ",
        pypi_token.PypiTokenDetector: "pypi-",
        sendgrid.SendGridDetector: "SG.",
        slack.SlackDetector: "i:xox|i:hooks.slack",
        square_oauth.SquareOAuthDetector: "sq0csp-",
        stripe.StripeDetector: "_live_",
        telegram_token.TelegramBotTokenDetector: r"re:\d{8}:",
        twilio.TwilioKeyDetector: r"re:(?:AC|SK)[a-z0-9]{8}",
        artifactory.ArtifactoryDetector: r"re:AKC|AP[\dA-F]",
    }
    out: list[_Detector] = []
    for plugin, trigger in triggers.items():
        denylist: Iterable[re.Pattern[str]] = getattr(plugin, "denylist")  # noqa: B009
        for pattern in denylist:
            # the secret is group 1 only where the plugin captures it (AWS's secret access
            # key, a basic-auth URL's password, npm's token); elsewhere groups are prefixes
            secret_group = plugin in (aws.AWSKeyDetector, basic_auth.BasicAuthDetector)
            group = 1 if pattern.groups and secret_group else 0
            check = {
                jwt.JwtTokenDetector: "jwt",
                basic_auth.BasicAuthDetector: "url",
            }.get(plugin, "")
            kind = str(getattr(plugin, "secret_type"))  # noqa: B009
            if plugin is aws.AWSKeyDetector and group:
                kind = "AWS Secret Access Key"
            if plugin is npm.NpmDetector:
                group, check = 1, "npm"
            out.append(_Detector(kind, pattern, group, trigger, check))
    return out


# Assignments detect-secrets' keyword rules miss (they need the value to end its line and
# be one token, and know no "passphrase"): a shell's environment assignment before a command
# (``PGPASSWORD=s3cr3tpass psql -h db``: the value ends at the blank) and a passphrase of
# lowercase words in a clearly named assignment (``db_password = "correct horse battery
# staple"``, ``passphrase: hunter two cats`` alone on its line). The value is group "v".
_ENV_ASSIGNMENT = (
    r"(?<![^\s;&|(`])(?P<name>[A-Za-z_][A-Za-z0-9_]{0,60})="
    r"(?:(?P<q>['\"])(?P<qv>[^'\"\n]{1,200})(?P=q)|(?P<v>[^\s'\"`;|&<>()]{1,200}))"
    r"(?=[ \t]+[^\s#])"  # a command (or another assignment) follows on the line
)
_PHRASE_NAME = r"(?<![\w.-])(?P<name>[\w.-]{0,30}?(?i:passw(?:or)?d|pass_?phrase)(?P<sfx>\w{0,20}))"
_PHRASE_WORDS = r"[a-z0-9]+(?: [a-z0-9]+){2,7}"
_PHRASE_QUOTED = (
    _PHRASE_NAME + r"[\"'\]]{0,2}[ \t]*(?::=|=>|[:=])[ \t]*"
    rf"(?P<q>[\"'`])(?P<v>{_PHRASE_WORDS}|[^\s\"'`]{{6,200}})(?P=q)"
)
_PHRASE_LINE = (  # unquoted: the name starts its line and the value ends it
    r"(?m:^)[ \t]*(?:[-*][ \t]+)?"
    + _PHRASE_NAME
    # ':' or a spaced '=' (NAME=a b c in a shell is NAME=a before the command b c)
    + r"(?:[ \t]*:|[ \t]+=|=(?=[ \t]))[ \t]*"
    rf"(?P<v>{_PHRASE_WORDS}|[^\s\"'`]{{6,200}})[ \t]*$"
)
_PASSWORD_NAME = re.compile(r"(?i)passw(?:or)?d|pass_?phrase")
# what an environment variable holding a credential is called (the end of its name)
_ENV_SECRET_NAME = re.compile(
    r"(?i)(?:passw(?:or)?d|pass_?phrase|(?:^|_)pass|(?:^|_)pwd|secret|token"
    r"|(?:api|access|secret|private|auth|client)_?key)$"
)
# a name like this holds something about a password, not the password
_ABOUT_PASSWORD = re.compile(
    r"(?i)hint|prompt|label|message|msg|help|text|error|err\b|policy|desc|placeholder|field"
    r"|title|rule|require|length|len\b|format|question|reset|expir|file|path|env|var|name|_id"
    r"|type|mode|hash|digest|salt|min|max|regex|pattern|url|uri|cmd|command|manager|store"
)
# words of prose about a password (``password: at least twelve characters``), not of one
_PROSE_WORDS = frozenset(
    "a an the and or of to in on at for with by from is are was were be been being it its "
    "this that these those you your yours my our their his her we they i me us not no none "
    "must should can could will would may might set use used using same as if when then than "
    "least most characters character chars long short length min max minimum maximum "
    "required optional empty blank default see below above here there one any all each every "
    "password passwords passphrase passphrases secret token key keys change changed enter "
    "type typed value string field chosen choose stored hidden masked redacted example "
    "sample placeholder dummy fake test login user username admin random word words strong "
    "weak secure unique memorable common letters letter digits digit numbers number symbols "
    "uppercase lowercase mixed case new old current generated via only also do does did "
    "has have had what which who how why where".split()
)


def _phrase_password(value: str) -> bool:
    """Three or more lowercase words that read as a passphrase, not as prose about one."""
    words = value.split()
    if len(words) < 3 or len(set(words)) < len(words):
        return False
    if any(w in _PROSE_WORDS for w in words) or any(w in value for w in _PLACEHOLDER_WORDS):
        return False
    return sum(c.isalpha() for c in value) >= 10


def _path_like(value: str) -> bool:
    return re.match(r"(?:[~.]{0,2}/|[A-Za-z]:\\|\w+://)", value) is not None


# detect-secrets' keyword assignments (CONFIG files: unquoted values; code: quoted values):
# what each match contains (its trigger)
_KEYWORD_TRIGGER = "i:key|i:pass|i:pwd|i:secret|i:token|i:contrase"
_KEYWORD_WORDS = tuple(w[2:] for w in _KEYWORD_TRIGGER.split("|"))

_EXTRA = [
    # shapes detect-secrets lacks (gitleaks' published rules have them)
    (
        "OpenAI/Anthropic Key",
        r"(?<![\w-])sk-(?:proj-|ant-(?:api\d\d-)?|svcacct-)?[\w-]{20,}",
        "sk-",
        "random",
    ),
    ("GitHub Token", r"\bgithub_pat_\w{50,}", "github_pat_", ""),
    ("Google API Key", r"\bAIza[\w-]{35}(?![\w-])", "AIza", ""),
    ("NPM tokens", r"\bnpm_[A-Za-z0-9]{36}\b", "npm_", ""),
    ("Slack Token", r"\bxox[abposr]-[A-Za-z0-9-]{10,}", "i:xox", "random"),
    ("Stripe Access Key", r"\b[rs]k_live_[0-9a-zA-Z]{20,}", "_live_", ""),
    (
        "Discord Webhook",
        r"https://(?:ptb\.|canary\.)?discord(?:app)?\.com/api/webhooks/\d+/[\w-]{20,}",
        "discord",
        "",
    ),
    ("Azure Storage Account access key", r"AccountKey=[a-zA-Z0-9+/=]{86,88}", "AccountKey=", ""),
    # more of gitleaks' published rules (as data)
    (
        "Azure AD Client Secret",
        r"(?<![\w~.-])[a-zA-Z0-9_~.]{3}\dQ~[a-zA-Z0-9_~.-]{31,34}(?![\w~.-])",
        "Q~",
        "",
    ),
    (
        "Slack Webhook",
        r"(?i)(?:https?://)?hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9+/]{43,56}",
        "i:hooks.slack",
        "",
    ),
    ("Slack App Token", r"(?i)\bxapp-\d-[A-Z0-9]+-\d+-[a-z0-9]+", "i:xapp-", ""),
    ("1Password Service Account Token", r"\bops_eyJ[a-zA-Z0-9+/]{250,}={0,3}", "ops_eyJ", ""),
    # secretlint's published patterns (Databricks, Cloudflare, Vercel)
    ("Databricks Token", r"(?<![A-Za-z])dapi[A-Fa-f0-9]{32}(?:-\d)?(?![A-Fa-f0-9])", "dapi", ""),
    (
        "Cloudflare API Token",
        r"(?<![A-Za-z])(?:cfk|cfut|cfat)_[A-Za-z0-9]{40}[0-9a-f]{8}(?![A-Za-z0-9])",
        "cfk_|cfut_|cfat_",
        "",
    ),
    (
        "Vercel Token",
        r"(?<![A-Za-z])(?:vcp|vci|vca|vcr|vck)_[A-Za-z0-9]{20,60}(?![A-Za-z0-9])",
        "vcp_|vci_|vca_|vcr_|vck_",
        "",
    ),
    ("Docker Personal Access Token", r"\bdckr_pat_[a-zA-Z0-9_-]{27,}", "dckr_pat_", ""),
    ("Figma Token", r"\bfig[dou]_[a-zA-Z0-9_-]{40,}", "figd_|figo_|figu_", ""),
    (
        "Grafana Token",
        r"\bglc_[A-Za-z0-9+/]{32,400}={0,2}|\bglsa_[A-Za-z0-9]{32}_[A-Fa-f0-9]{8}",
        "glc_|glsa_",
        "",
    ),
    ("HashiCorp Vault Token", r"\bhv[sb]\.[\w-]{90,300}", "hvs.|hvb.", ""),
    ("Hugging Face Token", r"\b(?:hf_|api_org_)[a-zA-Z]{34}\b", "hf_|api_org_", "random"),
    ("Linear API Key", r"\blin_api_[a-zA-Z0-9]{40}\b", "lin_api_", ""),
    (
        "Shopify Token",  # secretlint's pattern (Shopify's own examples are not hex)
        r"(?<![A-Za-z])shp(?:at|ca|pa|ss)_[a-zA-Z0-9]{32,64}(?![a-zA-Z0-9])",
        "shp",
        "",
    ),
    ("Tailscale Key", r"\btskey-[a-z]+-[0-9A-Za-z]+-[0-9A-Za-z]+", "tskey-", ""),
    (
        "Notion Token",
        r"\b(?:ntn_\d{11}[A-Za-z0-9]{35}|secret_[A-Za-z0-9]{43})\b",
        "ntn_|secret_",
        "",
    ),
    ("Sourcegraph Token", r"\bsgp_(?:[a-fA-F0-9]{16}|local)_[a-fA-F0-9]{40}\b", "sgp_", ""),
    ("Facebook Access Token", r"\bEAA[MC][a-zA-Z0-9]{100,}", "EAA", ""),
    # credentials in the forms the field's scanners know but no rule here had (trufflehog's
    # URI and Telegram detectors, kubeconfig's base64 key fields, a command line's password)
    ("Basic Auth Credentials", r"(?<=://:)[^\s:/?#\[\]@]{4,}(?=@)", "://:", "url"),
    ("Basic Auth Credentials", r"(?i)(?<=basic )[A-Za-z0-9+/]{12,300}={0,2}", "i:basic ", "basic"),
    ("Password on a command line", r"(?<=\s-p)[^\s'\"-][^\s'\"]{3,63}", " -p", "cmdpw"),
    (
        "Private Key",  # a PEM private key, base64-encoded again (kubeconfig client-key-data)
        r"\bLS0tLS1CRUdJTi[A-Za-z0-9+/]{16,300}={0,2}",
        "LS0tLS1CRUdJTi",
        "b64key",
    ),
    ("Telegram Bot API Token", r"(?<![\w:])\d{5,16}:A[\w-]{32,34}(?![\w-])", "re:[0-9]:A", ""),
    # assignments detect-secrets' keyword rules miss (see _ENV_ASSIGNMENT), under
    # the keyword rules' trigger (one tag for all: no extra trigger to scan for)
    ("Password in an environment assignment", _ENV_ASSIGNMENT, _KEYWORD_TRIGGER, "envpw"),
    ("Passphrase", _PHRASE_QUOTED, _KEYWORD_TRIGGER, "phrase"),
    ("Passphrase", _PHRASE_LINE, _KEYWORD_TRIGGER, "phraseline"),
    # hermes's own: the `hermes serve` bearer token, any bearer credential, a URL's ?token=
    # (the `hermes web` link); the credential alone is marked, not the word before it
    ("hermes serve token", r"\bhermes-[A-Za-z0-9_-]{43}(?![\w-])", "hermes-", ""),
    ("Bearer Token", r"(?i)(?<=bearer )[A-Za-z0-9._~+/-]{20,}=*", "i:bearer ", "random"),
    ("URL token", r"(?<=[?&]token=)[A-Za-z0-9._~-]{20,}", "token=", "random"),
    (
        "Hex Private Key",
        r"(?i)(?<![\w])(?:0x)?[a-f0-9]{64}(?![\w])",
        "re:(?i)[a-f0-9]{16}",  # short enough to be seen in one piece and the 24 before it
        "hexkey",
    ),
]

# Every keyword-rule match has a keyword followed (within a few characters) by ':', '=', '!',
# '(' or '.assign', or a comparison before it, or a ';' (detect-secrets' quoted-and-semicolon
# rule): a cheap test before its eleven slower regexes.
_KEYWORD_GATE = re.compile(
    r"(?i)(?:key|pass|pwd|secret|token|contrase)[\w\]'\"`\[\d]{0,40}\s*"
    r"(?:[:=!]|\(\s*[\"']|\.assign)|[!=]=|[\"'`];"
)


def _keyword_patterns() -> list[_Detector]:
    from detect_secrets.plugins import keyword as kw

    out: list[_Detector] = []
    seen: set[str] = set()
    for table in (
        kw.QUOTES_REQUIRED_DENYLIST_REGEX_TO_GROUP,
        kw.CONFIG_DENYLIST_REGEX_TO_GROUP,
        kw.GOLANG_DENYLIST_REGEX_TO_GROUP,
    ):
        for pattern, group in table.items():
            if pattern.pattern in seen:
                continue
            seen.add(pattern.pattern)
            out.append(_Detector("Secret Keyword", pattern, group, _KEYWORD_TRIGGER, "keyword"))
    return out


# Private keys: the headers detect-secrets' PrivateKeyDetector lists, plus encrypted PKCS#8.
_KEY_HEADER = re.compile(
    r"-----BEGIN (?:(?:RSA|DSA|EC|OPENSSH|ENCRYPTED|SSH2 ENCRYPTED) )?PRIVATE KEY-----"
    r"|-----BEGIN PGP PRIVATE KEY BLOCK-----"
    r"|PuTTY-User-Key-File-[23]: "
)
_KEY_END = re.compile(r"-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|Private-MAC: \w+")
_KEY_TRIGGER = "BEGIN|PuTTY"


class _GitleaksRule(NamedTuple):
    entropy: float
    group: int  # 0: the first group that matched (gitleaks' default), or the whole match
    allow: tuple[tuple[str, tuple[re.Pattern[str], ...], tuple[str, ...]], ...]


@lru_cache(maxsize=1)
def _gitleaks() -> tuple[
    list[tuple[str, re.Pattern[str], str]],
    list[_GitleaksRule],
    tuple[re.Pattern[str], ...],
    tuple[str, ...],
]:
    """gitleaks' published rules (``gitleaks_rules.json``, made from its ``gitleaks.toml`` by
    ``scripts/import_gitleaks_rules.py``): ``(kind, regex, trigger)`` per rule, each rule's
    filters, and the global allowlist (regexes and stop words on the secret)."""
    data = json.loads(resources.files("sentinel").joinpath("gitleaks_rules.json").read_text())
    dets: list[tuple[str, re.Pattern[str], str]] = []
    rules: list[_GitleaksRule] = []
    for r in data["rules"]:
        kind = " ".join(w.capitalize() for w in r["id"].split("-"))
        trigger = "|".join("i:" + k for k in r["keywords"])
        dets.append((kind, re.compile(r["regex"], re.ASCII), trigger))
        allow = tuple(
            (
                a["target"],
                tuple(re.compile(x, re.ASCII) for x in a["regexes"]),
                tuple(a["stopwords"]),
            )
            for a in r["allowlists"]
        )
        rules.append(_GitleaksRule(float(r["entropy"]), int(r["group"]), allow))
    glob = tuple(re.compile(x, re.ASCII) for x in data["global_regexes"])
    return dets, rules, glob, tuple(data["global_stopwords"])


@lru_cache(maxsize=1)
def _keyword_names() -> tuple[re.Pattern[str], ...]:
    data = json.loads(resources.files("sentinel").joinpath("gitleaks_rules.json").read_text())
    return tuple(re.compile(x, re.ASCII) for x in data["keyword_name_allowlist"])


def _keyword_name_allowed(name: str) -> bool:
    """gitleaks' list of names that hold no secret (``key_id``, ``secret_name``,
    ``csrf_token``, ``token_url``, ``keyVaultToStoreSecrets``…), for the keyword rule."""
    return any(rx.search(name) for rx in _keyword_names())


def _gitleaks_span(m: re.Match[str], rule: _GitleaksRule) -> tuple[int, int]:
    """The secret's span in gitleaks' terms: its ``secretGroup``, else the first group that
    matched, else the whole match."""
    if rule.group and rule.group <= (m.re.groups or 0):
        return m.span(rule.group)
    for g in range(1, (m.re.groups or 0) + 1):
        if m.start(g) >= 0:
            return m.span(g)
    return m.span()


def _gitleaks_allowed(rule: _GitleaksRule, secret: str, match: str, line: str) -> bool:
    """Whether gitleaks' filters drop the finding: the rule's entropy floor, the global
    allowlist (regexes on the secret, stop words), the rule's own allowlists."""
    if rule.entropy and _entropy(secret) <= rule.entropy:
        return True
    _, _, glob, stop = _gitleaks()
    low = secret.lower()
    if any(rx.search(secret) for rx in glob) or any(w in low for w in stop):
        return True
    for target, regexes, words in rule.allow:
        subject = {"match": match, "line": line}.get(target, secret)
        if any(rx.search(subject) for rx in regexes) or any(w in low for w in words):
            return True
    return False


@lru_cache(maxsize=1)
def _detectors() -> tuple[_Detector, ...]:
    out = _plugin_patterns()
    out += [_Detector(k, re.compile(p), 0, t, c) for k, p, t, c in _EXTRA]
    out += [
        _Detector(kind, rx, 0, trig, f"gitleaks:{i}")
        for i, (kind, rx, trig) in enumerate(_gitleaks()[0])
    ]
    out += _keyword_patterns()
    return tuple(out)


class _Triggers(NamedTuple):
    literals: tuple[tuple[str, int], ...]  # (literal, tag), case-sensitive
    lower: dict[str, tuple[tuple[str, int], ...]]  # first two chars -> (lowercase literal, tag)
    regexes: tuple[tuple[re.Pattern[str], int], ...]
    gates: tuple[tuple[int, ...], ...]  # tag -> the detectors it gates


@lru_cache(maxsize=1)
def _triggers() -> _Triggers:
    specs: dict[str, list[int]] = {}
    for i, d in enumerate(_detectors()):
        specs.setdefault(d.trigger, []).append(i)
    specs.setdefault(_KEY_TRIGGER, [])
    lits: list[tuple[str, int]] = []
    low: dict[str, list[tuple[str, int]]] = {}
    rxs: list[tuple[re.Pattern[str], int]] = []
    for tag, spec in enumerate(specs):
        if spec.startswith("re:"):
            rxs.append((re.compile(spec[3:]), tag))
            continue
        for alt in spec.split("|"):
            if alt.startswith("i:") and len(alt) >= 4:
                low.setdefault(alt[2:4].lower(), []).append((alt[2:].lower(), tag))
            elif alt and not alt.startswith("i:"):
                lits.append((alt, tag))
    return _Triggers(
        tuple(lits),
        {k: tuple(v) for k, v in low.items()},
        tuple(rxs),
        tuple(tuple(v) for v in specs.values()),
    )


def warm_up() -> None:
    """Import detect-secrets and compile every detector (once per process)."""
    _triggers()
    _keyword_names()
    from detect_secrets.filters import heuristic  # noqa: F401


def secret_triggers(text: str, pos: int = 0) -> list[tuple[int, int]]:
    """``(offset, tag)`` of every trigger in ``text[pos:]``, ascending: each detector's
    matches contain one of its triggers, so text without any has no secret. Costs a few
    ``str.find`` calls and small regexes per character class, O(len(text) - pos)."""
    t = _triggers()
    out: list[tuple[int, int]] = []
    for lit, tag in t.literals:
        i = text.find(lit, pos)
        while i >= 0:
            out.append((i, tag))
            i = text.find(lit, i + 1)
    if t.lower:
        # any-case literals (gitleaks' keywords: a few hundred): looked up by their first two
        # characters at each position, one dict probe per character
        low = text.lower() if pos == 0 else text[pos:].lower()
        buckets = t.lower
        for i in range(len(low) - 1):
            cands = buckets.get(low[i : i + 2])
            if cands is not None:
                for lit, tag in cands:
                    if low.startswith(lit, i):
                        out.append((i + pos, tag))
    for rx, tag in t.regexes:
        out.extend((m.start(), tag) for m in rx.finditer(text, pos))
    out.sort()
    return out


# ------------------------------------------------------------------- filters
_PLACEHOLDER_WORDS = (
    "your",
    "xxxx",
    "placeholder",
    "changeme",
    "change_me",
    "dummy",
    "redacted",
    "sample",
    "example",
    "fake",
    "foobar",
    "secret",
    "password",
    "token",
    "here",
)
_TEMPLATE = re.compile(r"^(?:\$\{.*\}|\$\(.*\)|\{\{.*\}\}|<.*>|%\(?\w*\)?s|\$[A-Za-z_]\w*|\{.*\})$")
_MASKED = re.compile(r"^(?:[*xX•.#_-]{3,}|\.\.\.|…)$|\*{3,}|\.{3}|…|\[REDACTED")
_REFERENCE = re.compile(r"^[A-Za-z_][\w]*(?:\.[A-Za-z_]\w*)+(?:\(.*\))?$|^[A-Za-z_]\w*\(.*\)$")


def _entropy(s: str) -> float:
    counts = Counter(s)
    n = len(s)
    return -sum(c / n * math.log2(c / n) for c in counts.values()) if n else 0.0


def _classes(value: str) -> int:
    return (
        any(c.islower() for c in value)
        + any(c.isupper() for c in value)
        + any(c.isdigit() for c in value)
        + any(not c.isalnum() for c in value)
    )


_FAKE_WORDS = ("notreal", "notareal", "not_real", "fake", "dummy", "sample", "test", "invalid")


def _sequential_run(value: str, n: int = 8) -> bool:
    """A run of ``n`` characters each one after the last (abcdefgh, 12345678): a placeholder."""
    run = 1
    for a, b in zip(value, value[1:], strict=False):
        run = run + 1 if ord(b) == ord(a) + 1 else 1
        if run >= n:
            return True
    return False


def placeholder_shape(value: str) -> bool:
    """A value with a key's shape but a placeholder's content: one character repeated
    (``AKIAXXXXXXXXXXXXXXXX``, ``xxxx…``, ``****…``) or very low entropy. Shaped values
    with test-fixture content (``…1234567890abcdef…``) still count: a key shape is a key."""
    return bool(_FILLER.search(value)) or _entropy(value) < 2.0


# one character 8 times in a row (AAAAAAAA, xxxxxxxx) or a unit of 2-8 repeated 4 times
# (EXAMPLEEXAMPLE…, 1234-1234-1234-1234): filler, which a random key does not hold
_FILLER = re.compile(r"(.)\1{7}|(.{2,8})\2{3}")


def looks_random(value: str) -> bool:
    """A high-entropy mix of character classes (a real key), not a placeholder."""
    low = value.lower()
    if "..." in value or "<" in value or "xxxx" in low or "your" in low or "here" in low:
        return False
    if any(w in low for w in _FAKE_WORDS) or placeholder_shape(value) or _sequential_run(value):
        return False
    if "example" in low and _entropy(value) < 4.0:
        return False
    return _classes(value) >= 2 and any(c.isdigit() for c in value) and _entropy(value) >= 3.5


# detect-secrets' indirect reference (``secret = get_secret_key()``, ``= request.headers[…]``):
# an assignment or comparison, a name, an opening bracket (a closing one follows on the line)
_REFERENCE_HEAD = re.compile(r"(?::=?|[!=]{1,3})\s*[\w.-]+[\[(]")


@lru_cache(maxsize=8)
def _indirect_reference(line: str) -> bool:
    r"""detect-secrets' ``is_indirect_reference(line)``, the same answer in linear time: its
    regex (``([^\v=!:]*)\s*(:=?|[!=]{1,3})\s*([\w.-]+[\[\(][^\v]*[\]\)])``) backtracks in
    cubic time on a run of blanks (1,000 spaces after ``password = x``: 9 s of CPU, in one
    call). Its first group may be empty, so it matches where an operator begins a match of
    ``_REFERENCE_HEAD`` and a closing bracket follows with no vertical tab in between.
    Cached: every keyword value of one window is judged with the same line."""
    if len(line) > 1000:
        return False  # as detect-secrets: the heuristic is for lines that look like calls
    pos = 0
    while (m := _REFERENCE_HEAD.search(line, pos)) is not None:
        end = m.end()
        stop = line.find("\v", end)
        stop = len(line) if stop < 0 else stop
        if line.rfind("]", end, stop) >= 0 or line.rfind(")", end, stop) >= 0:
            return True
        if stop == len(line):
            return False  # a later head is followed by the same text, no closing bracket
        # a head ending before the vertical tab fails as this one did; the next candidate
        # ends past it (its blanks may hold the tab: its operator is just before them)
        blank = stop
        while blank > end and line[blank - 1].isspace():
            blank -= 1
        pos = max(m.start() + 1, blank - 3)
    return False


def _credential_value(value: str, line: str) -> bool:
    """Whether a keyword assignment's value looks like a real credential."""
    from detect_secrets.filters import heuristic as h

    value = value.strip().strip("'\"`").rstrip(",;")
    if len(value) < 6 or len(value) > MAX_SECRET_CHARS or any(c.isspace() for c in value):
        return False
    if _TEMPLATE.match(value) or _MASKED.search(value) or _REFERENCE.match(value):
        return False
    if h.is_templated_secret(value) or h.is_prefixed_with_dollar_sign(value):
        return False
    if h.is_sequential_string(value) or h.is_potential_uuid(value):
        return False
    if _indirect_reference(line[:1000]) or h.is_likely_id_string(value, line[:1000]):
        return False
    if value.lower() in ("true", "false", "null", "none", "required", "optional", "string"):
        return False
    named = re.search(r"(?i)api[-_]?key|secret|token|passw", value) is not None
    if (named and (re.search(r"[-_.]", value) or value.isupper())) or re.fullmatch(
        r"[A-Z0-9]+(?:[-_][A-Z0-9]+)+", value
    ):
        # a name (LLM_SECRET_NAME = "NEXUS-GPT4-API-KEY", db_password_file), not a credential;
        # a word in one piece of letters and digits is a password (Hunter2Secret)
        return False
    low = value.lower()
    if placeholder_shape(value) or _sequential_run(value) or any(w in low for w in _FAKE_WORDS):
        return False
    high = len(value) >= 16 and _entropy(value) >= 3.5
    if any(w in low for w in _PLACEHOLDER_WORDS) and not high and not named:
        return False
    if named and not _more_than_words(low):
        return False  # the word itself with a little around it (mypassword99, secret123)
    return high or _classes(value) >= 2


def _more_than_words(low: str) -> bool:
    """Whether a value holds 6+ letters and digits besides the placeholder words in it:
    ``hunter2secret`` is a password with a word in it, ``mypassword99`` and
    ``your_token_here`` are stand-ins."""
    for w in _PLACEHOLDER_WORDS:
        low = low.replace(w, "")
    return sum(c.isalnum() for c in low) >= 6


def _jwt_valid(token: str) -> bool:
    parts = token.split(".")
    if len(parts) < 2:
        return False
    for part in parts[:2]:
        try:
            raw = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
            json.loads(raw)
        except (binascii.Error, ValueError, UnicodeDecodeError):
            return False
    return True


_URL_PLACEHOLDERS = re.compile(
    r"(?i)^(?:my|your|the|replace_?with_?|enter_?|insert_?)?_?"
    r"(?:password|passwd|foobar|changeme)(?:_?here)?$"
    r"|(?-i:^[A-Z][A-Z_]*(?:PASS|PASSWORD|SECRET|PWD)[A-Z_]*$)|^(.)\1*$"
)


def _url_password(value: str) -> bool:
    """A password inside a URL that is a password, not a placeholder word (``user:password@``,
    ``:YOUR_PASSWORD@``) or a template (``:${PGPASS}@``)."""
    if not value or _MASKED.search(value) or _TEMPLATE.match(value):
        return False
    if _URL_PLACEHOLDERS.match(value) or value.startswith(("$", "{", "<", "%")):
        return False
    return len(value) >= 4


_PW_COMMAND = re.compile(r"\b(?:mysql\w*|mariadb\w*)\b")


def _basic_credentials(value: str) -> bool:
    """``Authorization: Basic …``: base64 of ``user:password`` with a real password."""
    try:
        raw = base64.b64decode(value + "=" * (-len(value) % 4), validate=True).decode("utf-8")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return False
    user, colon, password = raw.partition(":")
    return bool(colon and user and raw.isprintable() and _url_password(password))


def _b64_private_key(value: str) -> bool:
    head = value[: len(value) // 4 * 4][:64]
    try:
        return b"PRIVATE KEY" in base64.b64decode(head)
    except (binascii.Error, ValueError):
        return False


# What names a 64-hex value as a key (in the 40 characters before it), and what names it as
# a digest (which wins: ``public key sha256:``, ``commit``, ``checksum``)
_HEX_KEY_NAME = re.compile(
    r"(?i)priv|secret|key|seed|mnemonic|wallet|token|passw|credential|(?<![a-z])pk(?![a-z])"
)
_HEX_DIGEST_NAME = re.compile(
    r"(?i)\bsha\b|sha-?\d|hash|digest|checksum|sum\b|fingerprint|commit|\brev(?:ision)?\b"
    r"|integrity|etag|md5|blake|crc|\bpub|public|\btx|transaction|\bid\b|_id\b"
    r"|page|cursor|continuation|nonce|salt|\biv\b"  # what is sent in the clear
)


def _hex_key_named(before: str) -> bool:
    """Whether a 64-hex value is named as a key: a key name (``private key:``, ``seed``,
    ``API_TOKEN=``, ``ETH_PK=``) in the 40 characters before it on its line, and no digest
    name there (a bare 64-hex value is a SHA-256 digest as often as a key: not a secret)."""
    return (
        bool(_HEX_KEY_NAME.search(before))
        and not _HEX_DIGEST_NAME.search(before)
        and not _keyword_name_allowed(before)  # gitleaks' names that hold none (csrf_token)
    )


def _aws_example(kind: str, value: str) -> bool:
    """An AWS key shape whose filler is AWS's own documentation marker, ``EXAMPLE``
    (``ABSKQmVkcm9ja0FQSUtleS1EXAMPLEEXAMPLE…``, as in gitleaks' Bedrock rule): AWS's
    documented examples count, like ``AKIAIOSFODNN7EXAMPLE``; other filler does not."""
    if not kind.lower().startswith("aws") or "EXAMPLE" not in value:
        return False
    rest = value.replace("EXAMPLE", "")
    return len(rest) >= 8 and not placeholder_shape(rest)


def _aws_id(text: str, s: int, e: int) -> bool:
    """An access key id stands alone (TODAYINASIAASACK… is a word) and has a digit."""
    before = text[s - 1] if s else " "
    after = text[e] if e < len(text) else " "
    return not before.isalnum() and not after.isalnum() and any(c.isdigit() for c in text[s:e])


def _slack_token(value: str) -> bool:
    low = value.lower()
    if "xox" in low[4:] or "#" in value or any(w in low for w in ("here", "random", "initial")):
        return False
    ids = re.findall(r"-(\d+)(?=-)", value)
    if len(ids) >= 2 and len(set(ids)) < len(ids):
        return False  # the same id twice (xoxp-1234-1234-1234-…): a placeholder
    return len(value) >= 24 and not _sequential_run(value.replace("-", ""), 6)


_NAME_CHAR = re.compile(r"[\w.-]")
_MASK_NEXT = re.compile(r"[-_.]?(?:[#*•]|[xX]{4}|\.\.\.|…)")


def _masked_next(text: str, end: int) -> bool:
    """The key shape runs on into a mask (``xoxp-5723…-####``, ``ghp_abc…****``): what is
    there is the unmasked part of a placeholder, not a key."""
    return _MASK_NEXT.match(text, end) is not None


# judged on whole lines only: a value that may still grow, or that the rest of its line
# decides (``password = os.environ[...]``); the environment rule matches again at every
# piece of a long run of assignments (``X_PASS=a X_PASS=a ...``) until its line is read
_WHOLE_LINE = frozenset({"keyword", "phrase", "phraseline", "envpw"})

_JWT_TAIL = re.compile(r"[A-Za-z0-9_=+/.-]*")


# ------------------------------------------------------------------- scanning
def find_in_window(
    text: str,
    start: int = 0,
    keywords: bool = True,
    tags: set[int] | None = None,
    only_keywords: bool = False,
) -> list[Secret]:
    """Secrets in ``text`` (at most ``LINE_WINDOW`` characters: the caller bounds it), matched
    at or after ``start``, overlapping ones merged. No PEM handling (see ``find_secrets``).
    ``keywords=False`` skips the keyword assignments (judged in line windows only);
    ``only_keywords`` runs nothing else; ``tags``: the triggers present (``secret_triggers``),
    when the caller already knows them."""
    dets = _detectors()
    if only_keywords:
        # every keyword-rule match holds one of these (its trigger): a few str.find calls
        low = text.lower()
        if not any(w in low for w in _KEYWORD_WORDS):
            return []
        wanted = set(_keyword_detectors())
    else:
        gates = _triggers().gates
        if tags is None:
            tags = {tag for _, tag in secret_triggers(text, max(0, start - 24))}
        wanted = set()
        for tag in tags:
            wanted.update(gates[tag])
    if not wanted:
        return []
    found: list[Secret] = []
    if keywords and not _KEYWORD_GATE.search(text):
        keywords = False  # no keyword next to an assignment, comparison, call or ';'
    if only_keywords and not keywords:
        return []
    for i in sorted(wanted):
        d = dets[i]
        if d.check in _WHOLE_LINE and not keywords:
            continue
        for m in d.pattern.finditer(text, start):
            g = d.group if d.group <= (d.pattern.groups or 0) else 0
            s, e = m.span(g)
            if s < 0 or s == e:
                continue
            value = text[s:e]
            if d.check == "jwt":
                e = _JWT_TAIL.match(text, s).end()  # type: ignore[union-attr]
                if not _jwt_valid(text[s:e]):
                    continue
            elif d.check == "random" and not looks_random(value):
                continue
            elif d.check == "keyword":
                if not _credential_value(value, text):
                    continue
                name_start = m.start()
                while name_start > 0 and _NAME_CHAR.match(text, name_start - 1):
                    name_start -= 1
                if _keyword_name_allowed(text[name_start:s]):
                    continue  # a name that holds no secret (key_id: …, secret_name = …)
                value = value.strip()
                lead = len(value) - len(value.lstrip("'\"`"))
                s = text.find(value, s) + lead
                e = s + len(value.strip("'\"`").rstrip(",;"))
            elif d.check == "url":
                if not _url_password(value):
                    continue
                user = re.search(r"([^\s/:@]*):$", text[max(0, s - 80) : s])
                if user and user.group(1).lower() == value.lower():
                    continue  # user = password (postgres:postgres@): a default, not a secret
            elif d.check.startswith("gitleaks:"):
                rule = _gitleaks()[1][int(d.check[9:])]
                s, e = _gitleaks_span(m, rule)
                value = text[s:e]
                if s == e or _gitleaks_allowed(rule, value, m.group(), text):
                    continue
                if placeholder_shape(value) and not _aws_example(d.kind, value):
                    continue
            elif d.check == "basic":
                if not _basic_credentials(value):
                    continue
            elif d.check == "cmdpw":
                line = text[text.rfind("\n", 0, s) + 1 : s]
                if not _PW_COMMAND.search(line) or not _url_password(value):
                    continue  # mkdir -p …: only a database client's -pPASSWORD
            elif d.check == "envpw":
                name = m.group("name")
                if m.group("qv") is not None:
                    if _PASSWORD_NAME.search(name):
                        continue  # quoted: the keyword and passphrase rules judge it
                    s, e = m.span("qv")
                else:
                    s, e = m.span("v")
                value = text[s:e]
                if len(value) < 6:
                    continue
                if not _ENV_SECRET_NAME.search(name) or name.lower() in ("pwd", "oldpwd"):
                    continue
                if " " in value:
                    if not _phrase_password(value):
                        continue
                elif _path_like(value) or not _credential_value(value, text):
                    continue
                if _ABOUT_PASSWORD.search(name) or _keyword_name_allowed(name):
                    continue
            elif d.check in ("phrase", "phraseline"):
                s, e = m.span("v")
                value = text[s:e]
                if " " in value:
                    if not _phrase_password(value):
                        continue
                elif "phrase" not in m.group("name").lower() or not _credential_value(value, text):
                    continue  # one token: the keyword rules judge a password's
                if _ABOUT_PASSWORD.search(m.group("sfx")) or _keyword_name_allowed(m.group("name")):
                    continue
            elif d.check == "b64key":
                if not _b64_private_key(value):
                    continue
            elif d.check == "hexkey":
                if not _hex_key_named(text[max(0, s - 40) : s]):
                    continue  # a hash (commit, checksum) unless a key is named next to it
            elif d.check not in ("keyword", "url") and placeholder_shape(value):
                continue
            if d.check != "keyword" and _masked_next(text, e):
                continue
            if d.kind == "AWS Access Key" and d.group == 0 and not _aws_id(text, s, e):
                continue
            if d.kind == "Slack Token" and not _slack_token(text[s:e]):
                continue
            elif d.check == "npm":
                value = value.split()[0] if value.split() else value
                e = s + len(value)
            found.append(Secret(s, e, d.kind))
    # a shape (a provider's key format) wins over a keyword rule that overlaps it; nothing
    # else is merged here, so what a streaming caller reports never depends on the split
    shapes = [f for f in found if f.kind != "Secret Keyword"]
    found = shapes + [
        f
        for f in found
        if f.kind == "Secret Keyword"
        and not any(f.start < x.end and x.start < f.end for x in shapes)
    ]
    found.sort(key=lambda x: (x.start, -x.end))
    return found


def _merge(found: list[Secret]) -> list[Secret]:
    found.sort(key=lambda x: (x.start, -x.end))
    out: list[Secret] = []
    for sec in found:
        if out and sec.start < out[-1].end:
            if sec.end > out[-1].end:
                out[-1] = Secret(out[-1].start, sec.end, out[-1].kind)
            continue
        out.append(sec)
    return out


def key_header_alone(line: str, m: re.Match[str]) -> bool:
    """Whether the private-key header ``m`` in ``line`` starts a key block (it is the line's
    content, possibly quoted, assigned or followed by an escaped newline) rather than a phrase
    inside a sentence."""
    before = line[: m.start()].strip(" \t>\"'`*#/-;=:([{")
    after = line[m.end() :].strip()
    return (not before or before.endswith(("=", ":"))) and (
        not after or not re.match(r"[A-Za-z]", after)
    )


KEY_HEADER = _KEY_HEADER
_BODY_NEXT = re.compile(r"[ \t]*(?:\\r)?(?:\\n|\r?\n)[ \t]*(?:[A-Za-z0-9+/=]{8}|[A-Z][\w-]+: )")


def _pem_blocks(text: str) -> list[Secret]:
    """Private-key blocks: header to END line (or to the end of the text while streaming)."""
    out: list[Secret] = []
    pos = 0
    while (m := _KEY_HEADER.search(text, pos)) is not None:
        line_start = text.rfind("\n", 0, m.start()) + 1
        nl = text.find("\n", m.end())
        line = text[line_start : nl if nl >= 0 else len(text)]
        if re.match(r"[\s\\n]*-----END ", text[m.end() : m.end() + 40]):
            pos = m.end()  # an empty block (header, then END): not a key
            continue
        hm = _KEY_HEADER.search(line, m.start() - line_start)
        alone = hm is not None and key_header_alone(line, hm)
        if not alone and not _BODY_NEXT.match(text, m.end()):
            pos = m.end()
            continue
        end_m = _KEY_END.search(text, m.end())
        end = end_m.end() if end_m else len(text)
        out.append(Secret(m.start(), end, "Private Key"))
        pos = end
    return out


# Lines longer than this are read in windows of this many characters, one every LINE_STEP:
# the overlap holds a keyword assignment whole (a name, its value of at most MAX_SECRET_CHARS,
# and _SETTLE characters after it) in the next window when it ends near one window's end.
# A window of the keyword rules costs about 1-1.5 ms of CPU on the 2-core machine, whatever
# its text (benchmarks/bench_sentinel_stall.py): the stream judges one per LINE_STEP
# characters, and only one holding a keyword next to an assignment.
LINE_WINDOW = 1024
LINE_STEP = 512
# A keyword value that ends this close to the end of a window that does not end its line may
# still grow, or be a reference the rest of the line shows (``os.environ[...]``): the next
# window judges it.
_SETTLE = 64


@lru_cache(maxsize=1)
def _keyword_detectors() -> tuple[int, ...]:
    """The detectors judged in line windows only (keyword values, passphrases, environment
    assignments), by index."""
    return tuple(i for i, d in enumerate(_detectors()) if d.check in _WHOLE_LINE)


@lru_cache(maxsize=1)
def _keyword_kinds() -> frozenset[str]:
    dets = _detectors()
    return frozenset(dets[i].kind for i in _keyword_detectors())


def line_windows(length: int) -> list[tuple[int, int, bool]]:
    """``(start, end, last)`` of the windows a line of ``length`` characters is read in: the
    whole line when it fits in ``LINE_WINDOW``, else one window every ``LINE_STEP`` characters;
    ``last``: the window reaches the end of the line."""
    out: list[tuple[int, int, bool]] = []
    k = 0
    while k + LINE_WINDOW < length:
        out.append((k, k + LINE_WINDOW, False))
        k += LINE_STEP
    out.append((k, length, True))
    return out


def find_in_line_window(window: str, last: bool, only_keywords: bool = False) -> list[Secret]:
    """The secrets in one of a line's windows (``line_windows``; ``window`` is its text,
    without the line break). In a window that does not end its line, a keyword assignment
    ending near the window's end is left to the next window, which holds it whole (with its
    whole name and what follows it). ``only_keywords``: the keyword rules alone (what the
    sentinel's check judges per line window as the line streams)."""
    found = find_in_window(window, only_keywords=only_keywords)
    if last:
        return found
    kinds = _keyword_kinds()
    edge = len(window) - _SETTLE
    return [f for f in found if f.kind not in kinds or f.end <= edge]


def find_secrets(text: str) -> list[Secret]:
    """Every secret in ``text``, in order, overlapping findings merged. Linear in ``len(text)``:
    lines longer than ``LINE_WINDOW`` characters are read in overlapping windows."""
    found = _pem_blocks(text)
    pos = 0
    n = len(text)
    while pos < n:
        nl = text.find("\n", pos)
        end = n if nl < 0 else nl
        for a, b, last in line_windows(end - pos):
            found.extend(
                Secret(s + pos + a, e + pos + a, k)
                for s, e, k in find_in_line_window(text[pos + a : pos + b], last)
            )
        pos = end + 1
    return _merge(found)
