"""Evaluating the fleet now: the three silence signals of every terminal.

:func:`evaluate_fleet` reads the terminals (heartbeats, heads), the registry
(which store a lane is in) and the learned lane state, and returns one
:class:`~.config.SilenceSignal` per terminal and kind. The lane-not-selling
test (docs/silence.md) per lane:

1. suppressed while its store is closed (calendar), while one of the exact
   signals is active (its sales may be waiting in the terminal), and until
   anything is learned about it or its store;
2. ``E`` = the lane's expected sale runs over the open time of its silence
   (since its last sale, at most ``lookback_s``), from its Gamma posterior rates
   in local hour of week;
3. the sibling lanes of its store over the same open time: ``O`` runs seen,
   ``E_s`` expected; the store's activity multiplier is
   ``Gamma(k + O, k + E_s)`` (all quiet: the store is quiet, not the lane);
4. ``p = (1 + theta * E / a) ** -a`` with ``theta`` that multiplier's mean and ``a``
   the combined shape (store multiplier, lane-day variation, posterior
   uncertainty): the negative-binomial probability of no run;
5. active when ``p`` is below ``budget / (the lane's runs a year)``.
"""

from __future__ import annotations

import bisect
import operator
import weakref
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .calendar import StoreCalendar
from .config import SilenceConfig, SilenceSignal
from .learn import load_lanes, store_of_terminals
from .model import LaneStats, Profile, pooled_profile, unpack_times
from .nbinom import episode_threshold, gamma_poisson_zero
from .signals import sales_not_arriving, terminal_not_alive

if TYPE_CHECKING:
    from ..store import BackofficeStore, TerminalState


@dataclass
class LaneFit:
    """A lane's posterior, kept lazy: the level ``g`` and the prior are enough to give any
    bin's rate and shape."""

    stats: LaneStats
    prior: Profile
    level: float
    level_shape: float
    weekly_runs: float

    def bin(self, how: int, b0: float) -> tuple[float, float]:
        """(posterior mean rate per hour, posterior shape) of one hour-of-week bin."""
        alpha = b0 * self.level * self.prior.rates[how] + self.stats.counts[how]
        return alpha / (b0 + self.stats.exposure[how]), alpha


def fit_lane(
    stats: LaneStats, prior: Profile, weekly_open: Sequence[float], config: SilenceConfig
) -> LaneFit:
    """The lane's level against ``prior`` and its expected runs per week."""
    expected = sum(map(operator.mul, prior.rates, stats.exposure))
    observed = sum(stats.counts)
    l0 = config.level_prior_runs
    level = (l0 + observed) / (l0 + expected) if expected > 0 else 1.0
    b0 = config.prior_strength_h
    # weekly runs = sum over open bins of open_h * (b0 g p_h + c_h) / (b0 + e_h), in C loops.
    inverse = [1.0 / (b0 + e) for e in stats.exposure]
    weighted = list(map(operator.mul, weekly_open, inverse))
    weekly = b0 * level * sum(map(operator.mul, weighted, prior.rates)) + sum(
        map(operator.mul, weighted, stats.counts)
    )
    return LaneFit(stats, prior, level, l0 + observed, weekly)


@dataclass(frozen=True)
class LaneVerdict:
    """What the lane-not-selling test found (also used by the evaluation harness)."""

    probability: float
    threshold: float
    expected: float
    siblings_seen: int
    siblings_expected: float
    store_quiet: bool
    silent_since: float
    open_hours: float


