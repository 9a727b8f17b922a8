"""AuditService against the real server: what a workflow leaves in the audit log, who may read
it, and that an auditor can re-verify an export with nothing but hashlib."""

from __future__ import annotations

import hashlib
import json
import re

import apsw
import pytest

from lyra_client.errors import InvalidArgument, PermissionDenied, Unauthenticated

INSTRUMENTS = ["ADA/BTC@paper", "ETH/BTC@paper", "LTC/BTC@paper"]
SUBMIT = "/lyra.v1.OrderService/SubmitOrder"
CREATE_STRATEGY = "/lyra.v1.StrategyService/CreateStrategy"
LOGIN = "/lyra.v1.AuthService/Login"
LOGOUT = "/lyra.v1.AuthService/Logout"
LIST_AUDIT = "/lyra.v1.AuditService/ListAuditRecords"
WRONG_PASSWORD = "wrong-password-for-audit-1"
PEER = re.compile(r"^ipv(4:127\.0\.0\.1|6:\[::1\]):\d+$")


def recompute(record) -> str:
    """An auditor's own check of one exported record (the canonical form of
    appliance/security/audit.py, rebuilt here from the documentation)."""
    fields = {"seq": record.seq, "ts_ns": record.time.ToNanoseconds(), "username": record.username, "role": record.role,
              "method": record.method, "request_summary": record.request_summary, "code": record.code,
              "peer": record.peer, "session_id": record.session_id, "prev_hash": record.prev_hash}
    canonical = json.dumps({k: str(v) for k, v in fields.items()}, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@pytest.fixture
def running(appliance_factory):
    running = appliance_factory()
    running.passwords = {name: running.add_user(name, role) for name, role in
                         (("ada", "admin"), ("vic", "viewer"), ("aud", "auditor"), ("tom", "trader"))}
    return running


def login(running, name):
    client = running.client()
    response = client.login(name, running.passwords[name])
    return client, response


def test_workflow_is_in_the_audit_log_without_secrets(running):
    admin, admin_tokens = login(running, "ada")
    viewer, viewer_tokens = login(running, "vic")
    auditor, _ = login(running, "aud")

    # a viewer's denied SubmitOrder
    with pytest.raises(PermissionDenied):
        viewer.submit_order("ADA/BTC@paper", "buy", "100", limit_price="0.00001", client_order_id="viewer-try")
    # an admin's CreateStrategy
    admin.create_strategy("trend_momentum", INSTRUMENTS, {}, strategy_id="audited-tm")
    # a failed login (attempted username recorded, password not)
    with pytest.raises(Unauthenticated):
        running.client().login("tom", WRONG_PASSWORD)
    # a logout carries a refresh token: redacted
    trader, trader_tokens = login(running, "tom")
    trader.logout()

    records = list(auditor.iter_audit_records(page_size=3))
    seqs = [r.seq for r in records]
    assert seqs == sorted(seqs, reverse=True) and seqs == list(range(len(seqs), 0, -1))  # newest first, all pages

    def one(method, username, code):
        found = [r for r in records if r.method == method and r.username == username and r.code == code]
        assert len(found) == 1, (method, username, code, [(r.method, r.username, r.code) for r in records])
        assert PEER.search(found[0].peer), found[0].peer
        return found[0]

    denied = one(SUBMIT, "vic", "PERMISSION_DENIED")
    assert denied.role == "viewer" and denied.session_id
    assert json.loads(denied.request_summary)["client_order_id"] == "viewer-try"
    created = one(CREATE_STRATEGY, "ada", "OK")
    assert created.role == "admin" and json.loads(created.request_summary)["strategy_id"] == "audited-tm"
    failed = one(LOGIN, "tom", "UNAUTHENTICATED")
    assert failed.role == "" and failed.session_id == ""
    assert json.loads(failed.request_summary) == {"username": "tom", "password": "[redacted]"}
    ok_login = one(LOGIN, "ada", "OK")
    assert ok_login.role == "admin"
    logout = one(LOGOUT, "tom", "OK")
    assert json.loads(logout.request_summary)["refresh_token"] == "[redacted]"

    # nothing secret anywhere in the table
    rows = running.call(lambda: running.app.db.query("SELECT * FROM audit_log"))
    dump = json.dumps(rows)
    secrets = list(running.passwords.values()) + [WRONG_PASSWORD]
    for tokens in (admin_tokens, viewer_tokens, trader_tokens):
        secrets += [tokens.access_token, tokens.refresh_token]
    for secret in secrets:
        assert secret not in dump

    # the chain verifies, server-side and with the auditor's own hashlib
    verdict = auditor.verify_audit_chain()
    assert verdict.ok and verdict.first_broken_seq == 0 and verdict.reason == ""
    assert verdict.records_checked >= len(records)
    exported = list(auditor.export_audit_records())
    assert [r.seq for r in exported] == list(range(1, len(exported) + 1))
    previous = ""
    for record in exported:
        assert record.prev_hash == previous and recompute(record) == record.hash
        previous = record.hash
    assert [r.seq for r in auditor.export_audit_records(after_seq=len(exported) - 2)] == \
        [len(exported) - 1, len(exported)]

    # filters
    page = auditor.list_audit_records(username="vic", failures_only=True)
    assert {(r.username, r.code != "OK") for r in page.records} == {("vic", True)}
    assert {r.method for r in auditor.list_audit_records(method=LOGIN, page_size=100).records} == {LOGIN}


def test_only_audit_readers_may_read_and_a_denied_read_is_audited(running):
    viewer, _ = login(running, "vic")
    trader, _ = login(running, "tom")
    auditor, _ = login(running, "aud")
    admin, _ = login(running, "ada")
    for client in (viewer, trader):
        with pytest.raises(PermissionDenied):
            client.list_audit_records()
        with pytest.raises(PermissionDenied):
            client.verify_audit_chain()
        with pytest.raises(PermissionDenied):
            list(client.export_audit_records())
    assert auditor.verify_audit_chain().ok
    assert admin.verify_audit_chain().ok
    denied = auditor.list_audit_records(method=LIST_AUDIT, page_size=100).records
    assert {(r.username, r.role, r.code) for r in denied} == {("vic", "viewer", "PERMISSION_DENIED"),
                                                               ("tom", "trader", "PERMISSION_DENIED")}
    with pytest.raises(InvalidArgument, match="page_token"):
        auditor.list_audit_records(page_token="not-a-token")
    with pytest.raises(InvalidArgument, match="page_size"):
        auditor.list_audit_records(page_size=-1)
    # reads that are allowed are not recorded (only mutating and denied calls are)
    assert not [r for r in auditor.list_audit_records(username="aud", page_size=100).records if r.method != LOGIN]


def test_unauthenticated_calls_are_audited(running):
    anonymous = running.client()
    with pytest.raises(Unauthenticated):
        anonymous.submit_order("ADA/BTC@paper", "buy", "100", limit_price="0.00001")
    auditor, _ = login(running, "aud")
    (record,) = auditor.list_audit_records(method=SUBMIT).records
    assert (record.username, record.role, record.code) == ("", "", "UNAUTHENTICATED")


def test_tampering_is_reported_by_verify(running):
    admin, _ = login(running, "ada")
    for k in range(3):
        admin.create_strategy("trend_momentum", INSTRUMENTS, {}, strategy_id=f"tm-{k}")
    target = admin.list_audit_records(method=CREATE_STRATEGY, page_size=100).records[1].seq
    # someone with the database file drops the triggers and edits a record
    conn = apsw.Connection(str(running.config.db_path))
    with pytest.raises(apsw.ConstraintError, match="append-only"):
        conn.execute("UPDATE audit_log SET username = 'nobody' WHERE seq = ?", (target,))
    with conn:
        conn.execute("DROP TRIGGER audit_log_no_update")
        conn.execute("UPDATE audit_log SET username = 'nobody' WHERE seq = ?", (target,))
    conn.close()
    verdict = admin.verify_audit_chain()
    assert not verdict.ok and verdict.first_broken_seq == target and "altered" in verdict.reason
