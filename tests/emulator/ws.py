"""WebSocket plumbing shared by the dialects: sessions, subscriptions, pushes and drops.

A dialect that serves websockets owns a :class:`WsHub` (``Dialect.ws``) and routes its upgrade
path to :meth:`WsHub.serve` with a callback that answers each text frame (the exchange's
request/response protocol). Events are pushed with :meth:`WsHub.publish` from any thread
(engine listeners run in whatever thread moved the engine); each session has one sender task, so
responses and events leave in the order they were produced.

Faults (through :class:`~tests.emulator.server.ExchangeEmulator`): :meth:`WsHub.drop_all` aborts
every open connection's TCP transport without a close frame (what a network drop looks like to
the client); refusing upgrades is an ordinary status fault on the upgrade path.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from aiohttp import WSMsgType, web

from .faults import RequestRecord

#: ``on_text(session, text) -> reply dict | None``: the dialect's protocol for one client frame.
TextHandler = Callable[["WsSession", str], "dict[str, Any] | None"]


@dataclass
class WsSubscription:
    """One account subscription on one connection (Binance: ``userDataStream.subscribe.signature``).

    ``session`` is the :attr:`WsSession.id`, ``subscription_id`` the id the exchange returned on
    that connection, ``at`` ``time.monotonic()`` when it was accepted; ``active`` turns False on
    unsubscribe or when the connection ends.
    """

    session: int
    subscription_id: int
    api_key: str
    at: float
    active: bool = True


@dataclass
class WsSession:
    """One websocket connection as the emulator saw it.

    ``close_reason``: ``None`` while open, then ``"client"`` (the client closed or went away),
    ``"dropped"`` (:meth:`WsHub.drop_all`) or ``"server_stopped"`` (the emulator stopped).
    ``record`` is the upgrade request in the emulator's request log.
    """

    id: int
    venue: str
    path: str
    opened_at: float
    record: RequestRecord | None
    subscriptions: list[WsSubscription] = field(default_factory=list)
    closed_at: float | None = None
    close_reason: str | None = None
    ws: web.WebSocketResponse | None = field(default=None, repr=False)
    request: web.Request | None = field(default=None, repr=False)
    queue: asyncio.Queue | None = field(default=None, repr=False)
    next_subscription_id: int = 0

    @property
    def is_open(self) -> bool:
        return self.close_reason is None

    def active_subscription(self, api_key: str) -> WsSubscription | None:
        return next((s for s in self.subscriptions if s.active and s.api_key == api_key), None)


class WsHub:
    """The websocket connections of one dialect (thread-safe)."""

    def __init__(self, venue: str) -> None:
        self.venue = venue
        self.sessions: list[WsSession] = []
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None

    # ------------------------------------------------------------------ serving
    async def serve(self, request: web.Request, on_text: TextHandler,
                    record: RequestRecord | None = None) -> web.WebSocketResponse:
        """Upgrade ``request`` and run the connection until either side ends it."""
        self._loop = asyncio.get_running_loop()
        # autoping: Binance pings every 20 s and ccxt pings every 180 s; pongs are all either needs
        ws = web.WebSocketResponse(autoping=True, timeout=1.0)
        await ws.prepare(request)
        if record is not None:
            record.status = 101
        session = WsSession(next(self._ids), self.venue, request.path, time.monotonic(), record,
                            ws=ws, request=request, queue=asyncio.Queue())
        with self._lock:
            self.sessions.append(session)
        sender = asyncio.create_task(self._send_loop(session))
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    reply = on_text(session, msg.data)
                    if reply is not None:
                        self._enqueue(session, reply)
                elif msg.type == WSMsgType.ERROR:
                    break
        finally:
            self._ended(session, "client")
            sender.cancel()
        return ws

    async def _send_loop(self, session: WsSession) -> None:
        assert session.queue is not None and session.ws is not None
        while True:
            text = await session.queue.get()
            if session.ws.closed:
                return
            try:
                await session.ws.send_str(text)
            except (ConnectionError, RuntimeError):
                return

    def _enqueue(self, session: WsSession, payload: dict[str, Any]) -> None:
        text = json.dumps(payload, separators=(",", ":"))
        loop, queue = self._loop, session.queue
        if loop is None or queue is None or loop.is_closed():
            return
        loop.call_soon_threadsafe(queue.put_nowait, text)

    def _ended(self, session: WsSession, reason: str) -> None:
        with self._lock:
            if session.close_reason is None:
                session.close_reason = reason
                session.closed_at = time.monotonic()
            for sub in session.subscriptions:
                sub.active = False

    # ------------------------------------------------------------------ subscriptions / pushes
    def subscribe(self, session: WsSession, api_key: str) -> WsSubscription:
        """Record an accepted account subscription on ``session`` (ids count from 0 per connection)."""
        with self._lock:
            sub = WsSubscription(session.id, session.next_subscription_id, api_key, time.monotonic())
            session.next_subscription_id += 1
            session.subscriptions.append(sub)
            return sub

    def unsubscribe(self, session: WsSession, subscription_id: int | None = None) -> list[WsSubscription]:
        """End one (or every) active subscription of ``session``; returns those ended."""
        with self._lock:
            ended = [s for s in session.subscriptions
                     if s.active and (subscription_id is None or s.subscription_id == subscription_id)]
            for s in ended:
                s.active = False
            return ended

    def has_subscribers(self, api_key: str) -> bool:
        with self._lock:
            return any(s.active and s.api_key == api_key for sess in self.sessions if sess.is_open
                       for s in sess.subscriptions)

    def publish(self, api_key: str, make: Callable[[WsSubscription], dict[str, Any]]) -> int:
        """Push ``make(subscription)`` on every open connection subscribed to ``api_key``; returns
        how many were pushed. Safe from any thread."""
        with self._lock:
            targets = [(sess, s) for sess in self.sessions if sess.is_open
                       for s in sess.subscriptions if s.active and s.api_key == api_key]
        for sess, sub in targets:
            self._enqueue(sess, make(sub))
        return len(targets)

    # ------------------------------------------------------------------ observation
    def open_sessions(self) -> list[WsSession]:
        with self._lock:
            return [s for s in self.sessions if s.is_open]

    def subscriptions(self, api_key: str | None = None, *, active: bool | None = None) -> list[WsSubscription]:
        """Every subscription ever accepted (oldest first), optionally of one account / state."""
        with self._lock:
            return [s for sess in self.sessions for s in sess.subscriptions
                    if (api_key is None or s.api_key == api_key) and (active is None or s.active == active)]

    # ------------------------------------------------------------------ faults / shutdown
    def drop_all(self) -> int:
        """Abort every open connection's transport (no close frame); returns how many. Any thread."""
        return self._on_loop(self._drop_now)

    def _drop_now(self) -> int:
        dropped = 0
        for session in self.open_sessions():
            self._ended(session, "dropped")
            if session.record is not None:
                session.record.fault = "ws_drop"
            transport = session.request.transport if session.request is not None else None
            if transport is not None:
                transport.abort()
            dropped += 1
        return dropped

    async def close_all(self) -> None:
        """Close every open connection (emulator shutdown): a close frame, then the transport."""
        for session in self.open_sessions():
            self._ended(session, "server_stopped")
            ws = session.ws
            if ws is not None and not ws.closed:
                try:
                    await asyncio.wait_for(ws.close(code=1001, message=b"server stopping"), 0.5)
                except (asyncio.TimeoutError, ConnectionError, RuntimeError):
                    pass
            transport = session.request.transport if session.request is not None else None
            if transport is not None:
                transport.abort()

    def _on_loop(self, fn: Callable[[], int]) -> int:
        loop = self._loop
        if loop is None:
            return 0
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            return fn()
        done = threading.Event()
        out: list[int] = []

        def run() -> None:
            try:
                out.append(fn())
            finally:
                done.set()

        loop.call_soon_threadsafe(run)
        done.wait(5.0)
        return out[0] if out else 0


__all__ = ["WsHub", "WsSession", "WsSubscription"]
