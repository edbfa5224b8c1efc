"""Booking through the API: availability, calendars and proposals (candidates).

The proposals are compared with the rules' brute force (tests/dispatch/test_booking_rules.py)
over random calendars: the same workers, the same start times, the same reasons."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy.dialects.postgresql import Range

from dispatch.booking import rules
from dispatch.booking.rules import Booked, Span
from dispatch.models import Booking, Job
from geo.areas import destination
from geo.distance import haversine_m
from geo.shapes import point_to_wkb
from tests.dispatch.helpers import CENTER, community, ready_worker
from tests.dispatch.test_booking_rules import brute_starts

SHANGHAI = ZoneInfo("Asia/Shanghai")
WEEK = [(d, "09:00", "18:00") for d in rules.DAYS]


def local(y: int, m: int, d: int, hh: int, mm: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=SHANGHAI)


async def available(client, headers, **body) -> dict:
    body.setdefault("weekly", [{"day": d, "start": s, "end": e} for d, s, e in WEEK])
    r = await client.put("/v1/workers/me/availability", json=body, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


async def test_availability_round_trip_and_defaults(client, principals, admin) -> None:
    cid = await community(client, admin, timezone="Asia/Shanghai")
    _, w = await ready_worker(client, principals, cid, CENTER)
    r = await client.get("/v1/workers/me/availability", headers=w)
    assert r.status_code == 404 and r.json()["code"] == "availability_not_set"
    got = await available(
        client,
        w,
        overrides=[
            {"date": "2026-12-24", "slots": []},
            {"date": "2026-12-26", "slots": [{"start": "10:00", "end": "12:00"}]},
        ],
        slots=[{"start": "2026-12-27T01:00:00Z", "end": "2026-12-27T03:00:00Z"}],
        max_jobs_per_day=3,
        travel_radius_m=5000,
    )
    assert got["timezone"] == "Asia/Shanghai"  # the community's
    assert got["buffer_min"] == 15 and got["min_notice_min"] == 120
    assert got["home"] == pytest.approx({"lat": CENTER[0], "lng": CENTER[1]})  # last position
    assert got["overrides"][0] == {"date": "2026-12-24", "slots": []}
    again = (await client.get("/v1/workers/me/availability", headers=w)).json()
    assert again == got


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"timezone": "Mars/Olympus"}, "invalid_timezone"),
        ({"weekly": [{"day": "funday", "start": "09:00", "end": "10:00"}]}, "invalid_day"),
        ({"weekly": [{"day": "mon", "start": "10:00", "end": "09:00"}]}, "invalid_range"),
        (
            {
                "weekly": [
                    {"day": "mon", "start": "09:00", "end": "12:00"},
                    {"day": "mon", "start": "11:30", "end": "13:00"},
                ]
            },
            "overlapping_ranges",
        ),
        ({"weekly": [{"day": "mon", "start": "9am", "end": "10:00"}]}, "invalid_time"),
        ({"overrides": [{"date": "2026-13-01", "slots": []}]}, "invalid_date"),
        (
            {"slots": [{"start": "2026-12-27T03:00:00Z", "end": "2026-12-27T01:00:00Z"}]},
            "invalid_range",
        ),
    ],
)
async def test_schedules_that_cannot_be_meant_are_422(client, principals, admin, body, code):
    cid = await community(client, admin)
    _, w = await ready_worker(client, principals, cid, CENTER)
    r = await client.put("/v1/workers/me/availability", json=body, headers=w)
    assert r.status_code == 422 and r.json()["code"] == code, r.text


async def test_availability_needs_a_profile(client, principals) -> None:
    _, w = await principals.user("worker")
    r = await client.put("/v1/workers/me/availability", json={"weekly": []}, headers=w)
    assert r.status_code == 409 and r.json()["code"] == "no_profile"


async def test_calendar_shows_bookings_and_free_time(client, principals, admin) -> None:
    cid = await community(client, admin, timezone="Asia/Shanghai")
    wid, w = await ready_worker(client, principals, cid, CENTER)
    await available(client, w, buffer_min=30)
    resident_id, _ = await principals.user("resident")
    start = local(2026, 12, 10, 10)
    await insert_booking(principals, cid, resident_id, wid, start, timedelta(hours=2), CENTER)
    r = await client.get(
        "/v1/workers/me/calendar",
        params={
            "from": local(2026, 12, 10, 0).isoformat(),
            "to": local(2026, 12, 11, 0).isoformat(),
        },
        headers=w,
    )
    assert r.status_code == 200, r.text
    cal = r.json()
    assert [b["start"] for b in cal["bookings"]] == [
        start.astimezone(UTC).isoformat().replace("+00:00", "Z")
    ]
    free = [
        (
            parse(f["start"]).astimezone(SHANGHAI).strftime("%H:%M"),
            parse(f["end"]).astimezone(SHANGHAI).strftime("%H:%M"),
        )
        for f in cal["free"]
    ]
    assert free == [("09:00", "09:30"), ("12:30", "18:00")]
    r = await client.get(
        "/v1/workers/me/calendar",
        params={
            "from": local(2026, 12, 11, 0).isoformat(),
            "to": local(2026, 12, 10, 0).isoformat(),
        },
        headers=w,
    )
    assert r.status_code == 422 and r.json()["code"] == "invalid_window"


def parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def insert_booking(principals, cid, resident_id, worker_id, start, duration, at, buffer=15):
    """A confirmed booking written straight to the tables (the confirmation flow has its own
    tests): a job assigned to the worker and its calendar block."""
    async with principals.sessions.begin() as session:
        job = Job(
            community_id=cid,
            resident_id=resident_id,
            worker_id=worker_id,
            title="Fix a tap",
            description="",
            category="plumbing",
            skills=["plumbing"],
            location=point_to_wkb(*at),
            cell=0,
            mode="booking",
            price_cents=10_000,
            currency="CNY",
            status="assigned",
            window_start=start,
            window_end=start + duration,
            scheduled_start=start,
            scheduled_end=start + duration,
            duration_min=int(duration.total_seconds() // 60),
        )
        session.add(job)
        await session.flush()
        session.add(
            Booking(
                job_id=job.id,
                worker_id=worker_id,
                starts_at=start,
                ends_at=start + duration,
                block=Range(start, start + duration + timedelta(minutes=buffer), bounds="[)"),
                lat=at[0],
                lng=at[1],
                active=True,
                created_at=datetime.now(UTC),
            )
        )


async def test_candidates_rank_and_explain(client, principals, admin, resident) -> None:
    cid = await community(client, admin, timezone="Asia/Shanghai")
    near = destination(*CENTER, 0.0, 300)
    a, ha = await ready_worker(client, principals, cid, near)
    await available(client, ha, min_notice_min=0)
    b, hb = await ready_worker(client, principals, cid, destination(*CENTER, 90.0, 1200))
    await available(client, hb, min_notice_min=0)
    _, hu = await ready_worker(client, principals, cid, CENTER, verified=False)
    await available(client, hu, min_notice_min=0)
    _, hs = await ready_worker(client, principals, cid, CENTER, skills=("cleaning",))
    await available(client, hs, min_notice_min=0)
    f, hf = await ready_worker(client, principals, cid, destination(*CENTER, 180.0, 2500))
    await available(client, hf, min_notice_min=0, travel_radius_m=1000)
    n, hn = await ready_worker(client, principals, cid, CENTER)
    await available(client, hn, weekly=[{"day": "sun", "start": "09:00", "end": "10:00"}])
    day = datetime.now(SHANGHAI).date() + timedelta(days=3)
    start = datetime.combine(day, datetime.min.time(), tzinfo=SHANGHAI).replace(hour=10)
    if start.weekday() == 6:  # the no-hours worker works Sundays: pick another day
        start += timedelta(days=1)
    r = await client.get(
        "/v1/bookings/candidates",
        params={
            "lat": CENTER[0],
            "lng": CENTER[1],
            "skill": "plumbing",
            "start": start.isoformat(),
            "end": (start + timedelta(hours=3)).isoformat(),
            "duration_min": 120,
        },
        headers=resident,
    )
    assert r.status_code == 200, r.text
    got = r.json()
    assert [c["worker_id"] for c in got["candidates"]] == [a, b], (got, f, n)
    assert got["candidates"][0]["distance_m"] == 300 and got["candidates"][1]["distance_m"] == 1200
    assert len(got["candidates"][0]["starts"]) == 5  # 10:00, 10:15 ... 11:00
    assert got["excluded"] == {
        "unverified": 1,
        "unskilled": 1,
        "too_far": 1,
        "no_hours": 1,
        "notice": 0,
        "busy": 0,
    }
    assert got["complete"] is True and got["examined"] == 6
    # Workers do not read proposals; a window shorter than the job is refused.
    r = await client.get(
        "/v1/bookings/candidates",
        params={
            "lat": CENTER[0],
            "lng": CENTER[1],
            "start": start.isoformat(),
            "end": (start + timedelta(hours=1)).isoformat(),
            "duration_min": 120,
        },
        headers=ha,
    )
    assert r.status_code == 403
    r = await client.get(
        "/v1/bookings/candidates",
        params={
            "lat": CENTER[0],
            "lng": CENTER[1],
            "start": start.isoformat(),
            "end": (start + timedelta(hours=1)).isoformat(),
            "duration_min": 120,
        },
        headers=resident,
    )
    assert r.status_code == 422 and r.json()["code"] == "window_too_short"


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5, 6])
async def test_candidates_equal_the_brute_force(client, principals, admin, resident, seed) -> None:
    rng = random.Random(seed)
    cid = await community(client, admin, timezone="Asia/Shanghai")
    resident_id, _ = await principals.user("resident")
    day = datetime.now(SHANGHAI).date() + timedelta(days=2)
    base = datetime.combine(day, datetime.min.time(), tzinfo=SHANGHAI)
    window = Span(base.replace(hour=8).astimezone(UTC), base.replace(hour=20).astimezone(UTC))
    expect: dict[int, tuple[list[datetime], str | None]] = {}
    now = datetime.now(UTC)
    for _ in range(8):
        home = destination(*CENTER, rng.uniform(0, 360), rng.uniform(0, 2500))
        wid, h = await ready_worker(client, principals, cid, home)
        weekly = []
        for d in rules.DAYS:
            s = rng.randrange(6, 14)
            weekly.append(
                {"day": d, "start": f"{s:02d}:00", "end": f"{s + rng.randrange(2, 9):02d}:30"}
            )
        buffer, notice = rng.choice([0, 15, 30]), rng.choice([0, 60, 4320])
        radius = rng.choice([None, 1500, 5000])
        per_day = rng.choice([None, None, 1, 2])
        av = await available(
            client,
            h,
            weekly=weekly,
            buffer_min=buffer,
            min_notice_min=notice,
            travel_radius_m=radius,
            max_jobs_per_day=per_day,
            home={"lat": home[0], "lng": home[1]},
        )
        booked = []
        for _ in range(rng.randrange(0, 6)):
            # Inside the window and up to four hours either side of it, near the job or up to
            # 40 km away (two hours' travel): the proposal's statement leaves out the bookings
            # that cannot reach the window, and must not leave out one that can.
            bstart = window.start + timedelta(minutes=15 * rng.randrange(-16, 60))
            far = rng.random() < 0.3
            place = destination(
                *CENTER,
                rng.uniform(0, 360),
                rng.uniform(8000, 40000) if far else rng.uniform(0, 3000),
            )
            dur = timedelta(minutes=15 * rng.randrange(2, 9))
            if any(
                bstart < x.span.end + timedelta(minutes=buffer)
                and x.span.start < bstart + dur + timedelta(minutes=buffer)
                for x in booked
            ):
                continue
            await insert_booking(principals, cid, resident_id, wid, bstart, dur, place, buffer)
            booked.append(Booked(Span(bstart, bstart + dur), *place))
        schedule = rules.availability(
            timezone=av["timezone"],
            weekly=[(w["day"], w["start"], w["end"]) for w in weekly],
            buffer_min=buffer,
            min_notice_min=notice,
            home=home,
            travel_radius_m=radius,
            max_jobs_per_day=per_day,
        )
        if radius is not None and haversine_m(*home, *CENTER) > radius:
            expect[wid] = ([], "too_far")
        else:
            expect[wid] = brute_starts(
                schedule, booked, window, timedelta(minutes=90), now, CENTER, 20.0
            )
    r = await client.get(
        "/v1/bookings/candidates",
        params={
            "lat": CENTER[0],
            "lng": CENTER[1],
            "skill": "plumbing",
            "start": window.start.isoformat(),
            "end": window.end.isoformat(),
            "duration_min": 90,
            "limit": 50,
        },
        headers=resident,
    )
    assert r.status_code == 200, r.text
    got = r.json()
    offered = {c["worker_id"]: [parse(s) for s in c["starts"]] for c in got["candidates"]}
    assert offered == {
        w: starts[: rules.MAX_STARTS] for w, (starts, reason) in expect.items() if reason is None
    }
    reasons: dict[str, int] = dict.fromkeys(rules.EXCLUSION_REASONS, 0)
    for _, reason in expect.values():
        if reason is not None:
            reasons[reason] += 1
    assert got["excluded"] == reasons
