"""Each check against the real thing: simulated printer and reader over sim://, real
journals, vaults, state directories and the real sync client."""

from __future__ import annotations

import json
import os
import sqlite3
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import httpx
import pytest

from posedge.agent.config import load_config
from posedge.agent.devices import open_printer, open_reader
from posedge.agent.errors import ConfigError
from posedge.agent.health import Status
from posedge.agent.health.checks import REGISTRY, alert_rule, threshold
from posedge.agent.health.storagechecks import VERIFY_META_KEY
from posedge.agent.health.swipes import SwipeOutcomes
from posedge.agent.journal import Journal
from posedge.agent.sales.vault import CardVault
from posedge.agent.sync.client import BackofficeClient
from posedge.agent.sync.service import STATE_KEY, SyncState
from posedge.drivers.transport.sim import register_sim_device, unregister_sim_device
from posedge.simulator.printer import VirtualPrinter
from posedge.simulator.reader import VirtualReader

from .conftest import config, context

STABLE_NAMES = [
    "printer.online", "printer.cover", "printer.paper", "printer.cutter",
    "reader.present", "reader.errors", "journal.integrity", "journal.size", "disk.free",
    "sync.oldest_unsynced", "sync.failures", "sync.last_success", "sync.clock_skew",
    "vault.entries", "vault.forward_deadline", "statedir.modes", "config.sync",
]  # fmt: skip


def test_registry_names_are_stable_and_described() -> None:
    assert REGISTRY.names() == STABLE_NAMES
    assert all(spec.description for spec in REGISTRY.specs())
    with pytest.raises(KeyError, match=r"known: printer\.online"):
        REGISTRY.get("printer.papr")


def by_name(results: list) -> dict:  # type: ignore[type-arg]
    return {r.name: r for r in results}


# ------------------------------------------------------------------ printer
PRINTER = ["printer.online", "printer.cover", "printer.paper", "printer.cutter"]


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        (None, {"printer.online": "ok", "printer.cover": "ok", "printer.paper": "ok",
                "printer.cutter": "ok"}),
        ("paper_near_end", {"printer.paper": "warn", "printer.cover": "ok"}),
        ("paper_out", {"printer.paper": "fail", "printer.online": "ok"}),
        ("cover_open", {"printer.cover": "fail", "printer.paper": "ok"}),
        ("unrecoverable", {"printer.cutter": "fail", "printer.paper": "ok"}),
    ],
)  # fmt: skip
def test_printer_checks_follow_the_real_time_status(
    tmp_path: Path,
    sim_printer: tuple[str, VirtualPrinter],
    fault: str | None,
    expected: dict[str, str],
) -> None:
    url, device = sim_printer
    cfg = config(printer={"url": url, "poll_timeout": "200ms"})
    if fault:
        device.apply_fault(fault)
    printer = open_printer(cfg, tmp_path)
    try:
        results = by_name(REGISTRY.run(context(cfg, tmp_path, printer=printer), PRINTER))
    finally:
        printer.close()
    assert {n: results[n].status.value for n in expected} == expected
    for result in results.values():
        assert (result.fix is None) == (result.status in (Status.OK, Status.SKIP))


def test_a_silent_printer_fails_online_and_the_rest_skip(
    tmp_path: Path, sim_printer: tuple[str, VirtualPrinter]
) -> None:
    url, device = sim_printer
    cfg = config(printer={"url": url, "poll_timeout": "100ms"})
    device.apply_fault("no_response")
    printer = open_printer(cfg, tmp_path)
    try:
        ctx = context(cfg, tmp_path, printer=printer)
        results = by_name(REGISTRY.run(ctx, PRINTER))
    finally:
        printer.close()
    assert results["printer.online"].status is Status.FAIL
    assert "no answer" in results["printer.online"].summary
    assert {results[n].status for n in PRINTER[1:]} == {Status.SKIP}


def test_printer_not_configured_is_skip(tmp_path: Path) -> None:
    results = REGISTRY.run(context(config(), tmp_path), PRINTER)
    assert {r.status for r in results} == {Status.SKIP}


# ------------------------------------------------------------------ reader
def test_reader_present_follows_unplug_and_replug(
    tmp_path: Path, sim_reader: tuple[str, VirtualReader]
) -> None:
    url, device = sim_reader
    cfg = config(reader={"url": url, "protocol": "framed", "response_timeout": "300ms"})
    reader = open_reader(cfg, tmp_path, reconnect=True)
    try:
        [ok] = REGISTRY.run(context(cfg, tmp_path, reader=reader), ["reader.present"])
        assert ok.status is Status.OK, ok.summary
        device.apply_fault("unplug")
        [gone] = REGISTRY.run(context(cfg, tmp_path, reader=reader), ["reader.present"])
        assert gone.status is Status.FAIL and "cable" in (gone.fix or "")
        device.apply_fault("replug")
        [back] = REGISTRY.run(context(cfg, tmp_path, reader=reader), ["reader.present"])
        assert back.status is Status.OK, back.summary
    finally:
        reader.close()