def lane_verdict(
    fit: LaneFit,
    siblings: Sequence[LaneFit],
    segments: Sequence[tuple[float, float, int]],
    now: float,
    config: SilenceConfig,
    ends: Sequence[float] | None = None,
    sibling_rates: Callable[[int], float] | None = None,
) -> LaneVerdict:
    """The test of one lane over ``segments`` (its store's open time, increasing; ``ends``:
    their end times, when the caller has them). ``sibling_rates(how)``: the siblings'
    summed rate in a bin (computed from ``siblings`` when not given)."""
    stats = fit.stats
    last = stats.last_sale_at if stats.last_sale_at is not None else now - config.lookback_s
    # A run may continue for run_gap_s after a sale: the silence is judged from then on.
    since = max(last + config.run_gap_s, now - config.lookback_s)
    hours: dict[int, float] = {}
    if ends is None:
        ends = [s[1] for s in segments]
    for index in range(bisect.bisect_right(ends, since), len(segments)):
        seg_start, seg_end, how = segments[index]
        low, high = max(seg_start, since), min(seg_end, now)
        if high > low:
            hours[how] = hours.get(how, 0.0) + (high - low) / 3600.0
    b0 = config.prior_strength_h
    expected = 0.0
    variance = 0.0
    sib_expected = 0.0
    for how, t in hours.items():
        rate, alpha = fit.bin(how, b0)
        e = rate * t
        expected += e
        if alpha > 0:
            variance += e * e / alpha
        if sibling_rates is not None:
            sib_expected += sibling_rates(how) * t
        else:
            sib_expected += sum(sib.bin(how, b0)[0] for sib in siblings) * t
    seen = 0
    if hours:
        for sib in siblings:
            recent = sib.stats.recent
            seen += len(recent) - bisect.bisect_right(recent, since)
    kappa = config.store_shape
    store_a, store_b = kappa + seen, kappa + sib_expected
    theta = store_a / store_b
    # Squared coefficients of variation add (nbinom.combined_shape, inlined: hot loop).
    inverse = 1.0 / store_a + 1.0 / config.lane_shape + 1.0 / fit.level_shape
    if variance > 0:
        inverse += variance / (expected * expected)
    shape = 1.0 / inverse
    probability = gamma_poisson_zero(theta * expected, shape) if expected > 0 else 1.0
    threshold = episode_threshold(config.budget_per_lane_year, fit.weekly_runs * 365.25 / 7.0)
    store_quiet = (
        bool(siblings) and seen == 0 and gamma_poisson_zero(sib_expected, kappa) < threshold
    )
    return LaneVerdict(
        probability, threshold, expected, seen, sib_expected, store_quiet, last,
        sum(hours.values()),
    )  # fmt: skip


class FleetModel:
    """The fitted lanes of a fleet: priors pooled per store, then over the fleet."""

    def __init__(
        self,
        lanes: Mapping[str, LaneStats],
        store_of: Mapping[str, str | None],
        config: SilenceConfig,
    ) -> None:
        self.config = config
        self.store_of = store_of
        fleet = pooled_profile(lanes.values())
        by_store: dict[str | None, list[LaneStats]] = defaultdict(list)
        for terminal, stats in lanes.items():
            by_store[store_of.get(terminal)].append(stats)
        self.fits: dict[str, LaneFit] = {}
        self._rate_sums: dict[tuple[str, int], float] = {}
        self.members: dict[str | None, list[str]] = defaultdict(list)
        self.calendars: dict[str | None, StoreCalendar] = {}
        for store, members in by_store.items():
            calendar = config.calendar(store)
            self.calendars[store] = calendar
            weekly_open = calendar.weekly_open_hours()
            prior = pooled_profile(members, fleet) if store is not None else fleet
            if prior is None:
                continue
            for stats in members:
                self.fits[stats.terminal] = fit_lane(stats, prior, weekly_open, config)
                if store is not None:
                    self.members[store].append(stats.terminal)

    def _store_rate(self, store: str, how: int) -> float:
        """Sum over the store's lanes of their rate in bin ``how`` (cached)."""
        key = (store, how)
        found = self._rate_sums.get(key)
        if found is None:
            b0 = self.config.prior_strength_h
            found = sum(self.fits[t].bin(how, b0)[0] for t in self.members.get(store, []))
            self._rate_sums[key] = found
        return found

    def verdict(
        self,
        terminal: str,
        now: float,
        segments: Sequence[tuple[float, float, int]],
        ends: Sequence[float] | None = None,
    ) -> LaneVerdict | None:
        fit = self.fits.get(terminal)
        if fit is None:
            return None
        store = self.store_of.get(terminal)
        if store is None:
            return lane_verdict(fit, [], segments, now, self.config, ends)
        siblings = [self.fits[t] for t in self.members.get(store, []) if t != terminal]
        b0 = self.config.prior_strength_h

        def sibling_rates(how: int) -> float:
            return self._store_rate(store, how) - fit.bin(how, b0)[0]

        return lane_verdict(fit, siblings, segments, now, self.config, ends, sibling_rates)


