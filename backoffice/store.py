"""SQLite storage of the reference back office: events, heads, heartbeats, authorizations.

One writer connection (WAL, ``synchronous=NORMAL``, ``secure_delete`` so deleted
rows do not linger in free pages) serialised by a lock; every request is one
transaction. :meth:`BackofficeStore.ingest` implements "Events upload" of
``docs/sync-protocol.md`` exactly: a terminal's first batch starts at seq 1,
duplicates compared by hash, conflict, sequence gap, chain continuity and
explicit partial success; the acknowledgement is the highest seq held
contiguously, never one the store does not hold.
The authorization and reversal methods implement "Authorizations, attempts
and reversals": money is held per attempt, a reversal releases only the
attempt it names, and a reversal wins over its attempt whatever the order
they arrive in. A version-1 database is migrated on open (see :mod:`.schema`).

This module must never store the ``card`` object of an authorization (only
masked PAN, brand and PAN token), never store a plain hash of a body that
holds card data, and never log request contents.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from posedge.protocol.models import ZERO_HASH, Event, EventBatch

from .schema import MIGRATIONS, SCHEMA_VERSION
from .schema import SCHEMA as _SCHEMA

BUSY_TIMEOUT_S = 10.0
REVERSED_BEFORE_ARRIVAL = "reversed before it arrived"
REVERSED_BEFORE_DECISION = "reversed before it was decided"


COUNTER_NAMES = ("duplicates", "chain_breaks", "gaps", "conflicts")

IngestStatus = Literal["ok", "sequence-gap", "chain-mismatch", "conflict"]


@dataclass(frozen=True)
class IngestResult:
    """What one events upload did; ``status`` names the problem type when not ok."""

    status: IngestStatus
    acked_seq: int
    head_hash: str | None
    accepted: int = 0
    duplicates: int = 0
    expected_seq: int | None = None
    detail: str = ""


@dataclass(frozen=True)
class Claim:
    """Outcome of claiming an idempotency key.

    ``new``: decide it now (reversals: recorded now); ``replay``: the first
    answer for the key; ``refused``: an attempt whose reversal was already
    recorded, recorded as declined; ``already-reversed``: a reversal of an
    attempt reversed before under another key (the first reversal's answer);
    ``in-progress`` and ``mismatch``: problems. ``response`` is the answer to send.
    """

    kind: Literal["new", "replay", "refused", "already-reversed", "in-progress", "mismatch"]
    response: dict[str, Any] | None = None


@dataclass
class TerminalState:
    """Everything stored about one terminal, for reports."""

    terminal: str
    first_seq: int | None
    held_seq: int
    head_hash: str | None
    enrolled_at: float
    last_heartbeat_at: float | None
    heartbeat: dict[str, Any] | None
    reported_backlog: int | None
    reported_head_seq: int | None
    reported_head_hash: str | None
    interval_s: int | None
    counters: dict[str, int] = field(default_factory=dict)


class BackofficeStore:
    """The back office database. Thread-safe: one connection behind a lock."""

    def __init__(
        self, path: Path | str, clock: Callable[[], float] = time.time, readonly: bool = False
    ) -> None:
        self.path = Path(path)
        self.clock = clock
        self._lock = threading.Lock()
        self.schema_version = SCHEMA_VERSION
        if readonly:
            if not self.path.is_file():
                raise FileNotFoundError(
                    f"no back office database at {self.path}; "
                    "pass the --db file that `posedge backoffice serve` uses"
                )
            self._db = sqlite3.connect(
                f"{self.path.resolve().as_uri()}?mode=ro",
                uri=True,
                isolation_level=None,
                check_same_thread=False,
                timeout=BUSY_TIMEOUT_S,
            )
            self._db.execute("PRAGMA secure_delete = ON")
            self.schema_version = _stored_version(self._db) or SCHEMA_VERSION
            return
        self._db = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_S
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA secure_delete = ON")
        self._migrate()
        self._db.executescript(_SCHEMA)
        with self._lock, self._tx():
            self._db.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)",
                (str(SCHEMA_VERSION),),
            )
            # A decision interrupted by a crash never answered anyone: decide again.
            self._db.execute("DELETE FROM authorizations WHERE state = 'pending'")

    def _migrate(self) -> None:
        """Move a database of an older schema version forward, in one transaction."""
        with self._lock, self._tx() as db:
            version = _stored_version(db)
            if version is None or version == SCHEMA_VERSION:
                return
            if version > SCHEMA_VERSION:
                raise RuntimeError(
                    f"{self.path} has back office schema version {version}; this posedge "
                    f"knows versions up to {SCHEMA_VERSION}: upgrade posedge"
                )
            for target in range(version + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS[target]:
                    db.execute(statement)
            db.execute(
                "UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),)
            )

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> BackofficeStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- events ---------------------------------------------------------------------------

    def ingest(self, batch: EventBatch) -> IngestResult:
        """Apply one validated batch in one transaction (docs/sync-protocol.md, Events upload)."""
        terminal = batch.terminal
        now = self.clock()
        with self._lock, self._tx() as db:
            row = db.execute(
                "SELECT held_seq, head_hash, first_seq FROM terminals WHERE terminal = ?",
                (terminal,),
            ).fetchone()
            held, head = (int(row[0]), row[1]) if row else (0, None)
            first_held = int(row[2]) if row and row[2] is not None else 1
            result, new = self._compare_held(db, batch, held, head, first_held)
            if result is not None:
                return result
            dups = len(batch.events) - len(new)
            if not new:
                self._bump(db, terminal, duplicates=dups)
                return IngestResult("ok", held, head, 0, dups)
            refusal = self._check_start(db, terminal, new[0], held, head, dups)
            if refusal is not None:
                return refusal
            cut = len(new)
            for i in range(1, len(new)):
                if new[i].prev_hash != new[i - 1].hash:
                    cut = i
                    break
            stored = new[:cut]
            db.executemany(
                "INSERT INTO events (terminal, seq, ts, type, txn, payload, prev_hash, hash)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        terminal,
                        ev.seq,
                        ev.ts,
                        ev.type,
                        ev.txn,
                        json.dumps(ev.payload, separators=(",", ":"), ensure_ascii=False),
                        ev.prev_hash,
                        ev.hash,
                    )
                    for ev in stored
                ],
            )
            last = stored[-1]
            db.execute(
                "INSERT INTO terminals (terminal, first_seq, held_seq, head_hash, enrolled_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (terminal) DO UPDATE SET"
                " first_seq = coalesce(first_seq, excluded.first_seq),"
                " held_seq = excluded.held_seq, head_hash = excluded.head_hash",
                (terminal, stored[0].seq, last.seq, last.hash, now),
            )
            breaks = 1 if cut < len(new) else 0
            self._bump(db, terminal, duplicates=dups, chain_breaks=breaks)
            if breaks:
                return IngestResult(
                    "chain-mismatch",
                    last.seq,
                    last.hash,
                    len(stored),
                    dups,
                    expected_seq=last.seq + 1,
                    detail=f"stored through seq {last.seq}; event {new[cut].seq} has a prev_hash "
                    f"that is not the hash of event {last.seq}; resend from seq {last.seq + 1}",
                )
            return IngestResult("ok", last.seq, last.hash, len(stored), dups)

    def _compare_held(
        self,
        db: sqlite3.Connection,
        batch: EventBatch,
        held: int,
        head: str | None,
        first_held: int,
    ) -> tuple[IngestResult | None, list[Event]]:
        """Split off events at seqs already held; a different hash there is a conflict.

        Every seq the batch has at or below ``held`` is compared with the stored event.
        A seq below ``first_held`` (only a terminal enrolled mid-history by an older
        back office has one) cannot be compared: it is never counted as a duplicate,
        the batch is a sequence gap asking for ``held + 1``.
        """
        if batch.first_seq > held:
            return None, batch.events
        if batch.first_seq < first_held:
            self._bump(db, batch.terminal, gaps=1)
            return (
                IngestResult(
                    "sequence-gap",
                    held,
                    head,
                    expected_seq=held + 1,
                    detail=f"the back office holds seqs {first_held}..{held} of this terminal "
                    f"(enrolled mid-history by an older back office); seq {batch.first_seq} "
                    f"cannot be compared - send from seq {held + 1}",
                ),
                [],
            )
        old_count = min(batch.last_seq, held) - batch.first_seq + 1
        stored = dict(
            db.execute(
                "SELECT seq, hash FROM events WHERE terminal = ? AND seq BETWEEN ? AND ?",
                (batch.terminal, batch.first_seq, batch.first_seq + old_count - 1),
            ).fetchall()
        )
        for ev in batch.events[:old_count]:
            if stored.get(ev.seq) != ev.hash:
                self._bump(db, batch.terminal, conflicts=1)
                return (
                    IngestResult(
                        "conflict",
                        held,
                        head,
                        detail=f"the back office holds a different event at seq {ev.seq} "
                        "(hash differs); history was rewritten on one side - nothing stored",
                    ),
                    [],
                )
        return None, batch.events[old_count:]

    def _check_start(
        self,
        db: sqlite3.Connection,
        terminal: str,
        first_new: Event,
        held: int,
        head: str | None,
        dups: int,
    ) -> IngestResult | None:
        """The first new event must continue the held chain, or start it at seq 1.

        There is no retention checkpoint proof in the protocol yet, so a terminal with
        nothing held starts at seq 1 with a prev_hash of 64 zeros, whatever it says.
        """
        if held == 0:
            if first_new.seq != 1:
                self._bump(db, terminal, duplicates=dups, gaps=1)
                return IngestResult(
                    "sequence-gap",
                    0,
                    None,
                    duplicates=dups,
                    expected_seq=1,
                    detail=f"the back office holds nothing for this terminal: its first batch "
                    f"must start at seq 1, this one starts at {first_new.seq} (a journal pruned "
                    "before enrolment cannot be accepted: the protocol has no retention "
                    "checkpoint proof yet)",
                )
            if first_new.prev_hash != ZERO_HASH:
                self._bump(db, terminal, duplicates=dups, chain_breaks=1)
                return IngestResult(
                    "chain-mismatch",
                    0,
                    None,
                    duplicates=dups,
                    expected_seq=1,
                    detail="event 1 must have a prev_hash of 64 zeros",
                )
            return None
        if first_new.seq != held + 1:
            self._bump(db, terminal, duplicates=dups, gaps=1)
            return IngestResult(
                "sequence-gap",
                held,
                head,
                duplicates=dups,
                expected_seq=held + 1,
                detail=f"expected seq {held + 1}, batch starts at {first_new.seq}",
            )
        if first_new.prev_hash != head:
            self._bump(db, terminal, duplicates=dups, chain_breaks=1)
            return IngestResult(
                "chain-mismatch",
                held,
                head,
                duplicates=dups,
                expected_seq=held + 1,
                detail=f"event {first_new.seq} has a prev_hash that is not the hash of held "
                f"event {held}; the two sides disagree about history",
            )
        return None

    def _bump(self, db: sqlite3.Connection, terminal: str, **deltas: int) -> None:
        if not any(deltas.values()):
            return
        names = [name for name in COUNTER_NAMES if deltas.get(name)]
        db.execute(
            f"INSERT INTO counters (terminal, {', '.join(names)})"
            f" VALUES (?, {', '.join('?' for _ in names)})"
            f" ON CONFLICT (terminal) DO UPDATE SET "
            + ", ".join(f"{n} = {n} + excluded.{n}" for n in names),
            (terminal, *(deltas[n] for n in names)),
        )

    def head(self, terminal: str) -> tuple[int, str | None]:
        """Highest seq held for the terminal and its hash (``0, None`` when nothing held)."""
        with self._lock:
            row = self._db.execute(
                "SELECT held_seq, head_hash FROM terminals WHERE terminal = ?", (terminal,)
            ).fetchone()
        return (int(row[0]), row[1]) if row else (0, None)

    def events(self, terminal: str, since: int = 0) -> list[dict[str, Any]]:
        """Held events after ``since`` in seq order (for tests and exports)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, ts, type, txn, payload, prev_hash, hash FROM events"
                " WHERE terminal = ? AND seq > ? ORDER BY seq",
                (terminal, since),
            ).fetchall()
        keys = ("seq", "ts", "type", "txn", "payload", "prev_hash", "hash")
        out = [dict(zip(keys, row, strict=True)) for row in rows]
        for doc in out:
            doc["payload"] = json.loads(doc["payload"])
        return out

    # -- heartbeats -----------------------------------------------------------------------

    def record_heartbeat(
        self, terminal: str, heartbeat: dict[str, Any], interval_s: int, now: float | None = None
    ) -> None:
        """Keep the latest heartbeat, the reported journal head (an anchor) and backlog."""
        now = self.clock() if now is None else now
        head = heartbeat.get("journal_head") or {}
        with self._lock, self._tx() as db:
            db.execute(
                "INSERT INTO terminals (terminal, enrolled_at, last_heartbeat_at, heartbeat_json,"
                " reported_backlog, reported_head_seq, reported_head_hash, interval_s)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (terminal) DO UPDATE SET"
                " last_heartbeat_at = excluded.last_heartbeat_at,"
                " heartbeat_json = excluded.heartbeat_json,"
                " reported_backlog = excluded.reported_backlog,"
                " reported_head_seq = excluded.reported_head_seq,"
                " reported_head_hash = excluded.reported_head_hash,"
                " interval_s = excluded.interval_s",
                (
                    terminal,
                    now,
                    now,
                    json.dumps(heartbeat, separators=(",", ":")),
                    heartbeat.get("unsynced_count"),
                    head.get("seq"),
                    head.get("hash"),
                    interval_s,
                ),
            )

    # -- authorizations and reversals -------------------------------------------------------
    #
    # An authorization's idempotency key is its attempt id (the app checks that the body's
    # ``attempt`` equals it), so ``authorizations.idem_key`` is the attempt.

    def claim_authorization(
        self,
        terminal: str,
        idem_key: str,
        fingerprint: str,
        record: dict[str, Any],
        now: float | None = None,
    ) -> Claim:
        """Claim the attempt ``idem_key``; ``record`` holds only masked PAN, brand and token.

        A known key is a replay, a mismatch or in progress. A new attempt whose
        reversal is already recorded is recorded as declined ("reversal wins")
        and that decline is the answer (``refused``); else it is claimed
        (``new``) for the caller to decide.
        """
        now = self.clock() if now is None else now
        with self._lock, self._tx() as db:
            row = db.execute(
                "SELECT body_sha256, state, response_json FROM authorizations"
                " WHERE terminal = ? AND idem_key = ?",
                (terminal, idem_key),
            ).fetchone()
            if row is not None:
                if row[0] != fingerprint:
                    return Claim("mismatch")
                if row[1] == "pending":
                    return Claim("in-progress")
                return Claim("replay", json.loads(row[2]))
            reversed_at = self._reversed_at(db, terminal, idem_key)
            response = None
            if reversed_at is not None:
                response = _declined(record["txn"], idem_key, REVERSED_BEFORE_ARRIVAL)
            db.execute(
                "INSERT INTO authorizations (terminal, idem_key, txn, body_sha256, state, amount,"
                " currency, masked_pan, brand, pan_token, forwarded, outcome, response_json,"
                " created_at, decided_at, reversed_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    terminal,
                    idem_key,
                    record["txn"],
                    fingerprint,
                    "pending" if response is None else "decided",
                    record["amount"],
                    record["currency"],
                    record["masked_pan"],
                    record.get("brand"),
                    record.get("pan_token"),
                    int(bool(record.get("forwarded"))),
                    None if response is None else "declined",
                    None if response is None else json.dumps(response),
                    now,
                    None if response is None else now,
                    reversed_at,
                ),
            )
        if response is not None:
            return Claim("refused", response)
        return Claim("new")

    def decide_authorization(
        self, terminal: str, idem_key: str, response: dict[str, Any], now: float | None = None
    ) -> dict[str, Any]:
        """Record the decision on a claimed attempt and return the answer to send.

        If a reversal of the attempt was recorded while it was being decided, the
        decision becomes a decline ("reversed before it was decided").
        """
        now = self.clock() if now is None else now
        with self._lock, self._tx() as db:
            reversed_at = self._reversed_at(db, terminal, idem_key)
            if reversed_at is not None:
                response = _declined(str(response["txn"]), idem_key, REVERSED_BEFORE_DECISION)
            db.execute(
                "UPDATE authorizations SET state = 'decided', outcome = ?, response_json = ?,"
                " decided_at = ?, reversed_at = coalesce(reversed_at, ?)"
                " WHERE terminal = ? AND idem_key = ?",
                (
                    response["outcome"],
                    json.dumps(response),
                    now,
                    reversed_at,
                    terminal,
                    idem_key,
                ),
            )
        return response

    def release_authorization(self, terminal: str, idem_key: str) -> None:
        """Forget a claim whose decision failed before any answer was sent."""
        with self._lock, self._tx() as db:
            db.execute(
                "DELETE FROM authorizations WHERE terminal = ? AND idem_key = ?"
                " AND state = 'pending'",
                (terminal, idem_key),
            )

    def record_reversal(
        self,
        terminal: str,
        idem_key: str,
        txn: str,
        attempt: str,
        fingerprint: str,
        now: float | None = None,
    ) -> Claim:
        """Record the reversal of ``attempt`` once, whether or not the attempt is known.

        Replays of the key return the first answer (a different body: mismatch);
        another key for an attempt already reversed returns the first reversal's
        answer and changes nothing. Otherwise the reversal releases that attempt
        only; ``had_authorization`` says whether it held an approved, unreversed
        authorization at this moment.
        """
        now = self.clock() if now is None else now
        with self._lock, self._tx() as db:
            row = db.execute(
                "SELECT body_sha256, response_json FROM reversals"
                " WHERE terminal = ? AND idem_key = ?",
                (terminal, idem_key),
            ).fetchone()
            if row is not None:
                if row[0] != fingerprint:
                    return Claim("mismatch")
                return Claim("replay", json.loads(row[1]))
            first = db.execute(
                "SELECT response_json FROM reversals WHERE terminal = ? AND attempt = ?",
                (terminal, attempt),
            ).fetchone()
            if first is not None:
                return Claim("already-reversed", json.loads(first[0]))
            had = db.execute(
                "SELECT count(*) FROM authorizations WHERE terminal = ? AND idem_key = ?"
                " AND outcome = 'approved' AND reversed_at IS NULL",
                (terminal, attempt),
            ).fetchone()[0]
            response = {
                "txn": txn,
                "attempt": attempt,
                "reversed": True,
                "had_authorization": bool(had),
            }
            db.execute(
                "UPDATE authorizations SET reversed_at = ?"
                " WHERE terminal = ? AND idem_key = ? AND reversed_at IS NULL",
                (now, terminal, attempt),
            )
            db.execute(
                "INSERT INTO reversals (terminal, idem_key, txn, attempt, body_sha256,"
                " had_authorization, response_json, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    terminal,
                    idem_key,
                    txn,
                    attempt,
                    fingerprint,
                    int(bool(had)),
                    json.dumps(response),
                    now,
                ),
            )
        return Claim("new", response)

    @staticmethod
    def _reversed_at(db: sqlite3.Connection, terminal: str, attempt: str) -> float | None:
        """When the reversal of ``attempt`` was recorded, or None."""
        row = db.execute(
            "SELECT created_at FROM reversals WHERE terminal = ? AND attempt = ?",
            (terminal, attempt),
        ).fetchone()
        return None if row is None else float(row[0])

    def authorizations(self, terminal: str) -> list[dict[str, Any]]:
        with self._lock:
            cur = self._db.execute(
                "SELECT * FROM authorizations WHERE terminal = ? ORDER BY created_at", (terminal,)
            )
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def captured(self, terminal: str) -> dict[str, int]:
        """Captured amount per txn: the sum over its approved attempts not reversed.

        Sales with no such attempt are absent (they captured nothing).
        """
        with self._lock:
            rows = self._db.execute(
                "SELECT txn, sum(amount) FROM authorizations WHERE terminal = ?"
                " AND state = 'decided' AND outcome = 'approved' AND reversed_at IS NULL"
                " GROUP BY txn ORDER BY txn",
                (terminal,),
            ).fetchall()
        return {str(txn): int(total) for txn, total in rows}

    def reversals(self, terminal: str) -> list[dict[str, Any]]:
        """The reversals recorded for the terminal, oldest first.

        Each: ``reversal`` (its key), ``txn``, ``attempt``, ``had_authorization``,
        ``created_at``.
        """
        attempt = "attempt" if self.schema_version >= 2 else "txn"  # a read-only v1 file
        with self._lock:
            rows = self._db.execute(
                f"SELECT idem_key, txn, {attempt}, had_authorization, created_at FROM reversals"
                " WHERE terminal = ? ORDER BY created_at, idem_key",
                (terminal,),
            ).fetchall()
        return [
            {
                "reversal": key,
                "txn": txn,
                "attempt": named,
                "had_authorization": bool(had),
                "created_at": created,
            }
            for key, txn, named, had, created in rows
        ]

    def money_terminals(self) -> list[str]:
        """Terminals with any authorization, reversal or event, sorted."""
        with self._lock:
            rows = self._db.execute(
                "SELECT terminal FROM authorizations UNION SELECT terminal FROM reversals"
                " UNION SELECT terminal FROM terminals ORDER BY 1"
            ).fetchall()
        return [str(row[0]) for row in rows]

    # -- reporting ------------------------------------------------------------------------

    def terminal_states(self) -> list[TerminalState]:
        with self._lock:
            rows = self._db.execute(
                "SELECT t.terminal, first_seq, held_seq, head_hash, enrolled_at,"
                " last_heartbeat_at, heartbeat_json, reported_backlog, reported_head_seq,"
                " reported_head_hash, interval_s, coalesce(c.duplicates, 0),"
                " coalesce(c.chain_breaks, 0), coalesce(c.gaps, 0), coalesce(c.conflicts, 0)"
                " FROM terminals t LEFT JOIN counters c ON c.terminal = t.terminal"
                " ORDER BY t.terminal"
            ).fetchall()
        return [
            TerminalState(
                terminal=row[0],
                first_seq=row[1],
                held_seq=row[2],
                head_hash=row[3],
                enrolled_at=row[4],
                last_heartbeat_at=row[5],
                heartbeat=json.loads(row[6]) if row[6] else None,
                reported_backlog=row[7],
                reported_head_seq=row[8],
                reported_head_hash=row[9],
                interval_s=row[10],
                counters=dict(zip(COUNTER_NAMES, row[11:], strict=True)),
            )
            for row in rows
        ]

    def held_integrity(self, terminal: str) -> dict[str, int]:
        """Count events held, missing seqs and chain breaks in what is stored (all should be 0)."""
        with self._lock:
            count, low, high = self._db.execute(
                "SELECT count(*), min(seq), max(seq) FROM events WHERE terminal = ?", (terminal,)
            ).fetchone()
            breaks = self._db.execute(
                "SELECT count(*) FROM (SELECT prev_hash, lag(hash) OVER w AS before,"
                " lag(seq) OVER w AS before_seq, seq FROM events WHERE terminal = ?"
                " WINDOW w AS (ORDER BY seq))"
                " WHERE before IS NOT NULL AND (prev_hash != before OR seq != before_seq + 1)",
                (terminal,),
            ).fetchone()[0]
        missing = (high - low + 1 - count) if count else 0
        return {"events": int(count), "missing_seqs": int(missing), "chain_breaks": int(breaks)}


def _stored_version(db: sqlite3.Connection) -> int | None:
    """The schema version a database file records (None: a new, empty file)."""
    has_meta = db.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
    ).fetchone()
    if has_meta is None:
        return None
    row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return None if row is None else int(row[0])


def _declined(txn: str, attempt: str, reason: str) -> dict[str, Any]:
    return {
        "txn": txn,
        "attempt": attempt,
        "outcome": "declined",
        "auth_code": None,
        "reason": reason,
    }