def test_no_reader_configured_fails_because_no_sale_can_be_taken(tmp_path: Path) -> None:
    [result] = REGISTRY.run(context(config(), tmp_path), ["reader.present"])
    assert result.status is Status.FAIL and "reader.url" in (result.fix or "")


@pytest.mark.parametrize(
    ("outcomes", "status"),
    [
        ([True] * 3 + [False] * 3, "ok"),  # too few swipes to judge (min 8 below)
        ([True] * 9 + [False] * 1, "ok"),
        ([True] * 7 + [False] * 3, "warn"),
        ([True] * 4 + [False] * 6, "fail"),
        ([False] * 30 + [True] * 10, "ok"),  # only the last 10 count
    ],
)
def test_reader_error_rate_over_recent_swipes(
    tmp_path: Path, outcomes: list[bool], status: str
) -> None:
    cfg = config(health={"reader_error_window": 10, "reader_error_min_swipes": 8,
                         "reader_error_rate_warn": 0.3, "reader_error_rate_fail": 0.6})  # fmt: skip
    swipes = SwipeOutcomes()
    for ok in outcomes:
        swipes.record(ok)
    ctx = context(cfg, tmp_path, extra={"swipes": swipes})
    [result] = REGISTRY.run(ctx, ["reader.errors"])
    assert result.status.value == status, result.summary


def test_reader_errors_skip_without_swipe_history(tmp_path: Path) -> None:
    [result] = REGISTRY.run(context(config(), tmp_path), ["reader.errors"])
    assert result.status is Status.SKIP


# ------------------------------------------------------------------ journal, disk
def test_journal_integrity_verifies_records_and_catches_tampering(tmp_path: Path) -> None:
    cfg = config(health={"verify_interval": "1m"})
    journal = Journal.open(tmp_path)
    try:
        for n in range(5):
            journal.append("test.event", {"n": n})
        ctx = context(cfg, tmp_path, journal=journal)
        [ok] = REGISTRY.run(ctx, ["journal.integrity"])
        assert ok.status is Status.OK and "events verified" in ok.summary
        recorded = json.loads(journal.get_meta(VERIFY_META_KEY) or "{}")
        assert recorded["ok"] is True and recorded["events"] >= 5
        conn = sqlite3.connect(tmp_path / "journal.db")
        conn.execute("DROP TRIGGER events_no_update")
        conn.execute("""UPDATE events SET payload = '{"n":99}' WHERE seq = 3""")
        conn.commit()
        conn.close()
        # a recent verify is reported as is; once it is older than verify_interval, re-run
        [cached] = REGISTRY.run(ctx, ["journal.integrity"])
        assert cached.status is Status.OK
        ctx.now += 61
        [bad] = REGISTRY.run(ctx, ["journal.integrity"])
        assert bad.status is Status.FAIL and "does not verify" in bad.summary
        assert "support-bundle" in (bad.fix or "")
    finally:
        journal.close()


def test_journal_size_and_disk_free_against_thresholds(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path)
    journal.append("test.event", {"n": 1})
    journal.close()
    size = os.stat(tmp_path / "journal.db").st_size
    small = config(health={"journal_size_warn": f"{size // 2}B", "journal_size_fail": "1GiB"})
    [warn] = REGISTRY.run(context(small, tmp_path), ["journal.size"])
    assert warn.status is Status.WARN and warn.value is not None and warn.value >= size
    [fine] = REGISTRY.run(context(config(), tmp_path), ["journal.size"])
    assert fine.status is Status.OK
    huge = config(health={"disk_free_warn": "1000000GiB", "disk_free_fail": "900000GiB"})
    [full] = REGISTRY.run(context(huge, tmp_path), ["disk.free"])
    assert full.status is Status.FAIL and "free disk space" in (full.fix or "")
    [roomy] = REGISTRY.run(context(config(health={"disk_free_warn": "1KiB",
                                                  "disk_free_fail": "0B"}), tmp_path),
                           ["disk.free"])  # fmt: skip
    assert roomy.status is Status.OK and roomy.value and roomy.value > 1024


