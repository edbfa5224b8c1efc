"""Console benchmark: 5,000 online workers pinging every 4 s and a job a second, with 20
operators' event streams open.

    .venv/bin/python -m bench.console [--quick]

One run starts private PostgreSQL+PostGIS and Redis and one server (`bench.serve`: the app as
`dispatch serve` runs it, one process), builds one community with N verified online workers in the
database (bulk SQL, what profile + verify + presence + a ping leave there; the live index filled
by the service's rebuild) and residents, then, with the same steady load running throughout
(every worker pings `POST /v1/workers/me/location` every 4 s with a small move, a resident posts
a grab job a second at a worker's place, one of its first wave accepts it and completes it):

1. Quiet: no console open, `--window` seconds: the server's CPU (its process, all threads).
2. Watched: 20 consoles follow `GET /v1/ops/communities/{id}/events`, `--window` seconds:
   the server's CPU again (the difference over 20 is the CPU per console), and in every
   console each event's latency: positions from the server's receipt of the ping (the fix's
   `at`) to the console, so the one-second coalescing is inside it; job events from the
   commit (the stream entry's id: the XADD right after it, on the Redis clock of this same
   machine) and, for a job's creation, from the moment its POST was sent. Target p99 < 1.5 s.
3. Ingest: pings at full speed (64 closed loops) beside the job load, alternately with no
   console and with 20 consoles reading, `--rounds` times each: accepted pings a second.
   Target: with consoles at least 0.9x of without.

The consoles run in a process of their own (as browsers would be elsewhere), raw sockets
reading the server-sent events; in phase 3 they read without parsing.

One benchmark, one file: setup, phases, checks and report read top to bottom; what the
benchmarks share lives in `bench/lib/`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import random
import sys
import tempfile
import time
from array import array
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.lib.client import Pool, grab_job_request, http_request
from bench.lib.machine import log, machine_lines, tree_cpu_s, wait_for_quiet
from bench.lib.report import run_and_report
from bench.lib.server import Server
from bench.lib.servers import one_server
from bench.lib.stats import bearer, ms, pct, verdict
from bench.lib.world import bulk_workers, spread
from dispatch.identity.auth import issue_token
from dispatch.identity.principals import handle_user
from dispatch.infra.db import make_engine, make_sessionmaker
from geo.areas import destination
from geo.distance import haversine_m

SECRET = "bench-console-secret-not-for-production"
TOKEN_TTL_S = 12 * 3600
CENTER = (31.2304, 121.4737)
RADIUS_M = 5000
SKILLS = ("plumbing", "electrical", "cleaning", "moving", "handyman", "pet_care")
RESIDENTS = 20
SATURATING_LOOPS = 64
TARGET_LATENCY_P99_S = 1.5
TARGET_INGEST_RATIO = 0.9


@dataclass
class Config:
    workers: int
    ping_every_s: float
    job_rate: float
    consoles: int
    window_s: float
    ingest_s: float
    rounds: int
    wait_quiet_s: int
    write: bool
    command: str


# --- the consoles (a process of their own) ----------------------------------------------------


def consoles_main(
    port: int, cid: int, token: str, n: int, seconds: float, parse: bool, out: str, opened: Any
) -> None:
    import uvloop

    result = uvloop.run(_consoles(port, cid, token, n, seconds, parse, opened))
    Path(out).write_text(json.dumps(result))


async def _consoles(
    port: int, cid: int, token: str, n: int, seconds: float, parse: bool, all_open: Any
) -> dict[str, Any]:
    positions = array("d")
    commits = array("d")
    first_seen: dict[str, float] = {}  # "job id/status": the first console's wall time
    kinds: Counter[str] = Counter()
    received = [0]
    opened = asyncio.Event()
    ready = [0]
    deadline = time.monotonic() + seconds

    def handle(block: bytes) -> None:
        now = time.time()
        event_id = kind = data = None
        for line in block.split(b"\n"):
            if line.startswith(b"id: "):
                event_id = line[4:].decode()
            elif line.startswith(b"event: "):
                kind = line[7:].decode()
            elif line.startswith(b"data: "):
                data = line[6:]
        if kind is None:
            return
        kinds[kind] += 1
        if kind == "positions" and data:
            for p in json.loads(data)["workers"]:
                positions.append(now - p["at"])
        elif kind == "job" and data and event_id:
            commits.append(now - int(event_id.partition("-")[0]) / 1000)
            job = json.loads(data)
            first_seen.setdefault(f"{job['id']}/{job['status']}", now)

    async def one() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            f"GET /v1/ops/communities/{cid}/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Authorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n".encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head[:200]
        ready[0] += 1
        if ready[0] == n:
            opened.set()
        buffer = b""
        try:
            while time.monotonic() < deadline:
                remaining = deadline - time.monotonic()
                if not parse:
                    chunk = await asyncio.wait_for(reader.read(1 << 16), remaining)
                    received[0] += len(chunk)
                    continue
                size_line = await asyncio.wait_for(reader.readuntil(b"\r\n"), remaining)
                size = int(size_line.strip(), 16)
                chunk = (await reader.readexactly(size + 2))[:-2]
                received[0] += size
                buffer += chunk.replace(b"\r\n", b"\n")  # Litestar ends lines with CRLF
                while b"\n\n" in buffer:
                    block, buffer = buffer.split(b"\n\n", 1)
                    handle(block)
        except TimeoutError:
            pass
        finally:
            writer.close()

    tasks = [asyncio.create_task(one()) for _ in range(n)]
    await asyncio.wait_for(opened.wait(), 30)
    all_open.set()
    await asyncio.gather(*tasks)
    return {
        "positions": summary(positions),
        "commits": summary(commits),
        "first_seen": first_seen,
        "kinds": dict(kinds),
        "bytes": received[0],
    }


def summary(values: Sequence[float]) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {"n": 0, "p50": float("nan"), "p99": float("nan"), "max": float("nan")}
    return {
        "n": len(ordered),
        "p50": pct(ordered, 50),
        "p99": pct(ordered, 99),
        "max": ordered[-1],
    }


class Consoles:
    """The consoles' process: opened, followed for `seconds`, its figures read back."""

    def __init__(self, cfg: Config, port: int, world: dict[str, Any], seconds: float, parse: bool):
        self.out = Path(tempfile.mkdtemp(prefix="bench-consoles-")) / "result.json"
        ctx = multiprocessing.get_context("spawn")
        self.opened = ctx.Event()
        self.proc = ctx.Process(
            target=consoles_main,
            args=(port, world["cid"], world["operator"], cfg.consoles, seconds, parse,
                  str(self.out), self.opened),
            daemon=True,
        )  # fmt: skip

    async def open(self) -> None:
        self.proc.start()
        if not await asyncio.to_thread(self.opened.wait, 60):
            raise RuntimeError("the consoles did not open their streams")

    async def result(self) -> dict[str, Any]:
        await asyncio.to_thread(self.proc.join)
        if self.proc.exitcode != 0:
            raise RuntimeError(f"the consoles' process failed ({self.proc.exitcode})")
        return json.loads(await asyncio.to_thread(self.out.read_text))


