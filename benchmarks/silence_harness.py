"""The evaluation harness of silence detection (issue 14): fleet history, injected silences,
training with the product's learner, minute-by-minute replay of three detectors, scoring.

Used by ``benchmarks/bench_silence.py``. The fleet, its traffic and its faults come
from ``posedge.simulator.fleet``; the learned state, the priors, the posterior
rates, the thresholds and the zero-probability formulas are the back office's own
(``posedge.backoffice.silence``). What the harness adds is the replay: instead of
calling ``evaluate_fleet`` once a minute for 40,000 minutes, it keeps the same
running sums the production test computes (expected runs since the last sale,
the siblings' runs seen and expected over the same open time, the posterior
variance term) as NumPy vectors over all lanes and advances them a minute at a
time, then passes them through the production formulas.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np

from posedge.backoffice.alerting.config import AlertConfig
from posedge.backoffice.alerting.devices import device_faults
from posedge.backoffice.anomalies import AnomalyConfig
from posedge.backoffice.silence import SilenceConfig, StoreCalendar
from posedge.backoffice.silence.evaluate import FleetModel
from posedge.backoffice.silence.learn import learn_sales
from posedge.backoffice.silence.model import LaneStats
from posedge.backoffice.silence.nbinom import episode_threshold, gamma_poisson_zero, poisson_zero
from posedge.simulator.fleet import Fault, Fleet, build_fleet, generate_history
from posedge.simulator.fleet.model import Store
from posedge.simulator.fleet.reader import READER_VARIANTS, pick_variant
from posedge.simulator.fleet.terminal import SimTerminal

TIMEZONES = ("Europe/Berlin", "America/New_York", "Europe/London")
BUDGETS = (0.5, 5.0, 50.0, 500.0, 5000.0)
"""False-alarm budgets per lane-year replayed side by side (the first is the default)."""
FIXED_TIMEOUT_MIN = 30
HEARTBEAT_S = 60.0
EVALUATE_S = AlertConfig().interval_s
"""``serve`` evaluates the alerts this often: an alert fires at the next round."""
RATE_BANDS: tuple[tuple[float, float], ...] = ((0.0, 10.0), (10.0, 20.0), (20.0, 40.0),
                                               (40.0, math.inf))  # fmt: skip
"""Lane rate bands (runs per open hour) for the breakdown of the statistical delay."""


def calendar_of(store: Store) -> StoreCalendar:
    """The back office's calendar of a simulated store (what its operator would file)."""
    hours = tuple(((span,) if span is not None else ()) for span in store.hours.days)
    return StoreCalendar(
        store.id,
        store.timezone,
        hours,
        frozenset(store.holidays),
        frozenset(store.closed_dates),
        {},
    )


@dataclass
class Injected:
    """One injected silence: its label, the lanes it hits and its [start, end) epoch."""

    label: str  # dead-reader, staff-closed, early-close, network
    store: str
    lanes: tuple[str, ...]
    start: float
    end: float
    fault: Fault
    variant: str | None = None  # dead-reader: unplugged, worn-head, no-evidence


@dataclass
class Scenario:
    fleet: Fleet
    start: float
    train_end: float
    end: float
    calendars: dict[str, StoreCalendar]
    injected: list[Injected]
    config: SilenceConfig


def build_scenario(
    lanes: int, stores: int, weeks_train: int, weeks_eval: int, seed: int
) -> Scenario:
    """A fleet starting Monday 2026-10-19 (both DST changes fall in training; Christmas in
    evaluation for the longer runs), with one-off closed days and injected silences."""
    base = build_fleet(lanes, stores, seed=seed, timezones=TIMEZONES)
    start_day = date(2026, 10, 19)
    start = datetime(2026, 10, 19, tzinfo=UTC).timestamp()
    train_end = start + weeks_train * 7 * 86400.0
    end = train_end + weeks_eval * 7 * 86400.0
    rng = random.Random(seed)
    # One store in ten closes for a day (stocktaking), known to its calendar.
    total_days = (weeks_train + weeks_eval) * 7
    new_stores = []
    for store in base.stores:
        if rng.random() < 0.1:
            closed = start_day + timedelta(days=rng.randrange(total_days))
            store = replace(store, closed_dates=frozenset({closed}))
        new_stores.append(store)
    fleet = Fleet(
        stores=tuple(new_stores),
        lanes=base.lanes,
        profile=base.profile,
        burstiness=base.burstiness,
        seed=base.seed,
    )
    calendars = {s.id: calendar_of(s) for s in fleet.stores}
    injected = inject(fleet, calendars, train_end, end, rng, lanes, stores, seed)
    calendars_cfg = SilenceConfig(calendars=calendars)
    return Scenario(fleet, start, train_end, end, calendars, injected, calendars_cfg)


