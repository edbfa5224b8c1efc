"""How fast the masked-number webhooks answer Twilio, beside a health check of the same server.

    make bench-telephony            # or: .venv/bin/python -m bench.telephony [--requests N]

One `dispatch serve` process (uvloop, httptools) on private PostgreSQL+PostGIS and Redis started
in a temporary directory. Set-up through the public API: a community with a pool of proxy
numbers, `--pairs` residents each with a job taken by its own worker (so a masked-number session
is open for every pair). Then, for each route, `--requests` signed webhooks (`X-Twilio-Signature`
computed with twilio's `RequestValidator`, exactly as Twilio signs), sequential (one at a time)
and then `--concurrency` at once (closed loop), client-side latency from send to full answer:

- voice: a participant calls the proxy → TwiML `<Dial>` to the other participant
- voice (stranger): an unknown number calls → spoken refusal
- sms: a participant texts the proxy → relayed through the outbox (one row per MessageSid)
- status: a delivery receipt for an unknown message (the forward-only UPDATE)
- readyz: the health check (one database and one Redis round trip), the floor of the server

Twilio waits up to 15 s for a webhook answer and the issue asks for "well under 2 s": the table
prints p50/p99/max and the ratio to readyz.

    .venv/bin/python -m bench.telephony --open-loop [--rate R] [--processes N]

The open loop (issue 17, item 7): webhooks on a fixed Poisson schedule at `--rate` (default 10x
the peak estimated below, `peak()`), in the estimate's mix of routes, 5 % of them retried by
"Twilio" (a fifth at the same moment); the service relays through a local Twilio API, so status
callbacks name messages it really sent. Per route p50/p99/max from the scheduled send, then the
replays' effects checked from the database and Redis (bench/README.md, "Telephony webhooks").
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import statistics
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode

import aiohttp
import httpx
from redis.asyncio import Redis
from sqlalchemy import text as sql
from twilio.request_validator import RequestValidator

from bench.lib.machine import log
from bench.lib.servers import private_servers
from bench.lib.stats import pct
from dispatch.identity.auth import issue_token
from dispatch.identity.phones import PhoneVault
from dispatch.identity.principals import handle_user, upsert_phone_user
from dispatch.infra.db import make_engine, make_sessionmaker
from notifications.webhooks import RELAY_LIMIT
from tests.notifications.peers.twilio_api import TwilioApiPeer
from tests.processes import ServiceProcess

SECRET = "bench-telephony-secret-key-0123456789abcdef"
TOKEN = "bench-twilio-auth-token"
ACCOUNT = "AC" + "be" * 16
PUBLIC = "https://bench.example.org"
CENTER = (31.2304, 121.4737)
RESULTS = Path(__file__).parent / "results"


@contextlib.contextmanager
def service(db: str, redis: str, *args: str, **env: str) -> Iterator[str]:
    proc = ServiceProcess(
        (db, redis), SECRET, *args, TWILIO_AUTH_TOKEN=TOKEN, PUBLIC_BASE_URL=PUBLIC, **env
    )
    try:
        proc.wait_ready()
        yield proc.base
    finally:
        proc.stop()


async def tokens(db: str, phones: list[str], role: str) -> list[tuple[int, str]]:
    engine = make_engine(db, 2)
    vault = PhoneVault(SECRET)
    out = []
    async with make_sessionmaker(engine).begin() as session:
        for phone in phones:
            uid = await upsert_phone_user(session, vault, phone, vault.hash(phone), role)
            out.append((uid, issue_token(SECRET, uid, role, ttl_s=7200)))
    await engine.dispose()
    return out


async def admin_token(db: str, communities: list[int] | None = None) -> str:
    engine = make_engine(db, 2)
    async with make_sessionmaker(engine).begin() as session:
        role = "operator" if communities else "admin"
        uid = await handle_user(session, f"bench-{role}", role, communities or [])
    await engine.dispose()
    return issue_token(SECRET, uid, role, communities, ttl_s=7200)


def h(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def setup(http: httpx.AsyncClient, db: str, pairs: int) -> list[tuple[str, str, str]]:
    """(resident phone, worker phone, proxy number) for `pairs` open sessions."""
    admin = await admin_token(db)
    body = {"name": "Bench", "center": {"lat": CENTER[0], "lng": CENTER[1]}, "radius_m": 3000,
            "dispatch": {"offer_ttl_s": 600, "waves": [{"radius_m": 2000, "size": 1}]}}  # fmt: skip
    r = await http.post("/v1/communities", json=body, headers=h(admin))
    r.raise_for_status()
    cid = r.json()["id"]
    pool = [f"+1202555{i:04d}" for i in range(pairs * 2)]
    r = await http.post(f"/v1/communities/{cid}/proxy-numbers", json={"numbers": pool},
                        headers=h(admin))  # fmt: skip
    r.raise_for_status()
    ops = await admin_token(db, [cid])
    residents = await tokens(db, [f"+86138{i:08d}" for i in range(pairs)], "resident")
    workers = await tokens(db, [f"+86139{i:08d}" for i in range(pairs)], "worker")
    out = []
    for i, ((_, rt), (wid, wt)) in enumerate(zip(residents, workers, strict=True)):
        prof = {"name": f"W{i}", "skills": ["moving"], "community_ids": [cid]}
        (await http.put("/v1/workers/me", json=prof, headers=h(wt))).raise_for_status()
        (await http.post(f"/v1/ops/workers/{wid}/verify", headers=h(ops))).raise_for_status()
        r = await http.post("/v1/workers/me/presence", json={"status": "online"}, headers=h(wt))
        r.raise_for_status()
        here = {"lat": CENTER[0] + 0.0001 * i, "lng": CENTER[1]}
        (await http.post("/v1/workers/me/location", json=here, headers=h(wt))).raise_for_status()
        job = {"title": f"Job {i}", "category": "moving", "skills": ["moving"], "mode": "grab",
               "location": here, "price_cents": 5000}  # fmt: skip
        r = await http.post("/v1/jobs", json=job, headers={**h(rt), "Idempotency-Key": f"j{i}"})
        r.raise_for_status()
        offers = (await http.get("/v1/workers/me/offers", headers=h(wt))).json()
        r = await http.post(f"/v1/offers/{offers[0]['id']}/accept", headers=h(wt))
        r.raise_for_status()
        # Back offline: the next resident's single-worker wave must find the next worker.
        await http.post("/v1/workers/me/presence", json={"status": "offline"}, headers=h(wt))
        out.append((f"+86138{i:08d}", f"+86139{i:08d}", r.json()["proxy_number"]))
    return out


def signed(path: str, params: dict[str, str]) -> dict[str, str]:
    return {"X-Twilio-Signature": RequestValidator(TOKEN).compute_signature(PUBLIC + path, params)}


def requests_for(route: str, sessions: list[tuple[str, str, str]], n: int) -> list[tuple]:
    out = []
    for i in range(n):
        resident, worker, proxy = sessions[i % len(sessions)]
        caller = resident if i % 2 == 0 else worker
        if route == "voice":
            params = {
                "From": caller,
                "To": proxy,
                "CallSid": f"CA{i:032x}",
                "CallStatus": "ringing",
            }
            out.append(("POST", "/v1/telephony/voice", params))
        elif route == "voice (stranger)":
            params = {"From": f"+86137{i:08d}", "To": proxy, "CallSid": f"CB{i:032x}"}
            out.append(("POST", "/v1/telephony/voice", params))
        elif route == "sms":
            params = {"From": caller, "To": proxy, "Body": f"on my way {i}",
                      "MessageSid": f"SM{i:032x}"}  # fmt: skip
            out.append(("POST", "/v1/telephony/sms", params))
        elif route == "status":
            params = {"MessageSid": f"SN{i:032x}", "MessageStatus": "delivered"}
            out.append(("POST", "/v1/telephony/status", params))
        else:
            out.append(("GET", "/readyz", {}))
    return out


async def measure(
    http: httpx.AsyncClient, reqs: list[tuple], concurrency: int
) -> tuple[list[float], float]:
    latencies: list[float] = []
    queue = list(reversed(reqs))

    async def one() -> None:
        while queue:
            method, path, params = queue.pop()
            headers = signed(path, params) if method == "POST" else {}
            t0 = time.perf_counter()
            r = await http.request(method, path, data=params or None, headers=headers)
            latencies.append(time.perf_counter() - t0)
            if r.status_code >= 300:
                raise AssertionError(f"{path} answered {r.status_code}: {r.text[:200]}")

    t0 = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(concurrency)))
    return latencies, time.perf_counter() - t0


async def run(args: argparse.Namespace) -> str:
    started = datetime.now(UTC)
    routes = ["readyz", "voice", "voice (stranger)", "sms", "status"]
    rows: dict[tuple[str, int], tuple[list[float], float]] = {}
    with private_servers("telephony") as (_, _, db, redis), service(db, redis) as base:
        limits = httpx.Limits(max_connections=args.concurrency + 4)
        async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as http:
            log(f"setting up {args.pairs} sessions")
            sessions = await setup(http, db, args.pairs)
            for route in routes:  # warm-up: connections, prepared statements, caches
                await measure(http, requests_for(route, sessions, 50)[::-1], 4)
            for concurrency in (1, args.concurrency):
                for route in routes:
                    reqs = requests_for(route, sessions, args.requests)
                    if route in ("voice", "voice (stranger)", "sms"):
                        reqs = [(m, p, {**q, **_fresh(q, concurrency)}) for m, p, q in reqs]
                    rows[(route, concurrency)] = await measure(http, reqs, concurrency)
                    log(f"{route} x{concurrency}: done")
    lines = [
        f"# Telephony webhooks: {started:%Y-%m-%d %H:%M} UTC",
        "",
        f"`python -m bench.telephony --requests {args.requests} --pairs {args.pairs} "
        f"--concurrency {args.concurrency}`; {os.cpu_count()} cores, server and client on one "
        "machine (the client's CPU competes with the server's).",
        "",
        "| route | in flight | p50 ms | p99 ms | max ms | p99 ÷ readyz p99 | req/s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for concurrency in (1, args.concurrency):
        floor = pct(rows[("readyz", concurrency)][0], 99)
        for route in routes:
            lat, wall = rows[(route, concurrency)]
            lines.append(
                f"| {route} | {concurrency} | {statistics.median(lat) * 1e3:.1f} | "
                f"{pct(lat, 99) * 1e3:.1f} | {max(lat) * 1e3:.1f} | "
                f"{pct(lat, 99) / floor:.2f}x | {len(lat) / wall:,.0f} |"
            )
    return "\n".join(lines) + "\n"


# --- open loop: ten times an estimated peak, at a fixed schedule ---------------------------------
#
# The peak of one large city at its busiest hour, per job and then per second. Each figure is an
# assumption about the product, written down so it can be argued with (bench/README.md).

JOBS_PER_S = 1.0
"""A large city's busiest hour: 3,600 jobs an hour (the soak's rate)."""
CALLS_PER_JOB = 1.5
"""Masked calls between a job's resident and worker (each one a voice webhook)."""
STRANGER_CALLS_PER_JOB = 0.1
"""Calls to a proxy number from outside a live session (a closed session, a wrong number)."""
CALL_CALLBACKS = 2
"""Status callbacks per call (in-progress and completed)."""
TEXTS_IN_PER_JOB = {"relayed through the masked number": 2.0, "'1' replies to offer texts": 0.6}
"""Inbound texts (the SMS webhook)."""
SMS_OUT_PER_JOB = {
    "offers by SMS (6 offers a job, 30 % of workers without push)": 6 * 0.3,
    "'taken' notices by SMS (5 losers, 30 % without push)": 5 * 0.3,
    "relayed texts": 2.0,
    "sign-in codes": 0.5,
    "reminders, check-ins, job started/completed": 1.0,
}
"""Outbound texts, each with status callbacks."""
MESSAGE_CALLBACKS = 3
"""Status callbacks per outbound text (queued, sent, delivered)."""
PEAK_FACTOR = 10
RETRY_SHARE = 0.05
"""Webhooks Twilio sends again (same body, same signature), a fifth of them at the same moment
as the original (two identical webhooks at once), the others 1-15 s later."""
OPEN_ROUTES = ["voice", "voice (stranger)", "sms", "status (message)", "status (call)"]


