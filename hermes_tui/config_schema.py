"""The JSON Schema that config.toml must satisfy (checked before anything else runs)."""

from __future__ import annotations

_SIZE = {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)\s*$"}
_SIZE_DESC = "a size like '8GiB' or '512MiB'"

MODEL = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "path": {"type": "string", "minLength": 1},
        "url": {"type": "string", "pattern": r"^https?://"},
        "remote_model": {"type": "string"},
        "api_key_env": {"type": "string"},
        "max_concurrency": {"type": "integer", "minimum": 1},
        "timeout_s": {"type": "number", "exclusiveMinimum": 0},
        "n_ctx": {"type": "integer", "minimum": 64, "maximum": 1048576},
        "n_gpu_layers": {"type": "integer", "minimum": -1},
        "chat_format": {"type": "string"},
        "device": {"type": "string"},
        "tensor_split": {"type": "array", "items": {"type": "number", "minimum": 0}},
        "keep_alive_s": {"type": "number", "minimum": 0},
    },
    "oneOf": [{"required": ["path"]}, {"required": ["url"]}],
}

PERSONA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["model", "system_prompt"],
    "properties": {
        "model": {"type": "string"},
        "system_prompt": {"type": "string"},
        "contract": {"enum": ["text", "code", "json"]},
        "schema": {"type": "object"},
        "schema_file": {"type": "string"},
        "max_words": {"type": "integer", "minimum": 1},
        "banned_imports": {"type": "array", "items": {"type": "string", "minLength": 1}},
        "temperature": {"type": "number", "minimum": 0, "maximum": 5},
        "max_tokens": {"type": "integer", "minimum": 1, "maximum": 131072},
        "color": {"type": "string"},
        # a marker the user planted in system_prompt: seeing it in an answer is E_PROMPT_LEAK
        "canary": {"type": "string", "minLength": 4},
        # E_PATTERN: a strict regex replacing a known pattern, or {trigger, strict} for a new one
        "patterns": {
            "type": "object",
            "additionalProperties": {
                "type": ["string", "object"],
                "description": "a regex a `url`/`email`/`path`/`ipv4` must match in full, or "
                '`{trigger = "regex", strict = "regex"}` for a new kind of token',
            },
        },
    },
}

CONFIG_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "required": ["models", "personas"],
    "properties": {
        "default_persona": {"type": "string"},
        "workflow": {"enum": ["pipeline", "parallel"]},
        "models": {"type": "object", "minProperties": 1, "additionalProperties": MODEL},
        "personas": {
            "type": "object",
            "minProperties": 1,
            "additionalProperties": PERSONA,
            # A persona is addressed as @name, so its name must be one @-able word.
            "propertyNames": {"pattern": r"^[A-Za-z_][\w-]*$"},
        },
        "pool": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "queue_size": {"type": "integer", "minimum": 1, "maximum": 100000},
                "slice_tokens": {"type": "integer", "minimum": 1},
                "seqs_per_model": {"type": "integer", "minimum": 1, "maximum": 64},
                "decode_mode": {"enum": ["auto", "batched", "interleaved"]},
                "state_cache": _SIZE,
                "state_cache_dir": {"type": "string", "minLength": 1},
                "state_cache_disk": _SIZE,
                "devices": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["name", "memory"],
                        "properties": {"name": {"type": "string"}, "memory": _SIZE},
                    },
                },
            },
        },
        "sentinel": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "device": {"type": "string", "pattern": r"^(cpu|cuda:\d+|vulkan:\d+)$"},
                "model": {"type": "string"},
                "llama_cpp_path": {"type": "string"},
                "max_corrections": {"type": "integer", "minimum": 0, "maximum": 20},
                "stall_warn_s": {"type": "number", "exclusiveMinimum": 0},
                "stall_halt_s": {"type": "number", "exclusiveMinimum": 0},
                "judge_every_chars": {"type": "integer", "minimum": 50},
                "judge_timeout_s": {"type": "number", "exclusiveMinimum": 0, "maximum": 600},
                "judge_busy_share": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
                "loop_minor_repeats": {"type": "integer", "minimum": 2},
                "loop_critical_repeats": {"type": "integer", "minimum": 2},
                "tool_loop_exempt": {"type": "array", "items": {"type": "string"}},
                "severity": {
                    "type": "object",
                    "additionalProperties": {"enum": ["minor", "critical"]},
                },
            },
        },
        "storage": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"db": {"type": "string"}, "redact_secrets": {"type": "boolean"}},
        },
        # hermes serve: where clients find it, and the admission order of its queue.
        "server": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "url": {"type": "string", "minLength": 1},
                "priorities": {
                    "type": "array",
                    "items": {"enum": ["interactive", "api", "batch"]},
                    "minItems": 3,
                    "maxItems": 3,
                    "uniqueItems": True,
                },
            },
        },
    },
}

# Friendlier words for the "expected ..." half of an error, by JSON Schema keyword value.
TYPE_WORDS = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "object": "a table",
    "array": "a list",
    "boolean": "true or false",
}
SIZE_DESC = _SIZE_DESC
