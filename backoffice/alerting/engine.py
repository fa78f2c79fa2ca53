"""One evaluation of the fleet's alerts: observe, move the lifecycle, group, inhibit, enqueue.

:func:`evaluate` first runs what writes its own small transactions — the silence
detector's learning and signals (:mod:`..silence`) and the anomaly scan
(:mod:`..anomalies`) — then, in ONE transaction, loads every alert's lifecycle state
(table alerts), observes the signals through :class:`AlertLifecycle` (the terminal's
state machine, ``agent/health/lifecycle.py``), writes the new states and puts the
notifications they cause into the outbox (table alert_outbox). State and outbox commit
together, so a crash loses neither, and a restart or another replica continues from
what is stored. Only one replica evaluates at a time: on PostgreSQL the transaction
takes a try-lock and a replica that does not get it skips this round; on SQLite the
write transaction is exclusive. Observations are taken before that transaction (so
SQLite's one write lock is not held while they are read); each applied evaluation
bumps a generation (meta ``alerts_generation``), and one that finds the generation
moved since it observed observes again instead of applying stale observations.

Grouping: notifications are per store — one webhook notification carries every open
alert of the store plus those resolved in this round; it is sent when the group
changes and again every ``repeat_interval_s`` while alerts stay open. Inhibition: a
store offline (most of its lanes not alive or not sending) fires one ``store_offline``
alert and mutes its lanes' silence alerts (they are kept, marked inhibited, and not
notified); a terminal reporting a critical device fault (``device_fault``: its reader or
printer, from its own heartbeat) mutes its ``lane_not_selling`` alert — the cause is
known, and the device alert carries the fix.
"""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from posedge.agent.health.lifecycle import (
    AlertLifecycle,
    AlertState,
    Transition,
    TransitionKind,
)

from .. import anomalies
from ..db import Database, Transaction, lock_key
from ..silence import SIGNAL_KINDS, SilenceSignal, evaluate_fleet, update_learned_state
from ..silence.learn import store_of_terminals
from ..store import BackofficeStore
from .alertmanager import postable_alerts, rfc3339
from .config import (
    INHIBITED_BY_DEVICE_FAULT,
    INHIBITED_BY_STORE_OFFLINE,
    STORE_OFFLINE,
    AlertConfig,
)
from .devices import DEVICE_FAULT, device_observations

EVALUATION_LOCK = "posedge-backoffice alerts evaluation"
GENERATION_KEY = "alerts_generation"
EVALUATION_ATTEMPTS = 3
"""Observations are taken outside the write transaction; when another evaluation commits
meanwhile they are stale, and are taken again (up to this many times in all)."""
NOTIFYING = (TransitionKind.FIRING, TransitionKind.FLAPPING, TransitionKind.RESOLVED)
SignalSource = Callable[[BackofficeStore, float], list[SilenceSignal]]


@dataclass(frozen=True)
class Observation:
    """One alert's condition now."""

    alertname: str
    terminal: str | None
    store: str
    active: bool
    summary: str
    details: dict[str, Any] = field(default_factory=dict)
    value: float | None = None

    @property
    def fingerprint(self) -> str:
        return f"{self.alertname}/{self.terminal or self.store}"


@dataclass
class Evaluation:
    evaluated: bool = True
    """False: another replica held the evaluation lock; nothing was done."""
    observations: int = 0
    transitions: list[Transition] = field(default_factory=list)
    notifications: int = 0
    new_flags: int = 0
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "evaluated": self.evaluated,
            "observations": self.observations,
            "transitions": [t.as_dict() for t in self.transitions],
            "notifications": self.notifications,
            "new_flags": self.new_flags,
            "notes": self.notes,
        }


def silence_signals(config: AlertConfig) -> SignalSource:
    def source(store: BackofficeStore, now: float) -> list[SilenceSignal]:
        update_learned_state(store, now, config.silence)
        return evaluate_fleet(store, now, config.silence)

    return source


def try_lock(tx: Transaction, name: str) -> bool:
    """The named lock if free (PostgreSQL); SQLite's write transaction already is one."""
    if tx.dialect != "postgresql":
        return True
    row = tx.execute("SELECT pg_try_advisory_xact_lock(?)", (lock_key(name),)).fetchone()
    return bool(row[0])


