"""Load config.toml: find it, parse it, validate it against a JSON Schema, build typed objects.

Every problem becomes one ``ConfigError`` whose text is ``FILE: KEY: what was expected``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import platformdirs

from agents.errors import HermesError
from agents.models import ModelFileError, resolve_model_path
from agents.persona import Persona
from agents.pool.devices import parse_size
from agents.specs import DeviceSpec, ModelSpec, PoolSpec
from hermes_tui.config_schema import CONFIG_SCHEMA, SIZE_DESC, TYPE_WORDS
from hermes_tui.readfile import InputFileError, read_limited
from sentinel.settings import SentinelSettings
from sentinel.verdict import CODES

if sys.version_info >= (3, 11):  # noqa: UP036 - tomli stays the fallback the user asked for
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

APP_NAME = "hermes-tui"
PACKAGED_CONFIG = Path(__file__).with_name("default_config.toml")


class ConfigError(HermesError):
    """A config problem, already phrased as one line for the user."""

    code = "E_CONFIG"
    exit_status = 2

    def __init__(self, file: Path | str, key: str, message: str) -> None:
        self.file, self.key, self.message = str(file), key, message
        where = f"{self.file}: {key}: " if key else f"{self.file}: "
        super().__init__(where + message)


@dataclass(frozen=True)
class Config:
    path: Path
    models: dict[str, ModelSpec]
    personas: dict[str, Persona]
    pool: PoolSpec
    sentinel: SentinelSettings
    sentinel_model: str | None
    db_path: Path | None
    default_persona: str
    workflow: str
    digest: str = field(default="")
    redact_secrets: bool = True
    server_url: str | None = None  # [server] url: the hermes serve that clients use
    server_priorities: tuple[str, ...] = ()  # [server] priorities: admission order


def user_config_path() -> Path:
    return Path(platformdirs.user_config_dir(APP_NAME)) / "config.toml"


def find_config(explicit: str | os.PathLike | None = None) -> Path:
    """The lookup order: --config, $HERMES_CONFIG, ./config.toml, user config dir, packaged."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("HERMES_CONFIG")
    if env:
        return Path(env)
    for candidate in (Path.cwd() / "config.toml", user_config_path()):
        if candidate.is_file():
            return candidate
    return PACKAGED_CONFIG


def _key_path(parts: Any) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _shown(value: object) -> str:
    """A config value as the error line quotes it; TOML dates and times are shown as written."""
    return json.dumps(value, default=str)


def _describe(error: jsonschema.ValidationError) -> tuple[str, str]:
    """Turn one jsonschema error into (key path, what was expected)."""
    key = _key_path(error.absolute_path)
    v, value = error.validator, error.instance
    if v == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(value) - set(allowed)) if isinstance(value, dict) else []
        name = extra[0] if extra else "?"
        full = f"{key}.{name}" if key else name
        hint = f" (expected one of: {', '.join(allowed)})" if allowed else ""
        return full, f"unknown key{hint}"
    if v == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        full = f"{key}.{missing}" if key else missing
        return full, "missing required key"
    if v == "type":
        kinds = error.validator_value
        kinds = kinds if isinstance(kinds, list) else [kinds]
        want = " or ".join(TYPE_WORDS.get(k, str(k)) for k in kinds)
        return key, f"expected {want}, got {_shown(value)[:60]}"
    if v == "enum":
        choices = " or ".join(_shown(c) for c in error.validator_value)
        return key, f"expected {choices}, got {_shown(value)[:60]}"
    if v == "pattern" and error.schema_path and "propertyNames" in error.schema_path:
        full = f"{key}.{value}" if key else str(value)
        return full, "expected a name of letters, digits, '_' or '-' (it is used as @name)"
    if v == "pattern" and key.endswith("memory"):
        return key, f"expected {SIZE_DESC}, got {_shown(value)}"
    if v == "pattern" and key.endswith("device"):
        return key, f"expected 'cpu', 'cuda:N' or 'vulkan:N', got {_shown(value)}"
    if v == "pattern" and key.endswith("url"):
        return key, f"expected an http:// or https:// URL, got {_shown(value)}"
    if v in ("minimum", "maximum", "exclusiveMinimum", "minLength", "minProperties", "minItems"):
        words = {
            "minimum": f"at least {error.validator_value}",
            "maximum": f"at most {error.validator_value}",
            "exclusiveMinimum": f"more than {error.validator_value}",
            "minLength": "a non-empty string",
            "minProperties": "at least one entry",
            "minItems": "at least one item",
        }[v]
        return key, f"expected {words}, got {_shown(value)[:60]}"
    if v == "oneOf" and isinstance(value, dict):
        if "path" in value and "url" in value:
            return key, "expected either 'path' (a local GGUF) or 'url' (a server), not both"
        return key, "expected 'path' (a GGUF file or embedded:NAME) or 'url' (a server)"
    return key, error.message


