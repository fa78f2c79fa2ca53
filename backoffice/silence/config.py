"""The silence detector's settings and the signal it reports (the alerting layer's input)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

from .calendar import StoreCalendar

SignalKind = Literal["terminal_not_alive", "sales_not_arriving", "lane_not_selling"]
SIGNAL_KINDS: tuple[SignalKind, ...] = (
    "terminal_not_alive",
    "sales_not_arriving",
    "lane_not_selling",
)
# The journal event types that mean "the lane took a payment" (docs/sales.md): an online
# approval or an offline approval. A forward of an offline sale is not a new sale.
SALE_EVENT_TYPES: tuple[str, ...] = ("auth.approved", "offline.approved")


@dataclass(frozen=True)
class SilenceSignal:
    """One terminal × one kind of silence, now.

    ``active``: the condition holds. ``value`` and ``threshold``: what was compared —
    heartbeat age vs its limit (s); unsynced age (s) vs its limit; for a lane not
    selling, the probability of its silence vs the alarm threshold (active when
    ``value < threshold``). ``details`` is JSON-ready (numbers, text, bools).
    """

    kind: SignalKind
    terminal: str
    store: str | None
    active: bool
    value: float
    threshold: float
    summary: str
    details: dict[str, Any] = field(default_factory=dict)


class SilenceConfigError(ValueError):
    """A silence setting is out of range; the message names it."""


@dataclass(frozen=True)
class SilenceConfig:
    """Settings (docs/silence.md, "Configuration"). The defaults suit supermarket lanes."""

    budget_per_lane_year: float = 0.5
    """False ``lane_not_selling`` alarms allowed per lane per year."""
    heartbeat_grace: float = 3.0
    """A terminal is not alive after this many heartbeat intervals without one."""
    default_interval_s: float = 60.0
    """The heartbeat interval of a terminal that never reported one."""
    max_unsynced_age_s: float = 900.0
    """Sales are not arriving when the oldest unsynced event is older than this."""
    max_backlog: int = 5000
    """… or when the terminal reports more unsynced events than this."""
    run_gap_s: float = 90.0
    """A sale less than this after the previous one continues the same run (a queue served
    back to back); the first run_gap_s after a sale is not counted as silence."""
    half_life_days: float = 28.0
    """Learned counts and exposure halve in weight every this many days."""
    prior_strength_h: float = 2.0
    """Pseudo open hours per hour-of-week bin the sibling/fleet prior is worth."""
    level_prior_runs: float = 20.0
    """Pseudo runs the prior of a lane's overall level is worth (cold start)."""
    store_shape: float = 12.0
    """Gamma shape of the store-day activity multiplier before siblings are seen."""
    lane_shape: float = 50.0
    """Gamma shape of the lane-day multiplier (this lane's own day-to-day variation)."""
    max_learn_gap_s: float = 2 * 3600.0
    """Open time of one silence counted as exposure at most (longer: an outage)."""
    lookback_s: float = 12 * 3600.0
    """A silence is integrated over at most this much of its latest time."""
    refit_s: float = 900.0
    """How long :func:`~.evaluate.evaluate_fleet` reuses fitted lane rates (the last sales
    and recent runs are read afresh every call; rates drift slowly)."""
    calendars: Mapping[str, StoreCalendar] = field(default_factory=dict)
    """Store calendars by store id; a store without one is taken as always open."""

    def __post_init__(self) -> None:
        positive = (
            "budget_per_lane_year", "heartbeat_grace", "default_interval_s",
            "max_unsynced_age_s", "run_gap_s", "half_life_days", "prior_strength_h",
            "level_prior_runs", "store_shape", "lane_shape", "max_learn_gap_s", "lookback_s",
            "refit_s",
        )  # fmt: skip
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int | float) or not value > 0 or value != value:
                raise SilenceConfigError(
                    f"silence setting {name} must be a positive number, got {value!r}"
                )
        if self.max_backlog < 1:
            raise SilenceConfigError(
                f"silence setting max_backlog must be at least 1, got {self.max_backlog}"
            )

    @property
    def half_life_s(self) -> float:
        return self.half_life_days * 86400.0

    def calendar(self, store: str | None) -> StoreCalendar:
        found = self.calendars.get(store) if store is not None else None
        return found if found is not None else _always_open(store or "-")


@lru_cache(maxsize=65536)
def _always_open(store: str) -> StoreCalendar:
    """One calendar object per store without one (so its cached days are reused)."""
    return StoreCalendar.always_open(store)
