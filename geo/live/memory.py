"""An in-process live index that checks every worker: the ground truth the Redis index is tested
and benchmarked against, and a backend for single-process tools."""

from __future__ import annotations

import time
from collections.abc import Sequence

from geo.distance import haversine_m
from geo.live.base import (
    MAX_SPEED_MPS,
    SPEED_MIN_DT_S,
    SPEED_SLACK_M,
    Fix,
    LiveIndex,
    MoveResult,
    Nearby,
    Position,
    ProfileChanged,
    WorkerStatus,
)


class MemoryLiveIndex(LiveIndex):
    def __init__(self) -> None:
        self._status: dict[tuple[int, int], WorkerStatus] = {}
        self._pos: dict[tuple[int, int], tuple[Fix, bool]] = {}
        self._built: set[int] = set()
        self._leased: set[int] = set()
        self._stamps: dict[tuple[int, int], int] = {}
        self._clock = 0

    async def stamp(self) -> int:
        self._clock = max(self._clock + 1, time.time_ns() // 1000)
        return self._clock

    def _older(self, key: tuple[int, int], as_of: int | None) -> bool:
        if as_of is None:
            return False
        if self._stamps.get(key, -1) > as_of:
            return True
        self._stamps[key] = as_of
        return False

    async def set_status(
        self, community_id: int, worker_id: int, status: WorkerStatus, *, as_of: int | None = None
    ) -> bool:
        if self._older((community_id, worker_id), as_of):
            return False
        self._status[community_id, worker_id] = status
        return True

    async def move(
        self,
        community_id: int,
        worker_id: int,
        fixes: Sequence[Fix],
        *,
        in_area: Sequence[bool],
        max_speed_mps: float = MAX_SPEED_MPS,
        expect_version: int | None = None,
    ) -> list[MoveResult]:
        out = []
        key = (community_id, worker_id)
        if expect_version is not None:
            status = self._status.get(key)
            if status is None or status.version != expect_version:
                version = status.version if status is not None else None
                raise ProfileChanged(community_id, worker_id, version)
        for fix, inside in zip(fixes, in_area, strict=True):
            last = self._pos.get(key)
            if last is not None:
                prev = last[0]
                if fix.recorded_at <= prev.recorded_at:
                    out.append(MoveResult.STALE)
                    continue
                moved = haversine_m(prev.lat, prev.lng, fix.lat, fix.lng) - SPEED_SLACK_M
                speed = moved / max(fix.recorded_at - prev.recorded_at, SPEED_MIN_DT_S)
                if speed > max_speed_mps:
                    out.append(MoveResult.TOO_FAST)
                    continue
            self._pos[key] = (fix, inside)
            out.append(MoveResult.ACCEPTED)
        return out

    async def search(
        self,
        community_id: int,
        lat: float,
        lng: float,
        radius_m: float,
        *,
        skills: Sequence[str] = (),
        limit: int = 50,
        min_recorded_at: float = 0.0,
    ) -> list[Nearby]:
        need = set(skills)
        found = []
        for (cid, wid), (fix, inside) in self._pos.items():
            status = self._status.get((cid, wid))
            if cid != community_id or status is None or not status.available or not inside:
                continue
            if fix.recorded_at < min_recorded_at or not need <= status.skills:
                continue
            d = haversine_m(lat, lng, fix.lat, fix.lng)
            if d <= radius_m:
                found.append(Nearby(wid, d, fix.lat, fix.lng, fix.recorded_at))
        found.sort(key=lambda n: (n.distance_m, n.worker_id))
        return found[:limit]

    async def position(self, community_id: int, worker_id: int) -> Position | None:
        last = self._pos.get((community_id, worker_id))
        if last is None:
            return None
        status = self._status.get((community_id, worker_id))
        fix, inside = last
        return Position(
            fix.lat, fix.lng, fix.recorded_at, bool(status and status.available), inside
        )

    async def remove(self, community_id: int, worker_id: int, *, as_of: int | None = None) -> None:
        if self._older((community_id, worker_id), as_of):
            return
        self._status.pop((community_id, worker_id), None)
        self._pos.pop((community_id, worker_id), None)

    async def clear(self, community_id: int) -> None:
        for key in [k for k in self._pos if k[0] == community_id]:
            del self._pos[key]
        for key in [k for k in self._status if k[0] == community_id]:
            del self._status[key]
        for key in [k for k in self._stamps if k[0] == community_id]:
            del self._stamps[key]
        self._built.discard(community_id)

    async def claim_rebuild(self, community_id: int) -> bool:
        if community_id in self._built or community_id in self._leased:
            return False
        self._leased.add(community_id)
        return True

    async def mark_built(self, community_id: int) -> None:
        self._built.add(community_id)
        self._leased.discard(community_id)

    async def release_rebuild(self, community_id: int) -> None:
        self._leased.discard(community_id)
