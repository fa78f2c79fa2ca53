"""Learning lane rates from stored sale events, incrementally (table silence_lanes, schema 5).

:func:`learn_sales` folds a lane's new sale times into its :class:`~.model.LaneStats`:
runs counted in their local hour of week, the open time between sales added as
exposure (at most ``max_learn_gap_s`` of one silence: a longer one is an
outage, not evidence of a low rate), both weighted by exponential decay.
:func:`update_learned_state` does it for every terminal whose held events grew
since the last call, reading only the new events, under each lane's lock, a
batch of lanes per transaction (replicas may run it at the same time). The
first ``run_gap_s`` after each sale is dead time, not exposure (docs/silence.md).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..anomalies import registry_stores, store_of
from .calendar import StoreCalendar
from .config import SALE_EVENT_TYPES, SilenceConfig
from .model import (
    RECENT_RUNS,
    LaneStats,
    decay_factor,
    pack,
    pack_times,
    unpack,
    unpack_times,
)

if TYPE_CHECKING:
    from ..db import Transaction
    from ..store import BackofficeStore

# Lanes learned per transaction.
LEARN_BATCH = 256
# SQLite has one writer: a transaction of 256 lanes held it for up to a second and every
# heartbeat and upload of the fleet waited (bench_fleet: heartbeat p99 2.2 s). A few lanes
# per transaction keep each hold to milliseconds.
LEARN_BATCH_SQLITE = 8
_COLUMNS = "terminal, scanned_seq, last_sale_at, learned_to, counts, exposure, recent"


def learn_sales(
    stats: LaneStats, times: Sequence[float], calendar: StoreCalendar, config: SilenceConfig
) -> int:
    """Fold sale start times (increasing) into ``stats``; returns the runs counted.
    Times at or before the last sale already learned are ignored."""
    last = stats.last_sale_at
    new = [t for t in times if last is None or t > last]
    if not new:
        return 0
    end = new[-1]
    start = last if last is not None else new[0]
    half_life = config.half_life_s
    stats.decay_to(end, half_life)
    # Exposure: open time between sales, per local hour of week, decayed by its midpoint.
    segments = calendar.open_segments(start, end)
    starts = [s for s, _, _ in segments]
    counts, exposure = stats.counts, stats.exposure
    cap = config.max_learn_gap_s
    previous = start
    seg_index = 0
    for when in [*new]:
        # Walk the segments inside (previous + dead time, when]: count open time up to the
        # cap. The first run_gap_s after a sale cannot end a silence (a sale then continues
        # the run), so it is no exposure: runs / exposure then estimates the rate at which
        # silences end, not the lower rate of runs per open hour.
        open_s = 0.0
        previous += config.run_gap_s
        while seg_index < len(segments) and segments[seg_index][1] <= previous:
            seg_index += 1
        i = seg_index
        while i < len(segments) and segments[i][0] < when:
            seg_start, seg_end, how = segments[i]
            low, high = max(seg_start, previous), min(seg_end, when)
            if high > low:
                take = min(high - low, cap - open_s)
                if take <= 0.0:
                    break
                mid = low + take / 2.0
                exposure[how] += take / 3600.0 * decay_factor(end - mid, half_life)
                open_s += take
            if seg_end > when:
                break
            i += 1
        previous = when
    # Runs: a sale at least run_gap_s after the one before starts a run.
    runs = 0
    recent = stats.recent
    prev_sale = last
    zone = calendar.zone
    last_quarter = -1
    how = 0
    for when in new:
        if prev_sale is None or when - prev_sale >= config.run_gap_s:
            j = bisect.bisect_right(starts, when) - 1
            if j >= 0 and segments[j][0] <= when < segments[j][1]:
                how = segments[j][2]
            else:  # a sale outside the calendar's open time (closing late): its local hour
                quarter = int(when // 900)
                if quarter != last_quarter:
                    last_quarter = quarter
                    local = datetime.fromtimestamp(quarter * 900.0, zone)
                    how = local.weekday() * 24 + local.hour
            counts[how] += decay_factor(end - when, half_life)
            recent.append(when)
            runs += 1
        prev_sale = when
    # Only runs within the lookback of the last sale can fall in a silence being judged.
    keep = bisect.bisect_left(recent, end - config.lookback_s)
    keep = max(keep, len(recent) - RECENT_RUNS)
    if keep > 0:
        del recent[:keep]
    stats.last_sale_at = end
    return runs


def parse_ts(text: str) -> float:
    """An event's ``ts`` (ISO 8601 with offset) as epoch seconds."""
    return datetime.fromisoformat(text).timestamp()


