"""The risk engine: every order passes :meth:`RiskEngine.check` before it is recorded for a venue.

Trading state is explicit (after NautilusTrader's ``risk/engine.pyx``):

* ``ACTIVE``   - all orders allowed within limits;
* ``REDUCING`` - the daily loss limit tripped the circuit breaker: only orders that reduce a
  position pass, until the next UTC day (Clock time) or a manual reset;
* ``HALTED``   - the kill switch is engaged: every new order is denied, open orders were canceled.
  It survives restarts and only an operator with ``risk.kill_switch.release`` can release it.

Every denial raises :class:`RiskRejection` with a stable ``rule`` name:
``kill_switch``, ``daily_loss_limit``, ``max_open_orders``, ``max_order_notional``,
``max_position_notional``, ``insufficient_balance``, ``no_price``.
Limits are notionals in the portfolio's NAV currency (converted at current marks).
"""

from __future__ import annotations

import enum
import json
from dataclasses import asdict, dataclass, fields, replace
from decimal import Decimal
from typing import Callable, Mapping

from appliance.engine.clock import Clock, utc_day
from appliance.model.errors import PreconditionError, RiskRejection, ValidationError
from appliance.model.instrument import Instrument
from appliance.model.money import ZERO, bps, dec_str, parse_decimal
from appliance.model.order import Order, OrderSide
from appliance.portfolio.service import Portfolio
from appliance.store.db import Database
from appliance.store.journal import Journal


class TradingState(str, enum.Enum):
    ACTIVE = "ACTIVE"
    REDUCING = "REDUCING"
    HALTED = "HALTED"


@dataclass(frozen=True, slots=True)
class RiskLimits:
    """Pre-trade limits, in the NAV currency. Zero means "no limit" for each field.

    Attributes:
        max_order_notional: largest single order value.
        max_position_notional: largest absolute position value per instrument, after the order.
        max_open_orders: most non-terminal orders at once (all strategies and operators).
        daily_loss_limit: loss from the UTC day's starting NAV that trips the circuit breaker.
    """

    max_order_notional: Decimal = ZERO
    max_position_notional: Decimal = ZERO
    max_open_orders: int = 0
    daily_loss_limit: Decimal = ZERO

    @classmethod
    def parse(cls, values: Mapping[str, object], base: "RiskLimits | None" = None, prefix: str = "") -> "RiskLimits":
        """Build limits from strings/ints, starting from ``base``. Unknown names and bad values
        raise ValidationError naming the field (``prefix`` + name); nothing is applied then."""
        current = base or cls()
        known = {f.name for f in fields(cls)}
        changes: dict[str, object] = {}
        for name, raw in values.items():
            if name not in known:
                raise ValidationError(prefix + name, f"unknown risk limit; known: {', '.join(sorted(known))}")
            if name == "max_open_orders":
                try:
                    number = int(str(raw))
                except ValueError:
                    raise ValidationError(prefix + name, f"{raw!r} is not a whole number") from None
                if number < 0:
                    raise ValidationError(prefix + name, "must be >= 0 (0 = no limit)")
                changes[name] = number
            else:
                changes[name] = parse_decimal(raw, prefix + name, non_negative=True)
        return replace(current, **changes)

    def as_strings(self) -> dict[str, str]:
        return {k: (dec_str(v) if isinstance(v, Decimal) else str(v)) for k, v in asdict(self).items()}


@dataclass(frozen=True, slots=True)
class RiskStatus:
    trading_state: TradingState
    kill_switch_engaged: bool
    kill_switch_reason: str
    circuit_breaker_tripped: bool
    circuit_breaker_reason: str
    day_start_nav: Decimal | None
    daily_pnl: Decimal | None
    nav_currency: str


