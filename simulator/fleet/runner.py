"""Drive a simulated fleet against a back office over HTTP (docs/sync-protocol.md).

One asyncio loop, one :class:`httpx.AsyncClient` whose concurrent requests are
bounded by ``connections``; every terminal is a :class:`~.terminal.SimTerminal`
moved through simulated time by a :class:`~.history.LaneDriver`. Per terminal
at most one upload loop runs at a time (batches in seq order, as the agent
sends them) and its heartbeats go out one after another.

Two clocks:

- **real time** (``speed`` a number): simulated time runs ``speed`` times as
  fast as the wall clock from ``start``; a terminal uploads when its oldest
  unsent event is ``upload_interval`` old or it holds a full batch, and sends
  a heartbeat every ``heartbeat_interval`` (each terminal at its own phase).
- **replay** (``speed=None``): as fast as the back office answers. Simulated
  time advances in rounds of ``upload_interval``; in each round every
  terminal journals its sales, sends its heartbeats due in the round, then
  uploads its whole backlog, and the next round starts when every request
  of this one is answered (memory stays bounded by one round of events).

The agent's sync rules apply: ``Idempotency-Key: {terminal}:{first}-{last}``;
2xx moves the cursor to ``acked_seq``; 409 ``sequence-gap``/``chain-mismatch``
rewinds to ``expected_seq`` (never skips); 413 halves the batch; 429/503/5xx,
timeouts and connection errors back off with full jitter (``Retry-After``
honoured, capped); any other 4xx stops that terminal's uploads and is
reported. Faults (:mod:`.faults`) suppress sales, heartbeats or uploads of
the terminals they hit. At the end (or on :meth:`FleetRunner.stop`) the
runner uploads what it may, within ``drain_timeout_s``, and reports.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import importlib.util
import json
import math
import random
import ssl
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from .enrol import EnrolmentFailed, enrol
from .faults import Fault, FaultSchedule
from .history import LaneDriver
from .model import Fleet, derive_seed
from .terminal import AGENT_VERSION, Batch, SimTerminal
from .traffic import Traffic, iso

PROBLEM_PREFIX = "https://posedge.dev/problems/"
DEFAULT_UPLOAD_INTERVAL_REALTIME_S = 10.0
DEFAULT_UPLOAD_INTERVAL_REPLAY_S = 3600.0
MAX_ERROR_SAMPLES = 20
LATENCY_RESERVOIR = 100_000
REPEATED_REWIND_LIMIT = 3
SHARD_CONNECTIONS = 2


def skip_missing_sniffio() -> None:
    """httpcore tries ``import sniffio`` whenever it makes a lock; without sniffio installed
    each failed import searches ``sys.path`` again (measured: a third of the client's CPU).
    A ``None`` entry in ``sys.modules`` makes that import fail at once, the standard way to
    mark a module absent; httpcore then assumes asyncio, which is what runs here."""
    if "sniffio" not in sys.modules and importlib.util.find_spec("sniffio") is None:
        sys.modules["sniffio"] = None  # type: ignore[assignment]


class FleetRunError(Exception):
    """The run cannot start or go on; ``exit_code`` follows DESIGN §3 (2 usage, 4 peer)."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class RunOptions:
    backoffice: str
    start: float
    end: float | None = None
    """Simulated end (epoch seconds); None runs until :meth:`FleetRunner.stop`."""
    speed: float | None = 1.0
    """Simulated seconds per real second; None replays as fast as possible."""
    heartbeat_interval_s: float = 60.0
    """0 sends no heartbeats."""
    batch_size: int = 500
    upload_interval_s: float | None = None
    """None: 10 s in real time, 1 h in replay."""
    connections: int = 32
    timeout_s: float = 10.0
    tokens: dict[str, str] = field(default_factory=dict)
    shared_token: str | None = None
    sign: bool = False
    enrol_codes: dict[str, str] = field(default_factory=dict)
    resume: bool = True
    """Continue each terminal's chain from the back office's head (``events/head``)."""
    drain_timeout_s: float = 60.0
    tick_s: float = 0.2
    backoff_initial_s: float = 0.05
    backoff_cap_s: float = 5.0
    retry_after_cap_s: float = 30.0

    @property
    def replay(self) -> bool:
        return self.speed is None

    @property
    def upload_interval(self) -> float:
        if self.upload_interval_s is not None:
            return self.upload_interval_s
        return (
            DEFAULT_UPLOAD_INTERVAL_REPLAY_S if self.replay else DEFAULT_UPLOAD_INTERVAL_REALTIME_S
        )


@dataclass
class _Shard:
    client: httpx.AsyncClient
    sem: asyncio.Semaphore


class Latency:
    """Request latencies: exact count and maximum, percentiles from a bounded reservoir."""

    def __init__(self, capacity: int = LATENCY_RESERVOIR, seed: int = 0) -> None:
        self.capacity = capacity
        self.samples: list[float] = []
        self.count = 0
        self.max = 0.0
        self._rng = random.Random(seed)

    def add(self, seconds: float) -> None:
        self.count += 1
        self.max = max(self.max, seconds)
        if len(self.samples) < self.capacity:
            self.samples.append(seconds)
        else:
            slot = self._rng.randrange(self.count)
            if slot < self.capacity:
                self.samples[slot] = seconds

    def percentile(self, q: float) -> float | None:
        if not self.samples:
            return None
        ordered = sorted(self.samples)
        index = min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))
        return ordered[index]

    def summary(self) -> dict[str, Any]:
        def ms(value: float | None) -> float | None:
            return None if value is None else round(value * 1000, 3)

        return {
            "count": self.count,
            "p50_ms": ms(self.percentile(50)),
            "p90_ms": ms(self.percentile(90)),
            "p99_ms": ms(self.percentile(99)),
            "max_ms": ms(self.max) if self.count else None,
        }


