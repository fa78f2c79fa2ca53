"""The alert lifecycle: a pure, clock-injected state machine per alert key.

Modelled on Prometheus alerting rules and Alertmanager, plus Nagios-style flap
detection. The caller observes a condition (or a numeric value) per key at a time
``now`` it supplies; the lifecycle answers with :class:`Transition` objects the caller
journals or delivers. This module does no I/O and never reads a clock.

    ┌──────────┐ bad  ┌─────────┐ bad for ``for_s``  ┌────────┐
    │ inactive ├─────►│ pending ├───────────────────►│ firing │
    └──────────┘      └────┬────┘                    └───┬────┘
         ▲   ▲   ok (cancelled)                           │ ok for ``keep_firing_for_s``
         │   └─────────────┘                              │ (resolved)
         └────────────────────────────────────────────────┘

    any state ── ``flap_changes`` condition changes within ``flap_window_s`` ──► flapping
    flapping ── no condition change for ``flap_stable_s`` ──► resolved (then pending,
                and firing once bad for ``for_s``, if the condition is still bad)

A numeric value becomes a condition through :class:`Threshold` (hysteresis): it turns bad
when the value crosses the fire threshold and good again only when it crosses back past
the clear threshold, so a value hovering at one line does not toggle the alert.

Invariants (tested by hypothesis): per key at most one open alert (firing or flapping);
``resolved`` only closes an open alert; ``firing`` never follows ``firing`` without a
``resolved`` between; pending becomes firing only after the condition was bad for
``for_s``; a firing alert resolves only after the condition was good for
``keep_firing_for_s``.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class AlertState(enum.StrEnum):
    INACTIVE = "inactive"
    PENDING = "pending"
    FIRING = "firing"
    FLAPPING = "flapping"

    @property
    def is_open(self) -> bool:
        """An alert someone should see: firing or flapping."""
        return self in (AlertState.FIRING, AlertState.FLAPPING)


class TransitionKind(enum.StrEnum):
    PENDING = "pending"
    """The condition turned bad; not yet an alert (waiting ``for_s``)."""
    CANCELLED = "cancelled"
    """The condition turned good while pending: nothing was ever fired."""
    FIRING = "firing"
    FLAPPING = "flapping"
    """The condition changed too often: one flapping alert instead of many."""
    RESOLVED = "resolved"


@dataclass(frozen=True)
class Threshold:
    """Hysteresis on a numeric value.

    ``high_is_bad``: bad once ``value >= fire``, good again once ``value <= clear``
    (so ``clear <= fire``). Otherwise (low is bad): bad once ``value <= fire``, good again
    once ``value >= clear`` (so ``clear >= fire``).
    """

    fire: float
    clear: float
    high_is_bad: bool = True

    def __post_init__(self) -> None:
        if self.high_is_bad and self.clear > self.fire:
            raise ValueError(
                f"threshold: with high values bad, clear ({self.clear}) must be <= fire "
                f"({self.fire}); set clear at or below fire"
            )
        if not self.high_is_bad and self.clear < self.fire:
            raise ValueError(
                f"threshold: with low values bad, clear ({self.clear}) must be >= fire "
                f"({self.fire}); set clear at or above fire"
            )

    def is_bad(self, value: float, was_bad: bool) -> bool:
        """The condition after ``value``, given whether it was bad before."""
        if self.high_is_bad:
            return value > self.clear if was_bad else value >= self.fire
        return value < self.clear if was_bad else value <= self.fire


@dataclass(frozen=True)
class AlertRule:
    """How one key's condition becomes an alert. Durations in seconds."""

    for_s: float = 0.0
    """The condition must stay bad this long before pending becomes firing (0: at once)."""
    keep_firing_for_s: float = 0.0
    """A firing alert resolves only after the condition was good this long."""
    threshold: Threshold | None = None
    """Hysteresis for numeric values; without it, observe with ``bad=``."""
    flap_changes: int = 0
    """This many condition changes within ``flap_window_s`` mean flapping (0: never)."""
    flap_window_s: float = 600.0
    flap_stable_s: float = 600.0
    """A flapping alert ends after the condition has not changed for this long."""

    def __post_init__(self) -> None:
        for name in ("for_s", "keep_firing_for_s", "flap_window_s", "flap_stable_s"):
            value = getattr(self, name)
            if value < 0:
                raise ValueError(f"alert rule: {name} is {value}; it must be >= 0 seconds")
        if self.flap_changes < 0 or self.flap_changes == 1:
            raise ValueError(
                f"alert rule: flap_changes is {self.flap_changes}; use 0 (off) or >= 2"
            )


