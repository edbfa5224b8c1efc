"""The live index in Redis: one Lua script call per search, per move batch, per status change.

Keys of a community share the Redis Cluster hash tag `{c:ID}`, so one community's live state sits
on one shard and every script touches a single slot:

    {prefix}:{c:ID}:w                  hash  worker id -> msgpack state
    {prefix}:{c:ID}:<cell>             set   searchable workers filed under the cell
    {prefix}:{c:ID}:<cell>:<skill>     set   … who also have the skill
    {prefix}:{c:ID}:built              marker: the index exists (absent after Redis lost it)

Sets hold only searchable workers (available, in the area, with a position); freshness is checked
per worker at search time.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import msgpack
from redis.asyncio import Redis

from geo.live.base import MAX_SPEED_MPS, Fix, LiveIndex, MoveResult, Nearby, Position, WorkerStatus
from geo.live.cover import cover_key, cover_of, file_cells

_LUA_DIR = Path(__file__).with_name("lua")
_CODES = {1: MoveResult.ACCEPTED, 2: MoveResult.STALE, 3: MoveResult.TOO_FAST}


def _script(name: str) -> str:
    return (_LUA_DIR / "common.lua").read_text() + "\n" + (_LUA_DIR / f"{name}.lua").read_text()


class RedisLiveIndex(LiveIndex):
    def __init__(self, client: Redis, *, prefix: str = "live", key_cache_size: int = 8192) -> None:
        self.client = client
        self.prefix = prefix
        self._status = client.register_script(_script("status"))
        self._move = client.register_script(_script("move"))
        self._search = client.register_script(_script("search"))
        self._keys: OrderedDict[tuple[int, int, float, str], list[str]] = OrderedDict()
        self._key_cache_size = key_cache_size

    @classmethod
    def with_client(cls, url: str, **kwargs: object) -> RedisLiveIndex:
        return cls(Redis.from_url(url), **kwargs)  # type: ignore[arg-type]

    def _ns(self, community_id: int) -> str:
        return f"{self.prefix}:{{c:{community_id}}}:"

    def _hash(self, community_id: int) -> str:
        return self._ns(community_id) + "w"

    async def set_status(self, community_id: int, worker_id: int, status: WorkerStatus) -> None:
        await self._status(
            keys=[self._hash(community_id)],
            args=[self._ns(community_id), worker_id, int(status.available), *sorted(status.skills)],
        )

    async def move(
        self,
        community_id: int,
        worker_id: int,
        fixes: Sequence[Fix],
        *,
        in_area: Sequence[bool],
        max_speed_mps: float = MAX_SPEED_MPS,
    ) -> list[MoveResult]:
        if not fixes:
            return []
        args: list[object] = [self._ns(community_id), worker_id, repr(float(max_speed_mps))]
        for fix, inside in zip(fixes, in_area, strict=True):
            c7, c8, c9 = file_cells(fix.lat, fix.lng)
            args += [repr(float(fix.lat)), repr(float(fix.lng)), repr(float(fix.recorded_at)),
                     int(inside), f"{c7:x}", f"{c8:x}", f"{c9:x}"]  # fmt: skip
        codes = await self._move(keys=[self._hash(community_id)], args=args)
        return [_CODES[int(c)] for c in codes]

    def _cover_keys(
        self, community_id: int, lat: float, lng: float, radius_m: float, skill: str
    ) -> tuple[list[str], tuple[float, ...]]:
        origin, step = cover_key(lat, lng, radius_m)
        cells, bounds = cover_of(origin, step)
        cache_key = (community_id, origin, step, skill)
        keys = self._keys.get(cache_key)
        if keys is None:
            ns, suffix = self._ns(community_id), (f":{skill}" if skill else "")
            keys = [self._hash(community_id), *(f"{ns}{c:x}{suffix}" for c in cells)]
            self._keys[cache_key] = keys
            if len(self._keys) > self._key_cache_size:
                self._keys.popitem(last=False)
        return keys, bounds

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
        if limit <= 0 or radius_m < 0:
            return []
        need = sorted(set(skills))
        keys, bounds = self._cover_keys(community_id, lat, lng, radius_m, need[0] if need else "")
        args = [repr(float(lat)), repr(float(lng)), repr(float(radius_m)), int(limit),
                repr(float(min_recorded_at)), len(need), *need, *bounds]  # fmt: skip
        flat = await self._search(keys=keys, args=args)
        return [
            Nearby(
                int(flat[i]),
                float(flat[i + 1]),
                float(flat[i + 2]),
                float(flat[i + 3]),
                float(flat[i + 4]),
            )
            for i in range(0, len(flat), 5)
        ]

    async def position(self, community_id: int, worker_id: int) -> Position | None:
        raw = await self.client.hget(self._hash(community_id), str(worker_id))
        if raw is None:
            return None
        s = msgpack.unpackb(raw)
        if s[2] < 0:
            return None
        return Position(float(s[0]), float(s[1]), float(s[2]), s[3] == 1, s[4] == 1)

    async def remove(self, community_id: int, worker_id: int) -> None:
        await self.set_status(community_id, worker_id, WorkerStatus(available=False))
        await self.client.hdel(self._hash(community_id), str(worker_id))

    async def clear(self, community_id: int) -> None:
        batch: list[bytes] = []
        async for key in self.client.scan_iter(match=f"{self._ns(community_id)}*", count=1000):
            batch.append(key)
            if len(batch) >= 500:
                await self.client.unlink(*batch)
                batch.clear()
        if batch:
            await self.client.unlink(*batch)

    async def claim_rebuild(self, community_id: int) -> bool:
        return bool(await self.client.set(self._ns(community_id) + "built", 1, nx=True))
