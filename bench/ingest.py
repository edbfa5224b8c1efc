"""Location-ingest load benchmark: single and batch pings against no-op routes, driven by wrk.

    .venv/bin/python -m bench.ingest [--duration 15] [--quick]

One benchmark, one long file on purpose: its setup, phases, checks and report read top to
bottom; what the benchmarks share lives once in `bench/lib/`.

One run:
  1. starts private PostgreSQL+PostGIS and Redis servers (`dispatch.local_servers`, not durable)
     and migrates the database;
  2. starts the service in ONE uvicorn process (`--processes N`: N) as `dispatch serve` does
     (`bench/serve.py`), with
     two no-op routes added: `GET /bench/noop` (public) and `POST /bench/noop-auth` (bearer token
     and worker role, like the ping routes);
  3. through the real API: one community (centre 31.2304, 121.4737, radius 15 km) and N workers
     with profiles there, verified, online, each with a first position; Redis `used_memory` is
     read before and after, for the index's memory per worker;
  4. runs wrk (`bench/wrk/*.lua`, rotating over the workers' tokens) against each route: the
     public no-op, the authenticated no-op, batch pings (20 points a request, timestamps
     increasing per worker) and single pings (recorded_at omitted, so the server stamps them),
     with the same wrk settings for each, in rounds of every route at one connection count,
     keeping the best run per route; it records the CPU every process used during each run
     (server, Redis, PostgreSQL, wrk, and everything else on the machine);
  5. checks that the pings were really applied: every batch response's accepted count (summed by
     wrk), every worker's indexed position against the last one wrk sent it, the positions the
     service wrote behind to the database, and a final batch and single ping from Python;
  6. prints a Markdown report and writes it to bench/results/ingest-<timestamp>.md.

Everything it starts is stopped at the end, also on error or Ctrl-C. wrk is the Debian package
`wrk` (`sudo apt-get install -y wrk`). `--profile` also samples the server with py-spy (not a
project dependency: `uv pip install py-spy` into the venv) during extra runs of the
authenticated no-op, the single and the batch route. The server and wrk share the machine's
cores with Redis and PostgreSQL, and with any other job: `--wait-quiet SECONDS` waits for other
jobs before each run and repeats a run they competed with.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import math
import os
import random
import re
import resource
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgpack

from bench.lib.machine import (
    REPO,
    log,
    machine_busy_s,
    machine_lines,
    pid_from_file,
    proc_cpu_s,
    sh,
    tree_cpu_s,
    wait_for_quiet,
)
from bench.lib.profiling import find_py_spy, summarize_profile
from bench.lib.report import RESULTS_DIR, run_and_report
from bench.lib.server import Server
from bench.lib.servers import private_servers
from bench.lib.stats import bearer, verdict
from dispatch.devtools.local_servers import LocalServers
from dispatch.identity.auth import issue_token
from dispatch.identity.phones import PhoneVault
from dispatch.identity.principals import handle_user, upsert_phone_user
from dispatch.infra.db import make_engine, make_sessionmaker
from geo.areas import destination

WRK_DIR = Path(__file__).resolve().with_name("wrk")

CENTER = (31.2304, 121.4737)
COMMUNITY_RADIUS_M = 15_000
SPREAD_M = 10_000.0
"""Workers' homes lie uniformly within this distance of the centre."""
SKILLS = ("plumbing", "electrical", "cleaning", "moving", "handyman", "pet_care")
SKILLS_PER_WORKER = 2
BATCH = 20
SECRET = "bench-ingest-secret-not-for-production"
TOKEN_TTL_S = 12 * 3600
SETUP_CONCURRENCY = 16
BATCH_LAG_S = 60
"""Batch timestamps start this far behind the wall clock (see bench/wrk/batch.lua)."""
POSITION_FLUSH_WAIT_S = 3.0
"""The service writes positions to the database every 2 s (`PositionSink`)."""

MAX_OTHER_PCT = 25.0
"""A run during which other processes used more than this (% of a core) competed for the CPU."""
RETRIES = 2
"""With --wait-quiet, a run that competed is run again up to this many times."""

TARGET_BATCH_PINGS_S = 25_000.0
TARGET_SINGLE_VS_NOOP = 0.6


@dataclass(frozen=True)
class Endpoint:
    key: str
    method: str
    path: str
    script: str
    pings: int
    """Pings per request (0: not a ping route)."""
    what: str


NOOP_PUBLIC = Endpoint("noop-public", "GET", "/bench/noop", "noop.lua", 0, "no-op, no auth")
NOOP_AUTH = Endpoint(
    "noop-auth", "POST", "/bench/noop-auth", "noop_auth.lua", 0, "no-op, JWT + worker guard"
)
BATCH_PINGS = Endpoint(
    "batch", "POST", "/v1/workers/me/locations", "batch.lua", BATCH, f"{BATCH} pings a request"
)
SINGLE_PING = Endpoint(
    "single", "POST", "/v1/workers/me/location", "ping.lua", 1, "1 ping a request"
)
ENDPOINTS = (NOOP_PUBLIC, NOOP_AUTH, BATCH_PINGS, SINGLE_PING)


def set_batch(points: int) -> None:
    """Points per batch request (`--batch`): the module's BATCH and the batch route's Endpoint."""
    global BATCH, BATCH_PINGS, ENDPOINTS
    BATCH = points
    BATCH_PINGS = Endpoint(
        "batch", "POST", "/v1/workers/me/locations", "batch.lua", BATCH, f"{BATCH} pings a request"
    )
    ENDPOINTS = (NOOP_PUBLIC, NOOP_AUTH, BATCH_PINGS, SINGLE_PING)


@dataclass
class Config:
    workers: int
    duration: int
    warmup: int
    connections: tuple[int, ...]
    threads: int
    timeout_s: int
    profile: bool
    quick: bool
    wait_quiet_s: int
    write: bool
    command: str
    processes: int = 1
    """Server processes (`bench.serve --processes`, as `dispatch serve --processes`)."""


# --- processes and CPU accounting ----------------------------------------------------------------


# --- setup through the API ------------------------------------------------------------------------


@dataclass
class Worker:
    line: int
    """1-based line in the tokens file (the wrk scripts' name for the worker)."""
    user_id: int
    token: str
    lat: float
    lng: float