# --- the world --------------------------------------------------------------------------------


async def build(cfg: Config, base_url: str, db_url: str) -> dict[str, Any]:
    import httpx
    from sqlalchemy import text

    engine = make_engine(db_url, pool_size=2)
    sessions = make_sessionmaker(engine)
    t0 = time.perf_counter()
    async with sessions.begin() as session:
        admin_id = await handle_user(session, "bench-admin", "admin", [])
        residents = [
            await handle_user(session, f"bench-resident-{i}", "resident", [])
            for i in range(RESIDENTS)
        ]
    admin = issue_token(SECRET, admin_id, "admin", None, TOKEN_TTL_S)
    async with httpx.AsyncClient(base_url=base_url, timeout=300) as client:
        body = {"name": "Bench console", "center": {"lat": CENTER[0], "lng": CENTER[1]},
                "radius_m": RADIUS_M, "timezone": "Asia/Shanghai",
                "dispatch": {"location_max_age_s": 3600, "offer_ttl_s": 30}}  # fmt: skip
        r = await client.post("/v1/communities", json=body, headers=bearer(admin))
        assert r.status_code == 201, r.text
        cid = int(r.json()["id"])
        rng = random.Random(15)
        places = spread(cfg.workers, CENTER, RADIUS_M - 300, seed=1501)
        skills = [tuple(rng.sample(SKILLS, 2)) for _ in places]
        ids = await bulk_workers(sessions, "cw", cid, places, skills)
        async with engine.begin() as conn:
            await conn.execute(text("ANALYZE"))
        r = await client.post(f"/v1/ops/communities/{cid}/rebuild-index", headers=bearer(admin))
        assert r.status_code == 200, r.text
        operator_id = await _operator(sessions, cid)
    await engine.dispose()
    return {
        "cid": cid, "admin": admin, "residents": residents, "setup_s": time.perf_counter() - t0,
        "workers": [
            (w, list(p), s, issue_token(SECRET, w, "worker", None, TOKEN_TTL_S))
            for w, p, s in zip(ids, places, skills, strict=True)
        ],
        "operator": issue_token(SECRET, operator_id, "operator", [cid], TOKEN_TTL_S),
    }  # fmt: skip


