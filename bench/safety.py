"""Safety benchmark: 10,000 night jobs whose check-ins fall due in the same minute, climbing the
whole check-in ladder beside grab-order load, and SOS from the press to the operators' stream.

    .venv/bin/python -m bench.safety [--quick]

One run starts private PostgreSQL+PostGIS and Redis and one server (`bench.serve`: the app as
`dispatch serve` runs it, one process), then builds in the database (bulk SQL, what the API would
leave there):
- a night community (Asia/Shanghai; `night_hours` around the hour of the run, check-ins every
  2 minutes with no grace, a ladder of five steps one minute apart: remind, SMS, call, alert,
  contacts) with N workers, each with a phone and one emergency contact, each holding one job
  in progress there;
- a grab community 20 km away with 1,000 verified online workers (the live index filled by the
  service's rebuild), for the load beside.

1. Arm: every night worker checks in once through `POST /v1/jobs/{id}/checkins`, spread evenly
   over one minute; each check-in arms the job's next one two minutes later, so N check-ins
   fall due within one minute, and every step of their ladders a minute after the one before.
2. Climb: from shortly before the first check-in falls due until the last ladder step is due,
   beside it: grab-order load (jobs posted at `--rate`/s at a worker's position in the grab
   community; the first wave's workers all accept at once; the winner completes the job), an
   operator's event stream (`GET /v1/ops/communities/{id}/events`) open, and an SOS pressed
   every half second by the resident of a night job.
3. Measured: each ladder step's lateness (`fired_at - due_at` on its timer row: the server's
   clock, no client in it) p50/p99/max; target p99 under 2 s. SOS: from sending the POST to the
   alert arriving on the operator's stream; target p99 at most 2x the grab job POST's p99 in the
   same window.

One benchmark, one file: setup, phases, checks and report read top to bottom; what the
benchmarks share lives in `bench/lib/`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from bench.lib.client import Pool, grab_job_request, http_request
from bench.lib.machine import log, machine_lines, wait_for_quiet
from bench.lib.report import run_and_report
from bench.lib.servers import one_server
from bench.lib.stats import bearer, ms, pct, verdict
from bench.lib.world import bulk_workers, spread
from dispatch.identity.auth import issue_token
from dispatch.identity.phones import PhoneVault, phone_hint
from dispatch.identity.principals import handle_user
from dispatch.infra.db import make_engine, make_sessionmaker
from geo.areas import destination
from geo.live.cells import cell_code

SECRET = "bench-safety-secret-not-for-production"
TOKEN_TTL_S = 12 * 3600
TZ = ZoneInfo("Asia/Shanghai")
NIGHT_CENTER = (31.2304, 121.4737)
GRAB_CENTER = destination(*NIGHT_CENTER, 0.0, 20_000.0)
SKILLS = ("plumbing", "electrical", "cleaning", "moving", "handyman", "pet_care")
LADDER = [{"after_min": i, "action": a}
          for i, a in enumerate(("remind", "sms", "call", "alert", "contacts"))]  # fmt: skip
INTERVAL_MIN = 2
ARM_S = 60.0
"""The check-ins that arm the ladders are spread over this long: their due times likewise."""
RESIDENTS = 50
GRAB_WORKERS = 1000
SOS_EVERY_S = 0.5
TARGET_LATENESS_P99_S = 2.0
TARGET_SOS_VS_POST = 2.0


@dataclass
class Config:
    jobs: int
    rate: float
    wait_quiet_s: int
    write: bool
    command: str


@dataclass
class Series:
    ms: list[float] = field(default_factory=list)

    def p(self, q: float) -> float:
        return pct(self.ms, q)


async def build(cfg: Config, base_url: str, db_url: str) -> dict[str, Any]:
    import httpx
    from sqlalchemy import text

    engine = make_engine(db_url, pool_size=2)
    sessions = make_sessionmaker(engine)
    vault = PhoneVault(SECRET)
    t0 = time.perf_counter()
    async with sessions.begin() as session:
        admin_id = await handle_user(session, "bench-admin", "admin", [])
        residents = [
            await handle_user(session, f"bench-resident-{i}", "resident", [])
            for i in range(RESIDENTS)
        ]
    admin = issue_token(SECRET, admin_id, "admin", None, TOKEN_TTL_S)
    hour = datetime.now(TZ).hour
    night = {"night_hours": [hour, (hour + 3) % 24], "checkin_interval_min": INTERVAL_MIN,
             "checkin_grace_min": 0, "checkin_ladder": LADDER, "location_max_age_s": 3600,
             "operators_phone": "+862155550000"}  # fmt: skip
    async with httpx.AsyncClient(base_url=base_url, timeout=300) as client:
        cids = []
        for name, center, dispatch in (
            ("Bench nights", NIGHT_CENTER, night),
            ("Bench grab", GRAB_CENTER, {"location_max_age_s": 3600, "offer_ttl_s": 60}),
        ):
            body = {"name": name, "center": {"lat": center[0], "lng": center[1]},
                    "radius_m": 5000, "timezone": TZ.key, "dispatch": dispatch}  # fmt: skip
            r = await client.post("/v1/communities", json=body, headers=bearer(admin))
            assert r.status_code == 201, r.text
            cids.append(int(r.json()["id"]))
        night_cid, grab_cid = cids
        rng = random.Random(14)
        night_places = spread(cfg.jobs, NIGHT_CENTER, 4500, seed=1403)
        night_ids = await bulk_workers(
            sessions, "nw", night_cid, night_places, [("moving",)] * cfg.jobs
        )
        grab_places = spread(GRAB_WORKERS, GRAB_CENTER, 4500, seed=1404)
        grab_skills = [tuple(rng.sample(SKILLS, 2)) for _ in grab_places]
        grab_ids = await bulk_workers(sessions, "gw", grab_cid, grab_places, grab_skills)
        phones = [f"+86139{i:08d}" for i in range(cfg.jobs)]
        contacts = [f"+86138{i:08d}" for i in range(cfg.jobs)]
        async with sessions.begin() as session:
            await session.execute(
                text(
                    "UPDATE users u SET phone_hash = p.h, phone_enc = p.e, phone_hint = p.hint "
                    "FROM unnest(CAST(:ids AS bigint[]), CAST(:h AS bytea[]), "
                    "CAST(:e AS bytea[]), CAST(:hint AS text[])) AS p(id, h, e, hint) "
                    "WHERE u.id = p.id"
                ),
                {"ids": night_ids, "h": [vault.hash(p) for p in phones],
                 "e": [vault.encrypt(p) for p in phones], "hint": [phone_hint(p) for p in phones]},
            )  # fmt: skip
            await session.execute(
                text(
                    "INSERT INTO emergency_contacts (user_id, position, name, phone_hash, "
                    "phone_enc, phone_hint, created_at) SELECT c.id, 0, 'Family', c.h, c.e, "
                    "c.hint, now() FROM unnest(CAST(:ids AS bigint[]), CAST(:h AS bytea[]), "
                    "CAST(:e AS bytea[]), CAST(:hint AS text[])) AS c(id, h, e, hint)"
                ),
                {"ids": night_ids, "h": [vault.hash(p) for p in contacts],
                 "e": [vault.encrypt(p) for p in contacts],
                 "hint": [phone_hint(p) for p in contacts]},
            )  # fmt: skip
            owners = [residents[i % RESIDENTS] for i in range(cfg.jobs)]
            rows = (
                await session.execute(
                    text(
                        "INSERT INTO jobs (community_id, resident_id, worker_id, title, "
                        "description, category, skills, location, cell, h3_code, mode, "
                        "price_cents, currency, materials, insured, status, version, wave, "
                        "assignment_version, assigned_at, arrived_at, started_at, pin_failures) "
                        "SELECT :cid, j.r, j.w, 'Night job', '', 'moving', ARRAY['moving'], "
                        "ST_SetSRID(ST_MakePoint(j.lng, j.lat), 4326)::geography, 0, j.code, "
                        "'grab', 8000, 'CNY', '[]'::jsonb, false, 'in_progress', 3, 1, 1, now(), "
                        "now(), now(), 0 FROM unnest(CAST(:w AS bigint[]), CAST(:r AS bigint[]), "
                        "CAST(:lat AS float8[]), CAST(:lng AS float8[]), CAST(:code AS bigint[])) "
                        "AS j(w, r, lat, lng, code) "
                        "RETURNING id, worker_id, resident_id"
                    ),
                    {
                        "cid": night_cid,
                        "w": night_ids,
                        "r": owners,
                        "lat": [p[0] for p in night_places],
                        "lng": [p[1] for p in night_places],
                        "code": [cell_code(*p) for p in night_places],
                    },
                )
            ).all()
        async with engine.begin() as conn:
            await conn.execute(text("ANALYZE"))
        r = await client.post(
            f"/v1/ops/communities/{grab_cid}/rebuild-index", headers=bearer(admin)
        )
        assert r.status_code == 200, r.text
    await engine.dispose()
    places = dict(zip(night_ids, night_places, strict=True))
    return {
        "admin": admin, "night_cid": night_cid, "grab_cid": grab_cid,
        "night": [(int(j), int(w), int(res), places[w]) for j, w, res in rows],
        "grab": list(zip(grab_ids, grab_places, grab_skills, strict=True)),
        "residents": residents, "setup_s": time.perf_counter() - t0,
        "operator": issue_token(SECRET, admin_id, "admin", None, TOKEN_TTL_S),
    }  # fmt: skip


async def arm(cfg: Config, port: int, world: dict[str, Any]) -> tuple[Series, float, float]:
    """Every night worker checks in once, evenly over `ARM_S`: (latency, first and last send on
    the wall clock)."""
    pool = Pool(port)
    await pool.warm(32)
    lat = Series()
    failures: Counter[int] = Counter()
    t0 = time.perf_counter()
    wall0 = time.time()
    n = len(world["night"])

    async def one(i: int, job_id: int, worker_id: int, where: tuple[float, float]) -> None:
        await asyncio.sleep(max(0.0, t0 + i * ARM_S / n - time.perf_counter()))
        body = json.dumps({"kind": "periodic", "location": {"lat": where[0], "lng": where[1]}})
        raw = http_request(
            "POST", f"/v1/jobs/{job_id}/checkins", port,
            token=issue_token(SECRET, worker_id, "worker", None, TOKEN_TTL_S), body=body.encode(),
        )  # fmt: skip
        status, _, sent, done = await pool.call(raw)
        if status != 201:
            failures[status] += 1
        lat.ms.append((done - sent) * 1000)

    await asyncio.gather(*(one(i, j, w, p) for i, (j, w, _, p) in enumerate(world["night"])))
    pool.close()
    assert not failures, f"check-ins failed: {dict(failures)}"
    return lat, wall0, wall0 + ARM_S


class Beside:
    """The load beside the climb: grab jobs with racing accepts, SOS presses, the ops stream."""

    def __init__(self, cfg: Config, base_url: str, port: int, world: dict[str, Any], db_url: str):
        self.cfg, self.base_url, self.port, self.world, self.db_url = (
            cfg, base_url, port, world, db_url,
        )  # fmt: skip
        self.posts, self.sos_posts, self.sos_seen = Series(), Series(), Series()
        self.accepts: Counter[int] = Counter()
        self.problems: list[str] = []
        self.sent_at: dict[int, float] = {}
        self.arrived: dict[int, float] = {}
        self.events: Counter[str] = Counter()
        self.stop = asyncio.Event()
        self.tokens: dict[int, str] = {}

    def token(self, user_id: int, role: str) -> str:
        if user_id not in self.tokens:
            self.tokens[user_id] = issue_token(SECRET, user_id, role, None, TOKEN_TTL_S)
        return self.tokens[user_id]

    async def stream(self, ready: asyncio.Event) -> None:
        import httpx

        path = f"/v1/ops/communities/{self.world['night_cid']}/events"
        async with (
            httpx.AsyncClient(base_url=self.base_url, timeout=httpx.Timeout(30, read=None)) as http,
            http.stream("GET", path, headers=bearer(self.world["operator"])) as response,
        ):
            kind = None
            async for line in response.aiter_lines():
                if line.startswith("event: "):
                    kind = line[7:]
                    self.events[kind] += 1
                    ready.set()
                elif line.startswith("data: ") and kind == "alert":
                    data = json.loads(line[6:])
                    if data["kind"] == "sos":
                        self.arrived[data["id"]] = time.perf_counter()
                if self.stop.is_set():
                    return

    async def grab(self) -> None:
        from sqlalchemy import text

        engine = make_engine(self.db_url, pool_size=4)
        pool = Pool(self.port)
        await pool.warm(16)
        rng = random.Random(7)
        t0, k = time.perf_counter(), 0
        pending: set[asyncio.Task[None]] = set()

        async def job(k: int) -> None:
            _, place, skills = rng.choice(self.world["grab"])
            resident = self.world["residents"][k % RESIDENTS]
            raw = grab_job_request(
                self.port, self.token(resident, "resident"), place, skills[0], f"grab-{k}"
            )
            status, answer, sent, done = await pool.call(raw)
            if status != 201:
                self.problems.append(f"job POST {status}")
                return
            self.posts.ms.append((done - sent) * 1000)
            job_id = json.loads(answer)["id"]
            async with engine.connect() as conn:
                offers = (
                    await conn.execute(
                        text("SELECT id, worker_id FROM offers WHERE job_id = :j"), {"j": job_id}
                    )
                ).all()
            results = await asyncio.gather(
                *(
                    pool.call(
                        http_request(
                            "POST",
                            f"/v1/offers/{oid}/accept",
                            self.port,
                            token=self.token(wid, "worker"),
                        )
                    )
                    for oid, wid in offers
                )
            )
            won = []
            for (_, wid), (status, answer, *_) in zip(offers, results, strict=True):
                self.accepts[status] += 1
                if status == 200:
                    won.append((wid, answer))
            if len(won) != 1:
                self.problems.append(f"job {job_id}: {len(won)} winners")
                return
            wid, taken = won[0]
            version = json.loads(taken)["assignment_version"]
            status, *_ = await pool.call(
                http_request(
                    "POST",
                    f"/v1/jobs/{job_id}/complete",
                    self.port,
                    token=self.token(wid, "worker"),
                    body=json.dumps({"assignment_version": version}).encode(),
                )
            )
            if status != 200:
                self.problems.append(f"complete {status}")

        while not self.stop.is_set():
            await asyncio.sleep(max(0.0, t0 + k / self.cfg.rate - time.perf_counter()))
            task = asyncio.create_task(job(k))
            pending.add(task)
            task.add_done_callback(pending.discard)
            k += 1
        await asyncio.gather(*pending)
        pool.close()
        await engine.dispose()

    async def sos(self) -> None:
        pool = Pool(self.port)
        await pool.warm(2)
        night = self.world["night"]
        k = 0
        while not self.stop.is_set():
            job_id, _, resident, where = night[(k * 7919) % len(night)]
            body = json.dumps({"location": {"lat": where[0], "lng": where[1]}}).encode()
            raw = http_request(
                "POST", f"/v1/jobs/{job_id}/sos", self.port,
                token=self.token(resident, "resident"), body=body,
            )  # fmt: skip
            status, answer, sent, done = await pool.call(raw)
            if status != 202:
                self.problems.append(f"SOS {status}")
            else:
                alert_id = json.loads(answer)["alert_id"]
                self.sent_at[alert_id] = sent
                self.sos_posts.ms.append((done - sent) * 1000)
            k += 1
            await asyncio.sleep(SOS_EVERY_S)
        pool.close()

    def sos_latencies(self) -> None:
        for alert_id, sent in self.sent_at.items():
            if alert_id in self.arrived:
                self.sos_seen.ms.append((self.arrived[alert_id] - sent) * 1000)


async def climb(
    cfg: Config, base_url: str, port: int, world: dict[str, Any], db_url: str, until: float
) -> Beside:
    beside = Beside(cfg, base_url, port, world, db_url)
    ready = asyncio.Event()
    stream = asyncio.create_task(beside.stream(ready))
    await asyncio.wait_for(ready.wait(), 30)
    tasks = [asyncio.create_task(beside.grab()), asyncio.create_task(beside.sos())]
    await asyncio.sleep(max(0.0, until - time.time()))
    beside.stop.set()
    await asyncio.gather(*tasks)
    await asyncio.sleep(2.0)  # the last SOS reaches the stream
    stream.cancel()
    beside.sos_latencies()
    return beside


async def lateness(db_url: str) -> dict[str, Any]:
    from sqlalchemy import text

    engine = make_engine(db_url, pool_size=1)
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT payload->>'action', payload->>'outcome', "
                    "extract(epoch FROM fired_at - due_at) FROM timers "
                    "WHERE kind = 'safety_step' AND fired_at IS NOT NULL"
                )
            )
        ).all()
        pending = await conn.scalar(
            text(
                "SELECT count(*) FROM timers WHERE kind = 'safety_step' AND fired_at IS NULL "
                "AND cancelled_at IS NULL AND due_at < now()"
            )
        )
        held = await conn.scalar(text("SELECT count(*) FROM outbox WHERE status = 'held'"))
    await engine.dispose()
    by_step: dict[str, list[float]] = {}
    outcomes: Counter[str] = Counter()
    for action, outcome, late in rows:
        by_step.setdefault(action, []).append(float(late))
        outcomes[outcome] += 1
    return {"by_step": by_step, "outcomes": outcomes, "overdue": pending, "held": held}


def report(
    cfg: Config, world: dict, armed: Series, late: dict, beside: Beside, started: datetime
) -> str:
    every = [v for vs in late["by_step"].values() for v in vs]
    p99 = pct(every, 99)
    sos, posts = beside.sos_seen, beside.posts
    ratio = sos.p(99) / posts.p(99)
    fired = len(every)
    expected = len(world["night"]) * len(LADDER)
    lines = [
        f"# Safety benchmark, {started:%Y-%m-%d %H:%M} UTC",
        "",
        f"Command: `{cfg.command}`",
        "",
        "## Targets",
        "",
        "| Target | Measured | Verdict |",
        "|---|---|---|",
        f"| ladder step lateness p99 < {TARGET_LATENESS_P99_S:g} s | **{p99:.2f} s** over "
        f"{fired:,} steps | {verdict(p99 < TARGET_LATENESS_P99_S and fired == expected)} |",
        f"| SOS → operator stream p99 <= {TARGET_SOS_VS_POST:g}x job POST p99 | {ms(sos.p(99))}"
        f" / {ms(posts.p(99))} = **{ratio:.2f}x** | {verdict(ratio <= TARGET_SOS_VS_POST)} |",
        "",
        "## Ladder steps: lateness (fired_at - due_at, server clock)",
        "",
        "| step | fired | p50 | p99 | max |",
        "|---|---:|---:|---:|---:|",
    ]
    for step in [s["action"] for s in LADDER]:
        vs = late["by_step"].get(step, [])
        lines.append(
            f"| {step} | {len(vs):,} | {pct(vs, 50):.3f} s | {pct(vs, 99):.3f} s | "
            f"{max(vs) if vs else float('nan'):.3f} s |"
        )
    lines.append(
        f"| all | {fired:,} | {pct(every, 50):.3f} s | {p99:.3f} s | "
        f"{max(every) if every else float('nan'):.3f} s |"
    )
    lines += [
        "",
        "## Requests",
        "",
        "| request | n | p50 | p90 | p99 | max |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for s, what in ((armed, "`POST /v1/jobs/{id}/checkins` (arming, one minute)"),
                    (posts, f"grab `POST /v1/jobs` ({cfg.rate:g}/s beside the climb)"),
                    (beside.sos_posts, "`POST /v1/jobs/{id}/sos` → 202"),
                    (sos, "SOS: POST sent → alert on the operator's stream")):  # fmt: skip
        lines.append(
            f"| {what} | {len(s.ms):,} | {ms(s.p(50))} | {ms(s.p(90))} | {ms(s.p(99))} | "
            f"{ms(max(s.ms)) if s.ms else '—'} |"
        )
    outcomes = ", ".join(f"{k} {v:,}" for k, v in sorted(late["outcomes"].items()))
    lines += [
        "",
        "## Checks",
        "",
        f"- {'OK' if fired == expected else 'FAILED'}: {fired:,} of {expected:,} ladder steps "
        f"fired ({late['overdue']} overdue and not fired at the end); outcomes: {outcomes}",
        f"- {'OK' if not beside.problems else 'FAILED'}: grab load: one winner per job, "
        f"accepts {dict(beside.accepts)} {beside.problems[:5] if beside.problems else ''}",
        f"- {'OK' if len(sos.ms) == len(beside.sent_at) else 'FAILED'}: {len(sos.ms)} of "
        f"{len(beside.sent_at)} SOS alerts seen on the stream; events on it: "
        f"{dict(beside.events)}",
        f"- {late['held']:,} outbox rows held (no SMS provider configured in the run)",
        "",
        "## Setup",
        "",
        f"- {len(world['night']):,} night jobs in progress (one per worker, each with a phone "
        f"and an emergency contact); check-ins every {INTERVAL_MIN} min, no grace, five ladder "
        f"steps one minute apart; {GRAB_WORKERS:,} grab workers 20 km away; setup "
        f"{world['setup_s']:.1f} s",
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
        with one_server("safety", SECRET) as (server, db_url):
            log(f"server on {server.url}; building {cfg.jobs} night jobs")
            world = await build(cfg, server.url, db_url)
            log(f"built in {world['setup_s']:.1f} s")
            if cfg.wait_quiet_s:
                wait_for_quiet(cfg.wait_quiet_s)
            armed, first, last = await arm(cfg, server.port, world)
            log(f"armed: check-ins p99 {armed.p(99):.1f} ms")
            due_from = first + INTERVAL_MIN * 60
            await asyncio.sleep(max(0.0, due_from - 10 - time.time()))
            until = last + INTERVAL_MIN * 60 + LADDER[-1]["after_min"] * 60 + 10
            log(f"climbing beside grab load for {until - time.time():.0f} s")
            beside = await climb(cfg, server.url, server.port, world, db_url, until)
            await asyncio.sleep(5)
            late = await lateness(db_url)
        return report(cfg, world, armed, late, beside, started)

    import uvloop

    return uvloop.run(main())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.safety", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1,000 night jobs")
    parser.add_argument("--jobs", type=int, default=None, help="night jobs (10,000)")
    parser.add_argument("--rate", type=float, default=20.0, help="grab jobs/s beside (20)")
    parser.add_argument("--wait-quiet", type=int, default=0)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    cfg = Config(
        jobs=args.jobs or (1000 if args.quick else 10_000),
        rate=args.rate,
        wait_quiet_s=args.wait_quiet,
        write=not args.no_write,
        command=" ".join(
            [".venv/bin/python -m bench.safety", *(sys.argv[1:] if argv is None else argv)]
        ),
    )
    return run_and_report("safety", lambda started: run_all(cfg, started), cfg.write)


if __name__ == "__main__":
    raise SystemExit(main())
