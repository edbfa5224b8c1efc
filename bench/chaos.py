"""Chaos: grab jobs raced for by every worker across several app processes while Redis is
killed, restarted empty and flushed, and PostgreSQL is restarted.

    .venv/bin/python -m bench.chaos [--jobs 10000] [--workers 50] [--processes 4]

One run starts private PostgreSQL+PostGIS and Redis of its own and N `dispatch serve`
processes on them, one community whose every job is offered to every worker, and then:

- residents post jobs (each with an Idempotency-Key; a 503 or a dropped connection is tried
  again later with the same key, as an app would) until `--jobs` were created;
- each worker's phone pings its position every 2 s, polls its offers, accepts them and
  completes what it won;
- at a fifth of the jobs Redis is SIGKILLed and started again empty two seconds later; at
  45 % it is flushed; at 70 % PostgreSQL is restarted.

What must hold (Jepsen's lesson: the database decides, Redis only speeds things up): no answer
is a 500, every 503 carries `Retry-After`, no job is assigned twice, every job ends completed
or unfilled, every outbox row reaches a final state, and a job posted after the faults is
taken, with no restart of any process. The run prints its figures and checks; the small
version in `make test` is tests/test_chaos.py.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bench.lib.machine import log, machine_lines
from bench.lib.report import run_and_report
from bench.lib.server import Server
from dispatch.devtools.local_servers import LocalServers
from dispatch.identity.auth import issue_token
from dispatch.identity.principals import handle_user
from dispatch.infra.db import make_engine, make_sessionmaker, migrate
from geo.areas import destination

SECRET = "bench-chaos-secret-not-for-production-use"
CENTER = (31.2304, 121.4737)
FINAL_OUTBOX = ("held", "sent", "delivered", "undelivered", "skipped", "dead")
FINAL_JOBS = ("completed", "unfilled", "confirmed")
# A message leased by a relay whose batch failed mid-outage is taken again once its lease ends
# (60 s by default; 5 here, so a run sees it through); requests wait at most 2 s for a pooled
# connection before they are answered 503.
ENV = {"DISPATCH_DB_POOL_TIMEOUT_S": "2", "DISPATCH_RELAY_LEASE_S": "5",
       "DISPATCH_LOG_LEVEL": "WARNING"}  # fmt: skip


@dataclass
class Config:
    jobs: int
    workers: int
    processes: int
    posters: int = 4
    settle_s: float = 60.0
    write: bool = True
    command: str = ""


@dataclass
class Figures:
    """What a run saw; `problems` lists every broken promise (empty: all held)."""

    jobs_posted: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    unanswered: int = 0
    no_retry_after: int = 0
    faults: list[tuple[str, float]] = field(default_factory=list)
    recovery_s: dict[str, float] = field(default_factory=dict)
    jobs: dict[str, int] = field(default_factory=dict)
    outbox: dict[str, int] = field(default_factory=dict)
    assigned_twice: int = 0
    after_status: str | None = None
    after_offers: int = 0
    after_left_out: list[str] = field(default_factory=list)
    """Why the job after the faults missed a worker: the wave's exclusions and, per worker left
    out, their row and their job statuses."""
    elapsed_s: float = 0.0
    problems: list[str] = field(default_factory=list)


def token(user_id: int, role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(SECRET, user_id, role, None, 12 * 3600)}"}


def job_body(title: str = "Carry boxes") -> dict:
    return {"title": title, "category": "moving", "skills": ["moving"],
            "location": {"lat": CENTER[0], "lng": CENTER[1]}, "mode": "grab",
            "price_cents": 5000}  # fmt: skip


class Load:
    """Residents and workers as their apps behave, every answer counted."""

    def __init__(self, http: httpx.AsyncClient, bases: list[str], figures: Figures) -> None:
        self.http, self.bases, self.figures = http, bases, figures
        self.rng = random.Random(7)
        self.created: set[int] = set()
        self.last_created = 0.0

    async def call(self, method: str, path: str, **kw) -> httpx.Response | None:
        try:
            r = await self.http.request(method, self.rng.choice(self.bases) + path, **kw)
        except httpx.TransportError:
            self.figures.unanswered += 1
            return None
        self.figures.statuses[r.status_code] += 1
        if r.status_code == 503 and "Retry-After" not in r.headers:
            self.figures.no_retry_after += 1
        return r

    async def post_jobs(self, resident: dict[str, str], keys: list[str], total: int) -> None:
        """Take keys from the shared list and post them until `total` jobs exist; a key that
        was not answered with 201 goes back for a later try."""
        while len(self.created) < total:
            if not keys:
                await asyncio.sleep(0.05)
                continue
            key = keys.pop(0)
            r = await self.call(
                "POST", "/v1/jobs", json=job_body(), headers={**resident, "Idempotency-Key": key}
            )
            if r is not None and r.status_code == 201:
                self.created.add(r.json()["id"])
                self.last_created = time.monotonic()
            else:
                keys.append(key)
                await asyncio.sleep(0.2)

    async def work(self, h: dict[str, str], stop: asyncio.Event) -> None:
        last_ping = 0.0
        mine: list[tuple[int, int]] = []
        home = destination(*CENTER, self.rng.uniform(0, 360), self.rng.uniform(0, 300))
        while not stop.is_set():
            if time.monotonic() - last_ping > 2:  # a phone pings its position every few seconds
                lat, lng = destination(*home, self.rng.uniform(0, 360), self.rng.uniform(0, 10))
                r = await self.call(
                    "POST", "/v1/workers/me/location", json={"lat": lat, "lng": lng}, headers=h
                )
                if r is not None and r.status_code == 204:
                    last_ping = time.monotonic()
                # The app's list of the worker's jobs: one won while its answer was lost (the
                # connection dropped after the commit) is there too.
                r = await self.call("GET", "/v1/jobs", headers=h)
                if r is not None and r.status_code == 200:
                    for j in r.json():
                        held = (j["id"], j["assignment_version"])
                        if j["status"] == "assigned" and held not in mine:
                            mine.append(held)
            r = await self.call("GET", "/v1/workers/me/offers", headers=h)
            if r is not None and r.status_code == 200:
                for offer in r.json()[:2]:
                    won = await self.call("POST", f"/v1/offers/{offer['id']}/accept", headers=h)
                    if won is not None and won.status_code == 200:
                        mine.append((won.json()["id"], won.json()["assignment_version"]))
            for job_id, version in list(mine):  # the work done, the worker is free again
                done = await self.call(
                    "POST", f"/v1/jobs/{job_id}/complete", json={"assignment_version": version},
                    headers=h,
                )  # fmt: skip
                if done is not None and done.status_code != 503:
                    if done.status_code not in (200, 409):
                        self.figures.problems.append(f"complete answered {done.status_code}")
                    mine.remove((job_id, version))
            await asyncio.sleep(0.1)


async def world(engine: AsyncEngine, http: httpx.AsyncClient, base: str, workers: int):
    sessions = make_sessionmaker(engine)
    async with sessions.begin() as session:
        admin_id = await handle_user(session, "chaos-admin", "admin", [])
        resident_id = await handle_user(session, "chaos-resident", "resident", [])
    admin = token(admin_id, "admin")
    body = {"name": "Chaos", "center": {"lat": CENTER[0], "lng": CENTER[1]}, "radius_m": 5000,
            "dispatch": {"offer_ttl_s": 3, "waves": [{"radius_m": None, "size": None}],
                         "location_max_age_s": 3600, "offers_per_worker_hour": None,
                         "max_open_assignments": 10}}  # fmt: skip
    r = await http.post(f"{base}/v1/communities", json=body, headers=admin)
    assert r.status_code == 201, r.text
    cid = r.json()["id"]
    team = []
    for i in range(workers):
        async with sessions.begin() as session:
            wid = await handle_user(session, f"chaos-worker-{i}", "worker", [])
        h = token(wid, "worker")
        prof = {"name": f"W{i}", "skills": ["moving"], "community_ids": [cid]}
        assert (await http.put(f"{base}/v1/workers/me", json=prof, headers=h)).status_code == 200
        r = await http.post(f"{base}/v1/ops/workers/{wid}/verify", headers=admin)
        assert r.status_code == 200, r.text
        r = await http.post(f"{base}/v1/workers/me/presence", json={"status": "online"}, headers=h)
        assert r.status_code == 200, r.text
        team.append(h)
    return token(resident_id, "resident"), team


def kill_redis(servers: LocalServers) -> None:
    proc = servers.redis._proc
    assert proc is not None
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    servers.redis.owned, servers.redis._proc = False, None


def flush_redis(servers: LocalServers) -> None:
    subprocess.run(
        ["redis-cli", "-s", str(servers.redis.socket_path), "FLUSHALL"],
        check=True, capture_output=True,
    )  # fmt: skip


async def faults(cfg: Config, servers: LocalServers, load: Load, figures: Figures) -> None:
    t0 = time.monotonic()

    # Polled, not signalled: the posters know nothing of the faults.
    async def at(share: float) -> None:
        while len(load.created) < share * cfg.jobs:  # noqa: ASYNC110
            await asyncio.sleep(0.05)

    async def recovered(name: str, since: float) -> None:
        while load.last_created <= since:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        figures.recovery_s[name] = load.last_created - since

    await at(0.2)
    kill_redis(servers)  # every key, queue and stream gone with it
    figures.faults.append(("Redis SIGKILLed", time.monotonic() - t0))
    await asyncio.sleep(2)
    await asyncio.to_thread(servers.redis.start)  # back, empty
    figures.faults.append(("Redis started empty", time.monotonic() - t0))
    await recovered("Redis started empty", time.monotonic())
    await at(0.45)
    flush_redis(servers)
    figures.faults.append(("Redis flushed", time.monotonic() - t0))
    await recovered("Redis flushed", time.monotonic())
    await at(0.7)
    await asyncio.to_thread(servers.postgres.stop)
    figures.faults.append(("PostgreSQL stopped", time.monotonic() - t0))
    await asyncio.sleep(1)
    await asyncio.to_thread(servers.postgres.start)
    figures.faults.append(("PostgreSQL started", time.monotonic() - t0))
    await recovered("PostgreSQL started", time.monotonic())


async def settled(engine: AsyncEngine, within_s: float) -> tuple[dict[str, int], dict[str, int]]:
    """Job and outbox counts by status once no job is open and no message is in flight (or the
    last counts when time runs out)."""
    deadline = time.monotonic() + within_s
    while True:
        async with engine.connect() as conn:
            jobs = dict(
                (await conn.execute(text("SELECT status, count(*) FROM jobs GROUP BY 1"))).all()
            )
            outbox = dict(
                (await conn.execute(text("SELECT status, count(*) FROM outbox GROUP BY 1"))).all()
            )
        done = set(jobs) <= set(FINAL_JOBS) and set(outbox) <= set(FINAL_OUTBOX)
        if done or time.monotonic() > deadline:
            return jobs, outbox
        await asyncio.sleep(0.5)


async def run(cfg: Config) -> Figures:
    figures = Figures()
    root = Path(tempfile.mkdtemp(prefix="dispatch-chaos-"))
    os.chmod(root, 0o755)  # noqa: S103 (the unprivileged PostgreSQL user must pass through)
    servers = LocalServers(root / "servers", durable=False)
    procs: list[Server] = []
    try:
        urls = servers.start()
        await asyncio.to_thread(migrate, urls[0])
        env = {**os.environ, "DATABASE_URL": urls[0], "REDIS_URL": urls[1],
               "DISPATCH_SECRET_KEY": SECRET, **ENV}  # fmt: skip
        for i in range(cfg.processes):
            procs.append(
                Server(root, env, module="dispatch.cli", subcommand=["serve"],
                       log_name=f"app-{i}.log")
            )  # fmt: skip
        await asyncio.gather(*(asyncio.to_thread(p.start) for p in procs))
        engine = make_engine(urls[0], pool_size=2)
        limits = httpx.Limits(max_connections=400, max_keepalive_connections=400)
        t0 = time.monotonic()
        async with httpx.AsyncClient(timeout=30, limits=limits) as http:
            resident, team = await world(engine, http, procs[0].url, cfg.workers)
            load = Load(http, [p.url for p in procs], figures)
            stop = asyncio.Event()
            workers = [asyncio.create_task(load.work(h, stop)) for h in team]
            keys = [f"chaos-{n}" for n in range(cfg.jobs)]
            chaos = asyncio.create_task(faults(cfg, servers, load, figures))
            await asyncio.gather(
                *(load.post_jobs(resident, keys, cfg.jobs) for _ in range(cfg.posters))
            )
            await asyncio.wait_for(chaos, cfg.settle_s)
            figures.jobs_posted = len(load.created)
            await engine.dispose()  # the run's own pooled connections died with PostgreSQL
            figures.jobs, figures.outbox = await settled(engine, cfg.settle_s)
            # Recovered, with no restart of ours: once the faults' jobs are done with, a new job
            # is offered to every worker and taken.
            r = await http.post(
                f"{procs[-1].url}/v1/jobs", json=job_body("After"),
                headers={**resident, "Idempotency-Key": "after"},
            )  # fmt: skip
            if r.status_code == 201:
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline:
                    got = await http.get(
                        f"{procs[0].url}/v1/jobs/{r.json()['id']}", headers=resident
                    )
                    figures.after_status = got.json().get("status")
                    if figures.after_status in ("assigned", "completed"):
                        break
                    await asyncio.sleep(0.2)
            else:
                figures.after_status = f"POST answered {r.status_code}"
            figures.jobs, figures.outbox = await settled(engine, cfg.settle_s)
            stop.set()
            await asyncio.gather(*workers)
        figures.elapsed_s = time.monotonic() - t0
        async with engine.connect() as conn:
            figures.after_offers = (
                await conn.execute(
                    text("SELECT count(*) FROM offers WHERE job_id = (SELECT max(id) FROM jobs)")
                )
            ).scalar_one()
            if figures.after_offers != cfg.workers:
                figures.after_left_out = await left_out(conn)
            figures.assigned_twice = (
                await conn.execute(
                    text("SELECT count(*) FROM (SELECT job_id FROM assignments GROUP BY job_id "
                         "HAVING count(*) > 1) twice")
                )
            ).scalar_one()  # fmt: skip
        await engine.dispose()
        for p in procs:
            if not p.alive():
                figures.problems.append(f"an app process died:\n{p.log_tail()}")
    finally:
        for p in procs:
            p.stop()
        servers.stop()
        shutil.rmtree(root, ignore_errors=True)
    figures.problems += broken(figures, cfg.workers)
    return figures


async def left_out(conn: AsyncConnection) -> list[str]:
    """The after-faults job's wave exclusions and the workers it did not reach, as found."""
    found = [str(dict(r._mapping)) for r in await conn.execute(text(
        "SELECT wave, excluded, jsonb_array_length(candidates) AS candidates FROM dispatch_waves "
        "WHERE job_id = (SELECT max(id) FROM jobs)"))]  # fmt: skip
    rows = await conn.execute(text(
        "SELECT w.user_id, w.online, w.verification, w.location_at, w.version, "
        "ARRAY(SELECT j.status || ':' || j.id FROM jobs j WHERE j.worker_id = w.user_id "
        "      ORDER BY j.id DESC LIMIT 3) AS last_jobs "
        "FROM workers w WHERE w.user_id NOT IN "
        "(SELECT worker_id FROM offers WHERE job_id = (SELECT max(id) FROM jobs))"))  # fmt: skip
    return found + [str(dict(r._mapping)) for r in rows]