@dataclass
class _Lane:
    index: int
    fleet_id: str
    store: str
    sim: SimTerminal
    driver: LaneDriver
    headers: dict[str, str]
    batch_size: int
    next_heartbeat: float | None
    token_id: int = 0
    upload_task: asyncio.Task[None] | None = None
    heartbeat_task: asyncio.Task[None] | None = None
    heartbeat_queue: list[dict[str, Any]] = field(default_factory=list)
    failed: str | None = None
    resumed_from: int = 0
    accepted: int = 0
    duplicates: int = 0
    batches: int = 0
    rewinds: int = 0
    last_rewind: tuple[int, int] | None = None
    repeated_rewinds: int = 0
    heartbeats_ok: int = 0
    heartbeats_failed: int = 0
    heartbeats_suppressed: int = 0
    last_heartbeat: dict[str, Any] | None = None

    def as_dict(self, schedule: FaultSchedule, when: float) -> dict[str, Any]:
        sim = self.sim
        return {
            "terminal": sim.terminal,
            "fleet_terminal": self.fleet_id,
            "store": self.store,
            "resumed_from_seq": self.resumed_from,
            "head_seq": sim.head_seq,
            "head_hash": sim.head_hash,
            "acked_seq": sim.acked_seq,
            "unsynced": sim.unsynced,
            "uploads_blocked_by_fault": not schedule.effect(self.fleet_id, when).uploads,
            "events_generated": sim.committed,
            "events_accepted": self.accepted,
            "duplicates": self.duplicates,
            "batches": self.batches,
            "rewinds": self.rewinds,
            "sales": sim.sales,
            "sales_suppressed": self.driver.suppressed,
            "heartbeats_sent": self.heartbeats_ok,
            "heartbeats_failed": self.heartbeats_failed,
            "heartbeats_suppressed": self.heartbeats_suppressed,
            "last_heartbeat": self.last_heartbeat,
            "failed": self.failed,
        }


@dataclass
class Progress:
    sim_time: float
    elapsed_s: float
    events_generated: int
    events_accepted: int
    heartbeats: int
    errors: int
    unsynced: int


