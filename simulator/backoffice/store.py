"""SQLite storage of the reference back office: events, heads, heartbeats, authorizations.

One writer connection (WAL, ``synchronous=NORMAL``) serialised by a lock; every
request is one transaction. :meth:`BackofficeStore.ingest` implements
"Events upload" of ``docs/sync-protocol.md`` exactly: duplicates compared by
hash, conflict, sequence gap, chain continuity and explicit partial success.

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

from .schema import SCHEMA as _SCHEMA
from .schema import SCHEMA_VERSION

BUSY_TIMEOUT_S = 10.0


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
    """Outcome of claiming an idempotency key."""

    kind: Literal["new", "replay", "in-progress", "mismatch"]
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
            return
        self._db = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_S
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        with self._lock, self._tx():
            self._db.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)",
                (str(SCHEMA_VERSION),),
            )
            # A decision interrupted by a crash never answered anyone: decide again.
            self._db.execute("DELETE FROM authorizations WHERE state = 'pending'")

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
                "SELECT held_seq, head_hash FROM terminals WHERE terminal = ?", (terminal,)
            ).fetchone()
            held, head = (int(row[0]), row[1]) if row else (0, None)
            result, new = self._compare_held(db, batch, held, head)
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
        self, db: sqlite3.Connection, batch: EventBatch, held: int, head: str | None
    ) -> tuple[IngestResult | None, list[Event]]:
        """Split off events at seqs already held; a different hash there is a conflict."""
        if batch.first_seq > held:
            return None, batch.events
        old_count = min(batch.last_seq, held) - batch.first_seq + 1
        stored = dict(
            db.execute(
                "SELECT seq, hash FROM events WHERE terminal = ? AND seq BETWEEN ? AND ?",
                (batch.terminal, batch.first_seq, batch.first_seq + old_count - 1),
            ).fetchall()
        )
        for ev in batch.events[:old_count]:
            held_hash = stored.get(ev.seq)
            # Seqs below the first one held (a journal pruned before enrolment) cannot be
            # compared; they are absorbed like duplicates.
            if held_hash is not None and held_hash != ev.hash:
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
        """The first new event must continue the held chain (or start a new one)."""
        if held == 0:
            if first_new.seq == 1 and first_new.prev_hash != ZERO_HASH:
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

    def claim_authorization(
        self,
        terminal: str,
        idem_key: str,
        fingerprint: str,
        record: dict[str, Any],
        now: float | None = None,
    ) -> Claim:
        """Claim an idempotency key; ``record`` holds only masked PAN, brand and token."""
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
            db.execute(
                "INSERT INTO authorizations (terminal, idem_key, txn, body_sha256, state, amount,"
                " currency, masked_pan, brand, pan_token, forwarded, created_at)"
                " VALUES (?, ?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?)",
                (
                    terminal,
                    idem_key,
                    record["txn"],
                    fingerprint,
                    record["amount"],
                    record["currency"],
                    record["masked_pan"],
                    record.get("brand"),
                    record.get("pan_token"),
                    int(bool(record.get("forwarded"))),
                    now,
                ),
            )
        return Claim("new")

    def decide_authorization(
        self, terminal: str, idem_key: str, response: dict[str, Any], now: float | None = None
    ) -> None:
        now = self.clock() if now is None else now
        with self._lock, self._tx() as db:
            db.execute(
                "UPDATE authorizations SET state = 'decided', outcome = ?, response_json = ?,"
                " decided_at = ? WHERE terminal = ? AND idem_key = ?",
                (response["outcome"], json.dumps(response), now, terminal, idem_key),
            )

    def release_authorization(self, terminal: str, idem_key: str) -> None:
        """Forget a claim whose decision failed before any answer was sent."""
        with self._lock, self._tx() as db:
            db.execute(
                "DELETE FROM authorizations WHERE terminal = ? AND idem_key = ?"
                " AND state = 'pending'",
                (terminal, idem_key),
            )

    def record_reversal(
        self, terminal: str, idem_key: str, txn: str, fingerprint: str, now: float | None = None
    ) -> Claim:
        """Acknowledge a reversal once; replays return the first response."""
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
            had = db.execute(
                "SELECT count(*) FROM authorizations WHERE terminal = ? AND txn = ?"
                " AND outcome = 'approved'",
                (terminal, txn),
            ).fetchone()[0]
            response = {"txn": txn, "reversed": True, "had_authorization": bool(had)}
            db.execute(
                "UPDATE authorizations SET reversed_at = ? WHERE terminal = ? AND txn = ?",
                (now, terminal, txn),
            )
            db.execute(
                "INSERT INTO reversals (terminal, idem_key, txn, body_sha256, had_authorization,"
                " response_json, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (terminal, idem_key, txn, fingerprint, int(bool(had)), json.dumps(response), now),
            )
        return Claim("new", response)

    def authorizations(self, terminal: str) -> list[dict[str, Any]]:
        with self._lock:
            cur = self._db.execute(
                "SELECT * FROM authorizations WHERE terminal = ? ORDER BY created_at", (terminal,)
            )
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

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
