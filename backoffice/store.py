"""Storage of the back office: events, heads, heartbeats, authorizations — on SQLite or PostgreSQL.

One implementation over :mod:`.db` (SQLite file or PostgreSQL URL); every
request is one transaction. :meth:`BackofficeStore.ingest` implements "Events
upload" of ``docs/sync-protocol.md`` exactly: a terminal's first batch starts
at seq 1, duplicates compared by hash, conflict, sequence gap, chain
continuity and explicit partial success; the acknowledgement is the highest
seq held contiguously, never one the store does not hold. Events are written
under the terminal's lock, above the head: by ``COPY`` on PostgreSQL, by
``INSERT … ON CONFLICT (terminal, seq) DO NOTHING`` on SQLite and for lost seqs
below the head; the unique key refuses a row that is there all the same.
The authorization and reversal methods implement "Authorizations, attempts
and reversals": money is held per attempt, a reversal releases only the
attempt it names, and a reversal wins over its attempt whatever the order
they arrive in. An older database is migrated on open (:mod:`.migrations`).

Replicas (any number of processes on one PostgreSQL database) get from the
database what one process gets from its lock: every ingest transaction first
takes the terminal's advisory lock (:meth:`.db.Transaction.lock`), so a
terminal's batches apply one at a time, in whatever order and on whatever
replica they arrive, each against the head the previous one committed; every
claim, decision, release and reversal of an attempt first takes the attempt's
lock (a reversal also its own key's), so "reversal wins", "in progress" and
``had_authorization`` are decided on committed rows. Nothing about a request
lives in a process between calls: a claim being decided is a ``pending`` row
with a lease (table authorization_claims), seen as in progress by every replica
until it is decided, released, or its lease runs out (then another replica
takes it over). Heartbeats are one upsert in their own transaction, with no
advisory lock.

This module must never store the ``card`` object of an authorization (only
masked PAN, brand and PAN token), never store a plain hash of a body that
holds card data, and never log request contents.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic_core import to_json

from posedge.protocol.models import ZERO_HASH, Event, EventBatch

from .closes.holes import refill
from .db import (
    DEFAULT_POOL_SIZE,
    Database,
    DatabaseConfigError,
    DuplicateRows,
    Transaction,
    open_database,
    usage_error,
)
from .migrations import migrate, read_version

REVERSED_BEFORE_ARRIVAL = "reversed before it arrived"
REVERSED_BEFORE_DECISION = "reversed before it was decided"
# A claim's lease beyond the policy's think time: a replica that holds a claim longer has
# died or hung, and another replica may take the attempt over.
CLAIM_LEASE_S = 30.0


COUNTER_NAMES = ("duplicates", "chain_breaks", "gaps", "conflicts")

IngestStatus = Literal["ok", "sequence-gap", "chain-mismatch", "conflict"]

EVENT_COLUMNS = ("terminal", "seq", "ts", "type", "txn", "payload", "prev_hash", "hash")
_INSERT_EVENTS = (
    "INSERT INTO events (terminal, seq, ts, type, txn, payload, prev_hash, hash)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (terminal, seq) DO NOTHING"
)
# PostgreSQL: the whole batch in one statement, one array per column.
_INSERT_EVENTS_ARRAYS = (
    "INSERT INTO events (terminal, seq, ts, type, txn, payload, prev_hash, hash)"
    " SELECT ?, * FROM unnest(?::bigint[], ?::text[], ?::text[], ?::text[], ?::text[],"
    " ?::text[], ?::text[]) ON CONFLICT (terminal, seq) DO NOTHING"
)


def terminal_lock(terminal: str) -> str:
    """The lock name that serialises a terminal's events uploads."""
    return f"events\x1f{terminal}"


def attempt_lock(terminal: str, key: str) -> str:
    """The lock name that serialises everything about one attempt (or one reversal key)."""
    return f"attempt\x1f{terminal}\x1f{key}"


