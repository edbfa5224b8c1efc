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
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
from twilio.request_validator import RequestValidator

from bench.lib.machine import log
from bench.lib.servers import private_servers
from bench.lib.stats import pct
from dispatch.identity.auth import issue_token
from dispatch.identity.phones import PhoneVault
from dispatch.identity.principals import handle_user, upsert_phone_user
from dispatch.infra.db import make_engine, make_sessionmaker
from tests.processes import ServiceProcess

SECRET = "bench-telephony-secret-key-0123456789abcdef"
TOKEN = "bench-twilio-auth-token"
PUBLIC = "https://bench.example.org"
CENTER = (31.2304, 121.4737)
RESULTS = Path(__file__).parent / "results"


@contextlib.contextmanager
def service(db: str, redis: str) -> Iterator[str]:
    proc = ServiceProcess((db, redis), SECRET, TWILIO_AUTH_TOKEN=TOKEN, PUBLIC_BASE_URL=PUBLIC)
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
    args = parser.parse_args()
    text = asyncio.run(run(args))
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"telephony-{datetime.now(UTC):%Y%m%d-%H%M%S}.md").write_text(text)


if __name__ == "__main__":
    main()
