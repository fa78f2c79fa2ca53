"""``posedge simulate backoffice``: the back office with injected faults, for tests and demos.

The same options as ``posedge backoffice serve`` plus fault flags; ``POST
/admin/faults`` changes the faults at run time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_args

import click

from posedge.backoffice.cli import database_errors, prepare_serve, serve_error, serve_options

from .faults import Endpoint, FaultPlan, FaultRule

_FRACTION = click.FloatRange(0.0, 1.0)
_SECONDS = click.FloatRange(min=0.0)
_ENDPOINTS = list(get_args(Endpoint))


@click.command("backoffice")
@serve_options
@click.option("--error-rate", type=_FRACTION, default=None, help="Fraction answered 500.")
@click.option("--latency", type=_SECONDS, default=None, help="Seconds added to every request.")
@click.option("--status-429-rate", type=_FRACTION, default=None, help="Fraction answered 429.")
@click.option("--status-503-rate", type=_FRACTION, default=None, help="Fraction answered 503.")
@click.option("--retry-after", type=_SECONDS, default=1.0, show_default=True, help="For 429/503.")
@click.option("--retry-after-date", is_flag=True, help="Send Retry-After as an HTTP date.")
@click.option("--reset-rate", type=_FRACTION, default=None, help="Fraction reset, no reply.")
@click.option(
    "--drop-reply-rate", type=_FRACTION, default=None, help="Fraction committed, reply dropped."
)
@click.option("--down-for", type=click.FloatRange(min=0.0, min_open=True), default=None,
              help="Refuse everything for this many seconds after start.")  # fmt: skip
@click.option(
    "--down-mode", type=click.Choice(["reset", "503"]), default="reset", show_default=True
)
@click.option("--fault-endpoint", type=click.Choice(_ENDPOINTS), default="*", show_default=True,
              help="Endpoint the fault flags apply to.")  # fmt: skip
@click.option("--fault-seed", type=int, default=0, show_default=True)
def simulate_backoffice(db: Path | str, listen: str, tokens: Path | None, **opts: Any) -> None:
    """Serve the back office with injected faults until SIGINT/SIGTERM.

    Fault flags apply from the start; GET/POST/DELETE /admin/faults lists,
    adds and clears them at run time (admin API: --admin or open mode).
    """
    from .backoffice import serve_faulty

    host, port, config = prepare_serve(db, listen, tokens, **opts)
    plan = build_fault_plan(**opts)
    try:
        with database_errors():
            serve_faulty(db, host, port, config, plan, opts["log_level"], opts["db_pool_size"])
    except OSError as exc:
        raise serve_error(host, port, db, exc) from None


def build_fault_plan(**opts: Any) -> FaultPlan:
    """The fault plan of the fault flags (also used by tests)."""
    plan = FaultPlan(seed=opts.get("fault_seed") or 0)
    endpoint: Any = opts.get("fault_endpoint") or "*"
    retry = {
        "retry_after_s": opts.get("retry_after", 1.0),
        "retry_after_form": "date" if opts.get("retry_after_date") else "seconds",
    }
    if opts.get("down_for"):
        plan.add(
            FaultRule(
                kind="down",
                endpoint=endpoint,
                duration_s=opts["down_for"],
                down_mode=opts.get("down_mode") or "reset",
            )
        )
    if opts.get("latency"):
        plan.add(FaultRule(kind="latency", endpoint=endpoint, latency_s=opts["latency"]))
    for flag, kind in (
        ("error_rate", "error"),
        ("status_429_rate", "status_429"),
        ("status_503_rate", "status_503"),
        ("reset_rate", "reset"),
        ("drop_reply_rate", "drop_reply"),
    ):
        if opts.get(flag):
            plan.add(FaultRule.model_validate({"kind": kind, "endpoint": endpoint,
                                               "rate": opts[flag], **retry}))  # fmt: skip
    return plan
