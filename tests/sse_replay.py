"""A replay server: answers every ``POST /v1/chat/completions`` with a recorded SSE stream.

For what a real model cannot be made to produce on demand (a lone surrogate, an emoji split
between two events, a secret). Run as a process: ``python -m tests.sse_replay FILE``; it
prints its port, then serves until killed. FILE is JSON: a list of recordings, one per
request in turn (the last repeats); each recording a list of ``content`` strings given as raw
JSON string literals (so ``"\\ud83d"`` reaches the client exactly as a server would send it).
An optional second argument paces the events (seconds between two).
"""

from __future__ import annotations

import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main() -> None:
    with open(sys.argv[1], encoding="utf-8") as f:
        recordings: list[list[str]] = json.load(f)
    calls = [0]
    pace = float(sys.argv[2]) if len(sys.argv) > 2 else 0.0

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            recording = recordings[min(calls[0], len(recordings) - 1)]
            calls[0] += 1
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            try:
                for literal in recording:
                    event = '{"choices": [{"delta": {"content": ' + literal + "}}]}"
                    self.wfile.write(f"data: {event}\n\n".encode())
                    self.wfile.flush()
                    if pace:
                        time.sleep(pace)
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client stopped reading (a halt, a cancel): as a real server would
            self.close_connection = True

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
