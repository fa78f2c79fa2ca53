"""The three signals against a real back office store ([sqlite] and [postgresql]): heartbeats,
backlog and held heads, and the lane test learned from ingested sale events."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from posedge.backoffice.registry import TerminalRegistry
from posedge.backoffice.silence import (
    SilenceConfig,
    SilenceConfigError,
    SilenceSignal,
    evaluate_fleet,
    parse_calendars,
    update_learned_state,
)
from posedge.backoffice.store import BackofficeStore
from posedge.protocol.models import EventBatch

ZERO = "0" * 64
NOW = datetime(2026, 11, 26, 12, tzinfo=UTC).timestamp()  # a Thursday


def _events(times: list[float], start: int = 1, prev: str = ZERO) -> list[dict[str, Any]]:
    """Chained sale events: card read, then approval, at each time."""
    out = []
    seq = start
    for t in times:
        for offset, kind in ((-5.0, "card.read"), (0.0, "auth.approved")):
            digest = hashlib.sha256(f"{prev}|{seq}".encode()).hexdigest()
            out.append(
                {
                    "seq": seq,
                    "ts": datetime.fromtimestamp(t + offset, UTC).isoformat(),
                    "type": kind,
                    "txn": f"s-{seq}",
                    "payload": {},
                    "prev_hash": prev,
                    "hash": digest,
                }
            )
            prev = digest
            seq += 1
    return out


def _ingest(store: BackofficeStore, terminal: str, events: list[dict[str, Any]]) -> None:
    for i in range(0, len(events), 500):
        chunk = events[i : i + 500]
        body = {
            "terminal": terminal,
            "first_seq": chunk[0]["seq"],
            "last_seq": chunk[-1]["seq"],
            "events": chunk,
        }
        assert store.ingest(EventBatch.model_validate(body)).status == "ok"


def _beat(
    store: BackofficeStore,
    terminal: str,
    at: float,
    head: int,
    backlog: int = 0,
    age: float | None = None,
) -> None:
    doc = {
        "terminal": terminal,
        "sent_at": datetime.fromtimestamp(at, UTC).isoformat(),
        "journal_head": {"seq": head, "hash": "ab" * 32},
        "unsynced_count": backlog,
        "oldest_unsynced_age_s": age,
    }
    store.record_heartbeat(terminal, doc, 60, now=at)


def _by(signals: list[SilenceSignal]) -> dict[tuple[str, str], SilenceSignal]:
    return {(s.terminal, s.kind): s for s in signals}


def _every(every_s: float, start: float, end: float) -> list[float]:
    out = []
    t = start
    while t < end:
        if 8 <= datetime.fromtimestamp(t, UTC).hour < 20:
            out.append(t)
        t += every_s
    return out


CALENDAR = parse_calendars({"stores": {"st1": {"timezone": "UTC", "hours": "mon-sun 08:00-20:00"}}})


@pytest.fixture
def store(db_target: Path | str) -> Iterator[BackofficeStore]:
    with BackofficeStore(db_target) as opened:
        yield opened


def test_heartbeat_age_and_backlog_signals_are_exact(store: BackofficeStore) -> None:
    config = SilenceConfig()
    for name in ("alive", "gone", "stuck", "lost", "never"):
        TerminalRegistry(store).add(name, "st9", name)
    _beat(store, "alive", NOW - 100, head=0)
    _beat(store, "gone", NOW - 181, head=0)  # 3 intervals of 60 s are 180 s
    _beat(store, "stuck", NOW - 30, head=40, backlog=40, age=880.0)  # 910 s by now
    _ingest(store, "lost", _events([NOW - 600, NOW - 500]))
    _beat(store, "lost", NOW - 10, head=6, backlog=0)  # it believes 5-6 were acknowledged
    signals = _by(evaluate_fleet(store, NOW, config))
    assert not signals["alive", "terminal_not_alive"].active
    gone = signals["gone", "terminal_not_alive"]
    assert gone.active and gone.value == pytest.approx(181.0) and gone.threshold == 180.0
    assert gone.store == "st9"
    stuck = signals["stuck", "sales_not_arriving"]
    assert stuck.active and stuck.value == pytest.approx(910.0)
    assert "oldest unsynced event 910 s old" in stuck.summary
    lost = signals["lost", "sales_not_arriving"]
    assert lost.active and lost.details["missing_seqs"] == 2
    assert "lacks seqs 5..6" in lost.summary
    assert not signals["alive", "sales_not_arriving"].active
    # The lane test is not judged while its sales may be held by the terminal.
    assert (
        signals["stuck", "lane_not_selling"].details["suppressed"] == "its sales are not arriving"
    )
    assert signals["gone", "lane_not_selling"].details["suppressed"] == "the terminal is not alive"
    # One signal per terminal and kind, for terminals that ever spoke to the back office.
    assert len(signals) == 3 * 4


def test_the_lane_test_learns_from_ingested_sales_and_flags_only_the_silent_lane(
    store: BackofficeStore,
) -> None:
    config = SilenceConfig(calendars=CALENDAR)
    registry = TerminalRegistry(store)
    busy = _every(300.0, NOW - 14 * 86400, NOW)
    for lane in ("a", "b", "c"):
        registry.add(f"st1-{lane}", "st1", lane)
        times = [t for t in busy if t < NOW - 7200] if lane == "a" else busy
        _ingest(store, f"st1-{lane}", _events(times))
        _beat(store, f"st1-{lane}", NOW - 20, head=2 * len(times))
    assert update_learned_state(store, NOW, config) == 3
    assert update_learned_state(store, NOW, config) == 0  # nothing new: nothing rescanned
    signals = _by(evaluate_fleet(store, NOW, config))
    silent = signals["st1-a", "lane_not_selling"]
    assert silent.active, silent.summary
    assert silent.value < silent.threshold
    # 12 runs per 0.7 h of exposure (210 s after each run's 90 s), silent 7,500 s less 90 s.
    assert silent.details["expected_runs"] == pytest.approx(12 / 0.7 * 7410 / 3600, rel=0.05)
    assert not signals["st1-b", "lane_not_selling"].active
    assert not signals["st1-a", "terminal_not_alive"].active
    # Lane a sells again: the new events alone are learned, and the silence ends.
    _ingest(
        store,
        "st1-a",
        _events([NOW - 60], start=2 * len(busy) - 2 * 24 + 1, prev=_head(store, "st1-a")),
    )
    assert update_learned_state(store, NOW, config) == 1
    assert not _by(evaluate_fleet(store, NOW, config))["st1-a", "lane_not_selling"].active
    # Outside opening hours nothing is judged.
    night = NOW + 10 * 3600
    for lane in "abc":
        _beat(store, f"st1-{lane}", night - 5, head=0)
    at_night = _by(evaluate_fleet(store, night, config))["st1-a", "lane_not_selling"]
    assert not at_night.active and at_night.details["suppressed"] == "store closed"


def test_terminals_never_enrolled_take_their_store_from_their_id(store: BackofficeStore) -> None:
    """Unenrolled ``STORE-LANE`` terminals (plain bearer tokens) are judged with their
    store's calendar and their sibling lanes, as the alerts group them — not alone."""
    config = SilenceConfig(calendars=CALENDAR)
    busy = _every(300.0, NOW - 14 * 86400, NOW)
    for lane in ("a", "b", "c"):
        times = [t for t in busy if t < NOW - 7200] if lane == "a" else busy
        _ingest(store, f"st1-{lane}", _events(times))
        _beat(store, f"st1-{lane}", NOW - 20, head=2 * len(times))
    update_learned_state(store, NOW, config)
    silent = _by(evaluate_fleet(store, NOW, config))["st1-a", "lane_not_selling"]
    assert silent.active and silent.store == "st1", silent.summary
    # Lanes b and c sold every 5 minutes meanwhile: about 2 × 25 sale runs.
    assert silent.details["siblings_runs_seen"] == pytest.approx(50, abs=2)
    night = NOW + 10 * 3600  # st1's calendar (found by the id's store) says closed
    for lane in "abc":
        _beat(store, f"st1-{lane}", night - 5, head=0)
    at_night = _by(evaluate_fleet(store, night, config))["st1-a", "lane_not_selling"]
    assert not at_night.active and at_night.details["suppressed"] == "store closed"


