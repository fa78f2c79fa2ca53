"""Bad input and a second close: clear errors, nothing journaled."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from posedge.agent.close.daemon import DaemonCloses
from posedge.agent.close.errors import AlreadyClosed, CloseBusy, CloseNotFound, CloseRefused

from .support import till, utc

NOW = utc("2026-03-29T12:00:00")


@pytest.mark.parametrize(
    ("day", "says", "code"),
    [
        ("29.03.2026", "is not a date; write YYYY-MM-DD", 2),
        ("2026-02-30", "is not a calendar date", 2),
        ("2026-03-30", "is in the future: the current business day in Europe/Berlin is "
                       "2026-03-29", 2),
    ],
)  # fmt: skip
def test_bad_or_future_business_day_is_refused_and_nothing_stored(
    tmp_path: Path, day: str, says: str, code: int
) -> None:
    with till(tmp_path, NOW, {"timezone": "Europe/Berlin"}) as t:
        t.journal.append("technician.note", {"text": "x"})
        head = t.journal.head().seq
        with pytest.raises(CloseRefused) as info:
            t.closer.close(day)
        assert says in str(info.value) and info.value.exit_code == code
        assert t.journal.head().seq == head and t.vprinter.receipts == []


def test_already_closed_and_earlier_days_are_refused(tmp_path: Path) -> None:
    with till(tmp_path, NOW) as t:
        first = t.closer.close("2026-03-28")
        head = t.journal.head().seq
        with pytest.raises(AlreadyClosed) as info:
            t.closer.close("2026-03-28")
        assert "2026-03-28 is already closed" in str(info.value)
        assert "--force" in str(info.value) and info.value.exit_code == 3
        t.closer.close("2026-03-29")
        with pytest.raises(CloseRefused) as earlier:
            t.closer.close("2026-03-28", force=True)
        assert "before the last close's business day (2026-03-29" in str(earlier.value)
        assert t.journal.head().seq == head + 1  # only the close of the 29th
        forced = t.closer.close("2026-03-29", force=True)
        assert forced.payload["forced"] is True
        assert t.closer.find("2026-03-28") == first
        assert t.closer.find(None) == forced


def test_unknown_close_for_reprint(tmp_path: Path) -> None:
    with till(tmp_path, NOW) as t:
        with pytest.raises(CloseNotFound) as none_yet:
            t.closer.find(None)
        assert "no close yet" in str(none_yet.value)
        note = t.journal.append("technician.note", {"text": "x"})
        with pytest.raises(CloseNotFound) as not_close:
            t.closer.find(str(note.seq))
        assert f"journal event {note.seq} is not a close" in str(not_close.value)
        with pytest.raises(CloseNotFound):
            t.closer.find("2026-03-01")
        for odd in ("¹", "²³"):  # digits to str.isdigit(), not to int(): refused, no crash
            with pytest.raises(CloseRefused, match="is not a date"):
                t.closer.find(odd)


def test_a_close_while_another_runs_is_refused(tmp_path: Path) -> None:
    """The first close waits for the printer (a receipt holds it); a second is refused."""

    async def body() -> None:
        with till(tmp_path, NOW) as t:
            printer_lock = asyncio.Lock()
            closes = DaemonCloses(t.closer, printer_lock)
            await printer_lock.acquire()  # a sale's receipt is printing
            first = asyncio.create_task(closes.close(None, trigger="api"))
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 10
            while "day.closed" not in t.types():
                assert loop.time() < deadline, "the first close was not journaled"
                await asyncio.sleep(0.01)
            with pytest.raises(CloseBusy) as info:
                await closes.close("2026-03-29", trigger="api", force=True)
            assert "another close is running" in str(info.value)
            printer_lock.release()
            record, printed = await first
            assert printed.printed
            assert t.types().count("day.closed") == 1
            assert t.types()[-2:] == ["zreport.printing", "zreport.printed"]
            assert record.payload["business_day"] == "2026-03-29"

    asyncio.run(body())
