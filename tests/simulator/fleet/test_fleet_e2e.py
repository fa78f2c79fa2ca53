"""``posedge simulate fleet`` against a real back office over loopback.

The back office must hold exactly what the simulator says was acknowledged — every
terminal's seqs 1..acked, chained, the same events the offline generator builds —
and the latest heartbeat it sent; faults must show in what is (not) there.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from posedge.agent.cli import cli
from posedge.agent.errors import PeerUnreachable
from posedge.backoffice.registry import TerminalRegistry
from posedge.simulator.backoffice import BackofficeConfig, BackofficeServer
from posedge.simulator.fleet.faults import parse_fault
from posedge.simulator.fleet.history import simulate_terminal
from posedge.simulator.fleet.model import build_fleet
from posedge.simulator.fleet.runner import FleetRunner, RunOptions

POSEDGE = Path(sys.executable).parent / "posedge"
SEED = 4
START = datetime(2026, 2, 2, 8, tzinfo=UTC)  # Monday 08:00 UTC
START_S = START.timestamp()
HOURS = 8
FAULTS = [
    "silent:store001-lane02@+2h",
    "network-down:store002@+3h/2h",
    "backlog:store003-lane01@+5h",
    "dead:store003-lane02@+6h",
]
FLEET = build_fleet(12, 3, seed=SEED, hours="convenience")
ENROLLED = {"store001-lane01": "store001-lane01", "store002-lane02": "bo-till-7"}


def run_posedge(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(POSEDGE), *args], capture_output=True, text=True, timeout=120, check=False
    )


def token_of(terminal: str) -> str:
    return f"token-{terminal}-0123456789"


@pytest.fixture
def backoffice(tmp_path: Path) -> Iterator[BackofficeServer]:
    tokens = {t: token_of(t) for t in FLEET.terminals if t not in ENROLLED}
    config = BackofficeConfig(tokens=tokens, heartbeat_interval_s=600)
    server = BackofficeServer(tmp_path / "bo.sqlite3", config=config)
    with server:
        yield server


def test_replay_with_tokens_enrolment_signatures_and_faults(
    backoffice: BackofficeServer, tmp_path: Path
) -> None:
    store = backoffice.store
    assert store is not None
    registry = TerminalRegistry(store)
    codes = {}
    for fleet_id, bo_id in ENROLLED.items():
        shop, lane = fleet_id.split("-")
        _, codes[fleet_id] = registry.add(bo_id, shop, lane)
    tokens_file = tmp_path / "tokens.toml"
    tokens_file.write_text(
        "".join(f'"{t}" = "{token_of(t)}"\n' for t in FLEET.terminals if t not in ENROLLED)
    )
    codes_file = tmp_path / "codes.json"
    codes_file.write_text(json.dumps({"codes": codes}))
    fault_args = [arg for fault in FAULTS for arg in ("--fault", fault)]
    began = time.monotonic()
    proc = run_posedge(
        "--json", "simulate", "fleet", "--terminals", "12", "--stores", "3",
        "--seed", str(SEED), "--hours", "convenience", "--backoffice", backoffice.url,
        "--speed", "max", "--start", START.isoformat(), "--duration", f"{HOURS}h",
        "--heartbeat-interval", "10m", "--upload-interval", "30m", "--batch-size", "100",
        "--tokens-file", str(tokens_file), "--enrol-codes", str(codes_file), "--details",
        *fault_args,
    )  # fmt: skip
    elapsed = time.monotonic() - began
    assert proc.returncode == 0, proc.stderr + proc.stdout
    report = json.loads(proc.stdout)
    assert report["ok"] and report["errors"]["total"] == 0, report["errors"]
    assert report["mode"] == "replay" and elapsed < 60
    assert [f["target"] for f in report["faults"]] == [
        "store001-lane02", "store002", "store003-lane01", "store003-lane02",
    ]  # fmt: skip

    by_terminal = {t["terminal"]: t for t in report["terminals"]}
    assert set(by_terminal) == {ENROLLED.get(t, t) for t in FLEET.terminals}
    held_total = 0
    faults = [parse_fault(f, FLEET, START_S) for f in FAULTS]
    for terminal, sim in by_terminal.items():
        held = store.events(terminal)
        # Exactly seqs 1..acked, chained from the genesis hash, nothing else.
        assert [e["seq"] for e in held] == list(range(1, sim["acked_seq"] + 1)), terminal
        previous = "0" * 64
        for event in held:
            assert event["prev_hash"] == previous, f"{terminal}: chain break at {event['seq']}"
            previous = event["hash"]
        integrity = store.held_integrity(terminal)
        assert integrity["missing_seqs"] == integrity["chain_breaks"] == 0
        assert sim["acked_seq"] == sim["head_seq"] - sim["unsynced"]
        assert sim["events_accepted"] == sim["acked_seq"] and sim["duplicates"] == 0
        held_total += len(held)
        # The back office's latest heartbeat is the last one the simulator had answered.
        state = next(s for s in store.terminal_states() if s.terminal == terminal)
        assert state.heartbeat is not None
        assert state.heartbeat["sent_at"] == sim["last_heartbeat"]["sent_at"]
        assert state.reported_head_seq == sim["last_heartbeat"]["journal_head_seq"]
        if terminal == sim["fleet_terminal"]:
            # The same events, byte for byte in hash, as the offline generator builds.
            offline = simulate_terminal(FLEET, terminal, START_S, START_S + HOURS * 3600, faults)
            ours = [row.hash for row in offline.backlog][: len(held)]
            assert [e["hash"] for e in held] == ours, terminal
    assert held_total == report["events"]["accepted"] == report["events"]["sent"]
    assert report["events"]["generated"] == held_total + report["events"]["unsynced"]

    # Enrolled terminals took the back office's ids and tokens; their batches were signed
    # (the back office refuses an enrolled terminal's unsigned batch).
    for fleet_id, bo_id in ENROLLED.items():
        assert by_terminal[bo_id]["fleet_terminal"] == fleet_id
        assert by_terminal[bo_id]["acked_seq"] > 50
        record = registry.get(bo_id)
        assert record is not None and record.enrolled
    assert report["settings"]["signed"] is True

    hour = 3600.0

    def at(event: dict[str, Any]) -> float:
        return datetime.fromisoformat(event["ts"]).timestamp()

    # silent from +2h: its sales stop there, its heartbeats go on to the end.
    silent = by_terminal["store001-lane02"]
    sales = [e for e in store.events("store001-lane02") if e["type"] == "sale.created"]
    assert sales and max(at(e) for e in sales) < START_S + 2 * hour
    assert silent["sales_suppressed"] > 10 and silent["unsynced"] == 0
    assert at({"ts": silent["last_heartbeat"]["sent_at"]}) > START_S + 7.5 * hour

    # network-down +3h for 2h: offline approvals, forwarded after; all delivered at the end.
    for lane in FLEET.store_by_id["store002"].lanes:
        sim = by_terminal[ENROLLED.get(lane, lane)]
        events = store.events(sim["terminal"])
        approved_offline = [e for e in events if e["type"] == "offline.approved"]
        assert approved_offline
        assert all(3 * hour <= at(e) - START_S < 5 * hour for e in approved_offline)
        forwarded = {e["txn"] for e in events if e["type"] == "forward.approved"}
        assert forwarded == {e["txn"] for e in approved_offline}
        assert sim["heartbeats_suppressed"] == 12 and sim["unsynced"] == 0

    # backlog from +5h: nothing after +5h reached the back office; heartbeats say so.
    backlog = by_terminal["store003-lane01"]
    held = store.events("store003-lane01")
    assert max(at(e) for e in held) < START_S + 5 * hour
    assert backlog["unsynced"] > 50 and backlog["uploads_blocked_by_fault"]
    assert backlog["last_heartbeat"]["unsynced_count"] > 40
    assert report["events"]["unsynced_blocked_by_faults"] >= backlog["unsynced"]

    # dead from +6h: no heartbeat after it, no sale after it.
    dead = by_terminal["store003-lane02"]
    assert at({"ts": dead["last_heartbeat"]["sent_at"]}) < START_S + 6 * hour
    assert max(at(e) for e in store.events("store003-lane02")) < START_S + 6 * hour + 60


def test_realtime_run_stops_on_request_and_drains(tmp_path: Path) -> None:
    fleet = build_fleet(6, 2, seed=8, hours="around-the-clock")
    with BackofficeServer(tmp_path / "bo.sqlite3", config=BackofficeConfig()) as server:
        options = RunOptions(
            backoffice=server.url,
            start=START_S,
            end=None,  # until stopped
            speed=1800.0,
            heartbeat_interval_s=60,
            upload_interval_s=30,
            connections=4,
        )
        runner = FleetRunner(fleet, options)

        async def scenario() -> dict[str, Any]:
            task = asyncio.ensure_future(runner.run())
            deadline = time.monotonic() + 20
            # Wait for real traffic: every terminal has had a heartbeat and an upload answered.
            while not (
                len(runner.lanes) == 6
                and all(lane.heartbeats_ok >= 2 and lane.batches >= 1 for lane in runner.lanes)
            ):
                assert time.monotonic() < deadline, runner.report(details=False)
                assert not task.done(), task.exception()
                await asyncio.sleep(0.02)
            runner.stop()
            return await task

        report = asyncio.run(scenario())
        assert server.store is not None
        assert report["ok"] and report["mode"] == "realtime"
        assert report["events"]["unsynced"] == 0  # the drain delivered everything journaled
        assert report["latency_ms"]["heartbeat"]["p50_ms"] is not None
        for lane in report["terminals"]:
            assert server.store.head(lane["terminal"])[0] == lane["head_seq"] > 0
        simulated = datetime.fromisoformat(report["window"]["end"]).timestamp() - START_S
        assert simulated > 120  # several heartbeat intervals of simulated time passed


def test_refused_token_and_unreachable_back_office_exit_2_and_4(
    backoffice: BackofficeServer, tmp_path: Path
) -> None:
    tokens_file = tmp_path / "tokens.toml"
    tokens_file.write_text("".join(f'"{t}" = "wrong-token-123"\n' for t in FLEET.terminals))
    common = ["simulate", "fleet", "--terminals", "12", "--stores", "3", "--seed", str(SEED),
              "--speed", "max", "--duration", "1h"]  # fmt: skip
    refused = run_posedge(
        *common, "--backoffice", backoffice.url, "--tokens-file", str(tokens_file)
    )
    assert refused.returncode == 2, refused.stderr
    assert (
        "refused terminal store001-lane01" in refused.stderr and "--tokens-file" in refused.stderr
    )
    assert store_is_empty(backoffice)

    # In process (a second subprocess costs seconds): the error main() maps to exit 4.
    unreachable = CliRunner().invoke(cli, [*common, "--backoffice", "http://127.0.0.1:9"])
    assert isinstance(unreachable.exception, PeerUnreachable), unreachable.output
    assert unreachable.exception.exit_code == 4
    assert "unreachable" in str(unreachable.exception)


def store_is_empty(backoffice: BackofficeServer) -> bool:
    assert backoffice.store is not None
    return not backoffice.store.terminal_states()


@pytest.mark.parametrize(
    ("extra", "option"),
    [
        (("--fault", "silent:store001@+1h"), "--fault"),
        (("--fault", "silent:store001-lane01@later"), "--fault"),
        (("--speed", "fast"), "--speed"),
        (("--start", "yesterday"), "--start"),
        (("--start", "2026-02-02T08:00:00"), "--start"),
        (("--heartbeat-interval", "often"), "--heartbeat-interval"),
        (("--batch-size", "0"), "--batch-size"),
        (("--stores", "13"), "--stores"),
        (("--tokens-file", "/nonexistent/tokens.toml"), "--tokens-file"),
        (("--backoffice", "ftp://example"), "--backoffice"),
        (("--store-prefix", "-bad"), "--store-prefix"),
        (("--timezone", "Mars/Olympus"), "--timezone"),
    ],
)
def test_usage_errors_name_the_option_and_exit_2(extra: tuple[str, str], option: str) -> None:
    args = ["simulate", "fleet", "--terminals", "12", "--stores", "3", "--speed", "max",
            "--duration", "1h", "--backoffice", "http://127.0.0.1:9", *extra]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    assert option in result.output, result.output


def test_list_prints_the_fleet_without_a_back_office() -> None:
    result = CliRunner().invoke(cli, ["--json", "simulate", "fleet", "--terminals", "5",
                                      "--stores", "2", "--list"])  # fmt: skip
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert [lane["terminal"] for lane in doc["lanes"]] == [
        "store001-lane01", "store001-lane02", "store001-lane03",
        "store002-lane01", "store002-lane02",
    ]  # fmt: skip
    east = CliRunner().invoke(cli, ["--json", "simulate", "fleet", "--terminals", "2",
                                    "--store-prefix", "east", "--list"])  # fmt: skip
    assert [s["id"] for s in json.loads(east.stdout)["stores"]] == ["east001"]


def replay(url: str, fleet_size: int = 4, hours: float = 6, **settings: Any) -> dict[str, Any]:
    fleet = build_fleet(fleet_size, 1, seed=SEED, hours="convenience")
    options = RunOptions(
        backoffice=url,
        start=START_S,
        end=START_S + hours * 3600,
        speed=None,
        heartbeat_interval_s=settings.pop("heartbeat_interval_s", 900),
        upload_interval_s=settings.pop("upload_interval_s", 3600),
        **settings,
    )
    return asyncio.run(FleetRunner(fleet, options).run())


def assert_held_exactly(server: BackofficeServer, report: dict[str, Any]) -> None:
    assert server.store is not None
    for lane in report["terminals"]:
        held = server.store.events(lane["terminal"])
        assert [e["seq"] for e in held] == list(range(1, lane["head_seq"] + 1))
        assert held[-1]["hash"] == lane["head_hash"]
        assert server.store.held_integrity(lane["terminal"])["chain_breaks"] == 0


def test_lost_replies_resets_and_busy_answers_are_retried_exactly_once(tmp_path: Path) -> None:
    server = BackofficeServer(tmp_path / "bo.sqlite3", config=BackofficeConfig())
    with server:
        for rule in (
            {"kind": "drop_reply", "endpoint": "events", "count": 4},  # committed, reply lost
            {"kind": "status_503", "endpoint": "events", "count": 3, "retry_after_s": 0},
            {"kind": "error", "endpoint": "events", "count": 2},
            {"kind": "reset", "endpoint": "events", "count": 2},
            {"kind": "error", "endpoint": "heartbeat", "count": 2},
        ):
            server.faults.add(rule)
        report = replay(server.url, backoff_cap_s=0.2)
        assert report["ok"], report["errors"]
        assert report["events"]["unsynced"] == 0
        assert report["events"]["duplicates"] > 0  # the lost replies' batches came back
        kinds = report["errors"]["by_kind"]
        assert kinds["events_503"] == 3 and kinds["events_500"] == 2
        assert kinds["events_transport_error"] + kinds.get("events_connect_error", 0) >= 4
        assert report["heartbeats"]["failed"] == 2
        assert_held_exactly(server, report)


def test_a_batch_too_large_is_halved_until_it_fits(tmp_path: Path) -> None:
    server = BackofficeServer(tmp_path / "bo.sqlite3", config=BackofficeConfig(max_batch_events=40))
    with server:
        report = replay(server.url, batch_size=500)
        assert report["ok"] and report["errors"]["by_kind"]["events_413"] >= 1
        assert_held_exactly(server, report)


def test_a_second_run_resumes_the_chains_and_a_rewritten_history_is_refused(
    tmp_path: Path,
) -> None:
    server = BackofficeServer(tmp_path / "bo.sqlite3", config=BackofficeConfig())
    with server:
        first = replay(server.url, hours=3)
        assert first["ok"]
        # The next window continues every chain from what the back office holds.
        fleet = build_fleet(4, 1, seed=SEED, hours="convenience")
        later = RunOptions(
            backoffice=server.url,
            start=START_S + 3 * 3600,
            end=START_S + 5 * 3600,
            speed=None,
            heartbeat_interval_s=0,
        )
        resumed = asyncio.run(FleetRunner(fleet, later).run())
        assert resumed["ok"]
        assert resumed["events"]["resumed_from_back_office"] == sum(
            t["head_seq"] for t in first["terminals"]
        )
        assert_held_exactly(server, resumed)
        # Without resuming, another seed's seq 1 is a different event: 409 conflict,
        # reported, nothing stored over the history.
        rewritten = asyncio.run(
            FleetRunner(
                build_fleet(4, 1, seed=SEED + 1, hours="convenience"),
                RunOptions(
                    backoffice=server.url,
                    start=START_S,
                    end=START_S + 3600,
                    speed=None,
                    heartbeat_interval_s=0,
                    resume=False,
                ),
            ).run()
        )
        assert not rewritten["ok"]
        assert len(rewritten["terminals_failed"]) == 4
        assert all("409 conflict" in f["reason"] for f in rewritten["terminals_failed"])
        assert_held_exactly(server, resumed)
