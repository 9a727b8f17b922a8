"""The one SQLite database: apsw connection in WAL mode, numbered migrations, transactions.

Only the engine's thread writes (single writer). A transaction is ``with db.transaction():``;
nested uses become savepoints, so a handler and the helpers it calls share one atomic unit.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import re
from pathlib import Path
from typing import Any, Iterator

import apsw

_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


class Database:
    """An apsw connection with Lyra's pragmas and migrations applied.

    Args:
        path: database file; its parent folder must exist.
        readonly: open for reads only (tools, tests).

    Raises:
        apsw.Error: the file cannot be opened or a migration fails (the failed migration is
            rolled back and nothing of it remains).
    """

    def __init__(self, path: Path | str, *, readonly: bool = False) -> None:
        self.path = Path(path)
        flags = apsw.SQLITE_OPEN_READONLY if readonly else apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_CREATE
        self.conn = apsw.Connection(str(self.path), flags=flags)
        self.conn.setbusytimeout(5000)
        if not readonly:
            self.conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode: a crash of the process never corrupts or loses a commit; only an OS
            # crash or power loss can drop the last transactions (never corrupt). FULL is configurable.
            self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute("PRAGMA foreign_keys=ON")
        # overwrite deleted content with zeros: old ciphertexts, wrapped keys and token hashes must
        # not linger in free pages after a rotation or a revocation
        self.conn.execute("PRAGMA secure_delete=ON")
        if not readonly:
            self.migrate()

    def set_synchronous(self, mode: str) -> None:
        """Set ``PRAGMA synchronous`` (``NORMAL`` or ``FULL``).

        Raises:
            ValueError: another mode.
        """
        if mode.upper() not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous must be NORMAL or FULL, not {mode!r}")
        self.conn.execute(f"PRAGMA synchronous={mode.upper()}")

    def close(self) -> None:
        self.conn.close()

    # -- migrations -------------------------------------------------------------------------
    @staticmethod
    def migrations() -> list[tuple[int, str, str]]:
        """All shipped migrations as (number, name, sql), in order."""
        found = []
        for entry in importlib.resources.files("appliance.store.migrations").iterdir():
            match = _MIGRATION_NAME.match(entry.name)
            if match:
                found.append((int(match.group(1)), entry.name, entry.read_text()))
        found.sort()
        numbers = [n for n, _, _ in found]
        if numbers != list(range(1, len(numbers) + 1)):
            raise RuntimeError(f"migrations must be numbered 1..N without gaps, found {numbers}")
        return found

    def schema_version(self) -> int:
        return self.conn.execute("PRAGMA user_version").fetchall()[0][0]

    def migrate(self) -> int:
        """Apply every migration newer than ``PRAGMA user_version``, each in its own transaction.

        Returns:
            The schema version after migrating.
        """
        current = self.schema_version()
        for number, name, sql in self.migrations():
            if number <= current:
                continue
            with self.conn:
                self.conn.execute(sql)
                self.conn.execute(f"PRAGMA user_version={number}")
            current = number
        return current

    # -- access -----------------------------------------------------------------------------
    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One atomic unit (a savepoint when nested). Rolls back on any exception."""
        with self.conn:
            yield

    def execute(self, sql: str, params: tuple | dict = ()) -> None:
        self.conn.execute(sql, params)

    def query(self, sql: str, params: tuple | dict = ()) -> list[tuple[Any, ...]]:
        return self.conn.execute(sql, params).fetchall()

    def query_one(self, sql: str, params: tuple | dict = ()) -> tuple[Any, ...] | None:
        rows = self.conn.execute(sql, params).fetchall()
        return rows[0] if rows else None

    def scalar(self, sql: str, params: tuple | dict = ()) -> Any:
        row = self.query_one(sql, params)
        return row[0] if row else None

    def integrity_check(self) -> str:
        """``PRAGMA integrity_check`` result: ``"ok"`` for a healthy file."""
        return self.scalar("PRAGMA integrity_check")
