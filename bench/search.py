"""Radius search benchmark: our Redis live index against Redis GEOSEARCH, PostGIS and brute force.

    .venv/bin/python -m bench.search [--sizes 100000,1000000] [--queries N] [--quick]

One benchmark, one long file on purpose: its setup, phases, checks and report read top to
bottom; what the benchmarks share lives once in `bench/lib/`.

One run starts private PostgreSQL+PostGIS and Redis servers (`dispatch.local_servers`), builds the
same synthetic city for every engine from fixed seeds, loads it into each engine, runs the same
"top 50 eligible workers within r" queries against each, checks every answer against a numpy brute
force, and prints a Markdown report (also written to bench/results/search-<timestamp>.md).
See bench/README.md for what is measured and how to read the report.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

import asyncpg
import numpy as np
from redis.asyncio import BlockingConnectionPool, Redis

from bench.lib.machine import CLK_TCK, cpu_model, log, proc_stat
from dispatch.devtools.local_servers import LocalServers
from dispatch.infra.wire import Pipeliner
from geo.distance import EARTH_RADIUS_M
from geo.live.base import Fix, MoveResult, Nearby, WorkerStatus
from geo.live.cells import cell_code
from geo.live.redis import RedisLiveIndex, search_args

# --- the synthetic city -------------------------------------------------------------------------

CENTER_LAT, CENTER_LNG = 31.2304, 121.4737
HALF_SIDE_M = 15_000.0  # a 30 x 30 km square
N_HOTSPOTS = 20
HOTSPOT_SPREAD_M = 12_000.0  # hotspot centres lie within +-12 km of the centre
HOTSPOT_SIGMA_M = 800.0
BACKGROUND_SHARE = 0.2  # of the clustered distribution, spread uniformly
ONLINE_SHARE = 0.2
SKILLS = ("plumbing", "electrical", "cleaning", "moving", "handyman", "pet_care")
SKILL_P = 0.4
VERIFIED_P = 0.9
BUSY_P = 0.1
STALE_P = 0.05
NOW = 1_700_000_000.0
FRESH_FOR_S = 120.0
MIN_RECORDED_AT = NOW - FRESH_FOR_S
DISTRIBUTIONS = ("uniform", "clustered")

# --- the queries --------------------------------------------------------------------------------

COMMUNITY = 1
LIMIT = 50
RADII = (500, 1000, 2000, 5000)
TOL_M = 1e-6
SEED = 20_240_601
GEO_KEY, ATTR_KEY = "peer:geo", "peer:attrs"
GEO_START_K = 100
LOAD_CHUNK = 2000

RAD = math.pi / 180
M_PER_DEG = EARTH_RADIUS_M * RAD
COS0 = math.cos(CENTER_LAT * RAD)


def to_latlng(xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Local metres (east, north) from the centre to lat/lng (equirectangular, fine at 15 km)."""
    return CENTER_LAT + xy[:, 1] / M_PER_DEG, CENTER_LNG + xy[:, 0] / (M_PER_DEG * COS0)


def hotspots() -> np.ndarray:
    return np.random.default_rng([SEED, 0]).uniform(
        -HOTSPOT_SPREAD_M, HOTSPOT_SPREAD_M, (N_HOTSPOTS, 2)
    )


def around_hotspots(rng: np.random.Generator, n: int) -> np.ndarray:
    """n points, each gaussian around a random hotspot, redrawn until inside the city."""
    spots = hotspots()
    centre = spots[rng.integers(0, N_HOTSPOTS, n)]
    xy = centre + rng.normal(0.0, HOTSPOT_SIGMA_M, (n, 2))
    while (out := np.flatnonzero((np.abs(xy) > HALF_SIDE_M).any(axis=1))).size:
        xy[out] = centre[out] + rng.normal(0.0, HOTSPOT_SIGMA_M, (out.size, 2))
    return xy


@dataclass
class World:
    """The online workers of one city (offline ones exist in no index)."""

    size: int
    dist: str
    ids: np.ndarray  # int64, ascending
    lat: np.ndarray
    lng: np.ndarray
    skills: np.ndarray  # uint8 bit mask over SKILLS
    eligible: np.ndarray  # verified and not busy (and online)
    ts: np.ndarray

    @property
    def online(self) -> int:
        return int(self.ids.size)


def make_world(size: int, dist: str) -> World:
    rng = np.random.default_rng([SEED, 1, size, DISTRIBUTIONS.index(dist)])
    ids = np.flatnonzero(rng.random(size) < ONLINE_SHARE).astype(np.int64) + 1
    n = ids.size
    if dist == "uniform":
        xy = rng.uniform(-HALF_SIDE_M, HALF_SIDE_M, (n, 2))
    else:
        xy = around_hotspots(rng, n)
        background = rng.random(n) < BACKGROUND_SHARE
        xy[background] = rng.uniform(-HALF_SIDE_M, HALF_SIDE_M, (int(background.sum()), 2))
    lat, lng = to_latlng(xy)
    has = rng.random((n, len(SKILLS))) < SKILL_P
    none = ~has.any(axis=1)
    has[np.flatnonzero(none), rng.integers(0, len(SKILLS), int(none.sum()))] = True
    skills = (has * (1 << np.arange(len(SKILLS)))).sum(axis=1).astype(np.uint8)
    eligible = (rng.random(n) < VERIFIED_P) & ~(rng.random(n) < BUSY_P)
    stale = rng.random(n) < STALE_P
    ts = np.where(stale, NOW - rng.uniform(600.0, 7200.0, n), NOW - rng.uniform(0.0, 60.0, n))
    return World(size, dist, ids, lat, lng, skills, eligible, ts)


SKILL_SETS = [tuple(s for k, s in enumerate(SKILLS) if m >> k & 1) for m in range(1 << len(SKILLS))]


@dataclass
class Queries:
    lat: list[float]
    lng: list[float]
    skill: list[str | None]

    def __len__(self) -> int:
        return len(self.lat)