MAX_CONFIG_BYTES = 2**20  # a config or a JSON Schema file: far more than any real one
MAX_SCHEMA_BYTES = 2**20


def _read_toml(path: Path) -> dict:
    try:
        raw = read_limited(path, MAX_CONFIG_BYTES)
    except FileNotFoundError:
        raise ConfigError(path, "", "config file not found") from None
    except InputFileError as exc:
        raise ConfigError(path, "", f"config file {exc}") from None
    try:
        return tomllib.loads(raw.decode("utf-8-sig"))  # a leading BOM is harmless
    except UnicodeDecodeError:
        raise ConfigError(path, "", "expected UTF-8 text, found invalid bytes") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, "", f"invalid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(path, "", "invalid TOML: nested too deeply") from None


def _non_finite(value: Any, key: str = "") -> str | None:
    """The key path of the first NaN or infinite number (TOML allows them; we never do)."""
    if isinstance(value, float) and not math.isfinite(value):
        return key
    items = (
        value.items()
        if isinstance(value, dict)
        else enumerate(value)
        if isinstance(value, list)
        else ()
    )
    for k, v in items:
        sub = f"{key}[{k}]" if isinstance(k, int) else (f"{key}.{k}" if key else str(k))
        found = _non_finite(v, sub)
        if found is not None:
            return found
    return None


def _load_schema(path: Path, persona: str, table: dict) -> dict | None:
    key = f"personas.{persona}"
    if "schema" in table and "schema_file" in table:
        raise ConfigError(path, key, "expected 'schema' or 'schema_file', not both")
    schema = table.get("schema")
    if "schema_file" in table:
        file = (path.parent / table["schema_file"]).expanduser()
        try:
            schema = json.loads(read_limited(file, MAX_SCHEMA_BYTES).decode("utf-8"))
        except OSError:
            raise ConfigError(path, key + ".schema_file", f"file not found: {file}") from None
        except InputFileError as exc:
            raise ConfigError(path, key + ".schema_file", f"{file} {exc}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(
                path, key + ".schema_file", f"expected a JSON Schema file, {file}: {exc}"
            ) from None
        if not isinstance(schema, dict):
            raise ConfigError(path, key + ".schema_file", "expected a JSON object")
        key += ".schema_file"
    else:
        key += ".schema"
    if schema is None:
        if table.get("contract") == "json":
            raise ConfigError(
                path, f"personas.{persona}", "contract 'json' needs 'schema' or 'schema_file'"
            )
        return None
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        where = _key_path(exc.absolute_path)
        raise ConfigError(
            path, key + (f".{where}" if where else ""), f"invalid JSON Schema: {exc.message}"
        ) from None
    return schema


def _build_models(path: Path, data: dict) -> dict[str, ModelSpec]:
    models = {}
    for name, table in data["models"].items():
        resolved = None
        if "path" in table:
            try:
                resolved = resolve_model_path(table["path"], base_dir=path.parent)
            except ModelFileError as exc:
                raise ConfigError(path, f"models.{name}.path", str(exc)) from None
        models[name] = ModelSpec(
            name=name,
            path=resolved,
            n_ctx=table.get("n_ctx", 2048),
            n_gpu_layers=table.get("n_gpu_layers", 0),
            chat_format=table.get("chat_format"),
            device=table.get("device", "cpu"),
            tensor_split=tuple(table.get("tensor_split", ())),
            url=table.get("url"),
            remote_model=table.get("remote_model"),
            api_key_env=table.get("api_key_env"),
            max_concurrency=table.get("max_concurrency", 1),
            timeout_s=float(table.get("timeout_s", 120.0)),
            keep_alive_s=table.get("keep_alive_s", 300.0),
        )
    return models


