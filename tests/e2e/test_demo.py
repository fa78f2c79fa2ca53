"""``posedge demo`` as a user runs it: a subprocess, its JSON summary, and what it leaves.

DESIGN §5: a known test PAN goes through the whole system (reader → agent →
back office → receipts → sync), then every file under the state directory, the
logs and the journal export are scanned for its digits and for track data.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from posedge.backoffice.store import BackofficeStore

from .daemon_support import POSEDGE

TEST_PANS = ("4111111111111111", "5555555555554444")
SUMMARY_KEYS = {
    "sales", "approved_online", "approved_offline", "declined", "reversed", "voided", "alerts",
    "receipts_printed", "receipts_failed", "events_journaled", "events_synced",
    "journal_verified",
}  # fmt: skip
DEMO_TIMEOUT_S = 120


def forbidden_literals() -> list[bytes]:
    """Each test PAN as digits, grouped by spaces or dashes, and the simulated cards'
    track fragments (sentinels, expiry field, cardholder name)."""
    found: list[bytes] = []
    for pan in TEST_PANS:
        groups = [pan[i : i + 4] for i in range(0, 16, 4)]
        found += [pan.encode(), " ".join(groups).encode(), "-".join(groups).encode()]
        found += [f"%B{pan[:4]}".encode(), f";{pan[:4]}".encode(), f"{pan}=".encode()]
    return [*found, b"=2912", b"^TEST/CARD", b"TEST/CARD^"]


# Track 1 (%B<PAN>^NAME^YYMM...) and track 2 (;<PAN>=YYMM...) of any card.
TRACK_PATTERNS = [re.compile(rb"%B\d{12,19}\^"), re.compile(rb";\d{12,19}=\d{4}")]


def findings(data: bytes) -> list[str]:
    hits = [lit.decode() for lit in forbidden_literals() if lit in data]
    hits += [p.pattern.decode() for p in TRACK_PATTERNS if p.search(data)]
    return hits


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSEDGE_")}
    return {**env, **extra}


def posedge(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [str(POSEDGE), *args],
        capture_output=True,
        timeout=DEMO_TIMEOUT_S,
        env=env or clean_env(),
    )


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any, bytes]:
    """One demo with --state-dir: (state dir, parsed summary, stdout + stderr)."""
    state = tmp_path_factory.mktemp("demo") / "state"  # does not exist yet: the demo creates it
    result = posedge("--json", "--state-dir", str(state), "demo", "--sales", "8")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output.decode(errors="replace")
    return state, json.loads(result.stdout), output


def test_summary_has_exactly_the_documented_keys_and_sensible_values(
    demo_run: tuple[Path, Any, bytes],
) -> None:
    _, summary, _ = demo_run
    assert set(summary) == SUMMARY_KEYS
    assert summary["sales"] == 8
    assert summary["journal_verified"] is True
    assert summary["events_synced"] == summary["events_journaled"] > 0
    assert summary["approved_offline"] >= 2  # two outage sales, forwarded later
    assert summary["reversed"] >= 1  # the in-doubt authorization (and the void)
    assert summary["voided"] == 1
    assert summary["alerts"] >= 1  # void right after approval
    assert summary["receipts_failed"] >= 1  # the paper-out
    assert summary["receipts_printed"] >= summary["sales"]  # every sale printed in the end
    assert summary["approved_online"] >= summary["voided"]
    counted = ("approved_online", "approved_offline", "declined")
    assert sum(summary[k] for k in counted) <= summary["sales"]


def test_summary_agrees_with_the_journal_and_the_back_office(
    demo_run: tuple[Path, Any, bytes],
) -> None:
    state, summary, _ = demo_run
    export = posedge("--state-dir", str(state), "journal", "export")
    assert export.returncode == 0, export.stderr
    events = [json.loads(line) for line in export.stdout.splitlines()]
    types = Counter(e["type"] for e in events)
    assert types["sale.created"] == summary["sales"]
    assert types["alert.raised"] == summary["alerts"]
    assert types["reversal.acked"] == summary["reversed"]
    assert types["receipt.failed"] == summary["receipts_failed"]
    assert types["forward.approved"] == summary["approved_offline"]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    # The summary was taken before the agent journaled its own stop.
    assert events[summary["events_journaled"] :] == [events[-1]]
    assert events[-1]["type"] == "agent.stopped"

    verify = posedge("--state-dir", str(state), "journal", "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr

    with BackofficeStore(state / "backoffice.sqlite3", readonly=True) as store:
        (terminal,) = store.terminal_states()
        assert terminal.held_seq == summary["events_synced"]
        assert all(c == 0 for c in terminal.counters.values()), terminal.counters
        held = store.events(terminal.terminal)
        assert [e["seq"] for e in held] == list(range(1, summary["events_synced"] + 1))
        auths = store.authorizations(terminal.terminal)
    forwarded = [a for a in auths if a["forwarded"]]
    assert len(forwarded) == summary["approved_offline"]
    assert all(a["outcome"] == "approved" for a in forwarded)
    # Everything the demo wrote is under the state directory.
    assert (state / "journal.db").is_file() and (state / "backoffice.sqlite3").is_file()


def test_no_card_data_in_any_file_log_or_export(demo_run: tuple[Path, Any, bytes]) -> None:
    state, _, output = demo_run
    files = [p for p in state.rglob("*") if p.is_file()]
    assert len(files) >= 4
    leaks = {str(p.relative_to(state)): findings(p.read_bytes()) for p in files}
    assert {name: hits for name, hits in leaks.items() if hits} == {}
    assert findings(output) == []

    export = posedge("--state-dir", str(state), "journal", "export")
    assert export.returncode == 0 and export.stdout.count(b"\n") > 10
    assert findings(export.stdout + export.stderr) == []
    report = posedge("backoffice", "report", "--db", str(state / "backoffice.sqlite3"), "--json")
    assert report.returncode == 0, report.stderr
    assert findings(report.stdout + report.stderr) == []
    # The masked forms are there: the scan looks at the right data.
    assert b"411111******1111" in export.stdout and b"555555******4444" in export.stdout


def test_the_scan_would_see_a_leak() -> None:
    track1 = b"%B4111111111111111^TEST/CARD^29121010000000000000?"
    track2 = b";5555555555554444=29121010000000?"
    assert len(findings(track1)) >= 3 and len(findings(track2)) >= 3
    assert findings(b"card 4111 1111 1111 1111") and findings(b"5555-5555-5555-4444")
    assert findings(b"pan 411111******1111 visa") == []


def test_without_state_dir_nothing_is_left_behind(tmp_path: Path) -> None:
    """The temporary state dir (back office database included) goes away; the
    configured default state directory is never touched."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    default_state = tmp_path / "default-state"
    env = clean_env(TMPDIR=str(tmp), POSEDGE_STATE_DIR=str(default_state))
    result = posedge("demo", "--sales", "6", env=env)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output.decode(errors="replace")
    assert b"summary" in result.stdout and b"journal verified" in result.stdout
    assert list(tmp.iterdir()) == []
    assert not default_state.exists()
    assert findings(output) == []
