"""Radius search while location ingest runs at full rate: our Redis live index against PostGIS.

    .venv/bin/python -m bench.search_ingest [--size 100000] [--idle 20] [--load 30]
        [--rate 5000] [--writers 4] [--batch 500] [--many] [--wait-quiet S] [--nice N] [--quick]

One benchmark, one long file on purpose; the city, the queries and both engines' search calls
are bench/search.py's (imported, not copied), what the benchmarks share lives in `bench/lib/`.

One run starts private PostgreSQL+PostGIS and Redis (`bench.lib.servers.private_servers`; the
bench's table lives in its own schema, beside the service's migrated one), builds
bench/search.py's clustered city (default 100k workers, ~20k online, in one community) and loads
it into both engines. Then it measures each engine's radius search in three windows:

- idle: nothing else runs;
- paced: an ingest child process (its own interpreter, started with `spawn`) offers the engine
  `--rate` pings/s (default 5,000, the same for both: 20k online workers pinging every 4 s);
- full: the same child feeds the engine as fast as it takes the pings (each writer sends its
  next batch when the last is answered).

The search is measured after a short ramp of the ingest. Order: ours idle, PostGIS idle, ours
paced, PostGIS paced, ours full, PostGIS full (both idle windows see the data as loaded;
PostgreSQL's dead tuples cannot slow ours); the PostGIS table is VACUUMed before each of its
ingest windows, so each starts clean.

**The pings** (identical for both engines). Writer j of W owns the workers whose position in the
id list is j mod W (disjoint, so PostgreSQL writers never wait on each other's row locks). In
round k every worker of the slice pings once: a 10 m step in a random direction (numpy, seed
[SEED, 9, j, k]) stamped NOW + k s (each ingest window's rounds numbered after the last's), so a
ping is always newer than the last and under the speed limit; the slice is sent in batches of B
pings, one batch in flight per writer.

- ours, per batch: B concurrent `RedisLiveIndex.move(community, worker, [Fix(lat, lng, ts)],
  in_area=[True])` calls (one EVALSHA of move.lua each, through the index's `Pipeliner`: the
  calls of a batch share socket writes). That is what the service does per worker for a ping
  (`WorkerService.report`): staleness and speed checks, the record rewritten, the worker's sorted
  sets refiled when it changes fine H3 cell (and the cell's entries written the first time a cell
  is entered). Not included: HTTP, auth, the area test, and the service's write-behind of last
  positions to PostgreSQL (coalesced, one row per worker per 2 s).
  With `--many`, ours is fed batched as PostGIS is: per batch ONE `RedisLiveIndex.move_many(
  community, [(worker, Fix(lat, lng, ts), True), ...])`, which sends the batch in move_many.lua
  calls of at most `MOVE_MANY_CHUNK` pings each, one after the other (the same checks and writes
  per ping as move.lua: both scripts run lua/common.lua's `move_worker`). The service's ping
  path does not batch across workers (each request is one `move`): `--many` measures what the
  index takes from a batching writer, batched against batched; without it, what one ping per
  call costs.
- PostGIS, per batch: ONE `UPDATE workers ... FROM unnest($1::bigint[], $2::float8[],
  $3::float8[])` through asyncpg (a prepared statement, autocommit), setting the geography
  column (GiST-indexed) and recorded_at, with the same checks in SQL: newer than the row's
  recorded_at, and at most 200 km/h from the row's position (`ST_Distance(..., false)`).

Same concurrency budget: one ingest process with W writers (default 4) of B pings (default 500)
for each engine; ours on one Redis connection (the Pipeliner), PostGIS on W connections.
Accepted pings = moves that returned ACCEPTED / rows the UPDATE reported; pings/s = accepted in
the measured search window / its length (the child counts per batch in shared memory).

**The search**: closed loop, one in flight, from this process (its own event loop, no ingest
code in it): bench/search.py's `Ours.search` (the FCALL) and `PostGIS.search` (KNN with
ST_DWithin, one prepared statement), top 50 eligible fresh workers, the same query points for
both engines and every window (half near hotspots, half uniform, half with a skill; radius
500/1000/2000/5000 m in turn). Latency = perf_counter around the awaited call.

**Checks.** While positions move no exact answer exists to compare with (the brute force would
need the positions at the instant the engine read them), so every answer with ingest is checked
for sanity: at most 50 results, no duplicate ids, every id an online worker that is eligible and
has the skill asked for, distances sorted and within the radius. After each ingest window the
ingest is stopped, the positions are read back from the engine (Redis records / the table) and
the same queries are checked EXACTLY against a brute force over those positions (as
bench/search.py does): the ingest left the index consistent.

The machine has 2 cores: the search client, the ingest child, Redis and PostgreSQL share them,
so "full rate" is what one ingest process gets through on this machine, with the search and the
engine competing for the same cores; `--nice N` runs the ingest child (and PostgreSQL's writer
backends) at niceness N, a diagnostic for how much of the search's slow-down is CPU scheduling
(Redis runs searches and moves on one thread, so it cannot be split).

Report: stdout and bench/results/search_ingest-<timestamp>.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import itertools
import math
import multiprocessing as mp
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import asyncpg
import msgpack
import numpy as np
from redis.asyncio import Redis

from bench.lib.machine import (
    log,
    machine_busy_s,
    machine_lines,
    pid_from_file,
    proc_cpu_s,
    tree,
    tree_cpu_s,
    wait_for_quiet,
)
from bench.lib.report import run_and_report
from bench.lib.servers import private_servers
from bench.search import (
    COMMUNITY,
    LIMIT,
    M_PER_DEG,
    NOW,
    RADII,
    SEED,
    SKILLS,
    Brute,
    Ours,
    PostGIS,
    Queries,
    World,
    asyncpg_params,
    make_queries,
    make_world,
    verify,
)
from geo.live.base import MAX_SPEED_MPS, Fix, MoveResult
from geo.live.redis import MOVE_MANY_CHUNK

DIST = "clustered"
STEP_M = 10.0
"""Each ping moves its worker this far, in a random direction."""
ROUND_S = 1.0
"""Round k of pings is stamped NOW + k * ROUND_S: 10 m/s, under the speed limit."""
SCHEMA = "bench"
TOL_M = 1e-6
TARGET_LOAD_VS_IDLE_P99 = 1.5
SPEED = float(MAX_SPEED_MPS)

PG_UPDATE = """
UPDATE workers AS w
SET loc = p.loc, recorded_at = $4
FROM (
    SELECT u.id, ST_SetSRID(ST_MakePoint(u.lng, u.lat), 4326)::geography AS loc
    FROM unnest($1::bigint[], $2::float8[], $3::float8[]) AS u(id, lat, lng)
) AS p
WHERE w.id = p.id AND w.recorded_at < $4
  AND ST_Distance(w.loc, p.loc, false) <= $5 * ($4 - w.recorded_at)
