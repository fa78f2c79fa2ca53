"""The command-line frame: help everywhere, version, JSON output, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
import pytest

from posedge.agent.cli import cli
from posedge.agent.cli.lazy import LazyGroup
from posedge.agent.journal import SCHEMA_VERSION, Journal

from .journal.helpers import fill, posedge


def all_commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    if isinstance(group, LazyGroup):
        group.load_all()  # lazy commands, and backoffice, simulate, demo (entry points)
    found = [prefix]
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found += all_commands(command, (*prefix, name))
        else:
            found.append((*prefix, name))
    return found


@pytest.mark.parametrize("path", all_commands(cli), ids=lambda p: " ".join(p) or "posedge")
def test_every_command_has_help(path: tuple[str, ...]) -> None:
    done = posedge(*path, "--help")
    assert done.returncode == 0, done.stderr
    assert "Usage: posedge" in done.stdout
    command: click.Command = cli
    for name in path:
        assert isinstance(command, click.Group)
        command = command.commands[name]
    assert command.help, f"{' '.join(path)} has no help text"


def test_version() -> None:
    done = posedge("--version")
    assert done.returncode == 0 and done.stdout.startswith("posedge, version ")


def test_unknown_command_is_a_usage_error() -> None:
    done = posedge("jornal")
    assert done.returncode == 2 and "No such command" in done.stderr


def test_note_export_stats_as_json(tmp_path: Path) -> None:
    state = ["--state-dir", str(tmp_path), "--json"]
    done = posedge(*state, "journal", "note", "replaced print head")
    assert done.returncode == 0, done.stderr
    noted = json.loads(done.stdout)
    assert noted["seq"] == 1 and noted["type"] == "technician.note"
    posedge(*state, "journal", "note", "cleaned reader head", check=True)
    lines = posedge("--state-dir", str(tmp_path), "journal", "export", "--since", "1").stdout
    exported = [json.loads(line) for line in lines.splitlines()]
    assert [e["payload"]["text"] for e in exported] == ["cleaned reader head"]
    assert exported[0]["prev_hash"] == noted["hash"]
    stats = json.loads(posedge(*state, "journal", "stats").stdout)
    assert (
        stats["events"] == 2
        and stats["unsynced"] == 2
        and stats["schema_version"] == SCHEMA_VERSION
    )


def test_note_with_a_card_number_is_refused(tmp_path: Path) -> None:
    done = posedge("--state-dir", str(tmp_path), "journal", "note", "card 4111-1111-1111-1111")
    assert done.returncode == 2
    assert "full card number" in done.stderr and "4111-1111" not in done.stderr


def test_read_only_commands_work_while_a_writer_holds_the_journal(tmp_path: Path) -> None:
    with Journal.open(tmp_path) as jr:
        fill(jr, 30)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys\n"
            "from pathlib import Path\n"
            "from posedge.agent.journal import Journal\n"
            "jr = Journal.open(Path(sys.argv[1]))\n"
            "jr.append('agent.started', {})\n"
            "jr._conn.execute('BEGIN IMMEDIATE')\n"
            "jr._conn.execute(\"INSERT INTO meta VALUES ('in_flight', 'x')\")\n"
            "print('holding', flush=True)\n"
            "sys.stdin.read()\n",
            str(tmp_path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "holding\n"
        state = ["--state-dir", str(tmp_path), "--json"]
        verified = posedge(*state, "journal", "verify")
        assert verified.returncode == 0, verified.stderr
        assert json.loads(verified.stdout)["events"] == 31
        assert json.loads(posedge(*state, "journal", "stats").stdout)["head_seq"] == 31
        exported = posedge("--state-dir", str(tmp_path), "journal", "export").stdout
        assert len(exported.splitlines()) == 31
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=10)
        if holder.stdout is not None:
            holder.stdout.close()


def test_reading_a_missing_journal_says_where(tmp_path: Path) -> None:
    done = posedge("--state-dir", str(tmp_path / "nowhere"), "journal", "stats")
    assert done.returncode == 2  # a usage error (DESIGN §3), not an internal one
    assert "no journal at" in done.stderr and "--state-dir" in done.stderr


def test_demo_needs_room_for_its_scripted_incidents(tmp_path: Path) -> None:
    done = posedge("--json", "--state-dir", str(tmp_path), "demo", "--sales", "4")
    assert done.returncode == 2 and "--sales" in done.stderr
    assert not (tmp_path / "journal.db").exists()
