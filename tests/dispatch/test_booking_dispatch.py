"""Booking dispatch through the API: a booking job goes to the chosen worker or the best
candidate, one at a time; accepting confirms the slot and blocks the calendar (the database's
exclusion constraint decides races); a slot taken meanwhile is 409 `worker_unavailable` and the
job moves on; nobody left: unfilled with an operators' alert; cancellation fees by timing."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import text

from dispatch.booking import rules
from geo.areas import destination
from tests.dispatch.helpers import CENTER, community, escrow_held, ready_worker
from tests.dispatch.test_booking import available
from tests.dispatch.test_grab import offers_of, wait_for

SHANGHAI = ZoneInfo("Asia/Shanghai")


def slot(days: int = 3, hour: int = 10) -> datetime:
    day = datetime.now(SHANGHAI).date() + timedelta(days=days)
    return datetime.combine(day, datetime.min.time(), tzinfo=SHANGHAI).replace(hour=hour)


async def book(client, resident, start: datetime, minutes: int = 120, key: str = "b1", **extra):
    body = {
        "title": "Fix a tap",
        "category": "plumbing",
        "skills": ["plumbing"],
        "location": {"lat": CENTER[0], "lng": CENTER[1]},
        "mode": "booking",
        "price_cents": 20_000,
        "duration_min": minutes,
        "window": {
            "start": start.isoformat(),
            "end": (start + timedelta(minutes=minutes)).isoformat(),
        },
        **extra,
    }
    r = await client.post("/v1/jobs", json=body, headers={**resident, "Idempotency-Key": key})
    assert r.status_code == 201, r.text
    return r.json()


async def bookable_worker(client, principals, cid, at=CENTER, **av):
    wid, h = await ready_worker(client, principals, cid, at)
    await available(client, h, min_notice_min=0, **av)
    return wid, h


async def test_the_chosen_worker_is_asked_and_accepting_confirms(
    client, principals, admin, resident
) -> None:
    cid = await community(client, admin, timezone="Asia/Shanghai")
    near, _ = await bookable_worker(client, principals, cid, destination(*CENTER, 0.0, 200))
    chosen, hc = await bookable_worker(client, principals, cid, destination(*CENTER, 0.0, 900))
    start = slot()
    job = await book(client, resident, start, worker_id=chosen)
    assert job["status"] == "open" and job["offers"]["pending"] == 1
    assert datetime.fromisoformat(job["scheduled_start"]) == start
    (offer,) = await offers_of(client, hc)
    assert offer["job"]["mode"] == "booking"
    assert datetime.fromisoformat(offer["job"]["scheduled_start"]) == start
    r = await client.post(f"/v1/offers/{offer['id']}/accept", headers=hc)
    assert r.status_code == 200, r.text
    done = r.json()
    assert done["status"] == "assigned" and done["worker_id"] == chosen
    assert datetime.fromisoformat(done["scheduled_end"]) == start + timedelta(hours=2)
    cal = await client.get(
        "/v1/workers/me/calendar",
        params={
            "from": (start - timedelta(hours=2)).isoformat(),
            "to": (start + timedelta(hours=4)).isoformat(),
        },
        headers=hc,
    )
    assert [b["job_id"] for b in cal.json()["bookings"]] == [job["id"]]
    # The same slot again for the chosen worker: they are busy, so the nearest other is asked.
    again = await book(client, resident, start, key="b2", worker_id=chosen)
    read = await client.get(f"/v1/jobs/{again['id']}", headers=resident)
    assert read.json()["offers"]["pending"] == 1
    rows = await principals_offers(principals, again["id"])
    assert rows == [near]


async def principals_offers(principals, job_id: int) -> list[int]:
    async with principals.sessions() as session:
        found = await session.execute(
            text("SELECT worker_id FROM offers WHERE job_id = :j ORDER BY id"), {"j": job_id}
        )
        return [w for (w,) in found.all()]


async def test_a_race_for_one_workers_slot_has_one_winner(
    client, principals, admin, resident
) -> None:
    cid = await community(client, admin, timezone="Asia/Shanghai")
    wid, h = await bookable_worker(client, principals, cid)
    start = slot()
    jobs = [
        await book(client, resident, start + timedelta(minutes=15 * k), key=f"r{k}", worker_id=wid)
        for k in range(6)
    ]
    offers = await offers_of(client, h)
    assert len(offers) == 6  # every job asks the one worker (none confirmed yet)
    answers = await asyncio.gather(
        *(client.post(f"/v1/offers/{o['id']}/accept", headers=h) for o in offers)
    )
    codes = sorted(r.status_code for r in answers)
    assert codes == [200] + [409] * 5, [r.text for r in answers]
    assert all(r.json()["code"] == "worker_unavailable" for r in answers if r.status_code == 409)
    async with principals.sessions() as session:
        overlaps = await session.scalar(
            text(
                "SELECT count(*) FROM bookings a JOIN bookings b ON a.worker_id = b.worker_id "
                "AND a.id < b.id AND a.active AND b.active AND a.block && b.block"
            )
        )
        active = await session.scalar(text("SELECT count(*) FROM bookings WHERE active"))
    assert overlaps == 0 and active == 1

    # The losers' jobs move on (just after their 409): nobody else takes bookings here, so
    # they end unfilled.
    async def states() -> set[str]:
        return {
            (await client.get(f"/v1/jobs/{j['id']}", headers=resident)).json()["status"]
            for j in jobs
        }

    async def settled() -> bool:
        return await states() == {"assigned", "unfilled"}

    await wait_for(settled, within=10)


async def test_an_unanswered_booking_offer_goes_to_the_next_worker(
    client, principals, admin, resident
) -> None:
    cid = await community(
        client, admin, timezone="Asia/Shanghai", dispatch={"booking_confirm_ttl_s": 1}
    )
    first, _ = await bookable_worker(client, principals, cid, destination(*CENTER, 0.0, 100))
    second, h2 = await bookable_worker(client, principals, cid, destination(*CENTER, 0.0, 800))
    job = await book(client, resident, slot())
    assert await principals_offers(principals, job["id"]) == [first]

    async def moved() -> bool:
        return await principals_offers(principals, job["id"]) == [first, second]

    await wait_for(moved, within=20)
    (offer,) = await offers_of(client, h2)
    assert offer["job_id"] == job["id"]

    async def unfilled() -> bool:
        r = await client.get(f"/v1/jobs/{job['id']}", headers=resident)
        return r.json()["status"] == "unfilled"

    await wait_for(unfilled, within=20)
    ops = await principals.operator(cid)
    alerts = (await client.get(f"/v1/ops/communities/{cid}/alerts", headers=ops)).json()
    assert any(a["kind"] == "job_unfilled" and a["job_id"] == job["id"] for a in alerts)


def hours_from_now(hours: int) -> datetime:
    """On the quarter-hour grid bookings start on."""
    t = datetime.now(UTC) + timedelta(hours=hours)
    return t.replace(minute=t.minute - t.minute % 15, second=0, microsecond=0)


async def test_cancellation_fees_and_compensation_by_timing(
    client, principals, admin, resident
) -> None:
    cid = await community(client, admin, timezone="Asia/Shanghai")
    round_the_clock = [{"day": d, "start": "00:00", "end": "24:00"} for d in rules.DAYS]
    wid, h = await bookable_worker(client, principals, cid, weekly=round_the_clock)
    r = await client.put(
        "/v1/workers/me",
        json={
            "name": "Li",
            "skills": ["plumbing"],
            "community_ids": [cid],
            "hourly_rate_cents": 6000,
        },
        headers=h,
    )
    assert r.status_code == 200

    async def confirmed(start: datetime, key: str) -> dict:
        job = await book(client, resident, start, key=key, worker_id=wid)
        offer = next(o for o in await offers_of(client, h) if o["job_id"] == job["id"])
        r = await client.post(f"/v1/offers/{offer['id']}/accept", headers=h)
        assert r.status_code == 200, r.text
        return r.json()

    async def age(job_id: int, minutes: int) -> None:
        async with principals.sessions.begin() as session:
            await session.execute(
                text(
                    "UPDATE jobs SET booked_at = booked_at - make_interval(mins => :m) "
                    "WHERE id = :j"
                ),
                {"m": minutes, "j": job_id},
            )

    early = await confirmed(slot(days=5), "c1")
    await age(early["id"], 60)
    r = await client.post(
        f"/v1/jobs/{early['id']}/cancel", json={"reason": "plans changed"}, headers=resident
    )
    assert r.json()["cancellation"]["fee_cents"] == 0  # days ahead: free
    soon = await confirmed(hours_from_now(5), "c2")
    r = await client.post(
        f"/v1/jobs/{soon['id']}/cancel", json={"reason": "oops"}, headers=resident
    )
    assert r.json()["cancellation"]["fee_cents"] == 0  # within 5 minutes of booking: free
    late = await confirmed(hours_from_now(6), "c3")
    await age(late["id"], 30)
    r = await client.post(
        f"/v1/jobs/{late['id']}/cancel", json={"reason": "sorry"}, headers=resident
    )
    assert r.json()["cancellation"]["fee_cents"] == 6000  # one hour at the worker's rate
    # The worker hands a booking back 6 hours before: the resident is owed half the price.
    handed = await confirmed(hours_from_now(7), "c4")
    r = await client.post(
        f"/v1/jobs/{handed['id']}/cancel",
        json={"reason": "sick", "assignment_version": handed["assignment_version"]},
        headers=h,
    )
    assert r.status_code == 200, r.text
    assert r.json()["compensation_cents"] == 10_000
    cal = await client.get(
        "/v1/workers/me/calendar",
        params={
            "from": datetime.now(UTC).isoformat(),
            "to": (datetime.now(UTC) + timedelta(days=6)).isoformat(),
        },
        headers=h,
    )
    assert cal.json()["bookings"] == []  # every cancelled block freed the calendar


async def outbox_kinds(principals, job_id: int) -> list[tuple[str, int]]:
    async with principals.sessions() as session:
        rows = await session.execute(
            text(
                "SELECT kind, to_user_id FROM outbox WHERE payload->>'job_id' = :j "
                "AND kind IN ('reminder', 'alert') ORDER BY id"
            ),
            {"j": str(job_id)},
        )
        return [(k, u) for k, u in rows.all()]


async def test_reminders_once_each_then_a_no_show_goes_out_as_grab(
    app, client, principals, admin, resident
) -> None:
    """The clock is the test's: timers fire when `fire_due(now)` says it is their time."""
    cid = await community(
        client, admin, timezone="Asia/Shanghai",
        dispatch={"reminder_before_min": [20, 10], "no_show_grace_min": 15,
                  "location_max_age_s": 7200},
    )  # fmt: skip
    round_the_clock = [{"day": d, "start": "00:00", "end": "24:00"} for d in rules.DAYS]
    wid, h = await bookable_worker(client, principals, cid, weekly=round_the_clock)
    other, ho = await ready_worker(client, principals, cid, destination(*CENTER, 0.0, 300))
    start = hours_from_now(1)
    job = await book(client, resident, start, minutes=60, worker_id=wid)
    (offer,) = await offers_of(client, h)
    assert (await client.post(f"/v1/offers/{offer['id']}/accept", headers=h)).status_code == 200
    resident_id = job["resident_id"]
    durable = app.state.runtime.durable
    await escrow_held(app)
    assert await durable.fire_due(start - timedelta(minutes=21)) == 0
    assert await durable.fire_due(start - timedelta(minutes=19)) == 1
    assert await durable.fire_due(start - timedelta(minutes=19)) == 0  # once
    assert await outbox_kinds(principals, job["id"]) == [
        ("reminder", resident_id),
        ("reminder", wid),
    ]
    assert await durable.fire_due(start - timedelta(minutes=5)) == 1
    assert len(await outbox_kinds(principals, job["id"])) == 4
    # Not started 15 minutes after the start: out again as a grab job, from now.
    fired_at = start + timedelta(minutes=16)
    assert await durable.fire_due(fired_at) == 1
    read = (await client.get(f"/v1/jobs/{job['id']}", headers=resident)).json()
    assert read["mode"] == "grab" and read["status"] == "open" and read["worker_id"] is None
    assert datetime.fromisoformat(read["window"]["start"]) == fired_at
    assert [o["job_id"] for o in await offers_of(client, ho)] == [job["id"]]
    assert ("alert", resident_id) in await outbox_kinds(principals, job["id"])
    ops = await principals.operator(cid)
    alerts = (await client.get(f"/v1/ops/communities/{cid}/alerts", headers=ops)).json()
    assert any(a["kind"] == "booking_no_show" and a["job_id"] == job["id"] for a in alerts)
    async with principals.sessions() as session:
        marks = await session.scalar(
            text("SELECT no_shows FROM workers WHERE user_id = :w"), {"w": wid}
        )
        active = await session.scalar(
            text("SELECT count(*) FROM bookings WHERE active AND job_id = :j"), {"j": job["id"]}
        )
    assert marks == 1 and active == 0
    assert await durable.fire_due(fired_at + timedelta(hours=1)) == 0  # nothing left
    assert other


