"""Grab-order dispatch benchmark: first-offer latency on workers' streams, and the claim race.

    .venv/bin/python -m bench.dispatch [--quick]

One benchmark, one long file on purpose: its setup, phases, checks and report read top to
bottom; what the benchmarks share lives once in `bench/lib/`.

One run:
  1. starts private PostgreSQL+PostGIS and Redis servers (`dispatch.local_servers`, not durable),
     migrates the database, and starts the service twice against them, each in ONE uvicorn
     process served as `dispatch serve` serves (`dispatch.cli.run_server`: websockets-sansio,
     75 s keep-alive), the app being `bench/serve.py`'s, with its no-op routes (started by
     `bench/dispatch_probe.py --no-probe`; bench/serve.py's own uvicorn.run differs): server ON as
     configured (offer waves on) and server OFF with `DISPATCH_AUTO=0` (posting a job stores it
     and sends no offers);
  2. sets up, in the database directly (bulk SQL: users, worker profiles verified and online,
     community memberships, a position stamped now) and then through the API, one community
     (centre 31.2304, 121.4737, radius 5 km, default waves, `location_max_age_s` 3600 so setup
     time cannot make anyone stale, `offer_ttl_s` 900 so no offer expires and no later wave goes
     out during the run) with N workers uniform within 4.5 km of the centre; the live index is
     filled by the service itself (`POST /v1/ops/communities/{id}/rebuild-index`, i.e.
     `WorkerService.rebuild`), the "station" workers (below) then send a real position ping each,
     and a search over the whole community must find every worker, available and fresh; a second
     community 20 km away (one wave to everyone: `[{"radius_m": null, "size": null}]`) gets the
     race's 100 workers the same way;
  3. first offer: opens the worker WebSocket stream (`/v1/workers/me/stream`) of every station
     worker (S workers spread over the community) on server ON, then posts jobs open-loop at a
     steady rate, each at a station's exact position (so that station is the nearest worker and
     is in the first wave), asking for one of its skills, each with its own Idempotency-Key, from
     a few residents in turn. Server ON and server OFF get the same bodies at the same rate, in
     alternating blocks (ON OFF OFF ON ...), so both see the same machine. Measured per job:
     POST → 201 response time on both servers, and on ON the time from sending the POST to the
     first `{"type": "offer"}` message for that job arriving on any open stream. Every ON job
     must get its first offer on a stream (misses must be 0), with three first-wave offers in
     the database and its station among them; OFF jobs must have no offers;
  4. claim race: 100 keep-alive connections to server ON, one per race worker, opened and
     warmed; per round a resident posts a job in the race community (all 100 workers get an
     offer), then all 100 `POST /v1/offers/{id}/accept` are written at once and their responses
     awaited; and a burst of 100 `POST /bench/noop-auth` on the same connections with the same
     tokens (the order of the two bursts alternates by round; before each, the race waits for
     the outbox relay to have handled everything due, then 0.25 s). Exactly one 200 per job, every
     other answer 409 `already_taken`; the winner completes the job (with its
     `assignment_version`) before the next round;
  5. one request at a time on one warmed connection (diagnostic): a loser's accept, the no-op,
     and a winner's accept with nobody competing, with the server CPU each costs;
  6. prints a Markdown report and writes it to bench/results/dispatch-<timestamp>.md.

The load generator is this process (uvloop; a minimal HTTP/1.1 client over raw keep-alive
connections, websockets for the streams), on the same two cores as the servers, Redis and
PostgreSQL; the report records the CPU every process used and the CPU pressure (PSI).

Investigation options (the measured numbers are from the default run):
  --probe       both servers run `bench/dispatch_probe.py` (bench/serve.py with wall-clock
                timers around the dispatch code paths and every PostgreSQL and Redis round
                trip): the report splits a job's first offer and an accept into segments and
                lists each request's round trips;
  --profile     extra, unmeasured runs with py-spy sampling server ON (py-spy is not a project
                dependency: `uv pip install --python .venv/bin/python py-spy`); raw stacks go to
                bench/results/. SQLAlchemy runs the ORM in greenlets, whose stacks py-spy sees
                without the request handler above them;
  --wait-quiet  wait for other jobs on the machine to quieten before each phase.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import gzip
import json
import math
import os
import random
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

from bench.dispatch_probe import GC_PAUSES, record_gc
from bench.lib.client import IDLE_MAX_S, Conn, Pool, http_request
from bench.lib.machine import (
    REPO,
    log,
    machine_busy_s,
    machine_lines,
    pid_from_file,
    proc_cpu_s,
    tree_cpu_s,
    wait_for_quiet,
)
from bench.lib.profiling import find_py_spy, samples, summarize_profile
from bench.lib.report import RESULTS_DIR, run_and_report
from bench.lib.server import Server
from bench.lib.servers import private_servers
from bench.lib.stats import bearer, ms, pct, verdict
from bench.lib.world import bulk_workers, spread
from dispatch.devtools.local_servers import LocalServers
from dispatch.identity.auth import issue_token
from dispatch.identity.principals import handle_user
from dispatch.infra.db import make_engine, make_sessionmaker
from dispatch.infra.wire import Pipeliner
from geo.areas import destination

SECRET = "bench-dispatch-secret-not-for-production"
TOKEN_TTL_S = 12 * 3600

CENTER = (31.2304, 121.4737)
COMMUNITY_RADIUS_M = 5_000
SPREAD_M = 4_500.0
"""Workers' homes lie uniformly within this distance of the centre."""
STATION_SPREAD_M = 4_000.0
"""Stations (workers with an open stream, where jobs are posted) lie within this distance."""
SKILLS = ("plumbing", "electrical", "cleaning", "moving", "handyman", "pet_care")
SKILLS_PER_WORKER = 2
MAIN_DISPATCH = {"location_max_age_s": 3600, "offer_ttl_s": 900}
"""Default waves ([1000 m, 3], [2500 m, 10], [everyone]); nothing goes stale or expires."""

RACE_CENTER = destination(*CENTER, 0.0, 20_000.0)
RACE_RADIUS_M = 1_000
RACE_SPREAD_M = 300.0
RACE_DISPATCH = {
    "location_max_age_s": 3600,
    "offer_ttl_s": 60,
    "waves": [{"radius_m": None, "size": None}],
    "offers_per_worker_hour": None,  # every round offers the job to all 100: no hourly cap
}
STATION_RATING = (990, 200)
"""Stations are top-rated (4.94 shown over 200 reviews): fair ranking then puts a station in
the first wave of a job posted at its position for its first ~25 offers, as the check needs,
while the ranking itself (records read, scores, rotation) runs on every wave as in service."""
RACE_SKILL = "moving"
RESIDENTS = 5
JOB_PRICE_CENTS = 5000

OFFER_WAIT_S = 5.0
"""After the last POST, how long a job's first offer may still arrive before it is a miss."""
BURST_GAP_S = 0.25
"""Pause before each burst of the race, so the server is idle when it starts."""
OUTBOX_WAIT_S = 10.0
"""How long the race waits, before a burst, for the outbox relay to finish what is due."""

TARGET_FIRST_OFFER_VS_POST = 2.0
TARGET_LOSER_VS_NOOP = 1.5


@dataclass
class Config:
    workers: int
    stations: int
    rate: float
    duration: float
    block_s: float
    warmup_s: float
    race_workers: int
    rounds: int
    warmup_rounds: int
    profile: bool
    probe: bool
    wait_quiet_s: int
    solo: int
    quick: bool
    write: bool
    command: str


# --- statistics ----------------------------------------------------------------------------------


@dataclass
class Series:
    name: str
    ms: list[float] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.ms)

    @property
    def p50(self) -> float:
        return pct(self.ms, 50)

    @property
    def p90(self) -> float:
        return pct(self.ms, 90)

    @property
    def p99(self) -> float:
        return pct(self.ms, 99)

    @property
    def max(self) -> float:
        return max(self.ms) if self.ms else math.nan

    @property
    def mean(self) -> float:
        return statistics.fmean(self.ms) if self.ms else math.nan

    def line(self) -> str:
        return (
            f"{self.name}: n {self.n}  p50 {self.p50:.2f} ms  p90 {self.p90:.2f} ms  "
            f"p99 {self.p99:.2f} ms  max {self.max:.2f} ms"
        )


# --- CPU accounting ------------------------------------------------------------------------------

CPU_KEYS = ("on", "off", "redis", "postgres", "client", "other")