@dataclass(frozen=True)
class Transition:
    """One change of one key's alert, for the caller to journal or deliver."""

    key: str
    kind: TransitionKind
    previous: AlertState
    state: AlertState
    at: float
    """The ``now`` of the observation that caused it."""
    since: float
    """When the new state began (pending, firing, flapping); for ``resolved`` and
    ``cancelled``, when the state that ended began."""
    value: float | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    summary: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.key,
            "kind": self.kind.value,
            "previous": self.previous.value,
            "state": self.state.value,
            "at": self.at,
            "since": self.since,
            "value": self.value,
            "labels": dict(self.labels),
            "summary": self.summary,
        }


@dataclass(frozen=True)
class Alert:
    """A key that is not inactive: pending, firing or flapping."""

    key: str
    state: AlertState
    since: float
    value: float | None
    labels: Mapping[str, str]
    summary: str


@dataclass
class _KeyState:
    state: AlertState = AlertState.INACTIVE
    bad: bool = False
    since: float = 0.0
    """Start of the current pending/firing/flapping state."""
    bad_since: float = 0.0
    good_since: float | None = None
    """While firing: when the condition last turned good (None while bad)."""
    last_change: float | None = None
    changes: deque[float] = field(default_factory=deque)
    value: float | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    summary: str = ""