"""


@dataclass
class Config:
    size: int
    idle_s: float
    load_s: float
    ramp_s: float
    writers: int
    batch: int
    warmup: int
    exact: int
    rate: float
    nice: int
    wait_quiet_s: int
    quick: bool
    command: str
    many: bool = False
    """Feed ours with one `move_many` per batch instead of one `move` per ping."""
    chunk: int = MOVE_MANY_CHUNK
    """With `many`: pings per move_many.lua call."""
    pin: bool = False
    """Redis and PostgreSQL on core 1, this process and the ingest child on core 0."""


def runner() -> Any:
    try:
        import uvloop

        return uvloop.run
    except ImportError:
        return asyncio.run


# --- the ingest child ----------------------------------------------------------------------------


class Walk:
    """One writer's pings: its slice of the workers, round after round of 10 m steps."""

    def __init__(self, world: World, writer: int, writers: int, first_round: int) -> None:
        self.writer = writer
        self.ids = world.ids[writer::writers]
        self.lat = world.lat[writer::writers].copy()
        self.lng = world.lng[writer::writers].copy()
        self.round = first_round

    def next_round(self) -> tuple[list[int], list[float], list[float], float]:
        self.round += 1
        rng = np.random.default_rng([SEED, 9, self.writer, self.round])
        angle = rng.uniform(0.0, 2 * math.pi, self.ids.size)
        self.lat += STEP_M * np.cos(angle) / M_PER_DEG
        self.lng += STEP_M * np.sin(angle) / (M_PER_DEG * np.cos(self.lat * math.pi / 180))
        return (
            self.ids.tolist(),
            self.lat.tolist(),
            self.lng.tolist(),
            NOW + self.round * ROUND_S,
        )


@dataclass(frozen=True)
class Plan:
    """What the ingest child does (picklable, for the spawned process)."""

    engine: str
    url: str
    size: int
    writers: int
    batch: int
    rate: float
    """Pings/s offered over all writers; 0: full rate (each writer sends its next batch as soon
    as the last one is answered)."""
    nice: int
    first_round: int
    """Round numbers (so timestamps) start after this: each window's child starts its walks
    again from the loaded positions, stamped after every ping of the windows before."""
    many: bool = False
    """Ours: one `move_many` per batch (move_many.lua calls of `chunk` pings), not one `move`
    per ping."""
    chunk: int = MOVE_MANY_CHUNK


def ingest_child(plan: Plan, counts: Any, ready: Any, stop: Any) -> None:
    """The child's entry point: W writers feeding the engine until `stop` is set. counts[2j] =
    pings sent by writer j, counts[2j + 1] = accepted; both updated after every batch."""
    if plan.nice:
        os.nice(plan.nice)
    world = make_world(plan.size, DIST)
    walks = [Walk(world, j, plan.writers, plan.first_round) for j in range(plan.writers)]
    runner()(_ingest(plan, walks, counts, ready, stop))


