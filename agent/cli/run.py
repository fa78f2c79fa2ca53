"""``posedge run``: the agent as a long-running service (systemd or a terminal)."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from ..logs import configure_logging
from .context import CliContext, backoffice_url_option, pass_cli


def _backoffice_url(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """``--backoffice``: ``sync.url``'s rules — an http(s) URL with a host, ``http://`` only
    to a loopback host — returned without a trailing slash."""
    return backoffice_url_option(ctx, param, value)


@click.command()
@click.option(
    "--simulate",
    is_flag=True,
    help="Use a simulated printer and card reader, and an embedded reference back office "
    "(its database lives in the state directory) unless --backoffice or sync.url names one.",
)
@click.option(
    "--backoffice",
    "backoffice_url",
    metavar="URL",
    default=None,
    callback=_backoffice_url,
    help="Back office base URL (https, or http to a loopback host); overrides sync.url, "
    "also across reloads. "
    "With --simulate: sync and authorizations go there and no embedded back office starts.",
)
@click.option(
    "--api-listen",
    metavar="HOST:PORT",
    default=None,
    help="Also serve the till API on this TCP address (loopback unless "
    "api.allow_non_loopback). Port 0 picks a free port.",
)
@click.option(
    "--card-delay",
    type=click.FloatRange(0, 60),
    default=0.3,
    show_default=True,
    help="With --simulate: seconds until the simulated reader presents a card once armed.",
)
@pass_cli
def run(
    cli: CliContext,
    simulate: bool,
    backoffice_url: str | None,
    api_listen: str | None,
    card_delay: float,
) -> None:
    """Run the agent until SIGTERM/SIGINT; SIGHUP reloads the configuration.

    Under systemd (Type=notify) it reports READY=1 once the journal is open,
    crash recovery is done and the API listens, keeps STATUS= current and
    pings the watchdog while every critical task makes progress.
    """
    from ..config import load_config
    from ..runloop import RunOptions, run_daemon  # imported here: `posedge run --help` is quick

    loaded = cli.loaded_config  # a bad configuration fails here: exit 2, nothing touched
    configure_logging(loaded.config.log.level)

    def announce(where: dict[str, Any]) -> None:
        if cli.json_output:
            sys.stdout.write(json.dumps(where, sort_keys=True) + "\n")
        else:
            lines = [f"posedge is running (state in {where['state_dir']})",
                     f"  till API:   unix socket {where['socket']}"]  # fmt: skip
            if where.get("tcp"):
                lines.append(f"              {where['tcp']}")
            lines += [
                f"  token:      {where['token_file']}",
                f"  back office: {where['backoffice'] or '(none: sales approve offline only)'}",
                "  try:",
                f'    curl --unix-socket {where["socket"]} -H "Authorization: Bearer '
                f"$(cat {where['token_file']})\" -H 'Idempotency-Key: demo-1' "
                "-H 'Content-Type: application/json' "
                '-d \'{"amount": 1234, "currency": "EUR", "reference": "order-1"}\' '
                "http://posedge/v1/sales",
                "  stop with Ctrl-C (SIGTERM); reload the configuration with SIGHUP",
            ]
            sys.stdout.write("\n".join(lines) + "\n")
        sys.stdout.flush()

    options = RunOptions(
        state_dir=cli.state_dir,
        simulate=simulate,
        api_listen=api_listen,
        announce=announce,
        card_delay_s=card_delay,
        backoffice_url=backoffice_url,
    )
    sys.exit(run_daemon(loaded, lambda: load_config(cli.config_option), options))


def register(root: click.Group) -> None:
    root.add_command(run)