class FleetRunner:
    """Runs one simulation; :meth:`run` returns the report document."""

    def __init__(
        self,
        fleet: Fleet,
        options: RunOptions,
        faults: Iterable[Fault] = (),
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        progress: Callable[[Progress], None] | None = None,
        progress_every_s: float = 2.0,
    ) -> None:
        if options.batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if options.connections < 1:
            raise ValueError("connections must be at least 1")
        self.fleet = fleet
        self.options = options
        self.schedule = FaultSchedule(faults)
        self.traffic = Traffic(fleet)
        self._transport = transport
        self._progress = progress
        self._progress_every_s = progress_every_s
        self._shards: list[_Shard] = []
        self._stop: asyncio.Event | None = None
        self._stop_requested = False
        self._abort = False
        self.lanes: list[_Lane] = []
        self._heap: list[tuple[float, int, int]] = []
        self.sim_now = options.start
        self.event_latency = Latency(seed=1)
        self.heartbeat_latency = Latency(seed=2)
        self.errors: dict[str, int] = {}
        self.error_samples: list[dict[str, Any]] = []
        self._round_tasks: list[asyncio.Task[None]] = []
        self._started_real = 0.0
        self._max_lag_s = 0.0
        self._rng = random.Random(derive_seed(fleet.seed, "runner-jitter"))

    # -- control -------------------------------------------------------------------------------

    def stop(self) -> None:
        """Finish gracefully: stop simulating, upload what may be uploaded, report. A
        second call abandons the uploads too."""
        if self._stop_requested:
            self._abort = True
        self._stop_requested = True
        if self._stop is not None:
            self._stop.set()

    # -- the run ---------------------------------------------------------------------------------

    async def run(self) -> dict[str, Any]:
        options = self.options
        skip_missing_sniffio()
        self._stop = asyncio.Event()
        if self._stop_requested:
            self._stop.set()
        # httpx's pool scans all its connections for every request: many small clients
        # (measured best at 2 connections each) cost far less CPU than one big one.
        per_client = min(SHARD_CONNECTIONS, options.connections)
        count = math.ceil(options.connections / per_client)
        limits = httpx.Limits(max_connections=per_client, max_keepalive_connections=per_client)
        timeout = httpx.Timeout(options.timeout_s, pool=None)
        # One TLS context (verification on) for every client: each would load the CA
        # certificates again (tens of milliseconds per client).
        tls = ssl.create_default_context()
        async with contextlib.AsyncExitStack() as stack:
            for _ in range(count):
                client = httpx.AsyncClient(
                    base_url=options.backoffice.rstrip("/"),
                    limits=limits,
                    timeout=timeout,
                    transport=self._transport,
                    follow_redirects=False,
                    verify=tls,
                )
                await stack.enter_async_context(client)
                self._shards.append(_Shard(client, asyncio.Semaphore(per_client)))
            sims = self._build_terminals()
            await self._enrol_all(sims)
            resumed = await self._resume_all(sims) if options.resume else [0] * len(sims)
            self._start_lanes(sims, resumed)
            self._started_real = time.monotonic()
            if options.replay:
                await self._run_replay()
            else:
                await self._run_realtime()
            await self._drain()
        self._shards = []
        return self.report()

    def _shard(self, index: int) -> _Shard:
        return self._shards[index % len(self._shards)]

    def _build_terminals(self) -> list[SimTerminal]:
        options = self.options
        return [
            SimTerminal(
                lane,
                self.fleet.store_of(lane),
                seed=self.fleet.seed,
                sign=options.sign,
                token=options.tokens.get(lane.terminal, options.shared_token),
            )
            for lane in self.fleet.lanes
        ]

    @staticmethod
    def _headers(sim: SimTerminal) -> dict[str, str]:
        headers = {
            "User-Agent": f"posedge/{AGENT_VERSION} fleet-simulator",
            "X-Posedge-Terminal": sim.terminal,
            "Accept": "application/json, application/problem+json",
            "Content-Type": "application/json",
        }
        if sim.token:
            headers["Authorization"] = f"Bearer {sim.token}"
        return headers

    async def _enrol_all(self, sims: list[SimTerminal]) -> None:
        codes = self.options.enrol_codes
        if not codes:
            return

        async def one(index: int, sim: SimTerminal) -> None:
            fleet_id = sim.lane.terminal
            code = codes.get(fleet_id)
            if code is None:
                return
            sim.enable_signing()
            assert sim.signing_key is not None
            shard = self._shard(index)
            async with shard.sem:
                try:
                    answer = await enrol(shard.client, code, sim.signing_key, fleet_id)
                except httpx.TransportError as exc:
                    raise FleetRunError(
                        f"back office {self.options.backoffice} unreachable during enrolment: "
                        f"{type(exc).__name__}: {exc}",
                        exit_code=4,
                    ) from None
                except EnrolmentFailed as exc:
                    raise FleetRunError(str(exc), exit_code=2) from None
            sim.rename(answer.terminal)
            sim.token = answer.token

        await asyncio.gather(*(one(index, sim) for index, sim in enumerate(sims)))

    async def _resume_all(self, sims: list[SimTerminal]) -> list[int]:
        """Continue every terminal's chain from what the back office holds; the held seqs."""

        async def one(index: int, sim: SimTerminal) -> int:
            path = f"/v1/terminals/{sim.terminal}/events/head"
            headers = self._headers(sim)
            shard = self._shard(index)
            for attempt in range(5):
                async with shard.sem:
                    try:
                        response = await shard.client.get(path, headers=headers)
                    except httpx.TransportError as exc:
                        raise FleetRunError(
                            f"back office {self.options.backoffice} unreachable: "
                            f"{type(exc).__name__}: {exc or 'connection failed'}; is it "
                            "running, and is --backoffice its URL?",
                            exit_code=4,
                        ) from None
                status = response.status_code
                if status == 200:
                    try:
                        doc = response.json()
                        acked = int(doc.get("acked_seq") or 0)
                        sim.resume(acked, doc.get("head_hash"))
                    except (ValueError, AttributeError, TypeError):
                        raise FleetRunError(
                            f"{self.options.backoffice} answered {path} without an events "
                            "head; is --backoffice a posedge back office?",
                            exit_code=2,
                        ) from None
                    return acked
                if status in (429, 503) or status >= 500:
                    await asyncio.sleep(min(2.0, 0.1 * 2**attempt))
                    continue
                kind, detail = _problem(response)
                if status in (401, 403):
                    raise FleetRunError(
                        f"the back office refused terminal {sim.terminal} ({status} "
                        f"{kind}: {detail}); give each terminal its token with --tokens-file "
                        "(or --token), or run the back office in open mode",
                        exit_code=2,
                    )
                if status == 404:
                    raise FleetRunError(
                        f"{self.options.backoffice} answered 404 to {path}: it does not serve "
                        "the posedge sync protocol; check --backoffice",
                        exit_code=2,
                    )
                raise FleetRunError(
                    f"the back office answered {status} {kind}: {detail} to {path}", exit_code=1
                )
            raise FleetRunError(
                f"the back office at {self.options.backoffice} stays busy (429/503/5xx) on "
                f"{path}; try again later",
                exit_code=4,
            )

        return list(await asyncio.gather(*(one(i, sim) for i, sim in enumerate(sims))))

    def _start_lanes(self, sims: list[SimTerminal], resumed: list[int]) -> None:
        options = self.options
        start, end = options.start, options.end
        interval = options.heartbeat_interval_s
        for index, (sim, held) in enumerate(zip(sims, resumed, strict=True)):
            fleet_id = sim.lane.terminal
            sales = self.traffic.iter_lane_sales(sim.lane, start, end)
            next_heartbeat = None
            if interval > 0:
                phase = derive_seed(self.fleet.seed, "heartbeat-phase", fleet_id) % 10_000
                next_heartbeat = start + phase / 10_000 * interval
            lane = _Lane(
                index=index,
                fleet_id=fleet_id,
                store=sim.store.id,
                sim=sim,
                driver=LaneDriver(sim, sales, self.schedule, start),
                headers=self._headers(sim),
                batch_size=options.batch_size,
                next_heartbeat=next_heartbeat,
                resumed_from=held,
            )
            self.lanes.append(lane)
            self._push(lane, start)

    # -- scheduling ------------------------------------------------------------------------------

    def _push(self, lane: _Lane, when: float) -> None:
        lane.token_id += 1
        heapq.heappush(self._heap, (when, lane.index, lane.token_id))

    def _process_due(self, now: float, round_end: bool) -> None:
        """Process every terminal whose wake time is at or before ``now``."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, index, token = heapq.heappop(heap)
            lane = self.lanes[index]
            if token != lane.token_id:
                continue
            self._process(lane, now, round_end)

    def _process(self, lane: _Lane, now: float, round_end: bool) -> None:
        options = self.options
        driver = lane.driver
        interval = options.heartbeat_interval_s
        while lane.next_heartbeat is not None and lane.next_heartbeat <= now:
            due = lane.next_heartbeat
            driver.advance(due)
            if self.schedule.effect(lane.fleet_id, due).heartbeats:
                lane.heartbeat_queue.append(lane.sim.heartbeat(due))
            else:
                lane.heartbeats_suppressed += 1
            lane.next_heartbeat = due + interval
        if lane.heartbeat_queue and lane.heartbeat_task is None:
            lane.heartbeat_task = self._spawn(self._heartbeats(lane))
        driver.advance(now)
        sim = lane.sim
        upload_due: float | None = None
        if (
            sim.backlog
            and lane.failed is None
            and lane.upload_task is None
            and self.schedule.effect(lane.fleet_id, now).uploads
        ):
            upload_due = sim.backlog[0].ts + options.upload_interval
            if round_end or len(sim.backlog) >= lane.batch_size or upload_due <= now:
                lane.upload_task = self._spawn(self._upload(lane))
                upload_due = None
        wake = [t for t in (driver.next_wake(), lane.next_heartbeat, upload_due) if t is not None]
        if wake:
            self._push(lane, max(min(wake), now))

    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._round_tasks.append(task)
        return task

    async def _run_realtime(self) -> None:
        options = self.options
        assert options.speed is not None and self._stop is not None
        speed = options.speed
        start, end = options.start, options.end
        last_progress = time.monotonic()
        while True:
            elapsed = time.monotonic() - self._started_real
            now = start + elapsed * speed
            if end is not None and now >= end:
                now = end
            if self._heap:
                self._max_lag_s = max(self._max_lag_s, (now - self._heap[0][0]) / speed)
            self.sim_now = now
            self._process_due(now, round_end=False)
            pending = []
            for task in self._round_tasks:
                if task.done():
                    task.result()  # a bug in a request task ends the run with its traceback
                else:
                    pending.append(task)
            self._round_tasks = pending
            if (end is not None and now >= end) or self._stop.is_set():
                return
            if time.monotonic() - last_progress >= self._progress_every_s:
                last_progress = time.monotonic()
                self._report_progress()
            wait = options.tick_s
            if self._heap:
                wait = min(wait, max(0.0, (self._heap[0][0] - now) / speed))
            if end is not None:
                wait = min(wait, max(0.0, (end - now) / speed))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=max(wait, 0.001))

    async def _run_replay(self) -> None:
        options = self.options
        assert options.end is not None and self._stop is not None
        step = options.upload_interval
        now = options.start
        last_progress = time.monotonic()
        while now < options.end and not self._stop.is_set():
            now = min(options.end, now + step)
            self.sim_now = now
            self._process_due(now, round_end=True)
            tasks, self._round_tasks = self._round_tasks, []
            if tasks:
                await asyncio.gather(*tasks)
            else:
                await asyncio.sleep(0)
            if time.monotonic() - last_progress >= self._progress_every_s:
                last_progress = time.monotonic()
                self._report_progress()

    async def _drain(self) -> None:
        """Upload what may still be uploaded; wait for the requests in flight."""
        end_time = self.sim_now
        for lane in self.lanes:
            lane.driver.advance(end_time)
            if lane.heartbeat_queue and lane.heartbeat_task is None:
                lane.heartbeat_task = self._spawn(self._heartbeats(lane))
            if (
                lane.sim.backlog
                and lane.failed is None
                and lane.upload_task is None
                and self.schedule.effect(lane.fleet_id, end_time).uploads
            ):
                lane.upload_task = self._spawn(self._upload(lane))
        tasks = [t for t in self._round_tasks if not t.done()]
        self._round_tasks = []
        if not tasks:
            return
        timeout = 0.0 if self._abort else self.options.drain_timeout_s
        _, pending = await asyncio.wait(tasks, timeout=timeout)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
            self._count_error("drain_timeout", None, f"{len(pending)} requests cancelled")

    # -- requests -----------------------------------------------------------------------------

    async def _heartbeats(self, lane: _Lane) -> None:
        shard = self._shard(lane.index)
        path = f"/v1/terminals/{lane.sim.terminal}/heartbeat"
        try:
            while lane.heartbeat_queue and not self._abort:
                doc = lane.heartbeat_queue.pop(0)
                body = json.dumps(doc, separators=(",", ":")).encode()
                began = time.perf_counter()
                try:
                    async with shard.sem:
                        response = await shard.client.post(path, content=body, headers=lane.headers)
                except httpx.TransportError as exc:
                    lane.heartbeats_failed += 1
                    self._count_error("heartbeat_" + _transport_kind(exc), lane, str(exc))
                    continue
                self.heartbeat_latency.add(time.perf_counter() - began)
                if response.status_code == 200:
                    lane.heartbeats_ok += 1
                    head = doc["journal_head"]
                    lane.last_heartbeat = {
                        "sent_at": doc["sent_at"],
                        "journal_head_seq": head["seq"],
                        "unsynced_count": doc["unsynced_count"],
                    }
                else:
                    lane.heartbeats_failed += 1
                    kind, detail = _problem(response)
                    self._count_error(
                        f"heartbeat_{response.status_code}", lane, f"{kind}: {detail}"
                    )
        finally:
            lane.heartbeat_task = None

    async def _upload(self, lane: _Lane) -> None:
        sim = lane.sim
        try:
            while sim.backlog and lane.failed is None and not self._abort:
                if not self.schedule.effect(lane.fleet_id, self.sim_now).uploads:
                    break
                batch = sim.next_batch(lane.batch_size)
                assert batch is not None
                if not await self._send_batch(lane, batch):
                    break
        finally:
            lane.upload_task = None
            if sim.backlog and lane.failed is None and not self.options.replay:
                self._push(lane, self.sim_now)

    async def _send_batch(self, lane: _Lane, batch: Batch) -> bool:
        """One batch until it is answered; False stops this upload loop."""
        shard = self._shard(lane.index)
        sim = lane.sim
        path = f"/v1/terminals/{sim.terminal}/events"
        headers = dict(lane.headers)
        headers["Idempotency-Key"] = batch.idempotency_key
        backoff = self.options.backoff_initial_s
        while not self._abort:
            began = time.perf_counter()
            try:
                async with shard.sem:
                    response = await shard.client.post(path, content=batch.body, headers=headers)
            except httpx.TransportError as exc:
                self._count_error("events_" + _transport_kind(exc), lane, str(exc))
                backoff = await self._backoff(backoff, None)
                continue
            self.event_latency.add(time.perf_counter() - began)
            status = response.status_code
            if status == 200:
                try:
                    doc = response.json()
                    accepted, duplicates = int(doc["accepted"]), int(doc["duplicates"])
                    acked = int(doc["acked_seq"])
                except (ValueError, KeyError, TypeError):
                    self._count_error("events_bad_reply", lane, "200 without an acknowledgement")
                    lane.failed = "the back office answered 200 without an events acknowledgement"
                    return False
                sim.acknowledge(acked)
                lane.accepted += accepted
                lane.duplicates += duplicates
                lane.batches += 1
                lane.last_rewind = None
                return True
            kind, detail = _problem(response)
            if status == 409 and kind in ("sequence-gap", "chain-mismatch"):
                expected = _int_member(response, "expected_seq")
                lane.rewinds += 1
                self._count_error(f"events_409_{kind}", lane, detail)
                marker = (expected or 0, sim.acked_seq)
                if lane.last_rewind == marker:
                    lane.repeated_rewinds += 1
                else:
                    lane.repeated_rewinds = 0
                lane.last_rewind = marker
                if (
                    expected is None
                    or not sim.rewind(expected)
                    or lane.repeated_rewinds >= REPEATED_REWIND_LIMIT
                ):
                    lane.failed = f"409 {kind}: {detail} (cannot resend from seq {expected})"
                    return False
                return True
            if status == 413 and lane.batch_size > 1:
                lane.batch_size = max(1, lane.batch_size // 2)
                self._count_error("events_413", lane, detail)
                return True
            if status in (429, 503) or status >= 500 or (status == 409 and kind == "in-progress"):
                self._count_error(f"events_{status}", lane, detail)
                backoff = await self._backoff(backoff, _retry_after(response))
                continue
            self._count_error(f"events_{status}", lane, f"{kind}: {detail}")
            lane.failed = f"{status} {kind}: {detail}"
            return False
        return False

    async def _backoff(self, current: float, retry_after: float | None) -> float:
        options = self.options
        if retry_after is not None:
            wait = min(retry_after, options.retry_after_cap_s)
        else:
            wait = self._rng.uniform(0, current)
        assert self._stop is not None
        await asyncio.sleep(wait)
        return min(options.backoff_cap_s, current * 2)

    def _count_error(self, kind: str, lane: _Lane | None, detail: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1
        if len(self.error_samples) < MAX_ERROR_SAMPLES:
            self.error_samples.append(
                {
                    "kind": kind,
                    "terminal": None if lane is None else lane.sim.terminal,
                    "sim_time": iso(round(self.sim_now, 3)),
                    "detail": detail[:300],
                }
            )

    # -- reporting ---------------------------------------------------------------------------

    def _report_progress(self) -> None:
        if self._progress is None:
            return
        self._progress(
            Progress(
                sim_time=self.sim_now,
                elapsed_s=time.monotonic() - self._started_real,
                events_generated=sum(lane.sim.committed for lane in self.lanes),
                events_accepted=sum(lane.accepted for lane in self.lanes),
                heartbeats=sum(lane.heartbeats_ok for lane in self.lanes),
                errors=sum(self.errors.values()),
                unsynced=sum(lane.sim.unsynced for lane in self.lanes),
            )
        )

    def report(self, details: bool = True) -> dict[str, Any]:
        """The run's summary document (``details``: one entry per terminal)."""
        options = self.options
        elapsed = time.monotonic() - self._started_real if self._started_real else 0.0
        when = self.sim_now
        lanes = self.lanes
        generated = sum(lane.sim.committed for lane in lanes)
        accepted = sum(lane.accepted for lane in lanes)
        duplicates = sum(lane.duplicates for lane in lanes)
        unsynced = sum(lane.sim.unsynced for lane in lanes)
        blocked = sum(
            lane.sim.unsynced
            for lane in lanes
            if not self.schedule.effect(lane.fleet_id, when).uploads
        )
        failed = [
            {"terminal": lane.sim.terminal, "reason": lane.failed}
            for lane in lanes
            if lane.failed is not None
        ]
        outcomes: dict[str, int] = {}
        for lane in lanes:
            for outcome, count in lane.sim.outcomes.items():
                outcomes[outcome] = outcomes.get(outcome, 0) + count
        heartbeats_ok = sum(lane.heartbeats_ok for lane in lanes)
        doc: dict[str, Any] = {
            "ok": not failed and unsynced == blocked,
            "backoffice": options.backoffice,
            "mode": "replay" if options.replay else "realtime",
            "speed": options.speed,
            "fleet": {
                "terminals": len(lanes),
                "stores": len(self.fleet.stores),
                "seed": self.fleet.seed,
            },
            "window": {
                "start": iso(options.start),
                "end": iso(round(when, 6)),
                "planned_end": None if options.end is None else iso(options.end),
            },
            "settings": {
                "heartbeat_interval_s": options.heartbeat_interval_s,
                "upload_interval_s": options.upload_interval,
                "batch_size": options.batch_size,
                "connections": options.connections,
                "signed": any(lane.sim.signing_key is not None for lane in lanes),
                "enrolled": len(options.enrol_codes),
            },
            "elapsed_s": round(elapsed, 3),
            "max_lag_s": round(self._max_lag_s, 3) if not options.replay else None,
            "events": {
                "generated": generated,
                "sent": accepted + duplicates,
                "accepted": accepted,
                "duplicates": duplicates,
                "unsynced": unsynced,
                "unsynced_blocked_by_faults": blocked,
                "resumed_from_back_office": sum(lane.resumed_from for lane in lanes),
                "batches": sum(lane.batches for lane in lanes),
                "rewinds": sum(lane.rewinds for lane in lanes),
                "accepted_per_s": round(accepted / elapsed, 1) if elapsed > 0 else None,
            },
            "heartbeats": {
                "sent": heartbeats_ok,
                "failed": sum(lane.heartbeats_failed for lane in lanes),
                "suppressed_by_faults": sum(lane.heartbeats_suppressed for lane in lanes),
                "per_s": round(heartbeats_ok / elapsed, 1) if elapsed > 0 else None,
            },
            "sales": {
                "total": sum(lane.sim.sales for lane in lanes),
                "outcomes": dict(sorted(outcomes.items())),
                "suppressed_by_faults": sum(lane.driver.suppressed for lane in lanes),
                "forwarded": sum(lane.driver.forwarded for lane in lanes),
            },
            "latency_ms": {
                "events": self.event_latency.summary(),
                "heartbeat": self.heartbeat_latency.summary(),
            },
            "errors": {
                "total": sum(self.errors.values()),
                "by_kind": dict(sorted(self.errors.items())),
                "samples": self.error_samples,
            },
            "terminals_failed": failed,
            "faults": self.schedule.ground_truth(),
        }
        if details:
            doc["terminals"] = [lane.as_dict(self.schedule, when) for lane in lanes]
        return doc