@dataclass
class World:
    community_id: int
    workers: list[Worker]
    operator: dict[str, str]
    setup_s: float
    memory: dict[str, Any]


def homes(n: int, seed: int = 20_241_123) -> list[tuple[float, float]]:
    rng = random.Random(seed)
    return [
        destination(*CENTER, rng.uniform(0, 360), SPREAD_M * math.sqrt(rng.random()))
        for _ in range(n)
    ]


def state_key(community_id: int) -> str:
    # The community's state hash, as laid out in geo/live/redis.py.
    return f"live:{{c:{community_id}}}:w"


async def redis_memory(redis: Any) -> dict[str, int]:
    """used_memory, and the parts of it that are not data: client connections' buffers (the
    service's pool opens connections as load grows) and cached scripts."""
    info = await redis.info("memory")
    return {
        "used": int(info["used_memory"]),
        "clients": int(info.get("mem_clients_normal", 0)),
        "scripts": int(info.get("used_memory_scripts", 0)),
        "dataset": int(info.get("used_memory_dataset", 0)),
    }


async def index_breakdown(redis: Any, community_id: int) -> dict[str, list[int]]:
    """MEMORY USAGE of the community's live-index keys (every key carrying its hash tag), by
    Redis type: type -> [keys, bytes, entries (hash fields, set or sorted-set members)]."""
    count = {"hash": redis.hlen, "set": redis.scard, "zset": redis.zcard}
    by_type: dict[str, list[int]] = {}
    async for key in redis.scan_iter(match=f"live:{{c:{community_id}}}*", count=1000):
        kind = (await redis.type(key)).decode()
        usage = int(await redis.memory_usage(key, samples=0) or 0)
        entries = int(await count[kind](key)) if kind in count else 0
        totals = by_type.setdefault(kind, [0, 0, 0])
        totals[0] += 1
        totals[1] += usage
        totals[2] += entries
    return by_type


async def indexed_states(redis: Any, community_id: int) -> dict[int, list[Any]]:
    """worker id -> [lat, lng, ts, available, in_area, cell, skills, version]
    (geo/live/lua/common.lua)."""
    raw = await redis.hgetall(state_key(community_id))
    return {int(k): msgpack.unpackb(v) for k, v in raw.items()}


async def setup_world(cfg: Config, base_url: str, db_url: str, redis_url: str) -> World:
    import httpx
    from redis.asyncio import Redis

    from geo.live.redis import lua_source

    started = time.perf_counter()
    engine = make_engine(db_url, pool_size=2)
    sessions = make_sessionmaker(engine)
    redis = Redis.from_url(redis_url)
    vault = PhoneVault(SECRET)
    try:
        async with sessions.begin() as session:
            admin_id = await handle_user(session, "bench-admin", "admin", [])
        admin = bearer(issue_token(SECRET, admin_id, "admin", None, TOKEN_TTL_S))
        limits = httpx.Limits(max_connections=SETUP_CONCURRENCY)
        async with httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits) as client:
            body = {
                "name": "Bench ingest",
                "center": {"lat": CENTER[0], "lng": CENTER[1]},
                "radius_m": COMMUNITY_RADIUS_M,
            }
            r = await client.post("/v1/communities", json=body, headers=admin)
            assert r.status_code == 201, r.text
            cid = int(r.json()["id"])
            async with sessions.begin() as session:
                op_id = await handle_user(session, f"bench-operator-{cid}", "operator", [cid])
            operator = bearer(issue_token(SECRET, op_id, "operator", [cid], TOKEN_TTL_S))

            # The live-index scripts are loaded now, so they are not counted per worker.
            for name in ("status", "move", "search"):
                await redis.script_load(lua_source(name))
            memory_before = await redis_memory(redis)

            places = homes(cfg.workers)
            async with sessions.begin() as session:
                ids = []
                for i in range(cfg.workers):
                    phone = f"+86137{i:08d}"
                    ids.append(
                        await upsert_phone_user(session, vault, phone, vault.hash(phone), "worker")
                    )
            workers = [
                Worker(i + 1, uid, issue_token(SECRET, uid, "worker", None, TOKEN_TTL_S), *place)
                for i, (uid, place) in enumerate(zip(ids, places, strict=True))
            ]
            rng = random.Random(7)
            first_fix = (datetime.now(UTC) - timedelta(minutes=10)).isoformat()
            gate = asyncio.Semaphore(SETUP_CONCURRENCY)

            async def ready(w: Worker) -> None:
                headers = bearer(w.token)
                profile = {
                    "name": f"Bench worker {w.line}",
                    "skills": rng.sample(SKILLS, SKILLS_PER_WORKER),
                    "community_ids": [cid],
                }
                async with gate:
                    r = await client.put("/v1/workers/me", json=profile, headers=headers)
                    assert r.status_code == 200, r.text
                    r = await client.post(f"/v1/ops/workers/{w.user_id}/verify", headers=operator)
                    assert r.status_code == 200, r.text
                    r = await client.post(
                        "/v1/workers/me/presence", json={"status": "online"}, headers=headers
                    )
                    assert r.status_code == 200 and r.json()["online"], r.text
                    # An old first fix, so every benchmark ping is newer than it.
                    ping = {"lat": w.lat, "lng": w.lng, "recorded_at": first_fix}
                    r = await client.post("/v1/workers/me/location", json=ping, headers=headers)
                    assert r.status_code == 204, r.text

            await asyncio.gather(*(ready(w) for w in workers))
        states = await indexed_states(redis, cid)
        searchable = sum(1 for s in states.values() if s[2] >= 0 and s[3] == 1 and s[4] == 1)
        if searchable != cfg.workers:
            raise RuntimeError(f"{searchable} of {cfg.workers} workers are searchable after setup")
        memory_after = await redis_memory(redis)
        memory = {
            "before": memory_before,
            "after": memory_after,
            "per_worker": (memory_after["used"] - memory_before["used"]) / cfg.workers,
            "per_worker_net": (
                (memory_after["used"] - memory_after["clients"] - memory_after["scripts"])
                - (memory_before["used"] - memory_before["clients"] - memory_before["scripts"])
            )
            / cfg.workers,
            "per_worker_dataset": (memory_after["dataset"] - memory_before["dataset"])
            / cfg.workers,
            "keys": await index_breakdown(redis, cid),
        }
        return World(cid, workers, operator, time.perf_counter() - started, memory)
    finally:
        await redis.aclose()
        await engine.dispose()