async def _operator(sessions: Any, cid: int) -> int:
    async with sessions.begin() as session:
        return await handle_user(session, "bench-operator", "operator", [cid])


# --- the load ---------------------------------------------------------------------------------


@dataclass
class Load:
    """The steady load (pings on their schedule, a job a second) and, on demand, full-speed
    pings; what each did."""

    cfg: Config
    port: int
    world: dict[str, Any]
    db_url: str
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    pings: Counter[int] = field(default_factory=Counter)
    ping_ms: list[float] = field(default_factory=list)
    post_sent: dict[int, float] = field(default_factory=dict)
    post_ms: list[float] = field(default_factory=list)
    accepts: Counter[int] = field(default_factory=Counter)
    accept_ms: list[float] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    tokens: dict[int, str] = field(default_factory=dict)
    rng: random.Random = field(default_factory=lambda: random.Random(7))

    def ping(self, i: int, step_m: float = 1.0) -> bytes:
        """Worker i's next ping, `step_m` from their last place (a walk, never too fast)."""
        _, place, _, token = self.world["workers"][i]
        lat, lng = destination(place[0], place[1], self.rng.uniform(0, 360), step_m)
        if haversine_m(*CENTER, lat, lng) < RADIUS_M - 100:  # stay in the area
            place[0], place[1] = lat, lng
        body = f'{{"lat":{place[0]:.6f},"lng":{place[1]:.6f}}}'.encode()
        return http_request("POST", "/v1/workers/me/location", self.port, token=token, body=body)

    async def steady_pings(self, pool: Pool) -> None:
        n = len(self.world["workers"])
        rate = n / self.cfg.ping_every_s
        t0, k = time.perf_counter(), 0
        pending: set[asyncio.Task[None]] = set()

        async def one(raw: bytes) -> None:
            status, answer, sent, done = await pool.call(raw)
            self.pings[status] += 1
            if status != 204 and len(self.problems) < 5:
                self.problems.append(f"ping {status} {answer[:200]!r}")
            self.ping_ms.append((done - sent) * 1000)

        while not self.stop.is_set():
            await asyncio.sleep(max(0.0, t0 + k / rate - time.perf_counter()))
            task = asyncio.create_task(one(self.ping(k % n)))
            pending.add(task)
            task.add_done_callback(pending.discard)
            k += 1
        await asyncio.gather(*pending)

    async def full_speed(self, pool: Pool, seconds: float) -> int:
        """Accepted pings in `seconds` from closed loops, each sending its next as soon as the
        last is answered (the steady pings go on beside)."""
        n = len(self.world["workers"])
        end = time.perf_counter() + seconds
        done = [0]

        async def loop(j: int) -> None:
            k = j
            while time.perf_counter() < end:
                status, *_ = await pool.call(self.ping(k % n, step_m=0.2))
                if status == 204:
                    done[0] += 1
                k += SATURATING_LOOPS

        await asyncio.gather(*(loop(j) for j in range(SATURATING_LOOPS)))
        return done[0]

    def token(self, user_id: int, role: str) -> str:
        if user_id not in self.tokens:
            self.tokens[user_id] = issue_token(SECRET, user_id, role, None, TOKEN_TTL_S)
        return self.tokens[user_id]

    async def grab_cycle(self, pool: Pool, engine: Any, k: int, *, hold_s: float = 2.0) -> bool:
        """Grab job k from post to completion: a resident posts it, the first worker offered it
        (read from the offers table, as a worker's push would tell them) accepts, and completes
        it `hold_s` later. True when the job was taken and completed."""
        from sqlalchemy import text

        _, place, skills, _ = self.world["workers"][(k * 7919) % len(self.world["workers"])]
        resident = self.world["residents"][k % RESIDENTS]
        raw = grab_job_request(
            self.port, self.token(resident, "resident"), place, skills[0], f"console-{k}"
        )
        wall = time.time()
        status, answer, sent, done = await pool.call(raw)
        if status != 201:
            self.problems.append(f"job POST {status}")
            return False
        self.post_ms.append((done - sent) * 1000)
        job_id = json.loads(answer)["id"]
        self.post_sent[job_id] = wall
        async with engine.connect() as conn:
            offers = (
                await conn.execute(
                    text("SELECT id, worker_id FROM offers WHERE job_id = :j ORDER BY id"),
                    {"j": job_id},
                )
            ).all()
        if not offers:
            return False
        oid, wid = offers[0]
        status, taken, sent, done = await pool.call(
            http_request(
                "POST", f"/v1/offers/{oid}/accept", self.port, token=self.token(wid, "worker")
            )
        )
        self.accepts[status] += 1
        if status != 200:
            return False
        self.accept_ms.append((done - sent) * 1000)
        version = json.loads(taken)["assignment_version"]
        if hold_s:
            await asyncio.sleep(hold_s)
        status, answer, *_ = await pool.call(
            http_request(
                "POST", f"/v1/jobs/{job_id}/complete", self.port,
                token=self.token(wid, "worker"),
                body=json.dumps({"assignment_version": version}).encode(),
            )
        )  # fmt: skip
        if status != 200:
            self.problems.append(f"complete {status} {answer[:160]!r}")
            return False
        return True

    async def jobs(self, pool: Pool) -> None:
        """`cfg.job_rate` grab cycles a second, on a fixed schedule."""
        engine = make_engine(self.db_url, pool_size=4)
        t0, k = time.perf_counter(), 0
        pending: set[asyncio.Task[bool]] = set()
        while not self.stop.is_set():
            await asyncio.sleep(max(0.0, t0 + k / self.cfg.job_rate - time.perf_counter()))
            task = asyncio.create_task(self.grab_cycle(pool, engine, k))
            pending.add(task)
            task.add_done_callback(pending.discard)
            k += 1
        await asyncio.gather(*pending)
        await engine.dispose()