def _transport_kind(exc: httpx.TransportError) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    if isinstance(exc, httpx.ConnectError):
        return "connect_error"
    return "transport_error"


def _problem(response: httpx.Response) -> tuple[str, str]:
    try:
        doc = response.json()
    except ValueError:
        return "", response.reason_phrase
    if not isinstance(doc, dict):
        return "", response.reason_phrase
    kind = str(doc.get("type", "")).removeprefix(PROBLEM_PREFIX)
    detail = str(doc.get("detail") or doc.get("title") or response.reason_phrase)
    return kind, detail


def _int_member(response: httpx.Response, name: str) -> int | None:
    try:
        doc = response.json()
    except ValueError:
        return None
    value = doc.get(name) if isinstance(doc, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _retry_after(response: httpx.Response) -> float | None:
    header = response.headers.get("Retry-After")
    if header is None:
        return None
    try:
        return max(0.0, float(header))
    except ValueError:
        return None


def run_fleet(
    fleet: Fleet,
    options: RunOptions,
    faults: Sequence[Fault] = (),
    *,
    progress: Callable[[Progress], None] | None = None,
) -> dict[str, Any]:
    """Run a simulation to its end in a new event loop; returns the report."""
    runner = FleetRunner(fleet, options, faults, progress=progress)
    return asyncio.run(runner.run())