class Cpu:
    """CPU seconds used by each process of the benchmark, and by the rest of the machine."""

    def __init__(self, on: Server, off: Server, servers: LocalServers) -> None:
        self.on, self.off, self.servers = on, off, servers

    def snapshot(self) -> dict[str, float]:
        redis_pid = pid_from_file(self.servers.redis.root / "redis.pid")
        pg_pid = pid_from_file(self.servers.postgres.pgdata / "postmaster.pid")
        me = resource.getrusage(resource.RUSAGE_SELF)
        ours = {
            "on": proc_cpu_s(self.on.pid),
            "off": proc_cpu_s(self.off.pid),
            "redis": proc_cpu_s(redis_pid) if redis_pid else 0.0,
            "postgres": tree_cpu_s(pg_pid) if pg_pid else 0.0,
            "client": me.ru_utime + me.ru_stime,
        }
        return {
            **ours,
            "other": machine_busy_s() - sum(ours.values()),
            "wall": time.perf_counter(),
            "stall": cpu_stall_s(),
        }

    @staticmethod
    def used(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
        """CPU seconds per process between two snapshots, and the wall time ("wall")."""
        return {k: max(0.0, after[k] - before[k]) for k in before}


def cpu_stall_s() -> float:
    """Seconds during which some runnable task waited for a CPU (PSI "some"), 0 if unknown."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        line = Path("/proc/pressure/cpu").read_text().splitlines()[0]
        return int(line.rsplit("total=", 1)[1]) / 1e6
    return 0.0


def stall_pct(used: dict[str, float]) -> float:
    return 100 * used["stall"] / max(used["wall"], 1e-9)


def other_pct(used: dict[str, float]) -> float:
    """CPU other jobs on the machine used, in % of one core."""
    return 100 * used["other"] / max(used["wall"], 1e-9)


def cpu_pct(used: dict[str, float]) -> str:
    wall = max(used["wall"], 1e-9)
    return " / ".join(f"{100 * used[k] / wall:.0f}" for k in CPU_KEYS)


# --- setup ---------------------------------------------------------------------------------------


@dataclass
class Worker:
    user_id: int
    token: str
    lat: float
    lng: float
    skills: tuple[str, ...]


@dataclass
class World:
    community_id: int
    race_community_id: int
    workers: list[Worker]
    stations: list[Worker]
    race: list[Worker]
    residents: list[str]
    """Resident tokens."""
    admin: str
    setup_s: dict[str, float]


async def setup_world(cfg: Config, base_url: str, db_url: str, redis_url: str) -> World:
    import httpx
    from redis.asyncio import Redis

    from geo.live.redis import RedisLiveIndex

    timings: dict[str, float] = {}
    started = time.perf_counter()
    engine = make_engine(db_url, pool_size=2)
    sessions = make_sessionmaker(engine)
    redis = Redis.from_url(redis_url)
    try:
        async with sessions.begin() as session:
            admin_id = await handle_user(session, "bench-admin", "admin", [])
            resident_ids = [
                await handle_user(session, f"bench-resident-{i}", "resident", [])
                for i in range(RESIDENTS)
            ]
        admin = issue_token(SECRET, admin_id, "admin", None, TOKEN_TTL_S)
        residents = [
            issue_token(SECRET, uid, "resident", None, TOKEN_TTL_S) for uid in resident_ids
        ]
        limits = httpx.Limits(max_connections=16)
        async with httpx.AsyncClient(base_url=base_url, timeout=120, limits=limits) as client:

            async def community(name: str, center: Any, radius: int, overrides: dict) -> int:
                body = {
                    "name": name,
                    "center": {"lat": center[0], "lng": center[1]},
                    "radius_m": radius,
                    "dispatch": overrides,
                }
                r = await client.post("/v1/communities", json=body, headers=bearer(admin))
                assert r.status_code == 201, r.text
                return int(r.json()["id"])

            cid = await community("Bench dispatch", CENTER, COMMUNITY_RADIUS_M, MAIN_DISPATCH)
            race_cid = await community("Bench race", RACE_CENTER, RACE_RADIUS_M, RACE_DISPATCH)

            rng = random.Random(11)
            places = spread(cfg.workers, CENTER, SPREAD_M, seed=20_241_124)
            skills = [tuple(rng.sample(SKILLS, SKILLS_PER_WORKER)) for _ in places]
            t = time.perf_counter()
            ids = await bulk_workers(sessions, "bench-w", cid, places, skills)
            race_places = spread(cfg.race_workers, RACE_CENTER, RACE_SPREAD_M, seed=7)
            race_skills = [(RACE_SKILL,)] * cfg.race_workers
            race_ids = await bulk_workers(
                sessions, "bench-race", race_cid, race_places, race_skills
            )
            timings["database rows"] = time.perf_counter() - t

            t = time.perf_counter()
            for c, n in ((cid, cfg.workers), (race_cid, cfg.race_workers)):
                r = await client.post(
                    f"/v1/ops/communities/{c}/rebuild-index", headers=bearer(admin)
                )
                assert r.status_code == 200 and r.json()["workers"] == n, r.text
            timings["index rebuild (service)"] = time.perf_counter() - t

            workers = [
                Worker(uid, "", lat, lng, sk)
                for uid, (lat, lng), sk in zip(ids, places, skills, strict=True)
            ]
            # Stations: workers spread over the community, no two close to each other.
            stations: list[Worker] = []
            for w in sorted(workers, key=lambda w: w.user_id):
                if len(stations) == cfg.stations:
                    break
                if _dist(w, CENTER) > STATION_SPREAD_M:
                    continue
                if all(_dist(w, (s.lat, s.lng)) > 150 for s in stations):
                    stations.append(w)
            if len(stations) < cfg.stations:
                raise RuntimeError(f"only {len(stations)} stations found for {cfg.stations}")
            from sqlalchemy import text

            async with sessions.begin() as s:
                await s.execute(
                    text(
                        "UPDATE workers SET rating_sum = :s, rating_count = :n "
                        "WHERE user_id = ANY(CAST(:ids AS bigint[]))"
                    ),
                    {"s": STATION_RATING[0], "n": STATION_RATING[1],
                     "ids": [w.user_id for w in stations]},
                )  # fmt: skip
            race = [
                Worker(uid, "", lat, lng, sk)
                for uid, (lat, lng), sk in zip(race_ids, race_places, race_skills, strict=True)
            ]
            for w in (*stations, *race):
                w.token = issue_token(SECRET, w.user_id, "worker", None, TOKEN_TTL_S)

            # A real position ping from every worker that will be measured (server-stamped now).
            t = time.perf_counter()
            gate = asyncio.Semaphore(16)

            async def ping(w: Worker) -> None:
                async with gate:
                    r = await client.post(
                        "/v1/workers/me/location",
                        json={"lat": w.lat, "lng": w.lng},
                        headers=bearer(w.token),
                    )
                    assert r.status_code == 204, r.text

            await asyncio.gather(*(ping(w) for w in (*stations, *race)))
            timings["station and race pings (API)"] = time.perf_counter() - t

        # Every worker must be findable: available, inside the area and fresh.
        live = RedisLiveIndex(redis, pipe=Pipeliner.for_client(redis))
        fresh = time.time() - MAIN_DISPATCH["location_max_age_s"] + 60
        for c, center, radius, n in (
            (cid, CENTER, COMMUNITY_RADIUS_M, cfg.workers),
            (race_cid, RACE_CENTER, RACE_RADIUS_M, cfg.race_workers),
        ):
            found = await live.search(c, *center, radius + 100, limit=n + 10, min_recorded_at=fresh)
            if len(found) != n:
                raise RuntimeError(f"community {c}: {len(found)} of {n} workers are searchable")
        await live.on_shutdown()
        timings["total"] = time.perf_counter() - started
        return World(cid, race_cid, workers, stations, race, residents, admin, timings)
    finally:
        await redis.aclose()
        await engine.dispose()


def _dist(w: Worker, point: tuple[float, float]) -> float:
    from geo.distance import haversine_m

    return haversine_m(w.lat, w.lng, point[0], point[1])


# --- phase 1: first offer ------------------------------------------------------------------------


@dataclass
class Posted:
    side: str
    k: int
    station: Worker
    due: float
    sent: float = 0.0
    done: float = 0.0
    status: int = 0
    job_id: int | None = None
    error: str = ""


@dataclass
class FirstOffer:
    first_offer: Series
    post_on: Series
    post_off: Series
    offer_after_response: Series
    """First offer's arrival minus the POST response's (negative: the offer came first)."""
    posted: list[Posted]
    misses: list[Posted]
    failures: list[Posted]
    offers_seen: int
    first_by_station: int
    db_checks: list[tuple[bool, str]]
    send_lag_ms: float
    cpu: dict[str, float]
    streams: int
    stream_open_s: float
    distinct_offerees: int
    first_at: dict[int, float]
    """job id -> when its first offer arrived."""


def job_body(station: Worker, k: int) -> bytes:
    body = {
        "title": f"Carry boxes {k}",
        "category": "moving",
        "skills": [station.skills[k % len(station.skills)]],
        "location": {"lat": station.lat, "lng": station.lng},
        "mode": "grab",
        "price_cents": JOB_PRICE_CENTS,
    }
    return json.dumps(body, separators=(",", ":")).encode()


class Streams:
    """Open worker streams; records when each job's first offer arrives, and on whose stream."""

    def __init__(self) -> None:
        self.first: dict[int, tuple[float, int]] = {}
        self.count = 0
        self.sockets: list[Any] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.errors: list[str] = []
        self.changed = asyncio.Event()

    async def open(self, port: int, workers: Sequence[Worker]) -> None:
        from websockets.asyncio.client import connect

        gate = asyncio.Semaphore(16)

        async def one(w: Worker) -> None:
            async with gate:
                ws = await connect(
                    f"ws://127.0.0.1:{port}/v1/workers/me/stream",
                    additional_headers=bearer(w.token),
                    open_timeout=60,
                )
                hello = json.loads(await asyncio.wait_for(ws.recv(), 30))
                assert hello["type"] == "hello", hello
            self.sockets.append(ws)
            self.tasks.append(asyncio.create_task(self.listen(ws, w)))

        await asyncio.gather(*(one(w) for w in workers))

    async def listen(self, ws: Any, w: Worker) -> None:
        try:
            async for raw in ws:
                now = time.perf_counter()
                msg = json.loads(raw)
                if msg.get("type") == "offer":
                    self.count += 1
                    job_id = int(msg["offer"]["job_id"])
                    if job_id not in self.first:
                        self.first[job_id] = (now, w.user_id)
                        self.changed.set()
        except Exception as exc:  # a stream that drops is reported, not fatal here
            self.errors.append(f"worker {w.user_id}: {exc!r}")

    async def arrived(self, want: set[int]) -> None:
        """Returns once every job in `want` has had its first offer."""
        while not want <= self.first.keys():
            self.changed.clear()
            await self.changed.wait()

    async def close(self) -> None:
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await asyncio.gather(*(ws.close() for ws in self.sockets), return_exceptions=True)


def schedule(n_per_side: int, rate: float, block_s: float, start_side: int = 0) -> list[tuple]:
    """(due offset s, side, k): the two sides in blocks ON OFF OFF ON ON OFF ..., each side's
    k-th job at the same rate; sides alternate block by block on one timeline."""
    per_block = max(1, round(rate * block_s))
    out, slot, ks = [], 0, {"on": 0, "off": 0}
    order = ("on", "off")
    b = 0
    while min(ks.values()) < n_per_side:
        pair, pos = divmod(b, 2)
        side = order[(pos + pair + start_side) % 2]
        for _ in range(per_block):
            if ks[side] >= n_per_side:
                break
            out.append((slot / rate, side, ks[side]))
            ks[side] += 1
            slot += 1
        b += 1
    return out


async def post_jobs(
    plan: Sequence[tuple],
    pools: dict[str, Pool],
    world: World,
    tag: str,
) -> list[Posted]:
    ports = {side: pool.port for side, pool in pools.items()}
    stations = world.stations
    requests = []
    for due, side, k in plan:
        station = stations[k % len(stations)]
        raw = http_request(
            "POST",
            "/v1/jobs",
            ports[side],
            token=world.residents[k % len(world.residents)],
            body=job_body(station, k),
            headers={"Idempotency-Key": f"{tag}-{side}-{k}"},
        )
        requests.append((Posted(side, k, station, due), raw))

    async def one(p: Posted, raw: bytes) -> None:
        try:
            p.status, body, p.sent, p.done = await pools[p.side].call(raw)
            if p.status == 201:
                p.job_id = int(json.loads(body)["id"])
            else:
                p.error = body[:300].decode(errors="replace")
        except Exception as exc:
            p.error = repr(exc)

    tasks = []
    t0 = time.perf_counter() + 0.05
    for p, raw in requests:
        p.due += t0
        delay = p.due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(p, raw)))
    await asyncio.gather(*tasks)
    return [p for p, _ in requests]


