"""Throttling: login backoff and lockout (persistent), and the per-token API rate limit (memory).

Login throttle (:class:`LoginThrottle`), per username AND per client address (peer host):

* Each failed login adds one to the counter of the username *as typed* (known or not, so a
  lockout says nothing about whether a user exists) and to the counter of the peer host.
* With ``f`` consecutive failures and ``threshold`` = ``auth.lockout_threshold``,
  ``max`` = ``auth.lockout_max``, ``lockout`` = ``auth.lockout_s``: attempts are refused until
  ``last_failure + delay(f)`` where::

      delay(f) = 0                                          f <  threshold
               = min(base * 2 ** (f - threshold), lockout)  threshold <= f < max
               = lockout                                    f >= max        (locked out)

  ``base`` is 1 s, so with the defaults (5, 10, 900 s) the delays after the 5th..9th failure are
  1, 2, 4, 8, 16 s and the 10th failure locks for 15 minutes.
* A refused attempt does not check the password and does not count; it raises
  :class:`~appliance.model.errors.RateLimitedError` (RESOURCE_EXHAUSTED, ``lyra-retry-after-s``)
  with one message whatever the scope, so it reveals nothing.
* Counters live in the ``auth_failures`` table, so a restart does not reset them. A successful
  login deletes the *user* counter. The peer counter is not reset by a success (a guesser with
  one valid account could otherwise clear it); it is forgotten ``lockout_s`` after the later of
  its last failure and the end of its block. The same forgetting applies to user counters.
* Attempts in flight (the Argon2 check runs in a worker thread) are counted in memory, so a
  burst of concurrent guesses cannot slip past the counter before the first one fails: at most
  ``max(1, threshold - f)`` attempts per key are verified at once.

API rate limit (:class:`TokenBucketLimiter`): a token bucket per credential (session id or
service-token id): ``rate_limit_burst`` calls at once, refilled at ``rate_limit_rps`` per second.
Time comes from a monotonic timer (durations, not domain time).
"""

from __future__ import annotations

import math
import re
import time
from collections import Counter
from dataclasses import dataclass
from typing import Callable

from appliance.engine.clock import NS_PER_SECOND, Clock
from appliance.model.errors import RateLimitedError
from appliance.store.db import Database

LOGIN_THROTTLED_MESSAGE = "too many failed sign-in attempts; try again later"
RATE_LIMITED_MESSAGE = "rate limit exceeded for this token; slow down"
DEFAULT_BACKOFF_BASE_S = 1.0
MAX_PEER_KEY = 128
USER_SCOPE = "user"
PEER_SCOPE = "peer"

_PORT_SUFFIX = re.compile(r":\d+$")


def peer_host(peer: str | None) -> str:
    """The client address of a gRPC ``context.peer()`` string, without the port.

    ``"ipv4:127.0.0.1:5432"`` -> ``"127.0.0.1"``; ``"ipv6:[::1]:5432"`` -> ``"::1"``;
    ``"unix:/run/lyra.sock"`` -> ``"unix:/run/lyra.sock"``; empty/None -> ``""``. Bounded to 128
    characters.
    """
    if not peer:
        return ""
    peer = str(peer)
    kind, sep, rest = peer.partition(":")
    if not sep:
        return peer[:MAX_PEER_KEY]
    if kind == "ipv6":
        rest = rest.replace("%5B", "[").replace("%5D", "]")
        if rest.startswith("["):
            return rest[1:].partition("]")[0][:MAX_PEER_KEY]
        return _PORT_SUFFIX.sub("", rest)[:MAX_PEER_KEY]
    if kind == "ipv4":
        return _PORT_SUFFIX.sub("", rest)[:MAX_PEER_KEY]
    return peer[:MAX_PEER_KEY]


