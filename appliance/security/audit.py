"""The audit log: append-only, hash-chained, one record per mutating or denied RPC.

Every call to a method in :data:`~appliance.security.permissions.MUTATING_METHODS` (allowed or
not), every Login attempt, and every call of any method that ends ``UNAUTHENTICATED``,
``PERMISSION_DENIED`` or ``RESOURCE_EXHAUSTED`` becomes one row of ``audit_log`` (migration
``0006_audit.sql``): who (username, role, session), which RPC, a summary of the request with
secrets redacted (:func:`summarize_request`), the result code, the peer and the time.

Tamper evidence
---------------
The table refuses UPDATE and DELETE (triggers raise ``RAISE(ABORT, ...)``). Beyond that, every
record carries the hash of the record before it, so changing, deleting, inserting or reordering
records - even by someone who drops the triggers - is detected by :meth:`AuditLog.verify`,
which names the first broken record. What a hash chain cannot show by itself is a rewrite of
the *whole* chain from some point on by someone holding the database file: keep exported
copies (``ExportAuditRecords``) or at least the latest ``hash`` off the box to anchor it.

The canonical form (re-verifiable outside Lyra)
-----------------------------------------------
For a record, build a JSON object with exactly these ten members, **every value a string**
(integers in base-10 without sign or leading zeros)::

    seq, ts_ns, username, role, method, request_summary, code, peer, session_id, prev_hash

serialize it with keys sorted, no whitespace, non-ASCII characters as UTF-8 (not ``\\u``
escaped), and only ``"``, ``\\`` and control characters escaped (``\\b \\t \\n \\f \\r``,
others ``\\u00xx`` lower-case) - i.e. RFC 8785 (JSON Canonicalization Scheme); in Python::

    canonical = json.dumps({k: str(v) for k, v in fields.items()}, sort_keys=True,
                           separators=(",", ":"), ensure_ascii=False)

then ``hash = lowercase hex SHA-256 of canonical.encode("utf-8")``. The chain holds when, for
records in ``seq`` order, ``seq`` runs 1, 2, 3 ... without gaps, record 1 has ``prev_hash = ""``,
every other record's ``prev_hash`` equals the previous record's ``hash``, and every ``hash``
equals the recomputed one. An auditor can check an export with ``jq``/``sha256sum`` or the
twelve lines of :func:`canonical_json` + :func:`record_hash`.

Writes
------
:meth:`AuditLog.record` appends in its own transaction (a savepoint when one is open).
:meth:`AuditLog.on_call` is the interceptor's hook; it runs on the engine's event-loop thread
between engine messages (handlers are synchronous and never hold a transaction across an
await), like the session write of a Login, and commits *before* the response leaves the server.
It never raises: a failure is logged (without request content) and counted in
:attr:`AuditLog.failures`.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any, Mapping, NamedTuple, Protocol, Sequence

from google.protobuf import json_format
from google.protobuf.message import Message

from appliance.model.errors import ValidationError
from appliance.store.db import Database

from appliance.security.permissions import MUTATING_METHODS

log = logging.getLogger("lyra.audit")

LOGIN_METHOD = "/lyra.v1.AuthService/Login"
DENIED_CODES: frozenset[str] = frozenset({"UNAUTHENTICATED", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED"})
"""Calls ending with one of these codes are recorded whatever the method (every denied call)."""

REDACTED = "[redacted]"
SECRET_FIELDS: frozenset[str] = frozenset({
    "password", "new_password", "current_password",
    "passphrase", "new_passphrase", "current_passphrase",
    "secret", "secrets", "api_key", "totp_code", "recovery_code", "refresh_token", "token", "uid",
    # defence in depth: names no request carries today but that would obviously be secret
    "access_token", "recovery_codes", "private_key", "key_file",
})
"""Field names whose value (scalar, list or whole nested message) is replaced by ``"[redacted]"``,
at any depth. Matched case-insensitively, ``-`` treated as ``_``."""

MAX_STRING_CHARS = 256
"""Longer string values (and map keys) are cut to this many characters plus a marker."""
MAX_SUMMARY_BYTES = 4096
"""A summary longer than this (UTF-8 bytes) is replaced by a truncation envelope (still JSON)."""
MAX_USERNAME_CHARS = 64

HASH_FIELDS: tuple[str, ...] = ("seq", "ts_ns", "username", "role", "method", "request_summary", "code", "peer",
                                "session_id", "prev_hash")
"""The members of the canonical JSON (see the module docstring)."""

_COLUMNS = ", ".join(HASH_FIELDS + ("hash",))
_TRIGGERS = ("audit_log_no_update", "audit_log_no_delete")


class Clock(Protocol):
    def now_ns(self) -> int: ...


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One row of ``audit_log``.

    Attributes:
        seq: position in the chain, 1, 2, 3 ...
        ts_ns: wall-clock time of the call's end, ns since the Unix epoch (UTC).
        username, role, session_id: the caller ("" when not authenticated; for Login, the
            attempted username).
        method: full gRPC method, ``"/lyra.v1.OrderService/SubmitOrder"``.
        request_summary: JSON object, secrets ``"[redacted]"``, at most 4 KiB.
        code: gRPC status code name (``"OK"``, ``"PERMISSION_DENIED"`` ...).
        peer: the client's address as gRPC reports it (``"ipv4:127.0.0.1:53422"``).
        prev_hash: ``hash`` of record ``seq - 1`` ("" for seq 1).
        hash: lowercase hex SHA-256 of the canonical JSON.
    """

    seq: int
    ts_ns: int
    username: str
    role: str
    method: str
    request_summary: str
    code: str
    peer: str
    session_id: str
    prev_hash: str
    hash: str

    def fields(self) -> dict[str, Any]:
        """The hashed fields (everything but ``hash``)."""
        return {name: getattr(self, name) for name in HASH_FIELDS}


