"""``posedge demo``: a scripted session in one command (the README's main job).

Until the sales flow exists this exercises what does: it journals the steps
of a few sales, shows that a full card number is refused, verifies the chain
and prints a summary. Everything it writes stays under the state directory
(a temporary one when --state-dir is not given).
"""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path
from typing import Any

import click

from ..journal import Journal, PayloadRejected, verify_journal
from .context import CliContext, pass_cli

TEST_PANS = ("4111111111111111", "5555555555554444")


@click.command()
@click.option("--sales", type=click.IntRange(1, 10_000), default=5, show_default=True)
@pass_cli
def demo(cli: CliContext, sales: int) -> None:
    """Run a scripted session and print a summary."""
    if cli.state_dir_option is not None:
        _run(cli, cli.state_dir_option, sales)
        return
    with tempfile.TemporaryDirectory(prefix="posedge-demo-") as tmp:
        _run(cli, Path(tmp), sales)


def _run(cli: CliContext, state_dir: Path, sales: int) -> None:
    refused = 0
    with Journal.open(state_dir) as jr:
        jr.append("agent.started", {"mode": "demo"})
        for number in range(sales):
            pan = TEST_PANS[number % len(TEST_PANS)]
            txn = f"demo-{uuid.uuid4().hex[:12]}"
            amount = 500 + 137 * number
            jr.append("sale.created", {"amount": amount, "currency": "EUR"}, txn=txn)
            try:  # the journal must refuse a full PAN: prove it on every sale
                jr.append("card.read", {"pan": pan}, txn=txn)
            except PayloadRejected:
                refused += 1
            masked = f"{pan[:6]}******{pan[-4:]}"
            jr.append("card.read", {"masked_pan": masked, "entry": "swipe"}, txn=txn)
            jr.append("auth.requested", {"amount": amount, "currency": "EUR"}, txn=txn)
            jr.append("auth.approved", {"auth_code": f"{number:06d}"}, txn=txn)
            jr.append("receipt.printed", {"copies": 1}, txn=txn)
        jr.append("agent.stopped", {"mode": "demo"})
        result = verify_journal(jr)
        stats = jr.stats()
    summary: dict[str, Any] = {
        "sales": sales,
        "approved_online": sales,
        "card_data_refused": refused,
        "events_journaled": stats["head_seq"],
        "journal_verified": result.ok,
        "head": {"seq": result.head_seq, "hash": result.head_hash},
        "state_dir": str(state_dir),
    }
    cli.emit(
        summary,
        "\n".join(
            [
                f"posedge demo — {sales} sales journaled in {state_dir}",
                f"  events journaled:     {stats['head_seq']}",
                f"  full PANs refused:    {refused} (never stored)",
                f"  journal verified:     {'yes' if result.ok else 'NO'}",
                f"  head:                 seq {result.head_seq} {result.head_hash[:16]}…",
            ]
        ),
    )