def peak(jobs_per_s: float = JOBS_PER_S) -> dict[str, float]:
    """Webhooks per second per route at the estimated peak."""
    calls = CALLS_PER_JOB + STRANGER_CALLS_PER_JOB
    return {
        "voice": jobs_per_s * CALLS_PER_JOB,
        "voice (stranger)": jobs_per_s * STRANGER_CALLS_PER_JOB,
        "sms": jobs_per_s * sum(TEXTS_IN_PER_JOB.values()),
        "status (message)": jobs_per_s * sum(SMS_OUT_PER_JOB.values()) * MESSAGE_CALLBACKS,
        "status (call)": jobs_per_s * calls * CALL_CALLBACKS,
    }


@dataclass
class Shot:
    """One webhook of the schedule: sent at `at` s from the start, whatever came before."""

    at: float
    route: str
    path: str
    params: dict[str, str]
    sid: str
    retry: bool = False
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    sent_wall: float = 0.0
    answered: float | None = None
    """Seconds from the scheduled send to the full answer (None: no answer)."""
    status: int | None = None


def poisson(rng: random.Random, rate: float, until: float) -> list[float]:
    out, t = [], 0.0
    if rate <= 0:
        return out
    while True:
        t += rng.expovariate(rate)
        if t >= until:
            return out
        out.append(t)