def stats_from_row(row: Sequence[Any]) -> tuple[LaneStats, int]:
    terminal, scanned, last_sale, learned_to, counts, exposure, recent = row
    stats = LaneStats(
        terminal=str(terminal),
        counts=unpack(counts),
        exposure=unpack(exposure),
        learned_to=learned_to,
        last_sale_at=last_sale,
        recent=unpack_times(recent),
    )
    return stats, int(scanned)


def load_lanes(store: BackofficeStore) -> dict[str, LaneStats]:
    """Every lane's learned state."""
    rows = store.db.execute(f"SELECT {_COLUMNS} FROM silence_lanes").fetchall()
    return {str(row[0]): stats_from_row(row)[0] for row in rows}


def store_of_terminals(
    store: BackofficeStore, terminals: Sequence[str] | None = None
) -> dict[str, str]:
    """terminal → store for ``terminals`` (default: every terminal the back office knows)
    and every enrolled one: the registry's store, else the store in the id
    (``STORE-LANE``) — the rule the alerts group by (:func:`..anomalies.store_of`), so a
    lane's siblings and calendar are found whether or not its terminals were enrolled."""
    registry = registry_stores(store)
    if terminals is None:
        rows = store.db.execute("SELECT terminal FROM terminals").fetchall()
        terminals = [str(t) for (t,) in rows]
    return {t: store_of(t, registry) for t in terminals} | registry


def _save(tx: Transaction, stats: LaneStats, scanned: int, now: float) -> None:
    tx.execute(
        "INSERT INTO silence_lanes (terminal, scanned_seq, last_sale_at, learned_to, counts,"
        " exposure, recent, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (terminal) DO UPDATE SET scanned_seq = excluded.scanned_seq,"
        " last_sale_at = excluded.last_sale_at, learned_to = excluded.learned_to,"
        " counts = excluded.counts, exposure = excluded.exposure, recent = excluded.recent,"
        " updated_at = excluded.updated_at",
        (
            stats.terminal,
            scanned,
            stats.last_sale_at,
            stats.learned_to,
            pack(stats.counts),
            pack(stats.exposure),
            pack_times(stats.recent),
            now,
        ),
    )


def update_learned_state(store: BackofficeStore, now: float, config: SilenceConfig) -> int:
    """Learn from the sale events ingested since the last call; returns the lanes updated."""
    held = {
        str(t): int(seq)
        for t, seq in store.db.execute("SELECT terminal, held_seq FROM terminals").fetchall()
    }
    scanned = {
        str(t): int(seq)
        for t, seq in store.db.execute("SELECT terminal, scanned_seq FROM silence_lanes").fetchall()
    }
    placeholders = ", ".join("?" for _ in SALE_EVENT_TYPES)
    due = [t for t, seq in sorted(held.items()) if seq > scanned.get(t, 0)]
    stores = store_of_terminals(store, due) if due else {}
    updated = 0
    batch = LEARN_BATCH_SQLITE if store.db.dialect == "sqlite" else LEARN_BATCH
    for first in range(0, len(due), batch):
        # A batch of lanes per transaction (one commit, not one per lane); each lane's lock
        # taken in sorted order, so replicas learning at once queue and never deadlock.
        with store.transaction() as tx:
            for terminal in due[first : first + batch]:
                tx.lock(f"silence\x1f{terminal}")
                row = tx.execute(
                    f"SELECT {_COLUMNS} FROM silence_lanes WHERE terminal = ?", (terminal,)
                ).fetchone()
                stats, since = stats_from_row(row) if row else (LaneStats(terminal), 0)
                top = tx.execute(
                    "SELECT held_seq FROM terminals WHERE terminal = ?", (terminal,)
                ).fetchone()
                upto = int(top[0]) if top else since
                if upto <= since:
                    continue
                events = tx.execute(
                    "SELECT ts FROM events WHERE terminal = ? AND seq > ? AND seq <= ?"
                    f" AND type IN ({placeholders}) ORDER BY seq",
                    (terminal, since, upto, *SALE_EVENT_TYPES),
                ).fetchall()
                times = sorted(parse_ts(str(r[0])) for r in events)
                learn_sales(stats, times, config.calendar(stores.get(terminal)), config)
                _save(tx, stats, upto, now)
                updated += 1
    return updated
