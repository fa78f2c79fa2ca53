"""``posedge support-bundle``: a tar.gz for the vendor, and a local mapping to read the answer.

The bundle is built by :mod:`posedge.agent.diagnostics.bundle` (docs/support-bundle.md):
allowlisted content only, card data and secrets scrubbed and then scanned for, host
names and addresses obfuscated. ``--deobfuscate FILE --mapping MAP`` puts the original
names back into a text (the vendor's answer) with the mapping file kept on the terminal.

Exit codes: 0 written · 2 usage (an output directory that is missing or not writable,
an existing output file, a bad --since, a mapping file that is not one) · 3 refused:
the final scan found card data or a secret, nothing was written.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..errors import ConfigError
from .context import CliContext, pass_cli
from .output import human_bytes

if TYPE_CHECKING:
    from ..config import LoadedConfig

# The same numbers as posedge.agent.diagnostics.bundle (a test keeps them equal): that module
# loads the configuration model (pydantic), which `posedge support-bundle --help` must not.
DEFAULT_LOG_LINES = 2000
MAX_LOG_LINES = 50_000


@click.command("support-bundle")
@click.option(
    "--output",
    "-o",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Where to write the bundle [default: ./posedge-support-<UTC time>.tar.gz]; the "
    "mapping file goes next to it as <name>.mapping.json. Existing files are never replaced.",
)
@click.option(
    "--log-lines",
    type=click.IntRange(1, MAX_LOG_LINES),
    default=DEFAULT_LOG_LINES,
    show_default=True,
    help="At most this many of the latest journald entries of posedge.service.",
)
@click.option(
    "--since",
    metavar="DURATION",
    default=None,
    help='Only log entries newer than this, e.g. "2h" or "3d".',
)
@click.option(
    "--deobfuscate",
    "reply",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="Instead of building a bundle: print this text file (the vendor's answer) with "
    "the placeholders (host-1, ip-2, email-3) replaced by the originals; needs --mapping.",
)
@click.option(
    "--mapping",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="The mapping file written next to the bundle (for --deobfuscate).",
)
@pass_cli
def support_bundle(
    cli: CliContext,
    output: Path | None,
    log_lines: int,
    since: str | None,
    reply: Path | None,
    mapping: Path | None,
) -> None:
    """Write a support bundle for the vendor: diagnostics without card data, keys or tokens.

    The tar.gz holds manifest.json (every file with its size and sha256, and what was
    left out and why), the doctor report, journal statistics and verification, device
    statistics and dumps, the configuration with secrets removed, the latest posedge log
    entries and the daemon's status. Host names, IP and e-mail addresses are replaced by
    placeholders (host-1, ip-2, ...); the mapping stays on this terminal, next to the
    bundle, so the vendor's answer can be read with --deobfuscate.

    Exit 0 written, 2 usage (output directory missing or not writable, file exists),
    3 refused: card data or a secret was found in what would be sent; nothing written.
    """
    from ..config import parse_duration
    from ..diagnostics.bundle import BundleRequest, build_support_bundle, default_output

    if reply is not None or mapping is not None:
        _deobfuscate(cli, reply, mapping)
        return
    since_s = None
    if since is not None:
        try:
            since_s = parse_duration(since)
        except ValueError as exc:
            raise click.BadParameter(f"{since!r}: {exc}", param_hint="--since") from None
    now = datetime.now(UTC)
    state_dir = cli.state_dir
    loaded, config_error = _load_config(cli)
    request = BundleRequest(
        state_dir=state_dir,
        output=Path(output if output is not None else default_output(now)).absolute(),
        config_option=cli.config_option,
        log_lines=log_lines,
        since_s=since_s,
        agent_version=_agent_version(),
    )
    result = build_support_bundle(request, loaded, config_error, now=now)
    lines = [
        f"support bundle written: {result.output} ({human_bytes(result.bytes)}, "
        f"{len(result.manifest['members'])} files)",
        f"mapping (keep it here, do not send it): {result.mapping}",
    ]
    for entry in result.manifest["left_out"]:
        lines.append(f"left out: {entry['item']}: {entry['reason']}")
    cli.emit(result.summary(), "\n".join(lines))


def _load_config(cli: CliContext) -> tuple[LoadedConfig | None, str | None]:
    """The configuration, or its error: a bundle is most wanted when the config is broken.
    A --config named explicitly must exist and be valid (exit 2), as for every command
    (checked before this command runs, :func:`posedge.agent.cli.context.add_global_options`);
    the default file and $POSEDGE_CONFIG may be broken: the error goes into the bundle."""
    try:
        return cli.loaded_config, None
    except ConfigError as exc:
        if cli.config_option is not None:
            raise
        return None, str(exc)


def _deobfuscate(cli: CliContext, reply: Path | None, mapping: Path | None) -> None:
    from ..diagnostics.obfuscate import deobfuscate

    if reply is None or mapping is None:
        missing = "--deobfuscate FILE" if reply is None else "--mapping FILE"
        raise click.UsageError(
            f"--deobfuscate and --mapping go together; add {missing} (the mapping file is "
            "the .mapping.json written next to the bundle)"
        )
    placeholders = _read_mapping(mapping)
    try:
        text = reply.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--deobfuscate {reply}: cannot read it as UTF-8 text ({exc})") from None
    restored = deobfuscate(text, placeholders)
    if cli.json_output:
        cli.emit({"text": restored})
    else:
        click.echo(restored, nl=False)


def _read_mapping(path: Path) -> dict[str, str]:
    try:
        doc: Any = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"--mapping {path}: not a support bundle mapping file ({exc}); give the "
            ".mapping.json written next to the bundle"
        ) from None
    placeholders = doc.get("placeholders") if isinstance(doc, dict) else None
    if not isinstance(placeholders, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in placeholders.items()
    ):
        raise ConfigError(
            f'--mapping {path}: no "placeholders" object of text to text; give the '
            ".mapping.json written next to the bundle"
        )
    return placeholders


def _agent_version() -> str:
    try:
        return version("posedge")
    except PackageNotFoundError:  # pragma: no cover - a bare checkout
        return "0+unknown"


__all__ = ["support_bundle"]
