"""/metrics of a real agent over real HTTP, read back by prometheus_client's parser."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from .conftest import RunningAgent, parse, value

TEXT_FORMAT = "text/plain; version=0.0.4; charset=utf-8"
LABEL_VALUE = re.compile(r"^([a-z][a-z0-9_.-]{0,63}|[A-Z]{3})$")
SALE_ID = re.compile(r"s-[0-9a-f]+-[0-9a-f]{8}")

GAUGES = {
    "posedge_build_info",
    "posedge_start_time_seconds",
    "posedge_uptime_seconds",
    "posedge_journal_head_seq",
    "posedge_journal_acked_seq",
    "posedge_journal_unsynced_events",
    "posedge_journal_oldest_unsynced_age_seconds",
    "posedge_journal_size_bytes",
    "posedge_sync_configured",
    "posedge_sync_consecutive_failures",
    "posedge_sync_heartbeat_failing",
    "posedge_sales_accepting",
    "posedge_sales_in_doubt",
    "posedge_forwards_pending",
    "posedge_offline_exposure_minor_units",
    "posedge_offline_exposure_sales",
    "posedge_device_state",
    "posedge_agent_alerts_active",
}
COUNTERS = {
    "posedge_sales_created",
    "posedge_sales",
    "posedge_forwards",
    "posedge_receipts",
    "posedge_sync_heartbeats_sent",
    "posedge_metrics_collect_errors",
}


def test_scrape_is_prometheus_text_with_posedge_names_types_and_units(
    running: RunningAgent,
) -> None:
    response = running.get()
    assert response.status_code == 200
    assert response.headers["content-type"] == TEXT_FORMAT
    families, samples = parse(response.text)
    types = {name: family.type for name, family in families.items()}
    for name in GAUGES:
        assert types.get(name) == "gauge", name
    for name in COUNTERS:
        assert types.get(name) == "counter", name
    assert types["process_cpu_seconds"] == "counter"  # the process collector is registered
    for name, family in families.items():
        assert name.startswith(("posedge_", "process_")), name
        if family.type == "counter":
            assert all(s.name.endswith("_total") for s in family.samples), name
        assert not re.search(r"_(ms|milliseconds|kib|mib|minutes|hours)(_|$)", name), name
    build = families["posedge_build_info"].samples
    assert len(build) == 1 and build[0].value == 1
    assert set(build[0].labels) == {"version", "python"}
    assert re.match(r"^\d+\.\d+", build[0].labels["python"])
    assert value(samples, "posedge_device_state", device="printer", state="ok") == 1
    assert value(samples, "posedge_device_state", device="printer", state="fault") == 0
    for device in ("printer", "reader"):
        states = {
            dict(labels)["state"]: v
            for (name, labels), v in samples.items()
            if name == "posedge_device_state" and dict(labels)["device"] == device
        }
        assert {"ok", "fault", "unavailable", "not_configured"} <= set(states)
        assert sorted(states.values()).count(1.0) == 1, states  # exactly one current state
    assert value(samples, "posedge_sync_configured") == 1
    assert value(samples, "posedge_sales_accepting") == 1
    assert value(samples, "posedge_offline_exposure_minor_units", currency="EUR") == 0
    assert value(samples, "posedge_journal_size_bytes") > 0
    assert value(samples, "posedge_journal_head_seq") >= 1
    uptime = value(samples, "posedge_uptime_seconds")
    assert 0 <= uptime < 120


def test_openmetrics_is_served_to_a_scraper_that_asks_for_it(running: RunningAgent) -> None:
    response = running.get(accept="application/openmetrics-text; version=1.0.0")
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.rstrip().endswith("# EOF")
    assert "posedge_build_info" in response.text


def test_a_sale_raises_the_counters_and_the_head(running: RunningAgent) -> None:
    before = running.wait_for(lambda s: value(s, "posedge_journal_unsynced_events") == 0)
    sale = running.sale(amount=1500)
    assert sale.state.value == "approved"
    after = running.wait_for(
        lambda s: (
            value(s, "posedge_receipts_total", outcome="printed")
            > value(before, "posedge_receipts_total", outcome="printed")
        )
    )
    assert (
        value(after, "posedge_sales_created_total")
        == value(before, "posedge_sales_created_total") + 1
    )
    assert (
        value(after, "posedge_sales_total", outcome="approved")
        == value(before, "posedge_sales_total", outcome="approved") + 1
    )
    assert value(after, "posedge_sales_total", outcome="declined") == value(
        before, "posedge_sales_total", outcome="declined"
    )
    assert value(after, "posedge_journal_head_seq") > value(before, "posedge_journal_head_seq")
    assert value(after, "posedge_journal_size_bytes") >= value(before, "posedge_journal_size_bytes")
    # Sync catches up: the acknowledged seq follows the head.
    synced = running.wait_for(
        lambda s: value(s, "posedge_journal_acked_seq") >= value(after, "posedge_journal_head_seq")
    )
    assert value(synced, "posedge_sync_last_success_timestamp_seconds") > 0
    assert value(synced, "posedge_sync_consecutive_failures") == 0


def test_an_outage_raises_backlog_failures_and_offline_exposure(running: RunningAgent) -> None:
    world = running.agent.world
    assert world is not None and world.backoffice is not None
    running.wait_for(lambda s: value(s, "posedge_journal_unsynced_events") == 0)
    world.backoffice.stop()
    sale = running.sale(amount=2500)
    assert sale.state.value == "approved_offline"
    samples = running.wait_for(lambda s: value(s, "posedge_sync_consecutive_failures") >= 1)
    assert value(samples, "posedge_journal_unsynced_events") > 0
    assert value(samples, "posedge_journal_oldest_unsynced_age_seconds") > 0
    assert value(samples, "posedge_journal_acked_seq") < value(samples, "posedge_journal_head_seq")
    assert value(samples, "posedge_sales_total", outcome="approved_offline") == 1
    assert value(samples, "posedge_offline_exposure_minor_units", currency="EUR") == 2500
    assert value(samples, "posedge_offline_exposure_sales", currency="EUR") == 1
    assert value(samples, "posedge_forwards_pending") == 1
    # The back office returns: the forward completes, exposure and backlog fall back.
    world.backoffice.start()
    done = running.wait_for(
        lambda s: (
            value(s, "posedge_forwards_total", outcome="approved") == 1
            and value(s, "posedge_journal_unsynced_events") == 0
        )
    )
    assert value(done, "posedge_offline_exposure_minor_units", currency="EUR") == 0
    assert value(done, "posedge_forwards_pending") == 0
    assert value(done, "posedge_sync_consecutive_failures") == 0


def series(text: str) -> set[tuple[str, tuple[tuple[str, str], ...]]]:
    return {key for key in parse(text)[1] if key[0].startswith("posedge_")}


def test_label_sets_stay_bounded_after_many_sales(running: RunningAgent) -> None:
    running.sale(amount=99)
    running.wait_for(lambda s: ("posedge_sync_last_success_timestamp_seconds", ()) in s)
    # ... and the first health run (its journal verify is a child process) has reported.
    running.wait_for(lambda s: any(name == "posedge_health_check_status" for name, _ in s))
    first = running.get().text
    for number in range(12):
        running.sale(amount=100 + number)
    running.wait_for(lambda s: value(s, "posedge_sales_total", outcome="approved") == 13)
    text = running.get().text
    assert series(text) == series(first)  # the same series, only values moved
    assert not SALE_ID.search(text)
    assert "ref-" not in text  # the till's references are never labels
    for _name, labels in series(text):
        for label, label_value in labels:
            if label not in ("version", "python"):
                assert LABEL_VALUE.match(label_value), (label, label_value)


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_promtool_finds_nothing_to_lint(running: RunningAgent, tmp_path: Path) -> None:
    running.sale()
    text = running.get().text
    result = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "", result.stdout


def test_healthy_endpoint_and_unknown_paths(running: RunningAgent) -> None:
    assert running.get("/-/healthy").text == "ok\n"
    assert running.get("/v1/sales").status_code == 404
    assert running.get("/metrics/../v1").status_code == 404