# ------------------------------------------------------------------ vault
def test_vault_entries_and_forward_deadline(tmp_path: Path) -> None:
    vault = CardVault(tmp_path)
    now = datetime.now(UTC)
    card = {"pan": "4111111111111111", "expiry": "2812", "service_code": "101",
            "entry_mode": "swipe"}  # fmt: skip
    cfg = config(
        health={"vault_entries_warn": 2, "vault_entries_fail": 3,
                "forward_deadline_warn": "12h", "forward_deadline_fail": "1h"}
    )  # fmt: skip
    names = ["vault.entries", "vault.forward_deadline"]
    results = by_name(REGISTRY.run(context(cfg, tmp_path, extra={"vault": vault}), names))
    assert [results[n].status for n in names] == [Status.OK, Status.OK]
    vault.put("s-1", dict(card), now + timedelta(hours=48))
    vault.put("s-2", dict(card), now + timedelta(hours=6))
    results = by_name(REGISTRY.run(context(cfg, tmp_path, extra={"vault": vault}), names))
    assert results["vault.entries"].status is Status.WARN
    assert results["vault.forward_deadline"].status is Status.WARN
    assert 5 * 3600 < (results["vault.forward_deadline"].value or 0) <= 6 * 3600
    vault.put("s-3", dict(card), now - timedelta(minutes=5))
    results = by_name(REGISTRY.run(context(cfg, tmp_path, extra={"vault": vault}), names))
    assert results["vault.entries"].status is Status.FAIL
    deadline = results["vault.forward_deadline"]
    assert deadline.status is Status.FAIL and "missed" in deadline.summary
    assert "4111" not in json.dumps([r.as_dict() for r in results.values()])


