"""Injected fleet faults as data: what goes wrong, where, from when to when.

The same :class:`Fault` values drive the runner and the offline history
generator, and are the ground truth an evaluation (silence detection,
dashboards) scores against. Kinds and their effect on the terminals they hit:

=============== ====== ========== ======= ==============================================
kind            sells  heartbeats uploads meaning
=============== ====== ========== ======= ==============================================
``silent``      no     yes        yes     the lane stops selling; the agent is fine
                                          (lane closed, till app hung) and reports nothing
``dead-reader`` no     yes        yes     the card reader broke, with the evidence a real
                                          agent gives (variant, :mod:`.reader`):
                                          ``unplugged`` (device state and a
                                          ``reader.present`` alert), ``worn-head`` (failed
                                          swipes, ``reader.errors``), ``no-evidence``
``dead``        no     no         no      the terminal is off or crashed
``network-down`` yes   no         no      the store (or lane) loses its network: sales go
                                          on (offline approvals), the backlog grows, and
                                          drains when the network returns
``backlog``     yes    yes        no      uploads stall (the sync loop is stuck); the
                                          heartbeats report the growing backlog
=============== ====== ========== ======= ==============================================

Text form (``--fault``): ``KIND[=VARIANT]:TARGET@WHEN[/DURATION]``. Only
``dead-reader`` has variants; without one it is drawn by the shares of
:data:`.reader.READER_VARIANTS`, deterministically from the fleet seed, the
target and the start. ``TARGET`` is a
terminal id (``store003-lane02``) or, for ``network-down``, a store id
(``store003``) too. ``WHEN`` is ``+DURATION`` after the simulation's start or
an ISO 8601 time with a UTC offset. Without ``/DURATION`` the fault lasts to
the end. Durations: a number and a unit (``ms s m h d w``), several may be
joined: ``90s``, ``30m``, ``1h30m``, ``2d``, ``8w``.
"""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .model import Fleet, rng_for
from .reader import READER_VARIANTS, pick_variant
from .traffic import iso

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_SPEC_RE = re.compile(
    r"^(?P<kind>[a-z-]+)(?:=(?P<variant>[a-z-]+))?:(?P<target>[^@]+)@(?P<when>[^/]+)(?:/(?P<dur>.+))?$"
)


class FaultSpecError(ValueError):
    """A fault description is wrong; the message says what to write instead."""


@dataclass(frozen=True)
class FaultEffect:
    """What a terminal does under a fault. ``online``: the agent runs and reaches the
    network (authorizations online, forwards of offline sales)."""

    sells: bool
    heartbeats: bool
    uploads: bool
    online: bool
    targets: tuple[str, ...] = ()  # "lane", "store"


EFFECTS: dict[str, FaultEffect] = {
    "silent": FaultEffect(sells=False, heartbeats=True, uploads=True, online=True,
                          targets=("lane",)),
    "dead-reader": FaultEffect(sells=False, heartbeats=True, uploads=True, online=True,
                               targets=("lane",)),
    "dead": FaultEffect(sells=False, heartbeats=False, uploads=False, online=False,
                        targets=("lane",)),
    "network-down": FaultEffect(sells=True, heartbeats=False, uploads=False, online=False,
                                targets=("store", "lane")),
    "backlog": FaultEffect(sells=True, heartbeats=True, uploads=False, online=True,
                           targets=("lane",)),
}  # fmt: skip
FAULT_KINDS = tuple(EFFECTS)
NORMAL = FaultEffect(sells=True, heartbeats=True, uploads=True, online=True)


def parse_duration(text: str) -> float:
    """``"1h30m"`` → 5400.0 seconds; units ms, s, m, h, d, w; a bare ``0`` is zero."""
    compact = text.strip()
    if compact == "0":
        return 0.0
    pos = 0
    total = 0.0
    for match in _DURATION_PART.finditer(compact):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if not compact or pos != len(compact):
        raise ValueError(
            f"{text!r} is not a duration; write a number and a unit (ms, s, m, h, d, w), "
            'several may be joined: "90s", "30m", "1h30m", "8w"'
        )
    return total


def format_duration(seconds: float) -> str:
    if seconds == math.inf:
        return "∞"
    rest = round(seconds)
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size or (unit == "s" and not parts):
            parts.append(f"{rest // size}{unit}")
            rest %= size
    return "".join(parts)


def parse_time(text: str, origin: float) -> float:
    """``+DURATION`` after ``origin`` (epoch seconds) or an ISO 8601 time with offset."""
    text = text.strip()
    if text.startswith("+"):
        return origin + parse_duration(text[1:])
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is neither +DURATION (e.g. +2h) nor an ISO 8601 time "
            "(e.g. 2026-11-26T10:00:00+00:00)"
        ) from None
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no UTC offset; add one, e.g. {text}+00:00")
    return moment.timestamp()


