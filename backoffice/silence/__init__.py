"""Silence detection (issue 14): the terminal not alive, its sales not arriving, the lane
not selling — three signals, alerted separately. docs/silence.md has the math.

The alerting layer consumes :func:`evaluate_fleet` (one :class:`SilenceSignal` per
terminal and kind) and calls :func:`update_learned_state` to fold newly ingested
sales into the learned lane rates (table silence_lanes, schema version 5).
"""

from __future__ import annotations

from .calendar import CalendarError, StoreCalendar, load_calendars, parse_calendars
from .config import (
    SALE_EVENT_TYPES,
    SIGNAL_KINDS,
    SignalKind,
    SilenceConfig,
    SilenceConfigError,
    SilenceSignal,
)
from .evaluate import evaluate_fleet
from .learn import update_learned_state

__all__ = [
    "SALE_EVENT_TYPES",
    "SIGNAL_KINDS",
    "CalendarError",
    "SignalKind",
    "SilenceConfig",
    "SilenceConfigError",
    "SilenceSignal",
    "StoreCalendar",
    "evaluate_fleet",
    "load_calendars",
    "parse_calendars",
    "update_learned_state",
]