class ChainVerification(NamedTuple):
    """Result of :meth:`AuditLog.verify`; unpacks as ``(ok, checked, first_broken_seq, reason)``.

    Attributes:
        ok: the whole chain holds (and the append-only triggers are in place).
        checked: records examined (all of them when ok; up to the break otherwise).
        first_broken_seq: seq of the first record that is missing, altered or out of place; 0
            when ok (and when only the triggers are missing).
        reason: what is wrong, in one sentence ("" when ok).
    """

    ok: bool
    checked: int
    first_broken_seq: int
    reason: str


@dataclass(slots=True)
class VerifyCursor:
    """Progress of a verification done in steps (:meth:`AuditLog.verify_step`), so that the
    engine is never blocked for the whole chain. ``result`` is set when done."""

    checked: int = 0
    last_seq: int = 0
    last_hash: str = ""
    result: ChainVerification | None = None

    @property
    def done(self) -> bool:
        return self.result is not None


# -- canonical form -----------------------------------------------------------------------------------
def canonical_json(fields: Mapping[str, Any]) -> str:
    """The canonical JSON of a record's hashed fields (see the module docstring).

    Args:
        fields: a mapping holding at least :data:`HASH_FIELDS` (other keys are ignored).

    Raises:
        KeyError: a field is missing.
    """
    return json.dumps({name: str(fields[name]) for name in HASH_FIELDS}, sort_keys=True,
                      separators=(",", ":"), ensure_ascii=False)


def record_hash(fields: Mapping[str, Any]) -> str:
    """Lowercase hex SHA-256 of ``canonical_json(fields)`` encoded as UTF-8."""
    return hashlib.sha256(canonical_json(fields).encode("utf-8")).hexdigest()


# -- request summaries -----------------------------------------------------------------------------
def _is_secret(key: str) -> bool:
    return key.lower().replace("-", "_") in SECRET_FIELDS


def _cut(text: str) -> str:
    if len(text) <= MAX_STRING_CHARS:
        return text
    return f"{text[:MAX_STRING_CHARS]}...[truncated {len(text) - MAX_STRING_CHARS} chars]"


