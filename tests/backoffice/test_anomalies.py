"""Anomaly flags from the stored event stream, on both backends ([sqlite]/[postgresql]).

Normal traffic comes from the fleet simulator's terminal; the anomalous events continue
the same hash chain (tests/backoffice/alerting/support.py) and reach the store through its
real ingest; the scan runs over the real database.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from posedge.backoffice.anomalies import (
    CALENDAR_NOTE,
    AnomalyConfig,
    AnomalyConfigError,
    AnomalyFlag,
    recent_flags,
    scan,
)
from posedge.backoffice.store import BackofficeStore
from posedge.protocol.models import EventBatch

from .alerting.support import T0, TOKEN_A, TOKEN_B, Till, normal_day, sim_store, sim_terminal

TERMINAL = "S1-lane01"


@pytest.fixture
def store(db_target: Path | str) -> Iterator[BackofficeStore]:
    with BackofficeStore(db_target, clock=lambda: T0 + 86_400) as s:
        yield s


def kinds(flags: list[AnomalyFlag]) -> list[str]:
    return sorted(f.kind for f in flags)


def normal_till() -> tuple[Till, float]:
    sim = sim_terminal(TERMINAL)
    end = normal_day(sim)
    return Till(sim), end


def test_normal_traffic_raises_no_flag_and_a_rescan_finds_nothing_new(
    store: BackofficeStore,
) -> None:
    till, end = normal_till()
    till.upload(store)
    first = scan(store)
    assert first.flags == []
    assert first.events == till.seq > 60 * 6
    assert CALENDAR_NOTE in first.notes
    assert scan(store).events == 0
    # A sale voided long after approval is normal business, too.
    till.sale(end + 60, void_after=3600)
    till.upload(store)
    again = scan(store)
    assert again.flags == [] and again.events == 7


def test_void_soon_after_approval_names_the_approval_and_the_void(
    store: BackofficeStore,
) -> None:
    till, end = normal_till()
    till.upload(store)
    scan(store)  # the approval is processed in this scan ...
    txn, seqs = till.sale(end + 60)
    till.upload(store)
    scan(store)
    void_seq = till.add(
        end + 60 + 5 + 20,
        "sale.voided",
        txn,
        {"reason": "voided by the till", "receipt": "pending", "after_s": 20.0},
    )
    till.upload(store)
    (flag,) = scan(store).flags  # ... the void in the next: the approval is context
    assert flag.kind == "void_after_approval" and flag.terminal == TERMINAL
    assert flag.store == "S1" and flag.txns == (txn,)
    assert flag.seqs == (seqs["approval"], void_seq)
    assert "20.0s after its approval" in flag.detail
    assert flag.at.startswith("2026-11-")
    assert recent_flags(store, 0.0, kind="void_after_approval") == [flag]


def test_card_read_then_cancelled_is_flagged(store: BackofficeStore) -> None:
    till, end = normal_till()
    txn, seqs = till.sale(end + 60, outcome="cancelled_after_read")
    till.upload(store)
    (flag,) = scan(store).flags
    assert flag.kind == "card_read_no_sale"
    assert flag.seqs == (seqs["card.read"], seqs["sale.cancelled"]) and flag.txns == (txn,)
    assert "411111" not in flag.detail and TOKEN_A not in flag.detail


def test_repeated_declines_of_one_card_by_pan_token(store: BackofficeStore) -> None:
    till, end = normal_till()
    declined = [till.sale(end + 60 + 90 * i, outcome="declined", token=TOKEN_B) for i in range(2)]
    till.sale(end + 300, outcome="declined", token=TOKEN_A)  # another card: not counted
    till.upload(store)
    assert scan(store).flags == []
    declined.append(till.sale(end + 400, outcome="declined", token=TOKEN_B))
    declined.append(till.sale(end + 500, outcome="declined", token=TOKEN_B))  # the 4th: same burst
    till.upload(store)
    (flag,) = scan(store).flags
    assert flag.kind == "repeated_declines"
    assert flag.seqs == tuple(s["decline"] for _, s in declined[:3])
    assert flag.txns == tuple(t for t, _ in declined[:3])
    assert TOKEN_B[:12] in flag.detail and TOKEN_B not in flag.detail
    # Declines spread wider than the window: no flag.
    till.sale(end + 5000, outcome="declined", token=TOKEN_A)
    till.sale(end + 6000, outcome="declined", token=TOKEN_A)
    till.upload(store)
    assert scan(store).flags == []


def test_a_burst_of_offline_approvals(store: BackofficeStore) -> None:
    till, end = normal_till()
    sales = [till.sale(end + 60 + 120 * i, outcome="offline") for i in range(6)]
    till.upload(store)
    (flag,) = scan(store).flags
    assert flag.kind == "offline_burst"
    assert flag.seqs == tuple(s["approval"] for _, s in sales[:5])
    assert "5 offline approvals within 480s" in flag.detail


def test_fallback_entry_rate(store: BackofficeStore) -> None:
    till, end = normal_till()
    config = AnomalyConfig(entry_window=10, entry_threshold=3)
    till.sale(end + 60, entry="fallback")
    till.sale(end + 120)
    till.sale(end + 180, entry="manual")
    till.upload(store)
    assert scan(store, config=config).flags == []
    txn, seqs = till.sale(end + 240, entry="fallback")
    till.upload(store)
    (flag,) = scan(store, config=config).flags
    assert flag.kind == "fallback_rate" and flag.seqs == (seqs["card.read"],)
    assert flag.txns == (txn,) and "3 of the last 10 card reads" in flag.detail


def test_sales_outside_opening_hours_with_a_store_calendar(store: BackofficeStore) -> None:
    shop = sim_store("S1", "mon-sun 08:00-20:00")
    till, _ = normal_till()
    till.upload(store)
    scan(store)
    night = T0 + 86_400 - 3600 * 2  # 23:53 in Paris
    txn, seqs = till.sale(night)
    till.upload(store)
    result = scan(store, calendar=lambda store_id, when: shop.is_open(when))
    (flag,) = result.flags
    assert flag.kind == "outside_hours" and flag.seqs == (seqs["sale.created"],)
    assert flag.txns == (txn,) and CALENDAR_NOTE not in result.notes


def test_configuration_changes_are_flagged(store: BackofficeStore) -> None:
    till, end = normal_till()
    seq = till.add(
        end + 10,
        "config.changed",
        None,
        {"changed": ["sales.offline.max_amount"], "restart_required": False},
    )
    till.upload(store)
    (flag,) = scan(store).flags
    assert flag.kind == "config_changed" and flag.seqs == (seq,)
    assert "sales.offline.max_amount" in flag.detail


def test_clock_backwards_and_ahead(store: BackofficeStore) -> None:
    till, end = normal_till()
    till.upload(store)
    scan(store)
    before = till.seq
    back = till.add(end - 600, "agent.started", None, {"version": "0.1.0"})
    ahead = till.add(T0 + 86_400 + 3600, "agent.stopped", None, {})
    till.add(T0 + 86_400 + 3601, "agent.started", None, {})  # still ahead: not again
    till.upload(store)
    flags = {f.kind: f for f in scan(store).flags}
    assert set(flags) == {"clock_backwards", "clock_ahead"}
    assert flags["clock_backwards"].seqs == (before, back)
    assert flags["clock_ahead"].seqs == (ahead,)


def test_an_event_time_that_is_not_a_time_raises_no_clock_flag(store: BackofficeStore) -> None:
    till, end = normal_till()
    till.upload(store)
    scan(store)
    till.add(end + 10, "agent.started", None, {})
    till.pending[-1]["ts"] = "yesterday"  # any text passes the protocol; hash it as sent
    till.pending[-1]["hash"] = till.prev = "c" * 64
    seq = till.add(end + 20, "config.changed", None, {"changed": ["a"]})
    till.upload(store)
    assert kinds(scan(store).flags) == ["config_changed"]
    assert recent_flags(store, 0.0)[0].seqs == (seq,)


def test_refused_uploads_surface_as_chain_integrity(store: BackofficeStore) -> None:
    till, _ = normal_till()
    till.upload(store)
    scan(store)
    # An edited record: a batch whose prev_hash is not the held head's hash.
    bad = {"seq": till.seq + 1, "ts": "2026-11-30T12:00:00.000000+00:00", "type": "sale.created",
           "txn": "s-x", "payload": {}, "prev_hash": "e" * 64, "hash": "f" * 64}  # fmt: skip
    doc = {"terminal": TERMINAL, "first_seq": bad["seq"], "last_seq": bad["seq"], "events": [bad]}
    refused = store.ingest(EventBatch.model_validate(doc))
    assert refused.status == "chain-mismatch"
    (flag,) = scan(store).flags
    assert flag.kind == "chain_integrity" and "chain mismatches" in flag.detail
    assert scan(store).flags == []  # counted once


def test_heartbeats_reveal_a_rewritten_journal_and_clock_skew(store: BackofficeStore) -> None:
    till, _ = normal_till()
    till.upload(store)
    scan(store)
    received = T0 + 86_400
    beat = {"terminal": TERMINAL, "sent_at": "2026-11-30T01:00:00+00:00",
            "journal_head": {"seq": till.seq - 5, "hash": None}, "unsynced_count": 0}  # fmt: skip
    store.record_heartbeat(TERMINAL, beat, 60, now=received)
    flags = {f.kind: f for f in scan(store).flags}
    assert set(flags) == {"journal_rewritten", "clock_skew"}
    assert flags["journal_rewritten"].seqs == (till.seq - 5,)
    assert f"below seq {till.seq}" in flags["journal_rewritten"].detail
    assert "s off the back office" in flags["clock_skew"].detail
    store.record_heartbeat(TERMINAL, beat, 60, now=received + 60)  # the same situation
    assert scan(store).flags == []


def test_bad_settings_name_the_setting() -> None:
    with pytest.raises(AnomalyConfigError, match=r"anomalies\.void_window_s is -1"):
        AnomalyConfig(void_window_s=-1)
    with pytest.raises(AnomalyConfigError, match=r"entry_threshold \(12\) is more than"):
        AnomalyConfig(entry_window=10, entry_threshold=12)
    with pytest.raises(AnomalyConfigError, match=r"decline_threshold is 0"):
        AnomalyConfig(decline_threshold=0)


def test_a_chunk_judged_before_another_scan_moved_the_cursor_is_judged_again(
    store: BackofficeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite judges a chunk before its write transaction; should another scan (the CLI's
    ``alerts evaluate`` beside ``serve``) store that chunk meanwhile, the stale judgement
    is dropped: every flag is stored once and the events are counted once."""
    import posedge.backoffice.anomalies as anomalies

    if store.db.dialect != "sqlite":
        pytest.skip(
            "PostgreSQL judges a chunk under the terminal's scan lock: no other scan can "
            "move the cursor meanwhile (a nested scan here would wait on it)"
        )
    till, end = normal_till()
    till.upload(store)
    scan(store)
    txn, _ = till.sale(end + 60, outcome="cancelled_after_read")
    till.upload(store)
    real = anomalies._read_chunk
    raced: list[AnomalyFlag] = []
    racing = False

    def read_then_race(*args: object, **kwargs: object) -> object:
        nonlocal racing
        chunk = real(*args, **kwargs)  # type: ignore[arg-type]
        if not racing:  # the first read: another scan stores this chunk before we write it
            racing = True
            raced.extend(scan(store).flags)
        return chunk

    monkeypatch.setattr(anomalies, "_read_chunk", read_then_race)
    ours = scan(store)
    (flag,) = raced
    assert flag.kind == "card_read_no_sale" and flag.txns == (txn,)
    assert ours.flags == [] and ours.events == 0  # judged again: nothing new any more
    assert recent_flags(store, 0.0, kind="card_read_no_sale") == [flag]
