"""The scheduled close: clock injected, one decision per turn (no sleeping)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from posedge.agent.close.closer import calendar_of
from posedge.agent.close.daemon import MAX_TICK_S, CloseScheduler, DaemonCloses

from .support import Till, till, utc

BERLIN_2330 = {"at": "23:30", "timezone": "Europe/Berlin"}


def scheduler(t: Till) -> CloseScheduler:
    return CloseScheduler(DaemonCloses(t.closer), lambda: calendar_of(t.config), t.clock)


def closes(t: Till) -> list[tuple[str, str]]:
    return [(p["business_day"], p["trigger"]) for p in t.events("day.closed")]


def test_missed_schedule_is_closed_at_start_then_each_day_once(tmp_path: Path) -> None:
    async def body() -> None:
        # Started at 14:00 CEST on the 29th: the 28th's 23:30 close was missed.
        with till(tmp_path, utc("2026-03-29T12:00:00"), BERLIN_2330) as t:
            t.journal.append("technician.note", {"text": "before the start"})
            schedule = scheduler(t)
            first = await schedule.turn()
            assert first is not None and closes(t) == [("2026-03-28", "catch_up")]
            assert await schedule.turn() is None  # no second close of the 28th
            t.clock.now = utc("2026-03-29T21:29:59")  # 23:29:59 CEST
            assert await schedule.turn() is None
            t.clock.now = utc("2026-03-29T21:30:00")  # 23:30 CEST: the 29th is due
            second = await schedule.turn()
            assert second is not None and second.payload["trigger"] == "schedule"
            assert await schedule.turn() is None
            assert closes(t) == [("2026-03-28", "catch_up"), ("2026-03-29", "schedule")]
            assert second.payload["previous_close_seq"] == first.seq

    asyncio.run(body())


def test_a_restart_after_the_close_does_not_close_the_day_again(tmp_path: Path) -> None:
    async def body() -> None:
        with till(tmp_path, utc("2026-03-29T21:45:00"), BERLIN_2330) as t:
            assert await scheduler(t).turn() is not None
            t.clock.now = utc("2026-03-29T21:50:00")
            assert await scheduler(t).turn() is None  # a new daemon: same journal
            assert closes(t) == [("2026-03-29", "catch_up")]

    asyncio.run(body())


def test_a_manual_close_of_the_day_spares_the_scheduled_one(tmp_path: Path) -> None:
    async def body() -> None:
        with till(tmp_path, utc("2026-03-29T15:00:00"), BERLIN_2330) as t:
            schedule = scheduler(t)
            await schedule.turn()  # the 28th, caught up
            t.closer.close(None, trigger="manual")  # the 29th, closed by hand at 17:00
            t.clock.now = utc("2026-03-29T21:30:00")
            assert await schedule.turn() is None
            assert closes(t) == [("2026-03-28", "catch_up"), ("2026-03-29", "manual")]

    asyncio.run(body())


def test_no_schedule_configured_never_closes(tmp_path: Path) -> None:
    async def body() -> None:
        with till(tmp_path, utc("2026-03-29T21:30:00"), {"timezone": "Europe/Berlin"}) as t:
            schedule = scheduler(t)
            assert await schedule.turn() is None
            assert closes(t) == []
            assert schedule.seconds_to_next() == MAX_TICK_S

    asyncio.run(body())


def test_the_scheduler_wakes_at_the_close_time(tmp_path: Path) -> None:
    with till(tmp_path, utc("2026-03-29T21:29:30"), BERLIN_2330) as t:
        schedule = scheduler(t)
        assert schedule.seconds_to_next() == 30.0
        t.clock.now = utc("2026-03-29T20:00:00")
        assert schedule.seconds_to_next() == MAX_TICK_S
