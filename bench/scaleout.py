"""Scale-out: location ingest and grab dispatch with 1, 2 and 4 app processes, on one Redis and
on a local 3-primary Redis Cluster, side by side in one run.

    .venv/bin/python -m bench.scaleout [--processes 1,2,4] [--modes single,cluster]
                                       [--seconds 15] [--loops 32] [--quick]

For each Redis mode the run starts private PostgreSQL+PostGIS and that Redis (one server on a
unix socket, or three cluster primaries on loopback ports, `LocalServers(redis_mode=)`), and
builds `bench/console.py`'s world on them once: one community of 5 km, 2,000 verified, online
workers bulk-loaded into the database and indexed through the API's rebuild, 20 residents. Then
for each process count it starts `bench.serve --processes N` (the app as `dispatch serve`
builds it, N uvicorn processes on one port, the kernel spreading connections) and measures, in
turn:

- **ingest**: wrk (`bench/wrk/batch.lua`, as `bench/ingest.py` drives it), `-t2 -c64`, batches
  of 20 pings rotating over the 2,000 workers' tokens: pings/s accepted (2xx requests x 20),
  p50 and p99 of a request;
- **grab**: `--loops` closed loops of the console benchmark's grab cycle
  (`bench.console.Load.grab_cycle`, with no hold): a resident posts a grab job, the first worker
  offered it accepts it, and completes it at once; cycles/s (jobs posted, taken and completed), and
  p50/p99 of the POST and of the accept. The load generator learns who was offered each job from
  the offers table (one indexed read), as a worker's push would tell them.

Beside each: the CPU the app processes, Redis (every node), PostgreSQL (postmaster and
backends), the load generator (this process and wrk) and the rest of the machine used, in % of
one core. Everything shares this machine's cores, so the figures say how the parts' costs
move with the process count and with the cluster; on one machine more processes cannot add
cores (README, Deployment, for what does).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import resource
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from bench import console, ingest
from bench.lib.client import Pool
from bench.lib.machine import (
    log,
    machine_busy_s,
    machine_lines,
    pid_from_file,
    proc_cpu_s,
    tree_cpu_s,
)
from bench.lib.report import run_and_report
from bench.lib.server import Server
from bench.lib.stats import pct
from dispatch.devtools.local_servers import LocalServers
from dispatch.infra.db import make_engine, migrate

CPU_KEYS = ("server", "redis", "postgres", "load", "other")
_JOBS = itertools.count()


@dataclass
class Config:
    processes: tuple[int, ...]
    modes: tuple[str, ...]
    seconds: int
    loops: int
    workers: int
    write: bool
    command: str


@dataclass
class Row:
    mode: str
    processes: int
    pings_s: float = 0.0
    ingest_p50_ms: float = 0.0
    ingest_p99_ms: float = 0.0
    ingest_errors: int = 0
    ingest_ignored: int = 0
    ingest_cpu: dict[str, float] = field(default_factory=dict)
    cycles_s: float = 0.0
    post_p50_ms: float = 0.0
    post_p99_ms: float = 0.0
    accept_p50_ms: float = 0.0
    accept_p99_ms: float = 0.0
    grab_failures: int = 0
    grab_cpu: dict[str, float] = field(default_factory=dict)


class Meter:
    """CPU seconds so far of the app server's process tree, Redis, PostgreSQL and the load
    generator; the rest of the machine is what `machine_busy_s` adds beyond them."""

    def __init__(self, servers: LocalServers) -> None:
        self.servers = servers
        self.server: Server | None = None

    def redis_pids(self) -> list[int]:
        if self.servers.redis_cluster:
            return [p.pid for p in self.servers.redis._procs if p.poll() is None]
        pid = pid_from_file(self.servers.redis.root / "redis.pid")
        return [pid] if pid else []

    def snapshot(self) -> dict[str, float]:
        own = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)  # wrk, once it has exited
        pg = pid_from_file(self.servers.postgres.pgdata / "postmaster.pid")
        ours = {
            "server": tree_cpu_s(self.server.pid) if self.server else 0.0,
            "redis": sum(proc_cpu_s(p) for p in self.redis_pids()),
            "postgres": tree_cpu_s(pg) if pg else 0.0,
            "load": own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime,
        }
        return {**ours, "other": machine_busy_s() - sum(ours.values())}

    @staticmethod
    def pct(before: dict[str, float], after: dict[str, float], wall: float) -> dict[str, float]:
        return {k: max(0.0, 100 * (after[k] - before[k]) / wall) for k in CPU_KEYS}


class IngestBench(ingest.Bench):
    """`bench.ingest`'s wrk runs, with the CPU counted by `Meter` (every Redis node, the load
    generator as one)."""

    def __init__(self, cfg: ingest.Config, root: Path, server: Server, meter: Meter) -> None:
        super().__init__(cfg, root, server, meter.servers)
        self.meter = meter

    def cpu_snapshot(self) -> dict[str, float]:
        snap = self.meter.snapshot()
        return {**snap, "wrk": 0.0}


async def grab(load: console.Load, port: int, db_url: str, loops: int, seconds: float) -> dict:
    """`loops` closed loops of grab cycles for `seconds`: cycles completed a second."""
    pool = Pool(port)
    engine = make_engine(db_url, pool_size=min(loops, 16))
    end = time.perf_counter() + seconds
    counter = _JOBS  # one numbering for the whole run: each job its own Idempotency-Key
    done, failed = [0], [0]

    async def loop() -> None:
        while time.perf_counter() < end:
            if await load.grab_cycle(pool, engine, next(counter), hold_s=0.0):
                done[0] += 1
            else:
                failed[0] += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(loops)))
    wall = time.perf_counter() - t0
    pool.close()
    await engine.dispose()
    return {"cycles_s": done[0] / wall, "failed": failed[0], "wall": wall}


def measure(cfg: Config, mode: str, root: Path) -> list[Row]:
    rows: list[Row] = []
    servers = LocalServers(root / f"servers-{mode}", durable=False, redis_mode=mode)
    db_url, redis_url = servers.start()
    try:
        migrate(db_url)
        meter = Meter(servers)
        env = {**os.environ, "DATABASE_URL": db_url, "REDIS_URL": redis_url,
               "REDIS_CLUSTER": "1" if servers.redis_cluster else "0",
               "DISPATCH_SECRET_KEY": console.SECRET, "DISPATCH_LOG_LEVEL": "WARNING"}  # fmt: skip
        world: dict[str, Any] | None = None
        bench: IngestBench | None = None
        for n in cfg.processes:
            server = Server(root, env, processes=n, log_name=f"server-{mode}-{n}.log")
            server.start()
            meter.server = server
            try:
                if world is None:
                    world = asyncio.run(console.build(_load_cfg(cfg), server.url, db_url))
                    world["built_ms"] = int(time.time() * 1000) + 1000
                    log(f"{mode}: world of {cfg.workers} workers in {world['setup_s']:.0f} s")
                row, bench = run_one(cfg, mode, n, root, server, meter, world, db_url, bench)
                rows.append(row)
            except BaseException:
                log(f"the server's last words:\n{server.log_tail(60)}")
                raise
            finally:
                server.stop()
    finally:
        servers.stop()
    return rows


def _load_cfg(cfg: Config) -> console.Config:
    return console.Config(
        workers=cfg.workers, ping_every_s=4.0, job_rate=1.0, consoles=0, window_s=0,
        ingest_s=0, rounds=0, wait_quiet_s=0, write=False, command="",
    )  # fmt: skip


def run_one(
    cfg: Config,
    mode: str,
    n: int,
    root: Path,
    server: Server,
    meter: Meter,
    world: dict[str, Any],
    db_url: str,
    previous: IngestBench | None,
) -> tuple[Row, IngestBench]:
    row = Row(mode, n)
    icfg = ingest.Config(
        workers=cfg.workers, duration=cfg.seconds, warmup=3, connections=(64,), threads=2,
        timeout_s=10, profile=False, quick=False, wait_quiet_s=0, write=False, command="",
        processes=n,
    )  # fmt: skip
    bench = IngestBench(icfg, root, server, meter)
    # Newer than the positions the world was built with (stamped then), so no point is stale.
    bench.ts_floor_ms = previous.ts_floor_ms if previous else world["built_ms"]
    bench.tokens.write_text(
        "".join(f"{token} {place[0]!r} {place[1]!r}\n" for _, place, _, token in world["workers"])
    )
    bench.run(ingest.BATCH_PINGS, 64, 3, warmup=True)
    run = bench.run(ingest.BATCH_PINGS, 64, cfg.seconds)
    # Pings the service accepted (applied to the index), not pings sent: a batch whose points
    # were stale or too fast would count otherwise.
    row.pings_s = run.accepted / run.seconds
    row.ingest_p50_ms, row.ingest_p99_ms = run.p50_ms, run.p99_ms
    row.ingest_errors = run.nother + sum(run.socket_errors.values())
    row.ingest_ignored = run.ignored + run.rejected
    row.ingest_cpu = {k: run.cpu[k] for k in CPU_KEYS}

    load = console.Load(_load_cfg(cfg), server.port, world, db_url)
    asyncio.run(grab(load, server.port, db_url, cfg.loops, 3.0))  # warm-up
    load.post_ms.clear()
    load.accept_ms.clear()
    load.problems.clear()
    before, t0 = meter.snapshot(), time.perf_counter()
    out = asyncio.run(grab(load, server.port, db_url, cfg.loops, cfg.seconds))
    row.grab_cpu = meter.pct(before, meter.snapshot(), time.perf_counter() - t0)
    row.cycles_s, row.grab_failures = out["cycles_s"], out["failed"]
    row.post_p50_ms, row.post_p99_ms = pct(load.post_ms, 50), pct(load.post_ms, 99)
    row.accept_p50_ms, row.accept_p99_ms = pct(load.accept_ms, 50), pct(load.accept_ms, 99)
    log(
        f"{mode} x{n}: ingest {row.pings_s:,.0f} pings/s (p99 {row.ingest_p99_ms:.0f} ms), "
        f"grab {row.cycles_s:.1f} cycles/s (POST p99 {row.post_p99_ms:.0f} ms, accept p99 "
        f"{row.accept_p99_ms:.0f} ms), failed {row.grab_failures} {load.problems[:2]}"
    )
    return row, bench


def cpu_cells(cpu: dict[str, float]) -> str:
    return " / ".join(f"{cpu.get(k, 0.0):.0f}" for k in CPU_KEYS)


def report(cfg: Config, rows: Sequence[Row], started: datetime) -> str:
    base = {r.mode: r for r in rows if r.processes == min(cfg.processes)}
    lines = [
        f"# Scale-out, {started:%Y-%m-%d %H:%M} UTC",
        "",
        f"Command: `{cfg.command}`",
        "",
        f"{cfg.workers} workers; ingest: wrk -t2 -c64, batches of 20 pings, {cfg.seconds} s; "
        f"grab: {cfg.loops} closed loops of post -> accept -> complete, {cfg.seconds} s. "
        "CPU in % of one core: app processes / Redis (all nodes) / PostgreSQL / load "
        "generator / rest of the machine.",
        "",
        "| Redis | app processes | pings/s | vs 1 | ingest p50 / p99 ms | CPU during ingest "
        "| grab cycles/s | vs 1 | POST p50 / p99 ms | accept p50 / p99 ms | CPU during grab |",
        "|---|---:|---:|---:|---|---|---:|---:|---|---|---|",
    ]
    for r in rows:
        b = base[r.mode]
        lines.append(
            f"| {r.mode} | {r.processes} | {r.pings_s:,.0f} | {r.pings_s / b.pings_s:.2f}x | "
            f"{r.ingest_p50_ms:.1f} / {r.ingest_p99_ms:.1f} | {cpu_cells(r.ingest_cpu)} | "
            f"{r.cycles_s:.1f} | {r.cycles_s / b.cycles_s:.2f}x | "
            f"{r.post_p50_ms:.1f} / {r.post_p99_ms:.1f} | "
            f"{r.accept_p50_ms:.1f} / {r.accept_p99_ms:.1f} | {cpu_cells(r.grab_cpu)} |"
        )
    errors = [f"{r.mode} x{r.processes}: ingest non-2xx/socket errors {r.ingest_errors}, points "
              f"ignored or refused {r.ingest_ignored}, grab cycles not completed "
              f"{r.grab_failures}" for r in rows
              if r.ingest_errors or r.ingest_ignored or r.grab_failures]  # fmt: skip
    lines += ["", "## Errors", "", *(f"- {e}" for e in errors or ["none"]), "", "## Machine", ""]
    lines += machine_lines(
        "load generator, app processes, Redis and PostgreSQL share them",
        "uvicorn (uvloop, httptools), N processes on one port",
        "wrk -t2",
    )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--processes", default="1,2,4")
    p.add_argument("--modes", default="single,cluster")
    p.add_argument("--seconds", type=int, default=15)
    p.add_argument("--loops", type=int, default=32)
    p.add_argument("--workers", type=int, default=2000)
    p.add_argument("--quick", action="store_true", help="5 s runs, 500 workers")
    p.add_argument("--no-write", action="store_true")
    a = p.parse_args(argv)
    cfg = Config(
        processes=tuple(int(x) for x in a.processes.split(",")),
        modes=tuple(a.modes.split(",")),
        seconds=5 if a.quick else a.seconds,
        loops=a.loops,
        workers=500 if a.quick else a.workers,
        write=not a.no_write,
        command=" ".join([".venv/bin/python -m bench.scaleout", *(argv or sys.argv[1:])]),
    )

    def run(started: datetime) -> str:
        import tempfile

        with tempfile.TemporaryDirectory(prefix="dispatch-bench-scaleout-") as tmp:
            root = Path(tmp)
            root.chmod(0o755)
            rows = [row for mode in cfg.modes for row in measure(cfg, mode, root)]
        return report(cfg, rows, started)

    return run_and_report("scaleout", run, write=cfg.write)


if __name__ == "__main__":
    raise SystemExit(main())
