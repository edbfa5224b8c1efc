"""Jobs board benchmark: the board's listing query by H3 code ranges against the `ST_DWithin` query
it replaced, on the same jobs.

    .venv/bin/python -m bench.board [--quick] [--queries N] [--no-write]

One run starts a private PostgreSQL+PostGIS (fsync off), migrates it and writes, through the
model (so `jobs.h3_code` comes from its default), a community with 2,000 open jobs spread over a
disc of 5 km. Two tables are measured: **open only** (those 2,000 jobs and nothing else), then
**busy** (20,000 finished jobs added in the same place, and a neighbouring community 6 km east
with 2,000 open and 20,000 finished of its own), each after ANALYZE.

Per table and radius (1, 3 and 10 km), `--queries` listings from points spread over the
community (a different set warms up first), in blocks of 20 per method in turn, each in its own
session as the board runs it (JIT and parallel workers off as the service's connections have
them, `SMALL_QUERY`, then `board.listing`: the 50 nearest by shown distance and all as near,
as ORM rows; `--jit` leaves PostgreSQL's defaults), by:

- **h3**: the board now (`board.within`): the worker's disc as ranges of fine H3 codes (the
  cover computed on each call) OR'd on the partial index (community_id, h3_code) of open jobs,
  then the distance on the sphere on the rows found;
- **gist**: the board before: `ST_DWithin` on the spheroid (GiST `ix_jobs_location`);
- **gist-sphere**: the same on the sphere (what the metric alone changes).

Measured: latency (client included, the cover's computation too), p50 and p95, and CPU per query
of the client process and of PostgreSQL (all its processes): on a shared machine the CPU is the
steadier figure. Checked: h3 finds exactly the open jobs `ST_DWithin` on the sphere finds, at
every point (the spheroid differs only within 0.6 % of the radius). `EXPLAIN (ANALYZE)` of one
query per row names the indexes read and the rows the scans kept and removed.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, text

from bench.lib.machine import log, machine_lines, pid_from_file, tree_cpu_s, wait_for_quiet
from bench.lib.report import run_and_report
from bench.lib.servers import private_servers
from bench.lib.stats import ms, pct
from bench.lib.world import spread
from dispatch.grab.board import _point_sql, _shown_sql, listing, within
from dispatch.infra.db import make_engine, make_sessionmaker
from dispatch.models import Community, Job
from geo.areas import destination
from geo.distance import haversine_m
from geo.shapes import point_to_wkb, wkb_to_latlng

SMALL_QUERY = text(
    "SELECT set_config('jit', 'off', true),"
    " set_config('max_parallel_workers_per_gather', '0', true)"
)
"""The service's connection settings (JIT and parallel plans off), for this script's sessions
when it compares them with PostgreSQL's defaults (`--jit`)."""

CENTER = (31.2304, 121.4737)
NEIGHBOUR = destination(*CENTER, 90.0, 6000)
SPREAD_M = 5000
OPEN_JOBS = 2000
FINISHED_JOBS = 20_000
RADII = (1000, 3000, 10_000)
LIMIT = 50
METHODS = ("h3", "gist", "gist-sphere")


@dataclass
class Config:
    queries: int
    warm: int
    jit: bool
    wait_quiet_s: int
    write: bool
    command: str


async def add_jobs(
    sessions: Any,
    cid: int,
    center: tuple[float, float],
    resident: int,
    n: int,
    status: str,
    seed: int,
) -> None:
    """`n` jobs over the disc around `center`, written through the model (its default gives each
    its h3_code)."""
    rows = [
        {"community_id": cid, "resident_id": resident, "title": "Move a sofa",
         "category": "moving", "skills": ["moving"], "location": point_to_wkb(*at), "cell": 0,
         "mode": "grab", "price_cents": 8000, "currency": "CNY", "status": status}
        for at in spread(n, center, SPREAD_M, seed)
    ]  # fmt: skip
    async with sessions.begin() as session:
        for at in range(0, n, 2000):
            await session.execute(Job.__table__.insert(), rows[at : at + 2000])


def may_take(
    method: str, cid: int, lat: float, lng: float, radius_m: float
) -> tuple[list[Any], Any]:
    """The listing's conditions (the board's, but for the worker's own: skills, resident, offers)
    and its shown distance, by the method."""
    point = _point_sql(lat, lng)
    spheroid = method == "gist"
    if method == "h3":
        near = within(lat, lng, radius_m)
    else:
        near = [func.ST_DWithin(Job.location, point, float(radius_m), spheroid)]
    shown = _shown_sql(func.ST_Distance(Job.location, point, spheroid))
    conds = [Job.community_id.in_([cid]), Job.status == "open", *near, Job.worker_id.is_(None)]
    return conds, shown