def _build_personas(path: Path, data: dict, models: dict) -> dict[str, Persona]:
    personas = {}
    for name, table in data["personas"].items():
        if name == "all":
            raise ConfigError(path, "personas.all", "'all' is reserved (it addresses everyone)")
        if table["model"] not in models:
            known = ", ".join(sorted(models))
            raise ConfigError(
                path,
                f"personas.{name}.model",
                f"unknown model {table['model']!r} (expected one of: {known})",
            )
        personas[name] = Persona(
            name=name,
            model=table["model"],
            system_prompt=table["system_prompt"],
            contract=table.get("contract", "text"),
            schema=_load_schema(path, name, table),
            max_words=table.get("max_words"),
            banned_imports=tuple(table.get("banned_imports", ())),
            temperature=table.get("temperature", 0.7),
            max_tokens=table.get("max_tokens", 256),
            color=_colour(path, name, table.get("color", "white")),
            canary=table.get("canary"),
            patterns=_patterns(path, name, table.get("patterns", {})),
        )
    return personas


def _patterns(path: Path, persona: str, table: dict) -> dict[str, str | tuple[str, str]]:
    """``[personas.X.patterns]``: each one checked now (a bad regex is one line, not a crash
    at the first token)."""
    import re

    from sentinel.checks.patterns import DEFAULT_PATTERNS, PatternCheck

    known = ", ".join(DEFAULT_PATTERNS)
    out: dict[str, str | tuple[str, str]] = {}
    for key, value in table.items():
        where = f"personas.{persona}.patterns.{key}"
        spec: str | tuple[str, str]
        if isinstance(value, dict):
            if set(value) != {"trigger", "strict"} or not all(
                isinstance(v, str) and v for v in value.values()
            ):
                raise ConfigError(path, where, 'expected {trigger = "regex", strict = "regex"}')
            spec = (value["trigger"], value["strict"])
        else:
            if key.lower() not in DEFAULT_PATTERNS:
                raise ConfigError(
                    path,
                    where,
                    f"a plain regex replaces a known pattern ({known}); for a new one give "
                    '{trigger = "regex", strict = "regex"}',
                )
            spec = value
        try:
            PatternCheck({key: spec})
        except re.error as exc:
            raise ConfigError(path, where, f"invalid regular expression: {exc}") from None
        except ValueError as exc:
            raise ConfigError(path, where, str(exc)) from None
        out[key] = spec
    return out


def _llama_cpp_path(path: Path, value: str) -> str | None:
    """``[sentinel] llama_cpp_path``: a directory holding a llama_cpp package, or ''."""
    if not value:
        return None
    where = Path(value).expanduser()
    if not where.is_absolute():
        where = path.parent / where
    if not (where / "llama_cpp").is_dir():
        raise ConfigError(path, "sentinel.llama_cpp_path", f"no llama_cpp package in {where}")
    return str(where.resolve())


def _colour(path: Path, persona: str, value: str) -> str:
    """A colour Textual can draw (a typo used to pass here and kill the chat later)."""
    from textual.color import Color, ColorParseError

    try:
        Color.parse(value)
    except ColorParseError as exc:
        hint = str(exc).split("; ", 1)[1] if "; " in str(exc) else ""
        raise ConfigError(
            path,
            f"personas.{persona}.color",
            f"expected a colour (a name such as 'cyan', '#rrggbb' or 'rgb(r,g,b)'), "
            f"got {_shown(value)}" + (f"; {hint}" if hint else ""),
        ) from None
    return value