async def first_offer_phase(
    cfg: Config, world: World, on: Server, off: Server, db_url: str, cpu: Cpu
) -> FirstOffer:
    from sqlalchemy import text

    pools = {"on": Pool(on.port), "off": Pool(off.port)}
    for pool in pools.values():
        await pool.warm(8)
    streams = Streams()
    t = time.perf_counter()
    await streams.open(on.port, world.stations)
    stream_open_s = time.perf_counter() - t
    log(f"{len(streams.sockets)} worker streams open on server ON ({stream_open_s:.1f} s)")
    try:
        if cfg.wait_quiet_s:
            await asyncio.to_thread(wait_for_quiet, cfg.wait_quiet_s)
        warm = schedule(round(cfg.rate * cfg.warmup_s), cfg.rate, cfg.block_s)
        log(f"warm-up: {len(warm)} jobs, both servers")
        await post_jobs(warm, pools, world, "warm")
        await asyncio.sleep(1.0)
        n = round(cfg.rate * cfg.duration)
        plan = schedule(n, cfg.rate, cfg.block_s)
        log(
            f"measuring: {n} jobs per server at {cfg.rate:g}/s, in {cfg.block_s:g} s blocks "
            f"alternating ON/OFF ({len(plan) / cfg.rate:.0f} s)"
        )
        before = cpu.snapshot()
        with client_gc_paused():
            posted = await post_jobs(plan, pools, world, "run")
        used = Cpu.used(before, cpu.snapshot())
        # Late offers: wait until every ON job's first offer is in, or OFFER_WAIT_S.
        want = {p.job_id for p in posted if p.side == "on" and p.job_id is not None}
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(streams.arrived(want), OFFER_WAIT_S)
    finally:
        await streams.close()
        for pool in pools.values():
            pool.close()
    if streams.errors:
        log(f"stream errors: {streams.errors[:3]}")

    first = Series("first offer on a stream (dispatch on)")
    post_on = Series("POST /v1/jobs, dispatch on")
    post_off = Series("POST /v1/jobs, dispatch off")
    after_resp = Series("first offer - POST response")
    misses, failures = [], []
    by_station = 0
    for p in posted:
        if p.status != 201:
            failures.append(p)
            continue
        (post_on if p.side == "on" else post_off).ms.append(1000 * (p.done - p.sent))
        if p.side != "on":
            continue
        got = streams.first.get(p.job_id)  # type: ignore[arg-type]
        if got is None:
            misses.append(p)
            continue
        first.ms.append(1000 * (got[0] - p.sent))
        after_resp.ms.append(1000 * (got[0] - p.done))
        by_station += got[1] == p.station.user_id
    lag = max((p.sent - p.due for p in posted if p.sent), default=0.0) * 1000

    # What the database says: three first-wave offers per ON job, its station among them; none
    # for OFF jobs.
    engine = make_engine(db_url, pool_size=1)
    checks: list[tuple[bool, str]] = []
    try:
        async with engine.connect() as conn:
            ids = [p.job_id for p in posted if p.job_id is not None]
            rows = (
                await conn.execute(
                    text(
                        "SELECT job_id, worker_id, wave FROM offers "
                        "WHERE job_id = ANY(CAST(:ids AS bigint[]))"
                    ),
                    {"ids": ids},
                )
            ).all()
            distinct = (
                await conn.execute(
                    text(
                        "SELECT count(DISTINCT o.worker_id) FROM offers o JOIN jobs j "
                        "ON j.id = o.job_id WHERE j.community_id = :c"
                    ),
                    {"c": world.community_id},
                )
            ).scalar_one()
    finally:
        await engine.dispose()
    offers: dict[int, list[tuple[int, int]]] = {}
    for job_id, worker_id, wave in rows:
        offers.setdefault(int(job_id), []).append((int(worker_id), int(wave)))
    on_jobs = [p for p in posted if p.side == "on" and p.job_id is not None]
    off_jobs = [p for p in posted if p.side == "off" and p.job_id is not None]
    bad_on = [
        p.job_id
        for p in on_jobs
        if sorted(w for _, w in offers.get(p.job_id, [])) != [1, 1, 1]  # type: ignore[arg-type]
        or p.station.user_id not in {w for w, _ in offers.get(p.job_id, [])}  # type: ignore[arg-type]
    ]
    bad_off = [p.job_id for p in off_jobs if offers.get(p.job_id)]  # type: ignore[arg-type]
    checks.append(
        (
            not bad_on,
            f"dispatch on: {len(on_jobs) - len(bad_on)} of {len(on_jobs)} jobs have exactly 3 "
            "first-wave offers in the database, their station among them"
            + (f" (not: {bad_on[:5]})" if bad_on else ""),
        )
    )
    checks.append(
        (
            not bad_off,
            f"dispatch off: {len(off_jobs) - len(bad_off)} of {len(off_jobs)} jobs have no offers"
            + (f" (not: {bad_off[:5]})" if bad_off else ""),
        )
    )
    return FirstOffer(
        first_offer=first,
        post_on=post_on,
        post_off=post_off,
        offer_after_response=after_resp,
        first_at={j: t for j, (t, _) in streams.first.items()},
        posted=posted,
        misses=misses,
        failures=failures,
        offers_seen=streams.count,
        first_by_station=by_station,
        db_checks=checks,
        send_lag_ms=lag,
        cpu=used,
        streams=len(streams.sockets),
        stream_open_s=stream_open_s,
        distinct_offerees=int(distinct),
    )


# --- phase 2: the claim race ---------------------------------------------------------------------


@dataclass
class Race:
    losers: Series
    winners: Series
    noop: Series
    rounds: int
    problems: list[str]
    cpu_accept_s: float
    cpu_noop_s: float
    cpu: dict[str, float]
    assignments_ok: bool
    assignments_detail: str
    codes: dict[str, int]
    sent: list[Sent]
    """Every measured burst request: for joining with the server's probe records."""
    solo: dict[str, tuple[Series, float]]
    """One request at a time: kind -> (latencies, server CPU seconds per request)."""
    per_round: list[tuple[float, float]] = field(default_factory=list)
    """Per measured round: (p99 of its losers, p99 of its no-op burst)."""
    round_cpu: list[tuple[float, float]] = field(default_factory=list)
    """Per measured round: server ON's CPU seconds in (its accept burst, its no-op burst)."""

    @property
    def paired_ratio(self) -> float:
        """Median over rounds of (the round's loser p99 ÷ its no-op burst's p99)."""
        ratios = [lo / no for lo, no in self.per_round if no > 0]
        return statistics.median(ratios) if ratios else math.nan


@dataclass
class Sent:
    tag: str
    kind: str
    status: int
    sent: float
    done: float


def race_job_body(r: int) -> bytes:
    body = {
        "title": f"Race {r}",
        "category": "moving",
        "skills": [RACE_SKILL],
        "location": {"lat": RACE_CENTER[0], "lng": RACE_CENTER[1]},
        "mode": "grab",
        "price_cents": JOB_PRICE_CENTS,
    }
    return json.dumps(body, separators=(",", ":")).encode()


async def burst(
    conns: Sequence[Conn], requests: Sequence[bytes]
) -> list[tuple[int, bytes, float, float]]:
    """Write every request (one per connection) at once, then await all the responses:
    (status, body, written, whole response read) per request."""
    sent = [c.send(raw) for c, raw in zip(conns, requests, strict=True)]
    got = await asyncio.wait_for(asyncio.gather(*(c.receive() for c in conns)), 60)
    return [(s, b, t, done) for (s, b, done), t in zip(got, sent, strict=True)]


def burst_spans(race: Race) -> dict[tuple[int, str], tuple[float, float, float]]:
    """Each measured burst, by (round, kind): its first write, its last response read, and the
    p99 of its requests' latency (ms)."""
    bursts: dict[tuple[int, str], list[Sent]] = {}
    for x in race.sent:
        _, r, kind, _ = x.tag.rsplit("-", 3)
        bursts.setdefault((int(r), kind), []).append(x)
    return {
        key: (min(x.sent for x in xs), max(x.done for x in xs),
              pct([1000 * (x.done - x.sent) for x in xs], 99))
        for key, xs in bursts.items()
    }  # fmt: skip


def overlaps(start: float, seconds: float, t0: float, t1: float) -> bool:
    return start < t1 and start + seconds > t0


def client_gc_line(race: Race) -> str:
    """This process's own collections (`record_gc` puts them in GC_PAUSES here)."""
    spans = burst_spans(race).values()
    inside = [d for _, t, d, _ in GC_PAUSES if any(overlaps(t, d, t0, t1) for t0, t1, _ in spans)]
    longest = max((d for _, _, d, _ in GC_PAUSES), default=0.0)
    return (
        f"The load generator's own garbage collections over the run: {len(GC_PAUSES)}, "
        f"the longest {1000 * longest:.0f} ms; during a measured burst: {len(inside)} "
        "(automatic collection is off in bursts and in the open-loop posting)."
    )


@contextlib.contextmanager
def client_gc_paused() -> Iterator[None]:
    """No automatic garbage collection in the load generator while it measures: a collection
    of its whole heap (10k workers, the sent log, 150 streams) delays the reading of every
    response in flight, at the same allocation count in every run. Collections run between
    rounds instead."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


class RaceBench:
    """Keep-alive connections to server ON, one per race worker, and the race's jobs."""

    def __init__(self, world: World, on: Server, db_url: str, tag: str) -> None:
        self.world, self.on, self.port, self.tag = world, on, on.port, tag
        self.engine = make_engine(db_url, pool_size=1)
        self.conns: list[Conn] = []
        self.side = Pool(on.port)
        self.posted = 0

    async def open(self) -> None:
        self.conns = [await Conn.open(self.port) for _ in self.world.race]
        await self.side.warm(2)
        for c in self.conns:  # warmed: each connection has served a request
            status, *_ = await c.call(http_request("GET", "/bench/noop", self.port))
            assert status == 204

    async def close(self) -> None:
        for c in self.conns:
            c.close()
        self.side.close()
        await self.engine.dispose()

    async def fresh(self, i: int | None = None) -> None:
        """Reopen (and warm) connection i, or every one, if the server may have closed it for
        idling (uvicorn's 5 s keep-alive timeout)."""
        stale = time.monotonic() - IDLE_MAX_S
        for j in range(len(self.conns)) if i is None else (i,):
            c = self.conns[j]
            if c.reader.at_eof() or c.last_used < stale:
                c.close()
                self.conns[j] = c = await Conn.open(self.port)
                status, *_ = await c.call(http_request("GET", "/bench/noop", self.port))
                assert status == 204

    async def relayed(self, timeout_s: float = OUTBOX_WAIT_S) -> bool:
        """Wait until the outbox relay has handled everything due (the offers of the job just
        posted, the notices of the last take), so its batch does not land in the next burst.
        False if it had not within `timeout_s`."""
        from sqlalchemy import text

        deadline = time.monotonic() + timeout_s
        while True:
            async with self.engine.connect() as db:
                due = await db.scalar(
                    text(
                        "SELECT count(*) FROM outbox WHERE status IN ('pending', 'sending') "
                        "AND (next_attempt_at IS NULL OR next_attempt_at <= now())"
                    )
                )
            if not due:
                return True
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.02)

    async def call(self, i: int, raw: bytes) -> tuple[int, bytes, float, float]:
        await self.fresh(i)
        return await self.conns[i].call(raw)

    async def post_job(self) -> tuple[int, dict[int, int]]:
        """A job in the race community: its id and worker id -> offer id (one per worker)."""
        from sqlalchemy import text

        n = self.posted
        self.posted += 1
        status, resp, *_ = await self.side.call(
            http_request(
                "POST",
                "/v1/jobs",
                self.port,
                token=self.world.residents[n % len(self.world.residents)],
                body=race_job_body(n),
                headers={"Idempotency-Key": f"{self.tag}-race-{n}"},
            )
        )
        assert status == 201, resp
        job_id = int(json.loads(resp)["id"])
        async with self.engine.connect() as db:
            rows = await db.execute(
                text("SELECT id, worker_id FROM offers WHERE job_id = :j"), {"j": job_id}
            )
            offer_of = {int(w): int(o) for o, w in rows.all()}
        if len(offer_of) != len(self.world.race):
            raise RuntimeError(f"race job {job_id}: {len(offer_of)} offers, not 100")
        return job_id, offer_of

    def accept(self, i: int, offer_id: int, tag: str) -> bytes:
        w = self.world.race[i]
        return http_request(
            "POST", f"/v1/offers/{offer_id}/accept", self.port, token=w.token,
            headers={"X-Bench": tag},
        )  # fmt: skip

    def noop(self, i: int, tag: str) -> bytes:
        w = self.world.race[i]
        return http_request(
            "POST", "/bench/noop-auth", self.port, token=w.token, headers={"X-Bench": tag}
        )

    async def complete(self, i: int, job_id: int, version: int) -> tuple[int, bytes]:
        status, resp, *_ = await self.side.call(
            http_request(
                "POST",
                f"/v1/jobs/{job_id}/complete",
                self.port,
                token=self.world.race[i].token,
                body=json.dumps({"assignment_version": version}).encode(),
            )
        )
        return status, resp