def write_tokens(path: Path, workers: Sequence[Worker]) -> None:
    path.write_text("".join(f"{w.token} {w.lat!r} {w.lng!r}\n" for w in workers))


# --- wrk runs ------------------------------------------------------------------------------------


@dataclass
class Run:
    endpoint: Endpoint
    connections: int
    threads: int
    duration: int
    warmup: bool
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p75_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    n2xx: int
    nother: int
    wrk_non2xx: int
    socket_errors: dict[str, int]
    codes: dict[str, int]
    samples: list[str]
    accepted: int
    ignored: int
    rejected: int
    cpu: dict[str, float]
    """CPU use during the run, in % of one core: server, redis, postgres, wrk, other (the rest
    of the machine)."""
    lastpos: dict[int, tuple[Sent, Sent | None]] = field(repr=False)
    """Tokens-file line -> the last and last-but-one fix wrk sent that worker."""
    started: float = 0.0
    ended: float = 0.0
    wall_s: float = 0.0

    @property
    def server_us(self) -> float:
        """Server CPU per request, in µs: unlike req/s, barely moved by other jobs."""
        return self.cpu["server"] / 100 * self.wall_s / max(self.requests, 1) * 1e6

    @property
    def settings(self) -> str:
        return f"-t{self.threads} -c{self.connections} -d{self.duration}s"

    @property
    def pings_s(self) -> float:
        return self.rps * self.endpoint.pings


CPU_KEYS = ("server", "redis", "postgres", "wrk", "other")

_UNIT_MS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text.strip())
    if not m:
        raise ValueError(f"cannot read a wrk duration from {text!r}")
    return float(m.group(1)) * _UNIT_MS[m.group(2)]


def parse_wrk(out: str) -> dict[str, Any]:
    def need(pattern: str) -> re.Match[str]:
        m = re.search(pattern, out, re.MULTILINE)
        if not m:
            raise RuntimeError(f"unexpected wrk output (no {pattern!r}):\n{out}")
        return m

    done = need(r"^(\d+) requests in ([\d.]+\w+),|^\s+(\d+) requests in ([\d.]+\w+),")
    requests = int(done.group(1) or done.group(3))
    seconds = _ms(done.group(2) or done.group(4)) / 1000
    pct = {q: _ms(need(rf"^\s+{q}%\s+(\S+)\s*$").group(1)) for q in (50, 75, 90, 99)}
    errors = {"connect": 0, "read": 0, "write": 0, "timeout": 0}
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        errors = dict(zip(errors, map(int, m.groups()), strict=True))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    lua = json.loads(need(r"^BENCH_RESULT (.*)$").group(1))
    return {
        "requests": requests,
        "seconds": seconds,
        "rps": float(need(r"Requests/sec:\s+([\d.]+)").group(1)),
        "p50_ms": pct[50],
        "p75_ms": pct[75],
        "p90_ms": pct[90],
        "p99_ms": pct[99],
        "max_ms": _ms(need(r"^\s+Latency\s+\S+\s+\S+\s+(\S+)").group(1)),
        "wrk_non2xx": int(m.group(1)) if m else 0,
        "socket_errors": errors,
        "lua": lua,
    }


Sent = tuple[float, float, float | None]
"""(lat, lng, recorded_at) of a fix wrk sent; recorded_at None when the server stamps it."""


def _sent(lat: str, lng: str, ts: str) -> Sent | None:
    if lat == "-":
        return None
    return float(lat), float(lng), (float(ts) / 1000 if ts != "-" else None)


def read_lastpos(path: Path) -> dict[int, tuple[Sent, Sent | None]]:
    """What bench/wrk/common.lua's done() wrote: "line LAST PREV", each "lat lng ts_ms"."""
    out: dict[int, tuple[Sent, Sent | None]] = {}
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        parts = line.split()
        last = _sent(*parts[1:4])
        assert last is not None
        out[int(parts[0])] = (last, _sent(*parts[4:7]))
    return out