def schedule(
    rates: dict[str, float],
    until: float,
    sessions: list[tuple[str, str, str]],
    messages: list[tuple[str, str, str]],
    seed: int,
) -> list[Shot]:
    """Poisson arrivals per route at `rates`; every call's status callbacks follow it, every
    known message's (sid, from, to) gets queued, sent, delivered; then RETRY_SHARE replays."""
    rng = random.Random(seed)
    shots: list[Shot] = []
    n = 0
    call_rate = rates["voice"] + rates["voice (stranger)"]
    callbacks_per_call = rates["status (call)"] / call_rate if call_rate else 0
    for route in ("voice", "voice (stranger)"):
        for at in poisson(rng, rates[route], until):
            n += 1
            resident, worker, proxy = sessions[n % len(sessions)]
            turn = (n // len(sessions)) % 2
            caller = (resident if turn else worker) if route == "voice" else f"+86137{n:08d}"
            sid = f"CA{0xBE:02x}{n:030x}"
            params = {"AccountSid": ACCOUNT, "ApiVersion": "2010-04-01", "CallSid": sid,
                      "From": caller, "To": proxy, "CallStatus": "ringing",
                      "Direction": "inbound"}  # fmt: skip
            shots.append(Shot(at, route, "/v1/telephony/voice", params, sid))
            # Status callbacks: in-progress soon after, completed when the call ends.
            later = [("in-progress", rng.uniform(0.5, 2)), ("completed", rng.uniform(3, 15))]
            for status, after in later[: round(callbacks_per_call)]:
                cb = {**params, "CallStatus": status}
                if status == "completed":
                    cb["CallDuration"] = str(int(after))
                if at + after < until:
                    shots.append(Shot(at + after, "status (call)", "/v1/telephony/status", cb, sid))
    for at in poisson(rng, rates["sms"], until):
        n += 1
        resident, worker, proxy = sessions[n % len(sessions)]
        sender = resident if (n // len(sessions)) % 2 else worker
        sid = f"SM{0xBE:02x}{n:030x}"
        params = {"AccountSid": ACCOUNT, "ApiVersion": "2010-04-01", "MessageSid": sid,
                  "SmsSid": sid, "From": sender, "To": proxy,
                  "Body": f"on my way, {n % 13 + 2} minutes", "NumMedia": "0"}  # fmt: skip
        shots.append(Shot(at, "sms", "/v1/telephony/sms", params, sid))
    known = iter(messages)
    for at in poisson(rng, rates["status (message)"] / MESSAGE_CALLBACKS, until):
        sid, from_, to = next(known)  # a StopIteration here: set-up made too few messages
        steps = [("queued", 0.0), ("sent", rng.uniform(0.2, 1)), ("delivered", rng.uniform(1, 5))]
        for status, after in steps:
            if at + after < until:
                params = {"AccountSid": ACCOUNT, "ApiVersion": "2010-04-01", "MessageSid": sid,
                          "SmsSid": sid, "MessageStatus": status, "SmsStatus": status,
                          "From": from_, "To": to}  # fmt: skip
                shots.append(Shot(at + after, "status (message)", "/v1/telephony/status",
                                  params, sid))  # fmt: skip
    for shot in rng.sample(shots, int(len(shots) * RETRY_SHARE)):
        at = shot.at if rng.random() < 0.2 else shot.at + rng.uniform(1, 15)
        if at < until:
            shots.append(Shot(at, shot.route, shot.path, shot.params, shot.sid, retry=True))
    shots.sort(key=lambda s: s.at)
    for shot in shots:
        shot.body = urlencode(shot.params).encode()
        shot.headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "User-Agent": "TwilioProxy/1.1",
            **signed(shot.path, shot.params),
        }
    return shots


async def fire(base: str, shots: list[Shot]) -> float:
    """Send every shot at its time (open loop: a slow answer delays no later send); the
    client's worst lag behind the schedule."""
    loop = asyncio.get_running_loop()
    connector = aiohttp.TCPConnector(limit=1024)
    timeout = aiohttp.ClientTimeout(total=15)  # Twilio's own webhook timeout
    lag = 0.0
    async with aiohttp.ClientSession(base, connector=connector, timeout=timeout) as http:

        async def one(shot: Shot, due: float) -> None:
            shot.sent_wall = time.time()
            try:
                async with http.post(shot.path, data=shot.body, headers=shot.headers) as r:
                    await r.read()
                    shot.status = r.status
                shot.answered = loop.time() - due
            except (TimeoutError, aiohttp.ClientError):
                shot.status = None

        t0 = loop.time() + 0.5
        tasks = []
        for shot in shots:
            due = t0 + shot.at
            if (wait := due - loop.time()) > 0:
                await asyncio.sleep(wait)
            lag = max(lag, loop.time() - due)
            tasks.append(asyncio.create_task(one(shot, due)))
        await asyncio.gather(*tasks)
    return lag


async def known_messages(
    http: httpx.AsyncClient, peer: TwilioApiPeer, sessions: list[tuple[str, str, str]], n: int
) -> list[tuple[str, str, str]]:
    """`n` texts relayed through the service (signed SMS webhooks from participants, sent on by
    its relay to the local Twilio API): the messages whose status callbacks the run sends."""
    reqs = []
    for i in range(n):
        resident, worker, proxy = sessions[i % len(sessions)]
        sender = resident if (i // len(sessions)) % 2 else worker
        params = {"From": sender, "To": proxy, "Body": f"set-up {i}", "MessageSid": f"SM{i:032x}"}
        reqs.append(("POST", "/v1/telephony/sms", params))
    await measure(http, reqs, 16)
    proxies = {p for _, _, p in sessions}
    deadline = time.monotonic() + 300
    while True:  # the relay hands them to the local Twilio API (offers by SMS go there too)
        out = [(m["sid"], m["from_"], m["to"]) for m in peer.messages if m["from_"] in proxies]
        if len(out) >= n or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    random.Random(1).shuffle(out)
    return out


def pairs_for(rates: dict[str, float], until: float, messages: int) -> int:
    """Sessions enough that no participant relays more than 80 % of RELAY_LIMIT (the relay
    limit per participant and hour), set-up texts and the run's together."""
    texts = messages + rates["sms"] * until * (1 + RETRY_SHARE)
    return math.ceil(texts / (2 * RELAY_LIMIT.max_hits * 0.8))


FINAL = ("delivered", "completed")


def state(shot: Shot) -> str | None:
    return shot.params.get("CallStatus") or shot.params.get("MessageStatus")


async def effects(db: str, redis_url: str, shots: list[Shot], setup_texts: int) -> list[str]:
    """From the database and Redis after the run: did any replay have a second effect?"""
    first = {(s.path, s.sid, state(s)): s for s in shots if not s.retry}
    calls = sorted({s.sid for s in shots if s.path == "/v1/telephony/voice"})
    texts = sorted({s.sid for s in shots if s.route == "sms"})
    retried = Counter(s.route for s in shots if s.retry)
    # A final status replayed after its original was answered: the row's updated_at must be
    # older than the replay (the forward-only UPDATE matched nothing).
    late = []
    for s in shots:
        o = first.get((s.path, s.sid, state(s)))
        if s.retry and s.route.startswith("status") and state(s) in FINAL and o is not None:
            if o.answered is not None and o.sent_wall + o.answered + 0.05 < s.sent_wall:
                late.append(s)
    done = sorted({s.sid for s in shots if ok(s) and state(s) in FINAL})
    # Under overload a call's `completed` can be handled before its own voice webhook (which
    # Twilio would not do: the call is bridged only once that webhook has answered).
    voice_done = {s.sid: s.sent_wall + s.answered for s in shots
                  if s.path == "/v1/telephony/voice" and not s.retry and ok(s)}  # fmt: skip
    overtaken = {s.sid for s in shots if s.route == "status (call)" and state(s) == "completed"
                 and s.sent_wall < voice_done.get(s.sid, 0)}  # fmt: skip
    answered_calls = {s.sid for s in shots if s.path == "/v1/telephony/voice" and ok(s)}
    answered_texts = {s.sid for s in shots if s.route == "sms" and ok(s)}
    engine = make_engine(db, 2)
    async with engine.connect() as conn:
        recorded = set(
            (
                await conn.execute(
                    sql("SELECT call_sid FROM call_records WHERE call_sid = ANY(:s)"), {"s": calls}
                )
            ).scalars()
        )
        relayed = {
            k.removeprefix("relay:")
            for k in (
                await conn.execute(
                    sql("SELECT dedupe_key FROM outbox WHERE dedupe_key = ANY(:k)"),
                    {"k": [f"relay:{sid}" for sid in texts]},
                )
            ).scalars()
        }
        written = 0
        for s in late:
            table, key = ("outbox", "provider_ref") if "MessageSid" in s.params else (
                "call_records", "call_sid")  # fmt: skip
            at = await conn.scalar(
                sql(f"SELECT extract(epoch FROM updated_at) FROM {table} WHERE {key} = :s"),  # noqa: S608
                {"s": s.sid},
            )
            written += at is not None and float(at) >= s.sent_wall
        short_calls = set(
            (
                await conn.execute(
                    sql("SELECT call_sid FROM call_records WHERE call_sid = ANY(:d) "
                        "AND status_rank < 5"),
                    {"d": done},
                )
            ).scalars()
        )  # fmt: skip
        short_texts = await conn.scalar(
            sql("SELECT count(*) FROM outbox WHERE provider_ref = ANY(:d) AND provider_rank < 5"),
            {"d": done},
        )
    await engine.dispose()
    redis = Redis.from_url(redis_url)
    counted = 0
    async for key in redis.scan_iter(match=f"rl:{RELAY_LIMIT.name}:*", count=1000):
        counted += int(await redis.get(key) or 0)
    await redis.aclose()
    expected = setup_texts + len(relayed)
    voice_retried = retried["voice"] + retried["voice (stranger)"]

    def verdict(found: set[str], answered: set[str]) -> str:
        # One row per id at most (a unique key); one for every id the service answered 2xx
        # (an id only ever answered 5xx/timed out may or may not have one: Twilio retries it).
        good = answered <= found
        return "one each" if good else f"MISSING {len(answered - found)}"

    return [
        f"- voice: {len(calls):,} distinct CallSids ({voice_retried:,} retried; "
        f"{len(answered_calls):,} answered 2xx at least once) -> {len(recorded):,} call records "
        f"({verdict(recorded, answered_calls)})",
        f"- sms: {len(texts):,} distinct MessageSids ({retried['sms']:,} retried; "
        f"{len(answered_texts):,} answered 2xx) -> {len(relayed):,} relayed outbox rows "
        f"({verdict(relayed, answered_texts)}); the relay limit counted {counted:,} texts for "
        f"{expected:,} relayed rows, set-up included "
        f"({'each once' if counted == expected else 'MISMATCH'})",
        f"- status: {len(late):,} final callbacks (delivered, completed) replayed after their "
        f"original was answered -> {written} rows written again "
        f"({'none' if written == 0 else 'SECOND EFFECT'}); of {len(done):,} calls and texts "
        f"whose final callback was answered, {short_texts} texts and {len(short_calls)} calls "
        f"short of it ({len(short_calls & overtaken)} of those calls: the callback was sent "
        "before the call's own voice webhook had answered)",
    ]


def ok(shot: Shot) -> bool:
    return shot.answered is not None and shot.status is not None and shot.status < 300


async def run_open(args: argparse.Namespace) -> str:
    started = datetime.now(UTC)
    estimate = peak()
    total = sum(estimate.values())
    rate = args.rate or PEAK_FACTOR * total
    rates = {route: rate * r / total for route, r in estimate.items()}
    until = args.warmup + args.duration
    n_messages = math.ceil(rates["status (message)"] / MESSAGE_CALLBACKS * until * 1.15) + 50
    pairs = max(args.pairs, pairs_for(rates, until, n_messages))
    with private_servers("telephony") as (_, _, db, redis):
        async with TwilioApiPeer(ACCOUNT, TOKEN) as peer:
            env = {"TWILIO_ACCOUNT_SID": ACCOUNT, "TWILIO_FROM_NUMBER": "+12025550000",
                   "TWILIO_API_BASE": peer.base_url, "SMS_DAILY_BUDGET": "100000000"}  # fmt: skip
            extra = ("--processes", str(args.processes))
            with service(db, redis, *extra, **env) as base:
                async with httpx.AsyncClient(base_url=base, timeout=30) as http:
                    log(f"setting up {pairs} sessions")
                    sessions = await setup(http, db, pairs)
                    log(f"relaying {n_messages} texts for their status callbacks")
                    messages = await known_messages(http, peer, sessions, n_messages)
                shots = schedule(rates, until, sessions, messages, args.seed)
                log(f"open loop: {len(shots):,} webhooks over {until:.0f} s ({rate:.0f}/s)")
                lag = await fire(base, shots)
                RESULTS.mkdir(exist_ok=True)
                raw = [(s.at, s.route, s.retry, s.status, s.answered) for s in shots]
                (RESULTS / f"telephony-open-{started:%Y%m%d-%H%M%S}.json").write_text(
                    json.dumps({"lag": lag, "shots": raw})
                )
                checks = await effects(db, redis, shots, n_messages)
    window = [s for s in shots if args.warmup <= s.at < until]
    lines = [
        f"# Telephony webhooks, open loop: {started:%Y-%m-%d %H:%M} UTC",
        "",
        f"`python -m bench.telephony --open-loop --rate {rate:.0f} --duration {args.duration:.0f} "
        f"--warmup {args.warmup:.0f} --seed {args.seed} --processes {args.processes}`; "
        f"{args.processes} server process(es), {os.cpu_count()} cores, server and "
        f"client on one machine. Estimated peak {total:.1f} webhooks/s ({JOBS_PER_S:g} job/s); "
        f"this run {rate / total:.1f}x it, Poisson arrivals, {RETRY_SHARE:.0%} retried; "
        f"{pairs} open sessions, {len(messages):,} relayed texts known for status callbacks; "
        f"figures over the {args.duration:.0f} s after a {args.warmup:.0f} s warm-up, latency "
        "from the scheduled send to the full answer (queueing included).",
        "",
        "| route | planned /s | answered /s | p50 ms | p99 ms | max ms | errors |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    groups = [(r, [s for s in window if s.route == r]) for r in OPEN_ROUTES]
    groups += [("of which retries", [s for s in window if s.retry]), ("all", window)]
    worst = 0.0
    for name, group in groups:
        good = [s.answered for s in group if ok(s)]
        errors = len(group) - len(good)
        p99 = pct(good, 99) if good else math.nan
        if name == "all":
            worst = p99
        lines.append(
            f"| {name} | {len(group) / args.duration:.1f} | {len(good) / args.duration:.1f} | "
            f"{statistics.median(good) * 1e3 if good else math.nan:.1f} | {p99 * 1e3:.1f} | "
            f"{max(good, default=math.nan) * 1e3:.1f} | {errors} |"
        )
    errors = sum(1 for s in window if s.answered is None or not s.status or s.status >= 300)
    met = (
        all(pct([s.answered for s in g if s.answered is not None], 99) < 2 for _, g in groups if g)
        and errors == 0
    )
    kinds = Counter("no answer (timeout or reset)" if s.status is None else f"HTTP {s.status}"
                    for s in window if not ok(s))  # fmt: skip
    lines += [
        "",
        f"Errors: {', '.join(f'{n} {k}' for k, n in kinds.items()) or 'none'}.",
        f"Client lag behind the schedule: at most {lag * 1e3:.0f} ms. Every p99 under 2 s with "
        f"no errors: {'**met**' if met else '**MISSED**'} (p99 of all: {worst * 1e3:.0f} ms).",
        "",
        "Replays, from the database and Redis after the run:",
        "",
        *checks,
    ]
    return "\n".join(lines) + "\n"


def _fresh(params: dict[str, str], concurrency: int) -> dict[str, str]:
    """Distinct provider ids per phase, so no request is a replay of an earlier phase's."""
    out = {}
    for key in ("CallSid", "MessageSid"):
        if key in params:
            out[key] = params[key][:2] + f"{concurrency:02d}" + params[key][4:]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--pairs", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument(
        "--open-loop", action="store_true",
        help="webhooks at a fixed rate in the estimate's mix, retries included (not the table of "
        "closed-loop runs)",
    )  # fmt: skip
    parser.add_argument(
        "--rate", type=float, help=f"webhooks/s (default {PEAK_FACTOR}x the estimated peak, "
        f"{PEAK_FACTOR * sum(peak().values()):.0f}/s)",
    )  # fmt: skip
    parser.add_argument("--duration", type=float, default=60.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds sent, not measured")
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--processes", type=int, default=1, help="server processes (open loop)")
    args = parser.parse_args()
    text = asyncio.run(run_open(args) if args.open_loop else run(args))
    print(text)
    RESULTS.mkdir(exist_ok=True)
    kind = "telephony-open" if args.open_loop else "telephony"
    (RESULTS / f"{kind}-{datetime.now(UTC):%Y%m%d-%H%M%S}.md").write_text(text)


if __name__ == "__main__":
    main()
