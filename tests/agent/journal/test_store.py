"""Journal store: durable appends, the chain, triggers, typed write failures."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import threading
import time
from pathlib import Path

import pytest

from posedge.agent.journal import (
    JOURNAL_FILE_NAME,
    SCHEMA_VERSION,
    Journal,
    JournalBusy,
    JournalCorrupt,
    JournalDiskFull,
    JournalError,
    JournalKeyError,
    JournalReadOnly,
    PayloadRejected,
    verify_journal,
)
from posedge.agent.journal.chain import GENESIS_HASH, KEY_FILE_NAME

from .helpers import fill, tmpfs


def test_append_builds_a_gap_free_hash_chain(tmp_path: Path) -> None:
    with Journal.open(tmp_path) as jr:
        first = jr.append("sale.created", {"amount": 1234, "currency": "EUR"}, txn="s1")
        second = jr.append("card.read", {"masked_pan": "411111******1111"}, txn="s1")
    assert (first.seq, second.seq) == (1, 2)
    assert first.prev_hash == GENESIS_HASH
    assert second.prev_hash == first.hash
    assert first.hash != second.hash and len(first.hash) == 64
    with Journal.open(tmp_path, readonly=True) as jr:
        events = list(jr.iter_events())
        assert [e.payload for e in events] == [
            {"amount": 1234, "currency": "EUR"},
            {"masked_pan": "411111******1111"},
        ]
        assert jr.transactions.get("s1") is not None
        assert jr.transactions.get("s1")["state"] == "card_read"  # type: ignore[index]
        assert jr.transactions.get("s1")["amount"] == 1234  # type: ignore[index]


def test_reopen_continues_the_chain_and_verifies(tmp_path: Path) -> None:
    with Journal.open(tmp_path) as jr:
        fill(jr, 10)
    with Journal.open(tmp_path) as jr:
        event = jr.append("technician.note", {"text": "replaced print head"})
        assert event.seq == 11
        result = verify_journal(jr)
    assert result.ok, result.problem
    assert (result.events, result.head_seq, result.head_hash) == (11, 11, event.hash)


def test_device_key_is_private_and_created_once(tmp_path: Path) -> None:
    with Journal.open(tmp_path) as jr:
        jr.append("agent.started", {})
        fingerprint = jr.key.fingerprint
    key_path = tmp_path / KEY_FILE_NAME
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    with Journal.open(tmp_path) as jr:
        assert jr.key.fingerprint == fingerprint


def test_missing_key_with_existing_events_is_an_error_not_a_new_chain(tmp_path: Path) -> None:
    with Journal.open(tmp_path) as jr:
        fill(jr, 3)
    (tmp_path / KEY_FILE_NAME).unlink()
    with pytest.raises(JournalKeyError, match="missing"):
        Journal.open(tmp_path)
    assert not (tmp_path / KEY_FILE_NAME).exists()


def test_a_different_key_is_refused(tmp_path: Path) -> None:
    with Journal.open(tmp_path) as jr:
        fill(jr, 3)
    (tmp_path / KEY_FILE_NAME).write_bytes(os.urandom(32))
    with pytest.raises(JournalKeyError, match="not the key"):
        Journal.open(tmp_path)


def test_triggers_reject_update_and_delete(tmp_path: Path) -> None:
    with Journal.open(tmp_path) as jr:
        fill(jr, 3)
    conn = sqlite3.connect(tmp_path / JOURNAL_FILE_NAME)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("UPDATE events SET payload = '{}' WHERE seq = 2")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("DELETE FROM events WHERE seq = 3")
    conn.close()
    with Journal.open(tmp_path) as jr:
        assert verify_journal(jr).ok


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"pan": "4111111111111111"}, "more than the first 6"),
        ({"track2": ";4111111111111111=29121010000000000000?"}, "track data"),
        ({"cvv": "123"}, "track data, CVV and PIN"),
        ({"pin_block": "0412AC89ABCDEF67"}, "CVV and PIN"),
        ({"note": "customer card 5555-5555-5555-4444 declined"}, "full card number"),
        ({"items": [{"memo": "4111 1111 1111 1111"}]}, r"\$\.items\[0\]\.memo"),
        ({"note": "x" * 500 + " 4111 1111 1111 1111 " + "y" * 500}, "full card number"),
    ],
)
def test_card_data_is_refused_and_nothing_is_stored(
    tmp_path: Path, payload: dict[str, object], message: str
) -> None:
    with Journal.open(tmp_path) as jr:
        jr.append("agent.started", {})
        with pytest.raises(PayloadRejected, match=message):
            jr.append("card.read", payload, txn="s1")
        assert jr.head().seq == 1
    raw = (tmp_path / JOURNAL_FILE_NAME).read_bytes()
    assert b"4111111111111111" not in raw and b"5555" not in raw


@pytest.mark.parametrize(
    ("type_", "payload", "message"),
    [
        ("Sale", {}, "event type"),
        ("sale.created", {"x": float("nan")}, "not a finite number"),
        ("sale.created", {"blob": b"abc"}, "raw bytes"),
        ("sale.created", {"big": "x" * 70_000}, "limit is 65536"),
    ],
)
def test_unstorable_payloads_are_refused(
    tmp_path: Path, type_: str, payload: dict[str, object], message: str
) -> None:
    with Journal.open(tmp_path) as jr:
        with pytest.raises(PayloadRejected, match=message):
            jr.append(type_, payload)
        assert jr.head().seq == 0


def test_type_and_transaction_id_are_checked_on_every_append(tmp_path: Path) -> None:
    """The checks remember what passed (the hot path); what fails must still fail."""
    with Journal.open(tmp_path) as jr:
        jr.append("sale.created", {}, txn="s-1")
        jr.append("card.read", {}, txn="s-1")
        bad: list[tuple[object, object, str]] = [
            ("sale.created", "s 1", "transaction id"),
            ("sale.created", "", "transaction id"),
            ("sale.created", 7, "transaction id"),
            ("Sale.Created", "s-1", "event type"),
            (["sale.created"], "s-1", "event type"),
            (None, None, "event type"),
        ]
        for type_, txn, message in bad:
            with pytest.raises(PayloadRejected, match=message):
                jr.append(type_, {}, txn=txn)  # type: ignore[arg-type]
        assert jr.append("auth.requested", {}, txn="s-1").seq == 3


def test_disk_full_via_page_limit_stores_nothing_and_recovers(tmp_path: Path) -> None:
    with Journal.open(tmp_path) as jr:
        fill(jr, 5)
        pages = jr._conn.execute("PRAGMA page_count").fetchone()[0]
        jr._conn.execute(f"PRAGMA max_page_count = {pages}")
        with pytest.raises(JournalDiskFull, match="disk full"):
            for number in range(10_000):
                jr.append("test.fill", {"pad": "x" * 2000, "n": number})
        head = jr.head()
        jr._conn.execute("PRAGMA max_page_count = 1073741823")
        after = jr.append("test.after", {})
        assert after.seq == head.seq + 1
        assert verify_journal(jr).ok


def test_real_disk_full_on_a_tiny_filesystem(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "small", "400k") as mount:
        with Journal.open(mount) as jr:
            appended = 0
            with pytest.raises(JournalDiskFull):
                for number in range(100_000):
                    jr.append("test.fill", {"pad": "y" * 3000, "n": number})
                    appended += 1
            assert jr.head().seq == appended
        with Journal.open(mount, readonly=True) as jr:
            result = verify_journal(jr)
            assert result.ok and result.head_seq == appended


def test_read_only_filesystem_is_a_typed_error(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "ro", "4m") as mount:
        with Journal.open(mount) as jr:
            fill(jr, 3)
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
        try:
            with pytest.raises(JournalReadOnly), Journal.open(mount) as jr:
                jr.append("test.after", {})
        finally:
            subprocess.run(["mount", "-o", "remount,rw", str(mount)], check=True)
        with Journal.open(mount) as jr:
            assert jr.head().seq == 3 and verify_journal(jr).ok


def test_second_writer_gets_journal_busy(tmp_path: Path) -> None:
    with Journal.open(tmp_path) as jr:
        fill(jr, 2)
    other = sqlite3.connect(tmp_path / JOURNAL_FILE_NAME, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with Journal.open(tmp_path, busy_timeout_s=0.1) as jr:
            with pytest.raises(JournalBusy, match="another writer"):
                jr.append("test.blocked", {})
            assert jr.head().seq == 2
    finally:
        other.execute("ROLLBACK")
        other.close()
    with Journal.open(tmp_path) as jr:
        assert jr.append("test.after", {}).seq == 3


def test_garbage_file_is_reported_not_rebuilt(tmp_path: Path) -> None:
    db = tmp_path / JOURNAL_FILE_NAME
    db.write_bytes(b"this is not a database" * 100)
    before = db.read_bytes()
    with pytest.raises(JournalCorrupt, match="damaged or not a posedge journal"):
        Journal.open(tmp_path)
    assert db.read_bytes() == before


def test_corrupted_pages_fail_the_integrity_check_and_stay_untouched(tmp_path: Path) -> None:
    with Journal.open(tmp_path) as jr:
        fill(jr, 400)
    db = tmp_path / JOURNAL_FILE_NAME
    data = bytearray(db.read_bytes())
    page = 4096
    assert len(data) > 6 * page
    for number in range(2, len(data) // page):  # every page but the first: bad b-tree type
        data[(number - 1) * page] = 0x07
    db.write_bytes(bytes(data))
    with pytest.raises(JournalCorrupt):
        Journal.open(tmp_path)
    assert db.read_bytes() == bytes(data)


def test_foreign_sqlite_database_is_refused(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / JOURNAL_FILE_NAME)
    conn.execute("CREATE TABLE other (x)")
    conn.close()
    with pytest.raises(JournalCorrupt, match="not a posedge journal"):
        Journal.open(tmp_path)


def test_newer_schema_is_refused_without_change(tmp_path: Path) -> None:
    with Journal.open(tmp_path) as jr:
        fill(jr, 2)
    conn = sqlite3.connect(tmp_path / JOURNAL_FILE_NAME)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(JournalError, match="newer than this posedge"):
        Journal.open(tmp_path)


def test_tampered_head_is_caught_at_open(tmp_path: Path) -> None:
    with Journal.open(tmp_path) as jr:
        fill(jr, 4)
    conn = sqlite3.connect(tmp_path / JOURNAL_FILE_NAME)
    conn.execute("DROP TRIGGER events_no_update")
    conn.execute("""UPDATE events SET payload = '{"n":99}' WHERE seq = 4""")
    conn.commit()
    conn.close()
    with pytest.raises(JournalCorrupt, match="newest event"):
        Journal.open(tmp_path)


def test_read_only_open_never_creates_or_writes(tmp_path: Path) -> None:
    with pytest.raises(JournalError, match="no journal"):
        Journal.open(tmp_path / "absent", readonly=True)
    assert not (tmp_path / "absent").exists()
    with Journal.open(tmp_path) as jr:
        fill(jr, 1)
    with Journal.open(tmp_path, readonly=True) as jr, pytest.raises(JournalReadOnly):
        jr.append("test.x", {})


def test_cursor_backlog_and_stats(tmp_path: Path) -> None:
    with Journal.open(tmp_path) as jr:
        fill(jr, 10)
        jr.set_acked(6)
        stats = jr.stats()
        assert stats["unsynced"] == 4 and stats["acked_seq"] == 6
        assert stats["schema_version"] == SCHEMA_VERSION and stats["events"] == 10
        with pytest.raises(JournalError, match="between 0"):
            jr.set_acked(11)
        jr.set_acked(3)  # a rewind requested by the back office
        assert jr.acked_seq() == 3


def test_prune_leaves_a_signed_checkpoint_that_verifies(tmp_path: Path) -> None:
    with Journal.open(tmp_path) as jr:
        fill(jr, 20)
        jr.set_acked(12)
        assert jr.prune(0.0) is not None
        cp = jr.latest_checkpoint()
        assert cp is not None and cp.seq == 12
        remaining = [e.seq for e in jr.iter_events()]
        assert remaining == list(range(13, 22))  # 21 is the checkpoint event itself
        assert jr.get(21).type == "checkpoint"  # type: ignore[union-attr]
        result = verify_journal(jr)
        assert result.ok, result.problem
        assert result.checkpoint_seq == 12 and result.head_seq == 21
        with pytest.raises(JournalError, match="latest checkpoint"):
            jr.set_acked(5)
        assert jr.prune(0.0) is None  # nothing acknowledged beyond the checkpoint
        jr.append("test.after", {})
    with Journal.open(tmp_path) as jr:
        assert verify_journal(jr).ok


def test_prune_keeps_unsynced_and_recent_events(tmp_path: Path) -> None:
    with Journal.open(tmp_path) as jr:
        fill(jr, 10)
        jr.set_acked(10)
        assert jr.prune(3600.0) is None  # all events are younger than an hour
        jr.set_acked(0)
        assert jr.prune(0.0) is None  # nothing acknowledged
        assert jr.head().seq == 10


def test_wait_for_append_wakes_on_an_append_and_times_out_without(tmp_path: Path) -> None:
    with Journal.open(tmp_path) as jr:
        jr.wait_for_append(0.01)  # nothing appended: returns after the timeout
        woke: list[float] = []
        waiter = threading.Thread(
            target=lambda: (jr.wait_for_append(30.0), woke.append(time.monotonic()))
        )
        waiter.start()
        deadline = time.monotonic() + 10
        while jr._append_waiters == 0 and time.monotonic() < deadline:
            waiter.join(0.001)  # until the waiter is counted (then it is in wait())
        appended_at = time.monotonic()
        jr.append("test.event", {"n": 1})
        waiter.join(10)
        assert woke and woke[0] - appended_at < 10  # woken by the append, not the 30 s timeout
