"""Structured logs: JSON lines, journald priorities, no card data."""

from __future__ import annotations

import io
import json
import logging

import pytest

from posedge.agent.logs import configure_logging


def test_lines_are_json_with_extra_fields_and_masked_pans(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    stream = io.StringIO()
    configure_logging("info", stream=stream)
    log = logging.getLogger("posedge.test")
    log.info("card 4111111111111111 read", extra={"device": "reader", "note": "5555555555554444"})
    log.debug("hidden")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    doc = json.loads(lines[0])
    assert doc["level"] == "info" and doc["logger"] == "posedge.test"
    assert doc["msg"] == "card 411111******1111 read"
    assert doc["device"] == "reader" and doc["note"] == "555555******4444"


def test_journald_gets_syslog_priorities(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOURNAL_STREAM", "8:1234")
    stream = io.StringIO()
    configure_logging("debug", stream=stream)
    log = logging.getLogger("posedge.test")
    log.error("printer offline")
    log.warning("paper near end")
    log.debug("poll")
    prefixes = [line[:3] for line in stream.getvalue().splitlines()]
    assert prefixes == ["<3>", "<4>", "<7>"]
