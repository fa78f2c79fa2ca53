"""Back-office sync: ordered, idempotent upload of the journal, heartbeats."""

from __future__ import annotations

from pathlib import Path

from ..config import Config
from ..enrolment import enrolled_config
from ..errors import ConfigError
from ..journal import Journal
from .client import BackofficeClient, Rewind, read_token
from .errors import BackofficeBusy, BackofficeRejected, BackofficeUnreachable, SyncError
from .service import DrainReport, SyncService, SyncState
from .terminal import terminal_id


def open_sync(
    config: Config, journal: Journal, state_dir: Path, url: str | None = None
) -> SyncService:
    """A SyncService for this terminal from the configuration (``url`` overrides), completed
    by the state directory's enrolment (terminal id, back office, token file, device key)."""
    config = enrolled_config(config, state_dir)
    base = url or config.sync.url
    if not base:
        raise ConfigError(
            "no back office configured: set sync.url in the configuration or pass --backoffice URL"
        )
    client = BackofficeClient(
        base,
        terminal_id(config.terminal.id, state_dir),
        config.sync,
        token=read_token(config.sync.token_file),
    )
    return SyncService(journal, client, config.sync, state_dir=state_dir)


__all__ = [
    "BackofficeBusy",
    "BackofficeClient",
    "BackofficeRejected",
    "BackofficeUnreachable",
    "DrainReport",
    "Rewind",
    "SyncError",
    "SyncService",
    "SyncState",
    "open_sync",
    "terminal_id",
]