class ClaimLost(RuntimeError):
    """A claim was released by another replica before this one could record its decision."""


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
    #: Seqs below the head the back office lacked and took from this batch (a resend;
    #: backoffice/closes/holes.py), counted in ``accepted``.
    filled: tuple[int, ...] = ()


@dataclass(frozen=True)
class Claim:
    """Outcome of claiming an idempotency key.

    ``new``: decide it now (reversals: recorded now); ``replay``: the first
    answer for the key; ``refused``: an attempt whose reversal was already
    recorded, recorded as declined; ``already-reversed``: a reversal of an
    attempt reversed before under another key (the first reversal's answer);
    ``in-progress`` and ``mismatch``: problems. ``response`` is the answer to send.
    A ``new`` authorization claim carries its ``token``.
    """

    kind: Literal["new", "replay", "refused", "already-reversed", "in-progress", "mismatch"]
    response: dict[str, Any] | None = None
    #: A ``new`` authorization claim's holder: pass it to release the claim.
    token: str | None = None


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
    """The back office database, on SQLite or PostgreSQL. Thread-safe.

    ``target`` is a SQLite file path or a ``postgresql://`` URL (:mod:`.db`);
    ``pool_size`` bounds the PostgreSQL connections of this process. Opening for
    writing migrates the schema; ``readonly`` never writes (reports, reconcile).
    ``serving``: this process serves the protocol from the database (the server
    sets it). On SQLite, where one process serves a file, claims its previous run
    left pending are then discarded at once; elsewhere, and for tools that open
    the database beside a running server, a pending claim waits for its lease.
    """

    def __init__(
        self,
        target: Path | str,
        clock: Callable[[], float] = time.time,
        readonly: bool = False,
        pool_size: int = DEFAULT_POOL_SIZE,
        serving: bool = False,
    ) -> None:
        self.clock = clock
        self.db: Database = open_database(
            target, readonly=readonly, pool_size=pool_size, warm=serving
        )
        self.display = self.db.display
        self.path: Path | None = target if isinstance(target, Path) else None
        if self.path is None and self.db.dialect == "sqlite":
            self.path = Path(target)
        try:
            if readonly:
                version = read_version(self.db)
                if version is None:
                    raise DatabaseConfigError(
                        f"{self.display} holds no back office schema: pass the --db that "
                        "`posedge backoffice serve` uses (serve creates the schema)"
                    )
                self.schema_version = version
                return
            _, self.schema_version = migrate(self.db)
            if serving and self.db.dialect == "sqlite":
                # One process serves a SQLite file: a claim left pending was interrupted by a
                # crash and never answered anyone, so it is decided again at once. (On
                # PostgreSQL other replicas may be deciding: there a lease expires instead.)
                with self.db.transaction() as db:
                    db.execute("DELETE FROM authorizations WHERE state = 'pending'")
                    db.execute("DELETE FROM authorization_claims")
        except BaseException as exc:
            self.db.close()
            error = usage_error(self.display, exc)
            if error is None or error is exc:
                raise
            raise error from None

    @property
    def concurrent(self) -> bool:
        """Calls may run in parallel threads (PostgreSQL); SQLite serialises them anyway."""
        return self.db.concurrent

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> BackofficeStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- for modules that keep their own tables in this database (registry.py) ---------------

    def transaction(self) -> AbstractContextManager[Transaction]:
        """One transaction on this database (``?`` placeholders): committed at the end of
        the block, rolled back when it raises."""
        return self.db.transaction()

    # -- events ---------------------------------------------------------------------------

    def ingest(
        self, batch: EventBatch, admit: Callable[[Transaction], object] | None = None
    ) -> IngestResult:
        """Apply one validated batch in one transaction (docs/sync-protocol.md, Events upload).

        ``admit`` runs first in that transaction (the app's registry rules and signature
        check: one connection and one round of statements per upload); it raises to refuse
        the batch, and then nothing is stored."""
        terminal = batch.terminal
        now = self.clock()
        with self.db.transaction() as db:
            if admit is not None:
                admit(db)
            db.lock(terminal_lock(terminal))
            row = db.execute(
                "SELECT held_seq, head_hash, first_seq FROM terminals WHERE terminal = ?",
                (terminal,),
            ).fetchone()
            held, head = (int(row[0]), row[1]) if row else (0, None)
            first_held = int(row[2]) if row and row[2] is not None else 1
            result, new, fills = self._compare_held(db, batch, held, head, first_held)
            if result is not None:
                return result
            if fills:
                self._insert_events(db, terminal, fills, fills=True)
            filled = tuple(ev.seq for ev in fills)
            dups = len(batch.events) - len(new) - len(fills)
            if not new:
                self._bump(db, terminal, duplicates=dups)
                return IngestResult("ok", held, head, len(fills), dups, filled=filled)
            refusal = self._check_start(db, terminal, new[0], held, head, dups)
            if refusal is not None:
                return refusal
            cut = len(new)
            for i in range(1, len(new)):
                if new[i].prev_hash != new[i - 1].hash:
                    cut = i
                    break
            stored = new[:cut]
            self._insert_events(db, terminal, stored)
            last = stored[-1]
            db.execute(
                "INSERT INTO terminals (terminal, first_seq, held_seq, head_hash, enrolled_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (terminal) DO UPDATE SET"
                " first_seq = coalesce(terminals.first_seq, excluded.first_seq),"
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
                    len(stored) + len(fills),
                    dups,
                    expected_seq=last.seq + 1,
                    detail=f"stored through seq {last.seq}; event {new[cut].seq} has a prev_hash "
                    f"that is not the hash of event {last.seq}; resend from seq {last.seq + 1}",
                    filled=filled,
                )
            return IngestResult(
                "ok", last.seq, last.hash, len(stored) + len(fills), dups, filled=filled
            )

    @staticmethod
    def _insert_events(
        db: Transaction, terminal: str, events: list[Event], fills: bool = False
    ) -> None:
        """Store events at seqs the store does not hold (free: the terminal's lock is held).

        On PostgreSQL events above the head go in by ``COPY`` (:meth:`.db.Transaction.
        copy_rows`): a third of the server's and the client's work of a multi-row INSERT.
        ``fills`` (seqs below the head that were lost) and SQLite use ``INSERT … ON CONFLICT
        (terminal, seq) DO NOTHING``. Either way the unique key is the judge: should a row
        be there all the same, nothing is written and the transaction rolls back.
        """
        # Compact JSON, UTF-8 as is (pydantic's serializer: ~7x faster than json.dumps).
        payloads = [to_json(ev.payload).decode() for ev in events]
        if db.dialect == "postgresql" and not fills:
            try:
                db.copy_rows(
                    "events",
                    EVENT_COLUMNS,
                    [
                        (terminal, ev.seq, ev.ts, ev.type, ev.txn, payload, ev.prev_hash, ev.hash)
                        for ev, payload in zip(events, payloads, strict=True)
                    ],
                )
            except DuplicateRows:
                written = -1
            else:
                written = len(events)
        elif db.dialect == "postgresql":
            written = db.execute(
                _INSERT_EVENTS_ARRAYS,
                (
                    terminal,
                    [ev.seq for ev in events],
                    [ev.ts for ev in events],
                    [ev.type for ev in events],
                    [ev.txn for ev in events],
                    payloads,
                    [ev.prev_hash for ev in events],
                    [ev.hash for ev in events],
                ),
                binary=True,
            ).rowcount
        else:
            written = db.executemany(
                _INSERT_EVENTS,
                [
                    (terminal, ev.seq, ev.ts, ev.type, ev.txn, payload, ev.prev_hash, ev.hash)
                    for ev, payload in zip(events, payloads, strict=True)
                ],
            )
        if written != len(events):
            held = "some" if written < 0 else str(len(events) - written)
            raise RuntimeError(
                f"terminal {terminal}: {held} of seqs {events[0].seq}..{events[-1].seq} were "
                "stored already although the store's head says otherwise; nothing was written "
                "(the database was changed outside the back office?)"
            )

    def _compare_held(
        self,
        db: Transaction,
        batch: EventBatch,
        held: int,
        head: str | None,
        first_held: int,
    ) -> tuple[IngestResult | None, list[Event], list[Event]]:
        """Split off events at seqs already held; a different hash there is a conflict.

        Returns (refusal, events above the head, fills). Every seq the batch has at or
        below ``held`` is compared with the stored event; one the store lacks (deleted,
        lost) is a fill when it fits the hashes around it (:func:`.closes.holes.refill`).
        A seq below ``first_held`` (only a terminal enrolled mid-history by an older
        back office has one) cannot be compared: it is never counted as a duplicate,
        the batch is a sequence gap asking for ``held + 1``.
        """
        if batch.first_seq > held:
            return None, batch.events, []
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
                [],
            )
        old_count = min(batch.last_seq, held) - batch.first_seq + 1
        stored = {
            int(seq): (prev, hash_)
            for seq, prev, hash_ in db.execute(
                "SELECT seq, prev_hash, hash FROM events"
                " WHERE terminal = ? AND seq BETWEEN ? AND ?",
                (batch.terminal, batch.first_seq - 1, batch.first_seq + old_count),
            ).fetchall()
        }

        def last_held_below(seq: int) -> int:
            row = db.execute(
                "SELECT max(seq) FROM events WHERE terminal = ? AND seq < ?", (batch.terminal, seq)
            ).fetchone()
            return int(row[0]) if row and row[0] is not None else 0

        fills, refusal = refill(batch.events[:old_count], stored, held, head, last_held_below)
        if refusal is not None:
            counter = {"conflict": "conflicts", "sequence-gap": "gaps"}.get(
                refusal.status, "chain_breaks"
            )
            self._bump(db, batch.terminal, **{counter: 1})
            return (
                IngestResult(
                    refusal.status, held, head, expected_seq=refusal.expected_seq,
                    detail=refusal.detail,
                ),
                [],
                [],
            )  # fmt: skip
        return None, batch.events[old_count:], fills

    def _check_start(
        self,
        db: Transaction,
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

    def _bump(self, db: Transaction, terminal: str, **deltas: int) -> None:
        if not any(deltas.values()):
            return
        names = [name for name in COUNTER_NAMES if deltas.get(name)]
        db.execute(
            f"INSERT INTO counters (terminal, {', '.join(names)})"
            f" VALUES (?, {', '.join('?' for _ in names)})"
            f" ON CONFLICT (terminal) DO UPDATE SET "
            + ", ".join(f"{n} = counters.{n} + excluded.{n}" for n in names),
            (terminal, *(deltas[n] for n in names)),
        )

    def head(self, terminal: str) -> tuple[int, str | None]:
        """Highest seq held for the terminal and its hash (``0, None`` when nothing held)."""
        row = self.db.execute(
            "SELECT held_seq, head_hash FROM terminals WHERE terminal = ?", (terminal,)
        ).fetchone()
        return (int(row[0]), row[1]) if row else (0, None)

    def events(self, terminal: str, since: int = 0) -> list[dict[str, Any]]:
        """Held events after ``since`` in seq order (for tests and exports)."""
        rows = self.db.execute(
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
        with self.db.transaction() as db:
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
        lease_s: float = CLAIM_LEASE_S,
    ) -> Claim:
        """Claim the attempt ``idem_key``; ``record`` holds only masked PAN, brand and token.

        A known key is a replay, a mismatch or in progress (a pending claim whose
        lease has not run out, on any replica). A new attempt whose reversal is
        already recorded is recorded as declined ("reversal wins") and that
        decline is the answer (``refused``); else it is claimed (``new``, with its
        ``token``) for the caller to decide within ``lease_s`` seconds. A pending
        claim whose lease ran out (its replica died) is taken over the same way.
        """
        now = self.clock() if now is None else now
        token = secrets.token_hex(16)
        with self.db.transaction() as db:
            db.lock(attempt_lock(terminal, idem_key))
            row = db.execute(
                "SELECT a.body_sha256, a.state, a.response_json, c.expires_at"
                " FROM authorizations a LEFT JOIN authorization_claims c"
                " ON c.terminal = a.terminal AND c.idem_key = a.idem_key"
                " WHERE a.terminal = ? AND a.idem_key = ?",
                (terminal, idem_key),
            ).fetchone()
            if row is not None:
                if row[0] != fingerprint:
                    return Claim("mismatch")
                if row[1] != "pending":
                    return Claim("replay", json.loads(row[2]))
                if row[3] is not None and float(row[3]) > now:
                    return Claim("in-progress")
                self._lease(db, terminal, idem_key, token, now + lease_s)  # taken over
                return Claim("new", token=token)
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
            self._lease(db, terminal, idem_key, token, now + lease_s)
        return Claim("new", token=token)

    @staticmethod
    def _lease(db: Transaction, terminal: str, idem_key: str, token: str, until: float) -> None:
        db.execute(
            "INSERT INTO authorization_claims (terminal, idem_key, token, expires_at)"
            " VALUES (?, ?, ?, ?) ON CONFLICT (terminal, idem_key) DO UPDATE SET"
            " token = excluded.token, expires_at = excluded.expires_at",
            (terminal, idem_key, token, until),
        )

    def decide_authorization(
        self, terminal: str, idem_key: str, response: dict[str, Any], now: float | None = None
    ) -> dict[str, Any]:
        """Record the decision on a claimed attempt and return the answer to send.

        If a reversal of the attempt was recorded while it was being decided, the
        decision becomes a decline ("reversed before it was decided"). The first
        decision recorded wins: when another replica took the claim over and
        decided first, its answer is returned (and it is this one's answer too).
        """
        now = self.clock() if now is None else now
        with self.db.transaction() as db:
            db.lock(attempt_lock(terminal, idem_key))
            reversed_at = self._reversed_at(db, terminal, idem_key)
            if reversed_at is not None:
                response = _declined(str(response["txn"]), idem_key, REVERSED_BEFORE_DECISION)
            updated = db.execute(
                "UPDATE authorizations SET state = 'decided', outcome = ?, response_json = ?,"
                " decided_at = ?, reversed_at = coalesce(reversed_at, ?)"
                " WHERE terminal = ? AND idem_key = ? AND state = 'pending'",
                (
                    response["outcome"],
                    json.dumps(response),
                    now,
                    reversed_at,
                    terminal,
                    idem_key,
                ),
            ).rowcount
            if updated == 1:
                db.execute(
                    "DELETE FROM authorization_claims WHERE terminal = ? AND idem_key = ?",
                    (terminal, idem_key),
                )
                return response
            row = db.execute(
                "SELECT state, response_json FROM authorizations"
                " WHERE terminal = ? AND idem_key = ?",
                (terminal, idem_key),
            ).fetchone()
        if row is not None and row[0] == "decided":
            answer: dict[str, Any] = json.loads(row[1])
            return answer
        raise ClaimLost(
            f"the claim of attempt {idem_key} of terminal {terminal} was released elsewhere "
            "before its decision was recorded; the terminal retries"
        )

    def release_authorization(self, terminal: str, idem_key: str, token: str | None = None) -> None:
        """Forget a claim whose decision failed before any answer was sent.

        With ``token``, only that holder's claim (a claim taken over by another
        replica is left to it).
        """
        with self.db.transaction() as db:
            db.lock(attempt_lock(terminal, idem_key))
            lease = "DELETE FROM authorization_claims WHERE terminal = ? AND idem_key = ?"
            if token is None:
                db.execute(lease, (terminal, idem_key))
            elif db.execute(lease + " AND token = ?", (terminal, idem_key, token)).rowcount == 0:
                return  # taken over: the claim is another replica's now
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
        with self.db.transaction() as db:
            db.lock(attempt_lock(terminal, attempt), attempt_lock(terminal, idem_key))
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
    def _reversed_at(db: Transaction, terminal: str, attempt: str) -> float | None:
        """When the reversal of ``attempt`` was recorded, or None."""
        row = db.execute(
            "SELECT created_at FROM reversals WHERE terminal = ? AND attempt = ?",
            (terminal, attempt),
        ).fetchone()
        return None if row is None else float(row[0])

    def authorizations(self, terminal: str) -> list[dict[str, Any]]:
        result = self.db.execute(
            "SELECT * FROM authorizations WHERE terminal = ? ORDER BY created_at, idem_key",
            (terminal,),
        )
        return [dict(zip(result.columns, row, strict=True)) for row in result.rows]

    def captured(self, terminal: str) -> dict[str, int]:
        """Captured amount per txn: the sum over its approved attempts not reversed.

        Sales with no such attempt are absent (they captured nothing).
        """
        rows = self.db.execute(
            "SELECT txn, sum(amount) FROM authorizations WHERE terminal = ?"
            " AND state = 'decided' AND outcome = 'approved' AND reversed_at IS NULL"
            " GROUP BY txn ORDER BY txn",
            (terminal,),
        ).fetchall()
        return {str(txn): int(total) for txn, total in rows}

    def captured_by_terminal(self, terminals: list[str]) -> dict[str, dict[str, int]]:
        """:meth:`captured` of several terminals in one statement (reconciling closes)."""
        out: dict[str, dict[str, int]] = {}
        if not terminals:
            return out
        rows = self.db.execute(
            "SELECT terminal, txn, sum(amount) FROM authorizations"
            f" WHERE terminal IN ({', '.join('?' for _ in terminals)})"
            " AND state = 'decided' AND outcome = 'approved' AND reversed_at IS NULL"
            " GROUP BY terminal, txn",
            terminals,
        ).fetchall()
        for terminal, txn, total in rows:
            out.setdefault(str(terminal), {})[str(txn)] = int(total)
        return out

    def reversals(self, terminal: str) -> list[dict[str, Any]]:
        """The reversals recorded for the terminal, oldest first.

        Each: ``reversal`` (its key), ``txn``, ``attempt``, ``had_authorization``,
        ``created_at``.
        """
        attempt = "attempt" if self.schema_version >= 2 else "txn"  # a read-only v1 file
        rows = self.db.execute(
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
        rows = self.db.execute(
            "SELECT terminal FROM authorizations UNION SELECT terminal FROM reversals"
            " UNION SELECT terminal FROM terminals ORDER BY 1"
        ).fetchall()
        return [str(row[0]) for row in rows]

    # -- reporting ------------------------------------------------------------------------

    def terminal_states(self) -> list[TerminalState]:
        rows = self.db.execute(
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
        with self.db.transaction() as db:  # one snapshot on SQLite; READ COMMITTED elsewhere
            count, low, high = db.execute(
                "SELECT count(*), min(seq), max(seq) FROM events WHERE terminal = ?", (terminal,)
            ).fetchone()
            breaks = db.execute(
                "SELECT count(*) FROM (SELECT prev_hash, lag(hash) OVER w AS hash_before,"
                " lag(seq) OVER w AS seq_before, seq FROM events WHERE terminal = ?"
                " WINDOW w AS (ORDER BY seq)) AS chained"
                " WHERE hash_before IS NOT NULL"
                " AND (prev_hash != hash_before OR seq != seq_before + 1)",
                (terminal,),
            ).fetchone()[0]
        missing = (high - low + 1 - count) if count else 0
        return {"events": int(count), "missing_seqs": int(missing), "chain_breaks": int(breaks)}


def _declined(txn: str, attempt: str, reason: str) -> dict[str, Any]:
    return {
        "txn": txn,
        "attempt": attempt,
        "outcome": "declined",
        "auth_code": None,
        "reason": reason,
    }
