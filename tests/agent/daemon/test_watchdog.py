"""The progress supervisor: pings only while the loop and every critical task progress."""

from __future__ import annotations

import asyncio
import socket
import tempfile
from pathlib import Path

import pytest

from posedge.agent.daemon import TEST_STALL_ENV, Notifier, WatchdogSupervisor

from .support import FakeClock, RecordingNotifier, captured_logs

INTERVAL_S = 1.0
TICK_S = 0.25


def make(clock: FakeClock, notifier: RecordingNotifier, **options: object) -> WatchdogSupervisor:
    return WatchdogSupervisor(
        notifier,
        INTERVAL_S,
        clock=clock,
        tick_s=TICK_S,
        lag_tolerance_s=0.5,
        **options,  # type: ignore[arg-type]
    )


def run_ticks(sup: WatchdogSupervisor, clock: FakeClock, seconds: float, *beating: object) -> int:
    """Tick on time for ``seconds``; the given heartbeats beat every tick. Returns pings."""
    pings = 0
    for _ in range(round(seconds / TICK_S)):
        clock.advance(TICK_S)
        for hb in beating:
            hb.beat()  # type: ignore[attr-defined]
        pings += sup.tick().pinged
    return pings


def test_pings_at_the_interval_while_healthy() -> None:
    clock, notifier = FakeClock(), RecordingNotifier()
    sup = make(clock, notifier)
    sales = sup.register("sales", max_stale_s=2.0)
    assert sup.tick().pinged  # the first check pings at once
    assert run_ticks(sup, clock, 10.0, sales) == 10
    assert notifier.pings == 11


def test_a_stalled_critical_heartbeat_stops_pings_and_is_named() -> None:
    clock, notifier = FakeClock(), RecordingNotifier()
    sup = make(clock, notifier)
    sales = sup.register("sales", max_stale_s=2.0)
    sync = sup.register("sync", max_stale_s=2.0)
    run_ticks(sup, clock, 3.0, sales, sync)
    with captured_logs() as records:
        sup.stall("sales")
        pings_while_fresh = run_ticks(sup, clock, 2.0, sales, sync)
        assert pings_while_fresh >= 1  # still within its allowed staleness
        before = notifier.pings
        assert run_ticks(sup, clock, 10.0, sales, sync) == 0
    assert notifier.pings == before
    assert sup.last_verdict is not None and sup.last_verdict.stuck == ("sales",)
    errors = [r.getMessage() for r in records if r.levelname == "ERROR"]
    assert any("task sales made no progress" in m for m in errors)
    assert sum("task sales" in m for m in errors) == 1  # reported once, not every tick


def test_a_task_that_ends_without_unregistering_counts_as_stuck() -> None:
    clock, notifier = FakeClock(), RecordingNotifier()
    sup = make(clock, notifier)
    sup.register("reader-thread", max_stale_s=1.0)  # never beats
    assert run_ticks(sup, clock, 1.0) >= 1
    assert run_ticks(sup, clock, 5.0) == 0


def test_closed_heartbeats_are_no_longer_supervised() -> None:
    clock, notifier = FakeClock(), RecordingNotifier()
    sup = make(clock, notifier)
    with sup.register("job", max_stale_s=1.0):
        pass
    assert run_ticks(sup, clock, 5.0) == 5
    sup.register("job", max_stale_s=1.0)  # the name is free again


def test_non_critical_staleness_is_reported_but_does_not_stop_pings() -> None:
    clock, notifier = FakeClock(), RecordingNotifier()
    sup = make(clock, notifier)
    sup.register("heartbeat-sender", max_stale_s=1.0, critical=False)
    assert run_ticks(sup, clock, 5.0) == 5
    assert sup.last_verdict is not None and sup.last_verdict.late == ("heartbeat-sender",)


def test_a_blocked_loop_withholds_pings_until_healthy_for_half_an_interval() -> None:
    clock, notifier = FakeClock(), RecordingNotifier()
    sup = make(clock, notifier)
    sales = sup.register("sales", max_stale_s=10.0)
    run_ticks(sup, clock, 2.0, sales)
    clock.advance(3.0)  # the loop was blocked: the next wake-up is 3 s late
    verdict = sup.tick()
    assert verdict.loop_blocked and not verdict.pinged and verdict.loop_lag_s == pytest.approx(2.75)
    # Resume rule: healthy again for resume_after_s (INTERVAL_S / 2) before the next ping.
    clock.advance(TICK_S)
    assert not sup.tick().pinged  # healthy since this tick
    clock.advance(TICK_S)
    assert not sup.tick().pinged  # 0.25 s healthy < 0.5 s
    clock.advance(TICK_S)
    assert sup.tick().pinged  # 0.5 s healthy


def test_a_loop_blocked_most_of_the_time_never_pings() -> None:
    clock, notifier = FakeClock(), RecordingNotifier()
    sup = make(clock, notifier)
    sup.tick()
    before = notifier.pings
    for _ in range(10):
        clock.advance(2.0)  # blocked
        sup.tick()
        clock.advance(TICK_S)  # one on-time tick in between
        sup.tick()
    assert notifier.pings == before


