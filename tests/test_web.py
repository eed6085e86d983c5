"""`hermes web`: a real server process, real clients (aiohttp, raw sockets), another OS user.

What an attacker on the same machine tried before (issue #12): open the TUI over loopback with
no token, drive it from a foreign Origin, open sessions without limit, and inject shell
commands through --config. Each test below is one of those attempts, against the real
`hermes web` subprocess.
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, hermes_env

aiohttp = pytest.importorskip("aiohttp")
pytest.importorskip("textual_serve")

from hermes_tui import web  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class WebServer:
    def __init__(self, tmp_path: Path, *args: str, config: Path | None = None):
        self.port = _free_port()
        self.config_home = tmp_path / "xdg-config"
        env = hermes_env()
        env["XDG_CONFIG_HOME"] = str(self.config_home)
        env["XDG_DATA_HOME"] = str(tmp_path / "xdg-data")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "hermes_tui.cli",
                "web",
                "--port",
                str(self.port),
                "--config",
                str(config or ROOT / "config.toml"),
                "--db",
                str(tmp_path / "web.db"),
                *args,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=tmp_path,
            start_new_session=True,
        )
        self.lines: list[str] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.lines.append(line)
            if "at most" in line:  # the last line printed at start
                break
        opened = [ln for ln in self.lines if ln.startswith("hermes web: open ")]
        if not opened:
            raise AssertionError(f"no URL printed: {self.lines} {self.stop()}")
        self.url = opened[0].split("open ", 1)[1].strip()
        self.token = self.url.split("token=", 1)[1]
        self.base = f"http://127.0.0.1:{self.port}"

    def stop(self) -> str:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.proc.stderr.read()


@pytest.fixture
def server(tmp_path):
    srv = WebServer(tmp_path, "--max-sessions", "1")
    yield srv
    srv.stop()


async def _get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as s, s.get(url) as r:
        return r.status, await r.text()


async def _ws_status(url: str, origin: str | None) -> int:
    headers = {"Origin": origin} if origin else {}
    async with aiohttp.ClientSession() as s:
        try:
            async with s.ws_connect(url, headers=headers):
                return 101
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status


def test_the_url_is_printed_once_and_the_token_is_kept_private(server):
    assert sum(server.token in line for line in server.lines) == 1
    assert server.url.startswith(f"http://127.0.0.1:{server.port}/?token=")
    path = server.config_home / "hermes-tui" / "web_token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().strip() == server.token
    assert len(server.token) >= 40


async def test_the_page_needs_the_token(server):
    status, body = await _get(server.base + "/")
    assert status == 403 and "token" in body and "/ws/" not in body
    status, body = await _get(server.base + "/?token=" + "x" * len(server.token))
    assert status == 403 and "/ws/" not in body
    status, body = await _get(server.url)
    assert status == 200 and f"/ws/{server.token}" in body


async def test_the_websocket_needs_the_token_and_its_own_origin(server):
    own = server.base
    assert await _ws_status(f"ws://127.0.0.1:{server.port}/ws/guess", own) == 403
    assert await _ws_status(f"ws://127.0.0.1:{server.port}/ws", own) == 404
    good = f"ws://127.0.0.1:{server.port}/ws/{server.token}"
    assert await _ws_status(good, "http://evil.example") == 403  # the attack of issue #12
    assert await _ws_status(good, None) == 403
    assert await _ws_status(good, f"http://127.0.0.1:{server.port + 1}") == 403


async def test_a_rebound_host_name_is_refused_on_loopback(server):
    async with aiohttp.ClientSession() as s:
        r = await s.get(server.url, headers={"Host": f"evil.example:{server.port}"})
        assert r.status == 403


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            kids = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            continue
        out += [int(k) for k in kids]
        todo += [int(k) for k in kids]
    return out


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]
    except OSError:
        return []


async def _open_session(server: WebServer, want: bytes | None, seconds: float = 90):
    """A browser-like session: the token, the page's own Origin; returns what the TUI drew."""
    s = aiohttp.ClientSession()
    ws = await s.ws_connect(
        f"ws://127.0.0.1:{server.port}/ws/{server.token}?width=100&height=30",
        headers={"Origin": server.base},
    )
    got = b""
    deadline = time.monotonic() + seconds
    while want is not None and want not in got and time.monotonic() < deadline:
        try:
            msg = await ws.receive(timeout=max(0.1, deadline - time.monotonic()))
        except TimeoutError:
            break
        if msg.type == aiohttp.WSMsgType.BINARY:
            got += msg.data
        elif msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
            break
    return s, ws, got


