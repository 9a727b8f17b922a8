"""Login backoff and lockout (per user, per peer, persistent), session idle timeout and absolute
lifetime, the per-token API rate limit — all on a SimClock / fake timer."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from appliance.engine.clock import NS_PER_SECOND, SimClock
from appliance.model.errors import RateLimitedError
from appliance.security.auth import LOGIN_FAILED_MESSAGE, AuthenticationFailed, AuthService
from appliance.security.passwords import TEST_ONLY_FAST
from appliance.security.ratelimit import LOGIN_THROTTLED_MESSAGE, LockoutPolicy, TokenBucketLimiter, peer_host
from appliance.security.tokens import InvalidToken, TokenSigner, load_or_create_signing_key
from appliance.security.users import UserStore
from appliance.store.db import Database
from appliance.store.journal import Journal

T0_NS = 1_700_000_000 * NS_PER_SECOND
PASSWORD = "lockout-test-password"
POLICY = LockoutPolicy(threshold=3, max_failures=5, lockout_s=600)


class Env:
    def __init__(self, path: Path, *, policy: LockoutPolicy = POLICY, idle_timeout_s: int | None = 3600,
                 max_session_s: int = 30 * 86_400, clock: SimClock | None = None) -> None:
        self.clock = clock or SimClock(T0_NS)
        self.db = Database(path)
        self.journal = Journal(self.db)
        self.users = UserStore(self.db, self.journal, self.clock, password_params=TEST_ONLY_FAST)
        self.signer = TokenSigner.from_signing_key(load_or_create_signing_key(self.db, self.clock), self.clock, ttl_s=86_400)
        self.auth = AuthService(self.db, self.journal, self.users, self.signer, self.clock, lockout=policy,
                                idle_timeout_s=idle_timeout_s, max_session_s=max_session_s)

    def advance(self, seconds: float) -> None:
        self.clock.advance_to(self.clock.now_ns() + int(seconds * NS_PER_SECOND))

    def outcome(self, username: str, password: str, peer: str = "10.0.0.1") -> tuple[str, float | str]:
        """("ok", session) / ("failed", message) / ("refused", retry_after_s)."""
        try:
            return "ok", self.auth.login(username, password, peer=peer).session_id
        except RateLimitedError as exc:
            assert str(exc) == LOGIN_THROTTLED_MESSAGE
            return "refused", exc.retry_after_s
        except AuthenticationFailed as exc:
            return "failed", str(exc)


@pytest.fixture()
def env(tmp_path: Path):
    env = Env(tmp_path / "lyra.db")
    env.users.create_user("alice", PASSWORD, "trader")
    env.users.create_user("bob", PASSWORD, "viewer")
    yield env
    env.db.close()


# == policy ======================================================================================
def test_backoff_grows_exponentially_then_locks() -> None:
    policy = LockoutPolicy(threshold=5, max_failures=10, lockout_s=900)
    delays = [policy.delay_ns(f) / NS_PER_SECOND for f in range(0, 12)]
    assert delays == [0, 0, 0, 0, 0, 1, 2, 4, 8, 16, 900, 900]
    assert LockoutPolicy(threshold=1, max_failures=40, lockout_s=60).delay_ns(30) == 60 * NS_PER_SECOND  # capped


# == login throttle ==============================================================================
def test_backoff_then_lockout_refuses_even_the_right_password(env: Env) -> None:
    assert [env.outcome("alice", "wrong-password-x")[0] for _ in range(3)] == ["failed"] * 3
    # 3 failures = threshold: the next attempt within 1 s is refused without checking anything
    assert env.outcome("alice", PASSWORD) == ("refused", 1.0)
    env.advance(1)
    assert env.outcome("alice", "wrong-password-x")[0] == "failed"  # 4th failure -> 2 s
    env.advance(1)
    assert env.outcome("alice", PASSWORD) == ("refused", 1.0)
    env.advance(1)
    assert env.outcome("alice", "wrong-password-x")[0] == "failed"  # 5th = max -> locked 600 s
    # the (max+1)th attempt, with the RIGHT password, is refused, and so is everything for 600 s
    kind, retry = env.outcome("alice", PASSWORD)
    assert kind == "refused" and retry == 600.0
    env.advance(599)
    assert env.outcome("alice", PASSWORD) == ("refused", 1.0)
    env.advance(1)
    assert env.outcome("alice", PASSWORD)[0] == "ok"
    assert env.db.scalar("SELECT COUNT(*) FROM auth_failures WHERE scope = 'user' AND key = 'alice'") == 0  # reset


def test_unknown_usernames_are_throttled_identically(env: Env) -> None:
    known = [env.outcome("alice", "wrong-password-x", peer="10.0.0.1") for _ in range(4)]
    unknown = [env.outcome("mallory", "wrong-password-x", peer="10.0.0.2") for _ in range(4)]
    assert known == unknown == [("failed", LOGIN_FAILED_MESSAGE)] * 3 + [("refused", 1.0)]


def test_per_peer_lockout_across_usernames(env: Env) -> None:
    env.users.create_user("carol", PASSWORD, "viewer")
    names = ["alice", "bob", "ghost1", "ghost2", "ghost3"]
    for i, name in enumerate(names):
        env.advance(20)  # past any backoff: only the peer counter accumulates
        assert env.outcome(name, "wrong-password-x", peer="10.6.6.6")[0] == "failed", i
    # 5 failures from one peer: it is locked out, even for a user with no failures and the right password
    assert env.outcome("carol", PASSWORD, peer="10.6.6.6") == ("refused", 600.0)
    # the same user from another address is fine (its own counter is clean)
    assert env.outcome("carol", PASSWORD, peer="10.0.0.9")[0] == "ok"


def test_success_resets_the_user_counter_but_not_the_peer_counter(env: Env) -> None:
    for _ in range(2):
        assert env.outcome("alice", "wrong-password-x", peer="10.1.1.1")[0] == "failed"
    assert env.outcome("bob", PASSWORD, peer="10.1.1.1")[0] == "ok"
    assert env.outcome("alice", PASSWORD, peer="10.2.2.2")[0] == "ok"
    assert env.db.scalar("SELECT failures FROM auth_failures WHERE scope = 'peer' AND key = '10.1.1.1'") == 2
    assert env.db.scalar("SELECT COUNT(*) FROM auth_failures WHERE scope = 'user'") == 0


def test_counters_persist_across_a_restart(env: Env, tmp_path: Path) -> None:
    for _ in range(5):
        env.advance(20)
        env.outcome("alice", "wrong-password-x")
    env.db.close()
    restarted = Env(tmp_path / "lyra.db", clock=env.clock)
    kind, retry = restarted.outcome("alice", PASSWORD, peer="10.9.9.9")
    assert kind == "refused" and retry == 600.0
    restarted.db.close()
    env.db = Database(tmp_path / "lyra.db")  # for the fixture's close


def test_failures_are_forgotten_after_a_quiet_period(env: Env) -> None:
    for _ in range(2):
        env.outcome("alice", "wrong-password-x")
    env.advance(600)
    for _ in range(2):
        assert env.outcome("alice", "wrong-password-x")[0] == "failed"
    assert env.db.scalar("SELECT failures FROM auth_failures WHERE scope = 'user' AND key = 'alice'") == 2


async def test_concurrent_guesses_cannot_overtake_the_counter(env: Env) -> None:
    async def attempt():
        try:
            await env.auth.login_async("alice", "wrong-password-x", peer="10.3.3.3")
        except RateLimitedError:
            return "refused"
        except AuthenticationFailed:
            return "failed"
        return "ok"

    outcomes = await asyncio.gather(*(attempt() for _ in range(12)))
    assert outcomes.count("failed") == POLICY.threshold  # only `threshold` were verified at once
    assert outcomes.count("refused") == 12 - POLICY.threshold


def test_refused_attempts_do_not_check_the_password(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    from appliance.security import auth as auth_module

    for _ in range(3):
        env.outcome("alice", "wrong-password-x")
    calls = []
    monkeypatch.setattr(auth_module, "verify_password", lambda *a, **k: calls.append(1))
    assert env.outcome("alice", PASSWORD)[0] == "refused"
    assert calls == []


# == sessions: idle timeout and absolute lifetime ================================================
def test_idle_timeout_ends_the_session(env: Env) -> None:
    pair = env.auth.login("alice", PASSWORD)
    for _ in range(3):  # used every 59 minutes: stays alive for hours
        env.advance(59 * 60)
        assert env.auth.authenticate(pair.access).username == "alice"
    env.advance(3600)  # one hour without a call
    with pytest.raises(InvalidToken) as info:
        env.auth.authenticate(pair.access)
    assert info.value.reason == "session idle timeout"
    assert env.db.query_one("SELECT revoked, revoke_reason FROM sessions WHERE session_id = ?", (pair.session_id,)) == (1, "idle_timeout")
    with pytest.raises(AuthenticationFailed):
        env.auth.refresh(pair.refresh)


def test_refresh_is_use_and_idle_refresh_is_refused(env: Env) -> None:
    pair = env.auth.login("alice", PASSWORD)
    env.advance(50 * 60)
    pair = env.auth.refresh(pair.refresh)
    env.advance(50 * 60)
    assert env.auth.authenticate(pair.access).username == "alice"
    env.advance(61 * 60)
    with pytest.raises(AuthenticationFailed, match="without use"):
        env.auth.refresh(pair.refresh)
    assert env.db.scalar("SELECT revoke_reason FROM sessions WHERE session_id = ?", (pair.session_id,)) == "idle_timeout"


def test_last_used_is_written_at_most_once_a_minute(env: Env, tmp_path: Path) -> None:
    pair = env.auth.login("alice", PASSWORD)

    def stored() -> int:
        return env.db.scalar("SELECT last_used_ns FROM sessions WHERE session_id = ?", (pair.session_id,))

    assert stored() == T0_NS
    for seconds in (10, 20, 59):
        env.clock.advance_to(T0_NS + seconds * NS_PER_SECOND)
        env.auth.authenticate(pair.access)
        assert stored() == T0_NS  # not yet written
    env.clock.advance_to(T0_NS + 60 * NS_PER_SECOND)
    env.auth.authenticate(pair.access)
    assert stored() == T0_NS + 60 * NS_PER_SECOND
    # exact use is tracked in memory: idle counts from the last call (t0+60 s), not the last write
    env.clock.advance_to(T0_NS + 100 * NS_PER_SECOND)
    env.auth.authenticate(pair.access)
    env.clock.advance_to(T0_NS + (100 + 3599) * NS_PER_SECOND)
    env.auth.authenticate(pair.access)
    # after a restart, only the stored value is known (at most a minute early)
    restarted = AuthService(env.db, env.journal, env.users, env.signer, env.clock, idle_timeout_s=3600)
    env.clock.advance_to(T0_NS + (3699 + 3600) * NS_PER_SECOND)
    with pytest.raises(InvalidToken):
        restarted.authenticate(pair.access)


def test_absolute_lifetime_is_checked_on_every_call(tmp_path: Path) -> None:
    env = Env(tmp_path / "abs.db", max_session_s=2 * 3600, idle_timeout_s=3600)
    env.users.create_user("alice", PASSWORD, "trader")
    pair = env.auth.login("alice", PASSWORD)
    for _ in range(3):
        env.advance(40 * 60)
        if env.clock.now_ns() < T0_NS + 2 * 3600 * NS_PER_SECOND:
            pair = env.auth.refresh(pair.refresh)
            assert env.auth.authenticate(pair.access).username == "alice"
    with pytest.raises(InvalidToken) as info:
        env.auth.authenticate(pair.access)
    assert info.value.reason == "session expired"
    env.db.close()


def test_idle_timeout_can_be_disabled(tmp_path: Path) -> None:
    env = Env(tmp_path / "noidle.db", idle_timeout_s=None)
    env.users.create_user("alice", PASSWORD, "trader")
    pair = env.auth.login("alice", PASSWORD)
    env.advance(20 * 3600)
    assert env.auth.authenticate(pair.access).username == "alice"
    env.db.close()


# == API rate limit ==============================================================================
def test_token_bucket_burst_refill_and_retry_after() -> None:
    now = [100.0]
    limiter = TokenBucketLimiter(2.0, 3, timer=lambda: now[0])
    for _ in range(3):
        limiter.acquire("s1")
    with pytest.raises(RateLimitedError) as info:
        limiter.acquire("s1")
    assert info.value.retry_after_s == pytest.approx(0.5)
    limiter.acquire("s2")  # other credentials have their own bucket
    now[0] += 0.5
    limiter.acquire("s1")
    with pytest.raises(RateLimitedError):
        limiter.acquire("s1")
    now[0] += 100  # refills up to the burst only
    for _ in range(3):
        limiter.acquire("s1")
    with pytest.raises(RateLimitedError):
        limiter.acquire("s1")
    with pytest.raises(ValueError):
        TokenBucketLimiter(0, 1)


def test_token_bucket_forgets_idle_keys() -> None:
    now = [0.0]
    limiter = TokenBucketLimiter(10.0, 5, timer=lambda: now[0], max_keys=10)
    for i in range(10):
        limiter.acquire(f"k{i}")
    now[0] += 10
    limiter.acquire("new")
    assert len(limiter._buckets) <= 2


@pytest.mark.parametrize("peer, host", [
    ("ipv4:127.0.0.1:53122", "127.0.0.1"),
    ("ipv6:[::1]:53122", "::1"),
    ("ipv6:%5B::1%5D:53122", "::1"),
    ("unix:/run/lyra.sock", "unix:/run/lyra.sock"),
    ("", ""),
    (None, ""),
])
def test_peer_host_strips_the_port(peer, host) -> None:
    assert peer_host(peer) == host
