"""The engine: one asyncio task owns the state and handles every message in order.

Market data, venue reports, timers and operator commands all become messages on one queue.
Each message is handled inside ONE database transaction (a unit of work): either all of its
effects and their journal events commit, or none do. Side effects outside the database
(sending an order to a venue) are queued with :meth:`Engine.after_commit` and run only once the
transaction has committed: the order is on disk as PENDING_SUBMIT before it can reach a venue,
which is what makes crash recovery by client order id possible.

Failure policy (crash-only): a :class:`LyraError` (bad input, a forbidden state) is raised by
services *before* they change anything, so rolling back its transaction is all it takes. Any
other exception may have left a service's in-memory state ahead of the rolled-back database;
the engine then stops handling messages and calls ``on_fatal`` so that the process exits and
start-up recovery rebuilds everything from the database, which is always consistent.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from appliance.model.errors import LyraError
from appliance.store.db import Database
from appliance.store.journal import Journal

log = logging.getLogger("lyra.engine")

Handler = Callable[[Any], Any]


@dataclass(slots=True)
class _Call:
    fn: Callable[..., Any]
    args: tuple
    kwargs: dict


class Engine:
    """The single writer.

    Args:
        db: the database; only this engine writes to it while running.
        journal: the journal bound to ``db``.

    Messages are either registered types (``register(MsgType, handler)``) posted with
    :meth:`post` / :meth:`submit`, or plain calls made with :meth:`call` (operator commands from
    the gRPC edge). Handlers run synchronously on the loop; they must not await.
    """

    def __init__(self, db: Database, journal: Journal) -> None:
        self.db = db
        self.journal = journal
        self._handlers: dict[type, Handler] = {}
        self._queue: asyncio.Queue[tuple[Any, asyncio.Future | None]] | None = None
        self._outbox: list[Callable[[], None]] = []
        self._task: asyncio.Task | None = None
        self._in_message = False
        self.messages_handled = 0
        self.fatal: BaseException | None = None
        self.on_fatal: Callable[[BaseException], None] | None = None

    # -- wiring -----------------------------------------------------------------------------
    def register(self, message_type: type, handler: Handler) -> None:
        """Route messages of ``message_type`` to ``handler(message)``.

        Raises:
            ValueError: a handler for that type exists already.
        """
        if message_type in self._handlers:
            raise ValueError(f"a handler for {message_type.__name__} is registered already")
        self._handlers[message_type] = handler

    def after_commit(self, action: Callable[[], None]) -> None:
        """Run ``action`` after the current message's transaction commits (dropped on rollback).

        Raises:
            RuntimeError: called outside message handling (there is no transaction to wait for).
        """
        if not self._in_message:
            raise RuntimeError("after_commit is only valid while the engine handles a message")
        self._outbox.append(action)

    # -- input --------------------------------------------------------------------------------
    def _q(self) -> asyncio.Queue:
        if self._queue is None:
            self._queue = asyncio.Queue()
        return self._queue

    def post(self, message: Any) -> None:
        """Enqueue a message without waiting for it (venue reports, timers). Thread-unsafe by design:
        call it from the engine's loop (use ``loop.call_soon_threadsafe`` from other threads)."""
        self._q().put_nowait((message, None))

    def submit(self, message: Any) -> Awaitable[Any]:
        """Enqueue a message; the returned future resolves with the handler's result after commit."""
        future = asyncio.get_running_loop().create_future()
        self._q().put_nowait((message, future))
        return future

    async def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)`` as a message (in order, in its own transaction) and return its result.

        Raises:
            Whatever ``fn`` raised; its transaction was rolled back and nothing it did remains.
        """
        return await self.submit(_Call(fn, args, kwargs))

    def execute_now(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``fn`` as a message immediately, outside the loop (start-up recovery, tests).

        Raises:
            Whatever ``fn`` raised, after rolling its transaction back.
        """
        loop_future: list[BaseException] = []

        class _Sink:
            def done(self) -> bool:
                return bool(loop_future)

            def set_exception(self, exc: BaseException) -> None:
                loop_future.append(exc)

            def set_result(self, result: Any) -> None:
                pass

            def cancelled(self) -> bool:
                return False

        result = self.handle(_Call(fn, args, kwargs), _Sink())  # type: ignore[arg-type]
        if loop_future:
            raise loop_future[0]
        return result

    # -- the loop -----------------------------------------------------------------------------
    def start(self) -> asyncio.Task:
        """Start handling messages on the running loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="lyra-engine")
        return self._task

    async def stop(self) -> None:
        """Finish the message being handled, then stop. Queued messages stay unhandled."""
        await cancel_and_wait(self._task)
        self._task = None

    async def _run(self) -> None:
        queue = self._q()
        while self.fatal is None:
            message, future = await queue.get()
            if future is not None and future.cancelled():
                continue
            self.handle(message, future)

    def handle(self, message: Any, future: asyncio.Future | None = None) -> Any:
        """Handle one message now, in one transaction; returns the handler's result.

        Used by the loop, and directly by tests and by start-up recovery (before the loop runs).
        """
        if isinstance(message, _Call):
            handler: Handler = lambda m: m.fn(*m.args, **m.kwargs)  # noqa: E731
        else:
            found = self._handlers.get(type(message))
            if found is None:
                error = TypeError(f"no handler for {type(message).__name__}")
                if future is not None:
                    future.set_exception(error)
                    return None
                raise error
            handler = found
        self._in_message = True
        self._outbox = []
        try:
            with self.db.transaction():
                result = handler(message)
        except BaseException as exc:  # noqa: BLE001 - every failure rolls back and is reported
            self._in_message = False
            self.journal.discard_uncommitted()
            self._outbox = []
            if not isinstance(exc, Exception):
                raise
            if not isinstance(exc, LyraError):
                self._fail(message, exc)
            if future is not None and not future.done():
                future.set_exception(exc)
            elif isinstance(exc, LyraError):
                log.warning("message %s refused: %s", type(message).__name__, exc)
            return None
        self._in_message = False
        self.messages_handled += 1
        self.journal.flush_committed()
        outbox, self._outbox = self._outbox, []
        for action in outbox:
            try:
                action()
            except Exception:  # a failed send must not lose the result already committed
                log.exception("post-commit action failed")
        if future is not None and not future.done():
            future.set_result(result)
        return result

    def _fail(self, message: Any, exc: BaseException) -> None:
        log.critical("unexpected failure handling %s; rolled back; stopping so that recovery restarts from the "
                     "database", type(message).__name__, exc_info=exc)
        self.fatal = exc
        if self._task is not None:
            self._task.cancel()
        if self.on_fatal is not None:
            self.on_fatal(exc)

    def drain(self) -> int:
        """Handle every queued message now (tests and shutdown). Returns how many were handled."""
        queue = self._q()
        count = 0
        while not queue.empty():
            message, future = queue.get_nowait()
            self.handle(message, future)
            count += 1
        return count


async def cancel_and_wait(task: asyncio.Task | None) -> None:
    """Cancel ``task`` (if any) and wait until it has finished."""
    if task is None or task.done():
        return
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
