"""AdminService."""

from __future__ import annotations

from google.protobuf.duration_pb2 import Duration

from appliance.marketdata.controller import ReplayProgress
from appliance.server import convert as cv
from lyra.v1 import admin_pb2, admin_pb2_grpc

_HEALTH = {"CONNECTED": admin_pb2.VENUE_HEALTH_CONNECTED, "DEGRADED": admin_pb2.VENUE_HEALTH_DEGRADED,
           "DOWN": admin_pb2.VENUE_HEALTH_DOWN}
_REPLAY = {"WAITING": admin_pb2.REPLAY_STATE_WAITING, "RUNNING": admin_pb2.REPLAY_STATE_RUNNING,
           "PAUSED": admin_pb2.REPLAY_STATE_PAUSED, "FINISHED": admin_pb2.REPLAY_STATE_FINISHED}


class AdminServicer(admin_pb2_grpc.AdminServiceServicer):
    def __init__(self, app, started_wall_ns: int) -> None:
        self.app = app
        self.started_wall_ns = started_wall_ns

    def _progress(self, p: ReplayProgress) -> admin_pb2.ReplayProgress:
        lag = Duration()
        lag.FromNanoseconds(int(p.lag_s * 1e9))
        return admin_pb2.ReplayProgress(state=_REPLAY[p.state.value], slices_done=p.slices_done, slices_total=p.slices_total,
                                        percent=round(100.0 * p.ratio, 3), current_time=cv.ts(p.current_ns), lag=lag)

    async def GetVersion(self, request, context):
        return admin_pb2.GetVersionResponse(version=self.app.version, schema_version=self.app.db.schema_version())

    async def GetStatus(self, request, context):
        def status():
            progress = self.app.replay.progress() if self.app.replay is not None else None
            return self.app.journal.last_seq(), progress, self.app.clock.now_ns()
        seq, progress, now = await self.app.engine.call(status)
        uptime = (self.app.wall_clock.now_ns() - self.started_wall_ns) / 1e9
        response = admin_pb2.GetStatusResponse(state=admin_pb2.SERVER_STATE_RUNNING, uptime_seconds=uptime,
                                               mode="replay" if progress is not None else "live",
                                               clock_time=cv.ts(now), journal_seq=seq, version=self.app.version)
        if progress is not None:
            response.replay.CopyFrom(self._progress(progress))
        return response

    async def GetReplayProgress(self, request, context):
        return self._progress(self.app._require_replay().progress())

    async def StartReplay(self, request, context):
        return self._progress(await self.app.engine.call(self.app.start_replay))

    def _venues(self) -> list[admin_pb2.VenueStatus]:
        out = []
        for name, venue in sorted(self.app.venues.items()):
            health, reason = self.app.venue_monitor.health.get(name, (venue.health(), ""))
            instruments = sum(1 for i in self.app.instruments if i.venue == name)
            open_orders = sum(1 for o in self.app.oms.open_orders.values() if o.instrument.venue == name)
            exchange = getattr(venue, "exchange_id", "")
            status = admin_pb2.VenueStatus(
                name=name, kind="ccxt" if exchange else "paper", exchange=exchange,
                health=_HEALTH[health.value], reason=reason, instruments=instruments, open_orders=open_orders,
            )
            details = getattr(venue, "status", None)
            if callable(details):  # live venues: last success/error and request budget use
                info = details()
                status.last_error = str(info.get("last_error") or "")
                status.requests_last_minute = int(info.get("requests_last_minute") or 0)
                status.request_budget_per_minute = int((info.get("budget") or {}).get("budget_per_minute") or 0)
                if info.get("last_success_ns"):
                    status.last_ok_time.CopyFrom(cv.ts(int(info["last_success_ns"])))
            out.append(status)
        return out

    async def ListVenues(self, request, context):
        return admin_pb2.ListVenuesResponse(venues=await self.app.engine.call(self._venues))

    async def PauseReplay(self, request, context):
        return self._progress(await self.app.engine.call(self.app.pause_replay))