def broken(f: Figures, workers: int) -> list[str]:
    out = []
    if f.statuses.get(500):
        out.append(f"{f.statuses[500]} answers were 500")
    if f.no_retry_after:
        out.append(f"{f.no_retry_after} answers 503 without Retry-After")
    if f.assigned_twice:
        out.append(f"{f.assigned_twice} jobs assigned twice")
    if not set(f.jobs) <= set(FINAL_JOBS):
        out.append(f"jobs not final: {f.jobs}")
    if not set(f.outbox) <= set(FINAL_OUTBOX):
        out.append(f"outbox rows not final: {f.outbox}")
    if f.after_status not in ("assigned", "completed"):
        out.append(f"a job posted after the faults was not taken ({f.after_status})")
    return out


def doubts(f: Figures, workers: int) -> list[str]:
    """What is not promised yet but should be: a known gap, reported, not failed."""
    out = []
    if f.after_offers != workers:  # all idle by then: one left out has a stale index entry
        out.append(
            f"the job after the faults was offered to {f.after_offers} of {workers} workers "
            "(a worker's availability in the live index stale after the faults; 1 run in 5): "
            + "; ".join(f.after_left_out)
        )
    return out


def report(cfg: Config, f: Figures, started: datetime) -> str:
    answers = ", ".join(f"{k}: {v:,}" for k, v in sorted(f.statuses.items()))
    lines = [
        f"# Chaos, {started:%Y-%m-%d %H:%M} UTC",
        "",
        f"Command: `{cfg.command}`",
        "",
        f"- {f.jobs_posted:,} jobs, {cfg.workers} workers racing for each, "
        f"{cfg.processes} app processes; {f.elapsed_s:.0f} s",
        f"- answers by status: {answers}; {f.unanswered} requests unanswered (connection "
        "dropped)",
        "- faults (s from the start): "
        + "; ".join(f"{name} at {t:.1f}" for name, t in f.faults),
        "- first job created after each fault: "
        + "; ".join(f"{name} +{t:.1f} s" for name, t in f.recovery_s.items()),
        f"- jobs by status: {f.jobs}; assigned twice: {f.assigned_twice}",
        f"- outbox by status: {f.outbox}",
        f"- a job posted after the faults: {f.after_status} ({f.after_offers} offers)",
        "",
        "## Checks",
        "",
        *([f"- FAILED: {p}" for p in f.problems] or ["- OK: every promise held"]),
        *[f"- WARNING: {d}" for d in doubts(f, cfg.workers)],
        "",
        "## Machine",
        "",
        *machine_lines("load generator, servers, Redis and PostgreSQL share them",
                       f"{cfg.processes} app processes"),
    ]  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.chaos", description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=50)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    cfg = Config(
        jobs=args.jobs, workers=args.workers, processes=args.processes, write=not args.no_write,
        command=" ".join([".venv/bin/python -m bench.chaos",
                          *(sys.argv[1:] if argv is None else argv)]),
    )  # fmt: skip
    failed = []

    def go(started: datetime) -> str:
        import uvloop

        log(f"chaos: {cfg.jobs} jobs, {cfg.workers} workers, {cfg.processes} processes")
        figures = uvloop.run(run(cfg))
        failed.extend(figures.problems)
        return report(cfg, figures, started)

    run_and_report("chaos", go, cfg.write)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
