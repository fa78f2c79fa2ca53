"""The two exact silence signals: the terminal is not alive; its sales are not arriving.

No statistics: each compares what the terminal's latest heartbeat reported, and
what the back office holds, against a configured limit (docs/silence.md).
"""

from __future__ import annotations

from ..store import TerminalState
from .config import SilenceConfig, SilenceSignal


def terminal_not_alive(
    state: TerminalState, store: str | None, now: float, config: SilenceConfig
) -> SilenceSignal:
    """Active when no heartbeat came for ``heartbeat_grace`` of its intervals."""
    interval = float(state.interval_s or config.default_interval_s)
    limit = config.heartbeat_grace * interval
    seen = state.last_heartbeat_at
    since = seen if seen is not None else state.enrolled_at
    age = max(0.0, now - since)
    active = age > limit
    if seen is None:
        summary = f"{state.terminal}: no heartbeat ever ({age:.0f} s since it was first seen)"
    elif active:
        summary = f"{state.terminal}: no heartbeat for {age:.0f} s (limit {limit:.0f} s)"
    else:
        summary = f"{state.terminal}: heartbeat {age:.0f} s ago"
    return SilenceSignal(
        "terminal_not_alive",
        state.terminal,
        store,
        active,
        age,
        limit,
        summary,
        {
            "last_heartbeat_at": seen,
            "interval_s": interval,
            "grace_intervals": config.heartbeat_grace,
        },
    )


def sales_not_arriving(
    state: TerminalState, store: str | None, now: float, config: SilenceConfig
) -> SilenceSignal:
    """Active when the terminal's events are not reaching the back office.

    From its latest heartbeat: the oldest unsynced event's age (grown by the time since
    that heartbeat) over ``max_unsynced_age_s``, or more than ``max_backlog``
    unsynced events; from what is held: the reported journal head beyond the held
    head while the terminal reports nothing unsynced (it believes the back office
    holds events it does not), or, from an agent that reports no ages, a head gap
    whose held end is older than the age limit.
    """
    beat = state.heartbeat or {}
    since_beat = max(0.0, now - state.last_heartbeat_at) if state.last_heartbeat_at else 0.0
    reported_age = beat.get("oldest_unsynced_age_s")
    backlog = state.reported_backlog
    age = float(reported_age) + since_beat if isinstance(reported_age, int | float) else None
    head = state.reported_head_seq
    missing = max(0, head - state.held_seq) if head is not None else 0
    reasons: list[str] = []
    if age is not None and backlog and age > config.max_unsynced_age_s:
        reasons.append(
            f"oldest unsynced event {age:.0f} s old (limit {config.max_unsynced_age_s:.0f} s)"
        )
    if backlog is not None and backlog > config.max_backlog:
        reasons.append(f"{backlog} events unsynced (limit {config.max_backlog})")
    if missing and backlog == 0:
        reasons.append(
            f"the terminal reports nothing unsynced but the back office lacks seqs "
            f"{state.held_seq + 1}..{head}"
        )
    if missing and age is None and backlog is None and since_beat > config.max_unsynced_age_s:
        reasons.append(f"{missing} events reported but not received for {since_beat:.0f} s")
    active = bool(reasons)
    value = age if age is not None and backlog else 0.0
    if active:
        summary = f"{state.terminal}: sales not reaching the back office: " + "; ".join(reasons)
    else:
        summary = f"{state.terminal}: events arriving (held seq {state.held_seq})"
    return SilenceSignal(
        "sales_not_arriving",
        state.terminal,
        store,
        active,
        value,
        config.max_unsynced_age_s,
        summary,
        {
            "reported_backlog": backlog,
            "oldest_unsynced_age_s": age,
            "reported_head_seq": head,
            "held_seq": state.held_seq,
            "missing_seqs": missing,
            "reasons": reasons,
        },
    )
