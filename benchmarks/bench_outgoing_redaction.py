"""Cost of hermes serve's outgoing redaction (``outbound.HeldBackScrubber``), per piece.

Measures this thread's CPU time of ``feed`` for each piece (pieces ~ LLM tokens) of:
* prose (one word a piece, a secret-free answer of 5,000 pieces),
* a run without whitespace (base64, 4 characters a piece: every piece releases),
* an answer with secrets in it (passwords, keys, a private key, a passphrase line),
* one piece of 1 MB (what ``costly`` sends to a worker thread), words and one long word,
and, as a ratio measured in this run, the whole stream's cost over redacting the finished
answer once (``redact``): what streaming the redaction costs beyond doing it at the end.

Run: ``PYTHONPATH=. python benchmarks/bench_outgoing_redaction.py`` ->
``benchmarks/results/outgoing_redaction.json``.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from pathlib import Path

from hermes_tui.outbound import HeldBackScrubber
from hermes_tui.redact import redact
from sentinel.secrets import warm_up

OUT = Path(__file__).parent / "results" / "outgoing_redaction.json"
PROSE = (
    "The lighthouse keeper climbed the stairs every evening, lit the lamp, and wrote the "
    "weather in a small book before the ships came past the rocks. "
)
SECRETS = (
    'config:\npassword = "Hunter2Secret"\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\n'
    "export GITHUB_TOKEN=ghp_R4nd0mT0k3nV4lu3xYzAbCdEfGh123456789 \n"
    'db_password = "correct horse battery staple"\n'
    "-----BEGIN RSA PRIVATE KEY-----\n"
    + "MIIEowIBAAKCAQEA7bq98WBcD0ZzQqs3p5t9aN8xQ1mV2yZ4kL6rT0uH3wJ5sF8g\n" * 20
    + "-----END RSA PRIVATE KEY-----\n"
)


def words(text: str) -> list[str]:
    out, word = [], ""
    for ch in text:
        if ch == " " and word:
            out.append(word)
            word = ""
        word += ch
    return [*out, word]


def per_piece(pieces: list[str]) -> dict[str, float]:
    scrub = HeldBackScrubber()
    times = []
    for p in pieces:
        t0 = time.thread_time()
        scrub.feed(p)
        times.append(time.thread_time() - t0)
    t0 = time.thread_time()
    scrub.flush()
    times.append(time.thread_time() - t0)
    text = "".join(pieces)
    t0 = time.thread_time()
    redact(text, keep_offsets=True)
    whole = time.thread_time() - t0
    times.sort()
    return {
        "pieces": len(pieces),
        "median_ms": round(statistics.median(times) * 1e3, 4),
        "p99_ms": round(times[int(len(times) * 0.99)] * 1e3, 4),
        "max_ms": round(times[-1] * 1e3, 3),
        "stream_over_whole": round(sum(times) / whole, 2) if whole > 0 else None,
    }


def one_piece(piece: str) -> dict[str, object]:
    scrub = HeldBackScrubber()
    t0 = time.thread_time()
    costly = scrub.costly(piece)
    scrub.feed(piece)
    scrub.flush()
    return {"chars": len(piece), "worker_thread": costly, "s": round(time.thread_time() - t0, 3)}


def main() -> None:
    warm_up()
    prose = words(PROSE * 240)[:5000]
    blob = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo" * 300
    run = [blob[i : i + 4] for i in range(0, len(blob), 4)]
    secret = [SECRETS[i : i + 3] for i in range(0, len(SECRETS), 3)] * 5
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "prose": per_piece(prose),
        "no_whitespace_run": per_piece(run),
        "with_secrets": per_piece(secret),
        "one_1mb_piece_of_words": one_piece("word " * 200_000),
        "one_1mb_word": one_piece("password=" + "Ab1" * 333_330),
    }
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
