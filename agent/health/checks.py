"""The registry of health checks (``REGISTRY``) and how each one's alert behaves.

Names are dotted, stable and bounded: they are metric labels and alert names. Order is
the order ``posedge doctor`` prints them. Device checks (``printer.*``, ``reader.*``) run
every ``health.poll_interval`` in the daemon, the others every ``health.check_interval``.

Other parts add their own checks to their own registry (``posedge doctor``'s daemon and
back-office checks) or to this one, by name; never rename one here.
"""

from __future__ import annotations

from typing import Any

from .devicechecks import (
    check_printer_cover,
    check_printer_cutter,
    check_printer_online,
    check_printer_paper,
    check_reader_errors,
    check_reader_present,
)
from .lifecycle import AlertRule, Threshold
from .model import CheckRegistry, CheckSpec
from .storagechecks import (
    check_disk_free,
    check_journal_integrity,
    check_journal_size,
    check_statedir_modes,
    check_vault_deadline,
    check_vault_entries,
)
from .syncchecks import (
    check_clock_skew,
    check_config,
    check_last_success,
    check_oldest_unsynced,
    check_sync_failures,
)

REGISTRY = CheckRegistry()
for _spec in (
    CheckSpec("printer.online", "the printer answers and is online", check_printer_online),
    CheckSpec("printer.cover", "the printer cover is closed", check_printer_cover),
    CheckSpec("printer.paper", "paper loaded (fail: paper end, warn: near end)",
              check_printer_paper),
    CheckSpec("printer.cutter", "no cutter or print-head error", check_printer_cutter),
    CheckSpec("reader.present", "the card reader is configured and connected",
              check_reader_present),
    CheckSpec("reader.errors", "share of recent swipes that could not be read",
              check_reader_errors, live_only=True),
    CheckSpec("journal.integrity", "the journal chain verified within health.verify_interval",
              check_journal_integrity),
    CheckSpec("journal.size", "the journal file's size", check_journal_size),
    CheckSpec("disk.free", "free space in the state directory's file system", check_disk_free),
    CheckSpec("sync.oldest_unsynced", "age of the oldest event the back office has not "
              "acknowledged", check_oldest_unsynced),
    CheckSpec("sync.failures", "consecutive failed uploads", check_sync_failures),
    CheckSpec("sync.last_success", "time since the last acknowledged upload",
              check_last_success),
    CheckSpec("sync.clock_skew", "this clock against the back office's Date header",
              check_clock_skew),
    CheckSpec("vault.entries", "offline sales waiting to be forwarded", check_vault_entries),
    CheckSpec("vault.forward_deadline", "time left before the oldest offline sale's "
              "offline.forward_by", check_vault_deadline),
    CheckSpec("statedir.modes", "the state directory, keys and tokens are private",
              check_statedir_modes),
    CheckSpec("config.sync", "sync.url and the files it needs are set", check_config),
):  # fmt: skip
    REGISTRY.add(_spec)

DEVICE_CHECKS = (
    "printer.online",
    "printer.cover",
    "printer.paper",
    "printer.cutter",
    "reader.present",
    "reader.errors",
)
"""Run every ``health.poll_interval`` (right after the device poll)."""

_VALUE_ALERTS: dict[str, tuple[str, bool]] = {
    "disk.free": ("disk_free", True),
    "journal.size": ("journal_size", False),
    "reader.errors": ("reader_error_rate", False),
    "sync.oldest_unsynced": ("unsynced_age", False),
    "sync.failures": ("sync_failures", False),
    "sync.last_success": ("last_success", False),
    "sync.clock_skew": ("clock_skew", False),
    "vault.entries": ("vault_entries", False),
    "vault.forward_deadline": ("forward_deadline", True),
}
"""Checks whose alert follows their value with hysteresis: check → (threshold key, low is bad)."""


def threshold(name: str, health: Any) -> Threshold | None:
    """The hysteresis of ``name``'s alert: fire at the warn line, clear at the ``*_clear``
    key or warn × / ÷ ``clear_ratio``; None for a check whose alert follows its status."""
    found = _VALUE_ALERTS.get(name)
    if found is None:
        return None
    key, low_is_bad = found
    warn = health.number(f"{key}_warn")
    clear_key = f"{key}_clear"
    if getattr(health, clear_key, None) is not None:
        clear = health.number(clear_key)
    else:
        clear = warn / health.clear_ratio if low_is_bad else warn * health.clear_ratio
    return Threshold(fire=warn, clear=clear, high_is_bad=not low_is_bad)


def alert_rule(name: str, health: Any) -> AlertRule:
    """How ``name``'s alert behaves under the ``[health]`` configuration ``health``."""
    return AlertRule(
        for_s=health.number("alert_for"),
        keep_firing_for_s=health.number("keep_firing_for"),
        threshold=threshold(name, health),
        flap_changes=health.flap_changes,
        flap_window_s=health.number("flap_window"),
        flap_stable_s=health.number("flap_stable"),
    )


__all__ = ["DEVICE_CHECKS", "REGISTRY", "alert_rule", "threshold"]