async def _ingest(plan: Plan, walks: list[Walk], counts: Any, ready: Any, stop: Any) -> None:
    if plan.engine == "ours":
        client = Redis.from_url(plan.url)
        index = Ours(client).index
        index.many_chunk = plan.chunk
        await index.on_startup()
        accepted = MoveResult.ACCEPTED
        inside = [True]

        async def send(ids: list[int], lat: list[float], lng: list[float], ts: float) -> int:
            moved = await asyncio.gather(
                *(
                    index.move(COMMUNITY, w, [Fix(a, b, ts)], in_area=inside)
                    for w, a, b in zip(ids, lat, lng, strict=True)
                )
            )
            return sum(1 for m in moved if m[0] is accepted)

        async def send_many(ids: list[int], lat: list[float], lng: list[float], ts: float) -> int:
            moves = [(w, Fix(a, b, ts), True) for w, a, b in zip(ids, lat, lng, strict=True)]
            moved = await index.move_many(COMMUNITY, moves)
            return sum(1 for m in moved if m is accepted)

        senders = [send_many if plan.many else send] * len(walks)
        closers = [index.on_shutdown, client.aclose]
    else:
        conns = [
            await asyncpg.connect(**asyncpg_params(plan.url), server_settings=PG_SETTINGS)
            for _ in walks
        ]
        senders = []
        for conn in conns:
            if plan.nice:  # the writes run in the backend: it gets the same niceness
                os.setpriority(os.PRIO_PROCESS, conn.get_server_pid(), plan.nice)
            stmt = await conn.prepare(PG_UPDATE)

            async def send(
                ids: list[int],
                lat: list[float],
                lng: list[float],
                ts: float,
                stmt: Any = stmt,
            ) -> int:
                await stmt.fetch(ids, lat, lng, ts, SPEED)
                return int(stmt.get_statusmsg().split()[-1])

            senders.append(send)
        closers = [c.close for c in conns]
    every = plan.batch / (plan.rate / len(walks)) if plan.rate else 0.0
    loop = asyncio.get_running_loop()

    async def writer(j: int) -> None:
        walk, send = walks[j], senders[j]
        due = loop.time() + every * j / len(walks)  # writers spread over the interval
        while not stop.is_set():
            ids, lat, lng, ts = walk.next_round()
            for s in range(0, len(ids), plan.batch):
                if stop.is_set():
                    return
                if every:
                    due += every
                    if (wait := due - loop.time()) > 0:
                        await asyncio.sleep(wait)
                    else:
                        due = loop.time()  # behind: no catching up in a burst
                e = s + plan.batch
                n = await send(ids[s:e], lat[s:e], lng[s:e], ts)
                counts[2 * j] += len(ids[s:e])
                counts[2 * j + 1] += n

    ready.set()
    try:
        await asyncio.gather(*(writer(j) for j in range(len(walks))))
    finally:
        for close in closers:
            await close()


PG_SETTINGS = {"search_path": f"{SCHEMA},public", "jit": "off"}


class Ingest:
    """The ingest child process for one engine, and its counters."""

    def __init__(self, plan: Plan) -> None:
        ctx = mp.get_context("spawn")
        self.counts = ctx.RawArray("q", 2 * plan.writers)
        self.ready = ctx.Event()
        self.stop = ctx.Event()
        self.proc = ctx.Process(
            target=ingest_child, args=(plan, self.counts, self.ready, self.stop), daemon=True
        )

    def start(self) -> None:
        self.proc.start()
        if not self.ready.wait(60):
            raise RuntimeError("the ingest child did not start")

    def totals(self) -> tuple[int, int]:
        c = list(self.counts)
        return sum(c[0::2]), sum(c[1::2])

    def finish(self) -> None:
        self.stop.set()
        self.proc.join(30)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()
        if self.proc.exitcode not in (0, None):
            raise RuntimeError(f"the ingest child exited with {self.proc.exitcode}")


# --- searching -----------------------------------------------------------------------------------