async def cpu_window(server: Server, seconds: float) -> float:
    """The server's CPU over `seconds`, in % of one core."""
    before, t0 = tree_cpu_s(server.pid), time.perf_counter()
    await asyncio.sleep(seconds)
    return 100 * (tree_cpu_s(server.pid) - before) / (time.perf_counter() - t0)


async def run(cfg: Config, server: Server, world: dict[str, Any], db_url: str) -> dict[str, Any]:
    load = Load(cfg, server.port, world, db_url)
    steady_pool, job_pool, fast_pool = Pool(server.port), Pool(server.port), Pool(server.port)
    await steady_pool.warm(32)
    await job_pool.warm(8)
    await fast_pool.warm(SATURATING_LOOPS)
    background = [
        asyncio.create_task(load.steady_pings(steady_pool)),
        asyncio.create_task(load.jobs(job_pool)),
    ]
    out: dict[str, Any] = {}
    try:
        await asyncio.sleep(5.0)  # warm-up: the steady load settles
        log(f"quiet: {cfg.window_s:g} s with no console")
        out["cpu_quiet"] = await cpu_window(server, cfg.window_s)
        log(f"watched: {cfg.consoles} consoles for {cfg.window_s:g} s")
        watched = Consoles(cfg, server.port, world, cfg.window_s + 4, parse=True)
        await watched.open()
        await asyncio.sleep(2.0)
        sent_from = time.time()
        out["cpu_watched"] = await cpu_window(server, cfg.window_s)
        sent_until = time.time()
        out["watched"] = await watched.result()
        out["watched_jobs"] = {j: t for j, t in load.post_sent.items()
                               if sent_from <= t <= sent_until}  # fmt: skip
        out["ingest"] = []
        for r in range(cfg.rounds):
            for with_consoles in (False, True):
                consoles = None
                if with_consoles:
                    consoles = Consoles(cfg, server.port, world, cfg.ingest_s + 3, parse=False)
                    await consoles.open()
                accepted = await load.full_speed(fast_pool, cfg.ingest_s)
                rate = accepted / cfg.ingest_s
                log(f"ingest round {r + 1} {'with' if with_consoles else 'without'} consoles: "
                    f"{rate:,.0f} pings/s")  # fmt: skip
                read = (await consoles.result())["bytes"] if consoles else 0
                out["ingest"].append((with_consoles, rate, read))
    finally:
        load.stop.set()
        await asyncio.gather(*background)
        for pool in (steady_pool, job_pool, fast_pool):
            pool.close()
    out["load"] = load
    return out


