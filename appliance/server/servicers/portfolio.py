"""PortfolioService."""

from __future__ import annotations

from appliance.model.errors import ValidationError
from appliance.model.instrument import InstrumentId
from appliance.model.money import ZERO, dec_str
from appliance.server import convert as cv
from lyra.v1 import portfolio_pb2, portfolio_pb2_grpc


class PortfolioServicer(portfolio_pb2_grpc.PortfolioServiceServicer):
    def __init__(self, app) -> None:
        self.app = app
        self.portfolio = app.portfolio

    def _balances(self, venue: str):
        p = self.portfolio
        return [
            portfolio_pb2.Balance(asset=a, total=dec_str(t), reserved=dec_str(p.reserved(a, v)),
                                  free=dec_str(p.free_balance(a, v)), venue=v)
            for (v, a), t in sorted(p.balances.items())
            if not venue or v == venue
        ]

    async def ListBalances(self, request, context):
        if request.venue and request.venue not in self.app.venues:
            raise ValidationError("venue", f"unknown venue {request.venue!r}; known: {', '.join(sorted(self.app.venues))}")
        return portfolio_pb2.ListBalancesResponse(balances=await self.app.engine.call(self._balances, request.venue))

    def _positions(self, instrument: str, include_flat: bool):
        out = []
        for iid, pos in sorted(self.portfolio.positions.items(), key=lambda kv: str(kv[0])):
            if instrument and str(iid) != instrument:
                continue
            if not pos.qty and not include_flat:
                continue
            mark = self.portfolio.mark(iid)
            out.append(portfolio_pb2.Position(
                instrument=str(iid), qty=dec_str(pos.qty), avg_price=dec_str(pos.avg_price),
                mark_price=cv.opt_dec(mark), unrealized_pnl=cv.opt_dec(pos.unrealized_pnl(mark) if mark is not None else None),
                realized_pnl=dec_str(pos.realized_pnl), fees=dec_str(pos.fees),
                notional=cv.opt_dec(pos.notional(mark) if mark is not None else None), currency=pos.quote,
            ))
        return out

    async def ListPositions(self, request, context):
        instrument = ""
        if request.instrument:
            instrument = str(InstrumentId.parse(request.instrument, self.app.config.paper.venue))
        return portfolio_pb2.ListPositionsResponse(
            positions=await self.app.engine.call(self._positions, instrument, request.include_flat))

    def _pnl(self):
        p = self.portfolio
        summary = p.pnl()
        per = []
        for iid, pos in sorted(p.positions.items(), key=lambda kv: str(kv[0])):
            mark = p.mark(iid)
            unrealized = pos.unrealized_pnl(mark) if (mark is not None and pos.qty) else ZERO
            per.append(portfolio_pb2.InstrumentPnl(
                instrument=str(iid), realized_pnl=dec_str(pos.realized_pnl), unrealized_pnl=dec_str(unrealized),
                fees=dec_str(pos.fees), net_pnl=dec_str(pos.realized_pnl + unrealized - pos.fees),
            ))
        net = summary.realized_pnl + summary.unrealized_pnl - summary.fees
        return portfolio_pb2.Pnl(
            nav_currency=summary.nav_currency, nav=cv.opt_dec(summary.nav), starting_nav=cv.opt_dec(summary.starting_nav),
            realized_pnl=dec_str(summary.realized_pnl), unrealized_pnl=dec_str(summary.unrealized_pnl),
            fees=dec_str(summary.fees), instruments=per, as_of=cv.ts(self.app.clock.now_ns()), net_pnl=dec_str(net),
        )

    async def GetPnl(self, request, context):
        return await self.app.engine.call(self._pnl)