@dataclass(frozen=True)
class Fault:
    kind: str
    target: str
    start: float
    end: float | None
    terminals: tuple[str, ...]
    variant: str | None = None
    """``dead-reader``: ``unplugged``, ``worn-head`` or ``no-evidence``."""

    @property
    def effect(self) -> FaultEffect:
        return EFFECTS[self.kind]

    def active(self, when: float) -> bool:
        return self.start <= when and (self.end is None or when < self.end)

    def spec(self, origin: float | None = None) -> str:
        """The ``--fault`` text of this fault (relative to ``origin`` when given)."""
        when = f"+{format_duration(self.start - origin)}" if origin is not None else iso(self.start)
        tail = "" if self.end is None else f"/{format_duration(self.end - self.start)}"
        kind = self.kind if self.variant is None else f"{self.kind}={self.variant}"
        return f"{kind}:{self.target}@{when}{tail}"

    def as_dict(self) -> dict[str, Any]:
        """Ground truth for an evaluation: kind, target, affected terminals, [start, end)."""
        effect = self.effect
        return {
            "kind": self.kind,
            "variant": self.variant,
            "target": self.target,
            "terminals": list(self.terminals),
            "start": iso(self.start),
            "end": None if self.end is None else iso(self.end),
            "start_epoch": self.start,
            "end_epoch": self.end,
            "sells": effect.sells,
            "heartbeats": effect.heartbeats,
            "uploads": effect.uploads,
            "online": effect.online,
        }


def parse_fault(text: str, fleet: Fleet, origin: float) -> Fault:
    """One ``KIND[=VARIANT]:TARGET@WHEN[/DURATION]``; :class:`FaultSpecError` says what is
    wrong."""
    example = (
        "e.g. silent:store001-lane02@+2h, network-down:store003@+1h/30m, "
        "backlog:store002-lane01@+10m, dead-reader=worn-head:store001-lane03@+1h/3h"
    )
    match = _SPEC_RE.match(text.strip())
    if match is None:
        raise FaultSpecError(f"{text!r} is not KIND[=VARIANT]:TARGET@WHEN[/DURATION] ({example})")
    kind = match.group("kind")
    if kind not in EFFECTS:
        raise FaultSpecError(
            f"{text!r}: unknown kind {kind!r}; use one of {', '.join(FAULT_KINDS)}"
        )
    variant = match.group("variant")
    if variant is not None and kind != "dead-reader":
        raise FaultSpecError(f"{text!r}: only dead-reader has variants; write {kind}:...")
    if variant is not None and variant not in READER_VARIANTS:
        raise FaultSpecError(
            f"{text!r}: unknown dead-reader variant {variant!r}; use one of "
            f"{', '.join(READER_VARIANTS)} (or none: drawn by their shares)"
        )
    target = match.group("target").strip()
    effect = EFFECTS[kind]
    if target in fleet.lane_by_terminal and "lane" in effect.targets:
        terminals: tuple[str, ...] = (target,)
    elif target in fleet.store_by_id and "store" in effect.targets:
        terminals = fleet.store_by_id[target].lanes
    else:
        wanted = " or ".join(f"a {t} id" for t in effect.targets)
        sample = fleet.lanes[0].terminal if fleet.lanes else "store001-lane01"
        raise FaultSpecError(
            f"{text!r}: {target!r} is not {wanted} of this fleet "
            f"(terminals look like {sample}, stores like {fleet.stores[0].id}; "
            "`posedge simulate fleet --list` prints them)"
        )
    try:
        start = parse_time(match.group("when"), origin)
    except ValueError as exc:
        raise FaultSpecError(f"{text!r}: WHEN {exc}") from None
    end = None
    if match.group("dur") is not None:
        try:
            duration = parse_duration(match.group("dur"))
        except ValueError as exc:
            raise FaultSpecError(f"{text!r}: DURATION {exc}") from None
        if duration <= 0:
            raise FaultSpecError(f"{text!r}: the duration must be more than 0")
        end = start + duration
    if kind == "dead-reader" and variant is None:
        variant = pick_variant(rng_for(fleet.seed, "dead-reader", target, start).random())
    return Fault(kind, target, start, end, terminals, variant)