async def test_reschedule_swaps_the_block_or_keeps_the_old_one(
    app, client, principals, admin, resident
) -> None:
    cid = await community(client, admin, timezone="Asia/Shanghai")
    wid, h = await bookable_worker(client, principals, cid)
    start = slot(days=3, hour=10)

    async def confirmed(at: datetime, key: str) -> dict:
        job = await book(client, resident, at, key=key, worker_id=wid)
        offer = next(o for o in await offers_of(client, h) if o["job_id"] == job["id"])
        r = await client.post(f"/v1/offers/{offer['id']}/accept", headers=h)
        assert r.status_code == 200, r.text
        return r.json()

    job = await confirmed(start, "m1")
    other = await confirmed(start + timedelta(hours=4), "m2")  # 14:00-16:00
    new_window = {"start": (start + timedelta(days=1)).isoformat(),
                  "end": (start + timedelta(days=1, hours=3)).isoformat()}  # fmt: skip
    r = await client.post(
        f"/v1/jobs/{job['id']}/reschedule", json={"window": new_window}, headers=resident
    )
    assert r.status_code == 200, r.text
    assert r.json()["reschedule"]["status"] == "pending"
    assert datetime.fromisoformat(r.json()["reschedule"]["start"]) == start + timedelta(days=1)
    r = await client.post(f"/v1/jobs/{job['id']}/reschedule/decline", headers=h)
    assert r.json()["reschedule"]["status"] == "declined"
    assert datetime.fromisoformat(r.json()["scheduled_start"]) == start  # unchanged
    r = await client.post(f"/v1/jobs/{job['id']}/reschedule/accept", headers=h)
    assert r.status_code == 409 and r.json()["code"] == "no_reschedule"
    # Into the other booking's time: no free start there.
    busy = {"start": (start + timedelta(hours=4)).isoformat(),
            "end": (start + timedelta(hours=6)).isoformat()}  # fmt: skip
    r = await client.post(
        f"/v1/jobs/{job['id']}/reschedule", json={"window": busy}, headers=resident
    )
    assert r.status_code == 409 and r.json()["code"] == "worker_unavailable"
    # Proposed, then the slot is taken before the worker answers: the old booking stays.
    r = await client.post(
        f"/v1/jobs/{job['id']}/reschedule", json={"window": new_window}, headers=resident
    )
    assert r.status_code == 200
    taker = await confirmed(start + timedelta(days=1), "m3")
    r = await client.post(f"/v1/jobs/{job['id']}/reschedule/accept", headers=h)
    assert r.status_code == 409 and r.json()["code"] == "worker_unavailable"
    read = (await client.get(f"/v1/jobs/{job['id']}", headers=resident)).json()
    assert datetime.fromisoformat(read["scheduled_start"]) == start
    # Cancel the taker, accept again: the block moves.
    await client.post(f"/v1/jobs/{taker['id']}/cancel", json={"reason": "x"}, headers=resident)
    r = await client.post(f"/v1/jobs/{job['id']}/reschedule/accept", headers=h)
    assert r.status_code == 200, r.text
    moved = r.json()
    assert moved["reschedule"]["status"] == "accepted"
    assert datetime.fromisoformat(moved["scheduled_start"]) == start + timedelta(days=1)
    async with principals.sessions() as session:
        blocks = (
            await session.execute(
                text("SELECT job_id, starts_at FROM bookings WHERE active ORDER BY starts_at")
            )
        ).all()
        timers = (
            await session.execute(
                text("SELECT payload->>'start' FROM timers WHERE ref_id = :j AND kind = "
                     "'booking_no_show' AND cancelled_at IS NULL"), {"j": job["id"]},
            )
        ).all()  # fmt: skip
    assert [(j, s) for j, s in blocks] == [
        (other["id"], start + timedelta(hours=4)),
        (job["id"], start + timedelta(days=1)),
    ]
    assert [t for (t,) in timers] == [(start + timedelta(days=1)).astimezone(UTC).isoformat()]
    # Only the booked worker answers, only the resident proposes.
    r = await client.post(
        f"/v1/jobs/{job['id']}/reschedule", json={"window": new_window}, headers=h
    )
    assert r.status_code == 403