@dataclass(frozen=True, slots=True)
class LockoutPolicy:
    """Login throttle parameters (from ``[auth]``).

    Attributes:
        threshold: failures before backoff starts (``lockout_threshold``, >= 1).
        max_failures: failures that lock out (``lockout_max``, > threshold expected).
        lockout_s: lockout length in seconds (``lockout_s``).
        backoff_base_s: the first backoff delay in seconds.
    """

    threshold: int = 5
    max_failures: int = 10
    lockout_s: int = 900
    backoff_base_s: float = DEFAULT_BACKOFF_BASE_S

    def delay_ns(self, failures: int) -> int:
        """How long after the ``failures``-th consecutive failure attempts are refused (ns)."""
        lockout_ns = int(self.lockout_s * NS_PER_SECOND)
        if failures >= self.max_failures:
            return lockout_ns
        if failures < self.threshold:
            return 0
        exponent = min(failures - self.threshold, 62)
        return min(int(self.backoff_base_s * NS_PER_SECOND * (2 ** exponent)), lockout_ns)


class LoginAttempt:
    """One login attempt admitted by :meth:`LoginThrottle.begin`; end it exactly once with
    :meth:`failed`, :meth:`succeeded` or :meth:`abandon` (a ``with`` block abandons it if
    neither was called)."""

    __slots__ = ("_throttle", "keys", "_open")

    def __init__(self, throttle: "LoginThrottle", keys: tuple[tuple[str, str], ...]) -> None:
        self._throttle = throttle
        self.keys = keys
        self._open = True

    def _close(self) -> bool:
        if not self._open:
            return False
        self._open = False
        for key in self.keys:
            self._throttle._inflight[key] -= 1
            if self._throttle._inflight[key] <= 0:
                del self._throttle._inflight[key]
        return True

    def failed(self) -> None:
        """Count a failure for the username and the peer (committed in its own transaction
        unless the caller has one open)."""
        if self._close():
            self._throttle._record_failure(self.keys)

    def succeeded(self) -> None:
        """Reset the username's counter (the peer's stays)."""
        if self._close():
            self._throttle._record_success(self.keys)

    def abandon(self) -> None:
        """End without counting (e.g. the password was right but a TOTP code is still needed)."""
        self._close()

    def __enter__(self) -> "LoginAttempt":
        return self

    def __exit__(self, *exc: object) -> None:
        self.abandon()


