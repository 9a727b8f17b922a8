"""The audit log: hash chain, canonical form, tamper detection, redaction, the interceptor hook."""

from __future__ import annotations

import hashlib
import json
import re
from types import SimpleNamespace

import apsw
import pytest

from appliance.engine.clock import SimClock
from appliance.model.errors import ValidationError
from appliance.security import audit as audit_mod
from appliance.security.audit import REDACTED, AuditLog, VerifyCursor, summarize_request
from appliance.security.auth import Principal
from appliance.security.permissions import MUTATING_METHODS
from appliance.store.db import Database
from lyra.v1 import auth_pb2, orders_pb2, strategies_pb2, vault_pb2

SUBMIT = "/lyra.v1.OrderService/SubmitOrder"
LIST_ORDERS = "/lyra.v1.OrderService/ListOrders"
LOGIN = "/lyra.v1.AuthService/Login"


@pytest.fixture
def db(tmp_path):
    database = Database(tmp_path / "lyra.db")
    yield database
    database.close()


@pytest.fixture
def clock():
    return SimClock(1_700_000_000_000_000_000)


@pytest.fixture
def log(db, clock):
    return AuditLog(db, clock)


def fill(log: AuditLog, clock: SimClock, n: int) -> None:
    for i in range(n):
        clock.advance_to(clock.now_ns() + 1_000)
        log.record(method=SUBMIT if i % 2 else LOGIN, code="OK" if i % 3 else "PERMISSION_DENIED",
                   username=f"user{i}", role="trader", request_summary=json.dumps({"i": i}), peer=f"ipv4:127.0.0.1:{5000 + i}",
                   session_id=f"s{i}")


def trigger_sql() -> list[str]:
    text = next(sql for _, name, sql in Database.migrations() if name == "0006_audit.sql")
    return re.findall(r"CREATE TRIGGER.*?END;", text, flags=re.S)


def attack(db: Database, *statements: str, keep_triggers_dropped: bool = False) -> None:
    """What someone holding the database file could do: another connection, triggers dropped,
    rows changed, then (unless told otherwise) the triggers put back to hide it."""
    conn = apsw.Connection(str(db.path))
    with conn:
        conn.execute("DROP TRIGGER audit_log_no_update")
        conn.execute("DROP TRIGGER audit_log_no_delete")
        for sql in statements:
            conn.execute(sql)
        if not keep_triggers_dropped:
            for sql in trigger_sql():
                conn.execute(sql)
    conn.close()


