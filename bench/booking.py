"""Booking benchmark: proposals beside the live-index nearby search, and a 100-way confirmation
race for one slot beside the authenticated no-op.

    .venv/bin/python -m bench.booking [--quick]

One run starts private PostgreSQL+PostGIS and Redis and one server (`bench.serve`: the app plus
its no-op routes), then builds in the database (bulk SQL, what the API would leave there) one
community (5 km, Asia/Shanghai) with N verified workers within 4.5 km, each with a weekly
schedule (three patterns), two date overrides (a day off, an evening of extra hours), a home
base, a travel radius and 20 bookings over the next ten days; the live index is filled by the
service's own rebuild.

1. Proposals: Q points within 3 km, a random skill, a four-hour morning window on one of the
   booked days, 90 minutes, the best 10: `GET /v1/bookings/candidates` and, alternating with
   it, `GET /v1/workers/nearby` (2 km, the same skill, 10) as the same resident, one request at
   a time on one keep-alive connection. Target: candidates p99 <= 3x nearby p99.
2. Race: per round, 100 booking jobs ask one worker for the same slot (posted beforehand); the
   worker's 100 accepts are written at once on 100 warmed keep-alive connections, and a burst of
   100 `POST /bench/noop-auth` with the same token on the same connections (order alternating
   by round). Exactly one 200 per round, every other answer 409 `worker_unavailable`. Target:
   loser p99 <= 2x no-op p99, pooled and paired (the median of each round's ratio).

One benchmark, one file: setup, phases, checks and report read top to bottom; what the
benchmarks share lives in `bench/lib/`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from bench.lib.client import Conn, http_request
from bench.lib.machine import log, machine_lines, wait_for_quiet
from bench.lib.report import run_and_report
from bench.lib.servers import one_server
from bench.lib.stats import bearer, ms, pct, verdict
from bench.lib.world import bulk_workers, spread
from dispatch.identity.auth import issue_token
from dispatch.identity.principals import handle_user
from dispatch.infra.db import make_engine, make_sessionmaker
from geo.areas import destination
from geo.live.cells import cell_code

SECRET = "bench-booking-secret-not-for-production"
TOKEN_TTL_S = 12 * 3600
CENTER = (31.2304, 121.4737)
TZ = ZoneInfo("Asia/Shanghai")
SKILLS = ("plumbing", "electrical", "cleaning", "moving", "handyman", "pet_care")
BOOKINGS_PER_WORKER = 20
RACE_SIZE = 100
SIX_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat")
WEEKLY = [
    [{"day": d, "start": "08:00", "end": "20:00"} for d in SIX_DAYS],
    [{"day": d, "start": "09:00", "end": "18:00"} for d in ("mon", "tue", "wed", "thu", "fri")]
    + [{"day": "sat", "start": "10:00", "end": "14:00"}],
    [{"day": d, "start": s, "end": e} for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
     for s, e in (("07:00", "12:00"), ("13:00", "22:00"))],
]  # fmt: skip
ROUND_THE_CLOCK = [
    {"day": d, "start": "00:00", "end": "24:00"}
    for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
]


@dataclass
class Config:
    workers: int
    queries: int
    rounds: int
    wait_quiet_s: int
    write: bool
    command: str


@dataclass
class Series:
    name: str
    ms: list[float] = field(default_factory=list)

    def p(self, q: float) -> float:
        return pct(self.ms, q)


def local_day(days: int) -> datetime:
    day = datetime.now(TZ).date() + timedelta(days=days)
    return datetime.combine(day, datetime.min.time(), tzinfo=TZ)


async def build(cfg: Config, base_url: str, db_url: str) -> dict[str, Any]:
    """The community, its workers with schedules and bookings, tokens; the index rebuilt."""
    import httpx
    from sqlalchemy import text

    engine = make_engine(db_url, pool_size=2)
    sessions = make_sessionmaker(engine)
    t0 = time.perf_counter()
    async with sessions.begin() as session:
        admin_id = await handle_user(session, "bench-admin", "admin", [])
        resident_id = await handle_user(session, "bench-resident", "resident", [])
    admin = issue_token(SECRET, admin_id, "admin", None, TOKEN_TTL_S)
    resident = issue_token(SECRET, resident_id, "resident", None, TOKEN_TTL_S)
    async with httpx.AsyncClient(base_url=base_url, timeout=300) as client:
        body = {"name": "Bench booking", "center": {"lat": CENTER[0], "lng": CENTER[1]},
                "radius_m": 5000, "timezone": "Asia/Shanghai",
                "dispatch": {"location_max_age_s": 3600}}  # fmt: skip
        r = await client.post("/v1/communities", json=body, headers=bearer(admin))
        assert r.status_code == 201, r.text
        cid = int(r.json()["id"])
        rng = random.Random(5)
        places = spread(cfg.workers, CENTER, 4500, seed=20_261_203)
        skills = [tuple(rng.sample(SKILLS, 2)) for _ in places]
        ids = await bulk_workers(sessions, "bk", cid, places, skills)
        race_worker = ids[0]
        off_day, extra_day = local_day(3).date().isoformat(), local_day(5).date().isoformat()
        async with sessions.begin() as session:
            await session.execute(
                text(
                    "INSERT INTO availabilities (worker_id, timezone, weekly, overrides, extra, "
                    "buffer_min, min_notice_min, max_jobs_per_day, home, travel_radius_m, "
                    "updated_at) SELECT w.user_id, 'Asia/Shanghai', CAST(a.weekly AS jsonb), "
                    "CAST(:overrides AS jsonb), '[]'::jsonb, 15, 60, NULL, w.location, 8000, now() "
                    "FROM unnest(CAST(:ids AS bigint[]), CAST(:weekly AS text[])) AS a(id, weekly) "
                    "JOIN workers w ON w.user_id = a.id"
                ),
                {
                    "ids": ids,
                    "weekly": [
                        json.dumps(ROUND_THE_CLOCK if i == 0 else WEEKLY[i % 3])
                        for i in range(len(ids))
                    ],
                    "overrides": json.dumps(
                        [
                            {"date": off_day, "slots": []},
                            {"date": extra_day, "slots": [{"start": "18:00", "end": "22:00"}]},
                        ]
                    ),
                },
            )
            # 20 bookings each over days 1-10: two a day (morning, afternoon), places nearby.
            jw, js, je, jlat, jlng = [], [], [], [], []
            for i, (wid, home) in enumerate(zip(ids, places, strict=True)):
                for k in range(BOOKINGS_PER_WORKER):
                    day = local_day(1 + k // 2)
                    hour = 9 + (i + k) % 3 if k % 2 == 0 else 14 + (i + k) % 3
                    start = day.replace(hour=hour).astimezone(UTC)
                    place = destination(*home, rng.uniform(0, 360), rng.uniform(0, 3000))
                    jw.append(wid)
                    js.append(start)
                    je.append(start + timedelta(minutes=60 + 30 * (k % 3)))
                    jlat.append(place[0])
                    jlng.append(place[1])
            await session.execute(
                text(
                    "WITH made AS (INSERT INTO jobs (community_id, resident_id, worker_id, title, "
                    "description, category, skills, location, cell, h3_code, mode, window_start, "
                    "window_end, price_cents, currency, materials, insured, status, version, "
                    "wave, assignment_version, duration_min, scheduled_start, scheduled_end, "
                    "booked_at) SELECT :cid, :resident, b.w, 'Booked job', '', 'plumbing', "
                    "ARRAY['plumbing'], ST_SetSRID(ST_MakePoint(b.lng, b.lat), 4326)::geography, "
                    "0, b.code, 'booking', b.s, b.e, 10000, 'CNY', '[]'::jsonb, false, 'assigned', "
                    "1, 1, 1, (extract(epoch FROM b.e - b.s) / 60)::int, b.s, b.e, now() "
                    "FROM unnest(CAST(:w AS bigint[]), CAST(:s AS timestamptz[]), "
                    "CAST(:e AS timestamptz[]), CAST(:lat AS float8[]), CAST(:lng AS float8[]), "
                    "CAST(:code AS bigint[])) AS b(w, s, e, lat, lng, code) "
                    "RETURNING id, worker_id, scheduled_start, "
                    "scheduled_end, location) "
                    "INSERT INTO bookings (job_id, worker_id, starts_at, ends_at, block, lat, lng, "
                    "active, created_at) SELECT id, worker_id, scheduled_start, scheduled_end, "
                    "tstzrange(scheduled_start, scheduled_end + interval '15 minutes', '[)'), "
                    "ST_Y(location::geometry), ST_X(location::geometry), true, now() FROM made"
                ),
                {"cid": cid, "resident": resident_id, "w": jw, "s": js, "e": je, "lat": jlat,
                 "lng": jlng, "code": [cell_code(*p) for p in zip(jlat, jlng, strict=True)]},
            )  # fmt: skip
        async with engine.begin() as conn:
            # What autovacuum would have done to tables of this size by now.
            await conn.execute(text("ANALYZE"))
        db_s = time.perf_counter() - t0
        r = await client.post(f"/v1/ops/communities/{cid}/rebuild-index", headers=bearer(admin))
        assert r.status_code == 200 and r.json()["workers"] == cfg.workers, r.text
    await engine.dispose()
    return {
        "cid": cid, "admin": admin, "resident": resident, "race_worker": race_worker,
        "race_token": issue_token(SECRET, race_worker, "worker", None, TOKEN_TTL_S),
        "setup_s": time.perf_counter() - t0, "db_s": db_s, "bookings": len(jw),
    }  # fmt: skip


async def proposals(cfg: Config, base_url: str, world: dict[str, Any]) -> dict[str, Any]:
    import httpx

    rng = random.Random(9)
    cand, near = Series("candidates"), Series("nearby")
    sizes: list[int] = []
    examined: list[int] = []
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
        h = bearer(world["resident"])
        for i in range(cfg.queries + 20):
            lat, lng = destination(*CENTER, rng.uniform(0, 360), 3000 * rng.random() ** 0.5)
            skill = rng.choice(SKILLS)
            day = local_day(rng.randrange(2, 10))
            start = day.replace(hour=8)
            params = {"lat": lat, "lng": lng, "skill": skill, "start": start.isoformat(),
                      "end": (start + timedelta(hours=4)).isoformat(), "duration_min": 90,
                      "limit": 10}  # fmt: skip
            t = time.perf_counter()
            r = await client.get("/v1/bookings/candidates", params=params, headers=h)
            dt = (time.perf_counter() - t) * 1000
            assert r.status_code == 200, r.text
            t = time.perf_counter()
            n = await client.get(
                "/v1/workers/nearby",
                params={"lat": lat, "lng": lng, "radius_m": 2000, "skill": skill, "limit": 10},
                headers=h,
            )
            dn = (time.perf_counter() - t) * 1000
            assert n.status_code == 200, n.text
            if i >= 20:  # warm-up first
                cand.ms.append(dt)
                near.ms.append(dn)
                sizes.append(len(r.json()["candidates"]))
                examined.append(r.json()["examined"])
    return {"cand": cand, "near": near, "sizes": sizes, "examined": examined}


async def race(cfg: Config, base_url: str, port: int, world: dict[str, Any]) -> dict[str, Any]:
    import httpx

    token = world["race_token"]
    losers, noop = Series("losers"), Series("no-op")
    paired: list[float] = []
    problems: list[str] = []
    noop_raw = http_request("POST", "/bench/noop-auth", port, token=token, body=b"")
    async with httpx.AsyncClient(base_url=base_url, timeout=120) as client:
        for rnd in range(cfg.rounds + 2):
            # Two hours apart: a round's slot never touches the last winner's block.
            slot = local_day(12 + rnd // 6).replace(hour=8 + 2 * (rnd % 6))
            for k in range(RACE_SIZE):
                body = {"title": "Race", "category": "plumbing", "skills": [],
                        "location": {"lat": CENTER[0], "lng": CENTER[1]}, "mode": "booking",
                        "price_cents": 10000, "duration_min": 60,
                        "worker_id": world["race_worker"],
                        "window": {"start": slot.isoformat(),
                                   "end": (slot + timedelta(hours=1)).isoformat()}}  # fmt: skip
                r = await client.post(
                    "/v1/jobs", json=body,
                    headers={**bearer(world["resident"]), "Idempotency-Key": f"race-{rnd}-{k}"},
                )  # fmt: skip
                assert r.status_code == 201, r.text
            offers = (await client.get("/v1/workers/me/offers", headers=bearer(token))).json()
            at = slot.astimezone(UTC)
            slot_offers = [
                o for o in offers
                if datetime.fromisoformat(o["job"]["scheduled_start"].replace("Z", "+00:00")) == at
            ]  # fmt: skip
            if len(slot_offers) != RACE_SIZE:
                problems.append(f"round {rnd}: {len(slot_offers)} offers for the slot")
            accepts = [
                http_request("POST", f"/v1/offers/{o['id']}/accept", port, token=token, body=b"")
                for o in slot_offers
            ]
            # Fresh, warmed connections each round (the server closes idle ones after 5 s, and
            # posting the round's jobs takes longer).
            conns = [await Conn.open(port) for _ in range(RACE_SIZE)]
            for c in conns:
                status, *_ = await c.call(noop_raw)
                assert status == 204, status
            await asyncio.sleep(0.25)

            async def burst(
                raws: Sequence[bytes], conns: list[Conn] = conns
            ) -> list[tuple[int, float]]:
                sent = [c.send(raw) for c, raw in zip(conns, raws, strict=False)]
                got = await asyncio.gather(*(c.receive() for c in conns[: len(raws)]))
                return [(st, (done - s) * 1000) for (st, _, done), s in zip(got, sent, strict=True)]

            order = ("accept", "noop") if rnd % 2 == 0 else ("noop", "accept")
            results: dict[str, list[tuple[int, float]]] = {}
            for what in order:
                results[what] = await burst(accepts if what == "accept" else [noop_raw] * RACE_SIZE)
                await asyncio.sleep(0.25)
            won = [ms_ for st, ms_ in results["accept"] if st == 200]
            lost = [ms_ for st, ms_ in results["accept"] if st == 409]
            if len(won) != 1 or len(lost) != len(accepts) - 1:
                problems.append(f"round {rnd}: {len(won)} winners, {len(lost)} 409s")
            if rnd >= 2:  # warm-up rounds first
                losers.ms += lost
                noops = [m for st, m in results["noop"] if st == 204]
                noop.ms += noops
                if lost and noops:
                    paired.append(pct(lost, 99) / pct(noops, 99))
            for c in conns:
                c.close()
    return {"losers": losers, "noop": noop, "paired": paired, "problems": problems}


def report(cfg: Config, world: dict, props: dict, rc: dict, started: datetime) -> str:
    cand, near = props["cand"], props["near"]
    ratio = cand.p(99) / near.p(99)
    losers, noop = rc["losers"], rc["noop"]
    pooled = losers.p(99) / noop.p(99)
    paired = statistics.median(rc["paired"]) if rc["paired"] else float("nan")
    lines = [
        f"# Booking benchmark, {started:%Y-%m-%d %H:%M} UTC",
        "",
        f"Command: `{cfg.command}`",
        "",
        "## Targets",
        "",
        "| Target | Measured | Verdict |",
        "|---|---|---|",
        f"| candidates p99 <= 3x nearby p99 | {ms(cand.p(99))} / {ms(near.p(99))} = "
        f"**{ratio:.2f}x** | {verdict(ratio <= 3)} |",
        f"| confirmation loser p99 <= 2x no-op p99 (pooled) | {ms(losers.p(99))} / "
        f"{ms(noop.p(99))} = **{pooled:.2f}x** | {verdict(pooled <= 2)} |",
        f"| the same, paired (median of rounds) | **{paired:.2f}x** over {len(rc['paired'])} "
        f"rounds | {verdict(paired <= 2)} |",
        "",
        "## Latency",
        "",
        "| request | n | p50 | p90 | p99 | max |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for s, what in ((cand, "`GET /v1/bookings/candidates` (limit 10)"),
                    (near, "`GET /v1/workers/nearby` (2 km, limit 10)"),
                    (losers, "accept, loser (409 `worker_unavailable`), 100-way bursts"),
                    (noop, "`POST /bench/noop-auth`, 100-way bursts")):  # fmt: skip
        lines.append(
            f"| {what} | {len(s.ms):,} | {ms(s.p(50))} | {ms(s.p(90))} | {ms(s.p(99))} | "
            f"{ms(max(s.ms)) if s.ms else '—'} |"
        )
    lines += [
        "",
        "## Checks",
        "",
        f"- {'OK' if not rc['problems'] else 'FAILED'}: exactly one winner per race round, "
        f"every other accept 409 worker_unavailable {rc['problems'][:5] if rc['problems'] else ''}",
        f"- proposals returned {statistics.fmean(props['sizes']):.1f} candidates on average "
        f"(examining {statistics.fmean(props['examined']):.0f} workers, max "
        f"{max(props['examined'])})",
        "",
        "## Setup",
        "",
        f"- {cfg.workers:,} workers within 4.5 km, each with one of three weekly schedules, two "
        f"overrides and {BOOKINGS_PER_WORKER} bookings ({world['bookings']:,} in all); setup "
        f"{world['setup_s']:.1f} s (database rows {world['db_s']:.1f} s)",
        f"- {cfg.queries} proposal and nearby queries, one at a time; {cfg.rounds} race rounds "
        f"of {RACE_SIZE} after 2 warm-up rounds",
        "",
        "## Machine",
        "",
        *machine_lines(
            "load generator, server, Redis and PostgreSQL share them",
            "uvloop, httptools, 1 server process",
        ),
    ]
    return "\n".join(lines) + "\n"


def run_all(cfg: Config, started: datetime) -> str:
    async def main() -> str:
        with one_server("booking", SECRET) as (server, db_url):
            log(f"server on {server.url}; building {cfg.workers} workers")
            world = await build(cfg, server.url, db_url)
            log(f"built in {world['setup_s']:.1f} s")
            if cfg.wait_quiet_s:
                wait_for_quiet(cfg.wait_quiet_s)
            props = await proposals(cfg, server.url, world)
            log(f"proposals p99 {props['cand'].p(99):.2f} ms, nearby {props['near'].p(99):.2f}")
            rc = await race(cfg, server.url, server.port, world)
            log(f"race loser p99 {rc['losers'].p(99):.2f} ms, no-op {rc['noop'].p(99):.2f}")
        return report(cfg, world, props, rc, started)

    import uvloop

    return uvloop.run(main())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.booking", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1,000 workers, fewer queries")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--queries", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--wait-quiet", type=int, default=0)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    cfg = Config(
        workers=args.workers or (1000 if args.quick else 10_000),
        queries=args.queries or (60 if args.quick else 400),
        rounds=args.rounds or (3 if args.quick else 10),
        wait_quiet_s=args.wait_quiet,
        write=not args.no_write,
        command=" ".join(
            [".venv/bin/python -m bench.booking", *(sys.argv[1:] if argv is None else argv)]
        ),
    )
    return run_and_report("booking", lambda started: run_all(cfg, started), cfg.write)


if __name__ == "__main__":
    raise SystemExit(main())