def _head(store: BackofficeStore, terminal: str) -> str:
    head = store.head(terminal)[1]
    assert head is not None
    return head


def test_a_closed_day_in_the_calendar_suppresses_the_lane_test(store: BackofficeStore) -> None:
    closed = parse_calendars(
        {
            "stores": {
                "st1": {"timezone": "UTC", "hours": "mon-sun 08:00-20:00", "closed": ["2026-11-26"]}
            }
        }
    )
    config = SilenceConfig(calendars=closed)
    registry = TerminalRegistry(store)
    busy = _every(300.0, NOW - 7 * 86400, NOW - 86400)
    for lane in ("a", "b"):
        registry.add(f"st1-{lane}", "st1", lane)
        _ingest(store, f"st1-{lane}", _events(busy))
        _beat(store, f"st1-{lane}", NOW - 20, head=2 * len(busy))
    update_learned_state(store, NOW, config)
    signal = _by(evaluate_fleet(store, NOW, config))["st1-a", "lane_not_selling"]
    assert not signal.active and signal.details["suppressed"] == "store closed"
    # The same day without the closure: a whole open morning without a sale is flagged,
    # as a store-level condition (every lane is quiet), not as lane a.
    update_learned_state(store, NOW, SilenceConfig(calendars=CALENDAR))
    signal = _by(evaluate_fleet(store, NOW, SilenceConfig(calendars=CALENDAR)))[
        "st1-a", "lane_not_selling"
    ]
    assert not signal.active and signal.details["store_quiet"] is True


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"budget_per_lane_year": 0}, "budget_per_lane_year must be a positive number"),
        ({"heartbeat_grace": -1.0}, "heartbeat_grace must be a positive number"),
        ({"half_life_days": float("nan")}, "half_life_days must be a positive number"),
        ({"max_backlog": 0}, "max_backlog must be at least 1"),
    ],
)
def test_bad_settings_are_refused_by_name(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(SilenceConfigError, match=message):
        SilenceConfig(**kwargs)  # type: ignore[arg-type]


def test_two_replicas_learning_at_once_count_every_sale_once(
    databases: Any, store: BackofficeStore
) -> None:
    """Two store objects on one database (two replicas) learn concurrently: each lane's new
    events are folded in once (the lane's lock, re-read scanned_seq inside it)."""
    import threading

    config = SilenceConfig(calendars=CALENDAR, half_life_days=1e9)
    times = _every(300.0, NOW - 2 * 86400, NOW)
    for lane in range(12):
        _ingest(store, f"t{lane}", _events(times))
    target = store.display if store.path is None else store.path
    with BackofficeStore(target) as other:
        done: list[int] = []
        threads = [
            threading.Thread(target=lambda s=s: done.append(update_learned_state(s, NOW, config)))
            for s in (store, other)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    assert sum(done) == 12
    runs = store.db.execute("SELECT terminal, counts FROM silence_lanes").fetchall()
    from posedge.backoffice.silence.model import unpack

    assert len(runs) == 12
    assert all(sum(unpack(counts)) == pytest.approx(len(times)) for _, counts in runs)


def test_an_agent_without_backlog_fields_is_judged_by_its_head(store: BackofficeStore) -> None:
    """An older agent reports its journal head but no unsynced count or age: a head the back
    office does not hold, for longer than the age limit, is sales not arriving."""
    config = SilenceConfig(max_unsynced_age_s=600.0)
    doc = {"terminal": "old", "sent_at": "x", "journal_head": {"seq": 5, "hash": "ab" * 32}}
    store.record_heartbeat("old", doc, 900, now=NOW - 700)  # a 15-minute interval: alive
    signals = _by(evaluate_fleet(store, NOW, config))
    assert not signals["old", "terminal_not_alive"].active
    old = signals["old", "sales_not_arriving"]
    assert old.active and "5 events reported but not received for 700 s" in old.summary
    store.record_heartbeat("old", doc, 900, now=NOW - 100)
    assert not _by(evaluate_fleet(store, NOW, config))["old", "sales_not_arriving"].active
