"""The arithmetic of silence: negative-binomial zero terms, shapes, budget thresholds."""

from __future__ import annotations

import math

import pytest

from posedge.backoffice.silence.nbinom import (
    combined_shape,
    episode_threshold,
    gamma_poisson_zero,
    interval_shape,
    poisson_zero,
)


def _mixture_zero(expected: float, shape: float, steps: int = 200_000) -> float:
    """E[exp(-theta * expected)] for theta ~ Gamma(shape, rate=shape), by quadrature."""
    total = 0.0
    upper = 1.0 + 40.0 / math.sqrt(shape)
    h = upper / steps
    norm = shape**shape / math.gamma(shape)
    for i in range(1, steps):
        x = i * h
        total += norm * x ** (shape - 1) * math.exp(-shape * x) * math.exp(-x * expected)
    return total * h


@pytest.mark.parametrize(
    ("expected", "shape", "value"),
    [
        # NB(r = shape, p = shape / (shape + expected)) at 0 is p ** r.
        (2.0, 1.0, 1.0 / 3.0),  # geometric: 1 / (1 + mean)
        (3.0, 2.0, (2.0 / 5.0) ** 2),
        (10.0, 5.0, (5.0 / 15.0) ** 5),
        (0.0, 3.0, 1.0),
    ],
)
def test_gamma_poisson_zero_is_the_negative_binomial_zero_term(
    expected: float, shape: float, value: float
) -> None:
    assert gamma_poisson_zero(expected, shape) == pytest.approx(value, rel=1e-12)


def test_gamma_poisson_zero_is_the_poisson_gamma_mixture() -> None:
    for expected, shape in ((4.0, 3.0), (12.0, 20.0)):
        assert gamma_poisson_zero(expected, shape) == pytest.approx(
            _mixture_zero(expected, shape), rel=1e-4
        )


def test_mixing_fattens_the_tail_and_vanishes_with_a_large_shape() -> None:
    assert gamma_poisson_zero(10.0, 5.0) > poisson_zero(10.0) * 50
    assert gamma_poisson_zero(10.0, 1e9) == pytest.approx(math.exp(-10.0), rel=1e-6)
    assert poisson_zero(2.0) == pytest.approx(math.exp(-2.0))


def test_shapes_combine_by_adding_squared_coefficients_of_variation() -> None:
    assert combined_shape(10.0, 10.0) == pytest.approx(5.0)
    assert combined_shape(4.0, math.inf) == pytest.approx(4.0)
    # Two bins of mean 3 with shape 3 each: variance 3 + 3 = 6, mean 6: shape 36 / 6.
    assert interval_shape([(3.0, 3.0), (3.0, 3.0)]) == pytest.approx(6.0)
    assert interval_shape([]) == math.inf


def test_the_threshold_spends_the_budget_over_the_episodes_of_a_year() -> None:
    assert episode_threshold(0.5, 50_000.0) == pytest.approx(1e-5)
    assert episode_threshold(1.0, 1_000.0) == pytest.approx(1e-3)
    # A lane with fewer silences a year than the budget: capped.
    assert episode_threshold(5.0, 2.0) == 0.5
