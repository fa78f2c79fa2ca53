"""Hostile uploads against a real back office process: memory and liveness stay bounded.

Each test starts ``posedge backoffice serve --listen 127.0.0.1:0`` in its own process,
reads the server's peak RSS (``VmHWM`` in /proc/PID/status) after a warm-up and again
after the hostile request, and probes ``/healthz`` from another thread while the upload
is in flight. The body limit is enforced while the body streams in (raw and inflated),
and a request is authenticated before its body is read, so:

- a 700 MiB chunked body is refused 413 and the client stops sending soon after;
- a 63 KiB gzip that inflates to 63 MiB is refused 413;
- an unauthenticated 50 MiB POST is refused 401 without the server reading it;

each with the server's peak RSS growing by less than 32 MiB and /healthz answering
within 500 ms throughout (~2-40 ms on a quiet machine). The numbers measured are printed
(``pytest -s`` shows them).
"""

from __future__ import annotations

import gc
import gzip
import os
import re
import select
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import httpx
import pytest

MIB = 1024 * 1024
MAX_GROWTH = 32 * MIB
# Liveness, not speed: a server that reads or inflates a hostile body in one go stalls its
# loop for the whole body (seconds for 700 MiB); a loaded test machine (the suite on every
# core) delays a single /healthz by 100-200 ms now and then with nothing wrong.
MAX_HEALTH_LATENCY_S = 0.500
TOKENS = {"lane1": "token-of-lane1"}
START_TIMEOUT_S = 20.0

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/status").exists(), reason="needs /proc/PID/status (Linux)"
)


def posedge_command() -> list[str]:
    script = Path(sys.executable).with_name("posedge")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from posedge.agent.cli import main; main()"]


def peak_rss(pid: int) -> int:
    """VmHWM of a process, in bytes."""
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmHWM:\s+(\d+) kB$", status, re.MULTILINE)
    assert match, status
    return int(match.group(1)) * 1024


class ServerProcess:
    """``posedge backoffice serve`` in a child process on a free loopback port."""

    def __init__(self, tmp_path: Path, tokens: dict[str, str] | None = None) -> None:
        args = [
            *posedge_command(),
            "backoffice",
            "serve",
            "--db",
            str(tmp_path / "bo.sqlite3"),
            "--listen",
            "127.0.0.1:0",
            "--log-level",
            "warning",
        ]
        if tokens is not None:
            path = tmp_path / "tokens.toml"
            path.write_text("".join(f'{t} = "{v}"\n' for t, v in tokens.items()))
            args += ["--tokens", str(path)]
        self.log = (tmp_path / "server.log").open("wb")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self.log)
        self.url = self._read_url()

    def _read_url(self) -> str:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        line = b""
        while b"\n" not in line:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.proc.stdout], [], [], max(0.0, left))
            if not ready:
                self.close()
                raise AssertionError("the back office did not announce its URL in time")
            data = os.read(self.proc.stdout.fileno(), 4096)  # unbuffered: select stays true
            if not data:
                self.close()
                raise AssertionError("the back office exited before announcing its URL")
            line += data
        match = re.search(r"http://127\.0\.0\.1:\d+", line.decode())
        assert match, line
        return match.group()

    @property
    def peak_rss(self) -> int:
        return peak_rss(self.proc.pid)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:  # pragma: no cover
                self.proc.kill()
                self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.log.close()