# ------------------------------------------------------------------ state dir modes
def test_state_dir_modes(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    key = state / "vault.key"
    key.write_bytes(os.urandom(32))
    key.chmod(0o600)
    [ok] = REGISTRY.run(context(config(), state), ["statedir.modes"])
    assert ok.status is Status.OK
    key.chmod(0o644)
    [loose] = REGISTRY.run(context(config(), state), ["statedir.modes"])
    assert loose.status is Status.FAIL and "vault.key 0644" in loose.summary
    key.chmod(0o600)
    state.chmod(0o777)
    try:
        [open_dir] = REGISTRY.run(context(config(), state), ["statedir.modes"])
    finally:
        state.chmod(0o700)
    assert open_dir.status is Status.FAIL and "0700" in (open_dir.fix or "")


# ------------------------------------------------------------------ sync and config
SYNC = {"url": "http://127.0.0.1:9"}


def test_sync_checks_read_the_persisted_sync_state(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path)
    try:
        journal.append("test.event", {"n": 1})
        long_ago = (datetime.now(UTC) - timedelta(hours=3)).isoformat()
        state = SyncState(last_success=long_ago, consecutive_failures=5, last_error="boom")
        journal.set_meta(STATE_KEY, state.dump())
        cfg = config(sync=SYNC, health={"unsynced_age_warn": "1s", "unsynced_age_fail": "1h"})
        ctx = context(cfg, tmp_path, journal=journal)
        ctx.now += 5
        names = ["sync.oldest_unsynced", "sync.failures", "sync.last_success"]
        results = by_name(REGISTRY.run(ctx, names))
    finally:
        journal.close()
    assert results["sync.oldest_unsynced"].status is Status.WARN
    assert results["sync.failures"].status is Status.WARN
    assert "boom" in results["sync.failures"].summary
    last = results["sync.last_success"]
    assert last.status is Status.WARN and last.value is not None and last.value >= 3 * 3600


def test_sync_checks_skip_when_sync_is_off(tmp_path: Path) -> None:
    results = REGISTRY.run(context(config(), tmp_path), ["sync.failures", "sync.clock_skew"])
    assert {r.status for r in results} == {Status.SKIP}


@pytest.mark.parametrize(("offset_s", "status"), [(2, "ok"), (-120, "warn"), (900, "fail")])
def test_clock_skew_from_the_back_offices_date_header(
    tmp_path: Path, offset_s: int, status: str
) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        server_time = datetime.now(UTC) + timedelta(seconds=offset_s)
        date = format_datetime(server_time, usegmt=True)
        return httpx.Response(200, json={"acked_seq": 0}, headers={"Date": date})

    cfg = config(sync=SYNC)
    client = BackofficeClient(SYNC["url"], "t-1", cfg.sync, transport=httpx.MockTransport(answer))
    try:
        client.events_head()

        class Live:  # the daemon's SyncService offers .client and .state
            def __init__(self) -> None:
                self.client = client
                self.state = SyncState()

        [result] = REGISTRY.run(context(cfg, tmp_path, sync=Live()), ["sync.clock_skew"])
    finally:
        client.close()
    assert result.status.value == status, result.summary
    assert result.value == pytest.approx(abs(offset_s), abs=1.5)


def test_config_check(tmp_path: Path) -> None:
    [unset] = REGISTRY.run(context(config(), tmp_path), ["config.sync"])
    assert unset.status is Status.WARN and "sync.url" in unset.summary
    missing = tmp_path / "no-token"
    cfg = config(sync={**SYNC, "token_file": str(missing)})
    [bad] = REGISTRY.run(context(cfg, tmp_path), ["config.sync"])
    assert bad.status is Status.FAIL and str(missing) in bad.summary
    missing.write_text("t" * 32)
    [good] = REGISTRY.run(context(cfg, tmp_path), ["config.sync"])
    assert good.status is Status.OK


# ------------------------------------------------------------------ [health] config
@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('disk_free_warn = "100MiB"', "health.disk_free_warn (100MiB) must be at least"),
        ("sync_failures_warn = 50", "health.sync_failures_warn (50) must be at most"),
        ("reader_error_rate_clear = 0.3", "reader_error_rate_clear must be at most"),
        ('alert_for = "soon"', "health.alert_for = 'soon'"),
        ("reader_error_rate_warn = 1.5", "health.reader_error_rate_warn = 1.5"),
        ("flap_window = 5", "health.flap_window = 5"),
        ("poll_intervall = '1s'", "unknown key health.poll_intervall"),
        ("flap_changes = 1", "health.flap_changes = 1 would call every change flapping"),
    ],
)
def test_bad_health_configuration_is_refused_precisely(
    tmp_path: Path, text: str, words: str
) -> None:
    path = tmp_path / "posedge.toml"
    path.write_text(f"[health]\n{text}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert words in str(caught.value)
    assert caught.value.exit_code == 2


def test_alert_rules_follow_the_configuration() -> None:
    health = config(health={"alert_for": "2m", "keep_firing_for": "5m", "clear_ratio": 0.5,
                            "disk_free_clear": "2GiB"}).health  # fmt: skip
    rule = alert_rule("printer.paper", health)
    assert (rule.for_s, rule.keep_firing_for_s, rule.threshold) == (120, 300, None)
    disk = threshold("disk.free", health)
    assert disk is not None and not disk.high_is_bad
    assert (disk.fire, disk.clear) == (1024**3, 2 * 1024**3)
    skew = threshold("sync.clock_skew", health)
    assert skew is not None and skew.high_is_bad and (skew.fire, skew.clear) == (30, 15)


def test_last_success_before_any_upload_counts_how_long_events_waited(tmp_path: Path) -> None:
    with Journal.open(tmp_path) as journal:
        names = ["sync.last_success"]
        fresh = context(config(sync=SYNC), tmp_path, journal=journal)
        [nothing_due] = REGISTRY.run(fresh, names)
        journal.append("test.event", {"n": 1})
        [just_started] = REGISTRY.run(context(config(sync=SYNC), tmp_path, journal=journal), names)
        strict = config(sync=SYNC, health={"last_success_warn": "1s"})
        late = context(strict, tmp_path, journal=journal)
        late.now += 5
        [waited] = REGISTRY.run(late, names)
    assert nothing_due.status is Status.OK and nothing_due.summary == "nothing was ever due to sync"
    assert just_started.status is Status.OK and "no upload acknowledged yet" in just_started.summary
    # 5 s later than the append, less the backlog age's rounding to the millisecond
    assert waited.status is Status.WARN and (waited.value or 0) >= 4.99


def test_a_magtek_reader_unplugged_while_idle_is_noticed_and_found_again(
    tmp_path: Path,
) -> None:
    device = VirtualReader("magtek")
    register_sim_device("health-magtek", device)
    cfg = config(reader={"url": "sim://health-magtek", "protocol": "magtek"})
    reader = open_reader(cfg, tmp_path, reconnect=True)
    try:
        [ok] = REGISTRY.run(context(cfg, tmp_path, reader=reader), ["reader.present"])
        device.apply_fault("unplug")
        [gone] = REGISTRY.run(context(cfg, tmp_path, reader=reader), ["reader.present"])
        device.apply_fault("replug")
        [back] = REGISTRY.run(context(cfg, tmp_path, reader=reader), ["reader.present"])
    finally:
        reader.close()
        unregister_sim_device("health-magtek")
        device.close()
    assert [ok.status, gone.status, back.status] == [Status.OK, Status.FAIL, Status.OK]
    assert "disconnected" in gone.summary
