"""Put a request's ``tools`` into the prompt, in the model's own chat template when it can.

* **Native**: the GGUF's Jinja chat template uses the ``tools`` variable (Qwen 2.5/3, Hermes
  2/3, Llama 3.1+, Mistral...). The messages go to llama-cpp-python's ``Jinja2ChatFormatter``
  as they are, with ``tools`` and ``tool_choice`` (assistant ``tool_calls`` arguments parsed
  into objects, as Hugging Face templates expect).
* **Fallback** (documented in the README): the template knows nothing of tools (SmolLM2,
  plain ChatML, Llama 2). The Hermes function-calling prompt is added to the system message
  (``<tools>`` with each tool's JSON signature, and the ``<tool_call>{"name": ...,
  "arguments": ...}</tool_call>`` answer format), earlier assistant calls are written back in
  that format, and ``tool`` messages become ``user`` messages wrapped in
  ``<tool_response>``, which is what Qwen's own template does. Every chat template can render
  that.

``tool_choice``: ``"none"`` offers no tools; ``"required"`` or a named function adds "you
must call ..." to the prompt (the parser still decides what the model did).
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["offered_tools", "render_messages", "template_uses_tools", "tool_names"]

FALLBACK_HEADER = (
    "You are a function calling AI model. You may call one or more functions to assist with "
    "the user query. Here are the available tools: <tools>\n{tools}\n</tools>\n"
    "For each function call, return a JSON object with the function name and arguments "
    "within <tool_call></tool_call> tags:\n"
    '<tool_call>\n{{"name": <function-name>, "arguments": <args-json-object>}}\n</tool_call>'
)


def template_uses_tools(template: str) -> bool:
    """Whether a Jinja chat template renders the ``tools`` variable."""
    import jinja2
    from jinja2 import meta

    try:
        ast = jinja2.Environment().parse(template)
    except jinja2.TemplateError:
        return False
    return "tools" in meta.find_undeclared_variables(ast)


def offered_tools(tools: list[dict[str, Any]] | None, tool_choice: Any) -> list[dict[str, Any]]:
    """The tools the prompt offers, after ``tool_choice`` (none / a named function)."""
    if not tools or tool_choice == "none":
        return []
    if isinstance(tool_choice, dict):
        name = (tool_choice.get("function") or {}).get("name")
        return [t for t in tools if (t.get("function") or {}).get("name") == name]
    return list(tools)


def tool_names(tools: list[dict[str, Any]] | None) -> list[str]:
    return [str((t.get("function") or {}).get("name", "")) for t in tools or []]


def _content(message: dict[str, Any]) -> str:
    """Message content as text (OpenAI allows None and lists of parts)."""
    content = message.get("content")
    if content is None:
        return ""
    if isinstance(content, list):
        return "".join(
            str(p.get("text", "")) for p in content if isinstance(p, dict) and "text" in p
        )
    return str(content)


def _call_json(call: dict[str, Any]) -> str:
    fn = call.get("function") or {}
    raw = fn.get("arguments", "{}")
    try:
        args: Any = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        args = raw
    return json.dumps({"name": fn.get("name", ""), "arguments": args}, ensure_ascii=False)


def _must_call(tools: list[dict[str, Any]], tool_choice: Any) -> str:
    if isinstance(tool_choice, dict):
        return f"\nYou must call the function {tool_names(tools)[0]!r}." if tools else ""
    if tool_choice == "required":
        return "\nYou must call at least one of these functions."
    return ""


def render_messages(
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]] | None,
    tool_choice: Any,
    native: bool,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(messages, extra formatter kwargs) for a chat formatter; see the module docstring."""
    offered = offered_tools(tools, tool_choice)
    if native:
        out = []
        for m in messages:
            m = dict(m)
            m["content"] = _content(m)
            if m.get("tool_calls"):
                calls = []
                for call in m["tool_calls"]:
                    call = dict(call)
                    fn = dict(call.get("function") or {})
                    try:
                        fn["arguments"] = json.loads(fn.get("arguments") or "{}")
                    except (TypeError, ValueError):
                        pass
                    call["function"] = fn
                    calls.append(call)
                m["tool_calls"] = calls
            out.append(m)
        extra: dict[str, Any] = {}
        if offered:
            extra = {"tools": offered, "tool_choice": tool_choice or "auto"}
        return out, extra
    flat: list[dict[str, Any]] = []
    for m in messages:
        role = m.get("role", "user")
        text = _content(m)
        if role == "assistant" and m.get("tool_calls"):
            written = [f"<tool_call>\n{_call_json(c)}\n</tool_call>" for c in m["tool_calls"]]
            joined = "\n".join(written)
            text = f"{text}\n{joined}" if text else joined
        elif role == "tool":
            role, text = "user", f"<tool_response>\n{text}\n</tool_response>"
        elif role not in ("system", "user", "assistant"):
            role = "user"
        if flat and role == "user" and flat[-1]["role"] == "user" and m.get("role") == "tool":
            flat[-1]["content"] += "\n" + text  # several tool results: one user turn
            continue
        flat.append({"role": role, "content": text})
    if offered:
        sigs = "\n".join(json.dumps(t, ensure_ascii=False) for t in offered)
        block = FALLBACK_HEADER.format(tools=sigs) + _must_call(offered, tool_choice)
        if flat and flat[0]["role"] == "system":
            flat[0] = {"role": "system", "content": f"{flat[0]['content']}\n\n{block}"}
        else:
            flat.insert(0, {"role": "system", "content": block})
    return flat, {}
