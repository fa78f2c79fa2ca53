"""Checks of syncing with the back office and of the configuration around it.

Live, the :class:`~posedge.agent.sync.SyncService` is in ``ctx.sync``; offline the sync
state is read from the journal's meta table (the daemon persists it there).
"""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Any

from .grading import grade, human_s
from .model import CheckResult, HealthContext, Status

_SYNC_FIX = (
    "check the network and the back office (`posedge sync status`, `posedge doctor`); "
    "events are kept and sent once it answers"
)


def _sync_off(name: str, ctx: HealthContext) -> CheckResult | None:
    if not ctx.config.sync.url:
        return CheckResult(name, Status.SKIP, "sync is off (sync.url unset)")
    return None


def _sync_state(ctx: HealthContext) -> Any:
    if ctx.sync is not None:
        return ctx.sync.state
    if ctx.journal is None:
        return None
    from ..sync.service import SyncState

    return SyncState.load(ctx.journal)


def _oldest_unsynced_age(ctx: HealthContext) -> float | None:
    """Age of the oldest unacknowledged event at ``ctx.now`` (None: none, or no journal)."""
    if ctx.journal is None:
        return None
    age = ctx.journal.backlog()[1]
    return None if age is None else max(0.0, age + ctx.now - time.time())


def check_oldest_unsynced(ctx: HealthContext) -> CheckResult:
    name = "sync.oldest_unsynced"
    if (off := _sync_off(name, ctx)) is not None:
        return off
    if ctx.journal is None:
        return CheckResult(name, Status.SKIP, "the journal is not open here")
    count = ctx.journal.backlog()[0]
    age = _oldest_unsynced_age(ctx)
    if age is None:
        return CheckResult(name, Status.OK, "every event is acknowledged by the back office",
                           value=0.0, details={"unsynced": count})  # fmt: skip
    health = ctx.config.health
    return grade(name, age, health.number("unsynced_age_warn"),
                 health.number("unsynced_age_fail"),
                 summary=f"{count} events unsynced, the oldest {human_s(age)} old",
                 fix=_SYNC_FIX, details={"unsynced": count})  # fmt: skip


def check_sync_failures(ctx: HealthContext) -> CheckResult:
    name = "sync.failures"
    if (off := _sync_off(name, ctx)) is not None:
        return off
    state = _sync_state(ctx)
    if state is None:
        return CheckResult(name, Status.SKIP, "sync state unknown here")
    failures = float(state.consecutive_failures)
    health = ctx.config.health
    last = f"; last error: {str(state.last_error)[:160]}" if failures and state.last_error else ""
    return grade(name, failures, health.sync_failures_warn, health.sync_failures_fail,
                 summary=f"{int(failures)} consecutive failed uploads{last}",
                 fix=_SYNC_FIX)  # fmt: skip


def check_last_success(ctx: HealthContext) -> CheckResult:
    name = "sync.last_success"
    if (off := _sync_off(name, ctx)) is not None:
        return off
    state = _sync_state(ctx)
    if state is None:
        return CheckResult(name, Status.SKIP, "sync state unknown here")
    health = ctx.config.health
    if not state.last_success:
        waiting = _oldest_unsynced_age(ctx)
        if waiting is None:
            return CheckResult(name, Status.OK, "nothing was ever due to sync", value=0.0)
        return grade(name, waiting, health.number("last_success_warn"),
                     health.number("last_success_fail"),
                     summary=f"no upload acknowledged yet; events have waited {human_s(waiting)}",
                     fix=_SYNC_FIX)  # fmt: skip
    try:
        age = max(0.0, ctx.now - datetime.fromisoformat(state.last_success).timestamp())
    except ValueError:
        return CheckResult(name, Status.SKIP, "the recorded last success is unreadable")
    if ctx.journal is not None and _oldest_unsynced_age(ctx) is None:
        return CheckResult(name, Status.OK,
                           f"all synced; last upload {human_s(age)} ago", value=0.0)  # fmt: skip
    return grade(name, age, health.number("last_success_warn"),
                 health.number("last_success_fail"),
                 summary=f"the last acknowledged upload was {human_s(age)} ago",
                 fix=_SYNC_FIX)  # fmt: skip


def check_clock_skew(ctx: HealthContext) -> CheckResult:
    name = "sync.clock_skew"
    if (off := _sync_off(name, ctx)) is not None:
        return off
    skew = None
    if ctx.sync is not None:
        skew = ctx.sync.client.last_skew_s
    if skew is None:
        state = _sync_state(ctx)
        skew = getattr(state, "last_skew_s", None)
    if skew is None:
        return CheckResult(name, Status.SKIP, "no answer from the back office yet to compare")
    health = ctx.config.health
    ahead = "behind" if skew > 0 else "ahead of"
    return grade(name, abs(float(skew)), health.number("clock_skew_warn"),
                 health.number("clock_skew_fail"),
                 summary=f"this terminal's clock is {human_s(skew)} {ahead} the back office's",
                 fix="enable time synchronisation (NTP, e.g. systemd-timesyncd); receipts, "
                 "deadlines and the journal use this clock",
                 details={"skew_s": skew})  # fmt: skip


def check_config(ctx: HealthContext) -> CheckResult:
    name = "config.sync"
    sync = ctx.config.sync
    if not sync.url:
        return CheckResult(name, Status.WARN,
                           "sync.url is unset: nothing is uploaded and no sale is authorized "
                           "online", fix="set sync.url (or run `posedge enroll`)")  # fmt: skip
    problems = []
    for key in ("token_file", "ca_file", "client_cert", "client_key"):
        value = getattr(sync, key)
        if value and not Path(value).is_file():
            problems.append(f"sync.{key} {value} does not exist")
    if problems:
        return CheckResult(name, Status.FAIL, "; ".join(problems),
                           fix="create the file or correct the key in the configuration, "
                           "then `systemctl reload posedge`")  # fmt: skip
    if not sync.token_file:
        return CheckResult(name, Status.WARN, "sync.token_file is unset: requests carry no token",
                           fix="set sync.token_file (or run `posedge enroll`)")  # fmt: skip
    return CheckResult(name, Status.OK, f"syncing with {sync.url}")