def plan_summary(plan: dict[str, Any]) -> str:
    """The indexes read and, over the scans of jobs, the rows returned and removed."""
    indexes: list[str] = []
    returned = removed = 0
    todo = [plan["Plan"]]
    while todo:
        node = todo.pop()
        todo.extend(node.get("Plans", []))
        if name := node.get("Index Name"):
            indexes.append(name)
        if node.get("Relation Name") == "jobs":
            loops = node.get("Actual Loops", 1)
            returned += node["Actual Rows"] * loops
            removed += (
                node.get("Rows Removed by Filter", 0) + node.get("Rows Removed by Index Recheck", 0)
            ) * loops
    read = ", ".join(sorted(set(indexes))) or "no index"
    return f"{read}; rows {returned:,} kept, {removed:,} removed"


async def measure(
    cfg: Config, sessions: Any, pg_pid: int, cid: int, table: str
) -> list[dict[str, Any]]:
    out = []
    for radius in RADII:
        warm = spread(cfg.warm, CENTER, SPREAD_M, seed=radius)
        points = spread(cfg.queries, CENTER, SPREAD_M, seed=radius + 1)
        for method in METHODS:
            for lat, lng in warm:
                async with sessions() as session:
                    if not cfg.jit:
                        await session.execute(SMALL_QUERY)
                    await session.execute(listing(*may_take(method, cid, lat, lng, radius), LIMIT))
        times: dict[str, list[float]] = {m: [] for m in METHODS}
        cpu = {m: [0.0, 0.0] for m in METHODS}  # the client's, PostgreSQL's
        # In blocks of 20 queries, the methods in turn: what the machine's other jobs take is
        # spread over all of them alike.
        for block in range(0, len(points), 20):
            for method in METHODS:
                client, server = time.process_time(), tree_cpu_s(pg_pid)
                for lat, lng in points[block : block + 20]:
                    t0 = time.perf_counter()
                    async with sessions() as session:
                        if not cfg.jit:
                            await session.execute(SMALL_QUERY)
                        stmt = listing(*may_take(method, cid, lat, lng, radius), LIMIT)
                        (await session.execute(stmt)).all()
                    times[method].append(time.perf_counter() - t0)
                cpu[method][0] += time.process_time() - client
                cpu[method][1] += tree_cpu_s(pg_pid) - server
        within_r, odd = await check(sessions, cid, points, radius)
        plans = await explain(cfg, sessions, cid, points[0], radius)
        for method in METHODS:
            t = [x * 1000 for x in times[method]]
            client_ms, server_ms = (x * 1000 / len(points) for x in cpu[method])
            out.append({"table": table, "radius": radius, "method": method, "p50": pct(t, 50),
                        "p95": pct(t, 95), "client": client_ms, "server": server_ms,
                        "within": within_r, "odd": odd, "plan": plans[method]})  # fmt: skip
            log(f"{table} r={radius} {method}: p50 {pct(t, 50):.2f} ms p95 {pct(t, 95):.2f} ms, "
                f"CPU client {client_ms:.2f} ms PostgreSQL {server_ms:.2f} ms "
                f"({plans[method]})")  # fmt: skip
    return out


async def check(
    sessions: Any, cid: int, points: list[tuple[float, float]], radius: float
) -> tuple[float, int]:
    """(mean open jobs within the radius, jobs the spheroid puts on the other side of it): h3
    must find what `ST_DWithin` on the sphere finds; on the spheroid, jobs within 0.6 % of the
    radius may differ."""
    odd, total = 0, 0
    async with sessions() as session:
        for lat, lng in points:
            found = {}
            for method in METHODS:
                conds, _ = may_take(method, cid, lat, lng, radius)
                found[method] = set((await session.scalars(select(Job.id).where(*conds))).all())
            assert found["h3"] == found["gist-sphere"], (lat, lng, radius)
            total += len(found["h3"])
            for job_id in found["h3"] ^ found["gist"]:
                job = await session.get(Job, job_id)
                assert job is not None
                d = haversine_m(lat, lng, *wkb_to_latlng(job.location))
                assert abs(d - radius) <= 0.006 * radius, (lat, lng, radius, job_id, d)
                odd += 1
    return total / len(points), odd


async def explain(
    cfg: Config, sessions: Any, cid: int, point: tuple[float, float], radius: float
) -> dict[str, str]:
    plans = {}
    async with sessions() as session:
        if not cfg.jit:
            await session.execute(SMALL_QUERY)
        for method in METHODS:
            stmt = listing(*may_take(method, cid, *point, radius), LIMIT)
            sql = str(stmt.compile(session.bind, compile_kwargs={"literal_binds": True}))
            raw = await session.scalar(text("EXPLAIN (ANALYZE, FORMAT JSON) " + sql))
            plans[method] = plan_summary(raw[0])
    return plans