class RiskEngine:
    """Pre-trade checks and trading state.

    Args:
        db, journal, clock: store and time (the Clock decides what "today" is, so replays roll days
            by market time).
        portfolio: balances, positions, marks and NAV conversion.
        default_limits: used on first boot only; afterwards the stored limits (set over the API) win.
        open_order_count: callable returning the number of non-terminal orders.
        on_halt: called (inside the transaction) when the kill switch is engaged, to cancel every
            open order.
    """

    def __init__(
        self,
        db: Database,
        journal: Journal,
        clock: Clock,
        portfolio: Portfolio,
        default_limits: RiskLimits,
        open_order_count: Callable[[], int],
        on_halt: Callable[[str], None],
    ) -> None:
        self.db = db
        self.journal = journal
        self.clock = clock
        self.portfolio = portfolio
        self.open_order_count = open_order_count
        self.on_halt = on_halt
        stored = dict(db.query("SELECT name, value FROM risk_limits"))
        self.limits = RiskLimits.parse(stored, default_limits) if stored else default_limits
        self._state: dict[str, object] = {k: json.loads(v) for k, v in db.query("SELECT name, value FROM risk_state")}

    # -- persisted state ------------------------------------------------------------------------
    def _set_state(self, **values: object) -> None:
        for name, value in values.items():
            self._state[name] = value
            self.db.execute(
                "INSERT INTO risk_state(name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value=excluded.value",
                (name, json.dumps(value)),
            )

    @property
    def kill_switch_engaged(self) -> bool:
        return bool(self._state.get("kill_switch_engaged", False))

    @property
    def breaker_tripped(self) -> bool:
        return bool(self._state.get("breaker_tripped", False))

    @property
    def trading_state(self) -> TradingState:
        if self.kill_switch_engaged:
            return TradingState.HALTED
        if self.breaker_tripped:
            return TradingState.REDUCING
        return TradingState.ACTIVE

    def status(self) -> RiskStatus:
        day_start = self._state.get("day_start_nav")
        day_start_nav = Decimal(day_start) if day_start is not None else None
        nav = self.portfolio.nav()
        daily = nav - day_start_nav if (nav is not None and day_start_nav is not None) else None
        return RiskStatus(
            self.trading_state,
            self.kill_switch_engaged,
            str(self._state.get("kill_switch_reason", "")),
            self.breaker_tripped,
            str(self._state.get("breaker_reason", "")),
            day_start_nav,
            daily,
            self.portfolio.nav_currency,
        )

    # -- operator actions (inside a transaction) ------------------------------------------------
    def update_limits(self, changes: Mapping[str, object], actor: str) -> RiskLimits:
        """Change some limits; validated as a whole before anything is written.

        Raises:
            ValidationError: an unknown name or a bad value (field named ``limits.<name>``).
        """
        new = RiskLimits.parse(changes, self.limits, prefix="limits.")
        for name, value in new.as_strings().items():
            self.db.execute(
                "INSERT INTO risk_limits(name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value=excluded.value",
                (name, value),
            )
        self.journal.append(self.clock.now_ns(), "RiskLimitsChanged", "risk", "limits",
                            {"actor": actor, "old": self.limits.as_strings(), "new": new.as_strings()})
        self.limits = new
        return new

    def engage_kill_switch(self, reason: str, actor: str) -> None:
        """Halt trading: deny every new order and cancel all open orders. Idempotent."""
        self._require_reason(reason)
        if not self.kill_switch_engaged:
            self._set_state(kill_switch_engaged=True, kill_switch_reason=reason, kill_switch_actor=actor)
            self.journal.append(self.clock.now_ns(), "KillSwitchEngaged", "risk", "kill_switch",
                                {"actor": actor, "reason": reason})
        self.on_halt(reason)

    def release_kill_switch(self, reason: str, actor: str) -> None:
        """Resume trading after a halt.

        Raises:
            PreconditionError: the kill switch is not engaged.
        """
        self._require_reason(reason)
        if not self.kill_switch_engaged:
            raise PreconditionError("kill switch is not engaged")
        self._set_state(kill_switch_engaged=False, kill_switch_reason="", kill_switch_actor="")
        self.journal.append(self.clock.now_ns(), "KillSwitchReleased", "risk", "kill_switch",
                            {"actor": actor, "reason": reason})

    def reset_circuit_breaker(self, reason: str, actor: str) -> None:
        """Clear a tripped daily-loss breaker; the day's loss is measured afresh from the current NAV.

        Raises:
            PreconditionError: the breaker is not tripped.
        """
        self._require_reason(reason)
        if not self.breaker_tripped:
            raise PreconditionError("circuit breaker is not tripped")
        nav = self.portfolio.nav()
        self._set_state(breaker_tripped=False, breaker_reason="",
                        day_start_nav=dec_str(nav) if nav is not None else self._state.get("day_start_nav"))
        self.journal.append(self.clock.now_ns(), "CircuitBreakerReset", "risk", "circuit_breaker",
                            {"actor": actor, "reason": reason, "day_start_nav": self._state.get("day_start_nav")})

    @staticmethod
    def _require_reason(reason: str) -> None:
        if not reason or not reason.strip():
            raise ValidationError("reason", "is required (it goes to the journal)")

    # -- market-driven -------------------------------------------------------------------------
    def on_valuation(self) -> Decimal | None:
        """Roll the UTC day and trip the breaker on a breach. Call after marks change (inside a transaction).

        Returns:
            The NAV used (None when it cannot be computed yet: some asset has no mark).
        """
        nav = self.portfolio.nav()
        if nav is None:
            return None
        now = self.clock.now_ns()
        day = utc_day(now)
        if self._state.get("day") != day:
            self._set_state(day=day, day_start_nav=dec_str(nav))
            self.journal.append(now, "TradingDayStarted", "risk", "day", {"day": day, "day_start_nav": dec_str(nav)})
            if self.breaker_tripped:
                self._set_state(breaker_tripped=False, breaker_reason="")
                self.journal.append(now, "CircuitBreakerReset", "risk", "circuit_breaker",
                                    {"actor": "system", "reason": "new UTC day", "day_start_nav": dec_str(nav)})
            return nav
        limit = self.limits.daily_loss_limit
        if limit and not self.breaker_tripped:
            loss = Decimal(str(self._state["day_start_nav"])) - nav
            if loss > limit:
                reason = f"daily loss {dec_str(loss)} {self.portfolio.nav_currency} exceeds limit {dec_str(limit)}"
                self._set_state(breaker_tripped=True, breaker_reason=reason)
                self.journal.append(now, "CircuitBreakerTripped", "risk", "circuit_breaker",
                                    {"reason": reason, "nav": dec_str(nav)})
        return nav

    # -- the pre-trade check ---------------------------------------------------------------------
    def check(self, order: Order, instrument: Instrument, reserved_quote: Decimal = ZERO) -> None:
        """Deny ``order`` with a :class:`RiskRejection` if any rule forbids it.

        Args:
            order: the candidate (PENDING_SUBMIT, rounded).
            instrument: its instrument.
            reserved_quote: unused placeholder for venue-specific reservations.

        Raises:
            RiskRejection: with the rule's name and the numbers that broke it.
        """
        if self.kill_switch_engaged:
            raise RiskRejection("kill_switch", f"kill switch engaged: {self._state.get('kill_switch_reason', '')}")
        position = self.portfolio.position(order.instrument)
        signed = order.qty * order.side.sign
        after = position.qty + signed
        reduces = abs(after) < abs(position.qty) and (after == 0 or (after > 0) == (position.qty > 0))
        if self.breaker_tripped and not reduces:
            raise RiskRejection("daily_loss_limit", f"circuit breaker tripped ({self._state.get('breaker_reason')}); only reducing orders pass")
        if self.limits.max_open_orders and self.open_order_count() >= self.limits.max_open_orders:
            raise RiskRejection("max_open_orders", f"{self.open_order_count()} open orders, limit {self.limits.max_open_orders}")
        price = order.limit_price if order.limit_price is not None else self.portfolio.mark(order.instrument)
        if price is None:
            raise RiskRejection("no_price", f"no mark price for {order.instrument} yet; cannot value the order")
        fee_rate = bps(instrument.taker_fee_bps if order.limit_price is None else max(instrument.maker_fee_bps, instrument.taker_fee_bps))
        notional_quote = order.qty * price
        if self.limits.max_order_notional or self.limits.max_position_notional:
            notional = self.portfolio.value_in_nav(notional_quote, instrument.quote)
            position_value = self.portfolio.value_in_nav(abs(after) * price, instrument.quote)
            if notional is None or position_value is None:
                raise RiskRejection("no_price", f"cannot value {instrument.quote} in {self.portfolio.nav_currency}")
            if self.limits.max_order_notional and notional > self.limits.max_order_notional:
                raise RiskRejection("max_order_notional",
                                    f"order notional {_fmt(notional)} > limit {dec_str(self.limits.max_order_notional)} {self.portfolio.nav_currency}")
            if self.limits.max_position_notional and not reduces and position_value > self.limits.max_position_notional:
                raise RiskRejection("max_position_notional",
                                    f"position notional after order {_fmt(position_value)} > limit {dec_str(self.limits.max_position_notional)} {self.portfolio.nav_currency}")
        if order.side is OrderSide.BUY:
            need = notional_quote * (1 + fee_rate)
            free = self.portfolio.free_balance(instrument.quote, order.instrument.venue)
            if need > free:
                raise RiskRejection("insufficient_balance", f"needs {_fmt(need)} {instrument.quote}, free {_fmt(free)}")
        else:
            free = self.portfolio.free_balance(instrument.base, order.instrument.venue)
            if order.qty > free:
                raise RiskRejection("insufficient_balance", f"sells {dec_str(order.qty)} {instrument.base}, free {_fmt(free)} (spot: no shorting)")


def _fmt(value: Decimal) -> str:
    return dec_str(value.quantize(Decimal("1e-12")) if value.as_tuple().exponent < -12 else value)
