"""The journal: one SQLite file, an append-only hash-chained event log.

Write-ahead contract: :meth:`Journal.append` returns only after the event is
durable (WAL + ``synchronous=FULL``: the commit fsyncs the WAL). When it
raises :class:`JournalWriteError` nothing was stored and the caller must not
act. At open the file is integrity-checked, schema-checked and its chain head
verified; a damaged journal is reported, never rebuilt or truncated.

This module never logs or stores card data: every payload passes
:func:`posedge.agent.carddata.find_card_data` first.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..carddata import CardDataRejected, find_card_data
from ..statedir import FILE_MODE, open_secret_nofollow
from .canonical import NotCanonical, canonical_json
from .chain import GENESIS_HASH, ChainSigner, DeviceKey, load_device_key
from .errors import (
    JournalCorrupt,
    JournalError,
    JournalMissing,
    JournalReadOnly,
    JournalWriteError,
    PayloadRejected,
)
from .projection import META_UPSERT, fold_pending
from .records import Checkpoint, Event, Head, row_to_event, utc_now_iso
from .schema import SCHEMA_VERSION, migrate, schema_version
from .sqlite_errors import map_write_error, rollback_quietly
from .txindex import TransactionIndex

JOURNAL_FILE_NAME = "journal.db"
MAX_PAYLOAD_BYTES = 64 * 1024
EVENT_TYPE_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
TXN_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
READ_BATCH_ROWS = 1000
# Event types seen valid (a handful in practice): the regex runs once per type.
_VALID_TYPES: set[str] = set()
_VALID_TYPES_MAX = 256
PAGE_SIZE = 1024  # new files: appends write 1 KiB WAL frames (docs/journal.md)


def _prepare_file(path: Path, *, create: bool) -> bool:
    """Before SQLite opens ``path``: refuse a symbolic link (or anything but a regular file)
    with :class:`~posedge.agent.statedir.UnsafeFile`, and with ``create`` make a missing
    file with mode 0640 whatever the umask (never through a link: ``O_EXCL``). SQLite gives
    the -wal and -shm files the database's mode. True when the file is empty (new).

    Other failures (permissions, a read-only filesystem) are left to SQLite, whose errors
    the journal maps to its own.
    """
    fd: int | None = None
    try:
        if create:
            with contextlib.suppress(FileExistsError):
                fd = open_secret_nofollow(
                    path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE, what="journal"
                )
        if fd is None:
            fd = open_secret_nofollow(path, os.O_RDONLY, what="journal")
    except OSError:
        return False
    try:
        return os.fstat(fd).st_size == 0
    finally:
        os.close(fd)


class Journal:
    """An open journal. Thread-safe; one writer process at a time."""

    def __init__(
        self,
        path: Path,
        conn: sqlite3.Connection,
        key: DeviceKey,
        *,
        readonly: bool,
    ) -> None:
        self.path = path
        self._conn = conn
        self._conn.row_factory = sqlite3.Row
        self.key = key
        self.signer = ChainSigner(key)
        self.readonly = readonly
        self._lock = threading.RLock()
        self._appended = threading.Condition()
        self._append_waiters = 0
        self._valid_txn: str | None = None  # the last transaction id found valid
        # The chain head as of this connection's last own commit. Another writer
        # (a second process) makes it stale; the seq primary key catches that
        # (see _append_locked), so an append reads nothing.
        self._head_cache: Head | Event | None = None
        self._writer = conn.cursor()  # one cursor for appends (under the lock): no allocation
        self.transactions = TransactionIndex(
            conn, self._lock, path=path, readonly=readonly, head_seq=self._cached_head_seq
        )
        """Reads of the transactions projection."""

    # ------------------------------------------------------------------ open
    @classmethod
    def open(
        cls,
        state_dir: Path,
        *,
        readonly: bool = False,
        busy_timeout_s: float = 2.0,
    ) -> Journal:
        """Open (and for a writer, create or migrate) the journal in ``state_dir``."""
        path = state_dir / JOURNAL_FILE_NAME
        if readonly and not os.path.lexists(path):
            raise JournalMissing(
                f"no journal at {path}; check --state-dir (the daemon creates the journal "
                "on first start)"
            )
        if not readonly:
            try:
                state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            except OSError as exc:
                raise JournalReadOnly(
                    f"cannot create state directory {state_dir}: {exc.strerror}"
                ) from None
        conn = cls._connect(path, readonly, busy_timeout_s)
        try:
            key = cls._check_and_prepare(conn, path, state_dir, readonly)
            journal = cls(path, conn, key, readonly=readonly)
            journal._check_head()
        except BaseException:
            conn.close()
            raise
        return journal

    @staticmethod
    def _connect(path: Path, readonly: bool, busy_timeout_s: float) -> sqlite3.Connection:
        try:
            if readonly:
                _prepare_file(path, create=False)
                conn = sqlite3.connect(
                    f"file:{path}?mode=ro", uri=True, isolation_level=None,
                    check_same_thread=False,
                )  # fmt: skip
            else:
                new_file = _prepare_file(path, create=True)
                conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
                if new_file:
                    conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
            conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
            if not readonly:
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise JournalError(f"journal {path}: cannot enable WAL mode (got {mode})")
            conn.execute("PRAGMA synchronous = FULL")
            # Deleted content (pruned events, replaced projection rows) is overwritten
            # with zeros, not left in free pages and slack space for anyone with the file.
            conn.execute("PRAGMA secure_delete = ON")
            return conn
        except sqlite3.Error as exc:
            raise map_write_error(exc, path) from None

    @staticmethod
    def _check_and_prepare(
        conn: sqlite3.Connection, path: Path, state_dir: Path, readonly: bool
    ) -> DeviceKey:
        try:
            result = conn.execute("PRAGMA quick_check").fetchall()
            version = schema_version(conn)
        except sqlite3.DatabaseError as exc:
            raise JournalCorrupt(
                f"journal {path} is damaged or not a posedge journal ({exc}); it was left "
                "untouched — keep a copy and restore from the back office or a backup"
            ) from None
        problems = [str(row[0]) for row in result if str(row[0]) != "ok"]
        if problems:
            raise JournalCorrupt(
                f"journal {path} failed the integrity check: {'; '.join(problems[:5])}; "
                "it was left untouched — keep a copy for analysis"
            )
        if version > SCHEMA_VERSION:
            raise JournalError(
                f"journal {path} has schema version {version}, newer than this posedge "
                f"supports ({SCHEMA_VERSION}); upgrade posedge — the file was not changed"
            )
        if version == 0 and conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
            raise JournalCorrupt(
                f"{path} is an SQLite database but not a posedge journal (no schema "
                "version); move it away or choose another --state-dir"
            )
        if version < SCHEMA_VERSION:
            if readonly:
                raise JournalError(
                    f"journal {path} has schema version {version}; this posedge uses "
                    f"{SCHEMA_VERSION}. Start the daemon (or any writing command) once to "
                    "migrate it; read-only commands never change the file"
                )
            try:
                migrate(conn)
            except sqlite3.Error as exc:
                raise map_write_error(exc, path) from None
        has_data = conn.execute(
            "SELECT EXISTS (SELECT 1 FROM events) OR EXISTS (SELECT 1 FROM checkpoints)"
        ).fetchone()[0]
        key = load_device_key(state_dir, create=not has_data and not readonly)
        stored = conn.execute("SELECT value FROM meta WHERE key = 'key_fingerprint'").fetchone()
        if stored is None:
            if not readonly:
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('key_fingerprint', ?)",
                    (key.fingerprint,),
                )
        elif stored[0] != key.fingerprint:
            from .errors import JournalKeyError

            raise JournalKeyError(
                f"device key in {state_dir} (fingerprint {key.fingerprint}) is not the key "
                f"this journal was written with ({stored[0]}); restore the original device.key"
            )
        return key

    def _check_head(self) -> None:
        rows = self._conn.execute(
            "SELECT seq, ts, type, txn, payload, prev_hash, hash FROM events "
            "ORDER BY seq DESC LIMIT 2"
        ).fetchall()
        if not rows:
            return
        head = rows[0]
        if self.signer.row_hash(head) != head["hash"]:
            raise JournalCorrupt(
                f"journal {self.path}: the newest event (seq {head['seq']}) does not match its "
                "hash — it was modified or torn; run `posedge journal verify` for details. "
                "The file was left untouched"
            )
        if len(rows) == 2:
            expected_prev = rows[1]["hash"]
            expected_seq = rows[1]["seq"] + 1
        else:
            cp = self.latest_checkpoint()
            expected_prev = cp.hash if cp else GENESIS_HASH
            expected_seq = cp.seq + 1 if cp else 1
        if head["prev_hash"] != expected_prev or head["seq"] != expected_seq:
            raise JournalCorrupt(
                f"journal {self.path}: the newest event (seq {head['seq']}) does not link to "
                "the one before it; run `posedge journal verify` for details. The file was "
                "left untouched"
            )

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------- append
    def append(
        self, type_: str, payload: dict[str, Any] | None = None, *, txn: str | None = None
    ) -> Event:
        """Append one event durably; raise instead of storing anything partial."""
        if self.readonly:
            raise JournalReadOnly(f"journal {self.path} was opened read-only")
        payload = {} if payload is None else payload
        payload_text = self._validate(type_, payload, txn)
        with self._lock:
            try:
                event = self._append_locked(type_, payload, payload_text, txn)
            except sqlite3.Error as exc:
                self._head_cache = None
                raise map_write_error(exc, self.path) from None
            self._head_cache = event  # it has the head's seq, hash and ts
        if self._append_waiters:  # Condition.notify_all is pure Python: skip it when idle
            self.wake_append_waiters()
        return event

    def _append_locked(
        self, type_: str, payload: dict[str, Any], payload_text: str, txn: str | None
    ) -> Event:
        """Insert the event as one autocommit statement on the cached head.

        The statement is its own transaction: SQLite takes the write lock,
        inserts, and commits with the WAL fsync (``synchronous=FULL``) before
        it returns — one statement. If another connection appended
        since this one last did, the seq is taken and the primary key refuses
        the row; the event is then rebuilt on the head read under the write
        lock. The projection is not touched: reads fold it (see :mod:`.txindex`).
        """
        head = self._head_cache
        # Only outside a transaction is the INSERT its own, committed one (a
        # transaction left open would be a bug: BEGIN below then fails loudly).
        if head is not None and not self._conn.in_transaction:
            try:
                return self._insert_row(head, type_, payload, payload_text, txn)
            except sqlite3.IntegrityError as exc:
                if exc.sqlite_errorname != "SQLITE_CONSTRAINT_PRIMARYKEY":
                    raise
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            event = self._insert_row(self._head_in_txn(), type_, payload, payload_text, txn)
            self._conn.execute("COMMIT")
        except BaseException:
            rollback_quietly(self._conn)
            raise
        return event

    def _insert_row(
        self,
        head: Head | Event,
        type_: str,
        payload: dict[str, Any],
        payload_text: str,
        txn: str | None,
    ) -> Event:
        seq = head.seq + 1
        ts = utc_now_iso()
        if head.ts is not None and ts < head.ts:
            ts = head.ts  # the wall clock stepped back: never let time run backwards
        digest = self.signer.event_hash(head.hash, seq, ts, type_, txn, payload_text)
        self._writer.execute(
            "INSERT INTO events (seq, ts, type, txn, payload, prev_hash, hash) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (seq, ts, type_, txn, payload_text, head.hash, digest),
        )
        return Event(seq, ts, type_, txn, payload, head.hash, digest)

    def _validate(self, type_: str, payload: dict[str, Any], txn: str | None) -> str:
        if not (isinstance(type_, str) and type_ in _VALID_TYPES):
            _check_type(type_)
        if txn is not None and txn != self._valid_txn:  # a sale's events come in a row
            self._check_txn(txn)
        if not isinstance(payload, dict):
            raise PayloadRejected(
                f"event payload must be a JSON object, got {type(payload).__name__}"
            )
        findings = find_card_data(payload)
        if findings:
            raise PayloadRejected(str(CardDataRejected(findings)))
        try:
            text = canonical_json(payload)
        except NotCanonical as exc:
            raise PayloadRejected(f"event payload is not storable JSON: {exc}") from None
        # A character is at most 4 UTF-8 bytes: encode only texts that could be too long.
        if len(text) > MAX_PAYLOAD_BYTES // 4 and len(text.encode("utf-8")) > MAX_PAYLOAD_BYTES:
            raise PayloadRejected(
                f"event payload is {len(text.encode('utf-8'))} bytes; the limit is "
                f"{MAX_PAYLOAD_BYTES} — store large data elsewhere and journal a reference"
            )
        return text

    def _check_txn(self, txn: object) -> None:
        if not isinstance(txn, str) or not TXN_RE.match(txn):
            raise PayloadRejected(
                "transaction id must be 1-128 characters of letters, digits and ._:- "
                f"(got {txn!r:.40})"
            )
        self._valid_txn = txn

    def _cached_head_seq(self) -> int | None:
        head = self._head_cache
        return head.seq if head is not None else None

    def _head_in_txn(self) -> Head:
        row = self._conn.execute(
            "SELECT seq, hash, ts FROM events ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        if row is not None:
            return Head(row[0], row[1], row[2])
        cp = self.latest_checkpoint()
        if cp is not None:
            return Head(cp.seq, cp.hash, cp.ts)
        return Head(0, GENESIS_HASH, None)

    def wait_for_append(self, timeout_s: float) -> None:
        """Block until this process appends an event or ``timeout_s`` passes.

        An append that commits before the call is not waited for (check the
        head first); one that commits after it always wakes the caller: the
        waiter is counted under the condition's lock before it waits.
        """
        with self._appended:
            self._append_waiters += 1
            try:
                self._appended.wait(timeout_s)
            finally:
                self._append_waiters -= 1

    def wake_append_waiters(self) -> None:
        """Wake every :meth:`wait_for_append` now (an append does; so does a stop)."""
        with self._appended:
            self._appended.notify_all()

    # ----------------------------------------------------------------- reads
    def head(self) -> Head:
        with self._lock:
            return self._head_in_txn()

    def latest_checkpoint(self) -> Checkpoint | None:
        row = self._conn.execute(
            "SELECT seq, hash, ts, sig FROM checkpoints ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        return Checkpoint(row[0], row[1], row[2], row[3]) if row else None

    def checkpoints(self) -> list[Checkpoint]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT seq, hash, ts, sig FROM checkpoints ORDER BY seq"
            ).fetchall()
        return [Checkpoint(r[0], r[1], r[2], r[3]) for r in rows]

    def iter_rows(
        self, since: int = 0, until: int | None = None, batch: int = READ_BATCH_ROWS
    ) -> Iterator[sqlite3.Row]:
        """Raw event rows with seq > ``since`` (and ≤ ``until``), in seq order.

        Reads in keyset-paginated batches, so memory stays flat for any backlog.
        """
        last = since
        limit = until if until is not None else 2**63 - 1
        while True:
            with self._lock:
                rows = self._conn.execute(
                    "SELECT seq, ts, type, txn, payload, prev_hash, hash FROM events "
                    "WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?",
                    (last, limit, batch),
                ).fetchall()
            if not rows:
                return
            yield from rows
            last = rows[-1]["seq"]

    def read_raw(
        self, after: int, limit: int
    ) -> list[tuple[int, str, str, str | None, str, str, str]]:
        """Up to ``limit`` rows after seq ``after`` as plain tuples (the sync hot path):
        (seq, ts, type, txn, payload JSON text, prev_hash, hash)."""
        with self._lock:
            cursor = self._conn.cursor()
            cursor.row_factory = None
            return cursor.execute(
                "SELECT seq, ts, type, txn, payload, prev_hash, hash FROM events "
                "WHERE seq > ? ORDER BY seq LIMIT ?",
                (after, limit),
            ).fetchall()

    def iter_events(self, since: int = 0, until: int | None = None) -> Iterator[Event]:
        for row in self.iter_rows(since, until):
            yield row_to_event(row)

    def get(self, seq: int) -> Event | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT seq, ts, type, txn, payload, prev_hash, hash FROM events WHERE seq = ?",
                (seq,),
            ).fetchone()
        return row_to_event(row) if row else None

    def find_seqs_by_hash(self, digest: str) -> list[int]:
        """Seqs whose stored hash is ``digest`` (a full scan: for diagnostics only)."""
        with self._lock:
            rows = self._conn.execute("SELECT seq FROM events WHERE hash = ?", (digest,))
            return [int(r[0]) for r in rows]

    # ---------------------------------------------------------- sync cursor
    def acked_seq(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT acked_seq FROM sync_cursor").fetchone()[0])

    def set_acked(self, seq: int, *, meta: Mapping[str, str] | None = None) -> None:
        """Record that the back office holds everything through ``seq``.

        Moving backwards is allowed (the back office asked to rewind) but never
        below the latest checkpoint, whose events are gone.
        """
        with self._lock:
            head = self._head_in_txn()
            cp = self.latest_checkpoint()
            floor = cp.seq if cp else 0
            if not floor <= seq <= head.seq:
                raise JournalError(
                    f"cannot set the sync cursor to {seq}: it must lie between {floor} "
                    f"(latest checkpoint) and {head.seq} (head)"
                )
            statements: list[tuple[str, tuple[Any, ...]]] = [
                ("UPDATE sync_cursor SET acked_seq = ?, updated_ts = ? WHERE id = 1",
                 (seq, utc_now_iso())),
            ]  # fmt: skip
            for key, value in (meta or {}).items():
                statements.append((META_UPSERT, (key, value)))
            self._write_many(statements)

    def _write(self, sql: str, params: tuple[Any, ...]) -> None:
        self._write_many([(sql, params)])

    def _write_many(self, statements: list[tuple[str, tuple[Any, ...]]]) -> None:
        """Run statements in one durable write transaction (not for events)."""
        if self.readonly:
            raise JournalReadOnly(f"journal {self.path} was opened read-only")
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            for sql, params in statements:
                self._conn.execute(sql, params)
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            rollback_quietly(self._conn)
            raise map_write_error(exc, self.path) from None

    # -------------------------------------------------------------- meta kv
    def get_meta(self, key: str) -> str | None:
        with self._lock:
            row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return str(row[0]) if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self._lock:
            self._write(META_UPSERT, (key, value))

    # ------------------------------------------------------------ retention
    def prune(self, older_than_s: float, now: float | None = None) -> Checkpoint | None:
        """Replace the synced prefix older than ``older_than_s`` by a signed checkpoint.

        Only events the back office acknowledged are removed. A ``checkpoint``
        event recording the prune is appended to the chain in the same
        transaction. Returns the new checkpoint, or None when nothing qualifies.
        """
        if self.readonly:
            raise JournalReadOnly(f"journal {self.path} was opened read-only")
        cutoff = datetime.fromtimestamp((now or time.time()) - older_than_s, UTC).isoformat(
            timespec="microseconds"
        )
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                acked = int(self._conn.execute("SELECT acked_seq FROM sync_cursor").fetchone()[0])
                row = self._conn.execute(
                    "SELECT max(seq) FROM events WHERE seq <= ? AND ts < ?", (acked, cutoff)
                ).fetchone()
                upto = row[0]
                if upto is None:
                    self._conn.execute("ROLLBACK")
                    return None
                # Fold before removing: the projection must hold what the events said.
                fold_pending(self._conn)
                last = self._conn.execute(
                    "SELECT hash FROM events WHERE seq = ?", (upto,)
                ).fetchone()[0]
                removed = self._conn.execute(
                    "SELECT count(*) FROM events WHERE seq <= ?", (upto,)
                ).fetchone()[0]
                cp_ts = utc_now_iso()
                sig = self.signer.checkpoint_sig(upto, last, cp_ts)
                self._conn.execute(
                    "INSERT INTO checkpoints (seq, hash, ts, sig) VALUES (?, ?, ?, ?)",
                    (upto, last, cp_ts, sig),
                )
                self._conn.execute(
                    "INSERT INTO retention_guard (id, upto_seq) VALUES (1, ?)", (upto,)
                )
                self._conn.execute("DELETE FROM events WHERE seq <= ?", (upto,))
                self._conn.execute("DELETE FROM retention_guard")
                record = {"through_seq": upto, "through_hash": last, "events_removed": removed}
                event = self._insert_row(
                    self._head_in_txn(), "checkpoint", record, canonical_json(record), None
                )
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                rollback_quietly(self._conn)
                self._head_cache = None
                raise map_write_error(exc, self.path) from None
            self._head_cache = event
        return Checkpoint(upto, last, cp_ts, sig)

    # ---------------------------------------------------------------- stats
    def backlog(self) -> tuple[int, float | None]:
        """(unsynced events, age in seconds of the oldest) — two indexed lookups, cheap."""
        with self._lock:
            head = self._head_in_txn().seq
            acked = self.acked_seq()
            oldest = self._conn.execute(
                "SELECT ts FROM events WHERE seq > ? ORDER BY seq LIMIT 1", (acked,)
            ).fetchone()
        if oldest is None:
            return head - acked, None
        age = max(0.0, time.time() - datetime.fromisoformat(oldest[0]).timestamp())
        return head - acked, round(age, 3)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            head = self._head_in_txn()
            count = int(self._conn.execute("SELECT count(*) FROM events").fetchone()[0])
            acked = self.acked_seq()
            unsynced, age_s = self.backlog()
            version = schema_version(self._conn)
            cp = self.latest_checkpoint()
        size = sum(
            os.path.getsize(p)
            for p in (self.path, Path(f"{self.path}-wal"), Path(f"{self.path}-shm"))
            if p.exists()
        )
        return {
            "path": str(self.path),
            "events": count,
            "head_seq": head.seq,
            "head_hash": head.hash,
            "acked_seq": acked,
            "unsynced": unsynced,
            "oldest_unsynced_age_s": age_s,
            "file_bytes": size,
            "schema_version": version,
            "checkpoint_seq": cp.seq if cp else None,
            "key_fingerprint": self.key.fingerprint,
        }


def _check_type(type_: object) -> None:
    if not isinstance(type_, str) or not EVENT_TYPE_RE.match(type_):
        raise PayloadRejected(
            f"event type {type_!r} is not valid; use dotted lower-case words such as 'sale.created'"
        )
    if len(_VALID_TYPES) < _VALID_TYPES_MAX:
        _VALID_TYPES.add(type_)


__all__ = [
    "JOURNAL_FILE_NAME",
    "Checkpoint",
    "Event",
    "Head",
    "Journal",
    "JournalWriteError",
]