# -- observations --------------------------------------------------------------------------------


def observations(
    store: BackofficeStore, now: float, config: AlertConfig, signals: list[SilenceSignal]
) -> list[Observation]:
    """Silence signals, device faults the terminals report, anomaly alerts (a kind flagged
    on a terminal within ``anomaly_hold_s``) and one store_offline observation per store."""
    registry = anomalies.registry_stores(store)
    out: list[Observation] = []
    homes = {s.terminal: s.store for s in signals if s.store is not None}

    def home_of(terminal: str) -> str:
        return homes.get(terminal) or anomalies.store_of(terminal, registry)

    beats = store.db.execute("SELECT terminal, heartbeat_json FROM terminals").rows
    for terminal, home, active, summary, details, value in device_observations(
        [(str(t), None if h is None else str(h)) for t, h in beats], home_of
    ):
        out.append(Observation(DEVICE_FAULT, terminal, home, active, summary, details, value))
    lanes: dict[str, set[str]] = defaultdict(set)
    down: dict[str, set[str]] = defaultdict(set)
    for signal in signals:
        home = signal.store or anomalies.store_of(signal.terminal, registry)
        lanes[home].add(signal.terminal)
        if signal.active and signal.kind in ("terminal_not_alive", "sales_not_arriving"):
            down[home].add(signal.terminal)
        out.append(Observation(signal.kind, signal.terminal, home, signal.active,
                               signal.summary, dict(signal.details), signal.value))  # fmt: skip
    recent: dict[tuple[str, str], list[anomalies.AnomalyFlag]] = defaultdict(list)
    for flag in anomalies.recent_flags(store, now - config.anomaly_hold_s):
        recent[(flag.terminal, flag.kind)].append(flag)
    for (terminal, kind), flags in sorted(recent.items()):
        latest = flags[-1]
        more = f" ({len(flags)} in the last {config.anomaly_hold_s / 60:.0f} min)"
        out.append(Observation(kind, terminal, latest.store, True,
                               f"{terminal}: {latest.detail}" + (more if len(flags) > 1 else ""),
                               {"flags": [f.as_dict() for f in flags[-20:]]},
                               float(len(flags))))  # fmt: skip
    for home in sorted(lanes):
        total, lost = len(lanes[home]), len(down[home])
        offline = total >= config.store_offline_min_lanes and lost / total > (
            config.store_offline_fraction
        )
        out.append(Observation(
            STORE_OFFLINE, None, home, offline,
            f"store {home}: {lost} of {total} lanes not alive or not sending",
            {"lanes": total, "down": sorted(down[home])}, float(lost),
        ))  # fmt: skip
    return out


# -- evaluation ---------------------------------------------------------------------------------


def evaluate(
    store: BackofficeStore,
    now: float | None = None,
    config: AlertConfig | None = None,
    signals: SignalSource | None = None,
) -> Evaluation:
    config = config or AlertConfig()
    given_now = now
    now = store.clock() if now is None else now
    result = Evaluation()
    calendars = config.silence.calendars
    calendar: anomalies.StoreCalendar | None = None
    if calendars:

        def calendar(store_id: str, when: float) -> bool | None:
            found = calendars.get(store_id)
            return None if found is None else found.is_open(when)

    scanned = anomalies.scan(store, now, config.anomalies, calendar)
    result.new_flags = len(scanned.flags)
    result.notes += scanned.notes
    source = signals or silence_signals(config)
    for attempt in range(1, EVALUATION_ATTEMPTS + 1):
        if attempt > 1 and given_now is None:
            now = store.clock()  # the newer round's time has passed: observe at ours
        seen_generation = _generation(store.db)
        observed = observations(store, now, config, source(store, now))
        with store.transaction() as tx:
            if not try_lock(tx, EVALUATION_LOCK):
                result.evaluated = False
                result.notes.append("another replica is evaluating; skipped")
                return result
            if _generation(tx) != seen_generation:
                # Another evaluation committed while this one observed: its observations
                # are newer than these, and applying these would move its alerts backwards
                # (a lane it just found silent seen as quiet, its pending alert deleted).
                continue
            _apply(tx, now, config, observed, result)
            tx.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key)"
                " DO UPDATE SET value = excluded.value",
                (GENERATION_KEY, str(seen_generation + 1)),
            )
            return result
    result.evaluated = False
    result.notes.append(
        f"other evaluations committed while this one observed, {EVALUATION_ATTEMPTS} times;"
        " skipped (theirs are newer)"
    )
    return result