async def race_phase(
    cfg: Config,
    world: World,
    on: Server,
    db_url: str,
    cpu: Cpu,
    rounds: int,
    warmup_rounds: int,
    tag: str,
    kinds: tuple[str, ...] = ("accept", "noop"),
    solo_n: int = 0,
) -> Race:
    from sqlalchemy import text

    rb = RaceBench(world, on, db_url, tag)
    await rb.open()
    if cfg.wait_quiet_s and warmup_rounds:
        await asyncio.to_thread(wait_for_quiet, cfg.wait_quiet_s)
    losers = Series("accept, losers (409)")
    winners = Series("accept, winner (200)")
    noop = Series("POST /bench/noop-auth")
    problems: list[str] = []
    codes: dict[str, int] = {}
    cpu_accept = cpu_noop = 0.0
    job_ids: list[int] = []
    sent_log: list[Sent] = []
    solo: dict[str, tuple[Series, float]] = {}
    per_round: list[tuple[float, float]] = []
    round_cpu: list[tuple[float, float]] = []
    before = cpu.snapshot()
    try:
        for r in range(warmup_rounds + rounds):
            measured = r >= warmup_rounds
            # This process's own collections, between rounds: never inside a burst.
            gc.collect()
            round_p99 = {"accept": math.nan, "noop": math.nan}
            spent_in = {"accept": math.nan, "noop": math.nan}
            job_id, offer_of = await rb.post_job()
            for kind in kinds if r % 2 == 0 else kinds[::-1]:
                tags = [f"{tag}-{r}-{kind}-{i}" for i in range(len(world.race))]
                if kind == "accept":
                    reqs = [
                        rb.accept(i, offer_of[w.user_id], tags[i]) for i, w in enumerate(world.race)
                    ]
                else:
                    reqs = [rb.noop(i, tags[i]) for i in range(len(world.race))]
                await rb.fresh()
                if not await rb.relayed():
                    problems.append(f"round {r}: the outbox relay still had work after "
                                    f"{OUTBOX_WAIT_S:g} s")  # fmt: skip
                await asyncio.sleep(BURST_GAP_S)
                c0 = proc_cpu_s(on.pid)
                with client_gc_paused():
                    got = await burst(rb.conns, reqs)
                spent = proc_cpu_s(on.pid) - c0
                spent_in[kind] = spent
                lat = [1000 * (done - t) for _, _, t, done in got]
                if measured:
                    sent_log += [
                        Sent(tags[i], kind, s, t, done) for i, (s, _, t, done) in enumerate(got)
                    ]
                round_p99[kind] = pct(
                    [ms for (s, *_), ms in zip(got, lat, strict=True) if s in (204, 409)], 99
                )
                if kind == "noop":
                    bad = [s for s, *_ in got if s != 204]
                    if bad:
                        problems.append(f"round {r}: noop statuses {sorted(set(bad))}")
                    if measured:
                        noop.ms.extend(lat)
                        cpu_noop += spent
                    continue
                for s, b, *_ in got:
                    key = str(s)
                    if s != 200:
                        with contextlib.suppress(Exception):
                            key = f"{s} {json.loads(b)['code']}"
                    codes[key] = codes.get(key, 0) + 1
                won = [i for i, (s, *_) in enumerate(got) if s == 200]
                if len(won) != 1:
                    problems.append(f"round {r} (job {job_id}): {len(won)} winners")
                wrong = [
                    (s, b[:120])
                    for s, b, *_ in got
                    if s != 200 and (s != 409 or json.loads(b).get("code") != "already_taken")
                ]
                if wrong:
                    problems.append(f"round {r} (job {job_id}): not 409 already_taken: {wrong[:3]}")
                if measured:
                    cpu_accept += spent
                    winners.ms.extend(lat[i] for i in won)
                    losers.ms.extend(ms for (s, *_), ms in zip(got, lat, strict=True) if s == 409)
                # The winner finishes the job before anything else, so it is free again.
                for i in won[:1]:
                    version = json.loads(got[i][1])["assignment_version"]
                    status, resp = await rb.complete(i, job_id, version)
                    if status != 200:
                        problems.append(f"round {r}: complete → {status} {resp[:200]!r}")
            if measured:
                job_ids.append(job_id)
                if "noop" in kinds:
                    per_round.append((round_p99["accept"], round_p99["noop"]))
                    round_cpu.append((spent_in["accept"], spent_in["noop"]))
        used = Cpu.used(before, cpu.snapshot())
        if solo_n:
            solo = await solo_requests(rb, solo_n, problems)
        async with rb.engine.connect() as db:
            rows = await db.execute(
                text(
                    "SELECT job_id, count(*) FROM assignments "
                    "WHERE job_id = ANY(CAST(:ids AS bigint[])) GROUP BY job_id"
                ),
                {"ids": job_ids},
            )
            per_job = {int(j): int(n) for j, n in rows.all()}
        wrong_jobs = [j for j in job_ids if per_job.get(j) != 1]
        detail = (
            f"{len(job_ids) - len(wrong_jobs)} of {len(job_ids)} race jobs have exactly one "
            "assignment in the database" + (f" (not: {wrong_jobs[:5]})" if wrong_jobs else "")
        )
    finally:
        await rb.close()
    return Race(
        losers=losers,
        winners=winners,
        noop=noop,
        rounds=rounds,
        problems=problems,
        cpu_accept_s=cpu_accept,
        cpu_noop_s=cpu_noop,
        cpu=used,
        assignments_ok=not wrong_jobs,
        assignments_detail=detail,
        codes=codes,
        sent=sent_log,
        solo=solo,
        per_round=per_round,
        round_cpu=round_cpu,
    )


async def take_a_job(rb: RaceBench) -> tuple[bytes, bytes]:
    """Worker 0 takes and completes a fresh job; worker 1's accept of it is then the losers'
    path (409 already_taken). That accept, and worker 1's no-op."""
    workers = rb.world.race
    job_id, offer_of = await rb.post_job()
    status, resp, *_ = await rb.call(0, rb.accept(0, offer_of[workers[0].user_id], "setup"))
    assert status == 200, resp
    await rb.complete(0, job_id, json.loads(resp)["assignment_version"])
    return rb.accept(1, offer_of[workers[1].user_id], "solo-loser"), rb.noop(1, "solo-noop")


