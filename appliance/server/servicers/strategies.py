"""StrategyService."""

from __future__ import annotations

import json

from appliance.model.errors import ValidationError
from appliance.server import convert as cv
from appliance.strategies.manager import StrategyRecord
from appliance.strategies.registry import describe_params
from lyra.v1 import strategies_pb2, strategies_pb2_grpc

_STATUS = {s: strategies_pb2.StrategyStatus.Value(f"STRATEGY_STATUS_{s}") for s in ("CREATED", "RUNNING", "STOPPED", "ERROR")}


def _param_text(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def strategy_to_pb(r: StrategyRecord) -> strategies_pb2.Strategy:
    return strategies_pb2.Strategy(
        strategy_id=r.strategy_id, type=r.type, instruments=[str(i) for i in r.instruments],
        params={k: _param_text(v) for k, v in r.params.items()}, status=_STATUS[r.status.value],
        last_error=r.last_error, create_time=cv.ts(r.created_ns), update_time=cv.ts(r.updated_ns),
    )


class StrategyServicer(strategies_pb2_grpc.StrategyServiceServicer):
    def __init__(self, app) -> None:
        self.app = app
        self.manager = app.strategies

    async def ListStrategyTypes(self, request, context):
        types = []
        for name, cls in sorted(self.manager.types.items()):
            params = [strategies_pb2.StrategyParameter(name=n, type=t, default_value=d, description=desc)
                      for n, t, d, desc in describe_params(cls)]
            types.append(strategies_pb2.StrategyType(name=name, description=cls.description, parameters=params))
        return strategies_pb2.ListStrategyTypesResponse(types=types)

    async def CreateStrategy(self, request, context):
        if not request.type:
            raise ValidationError("type", "is required")
        record = await self.app.engine.call(self.manager.create, request.type, list(request.instruments),
                                            dict(request.params), request.strategy_id)
        return strategy_to_pb(record)

    async def StartStrategy(self, request, context):
        return strategy_to_pb(await self.app.engine.call(self.manager.start, _required_id(request)))

    async def StopStrategy(self, request, context):
        return strategy_to_pb(await self.app.engine.call(self.manager.stop, _required_id(request)))

    async def GetStrategy(self, request, context):
        return strategy_to_pb(await self.app.engine.call(self.manager.get, _required_id(request)))

    async def ListStrategies(self, request, context):
        after = cv.decode_page_token("strategies", request.page_token)
        size = cv.page_size(request.page_size)
        records = await self.app.engine.call(self.manager.list)
        page = records[after: after + size]
        more = after + size < len(records)
        return strategies_pb2.ListStrategiesResponse(
            strategies=[strategy_to_pb(r) for r in page],
            next_page_token=cv.encode_page_token("strategies", after + size) if more else "")


def _required_id(request) -> str:
    if not request.strategy_id:
        raise ValidationError("strategy_id", "is required")
    return request.strategy_id
