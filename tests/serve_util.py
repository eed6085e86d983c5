"""A real ``hermes serve`` process for tests: its own runtime and config dirs, socket, database."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx2

from tests.conftest import hermes_env


class ServeProc:
    """``python -m hermes_tui.server`` started with ``args``; ``.socket``, ``.url``, ``.token``."""

    def __init__(self, config: Path, db: Path, *args: str, home: Path | None = None) -> None:
        # Short paths: a Unix socket path must fit in 107 bytes.
        self.home = home or Path(tempfile.mkdtemp(prefix="hs-"))
        self.runtime = self.home / "run"
        self.runtime.mkdir(mode=0o700, exist_ok=True)
        self.socket = self.runtime / "hermes-tui" / "serve.sock"
        self.config, self.db, self.args = config, db, list(args)
        self.env = hermes_env()
        self.env.update(
            XDG_RUNTIME_DIR=str(self.runtime),
            XDG_CONFIG_HOME=str(self.home / "config"),
            XDG_DATA_HOME=str(self.home / "data"),
        )
        self.env.pop("HERMES_SERVER", None)
        self.log_path = self.home / "serve.log"
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None

    def start(self, wait: bool = True, timeout: float = 60) -> ServeProc:
        cmd = [
            sys.executable,
            "-m",
            "hermes_tui.server",
            "--config",
            str(self.config),
            "--db",
            str(self.db),
            *self.args,
        ]
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, env=self.env, stdout=self._log, stderr=self._log)
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"hermes serve exited {self.proc.returncode}: {self.log()}")
            if "listening on" in self.log():
                for part in self.log().split("http://")[1:]:
                    self.port = int(part.split("/")[0].rsplit(":", 1)[1])
                return
            time.sleep(0.05)
        raise AssertionError(f"hermes serve did not start: {self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    @property
    def token(self) -> str:
        return (self.home / "config" / "hermes-tui" / "serve-token").read_text().strip()

    @property
    def token_path(self) -> Path:
        return self.home / "config" / "hermes-tui" / "serve-token"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def uds_client(self, timeout: float = 120, **kw) -> httpx2.Client:
        transport = httpx2.HTTPTransport(uds=str(self.socket))
        return httpx2.Client(transport=transport, base_url="http://hermes", timeout=timeout, **kw)

    def openai(self, tcp: bool = False, **kw):
        import openai

        if tcp:
            return openai.OpenAI(base_url=self.url, api_key=kw.pop("api_key", self.token), **kw)
        client = httpx2.Client(transport=httpx2.HTTPTransport(uds=str(self.socket)))
        return openai.OpenAI(
            base_url="http://hermes/v1", api_key="unused", http_client=client, **kw
        )

    def send(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.home, ignore_errors=True)


def listening_tcp_ports(pid: int) -> set[int]:
    """TCP ports the process ``pid`` listens on (from /proc: its socket inodes in LISTEN)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if cols[3] == "0A" and cols[9] in inodes:  # 0A: LISTEN
                ports.add(int(cols[1].rsplit(":", 1)[1], 16))
    return ports