# -- chain and canonical form ---------------------------------------------------------------
def test_records_chain_and_hash_is_reproducible_outside_lyra(log, clock):
    first = log.record(method=SUBMIT, code="OK", username="zoë", role="trader",
                       request_summary='{"instrument":"ADA/BTC@paper","note":"say \\"hi\\"\\n"}',
                       peer="ipv4:127.0.0.1:5000", session_id="sess-1")
    second = log.record(method=LOGIN, code="UNAUTHENTICATED", username="mallory", request_summary="{}",
                        peer="ipv6:[::1]:6000")
    assert (first.seq, second.seq) == (1, 2)
    assert first.prev_hash == "" and second.prev_hash == first.hash

    # the documented canonical form, built by hand: sorted keys, every value a string, no spaces,
    # UTF-8 (not \u-escaped), only " \ and control characters escaped
    summary = first.request_summary.replace("\\", "\\\\").replace('"', '\\"')
    canonical = ('{"code":"OK","method":"/lyra.v1.OrderService/SubmitOrder","peer":"ipv4:127.0.0.1:5000",'
                 '"prev_hash":"","request_summary":"' + summary + '","role":"trader","seq":"1",'
                 '"session_id":"sess-1","ts_ns":"' + str(clock.now_ns()) + '","username":"zoë"}')
    assert audit_mod.canonical_json(first.fields()) == canonical
    assert first.hash == hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    # ... and the same with nothing but the standard library and the exported values
    exported = {"seq": second.seq, "ts_ns": second.ts_ns, "username": second.username, "role": second.role,
                "method": second.method, "request_summary": second.request_summary, "code": second.code,
                "peer": second.peer, "session_id": second.session_id, "prev_hash": second.prev_hash}
    text = json.dumps({k: str(v) for k, v in exported.items()}, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert hashlib.sha256(text.encode()).hexdigest() == second.hash

    assert log.verify() == (True, 2, 0, "")
    stored = log.get(1)
    assert stored == first


def test_empty_chain_verifies(log):
    assert log.verify() == (True, 0, 0, "")


def test_table_is_append_only_in_the_database(log, clock, db):
    fill(log, clock, 2)
    with pytest.raises(apsw.ConstraintError, match="append-only"):
        db.execute("UPDATE audit_log SET username = 'x' WHERE seq = 1")
    with pytest.raises(apsw.ConstraintError, match="append-only"):
        db.execute("DELETE FROM audit_log WHERE seq = 2")
    with pytest.raises(apsw.ConstraintError, match="append-only"):
        db.execute("DELETE FROM audit_log")
    assert log.verify().ok


def test_record_joins_an_open_transaction_as_a_savepoint(log, db):
    with pytest.raises(RuntimeError):
        with db.transaction():
            log.record(method=SUBMIT, code="OK")
            raise RuntimeError("caller's unit of work fails")
    assert log.last_seq() == 0
    with db.transaction():
        log.record(method=SUBMIT, code="OK")
    assert log.last_seq() == 1 and log.verify().ok


# -- tamper detection ---------------------------------------------------------------------------
def test_update_is_detected_and_named(log, clock, db):
    fill(log, clock, 6)
    attack(db, "UPDATE audit_log SET code = 'OK' WHERE seq = 4")
    ok, checked, first, reason = log.verify()
    assert not ok and first == 4 and checked == 3 and "altered" in reason


def test_update_with_recomputed_hash_breaks_the_next_link(log, clock, db):
    fill(log, clock, 5)
    forged = dict(log.get(3).fields(), username="someone-else")
    attack(db, f"UPDATE audit_log SET username = 'someone-else', hash = '{audit_mod.record_hash(forged)}' WHERE seq = 3")
    result = log.verify()
    assert not result.ok and result.first_broken_seq == 4 and "prev_hash" in result.reason


def test_delete_in_the_middle_is_detected_and_named(log, clock, db):
    fill(log, clock, 6)
    attack(db, "DELETE FROM audit_log WHERE seq = 3")
    result = log.verify()
    assert not result.ok and result.first_broken_seq == 3 and result.checked == 2
    assert "record 3 missing" in result.reason


def test_delete_of_the_tail_is_detected(log, clock, db):
    fill(log, clock, 6)
    attack(db, "DELETE FROM audit_log WHERE seq >= 5")
    result = log.verify()
    assert not result.ok and result.first_broken_seq == 5 and "5..6 missing" in result.reason
    # new records do not paper over the hole: they continue after the highest seq ever written
    assert log.record(method=SUBMIT, code="OK").seq == 7
    assert log.verify().first_broken_seq == 5


def test_insert_in_the_middle_is_detected(log, clock, db):
    fill(log, clock, 5)
    # make room at seq 3 by renumbering 3..5 -> 4..6, then insert a well-formed forged record
    # chained to record 2
    prev = log.get(2).hash
    forged = {"seq": 3, "ts_ns": log.get(2).ts_ns + 1, "username": "ghost", "role": "admin", "method": SUBMIT,
              "request_summary": "{}", "code": "OK", "peer": "", "session_id": "", "prev_hash": prev}
    values = ", ".join(repr(str(forged[k])) if isinstance(forged[k], str) else str(forged[k])
                       for k in audit_mod.HASH_FIELDS)
    attack(db, "UPDATE audit_log SET seq = seq + 100 WHERE seq >= 3",
           "UPDATE audit_log SET seq = seq - 99 WHERE seq >= 103",
           f"INSERT INTO audit_log(seq, ts_ns, username, role, method, request_summary, code, peer, session_id, "
           f"prev_hash, hash) VALUES ({values}, '{audit_mod.record_hash(forged)}')")
    result = log.verify()
    assert not result.ok and result.first_broken_seq == 4, result


def test_naive_insert_with_a_new_seq_is_detected(log, clock, db):
    fill(log, clock, 3)
    attack(db, "INSERT INTO audit_log(seq, ts_ns, username, role, method, request_summary, code, peer, session_id, "
               "prev_hash, hash) VALUES (4, 1, 'ghost', 'admin', 'x', '{}', 'OK', '', '', 'bogus', 'bogus')")
    result = log.verify()
    assert not result.ok and result.first_broken_seq == 4


def test_reorder_is_detected(log, clock, db):
    fill(log, clock, 5)
    # swap records 2 and 3 (their seq numbers)
    attack(db, "UPDATE audit_log SET seq = -2 WHERE seq = 2", "UPDATE audit_log SET seq = 2 WHERE seq = 3",
           "UPDATE audit_log SET seq = 3 WHERE seq = -2")
    result = log.verify()
    assert not result.ok and result.first_broken_seq == 2


def test_removed_triggers_alone_fail_verification(log, clock, db):
    fill(log, clock, 3)
    attack(db, keep_triggers_dropped=True)
    result = log.verify()
    assert result == (False, 3, 0, result.reason) and "trigger" in result.reason


def test_stepwise_verification_matches_and_sees_later_appends(log, clock, db):
    fill(log, clock, 7)
    cursor = VerifyCursor()
    log.verify_step(cursor, 3)
    assert not cursor.done and cursor.checked == 3
    fill(log, clock, 2)  # appended between steps
    while not cursor.done:
        log.verify_step(cursor, 3)
    assert cursor.result == (True, 9, 0, "")
    attack(db, "UPDATE audit_log SET peer = 'x' WHERE seq = 8")
    cursor = VerifyCursor()
    while not cursor.done:
        log.verify_step(cursor, 2)
    assert cursor.result.first_broken_seq == 8


# -- reading ------------------------------------------------------------------------------------
def test_list_newest_first_with_paging_and_filters(log, clock):
    fill(log, clock, 12)
    page, next_before = log.list(page_size=5)
    assert [r.seq for r in page] == [12, 11, 10, 9, 8] and next_before == 8
    page, next_before = log.list(page_size=5, before_seq=next_before)
    assert [r.seq for r in page] == [7, 6, 5, 4, 3] and next_before == 3
    page, next_before = log.list(page_size=5, before_seq=next_before)
    assert [r.seq for r in page] == [2, 1] and next_before == 0
    assert [r.seq for r in log.list(username="user4")[0]] == [5]
    assert {r.method for r in log.list(method=LOGIN, page_size=100)[0]} == {LOGIN}
    assert log.list(method="SubmitOrder", page_size=100)[0] == log.list(method=SUBMIT, page_size=100)[0]
    assert len(log.list(method="Order", page_size=100)[0]) == 0  # a short name matches a whole method name
    assert all(r.code != "OK" for r in log.list(failures_only=True, page_size=100)[0])
    assert len(log.list(failures_only=True, page_size=100)[0]) == 4
    with pytest.raises(ValidationError):
        log.list(page_size=0)


def test_export_oldest_first_after_seq(log, clock):
    fill(log, clock, 5)
    assert [r.seq for r in log.export()] == [1, 2, 3, 4, 5]
    assert [r.seq for r in log.export(after_seq=3)] == [4, 5]
    assert [r.seq for r in log.export(after_seq=1, limit=2)] == [2, 3]
    with pytest.raises(ValidationError):
        log.export(after_seq=-1)


# -- redaction ----------------------------------------------------------------------------------
SECRET = "s3cr3t-VALUE"


@pytest.mark.parametrize("message", [
    auth_pb2.LoginRequest(username="bob", password=SECRET, totp_code=SECRET, recovery_code=SECRET),
    auth_pb2.RefreshRequest(refresh_token=SECRET),
    auth_pb2.LogoutRequest(refresh_token=SECRET),
    auth_pb2.ChangePasswordRequest(current_password=SECRET, new_password=SECRET),
    auth_pb2.BeginTotpEnrollmentRequest(password=SECRET),
    auth_pb2.ConfirmTotpEnrollmentRequest(totp_code=SECRET),
    vault_pb2.InitializeVaultRequest(passphrase=SECRET),
    vault_pb2.UnsealVaultRequest(passphrase=SECRET),
    vault_pb2.ChangeVaultPassphraseRequest(current_passphrase=SECRET, new_passphrase=SECRET),
    vault_pb2.CreateCredentialRequest(venue="binance", label="main", secrets=vault_pb2.CredentialSecrets(
        api_key=SECRET, secret=SECRET, passphrase=SECRET, uid=SECRET)),
    vault_pb2.RotateCredentialRequest(credential_id="c1", secrets=vault_pb2.CredentialSecrets(api_key=SECRET, secret=SECRET)),
], ids=lambda m: type(m).__name__)
def test_secret_fields_of_real_requests_are_redacted(message):
    summary = summarize_request("/x/y", message)
    assert SECRET not in summary
    data = json.loads(summary)
    assert REDACTED in summary
    for key, value in data.items():
        if key in audit_mod.SECRET_FIELDS:
            assert value == REDACTED
    if "secrets" in data:
        assert data["secrets"] == REDACTED  # the whole nested CredentialSecrets
    if isinstance(message, auth_pb2.LoginRequest):
        assert data["username"] == "bob"


@pytest.mark.parametrize("name", sorted(audit_mod.SECRET_FIELDS))
def test_every_secret_name_is_redacted_at_any_depth(name):
    request = {"outer": {"list": [{"inner": {name: SECRET}}, {name: [SECRET, SECRET]}]}, name: {"deep": SECRET},
               name.upper(): SECRET, "keep": "visible"}
    summary = summarize_request("/x/y", request)
    assert SECRET not in summary
    data = json.loads(summary)
    assert data[name] == REDACTED and data[name.upper()] == REDACTED
    assert data["outer"]["list"][0]["inner"][name] == REDACTED and data["outer"]["list"][1][name] == REDACTED
    assert data["keep"] == "visible"


def test_required_names_are_all_covered():
    required = {"password", "new_password", "current_password", "passphrase", "new_passphrase", "current_passphrase",
                "secret", "secrets", "api_key", "totp_code", "recovery_code", "refresh_token", "token", "uid"}
    assert required <= audit_mod.SECRET_FIELDS


def test_summary_keeps_field_names_and_non_secret_values():
    request = orders_pb2.SubmitOrderRequest(instrument="ADA/BTC@paper", side=1, type=2, qty="100", limit_price="0.00001",
                                            client_order_id="c-1")
    data = json.loads(summarize_request(SUBMIT, request))
    assert data["instrument"] == "ADA/BTC@paper" and data["client_order_id"] == "c-1" and data["qty"] == "100"
    assert summarize_request(SUBMIT, None) == "{}"
    assert json.loads(summarize_request(SUBMIT, object())) == {"_type": "object"}


def test_long_strings_are_cut_at_256_characters():
    request = strategies_pb2.CreateStrategyRequest(type="t", strategy_id="x" * 1000, params={"k" * 300: "v" * 300})
    data = json.loads(summarize_request("/x/y", request))
    assert data["strategy_id"].startswith("x" * 256) and "truncated 744 chars" in data["strategy_id"]
    assert len(data["strategy_id"]) < 300
    (key, value), = data["params"].items()
    assert len(key) < 300 and len(value) < 300


def test_summary_is_capped_at_4_kib_and_stays_json():
    request = strategies_pb2.CreateStrategyRequest(type="t", instruments=[f'"quoted"-{i}-' + "é" * 200 for i in range(100)])
    summary = summarize_request("/x/y", request)
    assert len(summary.encode("utf-8")) <= 4096
    data = json.loads(summary)
    assert data["_truncated"] is True and data["_bytes"] > 4096 and data["_head"].startswith('{"type":"t"')


# -- the interceptor hook -----------------------------------------------------------------------
def call(method, code="OK", principal=None, request=None, peer="ipv4:127.0.0.1:5555"):
    return SimpleNamespace(method=method, code_name=code, seconds=0.01, permission="x", principal=principal,
                           error_id=None, request=request, peer=peer)


TRADER = Principal(user_id="u1", username="tina", role="trader", session_id="sess-9")


def test_on_call_records_mutating_denied_and_login_only(log, db):
    assert SUBMIT in MUTATING_METHODS and LIST_ORDERS not in MUTATING_METHODS
    log.on_call(call(SUBMIT, "OK", TRADER, orders_pb2.SubmitOrderRequest(instrument="ADA/BTC@paper", qty="1")))
    log.on_call(call(LIST_ORDERS, "OK", TRADER, orders_pb2.ListOrdersRequest()))  # a read: not recorded
    log.on_call(call(LIST_ORDERS, "PERMISSION_DENIED", TRADER))
    log.on_call(call(LIST_ORDERS, "UNAUTHENTICATED"))
    log.on_call(call(LIST_ORDERS, "RESOURCE_EXHAUSTED", TRADER))
    log.on_call(call(LOGIN, "UNAUTHENTICATED", None, auth_pb2.LoginRequest(username="eve", password=SECRET)))
    records = log.export()
    assert [(r.method, r.code) for r in records] == [
        (SUBMIT, "OK"), (LIST_ORDERS, "PERMISSION_DENIED"), (LIST_ORDERS, "UNAUTHENTICATED"),
        (LIST_ORDERS, "RESOURCE_EXHAUSTED"), (LOGIN, "UNAUTHENTICATED")]
    submit = records[0]
    assert (submit.username, submit.role, submit.session_id, submit.peer) == ("tina", "trader", "sess-9", "ipv4:127.0.0.1:5555")
    assert json.loads(submit.request_summary)["instrument"] == "ADA/BTC@paper"
    assert records[1].request_summary == "{}"  # no request given
    assert (records[2].username, records[2].role, records[2].session_id) == ("", "", "")
    login = records[4]
    assert login.username == "eve" and login.role == "" and json.loads(login.request_summary)["password"] == REDACTED
    dump = json.dumps(db.query("SELECT * FROM audit_log"))
    assert SECRET not in dump
    assert log.verify().ok


def test_on_call_without_request_and_peer_fields(log):
    bare = SimpleNamespace(method=SUBMIT, code_name="OK", seconds=0.0, permission="orders.write", principal=TRADER,
                           error_id=None)
    log.on_call(bare)
    (record,) = log.export()
    assert record.request_summary == "{}" and record.peer == ""


def test_successful_login_gets_the_users_current_role(log, db, clock):
    db.execute("INSERT INTO users(user_id, username, password_hash, role, disabled, created_ns) VALUES ('u', 'ann', 'h', 'auditor', 0, 1)")
    log.on_call(call(LOGIN, "OK", None, auth_pb2.LoginRequest(username="ann", password=SECRET)))
    (record,) = log.export()
    assert (record.username, record.role, record.code) == ("ann", "auditor", "OK")


def test_on_call_never_raises_and_counts_failures(log, db, caplog):
    db.close()  # any write now fails
    log.on_call(call(SUBMIT, "OK", TRADER, orders_pb2.SubmitOrderRequest(client_order_id=SECRET)))
    log.on_call(call(SUBMIT, "OK", TRADER))
    assert log.failures == 2
    assert "could not be written" in caplog.text and SECRET not in caplog.text