class HealthProbe:
    """GET /healthz in a loop from a thread while a ``with`` block runs; keeps latencies."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self._gc_was_enabled = False
        self._stop = threading.Event()
        self._sampled = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="healthz-probe", daemon=True)

    def _wait_samples(self, count: int) -> None:
        """Until the probe has taken ``count`` samples in all (or it fails)."""
        with self._sampled:
            taken = self._sampled.wait_for(
                lambda: len(self.latencies) >= count or bool(self.failures), timeout=10
            )
        assert taken, f"the /healthz probe took {len(self.latencies)} samples, wanted {count}"

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=5.0) as client:
            while not self._stop.is_set():
                started = time.perf_counter()
                try:
                    reply = client.get("/healthz")
                    ok = reply.status_code == 200
                except httpx.HTTPError as exc:
                    ok, reply = False, None
                    self.failures.append(type(exc).__name__)
                with self._sampled:
                    self.latencies.append(time.perf_counter() - started)
                    self._sampled.notify_all()
                if not ok and reply is not None:
                    self.failures.append(str(reply.status_code))
                self._stop.wait(0.005)

    def __enter__(self) -> HealthProbe:
        # A collection in this (client) process would be counted against the server.
        self._gc_was_enabled = gc.isenabled()
        gc.collect()
        gc.disable()
        self._thread.start()
        self._wait_samples(3)  # a few samples before the upload starts
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._wait_samples(len(self.latencies) + 2)  # and a few after it ended
        self._stop.set()
        self._thread.join(10)
        if self._gc_was_enabled:
            gc.enable()

    def check(self) -> float:
        assert not self.failures, self.failures
        assert len(self.latencies) >= 3, self.latencies
        worst = max(self.latencies)
        shown = ", ".join(f"{t * 1000:.0f}" for t in self.latencies)
        assert worst < MAX_HEALTH_LATENCY_S, f"/healthz took {worst * 1000:.0f} ms ({shown} ms)"
        return worst


def warm_up(url: str, headers: dict[str, str] | None = None) -> None:
    """Exercise the code paths once (imports, first allocations) before measuring."""
    batch = (
        b'{"terminal":"lane1","first_seq":1,"last_seq":1,"events":[{"seq":1,'
        b'"ts":"2026-11-26T10:00:00+00:00","type":"t","payload":{"a":1},'
        b'"prev_hash":"' + b"0" * 64 + b'","hash":"' + b"1" * 64 + b'"}]}'
    )
    with httpx.Client(base_url=url, timeout=5.0, headers=headers) as c:
        for _ in range(3):
            c.get("/healthz")
            c.post("/v1/terminals/lane1/events", content=batch)
            c.post(
                "/v1/terminals/lane1/events",
                content=gzip.compress(batch),
                headers={"Content-Encoding": "gzip"},
            )
            c.post("/v1/terminals/lane1/events", content=b"{nope")
            c.post("/v1/authorizations", content=b"{}", headers={"Idempotency-Key": "k"})


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path)
    try:
        warm_up(proc.url)
        yield proc
    finally:
        proc.close()


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path, tokens=TOKENS)
    try:
        warm_up(proc.url, {"Authorization": f"Bearer {TOKENS['lane1']}"})
        yield proc
    finally:
        proc.close()


def assert_problem(reply: httpx.Response, status: int, kind: str) -> None:
    assert reply.status_code == status, reply.text[:300]
    assert reply.headers["content-type"] == "application/problem+json"
    assert reply.json()["type"] == f"https://posedge.dev/problems/{kind}"


def report(name: str, growth: int, worst: float, elapsed: float, **more: object) -> None:
    extra = "".join(f", {k} {v}" for k, v in more.items())
    print(
        f"\n{name}: peak RSS +{growth / MIB:.1f} MiB, worst /healthz {worst * 1000:.1f} ms, "
        f"{elapsed:.2f} s{extra}"
    )


def test_a_700_mib_chunked_body_is_refused_413_with_bounded_memory(server: ServerProcess) -> None:
    before = server.peak_rss
    sent = 0
    chunk = b" " * MIB

    def body() -> Iterator[bytes]:
        nonlocal sent
        for _ in range(700):
            sent += len(chunk)
            yield chunk

    with HealthProbe(server.url) as probe:
        started = time.monotonic()
        reply = httpx.post(
            f"{server.url}/v1/terminals/lane1/events",
            content=body(),
            headers={"Content-Type": "application/json"},
            timeout=30.0,
        )
        elapsed = time.monotonic() - started
    assert_problem(reply, 413, "payload-too-large")
    growth = server.peak_rss - before
    worst = probe.check()
    report("700 MiB chunked", growth, worst, elapsed, client_sent=f"{sent // MIB} MiB")
    assert growth < MAX_GROWTH, f"peak RSS grew by {growth / MIB:.1f} MiB"
    assert elapsed < 20
    assert sent < 700 * MIB, "the client had to push the whole body"


def test_a_gzip_bomb_is_refused_413_with_bounded_memory(server: ServerProcess) -> None:
    bomb = gzip.compress(b" " * (63 * MIB), compresslevel=9)
    assert len(bomb) < 64 * 1024
    before = server.peak_rss
    with HealthProbe(server.url) as probe:
        started = time.monotonic()
        reply = httpx.post(
            f"{server.url}/v1/terminals/lane1/events",
            content=bomb,
            headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
            timeout=30.0,
        )
        elapsed = time.monotonic() - started
    assert_problem(reply, 413, "payload-too-large")
    growth = server.peak_rss - before
    worst = probe.check()
    report("63 KiB gzip -> 63 MiB", growth, worst, elapsed, gzip=f"{len(bomb)} bytes")
    assert growth < MAX_GROWTH, f"peak RSS grew by {growth / MIB:.1f} MiB"


@pytest.mark.parametrize("route", ["/v1/authorizations", "/v1/terminals/lane1/events"])
def test_an_unauthenticated_50_mib_post_is_refused_401_unread(
    secured: ServerProcess, route: str
) -> None:
    body = b"x" * (50 * MIB)
    before = secured.peak_rss
    with HealthProbe(secured.url) as probe:
        started = time.monotonic()
        reply = httpx.post(
            f"{secured.url}{route}",
            content=body,
            headers={"Idempotency-Key": "s-1:online", "Content-Type": "application/json"},
            timeout=30.0,
        )
        elapsed = time.monotonic() - started
    assert_problem(reply, 401, "unauthorized")
    growth = secured.peak_rss - before
    worst = probe.check()
    report(f"unauthenticated 50 MiB {route}", growth, worst, elapsed)
    assert growth < 4 * MIB, f"peak RSS grew by {growth / MIB:.1f} MiB: the body was read"
    assert elapsed < 2.0