# --- the report -------------------------------------------------------------------------------


def report(cfg: Config, world: dict[str, Any], out: dict[str, Any], started: Any) -> str:
    load: Load = out["load"]
    watched = out["watched"]
    pos, com = watched["positions"], watched["commits"]
    created = [
        watched["first_seen"][f"{j}/open"] - sent
        for j, sent in out["watched_jobs"].items()
        if f"{j}/open" in watched["first_seen"]
    ]
    per_console = (out["cpu_watched"] - out["cpu_quiet"]) / cfg.consoles
    without = [rate for w, rate, _ in out["ingest"] if not w]
    with_c = [rate for w, rate, _ in out["ingest"] if w]
    ratio = (sum(with_c) / len(with_c)) / (sum(without) / len(without))
    worst = max(pos["p99"], com["p99"], pct(created, 99) if created else 0.0)
    lines = [
        f"# Console benchmark, {started:%Y-%m-%d %H:%M} UTC",
        "",
        f"Command: `{cfg.command}`",
        "",
        "## Targets",
        "",
        "| Target | Measured | Verdict |",
        "|---|---|---|",
        f"| commit-to-console p99 < {TARGET_LATENCY_P99_S:g} s (coalescing included) | "
        f"positions **{pos['p99']:.3f} s**, job events {com['p99']:.3f} s, job creation from "
        f"its POST {pct(created, 99):.3f} s | {verdict(worst < TARGET_LATENCY_P99_S)} |",
        f"| ingest with {cfg.consoles} consoles >= {TARGET_INGEST_RATIO:g}x without | "
        f"{sum(with_c) / len(with_c):,.0f} / {sum(without) / len(without):,.0f} pings/s = "
        f"**{ratio:.2f}x** | {verdict(ratio >= TARGET_INGEST_RATIO)} |",
        f"| server CPU per connected console (measured) | **{per_console:.2f} % of a core** "
        f"({out['cpu_quiet']:.1f} % with none, {out['cpu_watched']:.1f} % with "
        f"{cfg.consoles}) | |",
        "",
        f"## Event latency in {cfg.consoles} consoles ({cfg.window_s:g} s watched)",
        "",
        "| what | from | n | p50 | p99 | max |",
        "|---|---|---:|---:|---:|---:|",
        f"| a worker's position | the server's receipt of the ping | {pos['n']:,} | "
        f"{pos['p50']:.3f} s | {pos['p99']:.3f} s | {pos['max']:.3f} s |",
        f"| a job's change | its commit (stream entry id) | {com['n']:,} | {com['p50']:.3f} s | "
        f"{com['p99']:.3f} s | {com['max']:.3f} s |",
        f"| a new job, first console | its POST sent | {len(created):,} | "
        f"{pct(created, 50):.3f} s | {pct(created, 99):.3f} s | "
        f"{max(created) if created else float('nan'):.3f} s |",
        "",
        f"Events seen: {watched['kinds']}; {watched['bytes'] / 1e6:,.1f} MB read by the consoles.",
        "",
        "## Ingest at full speed (64 closed loops, beside the steady load)",
        "",
        "| round | consoles | accepted pings/s | MB the consoles read |",
        "|---:|---:|---:|---:|",
    ]
    for i, (w, rate, read) in enumerate(out["ingest"]):
        lines.append(
            f"| {i // 2 + 1} | {cfg.consoles if w else 0} | {rate:,.0f} | {read / 1e6:,.1f} |"
        )
    statuses = dict(load.pings)
    lines += [
        "",
        "## Steady load",
        "",
        f"- pings: {sum(load.pings.values()):,} ({statuses}), p50 {ms(pct(load.ping_ms, 50))}, "
        f"p99 {ms(pct(load.ping_ms, 99))}",
        f"- jobs: {len(load.post_ms):,} posted, POST p50 {ms(pct(load.post_ms, 50))}, p99 "
        f"{ms(pct(load.post_ms, 99))}; accepts {dict(load.accepts)}"
        + (f"; problems {load.problems[:5]}" if load.problems else ""),
        "",
        "## Setup",
        "",
        f"- {cfg.workers:,} verified online workers in one community (radius {RADIUS_M} m), "
        f"each pinging every {cfg.ping_every_s:g} s ({cfg.workers / cfg.ping_every_s:,.0f} "
        f"pings/s), a job every {1 / cfg.job_rate:g} s; {cfg.consoles} consoles in a process of "
        f"their own; setup {world['setup_s']:.1f} s",
        "",
        "## Machine",
        "",
        *machine_lines(
            "load generator, consoles, server, Redis and PostgreSQL share them",
            "uvloop, httptools, 1 server process",
        ),
    ]
    return "\n".join(lines) + "\n"


