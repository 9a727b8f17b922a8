"""Fault injection plan and the request log of the emulator."""

from __future__ import annotations

import fnmatch
import threading
from dataclasses import dataclass, field


@dataclass
class RequestRecord:
    """One HTTP request as the emulator saw it.

    ``at`` is ``time.monotonic()`` at arrival; ``server_ms`` the venue clock (with skew).
    ``weight`` is the Binance request weight charged (0 when the request was refused before
    being counted) and ``used_weight`` the window total after it; ``kraken_counter`` the
    Kraken API counter after the call. ``status`` is the HTTP status sent (``None`` while in
    flight, ``499`` when the client had gone before the request was processed).
    ``error`` is the exchange error code/string returned, if any. ``processed`` tells
    whether the business handler ran (an order was placed, cancelled ...).
    """

    at: float
    server_ms: int
    venue: str
    method: str
    path: str
    query: str
    api_key: str | None = None
    weight: int = 0
    used_weight: int | None = None
    kraken_counter: float | None = None
    status: int | None = None
    error: object = None
    fault: str | None = None
    processed: bool = False


@dataclass
class Fault:
    """A scheduled fault; see :meth:`ExchangeEmulator.fail_next` and friends."""

    kind: str  # "status" | "delay" | "disconnect" | "trades"
    venue: str | None
    path: str  # exact path or fnmatch pattern, e.g. "/api/v3/order" or "/0/private/*"
    method: str | None
    remaining: int
    status: int = 500
    body: str | None = None
    headers: dict = field(default_factory=dict)
    seconds: float = 0.0
    when: str = "before"  # delay/disconnect: "before" or "after" processing
    mode: str = ""  # trades: "duplicate" | "reorder" | "overlap"

    def matches(self, venue: str, method: str, path: str) -> bool:
        if self.venue is not None and self.venue != venue:
            return False
        if self.method is not None and self.method.upper() != method.upper():
            return False
        return self.path == path or fnmatch.fnmatchcase(path, self.path)

    def describe(self) -> str:
        if self.kind == "status":
            return f"status:{self.status}"
        if self.kind == "trades":
            return f"trades:{self.mode}"
        if self.kind == "delay":
            return f"delay_{self.when}:{self.seconds}s"
        return f"{self.kind}_{self.when}"


class FaultPlan:
    """Ordered list of pending faults; the first matching one with uses left fires."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.faults: list[Fault] = []

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self.faults.append(fault)
        return fault

    def take(self, venue: str, method: str, path: str, kinds: tuple[str, ...]) -> Fault | None:
        with self._lock:
            for f in self.faults:
                if f.kind in kinds and f.remaining > 0 and f.matches(venue, method, path):
                    f.remaining -= 1
                    if f.remaining == 0:
                        self.faults.remove(f)
                    return f
        return None

    def clear(self) -> None:
        with self._lock:
            self.faults.clear()

    def pending(self) -> list[Fault]:
        with self._lock:
            return list(self.faults)