class FaultSchedule:
    """The faults per terminal, for quick "what works at time t" questions."""

    def __init__(self, faults: Iterable[Fault] = ()) -> None:
        self.faults: list[Fault] = sorted(faults, key=lambda f: (f.start, f.kind, f.target))
        self._by_terminal: dict[str, list[Fault]] = {}
        for fault in self.faults:
            for terminal in fault.terminals:
                self._by_terminal.setdefault(terminal, []).append(fault)
        self._boundaries: dict[str, list[float]] = {
            terminal: sorted(
                {f.start for f in faults} | {f.end for f in faults if f.end is not None}
            )
            for terminal, faults in self._by_terminal.items()
        }

    def __bool__(self) -> bool:
        return bool(self.faults)

    def of(self, terminal: str) -> list[Fault]:
        return self._by_terminal.get(terminal, [])

    def effect(self, terminal: str, when: float) -> FaultEffect:
        """What the terminal does at ``when``: the conjunction of its active faults."""
        faults = self._by_terminal.get(terminal)
        if not faults:
            return NORMAL
        active = [fault.effect for fault in faults if fault.active(when)]
        if not active:
            return NORMAL
        return FaultEffect(
            sells=all(e.sells for e in active),
            heartbeats=all(e.heartbeats for e in active),
            uploads=all(e.uploads for e in active),
            online=all(e.online for e in active),
        )

    def reader_variant(self, terminal: str, when: float) -> str | None:
        """The variant of the ``dead-reader`` fault active on the terminal at ``when``."""
        for fault in self._by_terminal.get(terminal, ()):
            if fault.kind == "dead-reader" and fault.active(when):
                return fault.variant
        return None

    def next_boundary(self, terminal: str, after: float) -> float | None:
        """The first time after ``after`` at which the terminal's faults change."""
        times = self._boundaries.get(terminal)
        if not times:
            return None
        index = bisect.bisect_right(times, after)
        return times[index] if index < len(times) else None

    def intervals(
        self, terminal: str, what: str, start: float, end: float
    ) -> list[tuple[float, float]]:
        """Merged intervals overlapping [start, end) in which ``what`` (``sells``,
        ``heartbeats``, ``uploads`` or ``online``) is off for the terminal. Starts are
        clipped to ``start``; ends are not clipped (``inf`` for a fault without end)."""
        out: list[tuple[float, float]] = []
        for fault in self._by_terminal.get(terminal, []):
            if getattr(fault.effect, what):
                continue
            low = max(start, fault.start)
            high = fault.end if fault.end is not None else math.inf
            if high > low and low < end:
                out.append((low, high))
        out.sort()
        merged: list[tuple[float, float]] = []
        for low, high in out:
            if merged and low <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], high))
            else:
                merged.append((low, high))
        return merged

    def ground_truth(self) -> list[dict[str, Any]]:
        return [fault.as_dict() for fault in self.faults]


# Duration ranges (seconds) of random faults by kind; None in the pair: may last to the end.
RANDOM_DURATIONS: dict[str, tuple[float, float]] = {
    "silent": (2 * 3600.0, 3 * 86400.0),
    "dead-reader": (1 * 3600.0, 2 * 86400.0),
    "dead": (1 * 3600.0, 2 * 86400.0),
    "network-down": (10 * 60.0, 6 * 3600.0),
    "backlog": (30 * 60.0, 86400.0),
}


def random_faults(
    fleet: Fleet,
    start: datetime | float,
    end: datetime | float,
    count: int,
    *,
    seed: int = 0,
    kinds: Sequence[str] = FAULT_KINDS,
    permanent: float = 0.1,
) -> list[Fault]:
    """``count`` faults at random instants of [start, end) for an evaluation run.

    Durations are log-uniform in :data:`RANDOM_DURATIONS`; a fraction
    ``permanent`` lasts to the end. Deterministic given the arguments.
    """
    for kind in kinds:
        if kind not in EFFECTS:
            raise FaultSpecError(
                f"unknown fault kind {kind!r}; use one of {', '.join(FAULT_KINDS)}"
            )
    low = start.timestamp() if isinstance(start, datetime) else float(start)
    high = end.timestamp() if isinstance(end, datetime) else float(end)
    rng = rng_for(fleet.seed, seed, "random-faults")
    out: list[Fault] = []
    for _ in range(count):
        kind = rng.choice(list(kinds))
        at = rng.uniform(low, high)
        if kind == "network-down":
            store = rng.choice(fleet.stores)
            target, terminals = store.id, store.lanes
        else:
            lane = rng.choice(fleet.lanes)
            target, terminals = lane.terminal, (lane.terminal,)
        shortest, longest = RANDOM_DURATIONS[kind]
        until: float | None = None
        if rng.random() >= permanent:
            until = min(high, at + math.exp(rng.uniform(math.log(shortest), math.log(longest))))
        variant = pick_variant(rng.random()) if kind == "dead-reader" else None
        out.append(Fault(kind, target, at, until, terminals, variant))
    out.sort(key=lambda f: f.start)
    return out
