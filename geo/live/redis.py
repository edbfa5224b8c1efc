"""The live index in Redis: one Lua script call per search, per move batch, per status change,
and per chunk of a many-worker write (`move_many`, `set_status_many`: the rebuild's, a bulk
feeder's), whose scripts run each item as the single-worker scripts do (lua/common.lua).

Keys of a community share the Redis Cluster hash tag `{c:ID}`, so one community's live state sits
on one shard and every script touches a single slot:

    {prefix}:{c:ID}:w               hash        worker id -> record (msgpack array, lua/common.lua)
    {prefix}:{c:ID}/h3              sorted set  searchable workers, scored by the code of their
                                                fine H3 cell (cells.py: any coarser cell is one
                                                range of codes)
    {prefix}:{c:ID}/h3:<skill>      sorted set  ... those of them with the skill
    {prefix}:{c:ID}/h3cells         hash        cell -> its children's centres and reaches, for
                                                every cell above a fine cell a worker entered
    {prefix}:{c:ID}/h3built         marker: the index exists in this layout (absent after Redis
                                    lost it, or when only an earlier layout's keys are there)
    {prefix}:{c:ID}/h3rebuilding    the lease of the rebuild under way (`REBUILD_LEASE_S`)
    {prefix}:{c:ID}:st              hash        worker id -> the stamp of their last status
                                                write (`set_status(as_of=)`)

The sorted sets hold only searchable workers (available, in the area, with a position); freshness
and any further requested skill are checked per worker at search time, from the record. A location
ping writes the record, plus the worker's sorted sets (all + one per skill) only when it changes
fine cell (about 66 m) or becomes (un)searchable. A search sends the query and its start cells
(cells.py `start_cells`); the search walks the cells itself (lua/search.lua, a Redis function
library loaded by `on_startup` or on first use, and again whenever Redis lost it).

`clear` removes every key under the community's tag, this layout's and earlier ones' (the
":"-named H3 sets and the "/cells" quadtree sets). Replies are binary: the client must not be
created with decode_responses=True.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Sequence
from dataclasses import fields
from pathlib import Path

import h3.api.basic_int as h3
import msgpack
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from geo.live.base import (
    MAX_SPEED_MPS,
    REBUILD_LEASE_S,
    CommandPipe,
    Fix,
    LiveIndex,
    MoveResult,
    Nearby,
    Position,
    ProfileChanged,
    WorkerStatus,
)
from geo.live.cells import FINE_RES, cell_code, chain, start_cells

_LUA_DIR = Path(__file__).with_name("lua")
_RESULTS = (None, MoveResult.ACCEPTED, MoveResult.STALE, MoveResult.TOO_FAST)
"""move.lua's codes (1 accepted, 2 stale, 3 too fast) by index."""
_FRESH_CELL = 4
"""move_many.lua's code for a fix accepted into a fine cell whose parent has no entry yet."""
_MANY_RESULTS = (*_RESULTS, MoveResult.ACCEPTED)
"""move_many.lua's codes by index: move.lua's, and `_FRESH_CELL`."""
MOVE_MANY_CHUNK = 50
"""Items per move_many.lua call. Redis runs one script at a time and nothing else meanwhile (a
search waits behind it), so a batch is cut into calls that each end within a few searches'
time (a search runs ~0.3 ms in Redis). Measured with SLOWLOG on this 2-core machine, 10,000
workers with 3 skills each: a call of 100 items ran 0.52 ms (median; p99 1.0) when each worker
stepped 10 m, mostly within its fine cell, and 1.9 ms (p99 3.5) when every worker entered a new
fine cell (the record, and 4 ZREM + 4 ZADD each); 200 items took twice that (1.1 and 3.7 ms).
Under full-rate ingest (`bench.search_ingest --many --chunk N`, bench/README.md) 50 beat 100 on
both the search's p99 (2.2x idle against 5.5x) and pings/s (114k against 86k), and 25 lost
pings/s to round trips (67k): so 50. A rebuild of 10,000 workers makes 200 move calls."""
STATUS_MANY_CHUNK = 100
"""Items per status_many.lua call, for the same reason: measured as above, 100 statuses that each
(un)file the worker in 4 sorted sets ran 1.6-2.1 ms a call (median), 200 ran 2.7-2.8 ms."""
_DEFAULT_SPEED = repr(float(MAX_SPEED_MPS))
_RECORD_HEADS = (0x98, 0x97)
"""A record is an 8-element msgpack array (lua/common.lua), or 7 in records written before the
profile version was kept."""


def lua_source(name: str) -> str:
    """A script's source, the shared helpers (lua/common.lua) first; benchmarks load the same."""
    return (_LUA_DIR / "common.lua").read_text() + "\n" + (_LUA_DIR / f"{name}.lua").read_text()


