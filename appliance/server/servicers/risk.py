"""RiskService."""

from __future__ import annotations

from appliance.model.errors import ValidationError
from appliance.risk.engine import RiskLimits, RiskStatus
from appliance.server import convert as cv
from appliance.server.interceptors import current_principal_or_none
from lyra.v1 import risk_pb2, risk_pb2_grpc

_STATE = {"ACTIVE": risk_pb2.TRADING_STATE_ACTIVE, "REDUCING": risk_pb2.TRADING_STATE_REDUCING, "HALTED": risk_pb2.TRADING_STATE_HALTED}
_LIMIT_FIELDS = ("max_order_notional", "max_position_notional", "max_open_orders", "daily_loss_limit")


def _actor() -> str:
    principal = current_principal_or_none()
    return principal.username if principal is not None else "system"


class RiskServicer(risk_pb2_grpc.RiskServiceServicer):
    def __init__(self, app) -> None:
        self.app = app
        self.risk = app.risk

    def _limits_pb(self, limits: RiskLimits) -> risk_pb2.RiskLimits:
        text = limits.as_strings()
        return risk_pb2.RiskLimits(max_order_notional=text["max_order_notional"],
                                   max_position_notional=text["max_position_notional"],
                                   max_open_orders=limits.max_open_orders, daily_loss_limit=text["daily_loss_limit"],
                                   currency=self.app.portfolio.nav_currency)

    def _status_pb(self, status: RiskStatus) -> risk_pb2.RiskStatus:
        return risk_pb2.RiskStatus(
            trading_state=_STATE[status.trading_state.value], kill_switch_engaged=status.kill_switch_engaged,
            kill_switch_reason=status.kill_switch_reason, circuit_breaker_tripped=status.circuit_breaker_tripped,
            circuit_breaker_reason=status.circuit_breaker_reason, daily_pnl=cv.opt_dec(status.daily_pnl),
            day_start_nav=cv.opt_dec(status.day_start_nav), currency=status.nav_currency,
            update_time=cv.ts(self.app.clock.now_ns()),
        )

    async def GetRiskLimits(self, request, context):
        return self._limits_pb(await self.app.engine.call(lambda: self.risk.limits))

    async def UpdateRiskLimits(self, request, context):
        paths = list(request.update_mask.paths)
        if not paths:
            raise ValidationError("update_mask", "name the limits to change, e.g. paths: [\"max_open_orders\"]")
        changes = {}
        for path in paths:
            if path not in _LIMIT_FIELDS:
                raise ValidationError("update_mask", f"unknown limit {path!r}; known: {', '.join(_LIMIT_FIELDS)}")
            changes[path] = getattr(request.limits, path)
        limits = await self.app.engine.call(self.risk.update_limits, changes, _actor())
        return self._limits_pb(limits)

    async def GetRiskStatus(self, request, context):
        return self._status_pb(await self.app.engine.call(self.risk.status))

    async def _act(self, action, reason: str) -> risk_pb2.RiskStatus:
        actor = _actor()

        def run() -> RiskStatus:
            action(reason, actor)
            return self.risk.status()

        return self._status_pb(await self.app.engine.call(run))

    async def EngageKillSwitch(self, request, context):
        return await self._act(self.risk.engage_kill_switch, request.reason)

    async def ReleaseKillSwitch(self, request, context):
        return await self._act(self.risk.release_kill_switch, request.reason)

    async def ResetCircuitBreaker(self, request, context):
        return await self._act(self.risk.reset_circuit_breaker, request.reason)
