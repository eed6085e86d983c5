"""The OpenAI chat-completions wire format: request checking, response, chunk and error shapes.

Only what hermes serves is checked strictly (``messages``, sampling, ``stream``, and the shapes
of ``tools``, ``tool_choice``, ``response_format`` and ``tool_calls``); other fields (``user``...)
stay in ``ChatRequest.raw``, so a standard client's extra fields never make a request fail.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import jsonschema

from agents.engine import Message, SamplingParams

MAX_STOPS = 4  # OpenAI's limit

_CONTENT = {
    "anyOf": [
        {"type": "string"},
        {"type": "null"},
        {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["type"],
                "properties": {
                    "type": {"type": "string"},
                    "text": {"type": "string"},
                    "refusal": {"type": "string"},
                },
            },
        },
    ]
}

_NAMED = {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}
_TOOL_CALL = {"type": "object", "required": ["function"], "properties": {"function": _NAMED}}

REQUEST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["model", "messages"],
    "properties": {
        "model": {"type": "string", "minLength": 1},
        "messages": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["role"],
                "properties": {
                    "role": {"enum": ["system", "developer", "user", "assistant", "tool"]},
                    "content": _CONTENT,
                    "name": {"type": "string"},
                    "tool_call_id": {"type": "string"},
                    "tool_calls": {"type": ["array", "null"], "items": _TOOL_CALL},
                },
            },
        },
        # The fields the gateway reads: their shapes here, so a wrong one is a 400 naming
        # it (a string where an object belongs was a 500 with a traceback in the log).
        "tools": {"type": ["array", "null"], "items": {"type": "object"}},
        "tool_choice": {
            "anyOf": [
                {"type": "null"},
                {"enum": ["none", "auto", "required"]},
                {"type": "object", "required": ["function"], "properties": {"function": _NAMED}},
            ]
        },
        "response_format": {
            "type": ["object", "null"],
            "required": ["type"],
            "properties": {
                "type": {"enum": ["text", "json_object", "json_schema"]},
                "json_schema": {
                    "type": "object",
                    "properties": {"schema": {"type": ["object", "boolean"]}},
                },
            },
        },
        "stream": {"type": "boolean"},
        "stream_options": {
            "type": ["object", "null"],
            "properties": {"include_usage": {"type": "boolean"}},
        },
        "temperature": {"type": ["number", "null"], "minimum": 0, "maximum": 2},
        "top_p": {"type": ["number", "null"], "exclusiveMinimum": 0, "maximum": 1},
        "max_tokens": {"type": ["integer", "null"], "minimum": 1},
        "max_completion_tokens": {"type": ["integer", "null"], "minimum": 1},
        "stop": {
            "anyOf": [
                {"type": "null"},
                {"type": "string"},
                {"type": "array", "items": {"type": "string"}, "maxItems": MAX_STOPS},
            ]
        },
        "seed": {"type": ["integer", "null"]},
        "n": {"type": ["integer", "null"], "minimum": 1, "maximum": 1},
    },
}
_VALIDATOR = jsonschema.Draft202012Validator(REQUEST_SCHEMA)


class ApiError(Exception):
    """An error answered in OpenAI's JSON shape with its HTTP status."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",  # noqa: A002 - OpenAI's field name
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type = status, message, type
        self.code, self.param, self.headers = code, param, headers or {}

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.type, self.code, self.param)