def run_all(cfg: Config, started: Any) -> str:
    async def main() -> str:
        with one_server("console", SECRET) as (server, db_url):
            log(f"server on {server.url}; building {cfg.workers:,} workers")
            world = await build(cfg, server.url, db_url)
            log(f"built in {world['setup_s']:.1f} s")
            if cfg.wait_quiet_s:
                wait_for_quiet(cfg.wait_quiet_s)
            out = await run(cfg, server, world, db_url)
        return report(cfg, world, out, started)

    import uvloop

    return uvloop.run(main())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.console", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1,000 workers, short windows")
    parser.add_argument("--workers", type=int, default=None, help="online workers (5,000)")
    parser.add_argument("--consoles", type=int, default=20)
    parser.add_argument("--window", type=float, default=None, help="seconds watched (30)")
    parser.add_argument("--ingest", type=float, default=None, help="seconds per ingest run (15)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--wait-quiet", type=int, default=0)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    cfg = Config(
        workers=args.workers or (1000 if args.quick else 5000),
        ping_every_s=4.0,
        job_rate=1.0,
        consoles=args.consoles,
        window_s=args.window or (10.0 if args.quick else 30.0),
        ingest_s=args.ingest or (5.0 if args.quick else 15.0),
        rounds=1 if args.quick else args.rounds,
        wait_quiet_s=args.wait_quiet,
        write=not args.no_write,
        command=" ".join(
            [".venv/bin/python -m bench.console", *(sys.argv[1:] if argv is None else argv)]
        ),
    )
    return run_and_report("console", lambda started: run_all(cfg, started), cfg.write)


if __name__ == "__main__":
    raise SystemExit(main())
