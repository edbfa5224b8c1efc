"""Soak: the console benchmark's steady load for half an hour, watched minute by minute.

    .venv/bin/python -m bench.soak [--minutes 30] [--workers 2000] [--consoles 20]

One run starts private PostgreSQL+PostGIS and Redis and one server (`bench.serve`, the app as
`dispatch serve` runs it) and the load of `bench/console.py` (its world, its load and its
consoles, imported, not copied): every worker pings its position every 4 s, a resident posts a
grab job a second that one of its first wave accepts and completes, and 20 operators' consoles
follow the community's event stream for the whole run. Every minute it records the errors, the
p99 of each endpoint (ping, job POST), and, for the server, PostgreSQL (postmaster and backends)
and Redis: resident memory, open file descriptors, and the connections each holds
(`pg_stat_activity`, Redis `connected_clients`).

Targets (issue 17): errors 0; memory growth (PSS, `rss_kb`) of every process under 10 % from
the end of the warm-up (a tenth of the run, at least a minute, and at least `RETENTION_S` and a
minute, the longest state is kept on purpose; at most half the run) to the end; connections and file
descriptors flat: the last minute's count within 10 % (or 5) of the highest seen from the end of
the warm-up to the middle of the run. Descriptors and connections are sampled
`SAMPLES_PER_MINUTE` times a minute and a minute counts their median: the server's descriptors
move with the requests in flight, so a leak shows as a median above that range, not as any
difference from one sample.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.console import SECRET, Consoles, Load, build
from bench.console import Config as LoadConfig
from bench.lib.client import Pool
from bench.lib.machine import children, log, machine_lines
from bench.lib.report import run_and_report
from bench.lib.server import Server
from bench.lib.servers import private_servers
from bench.lib.stats import pct
from dispatch.ops.events import STREAM_MAX_AGE_S

RSS_GROWTH_MAX = 0.10
SAMPLES_PER_MINUTE = 6
"""How often a minute samples descriptors and connections (each sample opens a connection to
PostgreSQL and to Redis, counted out of the figures)."""
RETENTION_S = max(600.0, STREAM_MAX_AGE_S)
"""The longest any state is kept on purpose: SAQ keeps a finished job's record 600 s (its
default `ttl`, which also stops the same timer key being queued twice), the operators' stream
`STREAM_MAX_AGE_S`. Until then Redis fills up to its steady size by design, so the warm-up
lasts that long and a minute more (at most half the run)."""


@dataclass
class Config:
    minutes: float
    workers: int
    consoles: int
    write: bool
    command: str


def rss_kb(pid: int) -> int:
    """Memory of a process, in kB (0 if it is gone): its proportional set size (PSS: its own
    pages, plus its share of pages shared with others), so the sum over PostgreSQL's backends
    counts the shared buffers once, where their RSS counts them in every backend that touched
    them (the first soak's PostgreSQL "growth" of 24-43 %). RSS where PSS cannot be read."""
    for name, field_ in ((f"/proc/{pid}/smaps_rollup", "Pss:"), (f"/proc/{pid}/status", "VmRSS:")):
        try:
            for line in Path(name).read_text().splitlines():
                if line.startswith(field_):
                    return int(line.split()[1])
        except OSError:
            continue
    return 0


def fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


async def sample(server: Server, pg_pid: int, redis_pid: int, db_url: str, redis_url: str):
    """(rss kB, fds, connections) of the server, PostgreSQL and Redis."""
    import redis.asyncio as aioredis
    from sqlalchemy import text

    from dispatch.infra.db import make_engine

    pg = [pg_pid, *children(pg_pid)]
    engine = make_engine(db_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            pg_conns = (await conn.execute(text("SELECT count(*) FROM pg_stat_activity"))).scalar()
    finally:
        await engine.dispose()
    client = aioredis.from_url(redis_url)
    try:
        redis_conns = (await client.info("clients"))["connected_clients"]
    finally:
        await client.aclose()
    srv = [server.pid, *children(server.pid)]
    return {
        "server": (sum(map(rss_kb, srv)), sum(map(fds, srv)), None),
        "postgres": (sum(map(rss_kb, pg)), sum(map(fds, pg)), int(pg_conns or 0) - 1),
        "redis": (rss_kb(redis_pid), fds(redis_pid), int(redis_conns) - 1),
    }


def minute_of(taken: Sequence[dict[str, tuple]]) -> dict[str, tuple]:
    """A minute's figures from its samples: memory as the last sample found it, descriptors and
    connections as their median (one sample lands on whatever requests are in flight: the
    15-minute run of 12-07 ended on 104 server descriptors against 92 earlier, with no leak)."""
    out = {}
    for name, (rss, _, conns) in taken[-1].items():
        fds_ = statistics.median_low(t[name][1] for t in taken)
        held = None if conns is None else statistics.median_low(t[name][2] for t in taken)
        out[name] = (rss, fds_, held)
    return out


async def redis_families(redis_url: str) -> dict[str, int]:
    """Redis memory by key family (digits in a key's name read as `#`), in bytes: what grows."""
    import re

    import redis.asyncio as aioredis

    client = aioredis.from_url(redis_url)
    out: Counter[str] = Counter()
    try:
        async for key in client.scan_iter(count=1000):
            family = re.sub(rb"\d+", b"#", key).decode(errors="replace")
            out[family] += int(await client.memory_usage(key) or 0)
    finally:
        await client.aclose()
    return dict(out)


def pid_file(path: Path) -> int:
    return int(path.read_text().split()[0])


async def soak(cfg: Config) -> dict[str, Any]:
    load_cfg = LoadConfig(
        workers=cfg.workers, ping_every_s=4.0, job_rate=1.0, consoles=cfg.consoles,
        window_s=0, ingest_s=0, rounds=0, wait_quiet_s=0, write=False, command="",
    )  # fmt: skip
    seconds = cfg.minutes * 60
    warmup_s = min(seconds / 2, max(60.0, seconds / 10, RETENTION_S + 60.0))
    with private_servers("soak") as (root, servers, db_url, redis_url):
        env = {**os.environ, "DATABASE_URL": db_url, "REDIS_URL": redis_url,
               "DISPATCH_SECRET_KEY": SECRET, "DISPATCH_LOG_LEVEL": "WARNING"}  # fmt: skip
        server = Server(root, env)
        server.start()
        try:
            pg_pid = pid_file(servers.postgres.pgdata / "postmaster.pid")
            redis_pid = pid_file(servers.redis.root / "redis.pid")
            log(f"server on {server.url}; building {cfg.workers:,} workers")
            world = await build(load_cfg, server.url, db_url)
            load = Load(load_cfg, server.port, world, db_url)
            steady, jobs = Pool(server.port), Pool(server.port)
            await steady.warm(32)
            await jobs.warm(8)
            consoles = Consoles(load_cfg, server.port, world, seconds + 10, parse=True)
            await consoles.open()
            background = [asyncio.create_task(load.steady_pings(steady)),
                          asyncio.create_task(load.jobs(jobs))]  # fmt: skip
            minutes: list[dict[str, Any]] = []
            t0 = time.monotonic()
            seen_pings = seen_posts = 0
            warm: dict[str, Any] | None = None
            families_warm: dict[str, int] = {}
            try:
                while (elapsed := time.monotonic() - t0) < seconds:
                    step = min(60.0, seconds - elapsed) / SAMPLES_PER_MINUTE
                    taken = []
                    for _ in range(SAMPLES_PER_MINUTE):
                        await asyncio.sleep(step)
                        taken.append(await sample(server, pg_pid, redis_pid, db_url, redis_url))
                    pings = load.ping_ms[seen_pings:]
                    posts = load.post_ms[seen_posts:]
                    seen_pings, seen_posts = len(load.ping_ms), len(load.post_ms)
                    now = minute_of(taken)
                    if warm is None and time.monotonic() - t0 >= warmup_s:
                        warm = now
                        families_warm = await redis_families(redis_url)
                    minutes.append({
                        "minute": len(minutes) + 1, "pings": len(pings),
                        "ping_p99": pct(sorted(pings), 99) if pings else float("nan"),
                        "posts": len(posts),
                        "post_p99": pct(sorted(posts), 99) if posts else float("nan"),
                        "errors": sum(n for s, n in load.pings.items() if s != 204)
                        + len(load.problems), "procs": now,
                    })  # fmt: skip
                    log(f"minute {len(minutes)}: {len(pings)} pings p99 "
                        f"{minutes[-1]['ping_p99']:.1f} ms, {len(posts)} jobs, server PSS "
                        f"{now['server'][0] / 1024:.0f} MB")  # fmt: skip
            finally:
                load.stop.set()
                await asyncio.gather(*background)
                steady.close()
                jobs.close()
            families_end = await redis_families(redis_url)
            watched = await consoles.result()
            if not server.alive():
                load.problems.append("the server died")
        finally:
            server.stop()
    return {"minutes": minutes, "warm": warm, "load": load, "watched": watched,
            "warmup_s": warmup_s, "families": (families_warm, families_end)}  # fmt: skip


def checks(out: dict[str, Any]) -> list[tuple[str, bool]]:
    load: Load = out["load"]
    errors = sum(n for s, n in load.pings.items() if s != 204) + len(load.problems)
    result = [(f"errors: {errors} (pings by status {dict(load.pings)}; {load.problems[:3]})",
               errors == 0)]  # fmt: skip
    warm, end = out["warm"], out["minutes"][-1]["procs"] if out["minutes"] else None
    if warm is None or end is None:
        return [*result, ("the run was shorter than its warm-up: no growth measured", False)]
    settled = [m for m in out["minutes"] if m["minute"] * 60 >= out["warmup_s"]]
    first_half = [warm] + [m["procs"] for m in settled[: max(1, len(settled) // 2)]]
    for name in ("server", "postgres", "redis"):
        (r0, _, c0), (r1, f1, c1) = warm[name], end[name]
        growth = r1 / r0 - 1 if r0 else 0.0
        result.append((f"{name} memory (PSS) {r0 / 1024:.0f} -> {r1 / 1024:.0f} MB ({growth:+.1%})",
                       growth < RSS_GROWTH_MAX))  # fmt: skip
        f_top = max(p[name][1] for p in first_half)
        result.append((f"{name} file descriptors {f1} at the end, first half up to {f_top}",
                       f1 <= max(f_top * 1.1, f_top + 5)))  # fmt: skip
        if c0 is not None:
            c_top = max(p[name][2] for p in first_half)
            result.append((f"{name} connections {c1} at the end, first half up to {c_top}",
                           c1 <= max(c_top * 1.1, c_top + 5)))  # fmt: skip
    return result


def redis_growth(warm: dict[str, int], end: dict[str, int]) -> list[str]:
    grew = sorted(end, key=lambda k: end[k] - warm.get(k, 0), reverse=True)[:10]
    return [f"- `{k}`: {warm.get(k, 0) / 1024:,.0f} -> {end[k] / 1024:,.0f} kB" for k in grew] or [
        "- (no keys)"
    ]


def report(cfg: Config, out: dict[str, Any], started: datetime) -> str:
    load: Load = out["load"]
    rows = [
        f"| {m['minute']} | {m['pings']:,} | {m['ping_p99']:.1f} | {m['posts']} | "
        f"{m['post_p99']:.1f} | {m['errors']} | {m['procs']['server'][0] / 1024:.0f} | "
        f"{m['procs']['postgres'][0] / 1024:.0f} | {m['procs']['redis'][0] / 1024:.0f} | "
        f"{m['procs']['server'][1]} | {m['procs']['postgres'][2]} |"
        for m in out["minutes"]
    ]
    events = Counter(out["watched"].get("kinds", {}))
    lines = [
        f"# Soak, {started:%Y-%m-%d %H:%M} UTC",
        "",
        f"Command: `{cfg.command}`",
        "",
        f"{cfg.workers:,} workers pinging every 4 s, a job a second, {cfg.consoles} consoles "
        f"for {cfg.minutes:g} min (warm-up {out['warmup_s']:.0f} s); accepts by status "
        f"{dict(load.accepts)}; the consoles read {sum(events.values()):,} events.",
        "",
        "## Checks",
        "",
        *[f"- {'OK' if ok else 'FAILED'}: {what}" for what, ok in checks(out)],
        "",
        "## Minute by minute",
        "",
        "| min | pings | ping p99 ms | jobs | job POST p99 ms | errors so far | server PSS MB "
        "| PostgreSQL PSS MB | Redis PSS MB | server fds | PG connections |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
        "## Redis memory by key family (end of warm-up -> end), the ten that grew most",
        "",
        *redis_growth(*out["families"]),
        "",
        "## Machine",
        "",
        *machine_lines("load generator, server, consoles, Redis and PostgreSQL share them",
                       "uvloop, httptools, 1 server process"),
    ]  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.soak", description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--workers", type=int, default=2000)
    parser.add_argument("--consoles", type=int, default=20)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    cfg = Config(
        minutes=args.minutes, workers=args.workers, consoles=args.consoles,
        write=not args.no_write,
        command=" ".join([".venv/bin/python -m bench.soak",
                          *(sys.argv[1:] if argv is None else argv)]),
    )  # fmt: skip
    failed: list[bool] = []

    def go(started: datetime) -> str:
        import uvloop

        out = uvloop.run(soak(cfg))
        failed.extend(not ok for _, ok in checks(out))
        return report(cfg, out, started)

    run_and_report("soak", go, cfg.write)
    return 1 if any(failed) else 0


if __name__ == "__main__":
    raise SystemExit(main())