class Bench:
    """Runs wrk against the server, keeping the batch timestamps monotonic across runs."""

    def __init__(self, cfg: Config, root: Path, server: Server, servers: LocalServers) -> None:
        self.cfg = cfg
        self.root = root
        self.server = server
        self.servers = servers
        self.tokens = root / "tokens.txt"
        self.ts_floor_ms = 0
        self.runs: list[Run] = []
        self.idle_load = 0.0
        """CPU % of a core the machine used just before the runs, with the server idle."""
        self.repeated: list[Run] = []
        """Measured runs thrown away because other jobs competed, and run again."""

    def cpu_snapshot(self) -> dict[str, float]:
        redis_pid = pid_from_file(self.servers.redis.root / "redis.pid")
        pg_pid = pid_from_file(self.servers.postgres.pgdata / "postmaster.pid")
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        ours = {
            "server": tree_cpu_s(self.server.pid),  # with its server processes, if several
            "redis": proc_cpu_s(redis_pid) if redis_pid else 0.0,
            "postgres": tree_cpu_s(pg_pid) if pg_pid else 0.0,
            "wrk": children.ru_utime + children.ru_stime,
        }
        # Everything else on the machine: other jobs competing for the same two cores.
        return {**ours, "other": machine_busy_s() - sum(ours.values())}

    def run(self, ep: Endpoint, connections: int, duration: int, *, warmup: bool = False) -> Run:
        if not self.server.alive():
            raise RuntimeError(f"the server died:\n{self.server.log_tail()}")
        lastpos = self.root / f"lastpos-{ep.key}.txt"
        lastpos.unlink(missing_ok=True)
        env = {
            **os.environ,
            "BENCH_WRK_DIR": str(WRK_DIR),
            "BENCH_TOKENS": str(self.tokens),
            "BENCH_THREADS": str(self.cfg.threads),
            "BENCH_LASTPOS": str(lastpos),
            "BENCH_BATCH": str(BATCH),
            "BENCH_LAG_S": str(BATCH_LAG_S),
            "BENCH_TS_FLOOR_MS": str(self.ts_floor_ms),
        }
        cmd = [
            "wrk", f"-t{self.cfg.threads}", f"-c{connections}", f"-d{duration}s", "--latency",
            f"--timeout={self.cfg.timeout_s}s", "-s", str(WRK_DIR / ep.script),
            self.server.url + ep.path,
        ]  # fmt: skip
        before, wall = self.cpu_snapshot(), time.perf_counter()
        started = time.time()
        proc = subprocess.run(
            cmd, env=env, capture_output=True, text=True, timeout=duration + 120, check=False
        )
        ended = time.time()
        after, wall = self.cpu_snapshot(), time.perf_counter() - wall
        if proc.returncode != 0:
            raise RuntimeError(f"wrk failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        parsed = parse_wrk(proc.stdout)
        lua = parsed.pop("lua")
        positions = read_lastpos(lastpos)
        if ep.key == BATCH_PINGS.key and positions:
            newest = max(last[2] or 0.0 for last, _ in positions.values())
            self.ts_floor_ms = max(self.ts_floor_ms, int(newest * 1000) + 1)
        if ep.key == SINGLE_PING.key:
            # The server stamped these pings: later batch points must be newer still.
            self.ts_floor_ms = max(self.ts_floor_ms, int((time.time() + 1) * 1000))
        run = Run(
            endpoint=ep,
            connections=connections,
            threads=self.cfg.threads,
            duration=duration,
            warmup=warmup,
            n2xx=int(lua["n2xx"]),
            nother=int(lua["nother"]),
            codes={str(k): int(v) for k, v in lua["codes"].items()},
            samples=list(lua["samples"]),
            accepted=int(lua["accepted"]),
            ignored=int(lua["ignored"]),
            rejected=int(lua["rejected"]),
            cpu={k: max(0.0, 100 * (after[k] - before[k]) / wall) for k in before},
            lastpos=positions,
            started=started,
            ended=ended,
            wall_s=wall,
            **parsed,
        )
        tag = "warm-up" if warmup else "run"
        log(
            f"  {tag:7} {ep.key:12} c={connections:<4} {run.rps:9.0f} req/s  "
            f"p50 {run.p50_ms:7.2f} ms  p99 {run.p99_ms:7.2f} ms  2xx {run.n2xx}  "
            f"non-2xx {run.nother}  cpu " + " ".join(f"{k} {v:.0f}%" for k, v in run.cpu.items())
        )
        if run.nother:
            log(f"  non-2xx responses: {run.codes}; first bodies: {run.samples[:3]}")
        time.sleep(1.0)
        return run

    def measure(self, ep: Endpoint, connections: int) -> Run:
        """A measured run; with --wait-quiet, waits for a quiet machine first and runs again
        (up to RETRIES times) when other jobs competed for the CPU during the run."""
        attempts = 1 + (RETRIES if self.cfg.wait_quiet_s else 0)
        for attempt in range(attempts):
            if self.cfg.wait_quiet_s:
                wait_for_quiet(self.cfg.wait_quiet_s)
            run = self.run(ep, connections, self.cfg.duration)
            if run.cpu["other"] <= MAX_OTHER_PCT or attempt == attempts - 1:
                break
            log(f"  other jobs used {run.cpu['other']:.0f}% of a core during the run: again")
            self.repeated.append(run)
        self.runs.append(run)
        return run

    def best(self, ep: Endpoint) -> Run:
        """The fastest run of the route, among those no other job competed with if any."""
        runs = [r for r in self.runs if r.endpoint == ep]
        clean = [r for r in runs if r.cpu["other"] <= MAX_OTHER_PCT]
        return max(clean or runs, key=lambda r: r.rps)


# --- checks ---------------------------------------------------------------------------------------


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


def _same(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-9


def applied(run: Run, line: int, lat: float, lng: float, ts: float, tol: float = 1e-9) -> str:
    """Whether a fix is the last one wrk sent the worker ("last"), the last-but-one ("prev": the
    last request was still in flight when wrk stopped), or neither ("no")."""
    last, prev = run.lastpos.get(line, (None, None))
    for name, sent in (("last", last), ("prev", prev)):
        if sent is None or abs(sent[0] - lat) > tol or abs(sent[1] - lng) > tol:
            continue
        if sent[2] is not None and abs(sent[2] - ts) < 1e-6:
            return name
        if sent[2] is None and run.started - 1 <= ts <= run.ended + 1:
            return name
    return "no"


def applied_check(name: str, run: Run, verdicts: Counter[str], n: int) -> Check:
    in_flight = run.connections * run.threads
    ok = verdicts["last"] + verdicts["prev"] == n and verdicts["prev"] <= in_flight
    return Check(
        f"{run.endpoint.key}: {name}",
        ok,
        f"{verdicts['last']} / {n} workers at the last fix wrk sent them, {verdicts['prev']} at "
        f"the one before (its last request in flight when wrk stopped; at most {in_flight} can "
        f"be), {verdicts['no']} at neither (run {run.settings})",
    )


async def check_positions(redis_url: str, world: World, run: Run) -> Check:
    """Every worker's indexed fix is the last one wrk sent it (position and time), so the pings
    were applied. Batch points carry their timestamp; single pings are stamped by the server,
    whose stamp must fall within the run."""
    from redis.asyncio import Redis

    redis = Redis.from_url(redis_url)
    try:
        states = await indexed_states(redis, world.community_id)
    finally:
        await redis.aclose()
    verdicts: Counter[str] = Counter()
    for w in world.workers:
        s = states.get(w.user_id)
        verdicts[applied(run, w.line, s[0], s[1], s[2]) if s else "no"] += 1
    return applied_check("indexed fix = last fix sent", run, verdicts, len(world.workers))


async def check_database(db_url: str, world: World, run: Run) -> Check:
    """The positions written behind to the database (PositionSink) are the last ones sent."""
    from sqlalchemy import text

    engine = make_engine(db_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    text(
                        "SELECT user_id, ST_Y(location::geometry), ST_X(location::geometry), "
                        "extract(epoch FROM location_at) FROM workers "
                        "WHERE user_id = ANY(CAST(:ids AS bigint[]))"
                    ),
                    {"ids": [w.user_id for w in world.workers]},
                )
            ).all()
    finally:
        await engine.dispose()
    by_id = {int(r[0]): r for r in rows}
    verdicts: Counter[str] = Counter()
    for w in world.workers:
        row = by_id.get(w.user_id)
        if row is None or row[1] is None:
            verdicts["no"] += 1
            continue
        lat, lng, ts = float(row[1]), float(row[2]), float(row[3])
        verdicts[applied(run, w.line, lat, lng, ts, tol=1e-7)] += 1
    return applied_check(
        "database fix (written behind; PostGIS round trip, 1e-7° tolerance) = last fix sent",
        run,
        verdicts,
        len(world.workers),
    )


def counts_check(runs: Sequence[Run]) -> Check:
    """What the Lua scripts counted agrees with wrk's own counts, and no socket errors."""
    bad = [
        f"{r.endpoint.key} {r.settings}"
        for r in runs
        if r.n2xx + r.nother != r.requests
        or r.nother != r.wrk_non2xx
        or any(r.socket_errors.values())
    ]
    return Check(
        "every response counted (Lua 2xx + non-2xx = wrk's requests; non-2xx = wrk's "
        "'Non-2xx or 3xx'), no socket errors",
        not bad,
        f"{len(runs) - len(bad)} / {len(runs)} runs" + (f"; off: {', '.join(bad)}" if bad else ""),
    )


async def final_requests(base_url: str, redis_url: str, world: World) -> list[Check]:
    """A batch and a single ping from Python for a few workers, checked against the index."""
    import httpx
    from redis.asyncio import Redis

    redis = Redis.from_url(redis_url)
    checks: list[Check] = []
    try:
        states = await indexed_states(redis, world.community_id)
        sample = world.workers[:: max(1, len(world.workers) // 5)][:5]
        accepted, results = 0, []
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
            for w in sample:
                lat, lng, ts = states[w.user_id][:3]
                start = max(ts + 0.05, time.time() - 2.0)
                points = []
                for k in range(BATCH):
                    lat += 1e-6
                    at = datetime.fromtimestamp(start + 0.05 * k, UTC).isoformat()
                    points.append({"lat": lat, "lng": lng, "recorded_at": at})
                r = await client.post(
                    "/v1/workers/me/locations", json={"points": points}, headers=bearer(w.token)
                )
                body = r.json()
                results.append(body)
                if r.status_code == 200 and body == {
                    "accepted": BATCH,
                    "ignored": 0,
                    "rejected": [],
                }:
                    accepted += 1
            checks.append(
                Check(
                    f"final batch of {BATCH} from Python: all accepted",
                    accepted == len(sample),
                    f"{accepted} / {len(sample)} workers; bodies: {results[0]}",
                )
            )
            await asyncio.sleep(0.1)
            ok = 0
            for w in sample:
                lat, lng = states[w.user_id][0] + 2e-5, states[w.user_id][1]
                r = await client.post(
                    "/v1/workers/me/location",
                    json={"lat": lat, "lng": lng},
                    headers=bearer(w.token),
                )
                pos = msgpack.unpackb(await redis.hget(state_key(world.community_id), w.user_id))
                if r.status_code == 204 and _same(pos[0], lat) and abs(pos[2] - time.time()) < 5:
                    ok += 1
            checks.append(
                Check(
                    "final single ping from Python: applied to the index",
                    ok == len(sample),
                    f"{ok} / {len(sample)} workers",
                )
            )
    finally:
        await redis.aclose()
    return checks


# --- profiling (optional) -------------------------------------------------------------------------


# Where a sample's time goes: the first rule (leaf frame upward) that one of its frames matches.
PROFILE_BUCKETS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("database: SQLAlchemy + asyncpg (`WorkerService.listing` refresh, `PositionSink.flush`)",
     ("sqlalchemy/", "asyncpg/", "greenlet")),
    ("Redis client (redis-py) + building the move arguments (`geo/live/`)",
     ("redis/", "geo/live/")),
    ("JWT check (Litestar `Token.decode`, PyJWT, `principal_from_token`)",
     ("jwt/", "litestar/security/jwt", "principal_from_token")),
    ("sync guard run in the thread pool (`sync_to_thread`, executor, `copy(handler)`)",
     ("_chain_future", "wrap_future", "run_in_executor", "concurrent/futures", "threading.py",
      "copy.py", "sync_to_thread", "litestar/concurrency", "authorize_connection",
      "dispatch/identity/auth.py")),
    ("body decoding + validation (msgspec, signature model)",
     ("msgspec", "litestar/_signature", "litestar/_kwargs")),
    ("handlers + service code (`dispatch/workers/`, `geo/`)",
     ("dispatch/workers/", "geo/", "noop_auth (bench", "noop (bench", "dispatch/web/deps.py")),
    ("request-log middleware (`dispatch/web/middleware.py`)",
     ("dispatch/web/middleware.py", "structlog")),
    ("Prometheus middleware", ("prometheus",)),
    ("rest of Litestar (routing, middleware stack, responses)", ("litestar/",)),
)  # fmt: skip
OTHER_BUCKET = "uvicorn, httptools, event loop, sockets"


def profile_run(bench: Bench, ep: Endpoint, connections: int, stamp: str) -> dict[str, Any]:
    """A run of the route with py-spy sampling the server (a separate run: sampling slows it);
    the raw stacks go to bench/results/ingest-<stamp>-<route>.pyspy.txt.gz."""
    py_spy = find_py_spy()
    assert py_spy
    raw = bench.root / f"{ep.key}.pyspy.txt"
    if bench.cfg.wait_quiet_s:
        wait_for_quiet(bench.cfg.wait_quiet_s)
    spy = subprocess.Popen(
        [py_spy, "record", "--pid", str(bench.server.pid), "--rate", "250", "--format", "raw",
         "--nonblocking", "--duration", str(bench.cfg.duration), "-o", str(raw),
         *(["--subprocesses"] if bench.server.processes > 1 else [])],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    time.sleep(0.5)
    run = bench.run(ep, connections, bench.cfg.duration, warmup=True)
    _, err = spy.communicate(timeout=60)
    if spy.returncode != 0 or not raw.exists():
        return {"endpoint": ep, "run": run, "error": err.decode(errors="replace")[-500:]}
    kept = None
    if bench.cfg.write:
        RESULTS_DIR.mkdir(exist_ok=True)
        kept = RESULTS_DIR / f"ingest-{stamp}-{ep.key}.pyspy.txt.gz"
        with open(raw, "rb") as src, gzip.open(kept, "wb") as dst:
            shutil.copyfileobj(src, dst)
    return {
        "endpoint": ep,
        "run": run,
        "raw": kept,
        **summarize_profile(raw, PROFILE_BUCKETS, OTHER_BUCKET),
    }


# --- the report -----------------------------------------------------------------------------------


def machine(processes: int = 1) -> list[str]:
    return machine_lines(
        "load generator, server, Redis and PostgreSQL share them",
        f"uvloop, httptools, {processes} server process{'es' if processes > 1 else ''}",
        sh("wrk", "--version"),
    )


def contended(run: Run) -> str:
    return " ⚠" if run.cpu["other"] > MAX_OTHER_PCT else ""


def fmt_ms(v: float) -> str:
    return f"{v:.2f} ms" if v < 100 else f"{v:.0f} ms"


def profile_section(profiles: Sequence[dict[str, Any]]) -> list[str]:
    ok = [p for p in profiles if "error" not in p]
    lines = [
        "",
        "## Where the server's time goes (py-spy)",
        "",
        "Separate runs with py-spy sampling the server process at 250 Hz (`--nonblocking`); "
        "sampling slows the server, so these runs are not in the tables above. Each sample is "
        "put in the first bucket (looking from the innermost frame outwards) one of its frames "
        "belongs to. % of the server's busy samples:",
        "",
    ]
    for p in profiles:
        if "error" in p:
            lines.append(f"- py-spy failed for {p['endpoint'].key}: `{p['error']}`")
    if not ok:
        return lines
    head = " | ".join(
        f"{p['endpoint'].key} ({p['run'].rps:,.0f} req/s, `-c{p['run'].connections}`)" for p in ok
    )
    lines += [f"| where | {head} |", "|---|" + "---:|" * len(ok)]
    for name in [b for b, _ in PROFILE_BUCKETS] + [OTHER_BUCKET]:
        lines.append(
            f"| {name} | " + " | ".join(f"{p['buckets'].get(name, 0):.1f}" for p in ok) + " |"
        )
    for p in ok:
        lines += [
            "",
            f"Top functions by own time, {p['endpoint'].key} ({p['samples']:,} samples"
            + (f"; raw stacks in `{p['raw'].relative_to(REPO)}`" if p["raw"] else "")
            + "):",
            "",
            "| function | own % | incl. % |",
            "|---|---:|---:|",
        ]
        lines += [f"| `{name}` | {own:.1f} | {incl:.1f} |" for name, own, incl in p["top"]]
    return lines


def report(
    cfg: Config,
    bench: Bench,
    world: World,
    checks: list[Check],
    profiles: list[dict],
    started: datetime,
) -> str:
    best = {ep.key: bench.best(ep) for ep in ENDPOINTS}
    single, batch = best["single"], best["batch"]
    noop_auth, noop_public = best["noop-auth"], best["noop-public"]
    r_auth = single.rps / noop_auth.rps
    r_public = single.rps / noop_public.rps
    lines = [
        f"# Ingest benchmark — {started:%Y-%m-%d %H:%M:%S} UTC",
        "",
        f"`{cfg.command}`" + (" (quick: fewer workers, shorter runs)" if cfg.quick else ""),
        "",
        *machine(cfg.processes),
        "",
        f"One community (centre {CENTER[0]}, {CENTER[1]}, radius {COMMUNITY_RADIUS_M / 1000:g} "
        f"km), {len(world.workers)} workers (homes uniform within {SPREAD_M / 1000:g} km of the "
        f"centre, {SKILLS_PER_WORKER} skills each), verified and online, set up through the API "
        f"in {world.setup_s:.0f} s. wrk `-t{cfg.threads} --timeout {cfg.timeout_s}s --latency`, "
        f"{cfg.duration} s per run; every route warmed up for {cfg.warmup} s, then rounds of "
        f"every route at one connection count ({', '.join(map(str, cfg.connections))}), so "
        "routes compared with each other run close together in time; the best run per route is "
        f"kept (among runs during which other processes used at most {MAX_OTHER_PCT:.0f}% of a "
        "core, if any). The wrk scripts rotate over all workers' tokens and count every "
        "response's status (and, for batches, its accepted / ignored / rejected counts).",
        "",
        f"Before the runs, with the server idle, the machine used {bench.idle_load:.0f}% of a "
        "core"
        + (
            " — other jobs were running, so these numbers are low and noisy."
            if bench.idle_load > 20
            else "."
        ),
        "",
        "## Targets",
        "",
        "| Target | Measured | Verdict |",
        "|---|---|---|",
        f"| batch ingest ≥ {TARGET_BATCH_PINGS_S:,.0f} pings/s | {batch.pings_s:,.0f} pings/s "
        f"({batch.rps:,.0f} req/s x {BATCH}, {batch.settings}) | "
        f"{verdict(batch.pings_s >= TARGET_BATCH_PINGS_S)} "
        f"({batch.pings_s / TARGET_BATCH_PINGS_S:.2f}x target) |",
        f"| single ping ≥ {TARGET_SINGLE_VS_NOOP}x no-op req/s (authenticated no-op) | "
        f"{single.rps:,.0f} / {noop_auth.rps:,.0f} = {r_auth:.2f}x | "
        f"{verdict(r_auth >= TARGET_SINGLE_VS_NOOP)} |",
        f"| single ping ≥ {TARGET_SINGLE_VS_NOOP}x no-op req/s (public no-op) | "
        f"{single.rps:,.0f} / {noop_public.rps:,.0f} = {r_public:.2f}x | "
        f"{verdict(r_public >= TARGET_SINGLE_VS_NOOP)} |",
        "",
        "The same ratios from server CPU per request (no-op ÷ route; the server is the "
        "bottleneck, so this is roughly what the ratio of req/s would be without competing "
        "jobs): "
        f"single vs authenticated no-op {noop_auth.server_us / single.server_us:.2f}x, "
        f"vs public no-op {noop_public.server_us / single.server_us:.2f}x; batch "
        f"{BATCH * 1e6 / batch.server_us:,.0f} pings per server CPU-second.",
        "",
        "## Best run per route",
        "",
        "| Route | What | wrk | req/s | pings/s | p50 | p99 | 2xx | non-2xx | server CPU/req | "
        "CPU % server / redis / pg / wrk / other |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for ep in ENDPOINTS:
        r = best[ep.key]
        lines.append(
            f"| `{ep.method} {ep.path}` | {ep.what} | `{r.settings}` | {r.rps:,.0f} | "
            + (f"{r.pings_s:,.0f}" if ep.pings else "—")
            + f" | {fmt_ms(r.p50_ms)} | {fmt_ms(r.p99_ms)} | {r.n2xx:,} | {r.nother:,} | "
            f"{r.server_us:,.0f} µs | "
            + " / ".join(f"{r.cpu[k]:.0f}" for k in CPU_KEYS)
            + contended(r)
            + " |"
        )
    lines += [
        "",
        "*Server CPU/req*: the server's CPU time over the run (all its processes) divided by "
        "the requests served, what one request costs the server; it moves much less than req/s "
        "when other jobs compete for the CPU. A process reads a worker's listing from the "
        "database at the worker's first ping to it and then only when the worker's profile "
        "version changes (or after 300 s; `WorkerService.listing`), so in these runs ping CPU "
        "hardly depends on how often each worker pings. "
        "CPU % is of one core over the run's wall time (200 % = both cores); *other* is every "
        "other process on the machine; ⚠ marks a run during which other processes used more "
        f"than {MAX_OTHER_PCT:.0f}% of a core, so it competed for the two cores and its numbers "
        "are low.",
        "",
        "## Every run",
        "",
        "| Route | wrk | requests | req/s | pings/s | p50 | p90 | p99 | max | 2xx | non-2xx | "
        "socket errors | server CPU/req | CPU % server / redis / pg / wrk / other |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---|",
    ]
    for r in bench.runs:
        errs = sum(r.socket_errors.values())
        lines.append(
            f"| {r.endpoint.key} | `{r.settings}` | {r.requests:,} | {r.rps:,.0f} | "
            + (f"{r.pings_s:,.0f}" if r.endpoint.pings else "—")
            + f" | {fmt_ms(r.p50_ms)} | {fmt_ms(r.p90_ms)} | {fmt_ms(r.p99_ms)} | "
            f"{fmt_ms(r.max_ms)} | {r.n2xx:,} | {r.nother:,} | "
            + (", ".join(f"{k} {v}" for k, v in r.socket_errors.items() if v) if errs else "0")
            + f" | {r.server_us:,.0f} µs | "
            + " / ".join(f"{r.cpu[k]:.0f}" for k in CPU_KEYS)
            + contended(r)
            + " |"
        )
    if bench.repeated:
        lines += [
            "",
            f"{len(bench.repeated)} run(s) during which other jobs competed were thrown away and "
            "run again: "
            + ", ".join(
                f"{r.endpoint.key} `-c{r.connections}` ({r.rps:,.0f} req/s, other "
                f"{r.cpu['other']:.0f}%)"
                for r in bench.repeated
            )
            + ".",
        ]
    non2xx = [r for r in bench.runs if r.nother]
    batch_runs = [r for r in bench.runs if r.endpoint.key == "batch"]
    sent = sum(r.n2xx for r in batch_runs) * BATCH
    lines += [
        "",
        "## Were the pings applied?",
        "",
        f"- Batch responses (all measured batch runs): {sum(r.accepted for r in batch_runs):,} "
        f"points accepted, {sum(r.ignored for r in batch_runs):,} ignored, "
        f"{sum(r.rejected for r in batch_runs):,} rejected, of {sent:,} sent in 2xx requests.",
    ]
    for c in checks:
        lines.append(f"- {'OK' if c.ok else '**FAILED**'} — {c.name}: {c.detail}")
    if non2xx:
        lines += ["", "**Non-2xx responses:**", ""]
        for r in non2xx:
            lines.append(f"- {r.endpoint.key} `{r.settings}`: {r.codes}; first: {r.samples[:2]}")
    else:
        lines.append("- Non-2xx responses: 0 in every run.")
    mem, n = world.memory, len(world.workers)
    kinds = {"hash": "hash (worker states)", "set": "sets", "zset": "sorted sets"}
    keys = "; ".join(
        f"{kinds.get(kind, kind)}: {k:,} key(s), {b / n:.0f} B/worker"
        + (f", {e:,} entries ({e / n:.1f} per worker)" if kind in kinds else "")
        for kind, (k, b, e) in sorted(mem["keys"].items())
    )
    lines += [
        "",
        "## Redis memory",
        "",
        f"`INFO memory` used_memory before the workers (community created, live-index scripts "
        f"loaded): {mem['before']['used'] / 2**20:.2f} MiB; after {n:,} workers have a status "
        f"and a position: {mem['after']['used'] / 2**20:.2f} MiB: **{mem['per_worker']:.0f} "
        "bytes per worker**. That difference includes the buffers of the client connections "
        "the service opened meanwhile (mem_clients_normal "
        f"{mem['before']['clients'] / 1024:.0f} → {mem['after']['clients'] / 1024:.0f} KiB); "
        f"without them and cached scripts: **{mem['per_worker_net']:.0f} bytes per worker** "
        f"(used_memory_dataset: {mem['per_worker_dataset']:.0f} B/worker); the keys below "
        "account for less than that, the rest being Redis-internal allocations not charged to "
        "any key.",
        "",
        f"`MEMORY USAGE` of the community's live-index keys, by type: {keys}.",
    ]
    if profiles:
        lines += profile_section(profiles)
    lines += [
        "",
        "## How the routes are driven",
        "",
        "- `noop-public`: `GET /bench/noop`, excluded from auth; no token, no body.",
        "- `noop-auth`: `POST /bench/noop-auth`, JWT auth + worker guard; the same tokens and "
        "the same body bytes as the single ping; the handler does not read the body.",
        f"- `batch`: {BATCH} points a request, each worker's timestamps increasing 10 ms a "
        f"point from max(its last point, now - {BATCH_LAG_S} s), a ≤ 0.15 m step per axis per "
        "point (≤ 21 m/s, under the 200 km/h limit).",
        "- `single`: a point within 2 m of the worker's home, `recorded_at` omitted (the server "
        "stamps it, so it is always the newest); workers rotate, so a worker pings again only "
        "after every other worker has.",
        "- All routes go through the same app middleware (request log, Prometheus) and the "
        "server logs at WARNING.",
    ]
    return "\n".join(lines) + "\n"


# --- main -----------------------------------------------------------------------------------------


def run_all(cfg: Config, started: datetime) -> str:
    with private_servers("ingest") as (root, servers, db_url, redis_url):
        log(f"private servers up under {root}")
        env = {
            **os.environ,
            "DATABASE_URL": db_url,
            "REDIS_URL": redis_url,
            "REDIS_CLUSTER": "0",
            "DISPATCH_SECRET_KEY": SECRET,
            "DISPATCH_DATA_DIR": str(root / "data"),
            "DISPATCH_LOG_LEVEL": "WARNING",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        }
        server = Server(root, env, cfg.processes)
        try:
            server.start()
            log(f"server pid {server.pid} on {server.url}")
            log(f"setting up 1 community and {cfg.workers} workers through the API")
            world = asyncio.run(setup_world(cfg, server.url, db_url, redis_url))
            log(
                f"setup took {world.setup_s:.1f} s; Redis "
                f"{world.memory['per_worker']:.0f} B per indexed worker"
            )
            bench = Bench(cfg, root, server, servers)
            write_tokens(bench.tokens, world.workers)
            bench.idle_load = wait_for_quiet(cfg.wait_quiet_s)
            checks: list[Check] = []
            log("warm-up, every route")
            for ep in ENDPOINTS:
                bench.run(ep, max(cfg.connections), cfg.warmup, warmup=True)
            # Rounds of every route at one connection count each, so the routes compared with
            # each other run close together in time, under the same conditions.
            for i, c in enumerate(cfg.connections):
                log(f"round {i + 1} of {len(cfg.connections)}: wrk -c{c}")
                for ep in ENDPOINTS:
                    run = bench.measure(ep, c)
                    if i < len(cfg.connections) - 1 or not ep.pings:
                        continue
                    # After the last run of a ping route, before anything else moves the workers.
                    checks.append(asyncio.run(check_positions(redis_url, world, run)))
                    if ep is SINGLE_PING:
                        time.sleep(POSITION_FLUSH_WAIT_S)
                        checks.append(asyncio.run(check_database(db_url, world, run)))
            checks += asyncio.run(final_requests(server.url, redis_url, world))
            checks.append(counts_check(bench.runs))
            profiles = []
            if cfg.profile:
                stamp = started.strftime("%Y%m%d-%H%M%S")
                for ep in (NOOP_AUTH, SINGLE_PING, BATCH_PINGS):
                    log(f"profiling {ep.key} with py-spy")
                    profiles.append(profile_run(bench, ep, bench.best(ep).connections, stamp))
            for c in checks:
                log(f"check {'OK' if c.ok else 'FAILED'}: {c.name}: {c.detail}")
            return report(cfg, bench, world, checks, profiles, started)
        finally:
            server.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.ingest", description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, help="seconds per wrk run (default 15, --quick 5)")
    parser.add_argument("--workers", type=int, help="workers (default 2000, --quick 500)")
    parser.add_argument(
        "--connections", help="comma-separated wrk -c values (default 16,32,64; --quick 32)"
    )
    parser.add_argument("--threads", type=int, default=1, help="wrk -t (default 1)")
    parser.add_argument("--warmup", type=int, help="warm-up seconds per route (default 3)")
    parser.add_argument("--timeout", type=int, default=10, help="wrk --timeout seconds")
    parser.add_argument(
        "--quick", action="store_true", help="500 workers, one connection count, 5 s runs"
    )
    parser.add_argument(
        "--profile", action="store_true", help="also sample the server with py-spy (see above)"
    )
    parser.add_argument(
        "--wait-quiet",
        type=int,
        default=0,
        metavar="SECONDS",
        help="wait up to this long for other jobs on the machine to finish before the runs",
    )
    parser.add_argument("--no-write", action="store_true", help="do not write bench/results/")
    parser.add_argument(
        "--batch", type=int, default=BATCH, help=f"points per batch request (default {BATCH})"
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        help="server processes, as `dispatch serve --processes N` (default 1)",
    )
    args = parser.parse_args(argv)
    if not 1 <= args.batch <= 500:
        parser.error("--batch must be between 1 and 500 (the route's limit)")
    set_batch(args.batch)

    if shutil.which("wrk") is None:
        print(
            "wrk not found. Install it (Debian/Ubuntu): sudo apt-get install -y wrk",
            file=sys.stderr,
        )
        return 2
    if args.profile and find_py_spy() is None:
        print(
            "--profile needs py-spy: .venv/bin/python -m uv pip install py-spy "
            "(or uv pip install --python .venv/bin/python py-spy)",
            file=sys.stderr,
        )
        return 2
    duration = args.duration or (5 if args.quick else 15)
    connections = args.connections or ("32" if args.quick else "16,32,64")
    cfg = Config(
        workers=args.workers or (500 if args.quick else 2000),
        duration=duration,
        warmup=args.warmup if args.warmup is not None else (2 if args.quick else 3),
        connections=tuple(int(c) for c in connections.split(",") if c.strip()),
        threads=args.threads,
        timeout_s=args.timeout,
        profile=args.profile,
        quick=args.quick,
        wait_quiet_s=args.wait_quiet,
        write=not args.no_write,
        processes=max(1, args.processes),
        command=".venv/bin/python -m bench.ingest "
        + " ".join(sys.argv[1:] if argv is None else argv),
    )

    return run_and_report("ingest", lambda started: run_all(cfg, started), cfg.write)


if __name__ == "__main__":
    raise SystemExit(main())