class LoginThrottle:
    """Persistent backoff/lockout per username and per peer host (see the module docstring).

    Args:
        db: the database (table ``auth_failures``).
        clock: time source (a SimClock in tests).
        policy: the parameters.

    Threading: call from the engine's loop thread (the single writer), outside an engine
    message, so that a recorded failure is committed even though the login then fails.
    """

    def __init__(self, db: Database, clock: Clock, policy: LockoutPolicy = LockoutPolicy()) -> None:
        self.db = db
        self.clock = clock
        self.policy = policy
        self._inflight: Counter[tuple[str, str]] = Counter()

    @staticmethod
    def keys_for(username: str, peer: str) -> tuple[tuple[str, str], ...]:
        keys = [(USER_SCOPE, username)]
        if peer:
            keys.append((PEER_SCOPE, peer[:MAX_PEER_KEY]))
        return tuple(keys)

    def _row(self, scope: str, key: str) -> tuple[int, int, int] | None:
        row = self.db.query_one(
            "SELECT failures, last_failure_ns, blocked_until_ns FROM auth_failures WHERE scope = ? AND key = ?", (scope, key)
        )
        return (int(row[0]), int(row[1]), int(row[2])) if row else None

    def _live_failures(self, row: tuple[int, int, int] | None, now_ns: int) -> int:
        """Failures still remembered at ``now_ns`` (0 once forgotten)."""
        if row is None:
            return 0
        failures, last_ns, blocked_ns = row
        if now_ns - max(last_ns, blocked_ns) >= self.policy.lockout_s * NS_PER_SECOND:
            return 0
        return failures

    def blocked_for_s(self, scope: str, key: str) -> float:
        """Seconds until ``key`` may try again (0 when not blocked)."""
        row = self._row(scope, key)
        if row is None:
            return 0.0
        return max(0.0, (row[2] - self.clock.now_ns()) / NS_PER_SECOND)

    def blocked_until_ns(self, scope: str, key: str) -> int:
        """When the block of ``key`` ends (ns since the epoch), 0 if it is not blocked now."""
        row = self._row(scope, key)
        return row[2] if row is not None and row[2] > self.clock.now_ns() else 0

    def begin(self, username: str, peer: str) -> LoginAttempt:
        """Admit one attempt for ``username`` from ``peer`` or refuse it.

        Args:
            username: as typed (already validated against the username pattern).
            peer: peer host (:func:`peer_host`), "" when unknown.

        Returns:
            A :class:`LoginAttempt` to end with failed()/succeeded()/abandon().

        Raises:
            RateLimitedError: the username or the peer is in backoff or locked out, or enough
                attempts for it are in flight; ``retry_after_s`` is the longest wait.
        """
        now = self.clock.now_ns()
        keys = self.keys_for(username, peer)
        retry_ns = 0
        for key in keys:
            row = self._row(*key)
            if row is not None and row[2] > now:
                retry_ns = max(retry_ns, row[2] - now)
                continue
            failures = self._live_failures(row, now)
            if self._inflight[key] >= max(1, self.policy.threshold - failures):
                retry_ns = max(retry_ns, NS_PER_SECOND)
        if retry_ns > 0:
            raise RateLimitedError(LOGIN_THROTTLED_MESSAGE, math.ceil(retry_ns / NS_PER_SECOND * 1000) / 1000)
        for key in keys:
            self._inflight[key] += 1
        return LoginAttempt(self, keys)

    def _record_failure(self, keys: tuple[tuple[str, str], ...]) -> None:
        now = self.clock.now_ns()
        forget_before = now - self.policy.lockout_s * NS_PER_SECOND
        with self.db.transaction():
            for scope, key in keys:
                failures = self._live_failures(self._row(scope, key), now) + 1
                blocked_until = now + self.policy.delay_ns(failures) if self.policy.delay_ns(failures) else 0
                self.db.execute(
                    "INSERT INTO auth_failures(scope, key, failures, last_failure_ns, blocked_until_ns) VALUES (?,?,?,?,?) "
                    "ON CONFLICT(scope, key) DO UPDATE SET failures = excluded.failures, "
                    "last_failure_ns = excluded.last_failure_ns, blocked_until_ns = excluded.blocked_until_ns",
                    (scope, key, failures, now, blocked_until),
                )
            # forget stale rows so guessed usernames cannot grow the table without bound
            self.db.execute(
                "DELETE FROM auth_failures WHERE last_failure_ns < ? AND blocked_until_ns < ?", (forget_before, forget_before)
            )

    def _record_success(self, keys: tuple[tuple[str, str], ...]) -> None:
        with self.db.transaction():
            for scope, key in keys:
                if scope == USER_SCOPE:
                    self.db.execute("DELETE FROM auth_failures WHERE scope = ? AND key = ?", (scope, key))

    def reset_user(self, username: str) -> None:
        """Forget the username's failures (an admin reset its password)."""
        self.db.execute("DELETE FROM auth_failures WHERE scope = ? AND key = ?", (USER_SCOPE, username))


class TokenBucketLimiter:
    """Per-credential token buckets for the API rate limit.

    Args:
        rate_per_s: sustained calls per second (> 0).
        burst: bucket size (>= 1): calls allowed at once after a pause.
        timer: monotonic seconds (``time.monotonic``).
        max_keys: buckets kept; full buckets (idle credentials) are dropped beyond it.

    Raises:
        ValueError: non-positive rate or burst.
    """

    def __init__(self, rate_per_s: float, burst: int, *, timer: Callable[[], float] = time.monotonic, max_keys: int = 10_000) -> None:
        if not rate_per_s > 0 or int(burst) < 1:
            raise ValueError("rate_per_s must be > 0 and burst >= 1")
        self.rate_per_s = float(rate_per_s)
        self.burst = int(burst)
        self.timer = timer
        self.max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)

    def acquire(self, key: str) -> None:
        """Take one token from ``key``'s bucket.

        Raises:
            RateLimitedError: the bucket is empty; ``retry_after_s`` = time until one token.
        """
        now = self.timer()
        tokens, at = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.rate_per_s)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            raise RateLimitedError(RATE_LIMITED_MESSAGE, (1.0 - tokens) / self.rate_per_s)
        self._buckets[key] = (tokens - 1.0, now)
        if len(self._buckets) > self.max_keys:
            self._prune(now)

    def forget(self, key: str) -> None:
        self._buckets.pop(key, None)

    def _prune(self, now: float) -> None:
        full_after = self.burst / self.rate_per_s
        for key, (_, at) in list(self._buckets.items()):
            if now - at >= full_after:
                del self._buckets[key]