def make_queries(n: int, stream: int) -> Queries:
    """Half the points near hotspots, half uniform; every other pair asks for one skill."""
    rng = np.random.default_rng([SEED, stream])
    xy = rng.uniform(-HALF_SIDE_M, HALF_SIDE_M, (n, 2))
    near = np.arange(n) % 2 == 0
    xy[near] = around_hotspots(rng, int(near.sum()))
    lat, lng = to_latlng(xy)
    picks = rng.integers(0, len(SKILLS), n)
    skill = [SKILLS[picks[i]] if (i // 2) % 2 else None for i in range(n)]
    return Queries(lat.tolist(), lng.tolist(), skill)


# --- engines ------------------------------------------------------------------------------------


class Engine(Protocol):
    name: str

    async def search(self, lat: float, lng: float, radius_m: float, skill: str | None) -> Any: ...

    def unpack(self, raw: Any) -> tuple[list[int], list[float]]: ...


class Ours:
    name = "ours"

    def __init__(self, client: Redis) -> None:
        self.client = client
        self.index = RedisLiveIndex(client, pipe=Pipeliner.for_client(client))

    async def load(self, url: str, w: World) -> None:
        # Through the public API, many calls in flight over a bounded pool of connections.
        pool = BlockingConnectionPool.from_url(url, max_connections=32, timeout=None)
        client = Redis(connection_pool=pool)
        index = RedisLiveIndex(client, pipe=Pipeliner.for_client(client))
        ids, lat, lng, ts = w.ids.tolist(), w.lat.tolist(), w.lng.tolist(), w.ts.tolist()
        masks, elig = w.skills.tolist(), w.eligible.tolist()

        async def one(i: int) -> None:
            wid = ids[i]
            status = WorkerStatus(available=elig[i], skills=frozenset(SKILL_SETS[masks[i]]))
            await index.set_status(COMMUNITY, wid, status)
            moved = await index.move(COMMUNITY, wid, [Fix(lat[i], lng[i], ts[i])], in_area=[True])
            if moved != [MoveResult.ACCEPTED]:
                raise RuntimeError(f"worker {wid}: move returned {moved}")

        for start in range(0, len(ids), LOAD_CHUNK):
            await asyncio.gather(*(one(i) for i in range(start, min(len(ids), start + LOAD_CHUNK))))
        await index.on_shutdown()
        await client.aclose()
        await pool.disconnect()

    async def search(self, lat: float, lng: float, radius_m: float, skill: str | None) -> Any:
        return await self.index.search(
            COMMUNITY,
            lat,
            lng,
            radius_m,
            skills=(skill,) if skill else (),
            limit=LIMIT,
            min_recorded_at=MIN_RECORDED_AT,
        )

    def unpack(self, raw: list[Nearby]) -> tuple[list[int], list[float]]:
        return [n.worker_id for n in raw], [n.distance_m for n in raw]


class GeoPeer:
    """What a user would write with plain Redis: GEOSEARCH, then HMGET the attributes and filter
    in the client, doubling COUNT while too few eligible workers came back."""

    name = "GEOSEARCH"

    def __init__(self, client: Redis) -> None:
        self.client = client
        self.round_trips = 0
        self.searches = 0

    async def load(self, w: World) -> None:
        ids, lat, lng, ts = w.ids.tolist(), w.lat.tolist(), w.lng.tolist(), w.ts.tolist()
        masks, elig = w.skills.tolist(), w.eligible.tolist()
        pipe = self.client.pipeline(transaction=False)
        for start in range(0, len(ids), 1000):
            part = range(start, min(len(ids), start + 1000))
            pipe.geoadd(GEO_KEY, [v for i in part for v in (lng[i], lat[i], ids[i])])
            pipe.hset(
                ATTR_KEY,
                mapping={
                    ids[i]: f"{int(elig[i])}|{ts[i]!r}|{','.join(SKILL_SETS[masks[i]])}"
                    for i in part
                },
            )
            if len(pipe) >= 20:
                await pipe.execute()
        await pipe.execute()

    async def search(self, lat: float, lng: float, radius_m: float, skill: str | None) -> Any:
        want = skill.encode() if skill else None
        k, trips = GEO_START_K, 0
        attrs: dict[bytes, bytes] = {}
        while True:
            hits = await self.client.geosearch(
                GEO_KEY,
                longitude=lng,
                latitude=lat,
                radius=radius_m,
                unit="m",
                sort="ASC",
                count=k,
                withdist=True,
            )
            trips += 1
            todo = [m for m, _ in hits if m not in attrs]
            if todo:
                attrs.update(zip(todo, await self.client.hmget(ATTR_KEY, todo), strict=True))
                trips += 1
            out: list[tuple[int, float]] = []
            for member, dist in hits:
                eligible, ts, skills = attrs[member].split(b"|")
                if (
                    eligible == b"1"
                    and float(ts) >= MIN_RECORDED_AT
                    and (want is None or want in skills.split(b","))
                ):
                    out.append((int(member), dist))
                    if len(out) == LIMIT:
                        break
            if len(out) == LIMIT or len(hits) < k:
                self.round_trips += trips
                self.searches += 1
                return out
            k *= 2

    def unpack(self, raw: list[tuple[int, float]]) -> tuple[list[int], list[float]]:
        return [i for i, _ in raw], [d for _, d in raw]


# Sphere distances (use_spheroid = false), comparable with haversine; final order by that distance.
PG_SEARCH = """
SELECT id, d FROM (
    SELECT id, ST_Distance(loc, ST_SetSRID(ST_MakePoint($1, $2), 4326)::geography, false) AS d
    FROM workers
    WHERE eligible AND recorded_at >= $3 AND skills @> $4::text[]
      AND ST_DWithin(loc, ST_SetSRID(ST_MakePoint($1, $2), 4326)::geography, $5, false)
    ORDER BY loc <-> ST_SetSRID(ST_MakePoint($1, $2), 4326)::geography
    LIMIT 50
) AS nearest
ORDER BY d, id
"""


def asyncpg_params(url: str) -> dict[str, str]:
    """`postgresql+asyncpg://user@/db?host=/dir` -> asyncpg.connect keyword arguments."""
    parts = urlsplit(url)
    return {
        "host": parse_qs(parts.query)["host"][0],
        "user": unquote(parts.username or "dispatch"),
        "database": parts.path.lstrip("/"),
    }


class PostGIS:
    name = "PostGIS"

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self.stmt: Any = None

    async def load(self, w: World) -> None:
        c = self.conn
        await c.execute("CREATE EXTENSION IF NOT EXISTS postgis")
        await c.execute("DROP TABLE IF EXISTS workers")
        await c.execute(
            "CREATE TABLE workers (id bigint PRIMARY KEY, loc geography(Point, 4326) NOT NULL,"
            " skills text[] NOT NULL, eligible bool NOT NULL,"
            " recorded_at double precision NOT NULL)"
        )
        await c.execute(
            "CREATE TEMP TABLE stage (id bigint, lat float8, lng float8, skills text[],"
            " eligible bool, recorded_at float8)"
        )
        records = zip(
            w.ids.tolist(),
            w.lat.tolist(),
            w.lng.tolist(),
            [list(SKILL_SETS[m]) for m in w.skills.tolist()],
            w.eligible.tolist(),
            w.ts.tolist(),
            strict=True,
        )
        await c.copy_records_to_table("stage", records=records)
        await c.execute(
            "INSERT INTO workers SELECT id, ST_SetSRID(ST_MakePoint(lng, lat), 4326)::geography,"
            " skills, eligible, recorded_at FROM stage ORDER BY id"
        )
        await c.execute("DROP TABLE stage")
        await c.execute("CREATE INDEX workers_loc_idx ON workers USING gist (loc)")
        await c.execute("VACUUM ANALYZE workers")
        self.stmt = await c.prepare(PG_SEARCH)

    async def explain(self, lat: float, lng: float, radius_m: float, skill: str | None) -> str:
        # A named prepared statement, so the generic plan (the one a long-lived prepared
        # statement may switch to) can be shown too.
        c = self.conn
        await c.execute(
            "PREPARE bench_search(float8, float8, float8, text[], float8) AS " + PG_SEARCH
        )
        skills = f"ARRAY['{skill}']::text[]" if skill else "ARRAY[]::text[]"
        call = f"EXECUTE bench_search({lng!r}, {lat!r}, {MIN_RECORDED_AT!r}, {skills}, {radius_m})"
        plans = []
        for mode in ("force_custom_plan", "force_generic_plan"):
            await c.execute(f"SET plan_cache_mode = {mode}")
            rows = await c.fetch("EXPLAIN " + call)
            plans.append(f"-- {mode}\n" + "\n".join(r[0] for r in rows))
        await c.execute("RESET plan_cache_mode")
        await c.execute("DEALLOCATE bench_search")
        return "\n".join(plans)

    async def search(self, lat: float, lng: float, radius_m: float, skill: str | None) -> Any:
        return await self.stmt.fetch(
            lng, lat, MIN_RECORDED_AT, [skill] if skill else [], float(radius_m)
        )

    def unpack(self, raw: list[asyncpg.Record]) -> tuple[list[int], list[float]]:
        return [r[0] for r in raw], [r[1] for r in raw]


class Brute:
    """Ground truth: every online worker, vectorised haversine (same sphere and operation order
    as geo.distance.haversine_m and the Lua scripts)."""

    name = "brute force"

    def __init__(self, w: World) -> None:
        self.ids = w.ids
        self.lat = w.lat
        self.phi = w.lat * RAD
        self.cos_phi = np.cos(self.phi)
        self.lng = w.lng
        base = w.eligible & (w.ts >= MIN_RECORDED_AT)
        self.valid: dict[str | None, np.ndarray] = {None: base}
        for k, s in enumerate(SKILLS):
            self.valid[s] = base & ((w.skills >> k) & 1).astype(bool)

    def distances(self, lat: float, lng: float) -> np.ndarray:
        phi1 = lat * RAD
        dphi = self.phi - phi1
        dlmb = (self.lng - lng) * RAD
        h = np.sin(dphi / 2) ** 2 + math.cos(phi1) * self.cos_phi * np.sin(dlmb / 2) ** 2
        return 2 * EARTH_RADIUS_M * np.arcsin(np.minimum(1.0, np.sqrt(h)))

    def search(
        self, lat: float, lng: float, radius_m: float, skill: str | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(distances to every online worker, positions of all matches sorted by (d, id))."""
        d = self.distances(lat, lng)
        idx = np.flatnonzero(self.valid[skill] & (d <= radius_m))
        return d, idx[np.lexsort((self.ids[idx], d[idx]))]


# --- checking -----------------------------------------------------------------------------------


@dataclass
class Verdict:
    exact: bool
    recall: float
    max_err: float
    why: str = ""


def verify(
    brute: Brute,
    d: np.ndarray,
    ranked: np.ndarray,
    radius_m: float,
    skill: str | None,
    got: list[int],
    got_d: list[float],
) -> Verdict:
    """Is `got` the exact top LIMIT (order by distance then id; ties within TOL_M may swap)?"""
    ids = brute.ids
    top = ranked[:LIMIT]
    t_ids, t_d = ids[top], d[top]
    g = np.asarray(got, dtype=np.int64)
    pos = np.minimum(np.searchsorted(ids, g), ids.size - 1)
    if not (ids[pos] == g).all():
        return Verdict(False, 0.0, math.inf, f"unknown ids {g[ids[pos] != g][:5].tolist()}")
    gd = d[pos]
    ok = brute.valid[skill][pos] & (gd <= radius_m + TOL_M)
    max_err = float(np.abs(np.asarray(got_d, dtype=float) - gd).max()) if g.size else 0.0
    if t_ids.size:
        hits = int((ok & (gd <= t_d[-1] + TOL_M)).sum())
        recall = min(hits, t_ids.size) / t_ids.size
    else:
        recall = 1.0
    why = ""
    n = min(g.size, t_ids.size)
    wrong = np.flatnonzero((g[:n] != t_ids[:n]) & (np.abs(gd[:n] - t_d[:n]) > TOL_M))
    if len(set(got)) != len(got):
        why = "duplicate ids"
    elif not ok.all():
        bad = np.flatnonzero(~ok)[0]
        why = (
            f"id {g[bad]} at {float(gd[bad])!r} m is not eligible/fresh/skilled "
            "or beyond the radius"
        )
    elif wrong.size:
        i = wrong[0]
        why = (
            f"position {i}: got id {g[i]} at {float(gd[i])!r} m, "
            f"expected id {t_ids[i]} at {float(t_d[i])!r} m"
        )
    elif g.size < t_ids.size and (t_d[g.size :] < radius_m - TOL_M).any():
        why = f"{t_ids.size - g.size} result(s) missing (got {g.size}, expected {t_ids.size})"
    elif g.size > t_ids.size and (gd[t_ids.size :] < radius_m - TOL_M).any():
        why = f"{g.size - t_ids.size} result(s) too many"
    return Verdict(not why, recall, max_err, why)


class IndexBug(Exception):
    """Our index returned a wrong answer; the message describes the query in detail."""


async def diagnose(
    ours: Ours,
    brute: Brute,
    d: np.ndarray,
    ranked: np.ndarray,
    lat: float,
    lng: float,
    radius_m: float,
    skill: str | None,
    got: list[int],
    got_d: list[float],
    verdict: Verdict,
) -> str:
    index = ours.index
    ids = brute.ids
    top = ranked[:LIMIT]
    lines = [
        "OUR INDEX RETURNED A WRONG ANSWER",
        f"query: lat={lat!r} lng={lng!r} radius_m={radius_m!r} skill={skill!r} "
        f"limit={LIMIT} min_recorded_at={MIN_RECORDED_AT!r} community={COMMUNITY}",
        f"reason: {verdict.why}",
    ]
    lines.append("expected (id, distance m):")
    lines += [f"  {int(ids[p])} {float(d[p])!r}" for p in top]
    lines.append("got (id, distance m reported):")
    lines += [f"  {i} {x!r}" for i, x in zip(got, got_d, strict=True)]
    missing = [int(ids[p]) for p in top if int(ids[p]) not in set(got)]
    lines.append(f"missing ids: {missing[:20]}")
    cells_key = index._keys(COMMUNITY)[1] + (f":{skill}" if skill else "")
    for wid in missing[:10]:
        p = int(np.searchsorted(ids, wid))
        pos = await index.position(COMMUNITY, wid)
        code = cell_code(float(brute.lat[p]), float(brute.lng[p]))
        score = await ours.client.zscore(cells_key, str(wid))
        lines.append(f"  missing {wid}: distance {float(d[p])!r} m, stored position {pos}")
        lines.append(f"    fine cell {code}, score in {cells_key}: {score!r}")
    return "\n".join(lines)


# --- measuring ----------------------------------------------------------------------------------


@dataclass
class Stats:
    lat_us: np.ndarray
    exact: int = 0
    recall_sum: float = 0.0
    max_err: float = 0.0
    results: int = 0
    failures: list[str] = field(default_factory=list)

    def p(self, q: float) -> float:
        return float(np.percentile(self.lat_us, q))


async def run_queries(engine: Engine, q: Queries, radius_m: float) -> tuple[np.ndarray, list[Any]]:
    n = len(q)
    lat_us = np.empty(n)
    out: list[Any] = []
    clock = time.perf_counter
    for i in range(n):
        la, ln, sk = q.lat[i], q.lng[i], q.skill[i]
        t0 = clock()
        raw = await engine.search(la, ln, radius_m, sk)
        lat_us[i] = (clock() - t0) * 1e6
        out.append(raw)
    return lat_us, out


async def run_interleaved(
    engines: Sequence[Engine], q: Queries, radius_m: float
) -> list[tuple[np.ndarray, list[Any]]]:
    """One query at a time, query i going to every engine before query i + 1."""
    lat = [np.empty(len(q)) for _ in engines]
    out: list[list[Any]] = [[] for _ in engines]
    clock = time.perf_counter
    for i in range(len(q)):
        la, ln, sk = q.lat[i], q.lng[i], q.skill[i]
        for k, e in enumerate(engines):
            t0 = clock()
            res = await e.search(la, ln, radius_m, sk)
            lat[k][i] = (clock() - t0) * 1e6
            out[k].append(res)
    return list(zip(lat, out, strict=True))


async def used_memory(client: Redis) -> int:
    return int((await client.info("memory"))["used_memory"])


def _command(entry: dict[str, Any]) -> str:
    cmd = entry.get("command", "")
    return cmd.decode("utf-8", "replace") if isinstance(cmd, bytes) else str(cmd)


async def _fcall_usec(client: Redis) -> int:
    stats = await client.info("commandstats")
    return int(stats.get("cmdstat_fcall", {}).get("usec", 0))


async def _server_times(
    client: Redis, make_calls: Callable[[], Iterable[Awaitable[Any]]]
) -> tuple[list[float], list[float], list[int]]:
    """Per script call: its execution time inside Redis (INFO commandstats), the time spent in
    the commands it ran and how many it ran (SLOWLOG, which in Redis 7 logs those too; a second
    pass, since logging every command slows the script down) -- (us, us, count)."""
    total, inner, count = [], [], []
    for call in make_calls():
        before = await _fcall_usec(client)
        await call
        total.append(await _fcall_usec(client) - before)
    await client.config_set("slowlog-max-len", "100000")
    await client.config_set("slowlog-log-slower-than", "0")
    for call in make_calls():
        await client.slowlog_reset()
        await call
        entries = await client.slowlog_get(100000)
        ran = [e["duration"] for e in entries
               if _command(e).split(" ", 1)[0].upper() not in ("FCALL", "SLOWLOG")]  # fmt: skip
        inner.append(sum(ran))
        count.append(len(ran))
    await client.config_set("slowlog-log-slower-than", "10000")
    await client.config_set("slowlog-max-len", "128")
    return total, inner, count


def pct(values: Sequence[float] | np.ndarray, q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=float), q)) if len(values) else math.nan


def _args_of(entry: dict[str, Any]) -> int:
    """How many arguments after the key a SLOWLOG entry's command had (Redis keeps 32 words and
    says how many more there were)."""
    words = _command(entry).split(" ")
    more = 0
    if len(words) >= 4 and words[-1] == "arguments)" and words[-4] == "...":
        more = int(words[-3].lstrip("("))
        words = words[:-4]
    return len(words) - 2 + more


async def profile_ours(ours: Ours, brute: Brute, q: Queries, radius_m: float) -> dict[str, float]:
    """Where our search spends its time: the script call from the client and inside Redis, the
    commands it issues, and how many workers' records it reads."""
    index, client = ours.index, ours.client
    clock = time.perf_counter
    keys, empty_keys = index._keys(COMMUNITY), index._keys(COMMUNITY + 1)
    prepared = []
    for i in range(len(q)):
        skill = q.skill[i]
        need = [skill] if skill else []
        prepared.append(search_args(q.lat[i], q.lng[i], radius_m, LIMIT, MIN_RECORDED_AT, need))
    calls, empties, parse = [], [], []
    server, inner, n_cmds = await _server_times(
        client, lambda: (index._call_search(keys, a) for a in prepared)
    )
    for a in prepared:
        t0 = clock()
        await index._call_search(keys, a)
        calls.append((clock() - t0) * 1e6)
    for a in prepared:
        t0 = clock()
        await index._call_search(empty_keys, a)
        empties.append((clock() - t0) * 1e6)
    for i in range(len(q)):  # the whole public call, for the client-side share (args + parse)
        t0 = clock()
        await ours.search(q.lat[i], q.lng[i], radius_m, q.skill[i])
        parse.append((clock() - t0) * 1e6)
    # What the script read: one more pass with every command logged.
    await client.config_set("slowlog-max-len", "100000")
    await client.config_set("slowlog-log-slower-than", "0")
    ranges, counts, hgets, hmgets, records = [], [], [], [], []
    for a in prepared:
        await client.slowlog_reset()
        await index._call_search(keys, a)
        entries = await client.slowlog_get(100000)
        verbs = [_command(e).split(" ", 1)[0].upper() for e in entries]
        ranges.append(verbs.count("ZRANGEBYSCORE"))
        counts.append(verbs.count("ZCOUNT"))
        hgets.append(verbs.count("HGET"))
        hmgets.append(verbs.count("HMGET"))
        records.append(
            sum(_args_of(e) for e, v in zip(entries, verbs, strict=True) if v == "HMGET")
        )
    await client.config_set("slowlog-log-slower-than", "10000")
    await client.config_set("slowlog-max-len", "128")
    return {
        "ranges": float(np.mean(ranges)),
        "counts": float(np.mean(counts)),
        "hgets": float(np.mean(hgets)),
        "hmgets": float(np.mean(hmgets)),
        "scanned": float(np.mean(records)),
        "scanned_p99": pct(records, 99),
        "call50": pct(calls, 50),
        "call99": pct(calls, 99),
        "public50": pct(parse, 50),
        "server50": pct(server, 50),
        "server99": pct(server, 99),
        "inner50": pct(inner, 50),
        "cmds50": pct(n_cmds, 50),
        "empty50": pct(empties, 50),
        "empty99": pct(empties, 99),
    }


# --- other jobs on the machine ------------------------------------------------------------------


def _cpu_snapshot() -> tuple[float, float, float]:
    """(wall s, CPU s the whole machine has used, CPU s this process and its children (the
    servers and their backends) have used)."""
    first = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
    ticks = [int(x) for x in first]
    busy = (sum(ticks) - ticks[3] - ticks[4]) / CLK_TCK  # all but idle and iowait
    stats: dict[int, list[str]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            if (fields := proc_stat(int(entry))) is not None:
                stats[int(entry)] = fields
    children: dict[int, list[int]] = {}
    for pid, fields in stats.items():
        children.setdefault(int(fields[1]), []).append(pid)
    own, todo = 0.0, [os.getpid()]
    while todo:
        pid = todo.pop()
        if pid in stats:
            own += (int(stats[pid][11]) + int(stats[pid][12])) / CLK_TCK
        todo.extend(children.get(pid, []))
    return time.monotonic(), busy, own


def other_cpu_pct(since: tuple[float, float, float]) -> float:
    """CPU used by other jobs on the machine since the snapshot, in % of one core."""
    now = _cpu_snapshot()
    wall = max(1e-3, now[0] - since[0])
    return max(0.0, 100 * ((now[1] - since[1]) - (now[2] - since[2])) / wall)


async def wait_for_quiet(max_wait_s: float, limit_pct: float = 20.0) -> None:
    """Wait (up to max_wait_s) until other jobs use under limit_pct of a core."""
    deadline = time.monotonic() + max_wait_s
    while True:
        snap = _cpu_snapshot()
        await asyncio.sleep(3)
        other = other_cpu_pct(snap)
        if other <= limit_pct:
            return
        if time.monotonic() > deadline:
            log(f"WARNING: other jobs still use {other:.0f}% of a core; measuring anyway")
            return
        log(f"other jobs use {other:.0f}% of a core; waiting for the machine to quieten")


@dataclass
class Config:
    sizes: list[int]
    queries: int
    warmup: int
    profile: int
    quick: bool
    interleave: bool = False
    wait_quiet: int = 0


@dataclass
class CaseResult:
    size: int
    dist: str
    online: int
    stats: dict[tuple[int, str], Stats]
    profile: dict[int, dict[str, float]]
    memory: dict[str, float]
    load_s: dict[str, float]
    geo_trips: dict[int, float]
    explain: str
    explain_line: str
    other_cpu: float = 0.0


async def run_case(
    cfg: Config, size: int, dist: str, redis_url: str, pg: asyncpg.Connection
) -> CaseResult:
    world = make_world(size, dist)
    log(f"case {size} {dist}: {world.online} online, {int(world.eligible.sum())} eligible")
    client = Redis.from_url(redis_url)
    await client.flushall()
    ours, geo, pgis = Ours(client), GeoPeer(client), PostGIS(pg)
    brute = Brute(world)
    memory, load_s = {}, {}

    m0 = await used_memory(client)
    t0 = time.perf_counter()
    await ours.load(redis_url, world)
    load_s["ours"] = time.perf_counter() - t0
    m1 = await used_memory(client)
    memory["ours_keys"] = float(await client.dbsize())
    t0 = time.perf_counter()
    await geo.load(world)
    load_s["GEOSEARCH"] = time.perf_counter() - t0
    m2 = await used_memory(client)
    memory["ours"] = (m1 - m0) / world.online
    memory["GEOSEARCH"] = (m2 - m1) / world.online
    t0 = time.perf_counter()
    await pgis.load(world)
    load_s["PostGIS"] = time.perf_counter() - t0
    log(f"loaded: ours {load_s['ours']:.1f}s, GEO {load_s['GEOSEARCH']:.1f}s, "
        f"PostGIS {load_s['PostGIS']:.1f}s; bytes/online worker ours {memory['ours']:.0f}, "
        f"GEO {memory['GEOSEARCH']:.0f}")  # fmt: skip

    explain = await pgis.explain(CENTER_LAT, CENTER_LNG, 2000, SKILLS[0])
    if "workers_loc_idx" not in explain:
        raise RuntimeError("PostGIS plan does not use the GiST index:\n" + explain)
    explain_line = next(x.strip() for x in explain.splitlines() if "workers_loc_idx" in x)
    log(f"PostGIS plan uses the GiST index: {explain_line}")

    measured = make_queries(cfg.queries, 2)
    warm = make_queries(cfg.warmup, 3)
    engines: list[Engine] = [ours, geo, pgis]
    raw: dict[tuple[int, str], list[Any]] = {}
    stats: dict[tuple[int, str], Stats] = {}
    geo_trips: dict[int, float] = {}
    if cfg.wait_quiet:
        await wait_for_quiet(cfg.wait_quiet)
    snap = _cpu_snapshot()
    gc.collect()
    gc.freeze()
    for r in RADII:
        if cfg.interleave:
            for e in engines:
                await run_queries(e, warm, r)
            geo.round_trips = geo.searches = 0
            gc.collect()
            runs = await run_interleaved(engines, measured, r)
            for e, (lat_us, out) in zip(engines, runs, strict=True):
                raw[r, e.name] = out
                stats[r, e.name] = Stats(lat_us)
            geo_trips[r] = geo.round_trips / max(1, geo.searches)
        else:  # engine after engine, each warmed up right before its measured queries
            for e in engines:
                await run_queries(e, warm, r)
                geo.round_trips = geo.searches = 0
                gc.collect()
                lat_us, out = await run_queries(e, measured, r)
                raw[r, e.name] = out
                stats[r, e.name] = Stats(lat_us)
                if e is geo:
                    geo_trips[r] = geo.round_trips / max(1, geo.searches)
        log(f"r={r}: " + ", ".join(
            f"{e.name} p50 {stats[r, e.name].p(50):.0f} p99 {stats[r, e.name].p(99):.0f} us"
            for e in engines))  # fmt: skip
    gc.unfreeze()
    other_cpu = other_cpu_pct(snap)
    log(f"other jobs used {other_cpu:.0f}% of a core while measuring")

    profile: dict[int, dict[str, float]] = {}
    prof_q = make_queries(cfg.profile, 4)
    for r in RADII:
        profile[r] = await profile_ours(ours, brute, prof_q, r)

    log("checking every answer against brute force")
    for r in RADII:
        stats[r, brute.name] = Stats(np.empty(len(measured)))
    for i in range(len(measured)):
        la, ln, sk = measured.lat[i], measured.lng[i], measured.skill[i]
        for r in RADII:
            t0 = time.perf_counter()
            d, ranked = brute.search(la, ln, r, sk)
            bs = stats[r, brute.name]
            bs.lat_us[i] = (time.perf_counter() - t0) * 1e6
            bs.exact += 1
            bs.recall_sum += 1.0
            bs.results += min(LIMIT, ranked.size)
            for e in engines:
                got, got_d = e.unpack(raw[r, e.name][i])
                v = verify(brute, d, ranked, r, sk, got, got_d)
                s = stats[r, e.name]
                s.exact += v.exact
                s.recall_sum += v.recall
                s.results += len(got)
                s.max_err = max(s.max_err, v.max_err)
                if e is ours and (not v.exact or v.max_err > TOL_M):
                    if not v.why:
                        v.why = f"distance off by {v.max_err!r} m"
                    raise IndexBug(
                        await diagnose(ours, brute, d, ranked, la, ln, r, sk, got, got_d, v)
                    )
                if not v.exact and len(s.failures) < 3:
                    s.failures.append(f"({la!r}, {ln!r}) r={r} skill={sk}: {v.why}")
    await ours.index.on_shutdown()
    await client.aclose()
    return CaseResult(
        size, dist, world.online, stats, profile, memory, load_s, geo_trips, explain, explain_line,
        other_cpu=other_cpu,
    )  # fmt: skip


# --- reporting ----------------------------------------------------------------------------------


def fmt_size(n: int) -> str:
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n >= 1000 and n % 1000 == 0:
        return f"{n // 1000}k"
    return str(n)


def code_version() -> str:
    """The commit measured, and whether geo/live differs from it."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "geo/live"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        return "- code: unknown (no git)"
    return f"- code: commit {head or '?'}" + (
        ", geo/live modified" if dirty else ", geo/live clean"
    )


def machine() -> list[str]:
    cpu = cpu_model()
    try:
        mem_kb = next(
            int(x.split()[1])
            for x in Path("/proc/meminfo").read_text().splitlines()
            if x.startswith("MemTotal")
        )
    except (OSError, StopIteration):
        mem_kb = 0
    return [
        f"- machine: {os.cpu_count()} cores ({cpu}), {mem_kb / 2**20:.0f} GiB RAM, "
        f"{platform.system()} {platform.release()}",
        f"- Python {platform.python_version()}",
    ]


def report(
    cfg: Config,
    cases: list[CaseResult],
    versions: list[str],
    started: str,
    elapsed: float,
) -> str:
    L: list[str] = []
    L.append(f"# Search benchmark, {started}")
    L.append("")
    L += machine()
    L += versions
    L.append(code_version())
    L.append(
        f"- city: 30 x 30 km around ({CENTER_LAT}, {CENTER_LNG}); {ONLINE_SHARE:.0%} of workers "
        f"online (only those are indexed); skills: each of {len(SKILLS)} with p={SKILL_P} (at "
        f"least one); verified {VERIFIED_P:.0%}, busy {BUSY_P:.0%}, stale fix {STALE_P:.0%}"
    )
    L.append(
        f"- clustered: {N_HOTSPOTS} hotspots, gaussian sigma {HOTSPOT_SIGMA_M:.0f} m, "
        f"{BACKGROUND_SHARE:.0%} uniform background"
    )
    L.append(
        f"- queries: top {LIMIT} eligible within r, {cfg.queries} measured per (size, "
        f"distribution, radius, engine) after {cfg.warmup} warm-up queries on other points; "
        "half near hotspots, half uniform; half with one required skill; sequential, "
        "one at a time, "
        + ("engines interleaved per query" if cfg.interleave else "engine after engine")
        + "; latency = perf_counter around the awaited call (client included)"
    )
    L.append(f"- run time: {elapsed / 60:.1f} min{' (--quick)' if cfg.quick else ''}")
    L.append("")

    L.append("## Latency (microseconds)")
    L.append("")
    L.append(
        "| workers (online) | distribution | r (m) | ours p50 | ours p99 | GEOSEARCH p50 | "
        "GEOSEARCH p99 | PostGIS p50 | PostGIS p99 | brute p50 | brute p99 | "
        "ours/GEO p50, p99 | ours/PostGIS p50, p99 | p99 targets |"
    )
    L.append("|" + "---|" * 14)
    misses: list[str] = []
    for c in cases:
        for r in RADII:
            o, g, p, b = (c.stats[r, n] for n in ("ours", "GEOSEARCH", "PostGIS", "brute force"))
            rg50, rg99 = o.p(50) / g.p(50), o.p(99) / g.p(99)
            rp50, rp99 = o.p(50) / p.p(50), o.p(99) / p.p(99)
            ok_g, ok_p = rg99 <= 0.5, rp99 <= 1.0
            verdict = (
                ("<=0.5x GEO ok" if ok_g else "<=0.5x GEO MISSED")
                + ", "
                + ("<=PostGIS ok" if ok_p else "<=PostGIS MISSED")
            )
            if not ok_g:
                misses.append(f"{fmt_size(c.size)} {c.dist} r={r}: ours/GEO p99 = {rg99:.2f}")
            if not ok_p:
                misses.append(f"{fmt_size(c.size)} {c.dist} r={r}: ours/PostGIS p99 = {rp99:.2f}")
            L.append(
                f"| {fmt_size(c.size)} ({c.online}) | {c.dist} | {r} | {o.p(50):.0f} | "
                f"{o.p(99):.0f} | {g.p(50):.0f} | {g.p(99):.0f} | {p.p(50):.0f} | {p.p(99):.0f} | "
                f"{b.p(50):.0f} | {b.p(99):.0f} | {rg50:.2f}, {rg99:.2f} | {rp50:.2f}, {rp99:.2f} "
                f"| {verdict} |"
            )
    L.append("")

    growth_ok = True
    if len(cfg.sizes) > 1:
        small, big = min(cfg.sizes), max(cfg.sizes)
        L.append(f"## Growth of our p99 from {fmt_size(small)} to {fmt_size(big)} workers")
        L.append("")
        L.append(
            f"| distribution | r (m) | ours p99 {fmt_size(small)} | ours p99 {fmt_size(big)} | "
            "growth | target <= 1.5x |"
        )
        L.append("|---|---|---|---|---|---|")
        by = {(c.size, c.dist): c for c in cases}
        for dist in DISTRIBUTIONS:
            for r in RADII:
                a, z = by[small, dist].stats[r, "ours"].p(99), by[big, dist].stats[r, "ours"].p(99)
                ok = z / a <= 1.5
                growth_ok &= ok
                if not ok:
                    misses.append(f"{dist} r={r}: p99 growth {z / a:.2f}x")
                L.append(
                    f"| {dist} | {r} | {a:.0f} | {z:.0f} | {z / a:.2f}x | "
                    f"{'ok' if ok else 'MISSED'} |"
                )
        L.append("")

    L.append("## Correctness against brute force")
    L.append("")
    L.append(
        "exact = share of queries whose id list equals the brute-force top 50 (ordered by "
        f"distance, then id; ties within {TOL_M:g} m may swap); recall = share of the true top 50 "
        "returned (mean). max err = largest |reported - true haversine distance| in metres. "
        "GEOSEARCH trips = mean round trips per search."
    )
    L.append("")
    L.append(
        "| workers | distribution | r (m) | mean results | ours exact | ours max err | "
        "GEO exact | GEO recall | GEO max err | GEO trips | PostGIS exact | PostGIS recall | "
        "PostGIS max err |"
    )
    L.append("|" + "---|" * 13)
    for c in cases:
        for r in RADII:
            o, g, p = (c.stats[r, n] for n in ("ours", "GEOSEARCH", "PostGIS"))
            n = len(o.lat_us)
            mean = c.stats[r, "brute force"].results / n
            L.append(
                f"| {fmt_size(c.size)} | {c.dist} | {r} | {mean:.1f} | {o.exact / n:.4f} | "
                f"{o.max_err:.1e} | {g.exact / n:.4f} | "
                f"{g.recall_sum / n:.4f} | {g.max_err:.2f} | {c.geo_trips[r]:.2f} | "
                f"{p.exact / n:.4f} | {p.recall_sum / n:.4f} | {p.max_err:.1e} |"
            )
    L.append("")
    examples = [
        f"- {fmt_size(c.size)} {c.dist} {e}: {f}"
        for c in cases
        for r in RADII
        for e in ("GEOSEARCH", "PostGIS")
        for f in c.stats[r, e].failures[:1]
    ]
    if examples:
        L.append("Examples of inexact answers (first per case and engine):")
        L.append("")
        L += examples[:16]
        L.append("")

    L.append("## Redis memory and load time")
    L.append("")
    L.append(
        "| workers (online) | distribution | ours bytes/online worker | ours keys | "
        "GEO bytes/online worker | ours/GEO | load s ours, GEO, PostGIS | other jobs' CPU while "
        "measuring (% of a core) |"
    )
    L.append("|---|---|---|---|---|---|---|---|")
    for c in cases:
        m = c.memory
        L.append(
            f"| {fmt_size(c.size)} ({c.online}) | {c.dist} | {m['ours']:.0f} | "
            f"{m['ours_keys']:.0f} | {m['GEOSEARCH']:.0f} | {m['ours'] / m['GEOSEARCH']:.1f} | "
            f"{c.load_s['ours']:.1f}, {c.load_s['GEOSEARCH']:.1f}, {c.load_s['PostGIS']:.1f} | "
            f"{c.other_cpu:.0f} |"
        )
    L.append("")

    L.append("## Where our search spends its time")
    L.append("")
    L.append(
        f"{cfg.profile} further points per row (not measured above), microseconds unless "
        "noted. script call = the FCALL alone with prepared arguments, through the client, as"
        " seen by it; public = the whole `search()` call (argument packing and reply parsing "
        "included); server = its execution time inside Redis (INFO commandstats); in commands"
        " = the part of it spent inside the ZRANGEBYSCORE/ZCOUNT/HGET/HMGET/ZCARD calls the "
        "script made (SLOWLOG logs them too), the rest being Lua (cell bounds, heap, record "
        "decoding, haversine, top-50 keeping, reply); commands = how many it made; ranges, "
        "counts, entries, HMGETs = of which ZRANGEBYSCORE (cells read), ZCOUNT (cells "
        "counted), HGET (cell entries read: one per cell split; start cells come with their "
        "centres), HMGET (record batches), means; scanned = worker records read (mean, p99); "
        "empty = the same call on an empty community (round trip + fixed cost of the script)."
    )
    L.append("")
    L.append(
        "| workers | distribution | r (m) | ranges | counts | entries | HMGETs | scanned (p99) | "
        "script call p50, p99 | public p50 | server p50, p99 | in commands p50 | commands p50 | "
        "empty p50, p99 |"
    )
    L.append("|" + "---|" * 14)
    for c in cases:
        for r in RADII:
            f = c.profile[r]
            L.append(
                f"| {fmt_size(c.size)} | {c.dist} | {r} | {f['ranges']:.1f} | {f['counts']:.1f} | "
                f"{f['hgets']:.1f} | {f['hmgets']:.1f} | "
                f"{f['scanned']:.0f} ({f['scanned_p99']:.0f}) | "
                f"{f['call50']:.0f}, {f['call99']:.0f} | {f['public50']:.0f} | "
                f"{f['server50']:.0f}, {f['server99']:.0f} | {f['inner50']:.0f} | "
                f"{f['cmds50']:.0f} | {f['empty50']:.0f}, {f['empty99']:.0f} |"
            )
    L.append("")

    L.append("## Targets")
    L.append("")
    L.append(
        "- our search p99 at or below 0.5x GEOSEARCH's and at or below PostGIS's at every size "
        "and radius; p99 growing no more than 1.5x from 100k to 1M"
    )
    if misses:
        L.append(f"- MISSED in {len(misses)} place(s):")
        L += [f"  - {m}" for m in misses]
    else:
        L.append("- all met")
    if len(cfg.sizes) < 2:
        L.append("- growth not measured (one size only)")
    L.append("")

    L.append("## PostGIS plans")
    L.append("")
    for c in cases:
        L.append(f"{fmt_size(c.size)} {c.dist} (r = 2000 m, one skill): `{c.explain_line}`")
        L.append("")
    L.append("<details><summary>full plans (last case)</summary>")
    L.append("")
    L.append("```")
    L.append(cases[-1].explain)
    L.append("```")
    L.append("")
    L.append("</details>")
    L.append("")
    return "\n".join(L)


# --- main ---------------------------------------------------------------------------------------


async def run_all(cfg: Config, db_url: str, redis_url: str) -> tuple[list[CaseResult], list[str]]:
    pg = await asyncpg.connect(**asyncpg_params(db_url))
    await pg.execute("SET jit = off")
    client = Redis.from_url(redis_url)
    info = await client.info("server")
    await client.aclose()
    versions = [
        f"- Redis {info['redis_version']}, PostgreSQL {await pg.fetchval('SHOW server_version')}",
    ]
    await pg.execute("CREATE EXTENSION IF NOT EXISTS postgis")
    versions[0] += f", PostGIS {await pg.fetchval('SELECT postgis_lib_version()')}"
    versions.append(
        f"- client: redis-py (hiredis), asyncpg, {asyncio.get_running_loop().__class__.__module__}"
        " event loop; all servers on unix sockets on the same machine; PostgreSQL fsync off, "
        "shared_buffers 128MB, jit off"
    )
    log("warming the H3 geometry cache for the city")
    cases = []
    try:
        for size in cfg.sizes:
            for dist in DISTRIBUTIONS:
                cases.append(await run_case(cfg, size, dist, redis_url, pg))
    finally:
        await pg.close()
    return cases, versions


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", help="total workers per city, comma separated (100000,1000000)")
    ap.add_argument("--queries", type=int, help="measured queries per row (1000)")
    ap.add_argument("--warmup", type=int, help="warm-up queries per row (200)")
    ap.add_argument("--profile", type=int, help="profiled queries per row (300)")
    ap.add_argument("--quick", action="store_true", help="a smoke run: small sizes, few queries")
    ap.add_argument(
        "--interleave",
        action="store_true",
        help="send each query to every engine in turn (default: all queries to one engine, "
        "then the next)",
    )
    ap.add_argument(
        "--wait-quiet",
        type=int,
        default=0,
        metavar="SECONDS",
        help="before measuring each case, wait up to this long for other jobs on the machine "
        "to drop under 20%% of a core",
    )
    a = ap.parse_args(argv)
    cfg = Config(
        sizes=[int(s) for s in a.sizes.split(",")] if a.sizes
        else ([10_000, 100_000] if a.quick else [100_000, 1_000_000]),
        queries=a.queries or (100 if a.quick else 1000),
        warmup=a.warmup or (30 if a.quick else 200),
        profile=a.profile or (30 if a.quick else 300),
        quick=a.quick,
        interleave=a.interleave,
        wait_quiet=a.wait_quiet,
    )  # fmt: skip
    started = datetime.now()
    t0 = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix="dispatch-bench-"))
    root.chmod(0o755)  # the unprivileged server user must reach its directory
    servers = LocalServers(root, durable=False)
    results_dir = Path(__file__).with_name("results")
    results_dir.mkdir(exist_ok=True)
    stamp = started.strftime("%Y%m%d-%H%M%S")
    try:
        db_url, redis_url = servers.start()
        log(f"servers up under {root}")
        try:
            import uvloop

            runner = uvloop.run
        except ImportError:
            runner = asyncio.run
        cases, versions = runner(run_all(cfg, db_url, redis_url))
    except IndexBug as bug:
        text = str(bug)
        print(text)
        (results_dir / f"search-{stamp}-FAILED.md").write_text(text + "\n")
        return 1
    finally:
        servers.stop()
        shutil.rmtree(root, ignore_errors=True)
    md = report(cfg, cases, versions, started.strftime("%Y-%m-%d %H:%M"), time.perf_counter() - t0)
    print(md)
    path = results_dir / f"search-{stamp}.md"
    path.write_text(md)
    log(f"written {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