def redact(value: Any) -> Any:
    """``value`` (JSON-like: dicts, lists, scalars) with every secret field replaced by
    ``"[redacted]"`` at any depth and long strings cut (:data:`MAX_STRING_CHARS`)."""
    if isinstance(value, Mapping):
        return {_cut(str(k)): (REDACTED if _is_secret(str(k)) else redact(v)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return _cut(value)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return _cut(str(value))


def _cap(text: str) -> str:
    size = len(text.encode("utf-8"))
    if size <= MAX_SUMMARY_BYTES:
        return text
    head = text[:MAX_SUMMARY_BYTES]
    while True:  # the envelope escapes the head's quotes, so shrink until the whole fits
        envelope = json.dumps({"_truncated": True, "_bytes": size, "_head": head}, separators=(",", ":"),
                              ensure_ascii=False)
        if len(envelope.encode("utf-8")) <= MAX_SUMMARY_BYTES:
            return envelope
        head = head[: max(0, len(head) - max(16, (len(envelope.encode("utf-8")) - MAX_SUMMARY_BYTES)))]


def summarize_request(method: str, request: Any) -> str:
    """A JSON object summarizing ``request`` for the audit log, secrets redacted.

    The request message is converted with ``MessageToDict(preserving_proto_field_name=True)``
    (fields at their default value are omitted, int64 are strings, bytes base64), then every
    field named in :data:`SECRET_FIELDS` is replaced by ``"[redacted]"`` at any depth (a nested
    message such as ``CredentialSecrets`` under ``secrets`` as a whole), strings longer than
    256 characters are cut, and a result over 4 KiB becomes
    ``{"_truncated":true,"_bytes":N,"_head":"<start of the JSON>"}`` (still at most 4 KiB).

    Args:
        method: the full gRPC method (kept for future per-method rules; not in the output).
        request: a protobuf message, a mapping, or None (-> ``"{}"``).

    Returns:
        Compact JSON text. Never raises for an odd request: it is described by its type.
    """
    del method
    if request is None:
        return "{}"
    if isinstance(request, Message):
        data: Any = json_format.MessageToDict(request, preserving_proto_field_name=True)
    elif isinstance(request, Mapping):
        data = dict(request)
    else:
        data = {"_type": type(request).__name__}
    return _cap(json.dumps(redact(data), separators=(",", ":"), ensure_ascii=False, default=str))


# -- the log ---------------------------------------------------------------------------------------------
class AuditLog:
    """Append, read and verify the audit chain in ``db``.

    Args:
        db: the appliance database (migration 0006 applied).
        clock: wall clock (``now_ns()``); audit times are real times even during a replay.

    Attributes:
        failures: records that could not be written by :meth:`on_call` (also logged); a
            metric-like counter, never reset.
    """

    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock
        self.failures = 0

    # -- writing ---------------------------------------------------------------------------
    def record(self, *, method: str, code: str, username: str = "", role: str = "", request_summary: str = "{}",
               peer: str = "", session_id: str = "", ts_ns: int | None = None) -> AuditRecord:
        """Append one record, chained to the last one.

        Runs in its own transaction, or in a savepoint of the caller's open transaction (then it
        commits or rolls back with it). The seq is the one AUTOINCREMENT would assign (after the
        highest ever written, so a truncated tail stays visible as a gap).

        Args:
            method: full gRPC method name. code: status code name.
            request_summary: JSON text from :func:`summarize_request` (already redacted).
            ts_ns: time of the record (default ``clock.now_ns()``).

        Returns:
            The stored record.

        Raises:
            apsw.Error: the database refused the write (e.g. disk full).
        """
        with self.db.transaction():
            last = self.db.query_one("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
            high = self.db.scalar("SELECT seq FROM sqlite_sequence WHERE name = 'audit_log'") or 0
            seq = max(high, last[0] if last else 0) + 1
            fields = {
                "seq": seq, "ts_ns": int(self.clock.now_ns() if ts_ns is None else ts_ns),
                "username": str(username), "role": str(role), "method": str(method),
                "request_summary": str(request_summary), "code": str(code), "peer": str(peer),
                "session_id": str(session_id), "prev_hash": last[1] if last else "",
            }
            digest = record_hash(fields)
            self.db.execute(f"INSERT INTO audit_log({_COLUMNS}) VALUES ({', '.join('?' * 11)})",
                            tuple(fields[name] for name in HASH_FIELDS) + (digest,))
        return AuditRecord(**fields, hash=digest)

    @staticmethod
    def should_record(method: str, code: str) -> bool:
        """True for a mutating method, a Login attempt, or any denied call."""
        return method in MUTATING_METHODS or method == LOGIN_METHOD or code in DENIED_CODES

    def on_call(self, call: Any) -> None:
        """The :class:`~appliance.server.interceptors.AuthInterceptor` ``on_call`` hook.

        Args:
            call: a ``CallRecord`` - ``method``, ``code_name``, ``principal`` (or None), and
                ``request`` / ``peer`` when the interceptor provides them (missing -> ``{}`` / "").

        Never raises; failures are logged without request content and counted in :attr:`failures`.
        """
        method = getattr(call, "method", "?")
        try:
            code = str(call.code_name)
            if not self.should_record(method, code):
                return
            principal = getattr(call, "principal", None)
            request = getattr(call, "request", None)
            username = role = session_id = ""
            if principal is not None:
                username, role, session_id = principal.username, principal.role, principal.session_id
            elif method == LOGIN_METHOD and request is not None:
                username = _cut(str(getattr(request, "username", "")))[:MAX_USERNAME_CHARS]
                if code == "OK":
                    role = self._current_role(username)
            self.record(method=method, code=code, username=username, role=role,
                        request_summary=summarize_request(method, request), peer=str(getattr(call, "peer", "") or ""),
                        session_id=session_id)
        except Exception as exc:  # noqa: BLE001 - auditing must never break the RPC
            self.failures += 1
            log.error("audit record for %s could not be written (%s); failures so far: %d",
                      method, type(exc).__name__, self.failures)

    def _current_role(self, username: str) -> str:
        try:
            return self.db.scalar("SELECT role FROM users WHERE username = ?", (username,)) or ""
        except Exception:  # noqa: BLE001 - the role is a courtesy; the record matters
            return ""

    # -- reading ---------------------------------------------------------------------------
    def last_seq(self) -> int:
        return self.db.scalar("SELECT COALESCE(MAX(seq), 0) FROM audit_log")

    def get(self, seq: int) -> AuditRecord | None:
        row = self.db.query_one(f"SELECT {_COLUMNS} FROM audit_log WHERE seq = ?", (seq,))
        return AuditRecord(*row) if row else None

    def list(self, *, page_size: int = 50, before_seq: int = 0, username: str = "", method: str = "",
             failures_only: bool = False) -> tuple[Sequence[AuditRecord], int]:
        """Records newest first, one page.

        Args:
            page_size: 1..1000 records.
            before_seq: only records with ``seq < before_seq`` (0: from the newest).
            username: only this username ("" = all).
            method: a full method ``"/lyra.v1.X/Y"`` or just ``"Y"`` ("" = all).
            failures_only: only records whose code is not ``OK``.

        Returns:
            (records, next_before_seq): pass ``next_before_seq`` as ``before_seq`` for the next
            page; 0 when this was the last page.

        Raises:
            ValidationError: page_size or before_seq out of range.
        """
        if not 1 <= page_size <= 1000:
            raise ValidationError("page_size", "must be between 1 and 1000")
        if before_seq < 0:
            raise ValidationError("page_token", "is not a token returned by this listing")
        where, params = ["1 = 1"], []
        if before_seq:
            where.append("seq < ?")
            params.append(before_seq)
        if username:
            where.append("username = ?")
            params.append(username)
        if method:
            if method.startswith("/"):
                where.append("method = ?")
                params.append(method)
            else:
                where.append("substr(method, -?) = ?")
                params += [len(method) + 1, "/" + method]
        if failures_only:
            where.append("code <> 'OK'")
        rows = self.db.query(f"SELECT {_COLUMNS} FROM audit_log WHERE {' AND '.join(where)} ORDER BY seq DESC LIMIT ?",
                             tuple(params) + (page_size + 1,))
        records = [AuditRecord(*row) for row in rows[:page_size]]
        return records, (records[-1].seq if len(rows) > page_size else 0)

    def export(self, after_seq: int = 0, limit: int = 1000) -> Sequence[AuditRecord]:
        """Records with ``seq > after_seq``, oldest first, at most ``limit`` (page by the last seq).

        Raises:
            ValidationError: ``after_seq`` negative or ``limit`` < 1.
        """
        if after_seq < 0:
            raise ValidationError("after_seq", "must be >= 0")
        if limit < 1:
            raise ValidationError("limit", "must be >= 1")
        rows = self.db.query(f"SELECT {_COLUMNS} FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?", (after_seq, limit))
        return [AuditRecord(*row) for row in rows]

    # -- verifying -------------------------------------------------------------------------
    def verify(self, batch: int = 5000) -> ChainVerification:
        """Recompute the whole chain in one go (tools, tests; the API uses :meth:`verify_step`).

        Returns:
            :class:`ChainVerification` ``(ok, checked, first_broken_seq, reason)``.
        """
        cursor = VerifyCursor()
        while not cursor.done:
            self.verify_step(cursor, batch)
        assert cursor.result is not None
        return cursor.result

    def verify_step(self, cursor: VerifyCursor, batch: int = 5000) -> VerifyCursor:
        """Check up to ``batch`` more records after ``cursor`` and advance it.

        Meant to run as one engine message per step, so that verifying a long chain never blocks
        the engine for long. Records appended between steps are checked by later steps (the
        chain only grows). The last step (fewer than ``batch`` rows) also checks that no record
        after the last one was removed (``sqlite_sequence``) and that the append-only triggers
        exist.

        Checks, per record in seq order: seq is the previous seq + 1 (else the missing seq is
        named: deletion, or renumbering to make room for an insert); ``prev_hash`` equals the
        previous record's hash (else: removed, inserted or reordered records); ``hash`` equals
        the recomputed hash (else: the record was altered).
        """
        if cursor.done:
            return cursor
        rows = self.db.query(f"SELECT {_COLUMNS} FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?",
                             (cursor.last_seq, batch))
        for row in rows:
            record = AuditRecord(*row)
            broken = self._check(record, cursor.last_seq, cursor.last_hash)
            if broken is not None:
                first, reason = broken
                cursor.result = ChainVerification(False, cursor.checked, first, reason)
                return cursor
            cursor.checked += 1
            cursor.last_seq, cursor.last_hash = record.seq, record.hash
        if len(rows) < batch:
            cursor.result = self._final_checks(cursor)
        return cursor

    @staticmethod
    def _check(record: AuditRecord, last_seq: int, last_hash: str) -> tuple[int, str] | None:
        expected = last_seq + 1
        if not isinstance(record.seq, int) or record.seq != expected:
            missing = f"record {expected}" if record.seq == expected + 1 else f"records {expected}..{record.seq - 1}"
            return expected, f"{missing} missing before record {record.seq} (deleted or renumbered)"
        if record.prev_hash != last_hash:
            before = f"record {last_seq}" if last_seq else "the start of the chain"
            return record.seq, (f"record {record.seq}: prev_hash does not match the hash of {before} "
                                "(a record was removed, inserted or reordered)")
        if record_hash(record.fields()) != record.hash:
            return record.seq, f"record {record.seq}: contents do not match its hash (altered)"
        return None

    def _final_checks(self, cursor: VerifyCursor) -> ChainVerification:
        high = self.db.scalar("SELECT seq FROM sqlite_sequence WHERE name = 'audit_log'") or 0
        if high > cursor.last_seq:
            return ChainVerification(False, cursor.checked, cursor.last_seq + 1,
                                     f"records {cursor.last_seq + 1}..{high} missing at the end of the chain "
                                     f"(seq {high} was written)")
        present = {r[0] for r in self.db.query(
            "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'audit_log'")}
        missing = [name for name in _TRIGGERS if name not in present]
        if missing:
            return ChainVerification(False, cursor.checked, 0,
                                     f"the chain holds but the append-only trigger(s) {', '.join(missing)} were removed")
        return ChainVerification(True, cursor.checked, 0, "")

