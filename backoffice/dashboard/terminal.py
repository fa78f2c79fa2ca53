"""A terminal's page: 7 days of hourly sales against its expected band, devices, alerts,
backlog, last heartbeat and closes. Each part is one query (the sales: one scan of the
terminal's newest sale events; the band: the learned state of the terminal's store).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..silence import SALE_EVENT_TYPES, SilenceConfig
from ..silence.evaluate import FleetModel
from ..silence.learn import parse_ts, stats_from_row
from ..store import BackofficeStore
from .alerts import AlertRow, terminal_alerts
from .chart import BAND_QUANTILES, Chart, HourBin, draw, poisson_quantile
from .fleet import Lane, lane_of, store_terminals

CHART_DAYS = 7
HOUR_S = 3600.0
# The newest sale events read for the chart (a lane selling every few seconds for 7 days
# stays under it).
MAX_SALE_EVENTS = 200_000
CLOSES_SHOWN = 14


@dataclass
class TerminalPage:
    lane: Lane
    chart: Chart
    bins: list[HourBin]
    last_heartbeat_at: float | None
    interval_s: int | None
    heartbeat: dict[str, Any]
    devices: list[tuple[str, str, list[str]]]
    held_seq: int
    reported_head_seq: int | None
    reported_backlog: int | None
    oldest_unsynced_age_s: float | None
    alerts: list[AlertRow]
    closes: list[dict[str, Any]] = field(default_factory=list)
    learned: bool = False


def terminal_page(
    store: BackofficeStore, terminal: str, now: float, config: SilenceConfig | None = None
) -> TerminalPage | None:
    """Everything the terminal's page shows (None: no such terminal)."""
    config = config or SilenceConfig()
    lane = lane_of(store, terminal, now)
    if lane is None:
        return None
    row = store.db.execute(
        "SELECT last_heartbeat_at, interval_s, heartbeat_json, held_seq, reported_head_seq,"
        " reported_backlog FROM terminals WHERE terminal = ?",
        (terminal,),
    ).fetchone()
    beat: dict[str, Any] = {}
    if row is not None and row[2]:
        try:
            loaded = json.loads(row[2])
            beat = loaded if isinstance(loaded, dict) else {}
        except ValueError:
            beat = {}
    devices = []
    for name, status in sorted((beat.get("devices") or {}).items()):
        if isinstance(status, dict):
            faults = [str(f) for f in status.get("faults") or [] if isinstance(f, str)]
            devices.append((str(name), str(status.get("state", "?")), faults))
    bins, learned = hourly_bins(store, terminal, lane.store, now, config)
    labels = [
        (i, datetime.fromtimestamp(b.start, config.calendar(lane.store).zone).strftime("%a %d"))
        for i, b in enumerate(bins)
        if datetime.fromtimestamp(b.start, config.calendar(lane.store).zone).hour == 0
    ]
    age = beat.get("oldest_unsynced_age_s")
    return TerminalPage(
        lane=lane,
        chart=draw(bins, labels),
        bins=bins,
        last_heartbeat_at=None if row is None else row[0],
        interval_s=None if row is None else row[1],
        heartbeat=beat,
        devices=devices,
        held_seq=0 if row is None else int(row[3]),
        reported_head_seq=None if row is None or row[4] is None else int(row[4]),
        reported_backlog=None if row is None or row[5] is None else int(row[5]),
        oldest_unsynced_age_s=float(age) if isinstance(age, int | float) else None,
        alerts=terminal_alerts(store, terminal),
        closes=closes_of(store, terminal),
        learned=learned,
    )


def hourly_bins(
    store: BackofficeStore, terminal: str, store_id: str, now: float, config: SilenceConfig
) -> tuple[list[HourBin], bool]:
    """Sales per hour over the last ``CHART_DAYS`` (whole hours, the current one last) and
    the expected band from the learned rates; whether the lane has a learned rate."""
    end = (now // HOUR_S + 1) * HOUR_S
    start = end - CHART_DAYS * 24 * HOUR_S
    counts = [0] * (CHART_DAYS * 24)
    placeholders = ", ".join("?" for _ in SALE_EVENT_TYPES)
    rows = store.db.execute(
        f"SELECT ts FROM events WHERE terminal = ? AND type IN ({placeholders})"
        " ORDER BY seq DESC LIMIT ?",
        (terminal, *SALE_EVENT_TYPES, MAX_SALE_EVENTS),
    ).rows
    for (ts,) in rows:
        try:
            when = parse_ts(str(ts))
        except ValueError:
            continue
        if start <= when < end:
            counts[int((when - start) // HOUR_S)] += 1
    fit = _lane_fit(store, terminal, store_id, now, config)
    calendar = config.calendar(store_id)
    bins = []
    for i, sales in enumerate(counts):
        hour = start + i * HOUR_S
        if fit is None:
            bins.append(HourBin(hour, sales, None, None, None))
            continue
        local = datetime.fromtimestamp(hour, calendar.zone)
        how = local.weekday() * 24 + local.hour
        rate = fit.bin(how, config.prior_strength_h)[0] if calendar.is_open(hour + 1800) else 0.0
        low, high = (poisson_quantile(rate, q) for q in BAND_QUANTILES)
        bins.append(HourBin(hour, sales, rate, low, high))
    return bins, fit is not None


def _lane_fit(
    store: BackofficeStore, terminal: str, store_id: str, now: float, config: SilenceConfig
) -> Any:
    """The lane's fitted rates, pooled with its store's lanes (None: nothing learned)."""
    siblings = store_terminals(store, store_id, now) or [terminal]
    placeholders = ", ".join("?" for _ in siblings)
    rows = store.db.execute(
        "SELECT terminal, scanned_seq, last_sale_at, learned_to, counts, exposure, recent"
        f" FROM silence_lanes WHERE terminal IN ({placeholders})",
        siblings,
    ).rows
    lanes = {str(r[0]): stats_from_row(r)[0] for r in rows}
    if terminal not in lanes:
        return None
    model = FleetModel(lanes, dict.fromkeys(lanes, store_id), config)
    return model.fits.get(terminal)


def closes_of(store: BackofficeStore, terminal: str) -> list[dict[str, Any]]:
    rows = store.db.execute(
        "SELECT business_day, close_seq, seq_from, seq_to, state, missing_count,"
        " differences, reconciled_at FROM close_reconciliations WHERE terminal = ?"
        " ORDER BY close_seq DESC LIMIT ?",
        (terminal, CLOSES_SHOWN),
    ).rows
    out = []
    for r in rows:
        try:
            differences = len(json.loads(r[6]))
        except (TypeError, ValueError):
            differences = 0
        out.append({
            "business_day": str(r[0]), "close_seq": int(r[1]), "seq_from": int(r[2]),
            "seq_to": int(r[3]), "state": str(r[4]), "missing_count": int(r[5]),
            "differences": differences, "reconciled_at": float(r[7]),
        })  # fmt: skip
    return out