def error_body(
    message: str,
    type: str,
    code: str | None = None,
    param: str | None = None,  # noqa: A002
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


@dataclass
class ChatRequest:
    """A checked ``POST /v1/chat/completions`` body."""

    model: str
    messages: list[Message]
    stream: bool
    include_usage: bool
    temperature: float | None
    top_p: float | None
    max_tokens: int | None
    stop: tuple[str, ...]
    seed: int | None
    raw: dict[str, Any] = field(default_factory=dict)

    def sampling(self, base: SamplingParams) -> SamplingParams:
        """The request's settings over ``base`` (a persona's, or the server's defaults)."""
        return SamplingParams(
            max_tokens=self.max_tokens or base.max_tokens,
            temperature=base.temperature if self.temperature is None else self.temperature,
            seed=self.seed if self.seed is not None else base.seed,
            stop=self.stop or base.stop,
            top_p=base.top_p if self.top_p is None else self.top_p,
        )


def _where(error: jsonschema.ValidationError) -> str:
    out = ""
    for part in error.absolute_path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


MAX_SHOWN_VALUE = 80  # characters of a wrong value quoted back in an error message


def _short_message(error: jsonschema.ValidationError) -> str:
    """jsonschema's message with the wrong value it quotes cut short: a 1 MB ``stop`` list or
    a 5 MB string where a list belongs used to come back whole in the 400's message."""
    message, shown = error.message, repr(error.instance)
    if len(shown) > MAX_SHOWN_VALUE and message.startswith(shown):
        cut = shown[: MAX_SHOWN_VALUE - 1] + "…"
        message = f"{cut} ({len(shown):,} characters){message[len(shown) :]}"
    if len(message) > 2 * MAX_SHOWN_VALUE + 200:  # a long value quoted elsewhere in it
        message = message[: 2 * MAX_SHOWN_VALUE + 199] + "…"
    return message


def content_text(content: Any) -> str:
    """``content`` as text: a string, or the text parts of a list of parts joined (checked
    by ``_text_only`` first)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(p.get("text") or p.get("refusal") or "" for p in content)


TEXT_PARTS = ("text", "refusal")  # an assistant's earlier refusal is text too


def _text_only(messages: list[dict[str, Any]]) -> None:
    """Every content part is text: the models served are text-only, and an image, audio or
    file part answered as if it were not there is a wrong answer (400 naming the part)."""
    for i, m in enumerate(messages):
        content = m.get("content")
        if not isinstance(content, list):
            continue
        for j, part in enumerate(content):
            kind = part["type"]
            if kind not in TEXT_PARTS:
                where = f"messages[{i}].content[{j}]"
                raise ApiError(
                    400,
                    f"{where}: {kind!r} content parts are not supported: the models of this "
                    "hermes serve are text-only (send text parts only)",
                    param=where,
                    code="unsupported_content",
                )


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def parse_chat_request(body: bytes) -> ChatRequest:
    """Check a request body; raise ``ApiError(400)`` naming the first problem."""
    try:
        data = json.loads(body, parse_constant=_not_json)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"invalid JSON body: {exc}") from None
    except ValueError as exc:  # NaN, Infinity: Python reads them, JSON has none
        raise ApiError(400, f"invalid JSON body: {exc}") from None
    except RecursionError:
        raise ApiError(400, "invalid JSON body: nested too deeply") from None
    if not isinstance(data, dict):
        raise ApiError(400, "the request body must be a JSON object")
    errors = list(_VALIDATOR.iter_errors(data))
    if errors:
        best = jsonschema.exceptions.best_match(errors)
        where = _where(best) or "body"
        raise ApiError(400, f"{where}: {_short_message(best)}", param=where)
    _text_only(data["messages"])
    messages: list[Message] = []
    for m in data["messages"]:
        role = "system" if m["role"] == "developer" else m["role"]
        content = content_text(m.get("content"))
        try:
            content.encode("utf-8")
        except UnicodeEncodeError:
            raise ApiError(400, "messages: invalid Unicode (a lone surrogate)") from None
        messages.append({"role": role, "content": content})
    stop = data.get("stop")
    stops = (stop,) if isinstance(stop, str) else tuple(stop or ())
    options = data.get("stream_options") or {}
    return ChatRequest(
        model=data["model"],
        messages=messages,
        stream=bool(data.get("stream", False)),
        include_usage=bool(options.get("include_usage", False)),
        temperature=data.get("temperature"),
        top_p=data.get("top_p"),
        max_tokens=data.get("max_completion_tokens") or data.get("max_tokens"),
        stop=tuple(s for s in stops if s),
        seed=data.get("seed"),
        raw=data,
    )


def completion_id() -> str:
    return "chatcmpl-" + secrets.token_hex(12)


def usage(prompt: int, completion: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def chunk(
    cid: str, model: str, created: int, delta: dict[str, Any], finish: str | None = None
) -> dict[str, Any]:
    return {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def usage_chunk(cid: str, model: str, created: int, use: dict[str, int]) -> dict[str, Any]:
    return {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [],
        "usage": use,
    }


def completion(
    cid: str, model: str, created: int, text: str, finish: str, use: dict[str, int]
) -> dict[str, Any]:
    return {
        "id": cid,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": finish,
            }
        ],
        "usage": use,
    }


def model_entry(name: str, owned_by: str, kind: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": name,
        "object": "model",
        "created": int(time.time()),
        "owned_by": owned_by,
        "hermes": {"kind": kind, **extra},
    }
