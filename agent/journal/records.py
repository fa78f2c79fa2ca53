"""The journal's records as values: events, the head, checkpoints, timestamps."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


@dataclass(frozen=True)
class Event:
    seq: int
    ts: str
    type: str
    txn: str | None
    payload: dict[str, Any]
    prev_hash: str
    hash: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "ts": self.ts,
            "type": self.type,
            "txn": self.txn,
            "payload": self.payload,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }


@dataclass(frozen=True)
class Head:
    seq: int
    hash: str
    ts: str | None


@dataclass(frozen=True)
class Checkpoint:
    seq: int
    hash: str
    ts: str
    sig: str


def utc_now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def row_to_event(row: sqlite3.Row) -> Event:
    return Event(
        seq=row["seq"],
        ts=row["ts"],
        type=row["type"],
        txn=row["txn"],
        payload=json.loads(row["payload"]),
        prev_hash=row["prev_hash"],
        hash=row["hash"],
    )
