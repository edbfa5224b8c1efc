"""Booking across real app processes: 1,000 confirmations of overlapping bookings over two
processes, 100 in flight at once (the database's exclusion constraint decides), and reminders
that survive SIGKILL and fire exactly once per party after restarts (the clock moved by
`DISPATCH_CLOCK_OFFSET_S`)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import text

from dispatch.booking import rules
from tests.conftest import TEST_SECRET
from tests.dispatch.helpers import CENTER
from tests.dispatch.test_grab import wait_for
from tests.dispatch.test_grab_processes import servers
from tests.processes import ONE_AT_A_TIME, ServiceProcess

pytestmark = [pytest.mark.slow, ONE_AT_A_TIME]
ROUND_THE_CLOCK = [{"day": d, "start": "00:00", "end": "24:00"} for d in rules.DAYS]


def quarter(t: datetime) -> datetime:
    return t.replace(minute=t.minute - t.minute % 15, second=0, microsecond=0) + timedelta(
        minutes=15
    )


async def booking_world(http: httpx.AsyncClient, principals, base: str, workers: int, **dispatch):
    admin = await principals.admin()
    body = {"name": "Bookings", "center": {"lat": CENTER[0], "lng": CENTER[1]}, "radius_m": 5000,
            "timezone": "Asia/Shanghai", "dispatch": dispatch}  # fmt: skip
    r = await http.post(f"{base}/v1/communities", json=body, headers=admin)
    assert r.status_code == 201, r.text
    cid = r.json()["id"]
    ops = await principals.operator(cid)
    team = []
    for i in range(workers):
        wid, h = await principals.user("worker")
        prof = {"name": f"W{i}", "skills": ["plumbing"], "community_ids": [cid]}
        assert (await http.put(f"{base}/v1/workers/me", json=prof, headers=h)).status_code == 200
        r = await http.post(f"{base}/v1/ops/workers/{wid}/verify", headers=ops)
        assert r.status_code == 200
        av = {"weekly": ROUND_THE_CLOCK, "min_notice_min": 0, "buffer_min": 15}
        r = await http.put(f"{base}/v1/workers/me/availability", json=av, headers=h)
        assert r.status_code == 200, r.text
        team.append((wid, h))
    resident = (await principals.user("resident"))[1]
    return cid, resident, team


def booking_body(start: datetime, minutes: int, worker_id: int) -> dict:
    return {
        "title": "Fix a tap", "category": "plumbing", "skills": ["plumbing"],
        "location": {"lat": CENTER[0], "lng": CENTER[1]}, "mode": "booking",
        "price_cents": 10_000, "duration_min": minutes, "worker_id": worker_id,
        "window": {"start": start.isoformat(),
                   "end": (start + timedelta(minutes=minutes)).isoformat()},
    }  # fmt: skip


async def test_a_thousand_overlapping_confirmations_over_two_processes(
    server_urls, principals, engine, clean_state
) -> None:
    workers, per_worker = 10, 100
    with servers(server_urls, 2) as (a, b):
        # 100 in flight: five times the two processes' database connections, so the race is real,
        # while a loaded 2-core machine still answers each within its pool's wait (at 400, most
        # waited past it for a 503 and retried).
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
        async with httpx.AsyncClient(timeout=120, limits=limits) as http:
            _, resident, team = await booking_world(http, principals, a.base, workers)
            base = quarter(datetime.now(UTC) + timedelta(days=2))
            # Each worker is asked for 100 one-hour slots 15 minutes apart: each overlaps the
            # next three, so most confirmations must lose.
            bodies = [
                (n, booking_body(base + timedelta(minutes=15 * (n // workers)), 60,
                                 team[n % workers][0]))
                for n in range(workers * per_worker)
            ]  # fmt: skip

            async def post(n: int, body: dict) -> None:
                r = await http.post(
                    f"{(a, b)[n % 2].base}/v1/jobs", json=body,
                    headers={**resident, "Idempotency-Key": f"b{n}"},
                )  # fmt: skip
                assert r.status_code == 201, r.text
                assert r.json()["offers"]["pending"] == 1

            for i in range(0, len(bodies), 50):
                await asyncio.gather(*(post(n, body) for n, body in bodies[i : i + 50]))
            accepts = []
            for wid, h in team:
                offers = (await http.get(f"{a.base}/v1/workers/me/offers", headers=h)).json()
                assert len(offers) == per_worker
                accepts += [(o["id"], wid, h) for o in offers]
            retried = 0

            async def accept(k: int, oid: int, h: dict) -> httpx.Response:
                # A worker's app: a 503 (the pool full for longer than its wait, on a loaded
                # machine) is tried again after its Retry-After; it had changed nothing.
                nonlocal retried
                for _ in range(20):
                    r = await http.post(f"{(a, b)[k % 2].base}/v1/offers/{oid}/accept", headers=h)
                    if r.status_code != 503:
                        return r
                    retried += 1
                    await asyncio.sleep(float(r.headers["Retry-After"]))
                return r

            started = time.monotonic()
            results = await asyncio.gather(
                *(accept(k, oid, h) for k, (oid, _, h) in enumerate(accepts))
            )
            took = time.monotonic() - started
    codes = [r.status_code for r in results]
    won = codes.count(200)
    assert set(codes) <= {200, 409}, {r.status_code: r.text for r in results}
    assert {r.json()["code"] for r in results if r.status_code == 409} == {"worker_unavailable"}
    async with engine.connect() as conn:
        overlaps = await conn.scalar(
            text(
                "SELECT count(*) FROM bookings x JOIN bookings y ON x.worker_id = y.worker_id "
                "AND x.id < y.id AND x.active AND y.active AND x.block && y.block"
            )
        )
        active = await conn.scalar(text("SELECT count(*) FROM bookings WHERE active"))
        assigned = await conn.scalar(
            text("SELECT count(*) FROM jobs WHERE status = 'assigned' AND mode = 'booking'")
        )
    assert overlaps == 0
    assert active == won == assigned
    # One-hour slots 15 minutes apart with a 15-minute buffer: a held slot keeps the four on
    # each side out, so each worker holds between one in nine (the worst order) and one in five.
    assert workers * (per_worker // 9) <= won <= workers * (per_worker // 5 + 1)
    print(
        f"1000 confirmations over 2 processes: {won} won, {len(codes) - won} 409 in {took:.1f} s "
        f"({retried} tried again after a 503)"
    )


async def reminder_rows(engine, job_id: int) -> list[tuple[int, str]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT to_user_id, kind FROM outbox WHERE kind = 'reminder' "
                "AND payload->>'job_id' = :j ORDER BY to_user_id"
            ),
            {"j": str(job_id)},
        )
        return [(u, k) for u, k in rows.all()]


async def test_reminders_fire_once_per_party_across_sigkills(
    server_urls, principals, engine, clean_state
) -> None:
    first = ServiceProcess(server_urls, TEST_SECRET)
    await asyncio.to_thread(first.wait_ready)
    async with httpx.AsyncClient(timeout=30) as http:
        _, resident, team = await booking_world(
            http, principals, first.base, 1, reminder_before_min=[30]
        )
        wid, h = team[0]
        start = quarter(datetime.now(UTC) + timedelta(hours=1))
        r = await http.post(
            f"{first.base}/v1/jobs", json=booking_body(start, 60, wid),
            headers={**resident, "Idempotency-Key": "r1"},
        )  # fmt: skip
        job = r.json()
        (offer,) = (await http.get(f"{first.base}/v1/workers/me/offers", headers=h)).json()
        r = await http.post(f"{first.base}/v1/offers/{offer['id']}/accept", headers=h)
        assert r.status_code == 200, r.text
    first.kill()  # SIGKILL between the booking and its reminder
    assert await reminder_rows(engine, job["id"]) == []
    # Restart with the clock moved past the reminder's time (but before the no-show check).
    due = start - timedelta(minutes=30)
    offset = str((due - datetime.now(UTC)).total_seconds() + 5)
    for _ in range(2):  # fire, die, come back: still once
        proc = ServiceProcess(server_urls, TEST_SECRET, DISPATCH_CLOCK_OFFSET_S=offset)
        await asyncio.to_thread(proc.wait_ready)

        async def both_told() -> bool:
            return len(await reminder_rows(engine, job["id"])) >= 2

        await wait_for(both_told, within=30, every=0.2)
        await asyncio.sleep(1.0)  # a second sweep, if one were to repeat it
        proc.kill()
        assert await reminder_rows(engine, job["id"]) == sorted(
            [(job["resident_id"], "reminder"), (wid, "reminder")]
        )
    async with engine.connect() as conn:
        fired = (
            await conn.execute(
                text(
                    "SELECT kind, fired_at IS NOT NULL FROM timers WHERE ref_id = :j ORDER BY kind"
                ),
                {"j": job["id"]},
            )
        ).all()
    assert [(k, f) for k, f in fired] == [
        ("booking_no_show", False),
        ("booking_reminder", True),
        ("escrow_hold", True),  # the assignment's escrow, placed at once
    ]
