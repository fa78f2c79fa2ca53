"""Checks of what the terminal stores: journal integrity and size, free disk, the card
vault, and the state directory's file modes.

Never reads card data: the vault is looked at through entry names and header deadlines.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..statedir import PROTECTED_FILES, SECRET_FILE_MODE, check_state_dir
from .grading import grade, human_bytes, human_s
from .model import CheckResult, HealthContext, Status
from .verifyproc import verify_here, verify_in_child

VERIFY_META_KEY = "health_last_verify"
"""Journal meta: the daemon's last whole-chain verify ``{"at", "ok", "events", "problem"}``."""
SECRET_FILES = ("device.key", "vault.key", "signing.key", "api-token", "sync-token")


def _now_iso(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds")


def run_verify(state_dir: Path, now: float, in_child: bool = False) -> dict[str, Any]:
    """Verify the whole chain through a read-only connection of its own (the daemon's
    appends do not wait for it); the result as stored under :data:`VERIFY_META_KEY`.
    ``in_child``: in a child process (the daemon: its event loop does not wait either)."""
    doc = verify_in_child(state_dir) if in_child else verify_here(state_dir)
    problem = doc.get("problem")
    return {
        "at": _now_iso(now),
        "ok": problem is None,
        "events": doc.get("events"),
        "problem": None if problem is None else str(problem)[:300],
    }


def last_verify(journal: Any) -> dict[str, Any] | None:
    try:
        text = journal.get_meta(VERIFY_META_KEY)
        found = json.loads(text) if text else None
    except (ValueError, TypeError):
        return None
    return found if isinstance(found, dict) and "at" in found else None


def check_journal_integrity(ctx: HealthContext) -> CheckResult:
    """The last verify, if recent; otherwise verify now (and record it when we may write)."""
    name = "journal.integrity"
    journal = ctx.journal
    if journal is None:
        return CheckResult(name, Status.SKIP, "the journal is not open here")
    interval = ctx.config.health.number("verify_interval")
    done = last_verify(journal)
    age = None
    if done is not None:
        try:
            age = ctx.now - datetime.fromisoformat(done["at"]).timestamp()
        except (TypeError, ValueError):
            done = None
    if done is None or age is None or age >= interval:
        writer = not getattr(journal, "readonly", True)  # the daemon's journal
        done = run_verify(Path(ctx.state_dir), ctx.now, in_child=writer)
        age = 0.0
        if writer:
            journal.set_meta(VERIFY_META_KEY, json.dumps(done, sort_keys=True))
    details = {"verified_at": done["at"], "events": done.get("events")}
    if not done.get("ok"):
        return CheckResult(
            name, Status.FAIL, f"the journal chain does not verify: {done.get('problem')}",
            fix="stop using this terminal for sales; run `posedge journal verify` and send "
            "`posedge support-bundle` to support (the journal was altered or damaged)",
            value=age, details=details,
        )  # fmt: skip
    return CheckResult(name, Status.OK,
                       f"{done.get('events')} events verified {human_s(age)} ago",
                       value=age, details=details)  # fmt: skip


def check_journal_size(ctx: HealthContext) -> CheckResult:
    name = "journal.size"
    path = Path(ctx.state_dir) / "journal.db"
    sizes = []
    for suffix in ("", "-wal"):
        try:
            sizes.append(os.stat(f"{path}{suffix}").st_size)
        except FileNotFoundError:
            continue
    if not sizes:
        return CheckResult(name, Status.SKIP, f"no journal at {path} yet")
    size = float(sum(sizes))
    health = ctx.config.health
    return grade(name, size, health.number("journal_size_warn"),
                 health.number("journal_size_fail"),
                 summary=f"the journal is {human_bytes(size)}",
                 fix="check that sync works (acknowledged events are pruned after "
                 "journal.retention); lower journal.retention or add disk space")  # fmt: skip


def check_disk_free(ctx: HealthContext) -> CheckResult:
    name = "disk.free"
    state_dir = Path(ctx.state_dir)
    try:
        usage = shutil.disk_usage(state_dir if state_dir.exists() else state_dir.parent)
    except OSError as exc:
        return CheckResult(name, Status.FAIL, f"cannot measure free space: {exc.strerror}",
                           fix=f"check that {state_dir} exists and is readable")  # fmt: skip
    health = ctx.config.health
    free = float(usage.free)
    return grade(name, free, health.number("disk_free_warn"), health.number("disk_free_fail"),
                 low_is_bad=True,
                 summary=f"{human_bytes(free)} free in {state_dir}'s file system",
                 fix="free disk space (old logs, other software); the journal and the card "
                 "vault stop taking data when the disk is full",
                 details={"free_bytes": usage.free, "total_bytes": usage.total})  # fmt: skip


def _vault(ctx: HealthContext) -> Any:
    vault = ctx.extra.get("vault")
    if vault is None and ctx.engine is not None:
        vault = getattr(ctx.engine, "vault", None)
    return vault


def check_vault_entries(ctx: HealthContext) -> CheckResult:
    name = "vault.entries"
    vault = _vault(ctx)
    if vault is None:
        return CheckResult(name, Status.SKIP, "the card vault is not open here")
    count = float(len(vault.txns()))
    health = ctx.config.health
    return grade(name, count, health.vault_entries_warn, health.vault_entries_fail,
                 summary=f"{int(count)} offline sales wait to be forwarded",
                 fix="restore the connection to the back office (see the sync.* checks) so "
                 "offline sales are forwarded; offline.max_count stops new ones")  # fmt: skip


def check_vault_deadline(ctx: HealthContext) -> CheckResult:
    name = "vault.forward_deadline"
    vault = _vault(ctx)
    if vault is None:
        return CheckResult(name, Status.SKIP, "the card vault is not open here")
    deadlines = [d for d in (vault.expires_at(txn) for txn in vault.txns()) if d is not None]
    if not deadlines:
        return CheckResult(name, Status.OK, "no offline sale waits to be forwarded")
    left = min(deadlines).timestamp() - ctx.now
    health = ctx.config.health
    summary = (
        f"the oldest offline sale must be forwarded within {human_s(left)}"
        if left > 0
        else f"an offline sale missed its forward deadline {human_s(left)} ago"
    )
    return grade(name, left, health.number("forward_deadline_warn"),
                 health.number("forward_deadline_fail"), low_is_bad=True, summary=summary,
                 fix="restore the connection to the back office now: offline sales not "
                 "forwarded by offline.forward_by expire and their money is lost",
                 details={"entries": len(deadlines)})  # fmt: skip


def check_statedir_modes(ctx: HealthContext) -> CheckResult:
    name = "statedir.modes"
    state_dir = Path(ctx.state_dir)
    try:
        check_state_dir(state_dir)
    except ConfigError as exc:
        return CheckResult(name, Status.FAIL, str(exc)[:300],
                           fix=f"make {state_dir} owned by the service user, mode 0700 "
                           "(see docs/operations.md)")  # fmt: skip
    loose = []
    for file_name in SECRET_FILES:
        try:
            info = os.lstat(state_dir / file_name)
        except FileNotFoundError:
            continue
        if stat.S_IMODE(info.st_mode) & ~SECRET_FILE_MODE:
            loose.append(f"{file_name} {stat.S_IMODE(info.st_mode):04o}")
    if loose:
        return CheckResult(
            name, Status.FAIL, f"secret files others may read: {', '.join(loose)}",
            fix=f"chmod 0600 the listed files in {state_dir}; rotate the keys and tokens if "
            "someone else may have read them",
        )  # fmt: skip
    return CheckResult(name, Status.OK, f"{state_dir}, its keys and tokens are private",
                       details={"checked": list(PROTECTED_FILES)})  # fmt: skip