class AlertLifecycle:
    """Alert state per key. Not thread-safe: the caller serialises observations."""

    def __init__(
        self,
        default_rule: AlertRule | None = None,
        rules: Mapping[str, AlertRule] | None = None,
    ) -> None:
        self.default_rule = default_rule or AlertRule()
        self.rules: dict[str, AlertRule] = dict(rules or {})
        self._keys: dict[str, _KeyState] = {}

    def rule_for(self, key: str) -> AlertRule:
        return self.rules.get(key, self.default_rule)

    def state(self, key: str) -> AlertState:
        entry = self._keys.get(key)
        return entry.state if entry is not None else AlertState.INACTIVE

    def alerts(self) -> list[Alert]:
        """Every key that is pending, firing or flapping, in first-seen order."""
        return [
            Alert(key, e.state, e.since, e.value, dict(e.labels), e.summary)
            for key, e in self._keys.items()
            if e.state is not AlertState.INACTIVE
        ]

    def export_state(self, key: str) -> dict[str, Any] | None:
        """``key``'s state as a JSON-ready dict (None for a key never observed), for a
        caller that keeps the lifecycle in a database: :meth:`restore_state` takes it back.
        Pure: no I/O, no clock."""
        entry = self._keys.get(key)
        if entry is None:
            return None
        return {
            "state": entry.state.value,
            "bad": entry.bad,
            "since": entry.since,
            "bad_since": entry.bad_since,
            "good_since": entry.good_since,
            "last_change": entry.last_change,
            "changes": list(entry.changes),
            "value": entry.value,
            "labels": dict(entry.labels),
            "summary": entry.summary,
        }

    def restore_state(self, key: str, doc: Mapping[str, Any]) -> None:
        """Take back what :meth:`export_state` gave (replacing ``key``'s state). Missing
        optional fields take their defaults; a malformed document raises ``ValueError``
        naming the key and the field."""
        try:
            entry = _KeyState(
                state=AlertState(doc["state"]),
                bad=bool(doc["bad"]),
                since=float(doc["since"]),
                bad_since=float(doc["bad_since"]),
                good_since=None if doc.get("good_since") is None else float(doc["good_since"]),
                last_change=(None if doc.get("last_change") is None else float(doc["last_change"])),
                changes=deque(float(t) for t in doc.get("changes", ())),
                value=None if doc.get("value") is None else float(doc["value"]),
                labels={str(k): str(v) for k, v in dict(doc.get("labels") or {}).items()},
                summary=str(doc.get("summary", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(
                f"alert {key!r}: saved lifecycle state is malformed ({type(exc).__name__}: "
                f"{exc}); expected what export_state() returns"
            ) from None
        self._keys[key] = entry

    def forget(self, key: str) -> None:
        """Drop a key (its check was removed); no transition is produced."""
        self._keys.pop(key, None)

    def observe(
        self,
        key: str,
        now: float,
        *,
        bad: bool | None = None,
        value: float | None = None,
        labels: Mapping[str, str] | None = None,
        summary: str = "",
        rule: AlertRule | None = None,
    ) -> list[Transition]:
        """Feed one observation of ``key`` at ``now``; returns the transitions it caused.

        Give ``bad`` (the condition), or a ``value`` with a rule that has a threshold (the
        condition then follows the hysteresis). ``value`` is also carried into the alert.
        Time going backwards is treated as no time passing.
        """
        rule = rule or self.rule_for(key)
        entry = self._keys.get(key)
        if entry is None:
            entry = self._keys[key] = _KeyState(since=now, bad_since=now)
        if bad is None:
            if value is None or rule.threshold is None:
                raise ValueError(
                    f"alert {key!r}: observe needs bad=True/False, or a value and a rule "
                    "with a threshold"
                )
            bad = rule.threshold.is_bad(value, entry.bad)
        entry.value = value
        entry.labels = dict(labels or {})
        entry.summary = summary
        if bad != entry.bad:
            entry.bad = bad
            entry.last_change = now
            if bad:
                entry.bad_since = now
                entry.good_since = None
            else:
                entry.good_since = now
            if rule.flap_changes:
                entry.changes.append(now)
        while entry.changes and now - entry.changes[0] > rule.flap_window_s:
            entry.changes.popleft()
        out: list[Transition] = []
        self._step(key, entry, rule, now, out)
        return out

    # ------------------------------------------------------------------ internals
    def _move(
        self,
        key: str,
        entry: _KeyState,
        kind: TransitionKind,
        state: AlertState,
        now: float,
        out: list[Transition],
        since: float | None = None,
    ) -> None:
        previous = entry.state
        closed_since = entry.since
        entry.state = state
        entry.since = now if since is None else since
        began = entry.since if state is not AlertState.INACTIVE else closed_since
        out.append(
            Transition(
                key, kind, previous, state, now, began, entry.value, dict(entry.labels),
                entry.summary,
            )
        )  # fmt: skip

    def _step(
        self, key: str, entry: _KeyState, rule: AlertRule, now: float, out: list[Transition]
    ) -> None:
        if entry.state is AlertState.FLAPPING:
            quiet = entry.last_change is None or now - entry.last_change >= rule.flap_stable_s
            if not quiet:
                return
            entry.changes.clear()
            self._move(key, entry, TransitionKind.RESOLVED, AlertState.INACTIVE, now, out)
            # stable, but maybe stably bad: an ordinary alert from here on (below)
        elif rule.flap_changes and len(entry.changes) >= rule.flap_changes:
            self._move(key, entry, TransitionKind.FLAPPING, AlertState.FLAPPING, now, out)
            return
        if entry.state is AlertState.INACTIVE and entry.bad:
            self._move(key, entry, TransitionKind.PENDING, AlertState.PENDING, now, out,
                       since=entry.bad_since)  # fmt: skip
        if entry.state is AlertState.PENDING:
            if not entry.bad:
                self._move(key, entry, TransitionKind.CANCELLED, AlertState.INACTIVE, now, out)
            elif now - entry.bad_since >= rule.for_s:
                self._move(key, entry, TransitionKind.FIRING, AlertState.FIRING, now, out)
            return
        if entry.state is AlertState.FIRING and not entry.bad:
            good_since = entry.good_since if entry.good_since is not None else now
            if now - good_since >= rule.keep_firing_for_s:
                self._move(key, entry, TransitionKind.RESOLVED, AlertState.INACTIVE, now, out)


__all__ = [
    "Alert",
    "AlertLifecycle",
    "AlertRule",
    "AlertState",
    "Threshold",
    "Transition",
    "TransitionKind",
]
