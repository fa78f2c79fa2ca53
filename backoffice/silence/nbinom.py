"""The arithmetic of "no sale since": Poisson, Poisson-Gamma (negative binomial), thresholds.

Pure functions of floats, written with arithmetic operators only, so the
evaluation harness can pass NumPy arrays through the very same code.
docs/silence.md derives each formula.
"""

from __future__ import annotations

import math

SECONDS_PER_YEAR = 365.25 * 86400.0


def poisson_zero(expected: float) -> float:
    """P(no event) for a Poisson count with mean ``expected``: ``exp(-expected)``."""
    result: float = math.e ** (-expected)
    return result


def gamma_poisson_zero(expected: float, shape: float) -> float:
    """P(no event) when the rate is Gamma-distributed around its mean with ``shape``
    (coefficient of variation ``1/sqrt(shape)``): the negative-binomial zero term
    ``(1 + expected/shape) ** -shape``. Tends to :func:`poisson_zero` as shape grows."""
    result: float = (1.0 + expected / shape) ** (-shape)
    return result


def combined_shape(*shapes: float) -> float:
    """The Gamma shape of a product of independent mean-1 Gamma factors, to first order:
    squared coefficients of variation add, ``1/a = sum(1/a_i)``."""
    return 1.0 / sum(1.0 / s for s in shapes)


def interval_shape(terms: list[tuple[float, float]]) -> float:
    """The Gamma shape of ``sum(rate_h * t_h)`` when each ``rate_h`` is an independent
    Gamma posterior with mean ``m`` and shape ``alpha``: ``terms`` are
    ``(m * t, alpha)``. Moment matching: shape = mean² / variance."""
    mean = sum(e for e, _ in terms)
    variance = sum(e * e / a for e, a in terms if a > 0)
    if variance <= 0.0:
        return math.inf
    return mean * mean / variance


def episode_threshold(budget_per_year: float, episodes_per_year: float, cap: float = 0.5) -> float:
    """The tail probability at which to alarm so that a lane with ``episodes_per_year``
    silences (gaps between sale runs) raises ``budget_per_year`` false alarms a year:
    a silence reaches tail probability p with probability p, once per episode."""
    if episodes_per_year <= budget_per_year:
        return cap
    return min(cap, budget_per_year / episodes_per_year)
