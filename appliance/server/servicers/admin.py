"""AdminService."""

from __future__ import annotations

from google.protobuf.duration_pb2 import Duration

from appliance.marketdata.controller import ReplayProgress
from appliance.server import convert as cv
from lyra.v1 import admin_pb2, admin_pb2_grpc

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
            return self.app.journal.last_seq(), self.app.replay.progress(), self.app.clock.now_ns()
        seq, progress, now = await self.app.engine.call(status)
        uptime = (self.app.wall_clock.now_ns() - self.started_wall_ns) / 1e9
        return admin_pb2.GetStatusResponse(state=admin_pb2.SERVER_STATE_RUNNING, uptime_seconds=uptime, mode="replay",
                                           clock_time=cv.ts(now), journal_seq=seq, replay=self._progress(progress),
                                           version=self.app.version)

    async def GetReplayProgress(self, request, context):
        return self._progress(self.app.replay.progress())

    async def StartReplay(self, request, context):
        return self._progress(await self.app.engine.call(self.app.start_replay))

    async def PauseReplay(self, request, context):
        return self._progress(await self.app.engine.call(self.app.pause_replay))