async def run(cfg: Config, db_url: str, pg_pid: int) -> list[dict[str, Any]]:
    engine = make_engine(db_url, pool_size=2)
    sessions = make_sessionmaker(engine)
    async with sessions.begin() as session:
        resident = await session.scalar(
            text("INSERT INTO users (handle, roles, operator_community_ids) "
                 "VALUES ('bench-resident', ARRAY['resident'], '{}') RETURNING id")
        )  # fmt: skip
        ids = []
        for name, at in (("Board", CENTER), ("Next door", NEIGHBOUR)):
            c = Community(
                name=name, center=point_to_wkb(*at), radius_m=SPREAD_M, timezone="Asia/Shanghai",
                dispatch={}, cover_res=9, cell_count=0,
            )  # fmt: skip
            session.add(c)
            await session.flush()
            ids.append(c.id)
    cid, neighbour = ids
    await add_jobs(sessions, cid, CENTER, resident, OPEN_JOBS, "open", seed=10)
    async with engine.begin() as conn:
        await conn.execute(text("ANALYZE"))
    if cfg.wait_quiet_s:
        wait_for_quiet(cfg.wait_quiet_s)
    rows = await measure(cfg, sessions, pg_pid, cid, "open only")
    await add_jobs(sessions, cid, CENTER, resident, FINISHED_JOBS, "completed", seed=12)
    await add_jobs(sessions, neighbour, NEIGHBOUR, resident, OPEN_JOBS, "open", seed=11)
    await add_jobs(sessions, neighbour, NEIGHBOUR, resident, FINISHED_JOBS, "completed", seed=13)
    async with engine.begin() as conn:
        await conn.execute(text("ANALYZE"))
    rows += await measure(cfg, sessions, pg_pid, cid, "busy")
    async with engine.connect() as conn:
        wrong = await conn.scalar(text("SELECT count(*) FROM jobs WHERE h3_code IS NULL"))
    assert wrong == 0
    await engine.dispose()
    return rows


def report(cfg: Config, rows: list[dict[str, Any]], started: datetime) -> str:
    lines = [
        f"# Jobs board benchmark, {started:%Y-%m-%d %H:%M} UTC",
        "",
        f"Command: `{cfg.command}`",
        "",
        f"{OPEN_JOBS:,} open jobs in the community over a {SPREAD_M / 1000:g} km disc; busy: "
        f"{FINISHED_JOBS:,} finished jobs there too and a neighbour 6 km east with as many. "
        f"{cfg.queries} listings (limit {LIMIT}) per row; JIT and parallel workers "
        f"{'as PostgreSQL has them' if cfg.jit else 'off'}.",
        "",
        "| table | radius | method | p50 | p95 | CPU client | CPU PostgreSQL | open jobs within "
        "| plan (one query) |",
        "|---|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['table']} | {r['radius']:,} m | {r['method']} | {ms(r['p50'])} | "
            f"{ms(r['p95'])} | {ms(r['client'])} | {ms(r['server'])} | {r['within']:.0f} | "
            f"{r['plan']} |"
        )
    odd = sum(r["odd"] for r in rows if r["method"] == "h3")
    lines += [
        "",
        "Checked: h3 found the same open jobs within the radius as `ST_DWithin` on the sphere "
        f"at every point; the spheroid put {odd} of them on the other side of it.",
        "",
        "## Machine",
        "",
        *machine_lines("the client and PostgreSQL share them", "no HTTP: the query alone"),
    ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.board", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="100 queries per row")
    parser.add_argument("--queries", type=int, default=None, help="per row (500)")
    parser.add_argument(
        "--jit", action="store_true", help="JIT and parallel workers as PostgreSQL's defaults"
    )
    parser.add_argument("--wait-quiet", type=int, default=0)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    queries = args.queries or (100 if args.quick else 500)
    cfg = Config(
        queries=queries,
        warm=max(20, queries // 10),
        jit=args.jit,
        wait_quiet_s=args.wait_quiet,
        write=not args.no_write,
        command=" ".join(
            [".venv/bin/python -m bench.board", *(sys.argv[1:] if argv is None else argv)]
        ),
    )

    def run_all(started: datetime) -> str:
        async def go() -> str:
            with private_servers("board") as (_root, servers, db_url, _redis_url):
                pg_pid = pid_from_file(servers.postgres.pgdata / "postmaster.pid")
                assert pg_pid is not None
                rows = await run(cfg, db_url, pg_pid)
            return report(cfg, rows, started)

        import uvloop

        return uvloop.run(go())

    return run_and_report("board", run_all, cfg.write)


if __name__ == "__main__":
    raise SystemExit(main())
