"""``posedge journal …``: technician notes, verification, export, statistics.

Read-only commands (verify, export, stats) open the journal read-only, so
they work while the daemon holds it open for writing.
"""

from __future__ import annotations

import json
import sys

import click

from ..journal import Anchor, Journal, verify_journal
from .context import CliContext, pass_cli
from .output import human_age, human_bytes, table

EXIT_CHECK_FAILED = 3


def open_writer(cli: CliContext) -> Journal:
    """Open the journal for writing with the configured busy timeout (config first)."""
    config = cli.config
    return Journal.open(cli.state_dir, busy_timeout_s=config.journal.busy_timeout_s)


def open_reader(cli: CliContext) -> Journal:
    """Open the journal read-only, after the configuration: a missing or broken ``--config``
    is an error here too (exit 2), not silently ignored because reading needs no setting."""
    cli.loaded_config  # noqa: B018 - loads and validates; raises ConfigError (exit 2)
    return Journal.open(cli.state_dir, readonly=True)


@click.group()
def journal() -> None:
    """Inspect and annotate the tamper-evident transaction journal."""


@journal.command()
@click.argument("text")
@pass_cli
def note(cli: CliContext, text: str) -> None:
    """Append a technician.note event, e.g. "replaced print head".

    The note is refused if it contains card data (a full card number).
    """
    if not text.strip():
        raise click.BadParameter("the note is empty; say what was done", param_hint="TEXT")
    if len(text) > 2000:
        raise click.BadParameter(
            f"the note has {len(text)} characters; keep it under 2000", param_hint="TEXT"
        )
    with open_writer(cli) as jr:
        event = jr.append("technician.note", {"text": text})
    cli.emit(
        {"seq": event.seq, "hash": event.hash, "ts": event.ts, "type": event.type},
        f"noted as event {event.seq} ({event.ts})",
    )


@journal.command()
@click.option(
    "--expect-head",
    metavar="SEQ:HASH",
    default=None,
    help="An anchor the back office holds; a journal whose head is behind it lost its tail.",
)
@pass_cli
def verify(cli: CliContext, expect_head: str | None) -> None:
    """Walk the whole chain and checkpoints.

    Exit 0 with the event count and head, or exit 3 naming the first bad seq
    and what is wrong (missing, modified, reordered, bad checkpoint, behind anchor).
    """
    anchor = None
    if expect_head is not None:
        try:
            anchor = Anchor.parse(expect_head)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--expect-head") from None
    with open_reader(cli) as jr:
        result = verify_journal(jr, anchor)
    doc = result.as_dict()
    if result.ok:
        human = (
            f"journal OK: {result.events} events verified, head seq {result.head_seq} "
            f"hash {result.head_hash}"
        )
        for note_text in result.notes:
            human += f"\nnote: {note_text}"
        cli.emit(doc, human)
        return
    assert result.problem is not None
    cli.emit(
        doc,
        f"journal verification FAILED at seq {result.problem.seq} "
        f"({result.problem.kind}): {result.problem.detail}",
    )
    sys.exit(EXIT_CHECK_FAILED)


@journal.command()
@click.option(
    "--since", type=click.IntRange(min=0), default=0, help="Export events after this seq."
)
@click.option("--until", type=click.IntRange(min=0), default=None, help="Export up to this seq.")
@pass_cli
def export(cli: CliContext, since: int, until: int | None) -> None:
    """Write events as JSON Lines on stdout, one event per line, in seq order."""
    if until is not None and until < since:
        raise click.BadParameter(f"--until {until} is before --since {since}", param_hint="--until")
    out = sys.stdout
    with open_reader(cli) as jr:
        for event in jr.iter_events(since=since, until=until):
            out.write(json.dumps(event.as_dict(), sort_keys=True, ensure_ascii=False))
            out.write("\n")


@journal.command()
@pass_cli
def stats(cli: CliContext) -> None:
    """Events, head, unsynced backlog and its age, file size, schema version."""
    with open_reader(cli) as jr:
        doc = jr.stats()
    rows = [
        ("events", str(doc["events"])),
        ("head seq", str(doc["head_seq"])),
        ("head hash", doc["head_hash"]),
        ("acknowledged through", str(doc["acked_seq"])),
        ("unsynced", str(doc["unsynced"])),
        ("oldest unsynced", human_age(doc["oldest_unsynced_age_s"])),
        ("file size", human_bytes(doc["file_bytes"])),
        ("schema version", str(doc["schema_version"])),
        ("checkpoint seq", str(doc["checkpoint_seq"] or "-")),
        ("path", doc["path"]),
    ]
    cli.emit(doc, table(["journal", ""], rows))


@journal.command()
@click.option(
    "--older-than",
    default=None,
    help='Remove synced events older than this (e.g. "30d"); default: journal.retention.',
)
@pass_cli
def prune(cli: CliContext, older_than: str | None) -> None:
    """Replace the acknowledged prefix older than the retention by a signed checkpoint."""
    from ..config import parse_duration

    config = cli.config
    try:
        age_s = parse_duration(older_than) if older_than else config.journal.retention_s
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--older-than") from None
    with open_writer(cli) as jr:
        cp = jr.prune(age_s)
    if cp is None:
        cli.emit({"pruned": False}, "nothing to prune (no acknowledged events old enough)")
    else:
        cli.emit(
            {"pruned": True, "checkpoint": {"seq": cp.seq, "hash": cp.hash, "ts": cp.ts}},
            f"pruned through seq {cp.seq}; checkpoint written",
        )