def _build_sentinel(path: Path, data: dict, models: dict) -> tuple[SentinelSettings, str | None]:
    table = data.get("sentinel", {})
    model = table.get("model", "") or None
    judge_path = None
    if model is not None:
        if model not in models:
            known = ", ".join(sorted(models))
            raise ConfigError(
                path, "sentinel.model", f"unknown model {model!r} (expected one of: {known} or '')"
            )
        if models[model].path is None:
            raise ConfigError(path, "sentinel.model", "the judge needs a local GGUF model")
        judge_path = str(models[model].path)
    severity = table.get("severity", {})
    for code in severity:
        if code not in CODES:
            raise ConfigError(
                path,
                f"sentinel.severity.{code}",
                f"unknown code (expected one of: {', '.join(CODES)})",
            )
    warn, halt = table.get("stall_warn_s", 10.0), table.get("stall_halt_s", 30.0)
    if halt <= warn:
        raise ConfigError(
            path, "sentinel.stall_halt_s", f"expected more than stall_warn_s ({warn}), got {halt}"
        )
    settings = SentinelSettings(
        device=table.get("device", "cpu"),
        judge_model_path=judge_path,
        judge_llama_cpp_path=_llama_cpp_path(path, table.get("llama_cpp_path", "")),
        judge_every_chars=table.get("judge_every_chars", 400),
        judge_timeout_s=float(table.get("judge_timeout_s", 5.0)),
        judge_busy_share=(
            float(table["judge_busy_share"]) if "judge_busy_share" in table else None
        ),
        max_corrections=table.get("max_corrections", 2),
        stall_warn_s=float(warn),
        stall_halt_s=float(halt),
        loop_minor_repeats=table.get("loop_minor_repeats", 3),
        loop_critical_repeats=table.get("loop_critical_repeats", 5),
        tool_loop_exempt=tuple(table.get("tool_loop_exempt", ())),
        severity=dict(severity),
    )
    return settings, model


def load_config(explicit: str | os.PathLike | None = None) -> Config:
    """Find, parse and validate the config; raise ConfigError with one line on any problem."""
    path = find_config(explicit)
    data = _read_toml(path)
    bad = _non_finite(data)
    if bad is not None:
        raise ConfigError(path, bad, "expected a finite number, got nan or inf")
    validator = jsonschema.Draft202012Validator(CONFIG_SCHEMA)
    errors = sorted(validator.iter_errors(data), key=lambda e: (list(e.absolute_path), e.message))
    if errors:
        best = jsonschema.exceptions.best_match(errors)
        key, message = _describe(best)
        raise ConfigError(path, key, message)
    models = _build_models(path, data)
    personas = _build_personas(path, data, models)
    default = data.get("default_persona", next(iter(personas)))
    if default not in personas:
        known = ", ".join(personas)
        raise ConfigError(
            path, "default_persona", f"unknown persona {default!r} (expected one of: {known})"
        )
    devices = []
    for i, dev in enumerate(data.get("pool", {}).get("devices", [])):
        try:
            devices.append(DeviceSpec(dev["name"], parse_size(dev["memory"])))
        except ValueError as exc:
            raise ConfigError(path, f"pool.devices[{i}].memory", str(exc)) from None
    pool_table = data.get("pool", {})
    cache_sizes: dict[str, int | None] = {}
    for key in ("state_cache", "state_cache_disk"):
        try:
            cache_sizes[key] = parse_size(pool_table[key]) if key in pool_table else None
        except ValueError as exc:
            raise ConfigError(path, f"pool.{key}", str(exc)) from None
    cache_dir = None
    if pool_table.get("state_cache_dir"):
        cache_dir = Path(pool_table["state_cache_dir"]).expanduser()
        if not cache_dir.is_absolute():
            cache_dir = path.parent / cache_dir
    pool = PoolSpec(
        queue_size=pool_table.get("queue_size", 16),
        slice_tokens=pool_table.get("slice_tokens", 32),
        seqs_per_model=pool_table.get("seqs_per_model", 3),
        decode_mode=pool_table.get("decode_mode", "auto"),
        devices=tuple(devices),
        state_cache_bytes=cache_sizes["state_cache"],
        state_cache_dir=cache_dir,
        state_cache_disk_bytes=cache_sizes["state_cache_disk"] or 8 * 1024**3,
    )
    sentinel, sentinel_model = _build_sentinel(path, data, models)
    db = data.get("storage", {}).get("db", "")
    db_path = None
    if db:
        db_path = Path(db).expanduser()
        if not db_path.is_absolute():
            db_path = path.parent / db_path
    digest = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]
    return Config(
        path=path,
        models=models,
        personas=personas,
        pool=pool,
        sentinel=sentinel,
        sentinel_model=sentinel_model,
        db_path=db_path,
        default_persona=default,
        workflow=data.get("workflow", "pipeline"),
        digest=digest,
        redact_secrets=data.get("storage", {}).get("redact_secrets", True),
        server_url=data.get("server", {}).get("url") or None,
        server_priorities=tuple(data.get("server", {}).get("priorities", ())),
    )