def _generation(db: Database | Transaction) -> int:
    """How many evaluations have been applied (meta row ``alerts_generation``)."""
    row = db.execute("SELECT value FROM meta WHERE key = ?", (GENERATION_KEY,)).fetchone()
    return 0 if row is None else int(row[0])


def _apply(
    tx: Transaction,
    now: float,
    config: AlertConfig,
    observed: list[Observation],
    result: Evaluation,
) -> None:
    rows = {str(r[0]): r for r in tx.execute(
        "SELECT fingerprint, alertname, terminal, store, state, lifecycle, inhibited, summary,"
        " details, active_since, firing_since, resolved_at FROM alerts").rows}  # fmt: skip
    lifecycle = AlertLifecycle()
    for key, row in rows.items():
        lifecycle.restore_state(key, json.loads(str(row[5])))
    offline: set[str] = set()  # stores whose store_offline alert is open after this round
    broken: set[str] = set()  # terminals whose device_fault alert is open after this round
    seen: dict[str, Observation] = {}
    for obs in observed:
        if not obs.active and obs.fingerprint not in rows:
            continue  # quiet and never alerted: nothing to keep
        seen[obs.fingerprint] = obs
    for key, row in rows.items():
        if key not in seen and lifecycle.state(key) is not AlertState.INACTIVE:
            seen[key] = Observation(str(row[1]), row[2], str(row[3]), False, str(row[7]),
                                    json.loads(row[8]))  # fmt: skip
    result.observations = len(seen)
    changed_stores: set[str] = set()
    resolved_now: dict[str, list[dict[str, Any]]] = defaultdict(list)

    # Store and device alerts first: their state this round decides what is inhibited.
    def order(item: tuple[str, Observation]) -> tuple[bool, bool, str]:
        name = item[1].alertname
        return (name != STORE_OFFLINE, name != DEVICE_FAULT, item[0])

    for key, obs in sorted(seen.items(), key=order):
        rule = config.rule_for(obs.alertname)
        moves = lifecycle.observe(key, now, bad=obs.active, value=obs.value,
                                  summary=obs.summary, rule=rule)  # fmt: skip
        result.transitions += moves
        if obs.alertname == STORE_OFFLINE and lifecycle.state(key).is_open:
            offline.add(obs.store)
        if obs.alertname == DEVICE_FAULT and obs.terminal and lifecycle.state(key).is_open:
            broken.add(obs.terminal)
        inhibited = (obs.alertname in INHIBITED_BY_STORE_OFFLINE and obs.store in offline) or (
            obs.alertname in INHIBITED_BY_DEVICE_FAULT and obs.terminal in broken
        )
        old = rows.get(key)
        was_inhibited = bool(old[6]) if old is not None else False
        state = lifecycle.state(key)
        active_since = old[9] if old is not None else None
        firing_since = old[10] if old is not None else None
        resolved_at = old[11] if old is not None else None
        status = state.value
        for move in moves:
            if move.kind is TransitionKind.PENDING:
                active_since, resolved_at, firing_since = move.since, None, None
            elif move.kind in (TransitionKind.FIRING, TransitionKind.FLAPPING):
                firing_since = firing_since or move.since
                active_since = active_since or move.since
                resolved_at = None
            elif move.kind is TransitionKind.RESOLVED:
                resolved_at = now
        if state is AlertState.INACTIVE:
            if firing_since is None and not (lifecycle.export_state(key) or {}).get("changes"):
                # Never fired (a pending one cancelled), no flap history: forget it.
                tx.execute("DELETE FROM alerts WHERE fingerprint = ?", (key,))
                continue
            if firing_since is None:  # kept for its flap history; never listed
                status = "inactive"
            elif not moves and old is not None and old[4] == "resolved":
                continue  # resolved before and still quiet: nothing to write
            else:
                status = "resolved"
        notify = any(m.kind in NOTIFYING for m in moves) or (
            was_inhibited != inhibited and state.is_open
        )
        if notify and not inhibited:
            changed_stores.add(obs.store)
        doc = alert_document(key, obs, status, inhibited, active_since, firing_since,
                             resolved_at)  # fmt: skip
        # A resolved alert is news only to those who were told it fired.
        if any(m.kind is TransitionKind.RESOLVED for m in moves) and not (
            inhibited or was_inhibited
        ):
            resolved_now[obs.store].append(doc)
        tx.execute(
            "INSERT INTO alerts (fingerprint, alertname, terminal, store, state, lifecycle,"
            " inhibited, summary, details, active_since, firing_since, resolved_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (fingerprint) DO UPDATE"
            " SET state = excluded.state, lifecycle = excluded.lifecycle,"
            " inhibited = excluded.inhibited, summary = excluded.summary,"
            " details = excluded.details, active_since = excluded.active_since,"
            " firing_since = excluded.firing_since, resolved_at = excluded.resolved_at,"
            " updated_at = excluded.updated_at",
            (key, obs.alertname, obs.terminal, obs.store, status,
             json.dumps(lifecycle.export_state(key)), int(inhibited), obs.summary,
             json.dumps(obs.details, default=str), active_since, firing_since, resolved_at, now),
        )  # fmt: skip
    result.notifications = _enqueue(tx, now, config, changed_stores, resolved_now)


