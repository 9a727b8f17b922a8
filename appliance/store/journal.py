"""The journal: every state change as a domain event, appended in the same transaction as the
rows it changes. ``seq`` grows monotonically; it is the basis of audit, replication, point-in-time
restore and crash recovery.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Callable, Iterator

from appliance.store.db import Database


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")
    if hasattr(value, "value"):  # enums
        return value.value
    raise TypeError(f"cannot journal {type(value).__name__}")


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One journaled event. ``payload`` decimals are strings."""

    seq: int
    ts_ns: int
    type: str
    aggregate: str
    aggregate_id: str
    payload: dict


class Journal:
    """Append and read domain events.

    Appends must happen inside an open transaction (the caller's unit of work); listeners are
    told only after that transaction commits (see :meth:`flush_committed`).
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self._pending: list[JournalEntry] = []
        self._listeners: list[Callable[[JournalEntry], None]] = []

    def append(self, ts_ns: int, type: str, aggregate: str, aggregate_id: str, payload: dict) -> int:
        """Append an event; returns its ``seq``.

        Raises:
            RuntimeError: called outside a transaction (a journal row must commit with its changes).
        """
        if self.db.conn.getautocommit():
            raise RuntimeError("journal.append must run inside a transaction")
        text = json.dumps(payload, default=_default, sort_keys=True, separators=(",", ":"))
        self.db.execute(
            "INSERT INTO journal(ts_ns, type, aggregate, aggregate_id, payload) VALUES (?,?,?,?,?)",
            (ts_ns, type, aggregate, aggregate_id, text),
        )
        seq = self.db.conn.last_insert_rowid()
        self._pending.append(JournalEntry(seq, ts_ns, type, aggregate, aggregate_id, json.loads(text)))
        return seq

    def subscribe(self, listener: Callable[[JournalEntry], None]) -> None:
        """Call ``listener`` for every committed entry (after commit, in seq order)."""
        self._listeners.append(listener)

    def flush_committed(self) -> None:
        """Deliver entries of the transaction that just committed to listeners."""
        pending, self._pending = self._pending, []
        for entry in pending:
            for listener in self._listeners:
                listener(entry)

    def discard_uncommitted(self) -> None:
        """Forget entries of a transaction that rolled back."""
        self._pending.clear()

    def last_seq(self) -> int:
        return self.db.scalar("SELECT COALESCE(MAX(seq), 0) FROM journal")

    def read(self, after_seq: int = 0, limit: int = 1000) -> list[JournalEntry]:
        """Entries with ``seq > after_seq``, oldest first, at most ``limit``."""
        rows = self.db.query(
            "SELECT seq, ts_ns, type, aggregate, aggregate_id, payload FROM journal WHERE seq > ? ORDER BY seq LIMIT ?",
            (after_seq, limit),
        )
        return [JournalEntry(r[0], r[1], r[2], r[3], r[4], json.loads(r[5])) for r in rows]

    def iter_all(self, batch: int = 5000) -> Iterator[JournalEntry]:
        seq = 0
        while True:
            entries = self.read(seq, batch)
            if not entries:
                return
            yield from entries
            seq = entries[-1].seq
