"""A real Baton server for the binding tests: `baton-server serve --demo` on a free port, its
workflow clock sped up so escalations come within seconds, and tokens from its own issuer."""

import json
import os
import socket
import subprocess
import tempfile
import time
import urllib.request

import pytest

# Sixty workflow seconds pass per real second: a stat consult's six-minute acknowledgment
# window closes in about six seconds.
TIME_SCALE = 60


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, binary: str, data_dir: str) -> None:
        self.binary = binary
        self.data_dir = data_dir
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.sync_url = f"ws://127.0.0.1:{self.port}/sync"
        self.process = subprocess.Popen(
            [binary, "serve", "--demo", "--data-dir", data_dir,
             "--listen", f"127.0.0.1:{self.port}", "--time-scale", str(TIME_SCALE)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{self.base}/readyz", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited: {self.process.stderr.read().decode()}")
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not become ready")
            time.sleep(0.1)

    def token(self, user: str, device: str, roles: list, units: list, admin: bool = False) -> str:
        args = [self.binary, "token", "issue", "--data-dir", self.data_dir,
                "--user", user, "--device", device]
        for role in roles:
            args += ["--role", role]
        for unit in units:
            args += ["--unit", unit]
        if admin:
            args.append("--admin")
        return subprocess.run(args, check=True, capture_output=True, text=True).stdout.strip()

    def request(self, method: str, path: str, token: str) -> dict:
        req = urllib.request.Request(f"{self.base}{path}", method=method,
                                     headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read() or b"{}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


@pytest.fixture(scope="session")
def server():
    binary = os.environ.get("BATON_SERVER_BIN")
    if not binary:
        raise RuntimeError("BATON_SERVER_BIN must name the baton-server binary")
    with tempfile.TemporaryDirectory() as data_dir:
        running = Server(binary, data_dir)
        try:
            yield running
        finally:
            running.stop()


@pytest.fixture
def store(tmp_path):
    """A fresh store path for each device of a test."""
    count = iter(range(1000))
    return lambda: str(tmp_path / f"device-{next(count)}.store")