def _search_library() -> tuple[str, str]:
    """(function name, library code): named after the code, so versions never clash in Redis."""
    body = (_LUA_DIR / "search.lua").read_text()
    digest = hashlib.sha256(body.encode()).hexdigest()[:12]
    name = f"geo_live_search_{digest}"
    return name, f'#!lua name={name}\nlocal FUNCTION_NAME = "{name}"\n{body}'


_SEARCH_FUNCTION, _SEARCH_LIBRARY = _search_library()


def _function_missing(error: ResponseError) -> bool:
    """Redis lost the library or script a direct call named (restart, FLUSH)."""
    return isinstance(error, NoScriptError) or str(error).startswith("Function not found")


def _nearby_builder() -> Callable[[int, float, float, float, float], Nearby]:
    """Nearby(...) without the frozen dataclass __init__ (one object.__setattr__ per field): set
    the slots directly, about twice as fast for a page of 50 results. Falls back to the
    constructor if Nearby stops having slots."""
    try:
        setters = [Nearby.__dict__[f.name].__set__ for f in fields(Nearby)]
    except (KeyError, AttributeError):
        return Nearby
    if [f.name for f in fields(Nearby)] != ["worker_id", "distance_m", "lat", "lng", "recorded_at"]:
        return Nearby
    new = object.__new__
    set_id, set_d, set_lat, set_lng, set_ts = setters

    def build(worker_id: int, distance_m: float, lat: float, lng: float, ts: float) -> Nearby:
        n = new(Nearby)
        set_id(n, worker_id)
        set_d(n, distance_m)
        set_lat(n, lat)
        set_lng(n, lng)
        set_ts(n, ts)
        return n

    return build


_nearby = _nearby_builder()


def _skill_text(skill: str) -> str:
    """The skill as stored between commas: with any comma (and the escape) percent-encoded."""
    if "," in skill or "%" in skill:
        return skill.replace("%", "%25").replace(",", "%2C")
    return skill


def _skills_field(skills: frozenset[str]) -> bytes:
    """The record's skills field: msgpack str32 of ",a,b,"."""
    text = ("," + "".join(_skill_text(s) + "," for s in sorted(skills))).encode()
    return b"\xdb" + len(text).to_bytes(4, "big") + text


def search_args(
    lat: float, lng: float, radius_m: float, limit: int, min_ts: float, skills: Sequence[str]
) -> list[str | bytes]:
    """The search function's arguments (lua/search.lua)."""
    need = sorted({_skill_text(s) for s in skills})
    res, start = start_cells(lat, lng, radius_m)
    return [repr(float(lat)), repr(float(lng)), repr(float(radius_m)), str(int(limit)),
            repr(float(min_ts)), str(len(need)), *need, str(res), start]  # fmt: skip