async def solo_requests(
    rb: RaceBench, n: int, problems: list[str]
) -> dict[str, tuple[Series, float]]:
    """Each kind of request one at a time on one warmed connection, in alternating blocks: its
    latency alone, and the server CPU it costs (/proc ticks over the block ÷ requests)."""
    pid = rb.on.pid
    workers = rb.world.race
    loser_req, noop_req = await take_a_job(rb)
    out = {"noop": (Series("noop-auth alone"), 0.0), "loser": (Series("loser alone"), 0.0)}
    block = max(10, n // 2)
    for _ in range(2):
        for kind, raw, want in (("noop", noop_req, 204), ("loser", loser_req, 409)):
            series, cpu_s = out[kind]
            await rb.fresh(1)
            c0 = proc_cpu_s(pid)
            for _ in range(block):
                status, _, t, done = await rb.conns[1].call(raw)
                if status != want:
                    problems.append(f"solo {kind}: {status}")
                series.ms.append(1000 * (done - t))
            out[kind] = (series, cpu_s + proc_cpu_s(pid) - c0)
    # A winner with nobody competing: post, one accept, complete; a few times.
    wins = Series("winner alone")
    win_cpu = 0.0
    for j in range(5):
        job_id, offer_of = await rb.post_job()
        i = 2 + j
        await rb.fresh(i)
        await asyncio.sleep(0.1)
        c0 = proc_cpu_s(pid)
        status, resp, t, done = await rb.conns[i].call(
            rb.accept(i, offer_of[workers[i].user_id], f"solo-winner-{j}")
        )
        win_cpu += proc_cpu_s(pid) - c0
        wins.ms.append(1000 * (done - t))
        if status != 200:
            problems.append(f"solo winner: {status} {resp[:200]!r}")
            continue
        await rb.complete(i, job_id, json.loads(resp)["assignment_version"])
    return {kind: (series, cpu_s / max(series.n, 1)) for kind, (series, cpu_s) in out.items()} | {
        "winner": (wins, win_cpu / max(wins.n, 1))
    }


# --- probes (optional): where a request's wall time goes, from inside the server -----------------


async def fetch_probe(port: int) -> dict[str, Any]:
    conn = await Conn.open(port)
    try:
        status, body, *_ = await conn.call(http_request("GET", "/bench/probe", port), 120)
    finally:
        conn.close()
    assert status == 200, body[:300]
    return json.loads(body)


@dataclass
class Segments:
    """Named wall-time segments (ms) or counts per request, in the order first seen."""

    values: dict[str, list[float]] = field(default_factory=dict)
    counts: set[str] = field(default_factory=set)

    def add(self, name: str, value: float, *, count: bool = False) -> None:
        self.values.setdefault(name, []).append(value if count else 1000 * value)
        if count:
            self.counts.add(name)

    def cell(self, name: str) -> str:
        v = self.values.get(name)
        if not v:
            return "— | — | —"
        if name in self.counts:
            return f"{statistics.fmean(v):.1f} | {pct(v, 50):.0f} | {pct(v, 99):.0f}"
        return f"{statistics.fmean(v):.2f} | {pct(v, 50):.2f} | {pct(v, 99):.2f}"


def _phases(rec: dict[str, Any]) -> dict[str, float]:
    return {name: total for name, (total, _) in rec["phases"].items()}


def gc_line(dump: dict[str, Any], what: str) -> str:
    pauses = dump.get("gc", [])
    by_gen: dict[int, list[float]] = {}
    freed: dict[int, int] = {}
    for gen, _, secs, collected in pauses:
        by_gen.setdefault(int(gen), []).append(1000 * secs)
        freed[int(gen)] = freed.get(int(gen), 0) + int(collected)
    heap = dump.get("heap") or {}
    census = (
        f" At the end, {heap['tracked']:,} objects tracked (what a generation-2 collection "
        "walks), most of them: "
        + ", ".join(f"{name.removeprefix('builtins.')} {n:,}" for name, n in heap["top"])
        + "."
        if heap
        else ""
    )
    return (
        f"Garbage collection in {what}: "
        + (
            "; ".join(
                f"generation {g}: {len(v)} pauses, {sum(v):.0f} ms in all, longest "
                f"{max(v):.1f} ms, {freed[g]:,} objects freed"
                for g, v in sorted(by_gen.items())
            )
            or "none"
        )
        + "."
        + census
    )


def trips_lines(title: str, rec: dict[str, Any] | None) -> list[str]:
    """The round trips one request made, in order."""
    if rec is None:
        return []
    lines = ["", f"{title}:", "", "| # | to | what | wall |", "|---:|---|---|---:|"]
    for i, (kind, what, wall) in enumerate(rec.get("trips", []), 1):
        what = what.replace("|", "\\|")
        lines.append(
            f"| {i} | {'PostgreSQL' if kind == 'db' else 'Redis'} | `{what}` | {wall:.2f} ms |"
        )
    return lines


def probe_first_offer(
    fo: FirstOffer, dumps: dict[str, dict[str, Any]]
) -> tuple[list[str], dict[str, Segments]]:
    """Per-job segments for server ON and OFF, from the client's and the server's clocks."""
    out: dict[str, Segments] = {"on": Segments(), "off": Segments()}
    order: list[str] = []
    for side, dump in dumps.items():
        recs = {
            r["key"]: r
            for r in dump["requests"]
            if r["method"] == "POST" and r["path"] == "/v1/jobs"
        }
        seg = out[side]
        for p in fo.posted:
            rec = recs.get(f"run-{side}-{p.k}")
            if p.side != side or p.status != 201 or rec is None:
                continue
            ph = _phases(rec)
            app = rec["t_resp"] - rec["t0"]
            g = ph.get
            rows = [
                ("client writes the POST → app called (uvicorn reads, parses)", rec["t0"] - p.sent),
                ("idempotency key row: INSERT … ON CONFLICT, then get + UPDATE at commit "
                 "(`run_once` minus `produce`)",
                 g("idempotency.run_once", 0) - g("run_once.produce", 0)),
                ("`JobService.create`: community lookup, job INSERT + flush + refresh",
                 g("JobService.create", 0)),
                ("`Dispatcher.open_job` (dispatch on only)", g("Dispatcher.open_job", 0)),
                ("  `RedisLiveIndex.search` (first wave: in `foresee`, beside the INSERT)",
                 g("RedisLiveIndex.search", 0)),
                ("  of which `_next_wave` (the first wave)", g("Dispatcher._next_wave", 0)),
                ("    of which `_rank` (the candidates' records built, scored, picked)",
                 g("Dispatcher._rank", 0)),
                ("    of which `_send_wave` (the offers' texts and rows, the wave's statement)",
                 g("Dispatcher._send_wave", 0)),
                ("    the rest: waiting for the foreseen search and ranking records, the log's "
                 "closure, the job's event", g("Dispatcher._next_wave", 0)
                 - g("Dispatcher._rank", 0) - g("Dispatcher._send_wave", 0)),
                ("    of which its `session.flush()` (INSERT 3 offers, UPDATE jobs.wave)",
                 g("flush@Dispatcher._next_wave", 0)),
                ("  the ranking records' read (in `foresee`, beside the INSERT)",
                 g("ranking records", 0)),
                ("`offer_counts` (SELECT … GROUP BY)", g("offer_counts", 0)),
                ("rest of `produce` (JSON encoding of the job)", g("run_once.produce", 0)
                 - g("JobService.create", 0) - g("Dispatcher.open_job", 0)
                 - g("offer_counts", 0)),
                ("transaction end: flush (key row UPDATE, job.wave) + COMMIT",
                 g("transaction end (flush + COMMIT)", 0)),
                ("`Dispatcher.run_after` (dispatch on only)", g("Dispatcher.run_after", 0)),
                ("  of which `EventBus.to_workers` (PUBLISH pipeline)",
                 g("EventBus.to_workers", 0)),
                ("  of which `Timers.schedule` (SAQ enqueue of the wave timer)",
                 g("Timers.schedule", 0)),
                ("  of which the offer-cache pipeline (HSET + EXPIRE per offer)",
                 g("Dispatcher.run_after", 0) - g("EventBus.to_workers", 0)
                 - g("Timers.schedule", 0)),
                ("rest of the app: middleware, JWT, body, session open/close, response",
                 app - g("idempotency.run_once", 0) - g("transaction end (flush + COMMIT)", 0)
                 - g("Dispatcher.run_after", 0)),
                ("response starts → client has read it", p.done - rec["t_resp"]),
                ("**total, client-side**", p.done - p.sent),
            ]  # fmt: skip
            for name, v in rows:
                seg.add(name, v)
            seg.add("PostgreSQL round trips (statements + COMMIT)", rec["db"][0], count=True)
            seg.add("waiting on PostgreSQL (sum of round trips)", rec["db"][1])
            seg.add("Redis round trips (commands + pipelines)", rec["redis"][0], count=True)
            seg.add("waiting on Redis (sum of round trips)", rec["redis"][1])
            if side == "on" and p.job_id is not None:
                pub = dump["published"].get(str(p.job_id))
                ws = dump["ws_sent"].get(str(p.job_id))
                first = fo.first_at.get(p.job_id)
                if pub and ws and first:
                    seg.add(
                        "app called → first offer event published (after COMMIT)", pub - rec["t0"]
                    )
                    seg.add(
                        "published → offer written to a WebSocket (pub/sub, `forward`)", ws - pub
                    )
                    seg.add("written to the WebSocket → client has read it", first - ws)
                    seg.add("**first offer, client-side**", first - p.sent)
            for name in seg.values:
                if name not in order:
                    order.append(name)
    lines = [
        "| segment (wall time per job) | ON mean | ON p50 | ON p99 | OFF mean | OFF p50 | "
        "OFF p99 |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name in order:
        unit = "" if name in out["on"].counts | out["off"].counts else " (ms)"
        lines.append(f"| {name}{unit} | {out['on'].cell(name)} | {out['off'].cell(name)} |")
    lines += [
        "",
        gc_line(dumps["on"], "server ON during the phase (warm-up included)"),
        gc_line(dumps["off"], "server OFF"),
    ]
    lines += slow_job_lines(fo, dumps["on"])
    k = max((p.k for p in fo.posted), default=0) // 2
    for side, what in (("on", "dispatch on"), ("off", "dispatch off")):
        rec = next((r for r in dumps[side]["requests"] if r["key"] == f"run-{side}-{k}"), None)
        lines += trips_lines(f"Round trips of one `POST /v1/jobs` ({what}, job {k})", rec)
    return lines, out


def during_cells(dump: dict[str, Any], t0: float, t1: float) -> str:
    """Three table cells: the server's background work that overlapped [t0, t1] (start relative
    to t0, wall ms), its event-loop stalls and its collections over 0.5 ms in it."""
    work = [
        f"{name} @{1000 * (start - t0):+.0f} ({1000 * dur:.1f})"
        for name, start, dur in dump.get("background", [])
        if overlaps(start, dur, t0, t1)
    ]
    stalls = [f"{1000 * late:.0f}" for when, late in dump.get("stalls", []) if t0 < when < t1]
    gcs = [
        f"{1000 * dur:.1f} (gen {gen})"
        for gen, start, dur, _ in dump.get("gc", [])
        if overlaps(start, dur, t0, t1) and dur > 0.0005
    ]
    return f"{'; '.join(work) or '—'} | {', '.join(stalls) or '—'} | {', '.join(gcs) or '—'}"


def slow_job_lines(fo: FirstOffer, dump: dict[str, Any], show: int = 8) -> list[str]:
    """The slowest first offers on server ON beside the median one: what else the server was
    doing from the moment the app got each POST to the moment the first offer was read (other
    requests in flight, background work, event-loop stalls, collections)."""
    recs = {r["key"]: r for r in dump["requests"]}
    jobs = []
    for p in fo.posted:
        rec = recs.get(f"run-on-{p.k}")
        first = fo.first_at.get(p.job_id) if p.job_id is not None else None
        if p.side == "on" and rec is not None and first is not None:
            jobs.append((first - p.sent, p, rec, first))
    if not jobs:
        return []
    jobs.sort(key=lambda j: j[0], reverse=True)
    lines = [
        "",
        "Slowest first offers on server ON (and the median one, last): from the app getting the "
        "POST to the first offer read off a stream, the server's other requests in flight, its "
        "background work (start relative to the app getting the POST, wall ms), its event-loop "
        "stalls over 4 ms and its collections.",
        "",
        "| job | first offer (ms) | PostgreSQL waits (ms) | other requests in flight | "
        "background work | loop stalls (ms) | GC (ms) |",
        "|---|---:|---:|---:|---|---|---|",
    ]
    for total, p, rec, first in [*jobs[:show], jobs[len(jobs) // 2]]:
        t0, t1 = rec["t0"], first
        others = sum(
            1
            for r in dump["requests"]
            if r is not rec and r.get("t_resp") and r["t0"] < t1 and r["t_resp"] > t0
        )
        lines.append(
            f"| {p.k} | {1000 * total:.1f} | {1000 * rec['db'][1]:.1f} | {others} | "
            f"{during_cells(dump, t0, t1)} |"
        )
    return lines


def probe_race(race: Race, dump: dict[str, Any]) -> list[str]:
    """Burst requests joined with the client's times (by their X-Bench tag), and the
    one-at-a-time diagnostic requests (server side only)."""
    sent = {x.tag: x for x in race.sent}
    kinds = ("loser", "winner", "noop", "loser alone", "winner alone", "noop alone")
    segs = {k: Segments() for k in kinds}
    order: list[str] = []
    for rec in dump["requests"]:
        tag = rec.get("tag") or ""
        s = sent.get(tag)
        if tag.startswith("solo-"):
            kind = tag.split("-")[1] + " alone"
        elif s is not None:
            kind = "noop" if s.kind == "noop" else "winner" if s.status == 200 else "loser"
        else:
            continue
        seg = segs[kind]
        ph = _phases(rec)
        rows: list[tuple[str, float]] = []
        if s is not None:
            rows.append(
                ("client writes → app called (waits behind the burst in uvicorn/the loop)",
                 rec["t0"] - s.sent)
            )  # fmt: skip
        rows += [
            ("app called → response starts", rec["t_resp"] - rec["t0"]),
            ("  of which `Dispatcher.accept`", ph.get("Dispatcher.accept", 0.0)),
            ("    of which `_accept_in_db` (the claim transaction)",
             ph.get("Dispatcher._accept_in_db", 0.0)),
            ("      of which `_retire_offers` (99 offers → taken, 99 outbox rows)",
             ph.get("Dispatcher._retire_offers", 0.0)),
            ("      of which `session.flush()` (assignment + 99 outbox rows INSERTed)",
             ph.get("flush@Dispatcher._accept_in_db", 0.0)),
            ("      of which transaction end (COMMIT)",
             ph.get("transaction end (flush + COMMIT)", 0.0)),
            ("      of which `run_after` (claim key, 100 PUBLISH, availability)",
             ph.get("Dispatcher.run_after", 0.0)),
            ("        of which `EventBus.to_workers` (100 PUBLISH, one pipeline)",
             ph.get("EventBus.to_workers", 0.0)),
            ("        of which `WorkerService.publish` (availability → live index)",
             ph.get("WorkerService.publish", 0.0)),
            ("  of which `job_view` (the winner's job: offer counts, masked number)",
             ph.get("job_view", 0.0)),
        ]  # fmt: skip
        if s is not None:
            rows += [
                ("response starts → client has read it", s.done - rec["t_resp"]),
                ("**total, client-side**", s.done - s.sent),
            ]
        for name, v in rows:
            seg.add(name, v)
        seg.add("Redis round trips", rec["redis"][0], count=True)
        seg.add("waiting on Redis (sum)", rec["redis"][1])
        seg.add("PostgreSQL round trips", rec["db"][0], count=True)
        seg.add("waiting on PostgreSQL (sum)", rec["db"][1])
        for name in seg.values:
            if name not in order:
                order.append(name)
    counts = set().union(*(sg.counts for sg in segs.values()))
    lines = [
        "| segment (wall time per request) | loser p50 | loser p99 | winner p50 | winner p99 | "
        "no-op p50 | no-op p99 | loser alone p50 | winner alone p50 | no-op alone p50 |",
        "|---|" + "---:|" * 9,
    ]
    for name in order:
        cells = []
        for k in kinds:
            for q in (50, 99) if "alone" not in k else (50,):
                v = segs[k].values.get(name)
                cells.append(
                    "—" if not v else f"{pct(v, q):.0f}" if name in counts else f"{pct(v, q):.2f}"
                )
        unit = "" if name in counts else " (ms)"
        lines.append(f"| {name}{unit} | " + " | ".join(cells) + " |")
    lines += [
        "",
        gc_line(dump, "server ON during the race phase (warm-up and diagnostics included)"),
        "",
        *burst_background_lines(race, dump),
    ]
    alone = {tag: r for r in dump["requests"] if (tag := r.get("tag") or "").startswith("solo-")}
    lines += trips_lines("Round trips of a loser's accept (alone)", alone.get("solo-loser"))
    lines += trips_lines(
        "Round trips of a winner's accept (alone)",
        next((r for t, r in alone.items() if t.startswith("solo-winner")), None),
    )
    lines.append("")
    n = {k: max((len(v) for v in segs[k].values.values()), default=0) for k in kinds}
    lines += [
        "",
        "Requests: " + ", ".join(f"{k} {n[k]:,}" for k in kinds) + '. Nested rows ("of '
        "which\") are parts of the row above them; in a burst, a request's wall time includes "
        "the other requests' work interleaved on the same event loop.",
    ]
    return lines


def burst_background_lines(race: Race, dump: dict[str, Any], show: int = 4) -> list[str]:
    """The slowest measured bursts beside a typical one: what the server did in the background
    while each ran (relay batches, write-behind, SAQ), and how long its event loop stalled."""
    spans = burst_spans(race)
    if not spans or "background" not in dump:
        return []
    ranked = sorted(spans, key=lambda k: spans[k][2], reverse=True)
    picked = [*ranked[:show], ranked[len(ranked) // 2]]
    lines = [
        "Slowest measured bursts (and the median one, last): the server's background work that "
        "overlapped each (`bench/dispatch_probe.py`: start relative to the burst's first write, "
        "wall ms), and its event-loop stalls over 4 ms.",
        "",
        "| round, burst | p99 (ms) | background work during the burst | loop stalls (ms) | "
        "server GC in the burst (ms) |",
        "|---|---:|---|---|---|",
    ]
    for key in picked:
        t0, t1, p99 = spans[key]
        lines.append(f"| {key[0]}, {key[1]} | {p99:.0f} | {during_cells(dump, t0, t1)} |")
    in_bursts = {"accept": 0.0, "noop": 0.0}
    for (_, kind), (t0, t1, _) in spans.items():
        in_bursts[kind] += sum(
            dur for _, start, dur, _ in dump.get("gc", []) if overlaps(start, dur, t0, t1)
        )
    lines += [
        "",
        f"Server GC inside measured bursts, all rounds: accept {1000 * in_bursts['accept']:.0f} "
        f"ms, no-op {1000 * in_bursts['noop']:.0f} ms.",
    ]
    return lines


# --- profiling (optional) ------------------------------------------------------------------------


# Which request handler a py-spy sample is in: the outermost frame matching one of these.
HANDLERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("POST /v1/jobs", ("create (dispatch/jobs/controllers.py",)),
    ("accept", ("accept_offer (dispatch/grab/controllers.py",)),
    ("complete", ("complete (dispatch/jobs/controllers.py",)),
    ("noop-auth", ("noop_auth (bench/serve.py",)),
    ("worker stream", ("worker_stream (dispatch/grab/stream.py",)),
    ("SAQ timers", ("saq/",)),
)
# Within a handler, the deepest frame matching one of these names the part; outside every
# handler, these name the request plumbing.
PARTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("live index search (`RedisLiveIndex.search`)", ("geo/live/",)),
    ("offer + outbox rows, flush (`Dispatcher._next_wave`)", ("_next_wave (",)),
    ("community view (`Dispatcher.open_job`)", ("open_job (",)),
    ("offer counts query (`jobs.queries.offer_counts`)", ("offer_counts (",)),
    ("job row + community lookup (`JobService.create`)", ("dispatch/jobs/service.py",
     "dispatch/communities/")),
    ("idempotency key row (`idempotency.run_once`)", ("run_once (",)),
    ("publish events (`EventBus.to_workers`)", ("to_workers (",)),
    ("wave timer enqueue (`Timers.schedule`, SAQ)", ("dispatch/infra/timers.py",)),
    ("worker availability (`WorkerService.publish`)", ("dispatch/workers/",)),
    ("`run_after`: offer cache, claim keys", ("run_after (",)),
    ("pre-filter: offer cache HMGET + claim script (`Dispatcher.accept`)",
     ("accept (dispatch/grab/dispatcher.py",)),
    ("retire offers + outbox rows (`Dispatcher._retire_offers`)", ("_retire_offers (",)),
    ("claim transaction (`Dispatcher._accept_in_db`)", ("_accept_in_db (",)),
    ("completion (`Dispatcher.complete`)", ("complete (dispatch/grab/dispatcher.py",)),
    ("the job as answered (`jobs.queries.job_view`)", ("job_view (",)),
    ("transaction commit (SQLAlchemy)", ("commit (",)),
    ("pub/sub → WebSocket (`worker_stream.forward`)", ("forward (",)),
    ("WebSocket protocol (websockets)", ("websockets/", "websockets_impl")),
    ("JWT check", ("jwt/", "litestar/security/jwt", "principal_from_token")),
    ("error → problem response (`dispatch/web/errors.py`)", ("dispatch/web/errors.py",)),
    ("request-log middleware", ("dispatch/web/middleware.py", "structlog")),
    ("Prometheus middleware", ("prometheus",)),
    ("Litestar (routing, kwargs, responses)", ("litestar/",)),
)  # fmt: skip


def _matches(frame: str, patterns: tuple[str, ...]) -> bool:
    return any(p in frame for p in patterns)


def breakdown(raw: Path) -> dict[str, float]:
    """% of samples per "handler → part" (or plumbing part outside handlers)."""
    counts: dict[str, int] = {}
    total = 0
    for frames, n in samples(raw):
        total += n
        handler = next((name for f in frames for name, pats in HANDLERS if _matches(f, pats)), None)
        part = next(
            (name for f in reversed(frames) for name, pats in PARTS if _matches(f, pats)), None
        )
        if handler is None and any("sqlalchemy/" in f for f in frames):
            # The ORM runs sync code in a greenlet: py-spy sees its stack without the request.
            label = "SQLAlchemy + asyncpg in a greenlet (py-spy cannot see the handler)"
        elif handler is None:
            label = part or "uvicorn, httptools, asyncio event loop"
        else:
            label = f"{handler} → {part or 'handler code and libraries it calls'}"
        counts[label] = counts.get(label, 0) + n
    total = max(total, 1)
    return {k: 100 * v / total for k, v in sorted(counts.items(), key=lambda kv: -kv[1])}


def start_py_spy(pid: int, raw: Path) -> subprocess.Popen[bytes]:
    py_spy = find_py_spy()
    assert py_spy
    return subprocess.Popen(
        [py_spy, "record", "--pid", str(pid), "--rate", "500", "--format", "raw",
         "--nonblocking", "-o", str(raw)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip


def keep_gzipped(raw: Path, kept: Path) -> None:
    with open(raw, "rb") as src, gzip.open(kept, "wb") as dst:
        shutil.copyfileobj(src, dst)


async def profiled(
    name: str, slug: str, pid: int, root: Path, work: Callable[[], Awaitable[Any]]
) -> dict[str, Any]:
    """py-spy samples the process while `work` runs (an extra, unmeasured run), then is
    interrupted (it writes its samples on SIGINT)."""
    raw = root / f"{slug}.pyspy.txt"
    spy = start_py_spy(pid, raw)
    await asyncio.sleep(1.0)  # attached
    try:
        await work()
    finally:
        spy.send_signal(signal.SIGINT)
        _, err = await asyncio.to_thread(spy.communicate, timeout=60)
    if not raw.exists() or not raw.stat().st_size:
        return {"name": name, "slug": slug, "error": err.decode(errors="replace")[-500:]}
    return {
        "name": name,
        "slug": slug,
        "raw_path": raw,
        "parts": breakdown(raw),
        **summarize_profile(raw, PARTS, "uvicorn, httptools, event loop", top=20),
    }


async def profile_all(
    cfg: Config, world: World, on: Server, off: Server, db_url: str, cpu: Cpu, root: Path
) -> list[dict[str, Any]]:
    """Extra, unmeasured runs with py-spy sampling server ON."""
    profiles = []

    async def offers_again() -> None:
        pools = {"on": Pool(on.port), "off": Pool(off.port)}
        for pool in pools.values():
            await pool.warm(4)
        streams = Streams()
        await streams.open(on.port, world.stations)
        try:
            n = round(cfg.rate * cfg.duration)
            plan = [x for x in schedule(n, cfg.rate, 1e9) if x[1] == "on"]
            await post_jobs(plan, pools, world, "profile")
            await asyncio.sleep(1.0)
        finally:
            await streams.close()
            for pool in pools.values():
                pool.close()

    async def race_again() -> None:
        await race_phase(cfg, world, on, db_url, cpu, cfg.rounds, 0, "profile-race", ("accept",))

    log("profiling server ON: first offer")
    profiles.append(await profiled("first offer", "offer", on.pid, root, offers_again))
    log("profiling server ON: claim race (accept bursts only)")
    profiles.append(await profiled("claim race, accept bursts", "race", on.pid, root, race_again))

    rb = RaceBench(world, on, db_url, "profile-alone")
    await rb.open()
    try:
        loser_req, noop_req = await take_a_job(rb)
        n = max(cfg.solo, 10) * 10
        for kind, raw, want in (("loser", loser_req, 409), ("noop", noop_req, 204)):

            async def loop(raw: bytes = raw, want: int = want) -> None:
                await rb.fresh(1)
                for _ in range(n):
                    status, *_ = await rb.conns[1].call(raw)
                    assert status == want, status

            label = "accept, loser" if kind == "loser" else "no-op"
            log(f"profiling server ON: {n} x {label}, one at a time")
            profiles.append(
                await profiled(f"{n} x {label}, one at a time", f"{kind}-alone", on.pid, root, loop)
            )

        async def winners() -> None:
            for j in range(20):
                i = 2 + j % (len(world.race) - 2)
                job_id, offer_of = await rb.post_job()
                status, resp, *_ = await rb.call(
                    i, rb.accept(i, offer_of[world.race[i].user_id], f"profile-winner-{j}")
                )
                assert status == 200, resp
                await rb.complete(i, job_id, json.loads(resp)["assignment_version"])

        log("profiling server ON: 20 winners alone (post, accept, complete)")
        profiles.append(
            await profiled(
                "20 x (post a race job, accept it alone, complete it)",
                "winner-alone",
                on.pid,
                root,
                winners,
            )
        )
    finally:
        await rb.close()
    return profiles


# --- the report ----------------------------------------------------------------------------------


def machine() -> list[str]:
    return machine_lines(
        "shared by the load generator, both servers, Redis, PostgreSQL and any other job on "
        "the machine",
        "as `dispatch serve`: uvloop, httptools, websockets-sansio, 75 s keep-alive; 1 process "
        f"per server), client websockets {version('websockets')}",
    )


def row(s: Series, what: str) -> str:
    return f"| {what} | {s.n:,} | {ms(s.p50)} | {ms(s.p90)} | {ms(s.p99)} | {ms(s.max)} |"


def report(
    cfg: Config,
    world: World,
    fo: FirstOffer,
    race: Race,
    profiles: Sequence[dict[str, Any]],
    probe_lines: Sequence[str],
    started: datetime,
    elapsed_s: float,
) -> str:
    ratio1 = fo.first_offer.p99 / fo.post_off.p99
    ratio2 = race.losers.p99 / race.noop.p99
    ok1 = ratio1 <= TARGET_FIRST_OFFER_VS_POST and not fo.misses
    ok2 = ratio2 <= TARGET_LOSER_VS_NOOP
    checks: list[tuple[bool, str]] = [
        (not fo.failures, f"every POST /v1/jobs answered 201 ({len(fo.failures)} did not)"),
        (
            not fo.misses,
            f"first offer missing on the streams: {len(fo.misses)} of "
            f"{sum(p.side == 'on' and p.status == 201 for p in fo.posted)} jobs (must be 0)",
        ),
        (
            True,
            f"the first offer came on the job's station's stream for {fo.first_by_station} of "
            f"{fo.first_offer.n} jobs; {fo.offers_seen:,} offer messages in all (warm-up "
            f"included) on {fo.streams} streams; {fo.distinct_offerees:,} distinct workers were "
            "offered a job in the community",
        ),
        *fo.db_checks,
        (
            fo.send_lag_ms < 1000 / cfg.rate,
            f"open loop kept: every POST left within one slot ({1000 / cfg.rate:.0f} ms) of its "
            f"time; the latest left {fo.send_lag_ms:.1f} ms late",
        ),
        (
            race.winners.n == race.rounds,
            f"exactly one 200 per race job: {race.winners.n} winners in {race.rounds} rounds",
        ),
        (
            not race.problems,
            "every other accept got 409 already_taken, every no-op 204, every winner completed"
            + (f" — problems: {race.problems[:5]}" if race.problems else ""),
        ),
        (race.assignments_ok, race.assignments_detail),
    ]
    n_bursts = max(race.rounds, 1)
    cpu_job_on = fo.cpu["on"] / max(fo.post_on.n, 1)
    cpu_job_off = fo.cpu["off"] / max(fo.post_off.n, 1)
    lines = [
        f"# Dispatch benchmark — {started:%Y-%m-%d %H:%M:%S} UTC",
        "",
        f"`{cfg.command}`" + (" (quick: fewer workers, shorter runs)" if cfg.quick else ""),
        "",
        *machine(),
        f"- Run time: {elapsed_s / 60:.1f} min",
        "",
        "## Results",
        "",
        "| Measurement | n | p50 | p90 | p99 | max |",
        "|---|---:|---:|---:|---:|---:|",
        row(
            fo.first_offer,
            "**first offer**: sending `POST /v1/jobs` → first `offer` message "
            "for the job on a worker's stream (dispatch on)",
        ),
        row(fo.post_on, "`POST /v1/jobs` → 201, dispatch on (server ON)"),
        row(
            fo.post_off,
            "`POST /v1/jobs` → 201, dispatch off (**POST alone**, server OFF, `DISPATCH_AUTO=0`)",
        ),
        row(
            fo.offer_after_response,
            "first offer's arrival minus the POST response's (negative: the offer came first)",
        ),
        row(race.losers, "**accept, losers** (409 `already_taken`), 100-way bursts"),
        row(race.winners, "accept, winner (200), same bursts"),
        row(race.noop, "**`POST /bench/noop-auth`**, 100-way bursts on the same connections"),
        "",
        "## Targets",
        "",
        "| Target | Measured | Verdict |",
        "|---|---|---|",
        f"| first-offer p99 ≤ {TARGET_FIRST_OFFER_VS_POST:g}x POST-alone p99, no misses | "
        f"{ms(fo.first_offer.p99)} / {ms(fo.post_off.p99)} = **{ratio1:.2f}x**, "
        f"{len(fo.misses)} misses | {verdict(ok1)} |",
        f"| accept loser p99 ≤ {TARGET_LOSER_VS_NOOP:g}x no-op p99 (same burst pattern) | "
        f"{ms(race.losers.p99)} / {ms(race.noop.p99)} = **{ratio2:.2f}x** | {verdict(ok2)} |",
        f"| the same, paired: median over rounds of (the round's loser p99 ÷ its no-op burst's "
        f"p99) ≤ {TARGET_LOSER_VS_NOOP:g}x | **{race.paired_ratio:.2f}x** over {race.rounds} "
        f"rounds | {verdict(race.paired_ratio <= TARGET_LOSER_VS_NOOP)} |",
        "",
        *(
            [
                "⚠ Other jobs competed for the two cores (during the first-offer and the race "
                f"phase they used {other_pct(fo.cpu):.0f}% and {other_pct(race.cpu):.0f}% of a "
                f"core; some task waited for a CPU {stall_pct(fo.cpu):.0f}% and "
                f"{stall_pct(race.cpu):.0f}% of the time): a pooled p99 is then set by the few "
                "requests or bursts other jobs hit; the paired ratio and the CPU ratios below "
                "are the steadier reading.",
                "",
            ]
            if max(stall_pct(fo.cpu), stall_pct(race.cpu)) > 20
            or max(other_pct(fo.cpu), other_pct(race.cpu)) > 50
            else []
        ),
        "Per measured round, loser p99 / no-op burst p99 (ms), and in brackets server ON's CPU "
        "in the accept burst / in the no-op burst (ms, 10 ms ticks): "
        + ", ".join(
            f"{lo:.0f}/{no:.0f} [{1000 * ca:.0f}/{1000 * cn:.0f}]"
            for (lo, no), (ca, cn) in zip(race.per_round, race.round_cpu, strict=True)
        )
        + ".",
        "",
        client_gc_line(race),
        "",
        "Server CPU (steadier than latency when other jobs compete): per accept burst ÷ per "
        f"no-op burst = **{race.cpu_accept_s / max(race.cpu_noop_s, 1e-9):.2f}x**; per job, "
        f"dispatch on ÷ off = **{cpu_job_on / max(cpu_job_off, 1e-9):.2f}x**.",
        "",
        "Other ratios: first-offer p50 / POST-alone p50 = "
        f"{fo.first_offer.p50 / fo.post_off.p50:.2f}x; POST with dispatch / POST alone: p50 "
        f"{fo.post_on.p50 / fo.post_off.p50:.2f}x, p99 {fo.post_on.p99 / fo.post_off.p99:.2f}x; "
        f"loser p50 / no-op p50 = {race.losers.p50 / race.noop.p50:.2f}x; winner p99 / no-op "
        f"p99 = {race.winners.p99 / race.noop.p99:.2f}x.",
        "",
        "## Checks",
        "",
        *[f"- {'OK' if ok else '**FAILED**'} — {text}" for ok, text in checks],
        "",
        "## Server CPU",
        "",
        f"- First offer: server ON used {1000 * fo.cpu['on'] / max(fo.post_on.n, 1):.2f} ms of "
        f"CPU per job (posting, dispatching, {fo.streams} streams), server OFF "
        f"{1000 * fo.cpu['off'] / max(fo.post_off.n, 1):.2f} ms per job (posting alone). CPU "
        f"% of one core over the {fo.cpu['wall']:.0f} s measured, ON / OFF / Redis / PostgreSQL "
        f"/ client / other jobs: {cpu_pct(fo.cpu)}; some task waited for a CPU "
        f"{stall_pct(fo.cpu):.0f}% of the time (PSI).",
        f"- Claim race: server ON used {1000 * race.cpu_accept_s / n_bursts:.1f} ms of CPU per "
        f"accept burst ({1e6 * race.cpu_accept_s / n_bursts / len(world.race):.0f} µs per "
        f"accept) and {1000 * race.cpu_noop_s / n_bursts:.1f} ms per no-op burst "
        f"({1e6 * race.cpu_noop_s / n_bursts / len(world.race):.0f} µs per no-op) "
        "(/proc, 10 ms ticks, summed over the measured bursts). CPU % over the phase (bursts, "
        f"job posts, completions, pauses), same order: {cpu_pct(race.cpu)}; CPU stall (PSI) "
        f"{stall_pct(race.cpu):.0f}%.",
        f"- Accept answers, all rounds: {', '.join(f'{k}: {v}' for k, v in race.codes.items())}.",
        "",
        "## Setup",
        "",
        f"- Community {world.community_id}: centre {CENTER[0]}, {CENTER[1]}, radius "
        f"{COMMUNITY_RADIUS_M / 1000:g} km, dispatch overrides `{json.dumps(MAIN_DISPATCH)}` "
        "(default waves: 1000 m x 3, 2500 m x 10, everyone); "
        f"{len(world.workers):,} workers uniform within {SPREAD_M / 1000:g} km of the centre, "
        f"{SKILLS_PER_WORKER} of {len(SKILLS)} skills each, verified, online, positioned.",
        f"- {len(world.stations)} stations: workers within {STATION_SPREAD_M / 1000:g} km of "
        "the centre, at least 150 m apart, each with its stream open on server ON; job k is "
        "posted at station k mod S's exact position, asking for one of its skills, so the "
        "station is the nearest eligible worker and in the first wave.",
        f"- Race community {world.race_community_id}: radius {RACE_RADIUS_M} m, 20 km north, "
        f"overrides `{json.dumps(RACE_DISPATCH)}`; {len(world.race)} workers within "
        f"{RACE_SPREAD_M:g} m of its centre.",
        f"- {RESIDENTS} residents post in turn. Setup times: "
        + ", ".join(f"{k} {v:.1f} s" for k, v in world.setup_s.items())
        + f"; streams opened in {fo.stream_open_s:.1f} s.",
        "",
        "## How it is measured",
        "",
        f"- First offer: {fo.post_on.n} jobs per server at {cfg.rate:g}/s open-loop (each POST "
        "sent at its slot whatever the others are doing), server ON and OFF alternating in "
        f"{cfg.block_s:g} s blocks (ON OFF OFF ON …) on one timeline, after "
        f"{cfg.warmup_s:g} s of warm-up per server. Identical bodies on both servers; each POST "
        "its own Idempotency-Key. The clock starts just before the request is written to an "
        "idle keep-alive connection; the first offer's time is when this process reads the "
        "message off the stream (whichever arrives first: the offer or the 201).",
        f"- Claim race: {race.rounds} measured rounds after {cfg.warmup_rounds} warm-up rounds; "
        f"each round one accept burst and one no-op burst of {len(world.race)} requests, one "
        "per already-open, warmed keep-alive connection, each written in one go right after "
        "the other. Before each burst the race waits until the outbox relay has handled "
        "everything due (the job's 100 offers, the last take's 99 notices: its batch, ~13 ms "
        "of CPU, otherwise lands in whichever burst its 0.5 s tick meets), then "
        f"pauses {BURST_GAP_S:g} s. A request's latency runs "
        "from its write to its whole response. Accept bursts come first in even rounds, no-op "
        "bursts in odd ones.",
        "- The no-op route goes through the same middleware and JWT authentication with the "
        "worker guard as accept (`bench/serve.py`).",
    ]
    if race.solo:
        lines += [
            "",
            "## One request at a time (diagnostic)",
            "",
            "The same requests on one warmed connection, nothing else in flight: a loser's "
            "accept (the job already taken: the offer-cache HMGET and the claim script answer "
            "409), the no-op, and a winner's accept with nobody competing (post a job to the "
            "100 race workers, one accept, complete; 5 times). Server CPU per request is the "
            "server process's /proc CPU time over the requests ÷ their number (10 ms ticks).",
            "",
            "| request | n | p50 | p99 | server CPU per request |",
            "|---|---:|---:|---:|---:|",
        ]
        for kind, label in (
            ("noop", "`POST /bench/noop-auth`"),
            ("loser", "accept, loser (409 `already_taken`)"),
            ("winner", "accept, winner alone (200)"),
        ):
            series, cpu_s = race.solo[kind]
            lines.append(
                f"| {label} | {series.n} | {ms(series.p50)} | {ms(series.p99)} | "
                f"{1e6 * cpu_s:,.0f} µs |"
            )
    if probe_lines:
        lines += [
            "",
            "## Where the time goes (server probes, `--probe`)",
            "",
            "Both servers ran `bench/dispatch_probe.py`: `bench/serve.py` with wall-clock timers "
            "wrapped around the dispatch code paths and PostgreSQL/Redis round trips (a few µs "
            "per wrapped call; the numbers above come from these servers too).",
            *probe_lines,
        ]
    if profiles:
        lines += profile_lines(profiles)
    return "\n".join(lines) + "\n"


def profile_lines(profiles: Sequence[dict[str, Any]]) -> list[str]:
    lines = [
        "",
        "## Where server ON's time goes (py-spy, extra unmeasured rounds)",
    ]
    for p in profiles:
        if "error" in p:
            lines += ["", f"- py-spy failed for {p['name']}: `{p['error']}`"]
            continue
        lines += [
            "",
            f"### {p['name']} ({p['samples']:,} samples"
            + (f"; raw stacks in `{p['raw']}`" if p.get("raw") else "")
            + ")",
            "",
            "| where (request handler → deepest service frame) | % of samples |",
            "|---|---:|",
        ]
        lines += [f"| {name} | {share:.1f} |" for name, share in p["parts"].items()]
        lines += [
            "",
            "| function (own time) | own % | incl. % |",
            "|---|---:|---:|",
        ]
        lines += [f"| `{name}` | {own:.1f} | {incl:.1f} |" for name, own, incl in p["top"]]
    return lines


# --- main ----------------------------------------------------------------------------------------


async def run_phases(
    cfg: Config, root: Path, servers: LocalServers, on: Server, off: Server, db_url: str,
    redis_url: str, started: datetime,
) -> str:  # fmt: skip
    log(f"setting up {cfg.workers:,} workers and {cfg.race_workers} race workers")
    world = await setup_world(cfg, on.url, db_url, redis_url)
    log("setup: " + ", ".join(f"{k} {v:.1f} s" for k, v in world.setup_s.items()))
    cpu = Cpu(on, off, servers)

    fo = await first_offer_phase(cfg, world, on, off, db_url, cpu)
    probe_lines: list[str] = []
    if cfg.probe:
        dumps = {"on": await fetch_probe(on.port), "off": await fetch_probe(off.port)}
        table, _ = probe_first_offer(fo, dumps)
        probe_lines += [
            "",
            "### First offer: one job's wall time, segment by segment",
            "",
            "Server-side times from the probes (`bench/dispatch_probe.py`), client-side ones from "
            "this process; both clocks are CLOCK_MONOTONIC on the same machine. Nested rows "
            '("of which") are parts of the row above them.',
            "",
            *table,
        ]
    for s in (fo.first_offer, fo.post_on, fo.post_off, fo.offer_after_response):
        log(s.line())
    log(
        f"misses {len(fo.misses)}, failed posts {len(fo.failures)}, cpu % on/off/redis/pg/"
        f"client/other {cpu_pct(fo.cpu)}, cpu stall {stall_pct(fo.cpu):.0f}%"
    )
    for p in fo.failures[:3]:
        log(f"  failed: {p.side} k={p.k} status {p.status}: {p.error}")
    for ok, text in fo.db_checks:
        log(f"  check {'OK' if ok else 'FAILED'}: {text}")

    log(f"claim race: {cfg.warmup_rounds} + {cfg.rounds} rounds of {cfg.race_workers} accepts")
    race = await race_phase(
        cfg, world, on, db_url, cpu, cfg.rounds, cfg.warmup_rounds, "run", solo_n=cfg.solo
    )
    if cfg.probe:
        probe_lines += [
            "",
            "### Claim race: one request's wall time, segment by segment (measured bursts)",
            "",
            *probe_race(race, await fetch_probe(on.port)),
        ]
    for s in (race.losers, race.winners, race.noop):
        log(s.line())
    for kind, (series, cpu_s) in race.solo.items():
        log(f"alone: {kind}: {series.line()}; server CPU {1e6 * cpu_s:,.0f} µs per request")
    if race.problems:
        log(f"race problems: {race.problems[:5]}")

    profiles: list[dict[str, Any]] = []
    if cfg.profile:
        stamp = started.strftime("%Y%m%d-%H%M%S")
        profiles = await profile_all(cfg, world, on, off, db_url, cpu, root)
        for p in profiles:
            if "raw_path" in p and cfg.write:
                RESULTS_DIR.mkdir(exist_ok=True)
                kept = RESULTS_DIR / f"dispatch-{stamp}-{p['slug']}.pyspy.txt.gz"
                keep_gzipped(p["raw_path"], kept)
                p["raw"] = kept.relative_to(REPO)
    return report(
        cfg,
        world,
        fo,
        race,
        profiles,
        probe_lines,
        started,
        (datetime.now(UTC) - started).total_seconds(),
    )


def run_all(cfg: Config, started: datetime) -> str:
    import uvloop

    with private_servers("dispatch") as (root, servers, db_url, redis_url):
        log(f"private servers up under {root}")
        env = {
            **os.environ,
            "DATABASE_URL": db_url,
            "REDIS_URL": redis_url,
            "REDIS_CLUSTER": "0",
            "DISPATCH_SECRET_KEY": SECRET,
            "DISPATCH_DATA_DIR": str(root / "data"),
            "DISPATCH_LOG_LEVEL": "WARNING",
            "DISPATCH_AUTO": "1",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        }
        # bench/serve.py's app (with its no-op routes) served as `dispatch serve` serves it
        # (dispatch.cli.run_server), with or without the probes.
        module, args = "bench.dispatch_probe", ([] if cfg.probe else ["--no-probe"])
        on = Server(root, env, module=module, args=args, log_name="server-on.log")
        off = Server(
            root, {**env, "DISPATCH_AUTO": "0"}, module=module, args=args, log_name="server-off.log"
        )
        try:
            on.start()
            off.start()
            log(f"server ON pid {on.pid} on {on.url}; server OFF (DISPATCH_AUTO=0) pid {off.pid}")
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                return runner.run(
                    run_phases(cfg, root, servers, on, off, db_url, redis_url, started)
                )
        except BaseException:
            for name, srv in (("ON", on), ("OFF", off)):
                if srv.proc is not None:
                    log(f"server {name} log tail:\n{srv.log_tail()}")
            raise
        finally:
            on.stop()
            off.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.dispatch", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1000 workers, 5 s, 10 race rounds")
    parser.add_argument("--workers", type=int, help="workers (default 10000, --quick 1000)")
    parser.add_argument("--stations", type=int, help="open streams (default 150, --quick 100)")
    parser.add_argument("--rate", type=float, default=20.0, help="jobs/s per server (20)")
    parser.add_argument("--duration", type=float, help="seconds per server (default 20, quick 5)")
    parser.add_argument("--block", type=float, default=1.0, help="seconds per ON/OFF block (1)")
    parser.add_argument("--warmup", type=float, help="warm-up seconds per server (2, quick 1)")
    parser.add_argument("--rounds", type=int, help="measured race rounds (default 30, quick 10)")
    parser.add_argument("--warmup-rounds", type=int, default=3, help="race warm-up rounds (3)")
    parser.add_argument(
        "--profile", action="store_true", help="also sample server ON with py-spy (see above)"
    )
    parser.add_argument(
        "--probe",
        action="store_true",
        help="run the servers with wall-clock probes (bench/dispatch_probe.py) and report where "
        "each request's time goes",
    )
    parser.add_argument(
        "--solo", type=int, help="one-at-a-time diagnostic requests per kind (200, quick 100)"
    )
    parser.add_argument(
        "--wait-quiet",
        type=int,
        default=0,
        metavar="SECONDS",
        help="before each phase, wait up to this long for other jobs on the machine to use "
        "under 20%% of a core",
    )
    parser.add_argument("--no-write", action="store_true", help="do not write bench/results/")
    args = parser.parse_args(argv)
    gc.callbacks.append(record_gc)
    if args.profile and find_py_spy() is None:
        print(
            "--profile needs py-spy: uv pip install --python .venv/bin/python py-spy",
            file=sys.stderr,
        )
        return 2
    cfg = Config(
        workers=args.workers or (1000 if args.quick else 10_000),
        stations=args.stations or (100 if args.quick else 150),
        rate=args.rate,
        duration=args.duration or (5.0 if args.quick else 20.0),
        block_s=args.block,
        warmup_s=args.warmup if args.warmup is not None else (1.0 if args.quick else 2.0),
        race_workers=100,
        rounds=args.rounds or (10 if args.quick else 30),
        warmup_rounds=args.warmup_rounds,
        profile=args.profile,
        probe=args.probe,
        wait_quiet_s=args.wait_quiet,
        solo=args.solo if args.solo is not None else (100 if args.quick else 200),
        quick=args.quick,
        write=not args.no_write,
        command=" ".join(
            [".venv/bin/python -m bench.dispatch", *(sys.argv[1:] if argv is None else argv)]
        ),
    )

    return run_and_report("dispatch", lambda started: run_all(cfg, started), cfg.write)


if __name__ == "__main__":
    raise SystemExit(main())