def alert_document(
    fingerprint: str,
    obs: Observation,
    state: str,
    inhibited: bool,
    active_since: float | None,
    firing_since: float | None,
    resolved_at: float | None,
) -> dict[str, Any]:
    def at(epoch: float | None) -> str | None:
        return None if epoch is None else rfc3339(float(epoch))

    return {
        "fingerprint": fingerprint,
        "alertname": obs.alertname,
        "terminal": obs.terminal,
        "store": obs.store,
        "state": state,
        "inhibited": inhibited,
        "summary": obs.summary,
        "details": obs.details,
        "active_since": at(active_since),
        "starts_at": at(firing_since),
        "ends_at": at(resolved_at),
        "starts_at_epoch": firing_since,
        "ends_at_epoch": resolved_at,
    }


def _open_alerts(tx: Transaction) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in tx.execute(
        "SELECT fingerprint, alertname, terminal, store, state, inhibited, summary, details,"
        " active_since, firing_since, resolved_at FROM alerts"
        " WHERE state IN ('firing', 'flapping') AND inhibited = 0 ORDER BY fingerprint"
    ).rows:
        obs = Observation(str(row[1]), row[2], str(row[3]), True, str(row[6]), json.loads(row[7]))
        out[obs.store].append(alert_document(str(row[0]), obs, str(row[4]), False, row[8],
                                             row[9], row[10]))  # fmt: skip
    return out


