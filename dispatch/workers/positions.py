"""Workers' last positions, written behind: the live index takes every accepted ping at once,
the database the newest per worker every few seconds in one statement (so the index can be
rebuilt after Redis loses everything, and the database is not written per ping)."""

from __future__ import annotations

import asyncio

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dispatch.infra.logs import log
from geo.live import Fix


class PositionSink:
    """Last accepted positions, written to the database in one statement every few seconds."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], interval_s: float = 2.0) -> None:
        self.sessions = sessions
        self.interval_s = interval_s
        self._pending: dict[int, Fix] = {}

    def record(self, worker_id: int, fix: Fix) -> None:
        current = self._pending.get(worker_id)
        if current is None or fix.recorded_at > current.recorded_at:
            self._pending[worker_id] = fix

    async def flush(self) -> int:
        if not self._pending:
            return 0
        batch, self._pending = self._pending, {}
        ids = list(batch)
        async with self.sessions.begin() as session:
            await session.execute(
                text(
                    "UPDATE workers SET location = ST_SetSRID(ST_MakePoint(u.lng, u.lat), 4326)"
                    "::geography, location_at = to_timestamp(u.ts) "
                    "FROM unnest(CAST(:ids AS bigint[]), CAST(:lats AS float8[]), "
                    "CAST(:lngs AS float8[]), CAST(:tss AS float8[])) AS u(id, lat, lng, ts) "
                    "WHERE workers.user_id = u.id "
                    "AND (workers.location_at IS NULL OR workers.location_at < to_timestamp(u.ts))"
                ),
                {
                    "ids": ids,
                    "lats": [batch[i].lat for i in ids],
                    "lngs": [batch[i].lng for i in ids],
                    "tss": [batch[i].recorded_at for i in ids],
                },
            )
        return len(ids)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.flush()
            except Exception as exc:
                log.warning("position_flush_failed", error=repr(exc))
