"""AuditService: list, verify and export the audit log (permission ``audit.read``).

Reads run as engine messages (``await app.engine.call(...)``); a verification or an export of a
long chain is split into batches, one engine message each, so it never stalls trading.
"""

from __future__ import annotations

from appliance.model.errors import ValidationError
from appliance.security.audit import AuditLog, AuditRecord, VerifyCursor
from appliance.server import convert as cv
from lyra.v1 import audit_pb2, audit_pb2_grpc

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
EXPORT_BATCH = 1000
VERIFY_BATCH = 5000
_PAGE_KIND = "audit"


def audit_log(app) -> AuditLog:
    """``app.audit``, created (``AuditLog(app.db, app.wall_clock)``) if the app has none yet."""
    if getattr(app, "audit", None) is None:
        app.audit = AuditLog(app.db, app.wall_clock)
    return app.audit


def record_to_pb(record: AuditRecord) -> audit_pb2.AuditRecord:
    return audit_pb2.AuditRecord(
        seq=record.seq, time=cv.ts(record.ts_ns), username=record.username, role=record.role, method=record.method,
        request_summary=record.request_summary, code=record.code, peer=record.peer, session_id=record.session_id,
        prev_hash=record.prev_hash, hash=record.hash,
    )


class AuditServicer(audit_pb2_grpc.AuditServiceServicer):
    def __init__(self, app, audit: AuditLog) -> None:
        self.app = app
        self.audit = audit

    async def ListAuditRecords(self, request, context):
        if request.page_size < 0:
            raise ValidationError("page_size", "must be >= 0 (0 = default 50)")
        page_size = min(request.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        before = cv.decode_page_token(_PAGE_KIND, request.page_token)
        records, next_before = await self.app.engine.call(
            self.audit.list, page_size=page_size, before_seq=before, username=request.username,
            method=request.method, failures_only=request.failures_only,
        )
        return audit_pb2.ListAuditRecordsResponse(records=[record_to_pb(r) for r in records],
                                                  next_page_token=cv.encode_page_token(_PAGE_KIND, next_before))

    async def VerifyAuditChain(self, request, context):
        cursor = VerifyCursor()
        while not cursor.done:
            await self.app.engine.call(self.audit.verify_step, cursor, VERIFY_BATCH)
        result = cursor.result
        return audit_pb2.VerifyAuditChainResponse(ok=result.ok, records_checked=result.checked,
                                                  first_broken_seq=result.first_broken_seq, reason=result.reason)

    async def ExportAuditRecords(self, request, context):
        if request.after_seq < 0:
            raise ValidationError("after_seq", "must be >= 0")
        after = request.after_seq
        while True:
            batch = await self.app.engine.call(self.audit.export, after, EXPORT_BATCH)
            for record in batch:
                yield record_to_pb(record)
            if len(batch) < EXPORT_BATCH:
                return
            after = batch[-1].seq


def register(server, app) -> None:
    """Build ``app.audit`` if missing and serve AuditService on ``server``."""
    audit_pb2_grpc.add_AuditServiceServicer_to_server(AuditServicer(app, audit_log(app)), server)
