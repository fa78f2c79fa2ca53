"""The running daemon (a real ``posedge run`` subprocess): a printer fault becomes a firing
alert in /v1/status and the journal, then resolves; a terminal whose configured reader is
missing refuses sales with 503 not-accepting."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from posedge.agent.journal import Journal
from tests.e2e.daemon_support import Daemon, create_sale, wait_final, wait_until

FAST_HEALTH = """
[health]
poll_interval = "1s"
check_interval = "1s"
alert_for = "0s"
keep_firing_for = "1s"
flap_changes = 0
"""


def _health(http: httpx.Client) -> dict[str, Any]:
    doc: dict[str, Any] = http.get("/v1/status").json()["health"]
    return doc


def _alert(http: httpx.Client, name: str) -> dict[str, Any] | None:
    return next((a for a in _health(http)["alerts"] if a["name"] == name), None)


def _journaled(state: Path, type_: str, name: str) -> list[dict[str, Any]]:
    with Journal.open(state, readonly=True) as journal:
        return [
            dict(e.payload)
            for e in journal.iter_events()
            if e.type == type_ and e.payload.get("name") == name
        ]


def test_paper_end_fires_an_alert_that_resolves_when_paper_is_loaded(tmp_path: Path) -> None:
    state = tmp_path / "state"
    config = tmp_path / "posedge.toml"
    config.write_text(FAST_HEALTH)
    with Daemon(state, config=config) as daemon:
        daemon.wait_ready()
        with daemon.client() as http:
            assert wait_until(lambda: any(c["name"] == "printer.paper"
                                          for c in _health(http)["checks"]))  # fmt: skip
            assert _alert(http, "printer.paper") is None
            fault = http.post("/v1/simulator/printer", json={"fault": "paper_out"})
            assert fault.status_code == 200, fault.text

            assert wait_until(lambda: (_alert(http, "printer.paper") or {}).get("state")
                              == "firing")  # fmt: skip
            alert = _alert(http, "printer.paper")
            assert alert is not None
            assert alert["labels"]["severity"] == "critical"
            assert "out of paper" in alert["summary"]
            assert alert["since"].endswith("+00:00")
            check = next(c for c in _health(http)["checks"] if c["name"] == "printer.paper")
            assert (check["status"], check["fix"]) == ("fail", "load a new paper roll")
            status = http.get("/v1/status").json()
            assert "paper_end" in status["devices"]["printer"]["faults"]
            [fired] = _journaled(state, "alert.firing", "printer.paper")
            assert fired["state"] == "firing" and fired["value"] == 0.0

            assert http.post("/v1/simulator/printer", json={"fault": "clear"}).status_code == 200
            assert wait_until(lambda: _alert(http, "printer.paper") is None)
            [resolved] = _journaled(state, "alert.resolved", "printer.paper")
            assert resolved["previous"] == "firing" and resolved["duration_s"] >= 1.0


def test_a_missing_reader_refuses_sales_with_503_not_accepting(tmp_path: Path) -> None:
    state = tmp_path / "state"
    config = tmp_path / "posedge.toml"
    config.write_text(f'[reader]\nurl = "{tmp_path / "no-such-reader"}"\n' + FAST_HEALTH)
    with Daemon(state, config=config, simulate=False) as daemon:
        daemon.wait_ready()
        with daemon.client() as http:
            response = http.post(
                "/v1/sales",
                json={"amount": 100, "currency": "EUR", "reference": "r1"},
                headers={"Idempotency-Key": "k-1"},
            )
            assert response.status_code == 503, response.text
            assert response.json()["type"].endswith("/not-accepting")
            assert "card reader" in response.json()["detail"]
            assert int(response.headers["Retry-After"]) >= 1
            status = http.get("/v1/status").json()
            assert status["devices"]["reader"]["state"] == "unavailable"
            assert wait_until(lambda: (_alert(http, "reader.present") or {}).get("state")
                              == "firing")  # fmt: skip
        with Journal.open(state, readonly=True) as journal:
            assert not [e for e in journal.iter_events() if e.type == "sale.created"]


def test_unreadable_swipes_raise_the_read_error_rate(tmp_path: Path) -> None:
    state = tmp_path / "state"
    config = tmp_path / "posedge.toml"
    config.write_text(
        FAST_HEALTH + "reader_error_min_swipes = 2\nreader_error_rate_warn = 0.2\n"
        "reader_error_rate_fail = 0.5\n"
    )
    with Daemon(state, config=config) as daemon:
        daemon.wait_ready()
        with daemon.client() as http:
            fault = {"fault": "unreadable", "params": {"count": 3}}
            assert http.post("/v1/simulator/reader", json=fault).status_code == 200
            sale = create_sale(http)
            assert wait_final(http, sale["id"])["state"] == "approved"

            def reader_errors() -> dict[str, Any]:
                checks = _health(http)["checks"]
                return next((c for c in checks if c["name"] == "reader.errors"), {})

            assert wait_until(lambda: reader_errors().get("value") == 0.75)
            assert reader_errors()["status"] == "fail"
            assert "3 of the last 4 swipes" in reader_errors()["summary"]


def test_sales_stop_while_the_reader_is_unplugged_and_resume_when_it_is_back(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    config = tmp_path / "posedge.toml"
    config.write_text(FAST_HEALTH)
    with Daemon(state, config=config) as daemon:
        daemon.wait_ready()
        with daemon.client() as http:

            def reader_state() -> str:
                return str(http.get("/v1/status").json()["devices"]["reader"]["state"])

            assert http.post("/v1/simulator/reader", json={"fault": "unplug"}).status_code == 200
            assert wait_until(lambda: reader_state() == "unavailable")
            refused = http.post(
                "/v1/sales",
                json={"amount": 100, "currency": "EUR", "reference": "r1"},
                headers={"Idempotency-Key": "while-unplugged"},
            )
            assert refused.status_code == 503 and "Retry-After" in refused.headers
            assert http.post("/v1/simulator/reader", json={"fault": "replug"}).status_code == 200
            assert wait_until(lambda: reader_state() == "ok")
            sale = create_sale(http, 200)
            assert wait_final(http, sale["id"])["state"] == "approved"
