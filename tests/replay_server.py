"""A replay engine: an OpenAI-compatible endpoint that streams scripted token pieces.

The model cannot produce broken JSON, a broken tool call or ``rm -rf /`` on demand, so tests
configure a remote model pointing here and ``hermes serve`` runs these recorded streams
through its real pipeline (the gateway, the sentinel, the store). A request's script is
chosen by the ``case:NAME`` word in its first user message; a hidden correction or Fix_Syntax
turn (the last user message comes from the sentinel) gets the case's ``fixed`` script.

Run: ``python tests/replay_server.py PORT_FILE``; it writes the port it listens on there.
Standard library only (a test fixture, not part of hermes).
"""

from __future__ import annotations

import json
import re
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SHELL = '<tool_call>{"name": "run_shell", "arguments": '
SCRIPTS: dict[str, dict[str, str]] = {
    "json-broken": {"first": '{"answer": 42,, "more": true}', "fixed": '{"answer": 42}'},
    "json-unsafe": {
        "first": '{"step": "run rm -rf / now", "then": "' + "more text here " * 40 + '"}'
    },
    "text": {"first": "Plain words, nothing to see."},
    "args-break": {
        "first": "Checking.\n" + SHELL + '{"command": "ls" "-la"}}</tool_call>',
        "fixed": SHELL + '{"command": "ls -la"}}</tool_call>',
    },
    "schema": {
        "first": SHELL + '{"command": 42}}</tool_call>',
        "fixed": SHELL + '{"command": 43}}</tool_call>',  # still wrong: never delivered
    },
    "rm-rf": {"first": SHELL + '{"command": "rm -rf /"}}</tool_call>'},
    "loop": {"first": SHELL + '{"command": "cat notes.txt"}}</tool_call>'},
    "good-call": {"first": SHELL + '{"command": "ls"}}</tool_call>'},
    "url-cut": {"first": "See http://-x.com/"},  # 3-character pieces: cut at 4, "See http://-"
    "json-first-char": {"first": 'x{"answer": 1}', "fixed": '{"answer": 1}'},
    # secrets as a model might write them (made up for these tests)
    "secret": {
        "first": 'Use these:\npassword = "Hunter2Secret"\naws_access_key_id = AKIAIOSFODNN7EXAMPLE'
        "\nDone."
    },
    "secret-call": {
        "first": SHELL
        + '{"command": "export API_TOKEN=ghp_R4nd0mT0k3nV4lu3xYzAbCdEfGh123456789"}}</tool_call>'
    },
    # a private key (made up), and secrets that max_tokens can cut short
    "pem": {
        "first": "Here is the key:\n-----BEGIN RSA PRIVATE KEY-----\n"
        + "MIIEowIBAAKCAQEA7bq98WBcD0ZzQqs3p5t9aN8xQ1mV2yZ4kL6rT0uH3wJ5sF8g\n" * 3
        + "-----END RSA PRIVATE KEY-----\nKeep it safe."
    },
    "cut-key": {"first": "Set OPENAI_API_KEY to sk-proj-R4nd0mT0k3nV4lu3xYzAbCdEfGh123456789 now."},
    # text where tool_choice required a call: the correction turn calls, or still does not
    "text-then-call": {
        "first": "I would list the files.",
        "fixed": SHELL + '{"command": "ls"}}</tool_call>',
    },
    "text-only": {"first": "I would list the files."},
    # each piece stands for two tokens (as a CJK character or an emoji can)
    "two-per-piece": {"first": "こんにちは、元気ですか。今日は良い天気ですね。"},
}
# Cases replayed in the pieces given (a server that sends several tokens in one chunk)
PIECES: dict[str, list[str]] = {
    # a key longer than what the redactor keeps as context; its END line ends in the piece
    # that holds its last two words
    "pem-long": [
        "Here is the key:\n-----BEGIN RSA PRIVATE KEY-----\n",
        *["MIIEowIBAAKCAQEA7bq98WBcD0ZzQqs3p5t9aN8xQ1mV2yZ4kL6rT0uH3wJ5sF8g\n"] * 12,
        "-----END RSA",
        " PRIVATE KEY-----\n",
        "Keep it safe.",
    ],
}
# Cases answered with OpenAI ``tool_calls`` deltas (a server with native tool support):
# (id, name, argument fragments) per call.
NATIVE: dict[str, dict[str, list[tuple[str, str, list[str]]]]] = {
    "native-break": {
        "first": [("call_n1", "run_shell", ['{"command": ', '"ls" ', '"-la"}'])],
        "fixed": [("call_n2", "run_shell", ['{"command": ', '"ls -la"}'])],
    },
}
_CASE = re.compile(r"case:([\w-]+)")
_FROM_SENTINEL = (
    "The sentinel found problems",
    "The sentinel rejected your tool call",
    "The sentinel rejected your answer",
)


def pieces(text: str) -> list[str]:
    """Token-like pieces (3 characters), so checks see the stream cut mid-word."""
    return [text[i : i + 3] for i in range(0, len(text), 3)]


def case_of(messages: list[dict]) -> tuple[str, bool]:
    users = [str(m.get("content") or "") for m in messages if m.get("role") == "user"]
    found = next((m.group(1) for u in users if (m := _CASE.search(u))), "text")
    return found, bool(users and users[-1].startswith(_FROM_SENTINEL))


def script_for(messages: list[dict]) -> str:
    found, hidden = case_of(messages)
    script = SCRIPTS.get(found, SCRIPTS["text"])
    return script.get("fixed", script["first"]) if hidden else script["first"]


def _deltas(body: dict) -> list[dict]:
    """The deltas of one answer: content pieces, or tool_calls deltas for a NATIVE case."""
    found, hidden = case_of(body.get("messages", []))
    if found == "echo-tools":  # what a native server was sent
        names = [t["function"]["name"] for t in body.get("tools") or []]
        return [{"content": f"tools={','.join(names)} choice={body.get('tool_choice')}"}]
    if found in PIECES and not hidden:
        return [{"content": p} for p in PIECES[found]]
    if found in NATIVE:
        script = NATIVE[found]
        out: list[dict] = []
        for i, (cid, name, frags) in enumerate(script["fixed" if hidden else "first"]):
            fn = {"name": name, "arguments": ""}
            out.append(
                {"tool_calls": [{"index": i, "id": cid, "type": "function", "function": fn}]}
            )
            out += [{"tool_calls": [{"index": i, "function": {"arguments": f}}]} for f in frags]
        return out
    return [{"content": p} for p in pieces(script_for(body.get("messages", [])))]


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:  # quiet
        pass

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        deltas = _deltas(body)
        limit = body.get("max_tokens") or body.get("max_completion_tokens")
        per = 2 if case_of(body.get("messages", []))[0] == "two-per-piece" else 1
        reason = "stop"
        if limit and len(deltas) * per > limit:  # a piece stands for `per` tokens
            deltas, reason = deltas[: limit // per], "length"
        for delta in deltas:
            chunk = {"choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.flush()
            time.sleep(0.002)
        end = {"choices": [{"index": 0, "delta": {}, "finish_reason": reason}]}
        self.wfile.write(f"data: {json.dumps(end)}\n\ndata: [DONE]\n\n".encode())
        self.wfile.flush()


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    with open(sys.argv[1], "w") as fh:
        fh.write(str(server.server_address[1]))
    server.serve_forever()


if __name__ == "__main__":
    main()