async def test_a_config_path_with_spaces_and_a_semicolon_runs_the_chat_and_nothing_else(
    tmp_path,
):
    odd = tmp_path / "my dir;touch INJECTED;b"
    odd.mkdir()
    config = odd / "con fig.toml"
    config.write_text((ROOT / "config.toml").read_text())
    srv = WebServer(tmp_path, config=config)
    try:
        s, ws, got = await _open_session(srv, b"coder")
        try:
            chats = [
                _cmdline(p)
                for p in _descendants(srv.proc.pid)
                if "chat" in _cmdline(p) and "hermes_tui.cli" in _cmdline(p)
            ]
            assert chats, "no chat process was started"
            assert str(config) in chats[0]  # one argument, as given
            assert b"coder" in got  # the chat drew its screen (a blank page before the fix)
        finally:
            await ws.close()
            await s.close()
    finally:
        srv.stop()
    assert not list(tmp_path.rglob("INJECTED")) and not (Path.cwd() / "INJECTED").exists()


async def test_sessions_beyond_the_limit_are_refused_until_one_closes(server):
    s, ws, _ = await _open_session(server, None)
    try:
        good = f"ws://127.0.0.1:{server.port}/ws/{server.token}"
        assert await _ws_status(good, server.base) == 503
    finally:
        await ws.close()
        await s.close()
    deadline = time.monotonic() + 30
    status = 503
    while status == 503 and time.monotonic() < deadline:
        await asyncio.sleep(0.3)
        status = await _ws_status(f"ws://127.0.0.1:{server.port}/ws/{server.token}", server.base)
    assert status == 101


def test_a_non_loopback_address_gets_a_loud_warning(tmp_path):
    srv = WebServer(tmp_path, "--host", "0.0.0.0")
    err = srv.stop()
    assert "WARNING: listening on 0.0.0.0, not on loopback" in err
    assert "unencrypted" in err
    assert srv.url.startswith("http://0.0.0.0:") and "token=" in srv.url


def test_a_token_file_others_can_read_is_replaced(tmp_path):
    path = tmp_path / "web_token"
    token, made = web.load_token(path)
    assert made and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert web.load_token(path) == (token, False)  # kept: the bookmarked URL still works
    path.chmod(0o644)
    token2, made = web.load_token(path)
    assert made and token2 != token and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert web.load_token(path, rotate=True)[0] != token2


def test_the_chat_command_is_quoted_argument_by_argument(tmp_path):
    evil = tmp_path / "a;touch X;$(id)`id` b.toml"
    cmd = web.chat_command(str(evil), None)
    out = subprocess.run(
        ["sh", "-c", cmd.replace("exec ", "printf '%s\\n' ", 1)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert out[-2:] == ["--config", str(evil)]
    assert not (tmp_path / "X").exists()


CLIENT = r"""
import http.client, json, socket, sys
port, token_file = int(sys.argv[1]), sys.argv[2]
out = {}
try:
    open(token_file).read(); out["token_file"] = "read"
except OSError as e:
    out["token_file"] = type(e).__name__
c = http.client.HTTPConnection("127.0.0.1", port, timeout=10); c.request("GET", "/")
out["page"] = c.getresponse().status
s = socket.create_connection(("127.0.0.1", port), timeout=10)
s.sendall(("GET /ws/guess HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
    "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Version: 13\r\nOrigin: http://evil.example\r\n\r\n" % port).encode())
out["ws"] = int(s.recv(100).split()[1])
print(json.dumps(out))
"""


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("useradd"), reason="needs root")
def test_another_os_user_gets_nothing(server):
    name = f"hermesweb{os.getpid() % 100000}"
    made = subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
        capture_output=True,
    )
    if made.returncode != 0:
        pytest.skip(f"useradd failed: {made.stderr.decode().strip()}")
    try:
        uid = pwd.getpwnam(name).pw_uid
        token_file = server.config_home / "hermes-tui" / "web_token"
        result = subprocess.run(
            ["/usr/bin/python3", "-c", CLIENT, str(server.port), str(token_file)],
            user=uid,
            capture_output=True,
            text=True,
            timeout=60,
            cwd="/",
        )
        assert result.returncode == 0, result.stderr
        out = json.loads(result.stdout)
        assert out == {"token_file": "PermissionError", "page": 403, "ws": 403}
    finally:
        subprocess.run(["userdel", name], capture_output=True)