def lane_not_selling(
    terminal: str,
    store: str | None,
    model: FleetModel,
    now: float,
    segments: Sequence[tuple[float, float, int]],
    open_now: bool,
    suppressed_by: str | None,
    ends: Sequence[float] | None = None,
) -> SilenceSignal:
    def quiet(summary: str, **details: object) -> SilenceSignal:
        return SilenceSignal(
            "lane_not_selling", terminal, store, False, 1.0, 0.0, summary, dict(details)
        )

    if not open_now:
        return quiet(f"{terminal}: store closed", suppressed="store closed")
    if suppressed_by is not None:
        return quiet(
            f"{terminal}: not judged while {suppressed_by} (its sales may be held by the terminal)",
            suppressed=suppressed_by,
        )
    verdict = model.verdict(terminal, now, segments, ends)
    if verdict is None:
        return quiet(f"{terminal}: nothing learned yet", suppressed="no history")
    details: dict[str, object] = {
        "silent_since": verdict.silent_since,
        "open_hours": round(verdict.open_hours, 4),
        "expected_runs": round(verdict.expected, 4),
        "siblings_runs_seen": verdict.siblings_seen,
        "siblings_runs_expected": round(verdict.siblings_expected, 4),
        "store_quiet": verdict.store_quiet,
        "cold_start": model.fits[terminal].level_shape < 2 * model.config.level_prior_runs,
    }
    minutes = verdict.open_hours * 60.0
    if verdict.store_quiet:
        details["suppressed"] = "store quiet"
        return SilenceSignal(
            "lane_not_selling", terminal, store, False, verdict.probability, verdict.threshold,
            f"{terminal}: the whole store is quiet ({verdict.siblings_expected:.1f} runs expected "
            "at its other lanes, none seen): a store-level condition, not this lane",
            details,
        )  # fmt: skip
    active = verdict.probability < verdict.threshold
    if active:
        summary = (
            f"{terminal}: no sale for {minutes:.0f} open minutes; {verdict.expected:.1f} sale runs "
            f"expected, p = {verdict.probability:.2g} < {verdict.threshold:.2g}"
        )
    else:
        summary = f"{terminal}: silent {minutes:.0f} open minutes, p = {verdict.probability:.2g}"
    return SilenceSignal(
        "lane_not_selling", terminal, store, active, verdict.probability, verdict.threshold,
        summary, details,
    )  # fmt: skip


@dataclass
class _Fitted:
    model: FleetModel
    fitted_at: float
    config: SilenceConfig
    terminals: frozenset[str]


_FITTED: weakref.WeakKeyDictionary[BackofficeStore, _Fitted] = weakref.WeakKeyDictionary()


def fleet_model(store: BackofficeStore, now: float, config: SilenceConfig) -> FleetModel:
    """The fitted lanes, reused for ``config.refit_s`` (per store object and config); each
    lane's last sale and recent runs are refreshed from the database on every call."""
    rows = store.db.execute("SELECT terminal, last_sale_at, recent FROM silence_lanes").fetchall()
    terminals = frozenset(str(row[0]) for row in rows)
    fitted = _FITTED.get(store)
    if (
        fitted is None
        or fitted.config is not config
        or fitted.terminals != terminals
        or not 0 <= now - fitted.fitted_at < config.refit_s
    ):
        model = FleetModel(load_lanes(store), dict(store_of_terminals(store)), config)
        fitted = _Fitted(model, now, config, terminals)
        _FITTED[store] = fitted
        return model
    fits = fitted.model.fits
    for terminal, last_sale_at, recent in rows:
        fit = fits.get(terminal)
        if fit is not None and fit.stats.last_sale_at != last_sale_at:
            fit.stats.last_sale_at = last_sale_at
            fit.stats.recent = unpack_times(recent)
    return fitted.model


def evaluate_fleet(
    store: BackofficeStore, now: float, config: SilenceConfig
) -> list[SilenceSignal]:
    """Every terminal's three signals at ``now`` (sorted by terminal, then kind)."""
    states: list[TerminalState] = store.terminal_states()
    model = fleet_model(store, now, config)
    store_of = model.store_of
    window: dict[str | None, tuple[list[tuple[float, float, int]], list[float], bool]] = {}
    out: list[SilenceSignal] = []
    for state in states:
        terminal = state.terminal
        home = store_of.get(terminal)
        alive = terminal_not_alive(state, home, now, config)
        arriving = sales_not_arriving(state, home, now, config)
        if home not in window:
            calendar = config.calendar(home)
            segments = calendar.open_segments(now - config.lookback_s, now)
            ends = [segment[1] for segment in segments]
            window[home] = (segments, ends, bool(segments) and ends[-1] >= now)
        segments, ends, open_now = window[home]
        suppressed_by = (
            "the terminal is not alive"
            if alive.active
            else "its sales are not arriving"
            if arriving.active
            else None
        )
        lane = lane_not_selling(terminal, home, model, now, segments, open_now, suppressed_by, ends)
        out += [alive, arriving, lane]
    return out


__all__ = [
    "FleetModel",
    "LaneFit",
    "LaneVerdict",
    "evaluate_fleet",
    "fit_lane",
    "fleet_model",
    "lane_verdict",
]
