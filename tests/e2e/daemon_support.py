"""Run ``posedge run`` as a real subprocess, the way systemd does, and talk to it.

The test owns an AF_UNIX datagram socket and passes it as ``NOTIFY_SOCKET``;
every notify message the daemon sends is collected, so tests wait on
``READY=1`` (not on time). The till API is reached over its Unix socket with
the token the daemon created.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

POSEDGE = Path(sys.executable).parent / "posedge"
READY_TIMEOUT_S = 30.0


class NotifyListener:
    """Collects sd_notify datagrams on a socket the test owns."""

    def __init__(self, directory: Path) -> None:
        # A short path: sun_path is limited to 108 bytes.
        self._dir = Path(tempfile.mkdtemp(prefix="pn-", dir="/tmp"))
        self.path = self._dir / "notify.sock"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))
        self.messages: list[tuple[float, dict[str, str]]] = []
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._closed:
            try:
                data = self.sock.recv(4096)
            except OSError:
                return
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            with self._cond:
                self.messages.append((time.monotonic(), fields))
                self._cond.notify_all()

    def wait_for(
        self, predicate: Callable[[dict[str, str]], bool], timeout_s: float, after: int = 0
    ) -> dict[str, str] | None:
        """The first message (index ≥ ``after``) satisfying ``predicate``."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                for _, fields in self.messages[after:]:
                    if predicate(fields):
                        return fields
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)

    def count(self, key: str) -> int:
        with self._cond:
            return sum(1 for _, fields in self.messages if key in fields)

    def times(self, key: str) -> list[float]:
        with self._cond:
            return [at for at, fields in self.messages if key in fields]

    def close(self) -> None:
        self._closed = True
        self.sock.close()
        self.path.unlink(missing_ok=True)
        self._dir.rmdir()


class Daemon:
    """``posedge --state-dir D [--config C] run --simulate`` as a subprocess."""

    def __init__(
        self,
        state_dir: Path,
        *,
        config: Path | None = None,
        env: dict[str, str] | None = None,
        simulate: bool = True,
        watchdog_usec: int | None = None,
        args: list[str] | None = None,
    ) -> None:
        """``args``: more options for ``run`` (e.g. ``["--backoffice", url]``)."""
        self.state_dir = state_dir
        self.notify = NotifyListener(state_dir)
        argv = [str(POSEDGE), "--state-dir", str(state_dir)]
        if config is not None:
            argv += ["--config", str(config)]
        argv += ["--json", "run"]
        if simulate:
            argv.append("--simulate")
        argv += args or []
        full_env = {**os.environ, **(env or {}), "NOTIFY_SOCKET": str(self.notify.path)}
        full_env.pop("POSEDGE_CONFIG", None)
        if watchdog_usec is not None:
            full_env["WATCHDOG_USEC"] = str(watchdog_usec)
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(
            argv, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.stderr_lines: list[str] = []
        self._stderr_thread = threading.Thread(target=self._drain_stderr, daemon=True)
        self._stderr_thread.start()
        self.where: dict[str, Any] = {}

    def _drain_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr_lines.append(line)

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> dict[str, str]:
        ready = self.notify.wait_for(lambda m: m.get("READY") == "1", timeout_s)
        if ready is None:
            raise AssertionError(
                f"no READY=1 within {timeout_s}s; exit={self.proc.poll()}; stderr:\n"
                + "".join(self.stderr_lines[-30:])
            )
        assert self.proc.stdout is not None
        self.where = json.loads(self.proc.stdout.readline())
        return ready

    @property
    def token(self) -> str:
        return (self.state_dir / "api-token").read_text().strip()

    def client(self, timeout_s: float = 30.0) -> httpx.Client:
        return httpx.Client(
            transport=httpx.HTTPTransport(uds=self.where["socket"]),
            base_url="http://posedge",
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=timeout_s,
        )

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def wait_exit(self, timeout_s: float = 30.0) -> int:
        return self.proc.wait(timeout=timeout_s)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
        self._stderr_thread.join(timeout=5)
        self.notify.close()

    def __enter__(self) -> Daemon:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def create_sale(http: httpx.Client, amount: int = 1234, key: str | None = None) -> dict[str, Any]:
    response = http.post(
        "/v1/sales",
        json={"amount": amount, "currency": "EUR", "reference": f"ref-{amount}"},
        headers={"Idempotency-Key": key or os.urandom(8).hex()},
    )
    assert response.status_code == 202, response.text
    doc: dict[str, Any] = response.json()
    return doc


def wait_final(http: httpx.Client, sale_id: str, timeout_s: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        doc: dict[str, Any] = http.get(f"/v1/sales/{sale_id}", params={"wait": 5}).json()
        if doc["final"] or time.monotonic() > deadline:
            return doc


def wait_until(condition: Callable[[], bool], timeout_s: float = 30.0) -> bool:
    """Poll a condition of the system under test until it holds (or time runs out)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


__all__ = ["Daemon", "NotifyListener", "create_sale", "signal", "wait_final", "wait_until"]