def _enqueue(
    tx: Transaction,
    now: float,
    config: AlertConfig,
    changed: set[str],
    resolved: dict[str, list[dict[str, Any]]],
) -> int:
    """Notifications of every store group that changed or is due again, per receiver."""
    receivers = tx.execute("SELECT name, kind FROM alert_receivers ORDER BY name").rows
    if not receivers:
        return 0
    open_alerts = _open_alerts(tx)
    groups = {str(r[0]): float(r[1]) for r in tx.execute(
        "SELECT store, last_notified_at FROM alert_groups WHERE last_notified_at IS NOT NULL"
    ).rows}  # fmt: skip
    count = 0
    for kind, every in (("webhook", config.repeat_interval_s),
                        ("alertmanager", config.alertmanager_resend_s)):  # fmt: skip
        names = [str(r[0]) for r in receivers if r[1] == kind]
        if not names:
            continue
        for home in sorted(set(open_alerts) | changed | set(resolved)):
            group = f"{kind}:{home}"
            last = groups.get(group)
            due = home in changed or (
                bool(open_alerts.get(home)) and (last is None or now - last >= every)
            )
            if not due:
                continue
            alerts = open_alerts.get(home, []) + resolved.get(home, [])
            if not alerts:
                continue
            reason = "change" if home in changed else "repeat"
            for name in names:
                nid = uuid.uuid4().hex
                if kind == "webhook":
                    body: Any = webhook_body(nid, home, reason, now, alerts)
                else:
                    body = postable_alerts(alerts, now, every, config.generator_url)
                tx.execute(
                    "INSERT INTO alert_outbox (id, receiver, body, created_at, attempts,"
                    " next_attempt_at) VALUES (?, ?, ?, ?, 0, ?)",
                    (nid, name, json.dumps(body, separators=(",", ":"), default=str), now, now),
                )
                count += 1
            tx.execute(
                "INSERT INTO alert_groups (store, last_notified_at, notified) VALUES (?, ?, ?)"
                " ON CONFLICT (store) DO UPDATE SET last_notified_at = excluded.last_notified_at,"
                " notified = excluded.notified",
                (group, now, reason),
            )
    return count


def webhook_body(
    nid: str, store_id: str, reason: str, now: float, alerts: list[dict[str, Any]]
) -> dict[str, Any]:
    shown = [{k: v for k, v in a.items() if not k.endswith("_epoch")} for a in alerts]
    firing = any(a["state"] in ("firing", "flapping") for a in alerts)
    return {
        "id": nid,
        "version": 1,
        "group": {"store": store_id},
        "status": "firing" if firing else "resolved",
        "reason": reason,
        "generated_at": rfc3339(now),
        "alerts": shown,
    }


def list_alerts(
    store: BackofficeStore, state: str | None = None, store_id: str | None = None
) -> list[dict[str, Any]]:
    """Stored alerts (pending, firing, flapping, resolved), newest change first."""
    sql = (
        "SELECT fingerprint, alertname, terminal, store, state, inhibited, summary, details,"
        " active_since, firing_since, resolved_at, updated_at FROM alerts"
        " WHERE state != 'inactive'"
    )
    params: list[Any] = []
    if state is not None:
        sql += " AND state = ?"
        params.append(state)
    if store_id is not None:
        sql += " AND store = ?"
        params.append(store_id)
    sql += " ORDER BY store, alertname, terminal"
    out = []
    acks = _acknowledgements(store)
    for row in store.db.execute(sql, params).rows:
        obs = Observation(str(row[1]), row[2], str(row[3]), True, str(row[6]), json.loads(row[7]))
        doc = alert_document(str(row[0]), obs, str(row[4]), bool(row[5]), row[8], row[9], row[10])
        doc["updated_at"] = rfc3339(float(row[11]))
        # Acknowledged on the dashboard (table alert_acks): this episode only.
        ack = acks.get(str(row[0]))
        acked = ack is not None and ack[0] == row[8]
        doc["acknowledged_by"] = ack[1] if ack is not None and acked else None
        doc["acknowledged_at"] = rfc3339(float(ack[2])) if ack is not None and acked else None
        out.append({k: v for k, v in doc.items() if not k.endswith("_epoch")})
    return out


def _acknowledgements(store: BackofficeStore) -> dict[str, tuple[Any, str, float]]:
    """fingerprint -> (episode, by, at) from the dashboard's table alert_acks (none in a
    database from before schema version 8)."""
    with store.transaction() as tx:
        if not tx.table_exists("alert_acks"):
            return {}
        rows = tx.execute("SELECT fingerprint, episode, acked_by, acked_at FROM alert_acks").rows
    return {str(r[0]): (r[1], str(r[2]), float(r[3])) for r in rows}


def known_stores(store: BackofficeStore) -> set[str]:
    """Stores the back office knows: the registry's, and those of alerts and terminals."""
    found = set(store_of_terminals(store).values())
    found |= {str(r[0]) for r in store.db.execute("SELECT DISTINCT store FROM alerts").rows}
    return found


__all__ = ["SIGNAL_KINDS", "Evaluation", "Observation", "evaluate", "list_alerts"]
