"""Helpers for end-to-end sync tests: a real back office, a real journal, the checks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from posedge.agent.config import SyncConfig
from posedge.agent.journal import Journal
from posedge.agent.sync import BackofficeClient, SyncService
from posedge.simulator.backoffice import BackofficeServer

TERMINAL = "lane-e2e"
POSEDGE = Path(sys.executable).parent / "posedge"
FAST: dict[str, Any] = {
    "backoff_initial": "20ms",
    "backoff_cap": "200ms",
    "retry_after_cap": "2s",
    "permanent_retry": "200ms",
    "read_timeout": "5s",
}


def fill(journal: Journal, count: int, start: int = 0) -> None:
    for number in range(start, start + count):
        journal.append(
            "sale.created", {"amount": 100 + number, "currency": "EUR"}, txn=f"s{number // 4}"
        )


def make_service(
    journal: Journal, backoffice: BackofficeServer, state_dir: Path, **settings: Any
) -> SyncService:
    token = settings.pop("token", None)
    config = SyncConfig.model_validate(FAST | settings)
    client = BackofficeClient(backoffice.url, TERMINAL, config, token=token)
    return SyncService(journal, client, config, state_dir=state_dir)


def assert_exactly_once(
    backoffice: BackofficeServer, journal: Journal, terminal: str = TERMINAL
) -> None:
    """The back office holds seqs 1..N exactly once, chained, and the cursor is N."""
    assert backoffice.store is not None
    held = backoffice.store.events(terminal)
    head = journal.head()
    assert [e["seq"] for e in held] == list(range(1, head.seq + 1))
    ours = {e.seq: e.hash for e in journal.iter_events()}
    previous = "0" * 64
    for event in held:
        assert event["prev_hash"] == previous, f"chain break at seq {event['seq']}"
        assert event["hash"] == ours[event["seq"]]
        previous = event["hash"]
    assert journal.acked_seq() == head.seq


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, **(env or {})}
    full.pop("POSEDGE_CONFIG", None)
    return subprocess.run(
        [str(POSEDGE), *args], capture_output=True, text=True, env=full, timeout=120
    )


def write_config(path: Path, url: str, **sync: Any) -> Path:
    lines = ["[terminal]", f'id = "{TERMINAL}"', "[sync]", f'url = "{url}"']
    for key, value in (FAST | sync).items():
        lines.append(f"{key} = {value!r}".replace("'", '"'))
    path.write_text("\n".join(lines) + "\n")
    return path