def radius_of(i: int) -> int:
    # make_queries alternates near/uniform every query and skill every two: radii every four.
    return RADII[(i // 4) % len(RADII)]


@dataclass
class Window:
    engine: str
    phase: str
    lat_us: np.ndarray
    radii: np.ndarray
    seconds: float
    results: int
    insane: int
    examples: list[str] = field(default_factory=list)
    sent: int = 0
    accepted: int = 0
    cpu: dict[str, float] = field(default_factory=dict)
    exact: int = 0
    exact_of: int = 0
    exact_why: list[str] = field(default_factory=list)
    offered: float = 0.0
    table: dict[str, int] = field(default_factory=dict)
    redis: dict[str, tuple[int, int]] = field(default_factory=dict)
    """INFO commandstats over the window: (calls, usec) of FCALL (searches), EVALSHA (moves)."""

    def p(self, q: float, radius: int | None = None) -> float:
        v = self.lat_us if radius is None else self.lat_us[self.radii == radius]
        return float(np.percentile(v, q)) if v.size else math.nan

    @property
    def queries(self) -> int:
        return int(self.lat_us.size)

    @property
    def pings_s(self) -> float:
        return self.accepted / self.seconds if self.seconds else 0.0


class Sanity:
    """What can be checked of an answer while positions move."""

    def __init__(self, world: World) -> None:
        self.ids = world.ids
        self.eligible = world.eligible
        self.skills = world.skills

    def why(self, got: list[int], dists: list[float], radius: float, skill: str | None) -> str:
        if len(got) > LIMIT:
            return f"{len(got)} results"
        if len(set(got)) != len(got):
            return "duplicate ids"
        if not got:
            return ""
        g = np.asarray(got, dtype=np.int64)
        pos = np.minimum(np.searchsorted(self.ids, g), self.ids.size - 1)
        if not (self.ids[pos] == g).all():
            return f"ids not online workers: {g[self.ids[pos] != g][:5].tolist()}"
        if not self.eligible[pos].all():
            return f"ineligible ids: {g[~self.eligible[pos]][:5].tolist()}"
        if skill is not None:
            bit = 1 << SKILLS.index(skill)
            if not ((self.skills[pos] & bit) != 0).all():
                return f"ids without {skill}"
        d = np.asarray(dists, dtype=float)
        if (np.diff(d) < -TOL_M).any():
            return "distances not sorted"
        if d[-1] > radius + TOL_M:
            return f"distance {d[-1]!r} beyond r = {radius}"
        return ""


async def search_window(
    engine: Any, q: Queries, seconds: float, sanity: Sanity, phase: str
) -> Window:
    lat_us: list[float] = []
    radii: list[int] = []
    results = insane = 0
    examples: list[str] = []
    clock = time.perf_counter
    start = clock()
    end = start + seconds
    i = 0
    n = len(q)
    while True:
        k = i % n
        la, ln, sk, r = q.lat[k], q.lng[k], q.skill[k], radius_of(k)
        t0 = clock()
        raw = await engine.search(la, ln, r, sk)
        t1 = clock()
        lat_us.append((t1 - t0) * 1e6)
        radii.append(r)
        got, dists = engine.unpack(raw)
        results += len(got)
        if why := sanity.why(got, dists, r, sk):
            insane += 1
            if len(examples) < 3:
                examples.append(f"({la!r}, {ln!r}) r={r} skill={sk}: {why}")
        i += 1
        if t1 >= end:
            break
    return Window(engine.name, phase, np.asarray(lat_us), np.asarray(radii), clock() - start,
                  results, insane, examples)  # fmt: skip


async def warm(engine: Any, q: Queries) -> None:
    for k in range(len(q)):
        await engine.search(q.lat[k], q.lng[k], radius_of(k), q.skill[k])


# --- reading positions back, exact checks --------------------------------------------------------


async def positions_ours(client: Redis, world: World) -> World:
    raw = await client.hgetall(f"live:{{c:{COMMUNITY}}}:w")
    by_id = {int(k): msgpack.unpackb(v) for k, v in raw.items()}
    rec = [by_id[int(i)] for i in world.ids]
    return replace(
        world,
        lat=np.array([r[0] for r in rec], dtype=float),
        lng=np.array([r[1] for r in rec], dtype=float),
        ts=np.array([r[2] for r in rec], dtype=float),
    )


async def positions_pg(conn: asyncpg.Connection, world: World) -> World:
    rows = await conn.fetch(
        "SELECT id, ST_Y(loc::geometry), ST_X(loc::geometry), recorded_at FROM workers ORDER BY id"
    )
    if [r[0] for r in rows] != world.ids.tolist():
        raise RuntimeError("the PostGIS table lost or gained workers")
    return replace(
        world,
        lat=np.array([r[1] for r in rows], dtype=float),
        lng=np.array([r[2] for r in rows], dtype=float),
        ts=np.array([r[3] for r in rows], dtype=float),
    )


async def exact_check(engine: Any, now: World, q: Queries, n: int, w: Window) -> None:
    brute = Brute(now)
    for k in range(min(n, len(q))):
        la, ln, sk, r = q.lat[k], q.lng[k], q.skill[k], radius_of(k)
        got, got_d = engine.unpack(await engine.search(la, ln, r, sk))
        d, ranked = brute.search(la, ln, r, sk)
        v = verify(brute, d, ranked, r, sk, got, got_d)
        w.exact_of += 1
        if v.exact:
            w.exact += 1
        elif len(w.exact_why) < 3:
            w.exact_why.append(f"({la!r}, {ln!r}) r={r} skill={sk}: {v.why}")


# --- the run -------------------------------------------------------------------------------------


async def redis_calls(client: Redis) -> dict[str, tuple[int, int]]:
    """INFO commandstats: (calls, usec) of the search's FCALL and the moves' EVALSHA."""
    stats = await client.info("commandstats")
    return {
        k: (int(stats.get(f"cmdstat_{k}", {}).get("calls", 0)),
            int(stats.get(f"cmdstat_{k}", {}).get("usec", 0)))
        for k in ("fcall", "evalsha")
    }  # fmt: skip


def calls_delta(
    a: dict[str, tuple[int, int]], b: dict[str, tuple[int, int]]
) -> dict[str, tuple[int, int]]:
    return {k: (b[k][0] - a[k][0], b[k][1] - a[k][1]) for k in a}


ENGINE_CORE, CLIENT_CORE = 1, 0


def pin_engines(cpu: Cpu) -> None:
    """`--pin`: Redis and every PostgreSQL process (the postmaster first: the backends it forks
    later inherit the mask) on one core, this process on the other (the ingest child, spawned
    later, inherits it): the engine has a core of its own, as on a machine of its own, and the
    search's tail shows what the engine does under ingest, not the scheduler sharing a core."""
    engine = [cpu.redis_pid] if cpu.redis_pid else []
    if cpu.pg_pid:
        engine += tree(cpu.pg_pid)
    for pid in engine:
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(pid, {ENGINE_CORE})
    os.sched_setaffinity(0, {CLIENT_CORE})
    log(f"pinned {len(engine)} engine processes to core {ENGINE_CORE}, clients to {CLIENT_CORE}")


class Cpu:
    """CPU seconds of the processes that matter, for % of a core over a window."""

    def __init__(self, root: Any, servers: Any) -> None:
        self.redis_pid = pid_from_file(servers.redis.root / "redis.pid")
        self.pg_pid = pid_from_file(servers.postgres.pgdata / "postmaster.pid")

    def snap(self, child: int | None) -> dict[str, float]:
        return {
            "search client": time.process_time(),
            "ingest client": proc_cpu_s(child) if child else 0.0,
            "redis": proc_cpu_s(self.redis_pid) if self.redis_pid else 0.0,
            "postgres": tree_cpu_s(self.pg_pid) if self.pg_pid else 0.0,
            "machine": machine_busy_s(),
        }

    @staticmethod
    def pct(a: dict[str, float], b: dict[str, float], seconds: float) -> dict[str, float]:
        out = {k: 100 * (b[k] - a[k]) / seconds for k in a}
        out["other"] = out.pop("machine") - sum(out.values())
        return out


async def pg_table(pg: asyncpg.Connection) -> dict[str, int]:
    row = await pg.fetchrow(
        "SELECT n_dead_tup, n_live_tup, autovacuum_count, pg_relation_size('workers_loc_idx') AS "
        "gist FROM pg_stat_user_tables WHERE schemaname = $1 AND relname = 'workers'",
        SCHEMA,
    )
    return dict(row) if row else {}


_windows = itertools.count(1)


async def load_window(
    cfg: Config,
    name: str,
    engine: Any,
    url: str,
    phase: str,
    rate: float,
    measured: Queries,
    warmup: Queries,
    sanity: Sanity,
    cpu: Cpu,
    client: Redis,
    pg: asyncpg.Connection,
    world: World,
) -> Window:
    """Searches while the ingest child feeds the engine (at `rate` pings/s, 0: full rate), then
    the exact check over the positions the ingest left."""
    if name == "PostGIS":
        await pg.execute("VACUUM workers")  # each window starts from a vacuumed table
    window = next(_windows)
    plan = Plan(name, url, cfg.size, cfg.writers, cfg.batch, rate, cfg.nice, window * 10**6,
                cfg.many, cfg.chunk)  # fmt: skip
    ingest = Ingest(plan)
    ingest.start()
    try:
        await asyncio.sleep(cfg.ramp_s)
        await warm(engine, warmup)
        gc.collect()
        sent0, acc0 = ingest.totals()
        a, r0 = cpu.snap(ingest.proc.pid), await redis_calls(client)
        w = await search_window(engine, measured, cfg.load_s, sanity, phase)
        w.cpu = Cpu.pct(a, cpu.snap(ingest.proc.pid), w.seconds)
        w.redis = calls_delta(r0, await redis_calls(client))
        sent1, acc1 = ingest.totals()
    finally:
        ingest.finish()
    w.sent, w.accepted, w.offered = sent1 - sent0, acc1 - acc0, rate
    log(f"{name} {phase} ingest: {w.queries} searches, p50 {w.p(50):.0f} p99 "
        f"{w.p(99):.0f} us; {w.pings_s:,.0f} pings/s accepted ({w.sent:,} sent, "
        f"{w.accepted:,} accepted in the window); {w.insane} insane answers")  # fmt: skip
    if name == "PostGIS":
        w.table = await pg_table(pg)
    now = await (positions_ours(client, world) if name == "ours" else positions_pg(pg, world))
    moved = float(np.mean(now.ts > NOW))
    await exact_check(engine, now, measured, cfg.exact, w)
    log(f"{name} after ingest: {moved:.0%} of workers moved; exact {w.exact}/{w.exact_of}")
    w.examples += w.exact_why
    return w


async def run(cfg: Config, root: Any, servers: Any, db_url: str, redis_url: str) -> dict:
    world = make_world(cfg.size, DIST)
    log(f"city: {cfg.size} workers, {world.online} online, {int(world.eligible.sum())} eligible")
    pg_kw = asyncpg_params(db_url)
    boot = await asyncpg.connect(**pg_kw)
    await boot.execute("CREATE EXTENSION IF NOT EXISTS postgis")
    await boot.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
    # PostGIS.load starts with DROP TABLE IF EXISTS workers: with this placeholder the name
    # resolves to the bench schema's table, never to the service's migrated public.workers.
    await boot.execute(f"CREATE TABLE IF NOT EXISTS {SCHEMA}.workers (id bigint)")
    versions = (
        f"PostgreSQL {await boot.fetchval('SHOW server_version')}, PostGIS "
        f"{await boot.fetchval('SELECT postgis_lib_version()')}"
    )
    await boot.close()
    pg = await asyncpg.connect(**pg_kw, server_settings=PG_SETTINGS)
    client = Redis.from_url(redis_url)
    ours, pgis = Ours(client), PostGIS(pg)
    t0 = time.perf_counter()
    await ours.load(redis_url, world)
    await ours.index.on_startup()
    load_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    await pgis.load(world)
    load_pg = time.perf_counter() - t0
    explain = await pgis.explain(float(world.lat[0]), float(world.lng[0]), 2000, SKILLS[0])
    if "workers_loc_idx" not in explain:
        raise RuntimeError("PostGIS plan does not use the GiST index:\n" + explain)
    log(f"loaded: ours {load_ours:.1f} s, PostGIS {load_pg:.1f} s")
    engines = {"ours": ours, "PostGIS": pgis}
    urls = {"ours": redis_url, "PostGIS": db_url}
    sanity = Sanity(world)
    measured, warmup = make_queries(2000, 2), make_queries(cfg.warmup, 3)
    cpu = Cpu(root, servers)
    if cfg.pin:
        pin_engines(cpu)
    windows: list[Window] = []
    quiet = wait_for_quiet(cfg.wait_quiet_s) if cfg.wait_quiet_s else math.nan
    gc.collect()
    gc.freeze()
    for name in engines:
        e = engines[name]
        await warm(e, warmup)
        gc.collect()
        a, r0 = cpu.snap(None), await redis_calls(client)
        w = await search_window(e, measured, cfg.idle_s, sanity, "idle")
        w.cpu = Cpu.pct(a, cpu.snap(None), w.seconds)
        w.redis = calls_delta(r0, await redis_calls(client))
        windows.append(w)
        log(f"{name} idle: {w.queries} searches, p50 {w.p(50):.0f} p99 {w.p(99):.0f} us")
    phases = [("paced", cfg.rate)] if cfg.rate else []
    phases.append(("full", 0.0))
    for phase, rate in phases:
        for name in engines:
            windows.append(
                await load_window(cfg, name, engines[name], urls[name], phase, rate, measured,
                                  warmup, sanity, cpu, client, pg, world)
            )  # fmt: skip
    gc.unfreeze()
    await ours.index.on_shutdown()
    await client.aclose()
    await pg.close()
    return {"world": world, "windows": windows, "versions": versions, "quiet": quiet,
            "load": (load_ours, load_pg)}  # fmt: skip


PHASES = ("idle", "paced", "full")
CPU_KEYS = ("search client", "ingest client", "redis", "postgres", "other")


def report(cfg: Config, out: dict, started: datetime, elapsed: float) -> str:
    world: World = out["world"]
    by = {(w.engine, w.phase): w for w in out["windows"]}
    rows = [by[e, p] for p in PHASES for e in ("ours", "PostGIS") if (e, p) in by]
    oi, of, pf = by["ours", "idle"], by["ours", "full"], by["PostGIS", "full"]
    L = [f"# Search under ingest, {started:%Y-%m-%d %H:%M} UTC", ""]
    L += machine_lines(
        "shared by the search client, the ingest child, Redis and PostgreSQL",
        "no HTTP server: both engines driven directly",
    )
    L += [
        f"- {out['versions']}",
        f"- Command: `{cfg.command}`",
        f"- City: bench/search.py's {DIST} city, {cfg.size:,} workers, {world.online:,} online "
        f"in one community, {int(world.eligible.sum()):,} eligible",
        f"- Windows: idle {cfg.idle_s:g} s; with ingest {cfg.load_s:g} s each (after a "
        f"{cfg.ramp_s:g} s ramp and {cfg.warmup} warm-up searches): paced = "
        + (f"{cfg.rate:,.0f} pings/s offered to both" if cfg.rate else "not run")
        + ", full = as fast as the engine takes them; ingest: 1 child process, "
        f"{cfg.writers} writers x batches of {cfg.batch} pings, one batch in flight per writer"
        + (f", niceness {cfg.nice}" if cfg.nice else "")
        + (
            f"; pinned (`--pin`): Redis and PostgreSQL on core {ENGINE_CORE}, the search "
            f"client and the ingest child on core {CLIENT_CORE}"
            if cfg.pin
            else ""
        )
        + ("; ours fed with one `move_many` per batch (`--many`)" if cfg.many else ""),
        "- Order: ours idle, PostGIS idle, then per ingest level ours, PostGIS; VACUUM of the "
        "PostGIS table before each of its ingest windows",
        f"- Load time: ours {out['load'][0]:.1f} s, PostGIS {out['load'][1]:.1f} s; run time "
        f"{elapsed / 60:.1f} min"
        + (
            f"; other jobs used {out['quiet']:.0f}% of a core before measuring"
            if not math.isnan(out["quiet"])
            else ""
        ),
        "",
        "## Search latency and ingest (microseconds)",
        "",
        "| engine | ingest | searches/s | search p50 | search p99 | p99 / idle p99 | pings/s "
        "accepted | insane answers | CPU % search / ingest / redis / pg / other |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for w in rows:
        idle = by[w.engine, "idle"]
        what = {"idle": "none", "paced": f"paced {w.offered:,.0f}/s", "full": "full rate"}
        L.append(
            f"| {w.engine} | {what[w.phase]} | {w.queries / w.seconds:,.0f} | {w.p(50):.0f} | "
            f"{w.p(99):.0f} | {w.p(99) / idle.p(99):.2f}x | "
            + (f"{w.pings_s:,.0f}" if w.phase != "idle" else "—")
            + f" | {w.insane} | "
            + " / ".join(f"{w.cpu.get(k, 0):.0f}" for k in CPU_KEYS)
            + " |"
        )
    L += ["", "By radius (p50 / p99, microseconds):", ""]
    L.append("| r (m) | " + " | ".join(f"{w.engine} {w.phase}" for w in rows) + " |")
    L.append("|---:|" + "---:|" * len(rows))
    for r in RADII:
        L.append(f"| {r} | " + " | ".join(f"{w.p(50, r):.0f} / {w.p(99, r):.0f}" for w in rows)
                 + " |")  # fmt: skip
    ok_p50 = of.p(50) < pf.p(50)
    ok_p99 = of.p(99) < pf.p(99)
    ok_pings = of.pings_s > pf.pings_s
    ratio = of.p(99) / oi.p(99)
    ok_ratio = ratio <= TARGET_LOAD_VS_IDLE_P99
    mark = {True: "**met**", False: "**MISSED**"}
    L += [
        "",
        "## Targets (full-rate ingest)",
        "",
        f"- ours ahead of PostGIS, search: p50 {of.p(50):.0f} vs {pf.p(50):.0f} us "
        f"({mark[ok_p50]}), p99 {of.p(99):.0f} vs {pf.p(99):.0f} us ({mark[ok_p99]})",
        f"- ours ahead of PostGIS, pings/s accepted: {of.pings_s:,.0f} vs {pf.pings_s:,.0f} "
        f"({mark[ok_pings]}, {of.pings_s / max(pf.pings_s, 1):.2f}x)",
        f"- our search p99 under full ingest <= {TARGET_LOAD_VS_IDLE_P99}x our idle p99: "
        f"{of.p(99):.0f} / {oi.p(99):.0f} = {ratio:.2f}x ({mark[ok_ratio]})",
        "",
        "## Checks",
        "",
        "- With ingest (every answer): at most 50 results, no duplicates, ids of online, "
        "eligible workers with the skill asked for, distances sorted and within r. Exact "
        "answers cannot be checked while positions move.",
        "- After each ingest window, with the ingest stopped: the first queries again, checked "
        "exactly against a brute force over the positions read back from the engine.",
    ]
    for w in rows:
        if w.phase == "idle":
            continue
        idle = by[w.engine, "idle"]
        L.append(
            f"- {w.engine} {w.phase}: {w.insane} of {w.queries:,} answers failed the sanity "
            f"checks; mean results {w.results / max(w.queries, 1):.1f} (idle "
            f"{idle.results / max(idle.queries, 1):.1f}); afterwards {w.exact} of {w.exact_of} "
            "exact"
            + (
                f"; table after the window: {w.table['n_dead_tup']:,} dead / "
                f"{w.table['n_live_tup']:,} live tuples, {w.table['autovacuum_count']} "
                f"autovacuum run(s) so far, GiST index {w.table['gist'] / 2**20:.1f} MiB"
                if w.table
                else ""
            )
        )
        L += [f"  - {x}" for x in w.examples]
    L += [
        "",
        "## Inside Redis (ours)",
        "",
        "INFO commandstats over each window: execution time inside Redis per search (FCALL) "
        "and per move call (EVALSHA: "
        + (
            f"move_many.lua, up to {cfg.chunk} pings a call"
            if cfg.many
            else "move.lua, one ping a call"
        )
        + "), and the share of the window Redis spent running them.",
        "",
        "| window | searches | µs a search | move calls | µs a move call | Redis busy with "
        "searches / moves |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for w in rows:
        if w.engine != "ours" or not w.redis:
            continue
        (fc, fu), (ec, eu) = w.redis["fcall"], w.redis["evalsha"]
        L.append(
            f"| {w.phase} | {fc:,} | {fu / max(fc, 1):.0f} | {ec:,} | "
            + (f"{eu / ec:.1f}" if ec else "—")
            + f" | {fu / w.seconds / 1e4:.0f}% / {eu / w.seconds / 1e4:.0f}% |"
        )
    L += [
        "",
        "## What each side does per ping",
        "",
        (
            "- ours: one item of a batch's `RedisLiveIndex.move_many` (move_many.lua calls of up "
            f"to {cfg.chunk} pings, one after the other: per ping the stale and speed "
            "checks, record HSET, sorted sets refiled on a fine-cell change, as move.lua), "
            "through the index's Pipeliner on one connection; the Python client computes each "
            "fix's H3 cell and packs it. The service's ping path makes one `move` per request."
            if cfg.many
            else "- ours: one `RedisLiveIndex.move` (EVALSHA of move.lua: stale and speed "
            "checks, record HSET, sorted sets refiled on a fine-cell change), the batch's calls "
            "concurrent through the index's Pipeliner on one connection; the Python client "
            "computes each fix's H3 cell and packs it, as the service does."
        ),
        "- PostGIS: one row of a batched `UPDATE ... FROM unnest(...)` (new geography, "
        "recorded_at; the same stale and speed checks in SQL), one statement per batch, "
        f"{cfg.writers} connections; every update writes a new tuple and a GiST entry "
        "(the indexed column changes, so no HOT update).",
        "- Both: the same pings (per writer j, round k: 10 m steps, seed [SEED, 9, j, k], "
        "stamped NOW + k s), the same batches, the same writers, from one child process.",
        "",
    ]
    return "\n".join(L)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench.search_ingest", description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, help="workers in the city (default 100000, ~20%% online)")
    ap.add_argument("--idle", type=float, help="seconds of idle search per engine (20)")
    ap.add_argument("--load", type=float, help="seconds of search per ingest window (30)")
    ap.add_argument("--ramp", type=float, help="seconds of ingest before measuring (3)")
    ap.add_argument("--writers", type=int, default=4, help="concurrent ingest writers (4)")
    ap.add_argument("--batch", type=int, default=500, help="pings per batch (500)")
    ap.add_argument("--exact", type=int, help="exact-checked queries after ingest (400)")
    ap.add_argument(
        "--rate",
        type=float,
        default=5_000,
        help="pings/s offered in the paced windows, the same for both engines (5000; 0: no "
        "paced windows)",
    )
    ap.add_argument(
        "--nice",
        type=int,
        default=0,
        help="run the ingest at this niceness (the child, and PostgreSQL's writer backends; "
        "Redis serves both on one thread and cannot be split): a diagnostic",
    )
    ap.add_argument(
        "--many",
        action="store_true",
        help="feed ours with one move_many per batch (batched, as PostGIS is fed) instead of one "
        "move per ping (what the service's ping path does)",
    )
    ap.add_argument(
        "--chunk",
        type=int,
        default=MOVE_MANY_CHUNK,
        help=f"with --many: pings per move_many.lua call (default {MOVE_MANY_CHUNK})",
    )
    ap.add_argument(
        "--pin",
        action="store_true",
        help="Redis and PostgreSQL on core 1, the search client and the ingest child on core 0 "
        "(the engine with a core of its own, as on its own machine)",
    )
    ap.add_argument("--quick", action="store_true", help="~1 min: 50k workers, short windows")
    ap.add_argument(
        "--wait-quiet",
        type=int,
        default=0,
        metavar="SECONDS",
        help="before measuring, wait up to this long for other jobs to quieten",
    )
    ap.add_argument("--no-write", action="store_true", help="do not write bench/results/")
    a = ap.parse_args(argv)
    q = a.quick
    cfg = Config(
        size=a.size or (50_000 if q else 100_000),
        idle_s=a.idle or (5.0 if q else 20.0),
        load_s=a.load or (8.0 if q else 30.0),
        ramp_s=a.ramp if a.ramp is not None else (2.0 if q else 3.0),
        writers=a.writers,
        batch=a.batch,
        warmup=50 if q else 200,
        exact=a.exact or (100 if q else 400),
        rate=a.rate,
        nice=a.nice,
        wait_quiet_s=a.wait_quiet,
        quick=q,
        many=a.many,
        chunk=a.chunk,
        pin=a.pin,
        command=".venv/bin/python -m bench.search_ingest "
        + " ".join(sys.argv[1:] if argv is None else argv),
    )

    def go(started: datetime) -> str:
        t0 = time.perf_counter()
        with private_servers("search-ingest") as (root, servers, db_url, redis_url):
            log(f"private servers up under {root}")
            out = runner()(run(cfg, root, servers, db_url, redis_url))
        return report(cfg, out, started, time.perf_counter() - t0)

    return run_and_report("search_ingest", go, not a.no_write)


if __name__ == "__main__":
    raise SystemExit(main())