class RedisLiveIndex(LiveIndex):
    def __init__(
        self,
        client: Redis,
        *,
        prefix: str = "live",
        pipe: CommandPipe | None = None,
        many_chunk: int = MOVE_MANY_CHUNK,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.many_chunk = many_chunk
        """Items per move_many.lua call (`MOVE_MANY_CHUNK`)."""
        self._status = client.register_script(lua_source("status"))
        self._move = client.register_script(lua_source("move"))
        self._status_many = client.register_script(lua_source("status_many"))
        self._move_many = client.register_script(lua_source("move_many"))
        self._remove = client.register_script(lua_source("remove"))
        self._clock = client.register_script("return redis.call('TIME')")
        self._pipeliner = pipe
        """The fast path for searches and moves (`_call_fast`), given by the caller (the service
        passes its Pipeliner on the client's pool); None: every call goes through the client."""

    async def on_startup(self) -> None:
        """Load the scripts and the search function now (one round trip each), so no request pays
        for it later."""
        scripts = (self._status, self._move, self._status_many, self._move_many, self._remove,
                   self._clock)  # fmt: skip
        for script in scripts:
            await self.client.script_load(script.script)
        await self.client.function_load(_SEARCH_LIBRARY, replace=True)

    @classmethod
    def with_client(cls, url: str, **kwargs: object) -> RedisLiveIndex:
        return cls(Redis.from_url(url), **kwargs)  # type: ignore[arg-type]

    def _tag(self, community_id: int) -> str:
        """`{prefix}:{c:ID}`: the start of every key of the community (its hash tag)."""
        return f"{self.prefix}:{{c:{community_id}}}"

    def _ns(self, community_id: int) -> str:
        return self._tag(community_id) + ":"

    def _hash(self, community_id: int) -> str:
        return self._ns(community_id) + "w"

    def _keys(self, community_id: int) -> list[str]:
        """[state hash, cell set, cell entries]: the keys every script takes."""
        tagged = self._tag(community_id)
        return [tagged + ":w", tagged + "/h3", tagged + "/h3cells"]

    def _stamped_keys(self, community_id: int) -> list[str]:
        """`_keys` and the stamps hash (worker id -> the `as_of` of their last status write)."""
        return [*self._keys(community_id), self._tag(community_id) + ":st"]

    async def stamp(self) -> int:
        # TIME through a script keyed on one fixed key, so that in a cluster every stamp comes
        # from the one node holding that key's slot: stamps are compared only for one worker in
        # one community, but that needs one clock (plain TIME goes to whichever node).
        seconds, micros = await self._clock(keys=[f"{self.prefix}:clock"])
        return int(seconds) * 1_000_000 + int(micros)

    async def set_status(
        self, community_id: int, worker_id: int, status: WorkerStatus, *, as_of: int | None = None
    ) -> bool:
        args: list[object] = [worker_id, int(status.available), _skills_field(status.skills),
                              int(status.version)]  # fmt: skip
        if as_of is not None:
            args.append(as_of)
        return bool(await self._status(keys=self._stamped_keys(community_id), args=args))

    async def set_status_many(
        self,
        community_id: int,
        items: Sequence[tuple[int, WorkerStatus]],
        *,
        as_of: int | None = None,
    ) -> list[bool]:
        """One status_many.lua call per `STATUS_MANY_CHUNK` items, in order (a chunk waits for
        the one before, so a worker named in two chunks is written in the order given)."""
        keys = self._stamped_keys(community_id)
        out: list[bool] = []
        for start in range(0, len(items), STATUS_MANY_CHUNK):
            args: list[object] = ["" if as_of is None else int(as_of)]
            for worker_id, status in items[start : start + STATUS_MANY_CHUNK]:
                args += (worker_id, int(status.available), _skills_field(status.skills),
                         int(status.version))  # fmt: skip
            out += [bool(code) for code in await self._status_many(keys=keys, args=args)]
        return out

    async def move_many(
        self,
        community_id: int,
        moves: Sequence[tuple[int, Fix, bool]],
        *,
        max_speed_mps: float = MAX_SPEED_MPS,
    ) -> list[MoveResult]:
        """One move_many.lua call per `many_chunk` items, in order (each chunk after the
        one before has been answered), then, if any of the chunk's workers entered a fine cell
        whose parent has no entry yet, one HSET of the entries above those cells (as `move`
        does for one worker; fine cells under one parent share every entry, so once each)."""
        speed = _DEFAULT_SPEED if max_speed_mps == MAX_SPEED_MPS else repr(float(max_speed_mps))
        keys = self._keys(community_id)
        sha = self._move_many.sha
        out: list[MoveResult] = []
        step = self.many_chunk
        for start in range(0, len(moves), step):
            chunk = moves[start : start + step]
            values: list[float] = []  # lat, lng, ts and fine cell code per item, as in `move`
            for _, fix, _ in chunk:
                values += (fix.lat, fix.lng, fix.recorded_at, cell_code(fix.lat, fix.lng))
            args = [
                speed,
                struct.pack(f">{4 * len(chunk)}d", *values),
                bytes([49 if inside else 48 for _, _, inside in chunk]),
                *(worker_id for worker_id, _, _ in chunk),
            ]
            codes = await self._call_fast("EVALSHA", sha, len(keys), *keys, *args)
            if codes is None:
                codes = await self._move_many(keys=keys, args=args)
            entries: dict[bytes, bytes] = {}
            parents: set[int] = set()
            for i, code in enumerate(codes):
                if code == _FRESH_CELL and (parent := int(values[4 * i + 3]) // 8) not in parents:
                    parents.add(parent)
                    entries.update(chain(h3.latlng_to_cell(values[4 * i], values[4 * i + 1],
                                                           FINE_RES)))  # fmt: skip
            if entries:
                await self.client.hset(keys[2], mapping=entries)
            out += [_MANY_RESULTS[code] for code in codes]
        return out

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
        n = len(fixes)
        if not n:
            return []
        if len(in_area) != n:
            raise ValueError("one in_area flag per fix")
        # lat, lng, ts and fine cell code per fix; the script files the last accepted one.
        values: list[float] = []
        for fix in fixes:
            values += (fix.lat, fix.lng, fix.recorded_at, cell_code(fix.lat, fix.lng))
        args = [
            worker_id,
            _DEFAULT_SPEED if max_speed_mps == MAX_SPEED_MPS else repr(float(max_speed_mps)),
            struct.pack(f">{4 * n}d", *values),
            bytes([49 if inside else 48 for inside in in_area]),
            "" if expect_version is None else int(expect_version),
        ]
        keys = self._keys(community_id)
        codes = await self._call_fast("EVALSHA", self._move.sha, len(keys), *keys, *args)
        if codes is None:
            codes = await self._move(keys=keys, args=args)
        if codes[0] == 0:
            found = codes[1] if len(codes) > 1 else None
            raise ProfileChanged(community_id, worker_id, int(found) if found else None)
        if codes[-1] == -1:  # the worker entered a cell the entries do not reach yet
            codes.pop()
            last = max(i for i, c in enumerate(codes) if c == 1)
            await self._write_entries(keys[2], values[4 * last], values[4 * last + 1])
        return [_RESULTS[c] for c in codes]

    async def _write_entries(self, key: str, lat: float, lng: float) -> None:
        """The entries of every cell above the point's fine cell (written again as they are if
        another process wrote them first: an entry only depends on its cell)."""
        await self.client.hset(key, mapping=chain(h3.latlng_to_cell(lat, lng, FINE_RES)))

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
        args = search_args(lat, lng, radius_m, limit, min_recorded_at, skills)
        keys = self._keys(community_id)
        reply = await self._call_fast("FCALL", _SEARCH_FUNCTION, len(keys), *keys, *args)
        if reply is None:
            reply = await self._call_search(keys, args)
        packed, *ids = reply
        values = struct.unpack(f">{4 * len(ids)}d", packed)  # distance, lat, lng, ts per result
        # One map over columns: a third less time than a loop over rows, for 50 results.
        dists, lats, lngs, stamps = values[0::4], values[1::4], values[2::4], values[3::4]
        return list(map(_nearby, map(int, ids), dists, lats, lngs, stamps))

    async def _call_search(self, keys: list[str], args: list[str | bytes]) -> list:
        """FCALL of the search through the client, loading the library first if Redis does not
        have it (never loaded, or lost in a restart or FUNCTION FLUSH)."""
        try:
            return await self.client.fcall(_SEARCH_FUNCTION, len(keys), *keys, *args)
        except ResponseError as e:
            if not _function_missing(e):
                raise
        await self.client.function_load(_SEARCH_LIBRARY, replace=True)
        return await self.client.fcall(_SEARCH_FUNCTION, len(keys), *keys, *args)

    async def _call_fast(self, *command: object) -> list | None:
        """A command (the search's FCALL, a move's EVALSHA) on the index's pipe,
        skipping the client's per-command machinery (pool bookkeeping and health check, retry
        wrapper, response callbacks); the commands of concurrent pings and searches share socket
        writes. None when the fast path does not apply (cluster or custom clients, function or
        script not loaded yet or lost, connection trouble): the caller then goes through the
        client as usual, with its retries, loading the function or script if need be."""
        if self._pipeliner is None:
            return None
        try:
            return await self._pipeliner.call(*command)
        except ResponseError as e:
            if not _function_missing(e):
                raise  # the search or move failed
            return None
        except (RedisConnectionError, RedisTimeoutError):
            return None

    async def on_shutdown(self) -> None:
        """Close the pipeliner's connection (the client is the caller's to close)."""
        if self._pipeliner is not None:
            await self._pipeliner.aclose()

    async def position(self, community_id: int, worker_id: int) -> Position | None:
        raw = await self.client.hget(self._hash(community_id), str(worker_id))
        if raw is None or raw[0] not in _RECORD_HEADS:
            return None
        s = msgpack.unpackb(raw)
        if s[2] < 0:
            return None
        return Position(float(s[0]), float(s[1]), float(s[2]), s[3] == 1, s[4] == 1)

    async def remove(self, community_id: int, worker_id: int, *, as_of: int | None = None) -> None:
        args = [worker_id] if as_of is None else [worker_id, as_of]
        await self._remove(keys=self._stamped_keys(community_id), args=args)

    async def clear(self, community_id: int) -> None:
        # Everything under the community's tag: this layout's keys and any a previous one left.
        tagged = self._tag(community_id)
        pattern = "".join("\\" + ch if ch in "*?[]\\" else ch for ch in tagged) + "[:/]*"
        batch: list[bytes] = []
        async for key in self.client.scan_iter(match=pattern, count=1000):
            batch.append(key)
            if len(batch) >= 500:
                await self.client.unlink(*batch)
                batch.clear()
        if batch:
            await self.client.unlink(*batch)

    async def claim_rebuild(self, community_id: int) -> bool:
        tagged = self._tag(community_id)
        if await self.client.exists(tagged + "/h3built"):
            return False
        lease = tagged + "/h3rebuilding"
        return bool(await self.client.set(lease, 1, nx=True, ex=REBUILD_LEASE_S))

    async def mark_built(self, community_id: int) -> None:
        tagged = self._tag(community_id)
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.set(tagged + "/h3built", 1)
            pipe.delete(tagged + "/h3rebuilding")
            await pipe.execute()

    async def release_rebuild(self, community_id: int) -> None:
        await self.client.delete(self._tag(community_id) + "/h3rebuilding")