def _open_spans(calendar: StoreCalendar, start: float, end: float) -> list[tuple[float, float]]:
    """Merged open intervals (one per open span of a day)."""
    out: list[tuple[float, float]] = []
    for low, high, _ in calendar.open_segments(start, end):
        if out and abs(out[-1][1] - low) < 1e-6:
            out[-1] = (out[-1][0], high)
        else:
            out.append((low, high))
    return out


def inject(
    fleet: Fleet,
    calendars: dict[str, StoreCalendar],
    start: float,
    end: float,
    rng: random.Random,
    lanes: int,
    stores: int,
    variant_seed: int = 0,
) -> list[Injected]:
    spans = {sid: _open_spans(cal, start, end) for sid, cal in calendars.items()}
    busy: dict[str, list[tuple[float, float]]] = {}

    def free(terminals: Sequence[str], low: float, high: float) -> bool:
        for t in terminals:
            for a, b in busy.get(t, []):
                if low < b + 3600 and a < high + 3600:
                    return False
        return True

    out: list[Injected] = []
    # Dead-reader variants from their own stream: the injections (lanes, times) stay the
    # ones the earlier runs used, whatever the variants.
    variants = random.Random(f"dead-reader variants {variant_seed}")

    def add(
        label: str, kind: str, store: str, terminals: tuple[str, ...], low: float, high: float
    ) -> None:
        target = store if len(terminals) > 1 else terminals[0]
        variant = pick_variant(variants.random()) if kind == "dead-reader" else None
        fault = Fault(kind, target, low, high, terminals, variant)
        out.append(Injected(label, store, terminals, low, high, fault, variant))
        for t in terminals:
            busy.setdefault(t, []).append((low, high))

    plan = [
        ("dead-reader", max(1, lanes // 5)),
        ("staff-closed", max(1, lanes // 10)),
        ("early-close", max(1, stores // 5)),
        ("network", max(1, stores // 5)),
        ("dead-terminal", max(1, lanes // 20)),
        ("stuck-uploads", max(1, lanes // 20)),
    ]
    for label, count in plan:
        made = tries = 0
        while made < count and tries < count * 50:
            tries += 1
            lane = fleet.lanes[rng.randrange(len(fleet.lanes))]
            store = lane.store
            options = [s for s in spans[store] if s[1] - s[0] >= 4 * 3600]
            if not options:
                continue
            open_s, close_s = options[rng.randrange(len(options))]
            if label == "dead-reader":
                low = rng.uniform(open_s, close_s - 1800)
                high = low + 3 * 3600
                terminals: tuple[str, ...] = (lane.terminal,)
                kind = "dead-reader"
            elif label == "staff-closed":
                low = close_s - rng.uniform(3600, 3 * 3600)
                high = close_s
                terminals = (lane.terminal,)
                kind = "silent"
            elif label == "early-close":
                low = close_s - rng.uniform(3600, 3 * 3600)
                high = close_s
                terminals = fleet.store_by_id[store].lanes
                kind = "silent"
            elif label == "stuck-uploads":
                low = rng.uniform(open_s, close_s - 2 * 3600)
                high = low + rng.uniform(3600, 2 * 3600)
                terminals = (lane.terminal,)
                kind = "backlog"
            elif label == "dead-terminal":
                low = rng.uniform(open_s, close_s - 1800)
                high = low + 3 * 3600
                terminals = (lane.terminal,)
                kind = "dead"
            else:
                low = rng.uniform(open_s, close_s - 2 * 3600)
                high = low + rng.uniform(1800, 2 * 3600)
                terminals = fleet.store_by_id[store].lanes
                kind = "network-down"
            if not free(terminals, low, high):
                continue
            add(label, kind, store, terminals, low, high)
            made += 1
    return out


# -- training ------------------------------------------------------------------------------------


@dataclass
class Histories:
    sales: dict[str, np.ndarray]  # sale start times (what the lane did)
    delivered: dict[str, np.ndarray]  # when each reached the back office
    no_heartbeats: dict[str, list[tuple[float, float]]]
    total_sales: int = 0
    attempts: dict[str, np.ndarray] = field(default_factory=dict)  # worn-head customers


def histories(scenario: Scenario) -> Histories:
    faults = [i.fault for i in scenario.injected]
    out = Histories({}, {}, {})
    for lane in generate_history(scenario.fleet, scenario.start, scenario.end, faults):
        sales = np.frombuffer(lane.sales, dtype=np.float64).copy()
        out.sales[lane.terminal] = sales
        out.delivered[lane.terminal] = np.frombuffer(lane.delivered(), dtype=np.float64).copy()
        out.no_heartbeats[lane.terminal] = lane.no_heartbeats
        out.attempts[lane.terminal] = np.frombuffer(lane.attempts, dtype=np.float64).copy()
        out.total_sales += len(sales)
    return out


def train(scenario: Scenario, hist: Histories) -> FleetModel:
    """The product's learner over the training weeks, lane by lane."""
    config = scenario.config
    stats: dict[str, LaneStats] = {}
    for lane in scenario.fleet.lanes:
        times = hist.sales[lane.terminal]
        cut = int(np.searchsorted(times, scenario.train_end))
        learned = LaneStats(lane.terminal)
        learn_sales(learned, times[:cut].tolist(), scenario.calendars[lane.store], config)
        stats[lane.terminal] = learned
    store_of: dict[str, str | None] = {lane.terminal: lane.store for lane in scenario.fleet.lanes}
    return FleetModel(stats, store_of, config)


# -- replay -----------------------------------------------------------------------------------


@dataclass
class Replay:
    minutes: int
    alarms: dict[str, list[tuple[int, int]]]  # method -> (minute, lane index)
    store_quiet: list[tuple[int, int]] = field(default_factory=list)
    seconds: float = 0.0


def replay(scenario: Scenario, hist: Histories, model: FleetModel) -> Replay:
    config = scenario.config
    if config.budget_per_lane_year not in BUDGETS:
        raise ValueError(f"the configured budget must be one of {BUDGETS}")
    fleet = scenario.fleet
    lanes = fleet.lanes
    n = len(lanes)
    store_ids = [s.id for s in fleet.stores]
    store_index = {sid: i for i, sid in enumerate(store_ids)}
    sidx = np.array([store_index[lane.store] for lane in lanes])
    n_stores = len(store_ids)
    t0 = scenario.train_end
    minutes = round((scenario.end - t0) / 60.0)
    # Store open flag and local hour of week per minute.
    open_ = np.zeros((n_stores, minutes), dtype=bool)
    how_ = np.zeros((n_stores, minutes), dtype=np.int16)
    for sid, i in store_index.items():
        for low, high, how in scenario.calendars[sid].open_segments(t0, scenario.end):
            a, b = round((low - t0) / 60.0), round((high - t0) / 60.0)
            open_[i, a:b] = True
            how_[i, a:b] = how
    # Learned rates (per hour) and posterior rate parameters, per lane and bin.
    b0 = config.prior_strength_h
    rates = np.zeros((n, 168))
    beta = np.zeros((n, 168))
    level_shape = np.zeros(n)
    episodes = np.zeros(n)

    for li, lane in enumerate(lanes):
        fit = model.fits[lane.terminal]
        rates[li] = [fit.bin(h, b0)[0] for h in range(168)]
        beta[li] = [b0 + e for e in fit.stats.exposure]
        level_shape[li] = fit.level_shape
        episodes[li] = fit.weekly_runs * 365.25 / 7
    thresholds = {b: np.array([episode_threshold(b, e) for e in episodes]) for b in BUDGETS}
    methods = ["fixed-30min"] + [f"{m}@{b:g}" for b in BUDGETS for m in ("posedge", "poisson")]
    # What the back office sees per minute: any sale (ends a silence), runs (sibling counts).
    sale_any = np.zeros((minutes, n), dtype=bool)
    runs = np.zeros((minutes, n), dtype=np.int16)
    suppressed = np.zeros((minutes, n), dtype=bool)
    for li, lane in enumerate(lanes):
        own = hist.sales[lane.terminal]
        got = hist.delivered[lane.terminal]
        is_run = np.ones(len(own), dtype=bool)
        is_run[1:] = np.diff(own) >= config.run_gap_s
        keep = (got >= t0) & (got < scenario.end)
        m = ((got[keep] - t0) // 60).astype(np.int64)
        sale_any[m, li] = True
        np.add.at(runs[:, li], m, is_run[keep].astype(np.int16))
        grace = config.heartbeat_grace * HEARTBEAT_S
        for low, high in hist.no_heartbeats[lane.terminal]:
            a = max(0, math.ceil((low + grace - t0) / 60.0))
            b = min(minutes, math.ceil((min(high, scenario.end) - t0) / 60.0))
            if b > a:
                suppressed[a:b, li] = True
    # sales_not_arriving mutes the lane test from its detection to the end of a stall.
    lane_index = {lane.terminal: li for li, lane in enumerate(lanes)}
    for inj in scenario.injected:
        if inj.label == "stuck-uploads":
            detected = stuck_detection(inj, hist, config)
            if detected is not None:
                a = max(0, math.ceil((detected - t0) / 60.0))
                b = min(minutes, math.ceil((inj.end - t0) / 60.0))
                suppressed[a:b, lane_index[inj.lanes[0]]] = True
    has_sib = np.bincount(sidx, minlength=n_stores)[sidx] > 1
    kappa = config.store_shape
    lane_shape = config.lane_shape
    ar = np.arange(n)
    E = np.zeros(n)
    V = np.zeros(n)
    Es = np.zeros(n)
    Os = np.zeros(n)
    F = np.zeros(n)
    age = np.full(n, 1e9)  # minutes since the lane's last sale minute
    dead_min = config.run_gap_s / 60.0
    state = {m: np.zeros(n, dtype=bool) for m in methods}
    alarms: dict[str, list[tuple[int, int]]] = {m: [] for m in methods}
    threshold = thresholds[config.budget_per_lane_year]
    quiet_flags: list[tuple[int, int]] = []
    quiet_on = np.zeros(n, dtype=bool)
    for m in range(minutes):
        op = open_[sidx, m]
        hw = how_[sidx, m]
        rr = rates[ar, hw] * op / 60.0
        Es += np.bincount(sidx, rr, n_stores)[sidx] - rr
        age += 1.0
        # The lane's own silence starts run_gap_s after its last sale (evaluate.lane_verdict).
        r = rr * np.clip(age - dead_min, 0.0, 1.0)
        E += r
        V += r / beta[ar, hw]
        run_m = runs[m]
        Os += np.bincount(sidx, run_m, n_stores)[sidx] - run_m
        F += op
        sold = sale_any[m]
        if sold.any():
            E[sold] = V[sold] = Es[sold] = Os[sold] = F[sold] = 0.0
            age[sold] = 0.0
            quiet_on[sold] = False
            for flags in state.values():
                flags[sold] = False
        ok = op & ~suppressed[m]
        # posedge: the production formulas (evaluate.lane_verdict) on the running sums.
        store_a = kappa + Os
        theta = store_a / (kappa + Es)
        with np.errstate(divide="ignore", invalid="ignore"):
            post = np.where(V > 0, E * E / np.where(V > 0, V, 1.0), np.inf)
        shape = 1.0 / (1.0 / store_a + 1.0 / lane_shape + 1.0 / level_shape + 1.0 / post)
        p = np.where(E > 0, gamma_poisson_zero(theta * E, shape), 1.0)
        quiet = has_sib & (Os == 0) & (gamma_poisson_zero(Es, kappa) < threshold)
        newq = ok & quiet & ~quiet_on
        quiet_on |= newq
        for li in np.flatnonzero(newq):
            quiet_flags.append((m, int(li)))
        pp = poisson_zero(E)
        hits = {"fixed-30min": ok & (F >= FIXED_TIMEOUT_MIN)}
        for b, thr in thresholds.items():
            hits[f"posedge@{b:g}"] = ok & ~quiet & (p < thr)
            hits[f"poisson@{b:g}"] = ok & (pp < thr)
        for method, hit in hits.items():
            new = hit & ~state[method]
            if new.any():
                state[method] |= new
                alarms[method].extend((m, int(li)) for li in np.flatnonzero(new))
    return Replay(minutes, alarms, quiet_flags)


def stuck_detection(inj: Injected, hist: Histories, config: SilenceConfig) -> float | None:
    """When ``sales_not_arriving`` turns active for a lane whose uploads stall: the oldest
    unsynced event is the first sale after the stall began; its age (reported, grown by the
    time since the heartbeat) passes ``max_unsynced_age_s`` then. None: nothing to upload."""
    sales = hist.sales[inj.lanes[0]]
    first = int(np.searchsorted(sales, inj.start))
    if first >= len(sales) or sales[first] >= inj.end:
        return None
    return float(sales[first]) + config.max_unsynced_age_s


# -- scoring -----------------------------------------------------------------------------------


def _pct(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if len(values) else None


def score(scenario: Scenario, hist: Histories, model: FleetModel, rep: Replay) -> dict[str, Any]:
    fleet = scenario.fleet
    lanes = fleet.lanes
    index = {lane.terminal: i for i, lane in enumerate(lanes)}
    t0 = scenario.train_end
    b0 = scenario.config.prior_strength_h
    # Per lane: the injected silences that hit it, as minute intervals.
    by_lane: dict[int, list[tuple[int, int, int]]] = {}
    for k, inj in enumerate(scenario.injected):
        a, b = int((inj.start - t0) // 60), math.ceil((inj.end - t0) / 60.0)
        for t in inj.lanes:
            by_lane.setdefault(index[t], []).append((a, b, k))
    lane_years = len(lanes) * (scenario.end - t0) / (365.25 * 86400.0)
    busy_fault: dict[int, bool] = {}
    fault_rate: dict[int, float] = {}
    for k, inj in enumerate(scenario.injected):
        if inj.label != "dead-reader":
            continue
        lane = fleet.lane_by_terminal[inj.lanes[0]]
        fit = model.fits[lane.terminal]
        cal = scenario.calendars[lane.store]
        weekly = cal.weekly_open_hours()
        open_rates = [fit.bin(h, b0)[0] for h in range(168) if weekly[h] > 0]
        local = datetime.fromtimestamp(inj.start, cal.zone)
        how = local.weekday() * 24 + local.hour
        fault_rate[k] = fit.bin(how, b0)[0]
        busy_fault[k] = fault_rate[k] >= float(np.percentile(open_rates, 75))
    results: dict[str, Any] = {}
    firsts: dict[str, dict[int, int]] = {}
    for method, alarms in rep.alarms.items():
        first: dict[int, int] = {}
        firsts[method] = first
        false_alarms = 0
        unwanted_early = 0
        during_network = 0
        for m, li in alarms:
            hit = None
            for a, b, k in by_lane.get(li, []):
                if a <= m < b:
                    hit = k
                    break
            if hit is None:
                false_alarms += 1
                continue
            label = scenario.injected[hit].label
            if label == "early-close":
                unwanted_early += 1
            elif label in ("network", "dead-terminal", "stuck-uploads"):
                during_network += 1
            elif hit not in first:
                first[hit] = m
        per: dict[str, Any] = {
            "alarms": len(alarms),
            "false_alarms": false_alarms,
            "false_alarms_per_lane_year": false_alarms / lane_years,
            "lane_alarms_in_early_closes": unwanted_early,
            "lane_alarms_in_outages": during_network,
        }
        for label in ("dead-reader", "staff-closed"):
            delays: list[float] = []
            busy_delays: list[float] = []
            total = missed = 0
            for k, inj in enumerate(scenario.injected):
                if inj.label != label:
                    continue
                total += 1
                if k not in first:
                    missed += 1
                    continue
                delay = (first[k] + 1) * 60.0 + t0 - inj.start
                delays.append(delay / 60.0)
                if busy_fault.get(k):
                    busy_delays.append(delay / 60.0)
            per[label] = {
                "silences": total,
                "detected": total - missed,
                "missed": missed,
                "median_delay_min": _pct(delays, 50),
                "p90_delay_min": _pct(delays, 90),
            }
            if label == "dead-reader":
                per[label]["busy_silences"] = sum(1 for k in busy_fault if busy_fault[k])
                per[label]["busy_detected"] = len(busy_delays)
                per[label]["busy_median_delay_min"] = _pct(busy_delays, 50)
        results[method] = per
    # The exact signal for network outages: heartbeat age over grace × interval.
    exact: dict[str, list[float]] = {"network": [], "dead-terminal": []}
    grace = scenario.config.heartbeat_grace * HEARTBEAT_S
    stuck: list[float] = []
    stuck_missed = 0
    for inj in scenario.injected:
        if inj.label == "stuck-uploads":
            detected = stuck_detection(inj, hist, scenario.config)
            if detected is None or detected >= inj.end:
                stuck_missed += 1
            else:
                stuck.append((math.ceil((detected - t0) / 60.0) * 60.0 + t0 - inj.start) / 60.0)
            continue
        if inj.label not in exact:
            continue
        for t in inj.lanes:
            # The last heartbeat before the outage (every 60 s at a per-lane phase); the
            # signal is active from grace × interval after it, seen at the next minute.
            phase = (index[t] * 7.0) % HEARTBEAT_S
            last = inj.start - ((inj.start - scenario.start - phase) % HEARTBEAT_S)
            detected = math.ceil((last + grace - t0) / 60.0) * 60.0 + t0
            exact[inj.label].append(max(0.0, detected - inj.start) / 60.0)
    quiet_in_early = 0
    for m, li in rep.store_quiet:
        for a, b, k in by_lane.get(li, []):
            if a <= m < b and scenario.injected[k].label == "early-close":
                quiet_in_early += 1
                break
    results["terminal_not_alive"] = {
        label: {
            "silences": sum(1 for i in scenario.injected if i.label == label),
            "lanes": len(delays),
            "median_delay_min": _pct(delays, 50),
            "p90_delay_min": _pct(delays, 90),
        }
        for label, delays in exact.items()
    }
    results["sales_not_arriving"] = {
        "stuck-uploads": {
            "silences": sum(1 for i in scenario.injected if i.label == "stuck-uploads"),
            "detected": len(stuck),
            "missed": stuck_missed,
            "median_delay_min": _pct(stuck, 50),
            "p90_delay_min": _pct(stuck, 90),
        }
    }
    results["store_quiet"] = {
        "flags": len(rep.store_quiet),
        "in_early_closes": quiet_in_early,
        "early_close_lanes": sum(
            len(i.lanes) for i in scenario.injected if i.label == "early-close"
        ),
    }
    results["lane_years"] = lane_years
    default = f"posedge@{scenario.config.budget_per_lane_year:g}"
    stat_at = {k: (m + 1) * 60.0 + t0 for k, m in firsts[default].items()}
    results["system"] = system_scores(scenario, hist, stat_at, busy_fault, fault_rate,
                                      results[default]["false_alarms_per_lane_year"])  # fmt: skip
    results["bands"] = {
        "bands": [band_name(b) for b in RATE_BANDS],
        "poisson_floor": poisson_floor(scenario),
        "statistics": {
            method: rate_bands(scenario, {k: (m + 1) * 60.0 + t0 for k, m in first.items()},
                               busy_fault, fault_rate)
            for method, first in firsts.items() if method.startswith("posedge@")
        },
        "system": rate_bands(scenario, results["system"]["detected_at"], busy_fault,
                             fault_rate),
    }  # fmt: skip
    results["system"].pop("detected_at")
    results["busy_hours_bound"] = busy_hours_bound(scenario, model)
    return results


def busy_hours_bound(
    scenario: Scenario, model: FleetModel, delay_h: float = 0.25
) -> dict[str, Any]:
    """What any detector that watches one lane's sales must pay to alarm ``delay_h`` into a
    busy-hour silence: if runs are Poisson at the learned rates (they nearly are: the plain
    Poisson detector is close to its budget), a natural silence lasts ``delay_h`` with
    probability ``exp(-rate * delay_h)``, and a lane has ``rate`` such silences starting per
    open hour. Busy hours: each lane's top quartile of open hour-of-week bins by rate."""
    b0 = scenario.config.prior_strength_h
    per_lane = []
    busy_rates = []
    for lane in scenario.fleet.lanes:
        fit = model.fits[lane.terminal]
        weekly = scenario.calendars[lane.store].weekly_open_hours()
        rates = {h: fit.bin(h, b0)[0] for h in range(168) if weekly[h] > 0}
        if not rates:
            continue
        cut = float(np.percentile(list(rates.values()), 75))
        fa = 0.0
        for h, r in rates.items():
            if r >= cut:
                fa += r * weekly[h] * 365.25 / 7 * math.exp(-r * delay_h)
                busy_rates.append(r)
        per_lane.append(fa)
    return {
        "delay_min": delay_h * 60,
        "median_busy_runs_per_hour": float(np.median(busy_rates)),
        "false_alarms_per_lane_year_mean": float(np.mean(per_lane)),
        "false_alarms_per_lane_year_median": float(np.median(per_lane)),
    }


# -- posedge as the system: evidence from the terminal + statistics ------------------------------


def next_round(when: float) -> float:
    """The evaluation round of ``serve`` that first sees something reported at ``when``."""
    return math.ceil(when / EVALUATE_S) * EVALUATE_S


@dataclass
class Evidence:
    """When the back office's alerts on a dead reader's own evidence fire (None: never
    within the silence)."""

    device_at: float | None = None
    """``device_fault``: the first round after a heartbeat carrying a critical reader alert."""
    flag_at: float | None = None
    """``card_read_failed``: the first round after the flag's second failed sale ended."""


def reader_evidence(scenario: Scenario, hist: Histories, inj: Injected, index: int) -> Evidence:
    """Replays the dead reader on the simulator's terminal (the agent's health defaults,
    alert rules and lifecycle), sends its heartbeats every minute at the lane's phase
    through the back office's own :func:`device_faults`, and applies the
    ``card_read_failed`` rule to the sales it journals."""
    fleet = scenario.fleet
    terminal = inj.lanes[0]
    lane = fleet.lane_by_terminal[terminal]
    sim = SimTerminal(lane, fleet.store_of(lane), seed=fleet.seed)
    sales = hist.sales[terminal]
    cut = int(np.searchsorted(sales, inj.start))
    for when in sales[max(0, cut - 20) : cut]:  # the reader's recent good swipes
        sim.reader.swipe(float(when) + 5.0, True)
    out = Evidence()
    if inj.variant == "unplugged":
        sim.reader.unplug(inj.start)
        sim.reader.replug(inj.end)
    elif inj.variant == "worn-head":
        attempts = hist.attempts[terminal]
        for when in attempts[(attempts >= inj.start) & (attempts < inj.end)]:
            sim.sell_unreadable(float(when))
        sim.commit_all()
        ends = sorted(
            datetime.fromisoformat(e["ts"]).timestamp()
            for e in sim.events()
            if e["type"] in ("sale.cancelled", "sale.abandoned")
        )
        rule = AnomalyConfig()
        n = rule.read_fail_threshold
        for i in range(n - 1, len(ends)):
            if ends[i] - ends[i - n + 1] <= rule.read_fail_window_s and ends[i] < inj.end:
                out.flag_at = next_round(ends[i])
                break
    else:
        return out
    phase = (index * 7.0) % HEARTBEAT_S
    beat = inj.start + ((phase + scenario.start - inj.start) % HEARTBEAT_S)
    while beat < inj.end:
        if device_faults(sim.heartbeat(beat)):
            out.device_at = next_round(beat)
            break
        beat += HEARTBEAT_S
    return out


def system_scores(
    scenario: Scenario,
    hist: Histories,
    stat_at: dict[int, float],
    busy_fault: dict[int, bool],
    fault_rate: dict[int, float],
    stat_false_alarms: float,
) -> dict[str, Any]:
    """posedge as the system on the lane silences: the first alert of any kind on the lane
    (device_fault, card_read_failed, lane_not_selling at the default budget), per silence
    kind and dead-reader variant, next to the statistical signal alone.

    False alarms: the statistical signal's. The simulator's healthy readers never fail a
    swipe or drop off, so device_fault and card_read_failed raise none here — in the field
    they will raise some (a reader replugged by staff, a demagnetised card or two)."""
    index = {lane.terminal: i for i, lane in enumerate(scenario.fleet.lanes)}
    detected_at: dict[int, float] = {}
    by_signal: dict[int, str] = {}
    rows: dict[str, dict[str, list[float | None]]] = {}
    for k, inj in enumerate(scenario.injected):
        if inj.label not in ("dead-reader", "staff-closed"):
            continue
        evidence = (
            reader_evidence(scenario, hist, inj, index[inj.lanes[0]])
            if inj.label == "dead-reader"
            else Evidence()
        )
        candidates = {
            "device_fault": evidence.device_at,
            "card_read_failed": evidence.flag_at,
            "lane_not_selling": stat_at.get(k),
        }
        # lane_not_selling's alarms are already those within the silence (score()).
        found = {
            n: t
            for n, t in candidates.items()
            if t is not None and (t < inj.end or n == "lane_not_selling")
        }
        group = inj.label if inj.variant is None else f"{inj.label}:{inj.variant}"
        for key in (group, inj.label) if group != inj.label else (group,):
            slot = rows.setdefault(key, {"system": [], "statistics": [], "busy_system": [],
                                         "busy_statistics": []})  # fmt: skip
            system = min(found.values()) if found else None
            statistics = found.get("lane_not_selling")
            for name, at in (("system", system), ("statistics", statistics)):
                delay = None if at is None else (at - inj.start) / 60.0
                slot[name].append(delay)
                if busy_fault.get(k):
                    slot[f"busy_{name}"].append(delay)
        if found:
            detected_at[k] = min(found.values())
            by_signal[k] = min(found, key=lambda n: found[n])
    out: dict[str, Any] = {"false_alarms_per_lane_year": stat_false_alarms, "kinds": {}}
    for group, slot in rows.items():
        entry: dict[str, Any] = {"silences": len(slot["system"])}
        for name in ("system", "statistics"):
            got = [d for d in slot[name] if d is not None]
            busy = [d for d in slot[f"busy_{name}"] if d is not None]
            entry[name] = {
                "detected": len(got),
                "missed": len(slot[name]) - len(got),
                "median_delay_min": _pct(got, 50),
                "p90_delay_min": _pct(got, 90),
                "busy_silences": len(slot[f"busy_{name}"]),
                "busy_detected": len(busy),
                "busy_median_delay_min": _pct(busy, 50),
            }
        out["kinds"][group] = entry
    first_signal: dict[str, dict[str, int]] = {}
    for k, name in by_signal.items():
        inj = scenario.injected[k]
        group = inj.label if inj.variant is None else f"{inj.label}:{inj.variant}"
        first_signal.setdefault(group, {}).setdefault(name, 0)
        first_signal[group][name] += 1
    out["first_signal"] = first_signal
    out["variant_shares"] = dict(READER_VARIANTS)
    out["detected_at"] = detected_at
    return out


def band_name(band: tuple[float, float]) -> str:
    low, high = band
    return f">= {low:g}" if high == math.inf else f"{low:g}-{high:g}"


def rate_bands(
    scenario: Scenario,
    detected_at: dict[int, float],
    busy_fault: dict[int, bool],
    fault_rate: dict[int, float],
) -> dict[str, Any]:
    """Dead readers by the lane's learned rate (runs per open hour) in the hour the silence
    began: per band, silences, detected, the median delay of those detected and the median
    counting a miss as longer than the silence (None when more than half were missed);
    for busy-hour silences and for all of them."""
    out: dict[str, Any] = {}
    for scope in ("busy", "all"):
        per: dict[str, Any] = {}
        for band in RATE_BANDS:
            delays: list[float] = []
            total = 0
            for k, inj in enumerate(scenario.injected):
                if inj.label != "dead-reader" or (scope == "busy" and not busy_fault.get(k)):
                    continue
                if not band[0] <= fault_rate[k] < band[1]:
                    continue
                total += 1
                at = detected_at.get(k)
                if at is not None:
                    delays.append((at - inj.start) / 60.0)
            with_misses = sorted(delays) + [math.inf] * (total - len(delays))
            median_all = float(np.median(with_misses)) if with_misses else None
            per[band_name(band)] = {
                "silences": total,
                "detected": len(delays),
                "median_delay_min": _pct(delays, 50),
                "median_with_misses_min": (
                    median_all if median_all is not None and math.isfinite(median_all) else None
                ),
            }
        out[scope] = per
    return out


def poisson_floor(scenario: Scenario, rates: Sequence[float] = (5, 10, 20, 40, 60, 80)) -> Any:
    """The shortest delay any statistical lane test at the default budget can have on a lane
    selling ``rate`` runs per open hour all year: with the threshold ``p* = budget / N``
    (``N = rate x open hours a year`` silences) and Poisson runs (no burstiness, no rate
    uncertainty: the real test is slower), a silence is alarmed once ``exp(-rate t) < p*``,
    i.e. ``t = -ln(p*) / rate``. Open hours: the fleet's median store week."""
    weekly = sorted(sum(c.weekly_open_hours()) for c in scenario.calendars.values())
    hours_year = weekly[len(weekly) // 2] * 365.25 / 7
    budget = scenario.config.budget_per_lane_year
    out = {}
    for rate in rates:
        threshold = min(0.5, budget / (rate * hours_year))
        out[f"{rate:g}"] = -math.log(threshold) / rate * 60.0
    return {"open_hours_per_year": hours_year, "minutes_by_rate": out}
