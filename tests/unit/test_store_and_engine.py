"""Database, journal and the engine's unit of work."""

import asyncio

import apsw
import pytest

from appliance.engine.clock import SimClock
from appliance.engine.engine import Engine
from appliance.store.db import Database
from appliance.store.journal import Journal


@pytest.fixture
def db(tmp_path):
    database = Database(tmp_path / "lyra.db")
    yield database
    database.close()


def test_migrations_applied_once_and_wal_on(db, tmp_path):
    assert db.schema_version() == len(Database.migrations())
    assert db.scalar("PRAGMA journal_mode") == "wal"
    db.close()
    again = Database(tmp_path / "lyra.db")  # re-open: nothing re-applied, nothing fails
    assert again.schema_version() == len(Database.migrations())
    again.close()


def test_journal_is_append_only_in_the_database(db):
    journal = Journal(db)
    with db.transaction():
        journal.append(1, "Test", "t", "1", {})
    with pytest.raises(apsw.ConstraintError, match="append-only"):
        db.execute("UPDATE journal SET type='X'")
    with pytest.raises(apsw.ConstraintError, match="append-only"):
        db.execute("DELETE FROM journal")


def test_journal_append_outside_transaction_refused(db):
    with pytest.raises(RuntimeError):
        Journal(db).append(1, "Test", "t", "1", {})


def test_handler_failure_rolls_back_rows_journal_and_outbox(db):
    journal = Journal(db)
    engine = Engine(db, journal)
    delivered, sent = [], []
    journal.subscribe(delivered.append)

    def good():
        db.execute("INSERT INTO meta(name, value) VALUES ('a', '1')")
        journal.append(1, "Good", "t", "a", {})
        engine.after_commit(lambda: sent.append("a"))
        return "ok"

    def bad():
        db.execute("INSERT INTO meta(name, value) VALUES ('b', '1')")
        journal.append(2, "Bad", "t", "b", {})
        engine.after_commit(lambda: sent.append("b"))
        raise ValueError("boom")

    assert engine.execute_now(good) == "ok"
    with pytest.raises(ValueError):
        engine.execute_now(bad)
    assert db.query("SELECT name FROM meta") == [("a",)]
    assert [e.type for e in journal.read()] == ["Good"]
    assert [e.type for e in delivered] == ["Good"]  # listeners see committed entries only
    assert sent == ["a"]  # side effects only after commit


def test_after_commit_outside_a_message_is_an_error(db):
    with pytest.raises(RuntimeError):
        Engine(db, Journal(db)).after_commit(lambda: None)


async def test_messages_are_handled_in_submission_order(db):
    engine = Engine(db, Journal(db))
    seen = []

    class Tick:
        def __init__(self, n):
            self.n = n

    engine.register(Tick, lambda m: seen.append(m.n) or m.n)
    engine.start()
    results = await asyncio.gather(*[engine.submit(Tick(i)) for i in range(50)],
                                   engine.call(lambda: seen.append("cmd") or "cmd"))
    await engine.stop()
    assert seen == list(range(50)) + ["cmd"]
    assert results[-1] == "cmd"


def test_simclock_fires_timers_in_order_and_never_goes_back():
    clock = SimClock(100)
    fired = []
    clock.set_timer(300, lambda t: fired.append(("b", t, clock.now_ns())))
    clock.set_timer(200, lambda t: fired.append(("a", t, clock.now_ns())))
    cancelled = clock.set_timer(250, lambda t: fired.append(("x", t)))
    clock.cancel_timer(cancelled)
    clock.advance_to(400)
    assert fired == [("a", 200, 200), ("b", 300, 300)]
    assert clock.now_ns() == 400
    with pytest.raises(ValueError):
        clock.advance_to(399)


def test_unexpected_error_stops_the_engine_but_a_refusal_does_not(db):
    from appliance.model.errors import ValidationError

    engine = Engine(db, Journal(db))
    fatal = []
    engine.on_fatal = fatal.append

    def refuse():
        raise ValidationError("qty", "must be > 0")

    with pytest.raises(ValidationError):
        engine.execute_now(refuse)
    assert engine.fatal is None and fatal == []

    def bug():
        db.execute("INSERT INTO meta(name, value) VALUES ('half', 'done')")
        raise KeyError("bug")

    with pytest.raises(KeyError):
        engine.execute_now(bug)
    assert isinstance(engine.fatal, KeyError) and fatal == [engine.fatal]
    assert db.query("SELECT * FROM meta WHERE name='half'") == []