def test_a_recovered_task_resumes_pings() -> None:
    clock, notifier = FakeClock(), RecordingNotifier()
    sup = make(clock, notifier)
    sales = sup.register("sales", max_stale_s=1.0)
    sup.stall("sales")
    run_ticks(sup, clock, 3.0, sales)
    assert run_ticks(sup, clock, 2.0, sales) == 0
    sales.stalled = False
    with captured_logs() as records:
        assert run_ticks(sup, clock, 3.0, sales) >= 2
    assert any("task sales makes progress again" in r.getMessage() for r in records)


def test_status_is_sent_only_when_it_changes_and_says_what_is_stuck() -> None:
    clock, notifier = FakeClock(), RecordingNotifier()
    summary = ["ready · printer ok · reader ok · backlog 0 · in-doubt 0"]
    sup = make(clock, notifier, status_provider=lambda: summary[0])
    sales = sup.register("sales", max_stale_s=1.0)
    run_ticks(sup, clock, 3.0, sales)
    assert notifier.statuses == [summary[0]]
    summary[0] = "ready · printer paper out · reader ok · backlog 3 · in-doubt 0"
    run_ticks(sup, clock, 3.0, sales)
    assert notifier.statuses[1:] == [summary[0]]
    run_ticks(sup, clock, 3.0)  # sales stops beating
    assert notifier.statuses[2:] == [f"{summary[0]} · watchdog: sales stuck"]


def test_a_failing_status_provider_does_not_stop_supervision() -> None:
    clock, notifier = FakeClock(), RecordingNotifier()

    def broken() -> str:
        raise RuntimeError("boom")

    sup = make(clock, notifier, status_provider=broken)
    with captured_logs() as records:
        assert run_ticks(sup, clock, 3.0) == 3
    assert notifier.statuses == ["status unavailable"]
    assert sum(r.getMessage() == "status provider failed" for r in records) == 1


def test_from_env_reads_the_interval_and_the_test_stall_hook() -> None:
    notifier = RecordingNotifier()
    env = {"WATCHDOG_USEC": "2000000", TEST_STALL_ENV: "sync, sales"}
    sup = WatchdogSupervisor.from_env(env, notifier=notifier)
    assert sup.interval_s == 1.0 and sup.tick_s == 0.5
    assert sup.register("sales", 5.0).stalled and sup.register("sync", 5.0).stalled
    assert not sup.register("api", 5.0).stalled
    assert set(sup.snapshot()["heartbeats"]) == {"sales", "sync", "api"}


def test_without_a_systemd_watchdog_there_are_no_pings_but_status_still_flows() -> None:
    clock, notifier = FakeClock(), RecordingNotifier()
    sup = WatchdogSupervisor(notifier, None, clock=clock, status_provider=lambda: "ready")
    for _ in range(5):
        clock.advance(sup.tick_s)
        sup.tick()
    assert notifier.pings == 0 and notifier.statuses == ["ready"]


def test_run_drives_ticks_through_the_injected_sleep() -> None:
    clock, notifier = FakeClock(), RecordingNotifier()

    async def fake_sleep(seconds: float) -> None:
        clock.advance(seconds)
        await asyncio.sleep(0)

    async def scenario() -> None:
        sup = make(clock, notifier, sleep=fake_sleep)
        task = asyncio.create_task(sup.run())
        while clock.now_s < 1005.0:
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert 5 <= notifier.pings <= 6  # a ping per second of (fake) time, first one at once


def test_real_clock_and_socket_pings_flow_then_stop_on_a_stall() -> None:
    """End to end in one loop: a real socket, real time, an asyncio task beating."""

    async def scenario(sock: socket.socket, notifier: Notifier) -> None:
        loop = asyncio.get_running_loop()
        sup = WatchdogSupervisor(
            notifier,
            0.05,
            tick_s=0.025,
            lag_tolerance_s=0.5,
            status_provider=lambda: "ready",
        )
        sales = sup.register("sales", max_stale_s=0.2)

        async def worker() -> None:
            while True:
                sales.beat()
                await asyncio.sleep(0.01)

        async def next_message() -> str:
            return (await loop.sock_recv(sock, 4096)).decode()

        tasks = [asyncio.create_task(worker()), asyncio.create_task(sup.run())]
        pings = 0
        while pings < 4:
            pings += await asyncio.wait_for(next_message(), 5) == "WATCHDOG=1"
        sup.stall("sales")
        while await asyncio.wait_for(next_message(), 5) != "STATUS=ready · watchdog: sales stuck":
            pass
        with pytest.raises(TimeoutError):  # nothing more: no ping while stuck
            await asyncio.wait_for(next_message(), 0.3)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    with tempfile.TemporaryDirectory(prefix="pw-") as tmp:
        path = str(Path(tmp) / "n.sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        sock.setblocking(False)
        notifier = Notifier(path)
        try:
            asyncio.run(scenario(sock, notifier))
        finally:
            notifier.close()
            sock.close()
