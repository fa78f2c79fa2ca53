"""The lane model: decayed hour-of-week sale-run counts, exposure, and their Gamma posterior.

A lane's learned state (:class:`LaneStats`) is, per local hour of week, a
decayed count of sale *runs* (a sale that starts at least ``run_gap_s`` after
the one before: a queue served back to back is one run) and the decayed open
hours observed. Rates come from a Gamma posterior per bin (:func:`posterior`):
the prior is the pooled rate of the lane's sibling lanes (or the fleet's
profile), scaled by the lane's own level, with ``prior_strength_h`` pseudo
hours of exposure. docs/silence.md gives the formulas.
"""

from __future__ import annotations

import base64
import binascii
import math
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from .calendar import HOURS_PER_WEEK

_PACK = struct.Struct(f"<{HOURS_PER_WEEK}d")


def decay_factor(seconds: float, half_life_s: float) -> float:
    """The weight left after ``seconds`` with a half-life of ``half_life_s``."""
    result: float = 0.5 ** (max(seconds, 0.0) / half_life_s)
    return result


def pack(values: Sequence[float]) -> str:
    """168 floats as compact portable text (base64 of little-endian doubles)."""
    return base64.b64encode(_PACK.pack(*values)).decode("ascii")


def unpack(text: str) -> list[float]:
    return list(_PACK.unpack(binascii.a2b_base64(text)))


def pack_times(values: Sequence[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(values)}d", *values)).decode("ascii")


def unpack_times(text: str) -> list[float]:
    raw = binascii.a2b_base64(text)
    return list(struct.unpack(f"<{len(raw) // 8}d", raw))


@dataclass
class LaneStats:
    """What is learned about one lane; counts and exposure are decayed to ``learned_to``."""

    terminal: str
    counts: list[float] = field(default_factory=lambda: [0.0] * HOURS_PER_WEEK)
    exposure: list[float] = field(default_factory=lambda: [0.0] * HOURS_PER_WEEK)
    learned_to: float | None = None
    last_sale_at: float | None = None
    recent: list[float] = field(default_factory=list)
    """The start times of the lane's latest runs (at most ``RECENT_RUNS``), increasing."""

    def decay_to(self, when: float, half_life_s: float) -> None:
        if self.learned_to is None:
            self.learned_to = when
            return
        factor = decay_factor(when - self.learned_to, half_life_s)
        if factor != 1.0:
            self.counts = [c * factor for c in self.counts]
            self.exposure = [e * factor for e in self.exposure]
        self.learned_to = max(self.learned_to, when)


RECENT_RUNS = 512


@dataclass(frozen=True)
class Profile:
    """Pooled per-lane rates by hour of week (runs per open hour) and how much data."""

    rates: tuple[float, ...]
    exposure_h: float


def pooled_profile(lanes: Iterable[LaneStats], fallback: Profile | None = None) -> Profile | None:
    """The rate of an average lane of ``lanes`` per bin: sum of counts / sum of exposure.
    Bins nobody observed take ``fallback``'s rate (else the overall rate)."""
    members = list(lanes)
    any_lane = bool(members)
    counts = [sum(col) for col in zip(*(lane.counts for lane in members), strict=True)]
    exposure = [sum(col) for col in zip(*(lane.exposure for lane in members), strict=True)]
    total_e = sum(exposure)
    if not any_lane or total_e <= 0.0:
        return fallback
    overall = sum(counts) / total_e
    rates = []
    for h in range(HOURS_PER_WEEK):
        if exposure[h] > 0.0:
            rates.append(counts[h] / exposure[h])
        elif fallback is not None:
            rates.append(fallback.rates[h])
        else:
            rates.append(overall)
    return Profile(tuple(rates), total_e)


@dataclass(frozen=True)
class LaneRates:
    """A lane's posterior: mean run rate per hour of week (per hour) and the Gamma shape of
    each bin (``alpha``), plus the shape of the lane's overall level."""

    rates: tuple[float, ...]
    alpha: tuple[float, ...]
    level_shape: float
    cold: bool


def posterior(
    stats: LaneStats, prior: Profile | None, prior_strength_h: float, level_prior_runs: float
) -> LaneRates | None:
    """Rates of ``stats`` shrunk towards ``prior`` (None: nothing to go on).

    Level ``g = (L0 + sum c) / (L0 + sum p_h e_h)``; per bin
    ``alpha_h = b0 g p_h + c_h``, ``beta_h = b0 + e_h``, rate ``alpha_h / beta_h``.
    """
    counts, exposure = stats.counts, stats.exposure
    if prior is None:
        total_e = sum(exposure)
        if total_e <= 0.0:
            return None
        overall = sum(counts) / total_e
        prior = Profile(tuple([overall] * HOURS_PER_WEEK), total_e)
    expected = sum(p * e for p, e in zip(prior.rates, exposure, strict=True))
    observed = sum(counts)
    level = (
        (level_prior_runs + observed) / (level_prior_runs + expected)
        if expected or observed
        else 1.0
    )
    b0 = prior_strength_h
    alpha = tuple(b0 * level * p + c for p, c in zip(prior.rates, counts, strict=True))
    rates = tuple(a / (b0 + e) for a, e in zip(alpha, exposure, strict=True))
    return LaneRates(rates, alpha, level_prior_runs + observed, cold=observed < level_prior_runs)


def expected_runs(rates: LaneRates, hours_by_bin: dict[int, float]) -> float:
    return sum(rates.rates[h] * t for h, t in hours_by_bin.items())


def runs_per_year(rates: LaneRates, weekly_open_hours: Sequence[float]) -> float:
    """Expected sale runs a year (the lane's silence episodes a year)."""
    weekly = sum(r * o for r, o in zip(rates.rates, weekly_open_hours, strict=True))
    return weekly * 365.25 / 7.0


def posterior_shape(rates: LaneRates, hours_by_bin: dict[int, float]) -> float:
    """Gamma shape of the expected count over the bins' open hours: each bin's posterior
    uncertainty (moment matched) and the lane level's, combined."""
    mean = 0.0
    variance = 0.0
    for h, t in hours_by_bin.items():
        e = rates.rates[h] * t
        mean += e
        if rates.alpha[h] > 0:
            variance += e * e / rates.alpha[h]
    if mean <= 0.0:
        return math.inf
    bins = mean * mean / variance if variance > 0 else math.inf
    return 1.0 / (1.0 / bins + 1.0 / rates.level_shape)
