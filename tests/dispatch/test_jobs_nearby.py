"""The jobs board: open jobs near a worker that they may take, coarse locations only; taking one
through the same claim as accepting an offer (one winner, wave offerees included)."""

from __future__ import annotations

import asyncio
import math
import random
from datetime import UTC, datetime, timedelta

import h3.api.basic_int as h3
import pytest
from sqlalchemy import text

from dispatch.grab.board import board_order, shown_distance_m, why_not
from geo.areas import destination
from geo.distance import haversine_m
from geo.live.cells import FINE_RES, cell_code
from tests.dispatch.helpers import CENTER, community, escrow_held, ready_worker
from tests.dispatch.test_grab import crew, offers_of, post_job

EAST = 90.0


def at(distance_m: float, bearing: float = 0.0) -> tuple[float, float]:
    return destination(*CENTER, bearing, distance_m)


def where(distance_m: float, bearing: float = 0.0) -> dict[str, float]:
    lat, lng = at(distance_m, bearing)
    return {"lat": lat, "lng": lng}


async def board(client, headers, **params) -> list[dict]:
    r = await client.get("/v1/workers/me/jobs-nearby", params=params, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


async def board_ids(client, headers, **params) -> list[int]:
    return [j["id"] for j in await board(client, headers, **params)]


async def take(client, headers, job_id: int, key: str | None = None):
    extra = {"Idempotency-Key": key} if key else {}
    return await client.post(f"/v1/jobs/{job_id}/take", headers={**headers, **extra})


async def offer_rows(engine, job_id: int) -> dict[int, str]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT worker_id, status FROM offers WHERE job_id = :j"), {"j": job_id}
        )
        return {w: s for w, s in rows.all()}


# --- rules ----------------------------------------------------------------------------------


def test_distances_are_shown_to_100_m_and_never_below() -> None:
    assert [shown_distance_m(d) for d in (0, 49, 149, 151, 1049.9, 19_999)] == [
        100, 100, 100, 200, 1000, 20_000,
    ]  # fmt: skip


def test_order_is_distance_then_fit_then_pay_then_age() -> None:
    old, new = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)
    rows = {
        "far": board_order(300, 2, 9000, old, 1),
        "specialist": board_order(200, 2, 5000, new, 2),
        "anyone": board_order(200, 0, 9000, old, 3),
        "richer": board_order(200, 2, 6000, new, 4),
        "older": board_order(200, 2, 5000, old, 5),
    }
    assert sorted(rows, key=rows.__getitem__) == ["richer", "older", "specialist", "anyone", "far"]


def test_why_not_names_the_first_reason() -> None:
    ok = {"own": False, "verified": True, "serves": True, "missing": [], "online": True,
          "located": True, "distance_m": 500.0}  # fmt: skip
    assert why_not(**ok) is None
    assert "verified" in (why_not(**{**ok, "verified": False}) or "")
    assert "community" in (why_not(**{**ok, "serves": False}) or "")
    assert "moving" in (why_not(**{**ok, "missing": ["moving"]}) or "")
    assert "online" in (why_not(**{**ok, "online": False}) or "")
    assert "position" in (why_not(**{**ok, "located": False, "distance_m": None}) or "")
    assert "km" in (why_not(**{**ok, "distance_m": 25_000.0}) or "")
    assert "own" in (why_not(**{**ok, "own": True}) or "")


# --- listing --------------------------------------------------------------------------------


async def test_board_lists_what_the_worker_may_take_nearest_and_best_fitting_first(
    client, principals, admin, resident
) -> None:
    cid = await community(client, admin)
    other = await community(client, admin, name="Next door")
    _, me = await ready_worker(client, principals, cid, CENTER, skills=("moving", "plumbing"))
    near = await post_job(client, resident, "near", location=where(300))
    # Same 100 m as `near`, needing both of the worker's skills: the better fit comes first.
    both = await post_job(
        client, resident, "both", location=where(320, EAST), skills=["moving", "plumbing"]
    )
    anyone = await post_job(client, resident, "anyone", location=where(310, 180), skills=[])
    far = await post_job(client, resident, "far", location=where(2500))
    await post_job(client, resident, "unskilled", location=where(200), skills=["electrical"])
    await post_job(client, resident, "elsewhere", location=where(200), community_id=other)
    taken = await post_job(client, resident, "taken", location=where(150))
    _, taker = await ready_worker(client, principals, cid, at(150), skills=("moving",))
    assert (await take(client, taker, taken["id"])).status_code == 200
    cancelled = await post_job(client, resident, "cancelled", location=where(100))
    r = await client.post(
        f"/v1/jobs/{cancelled['id']}/cancel", json={"reason": "changed my mind"}, headers=resident
    )
    assert r.status_code == 200, r.text

    assert await board_ids(client, me) == [both["id"], near["id"], anyone["id"], far["id"]]
    assert await board_ids(client, me, radius_m=1000) == [both["id"], near["id"], anyone["id"]]
    assert await board_ids(client, me, skill="plumbing") == [both["id"]]
    assert await board_ids(client, me, skill="electrical") == []
    assert await board_ids(client, me, limit=1) == [both["id"]]


async def test_board_shows_the_neighbourhood_and_the_pay_never_the_place(
    client, principals, admin, resident
) -> None:
    cid = await community(client, admin)
    _, me = await ready_worker(client, principals, cid, CENTER, skills=("moving",))
    exact = where(437, 33)
    job = await post_job(client, resident, location=exact, address="Flat 5, 12 Yuyuan Road")
    (item,) = await board(client, me)
    assert item["id"] == job["id"] and item["title"] == "Move a sofa"
    assert item["mode"] == "grab" and item["skills"] == ["moving"]
    assert item["price_cents"] == 8000 and item["currency"] == job["currency"]
    assert item["distance_m"] == 400
    cell = h3.latlng_to_cell(exact["lat"], exact["lng"], 8)
    clat, clng = h3.cell_to_latlng(cell)
    assert item["approx_location"] == {"lat": clat, "lng": clng}
    assert item["cell"] == h3.int_to_str(cell)
    assert item["approx_location"] != exact
    body = str(item)
    for secret in ("Yuyuan", f"{exact['lat']}", f"{exact['lng']}"):
        assert secret not in body
    assert "address" not in item and "location" not in item and "description" not in item
    # The worker's net, itemized as the offer shows it (the community's 15 % commission).
    assert item["net_cents"] == item["pay"]["net_cents"] == 6800
    assert [d["kind"] for d in item["pay"]["deductions"]] == ["commission"]
    assert datetime.fromisoformat(item["created_at"]) <= datetime.now(UTC)


def places_around(
    rnd: random.Random, at: tuple[float, float], radius: float
) -> list[tuple[float, float]]:
    """Job places to test a board of `radius` at `at` with: over and past the disc, either side of
    its edge, and by the corners of H3 cells that the edge crosses (where a fine cell's coarse
    parent may lie outside the disc), 0.3 m into one of the cells meeting there."""
    out = [destination(*at, rnd.uniform(0, 360), 1.5 * radius * math.sqrt(rnd.random()))
           for _ in range(6)]  # fmt: skip
    out += [destination(*at, rnd.uniform(0, 360), radius + rnd.choice([-0.5, -0.05, 0.05, 0.5]))
            for _ in range(6)]  # fmt: skip
    # Cells from the radius's size down to the finest.
    sizes = [r for r in range(FINE_RES + 1) if h3.average_hexagon_edge_length(r, "m") < radius]
    while len(out) < 24:
        edge = destination(*at, rnd.uniform(0, 360), radius)
        cell = h3.latlng_to_cell(*edge, rnd.choice(sizes))
        place = destination(*rnd.choice(h3.cell_to_boundary(cell)), rnd.uniform(0, 360), 0.3)
        # Near the edge, and clear of where the two spheres' rounding could tell them apart.
        if 0.02 < abs(haversine_m(*at, *place) - radius) < 0.1 * radius:
            out.append(place)
    return out


async def test_board_lists_exactly_the_open_jobs_within_the_radius(
    client, principals, admin, resident, engine
) -> None:
    """Randomized, against brute force (haversine over every job posted): four boards of different
    radii at random places, the jobs of all of them on each."""
    rnd = random.Random(20261206)
    cid = await community(client, admin, radius_m=12_000)
    posted: dict[int, tuple[float, float]] = {}
    for radius in rnd.sample([150, 700, 2200, 5000], 4):
        at = destination(*CENTER, rnd.uniform(0, 360), rnd.uniform(0, 2000))
        _, me = await ready_worker(client, principals, cid, at, skills=("moving",))
        for place in places_around(rnd, at, radius):
            job = await post_job(
                client,
                resident,
                f"k{len(posted)}",
                location=dict(zip(("lat", "lng"), place, strict=True)),
            )
            posted[job["id"]] = place
        within = {j for j, place in posted.items() if haversine_m(*at, *place) <= radius}
        assert 0 < len(within) < len(posted) <= 100
        assert set(await board_ids(client, me, radius_m=radius, limit=100)) == within, radius
    # Every job's code is its fine H3 cell's, as the live index scores workers.
    async with engine.connect() as conn:
        codes = dict((await conn.execute(text("SELECT id, h3_code FROM jobs"))).all())
    assert codes == {j: cell_code(*place) for j, place in posted.items()}


async def test_board_is_empty_for_workers_who_cannot_take_jobs(
    client, principals, admin, resident
) -> None:
    cid = await community(client, admin)
    other = await community(client, admin, name="Next door")
    await post_job(client, resident, location=where(200))
    unverified = (await ready_worker(client, principals, cid, CENTER, skills=("moving",),
                                     verified=False))[1]  # fmt: skip
    offline = (await ready_worker(client, principals, cid, CENTER, skills=("moving",),
                                  online=False))[1]  # fmt: skip
    nowhere = (await ready_worker(client, principals, cid, None, skills=("moving",)))[1]
    unskilled = (await ready_worker(client, principals, cid, CENTER, skills=("plumbing",)))[1]
    outsider = (await ready_worker(client, principals, other, CENTER, skills=("moving",)))[1]
    stale = (await ready_worker(client, principals, cid, None, skills=("moving",)))[1]
    old = (datetime.now(UTC) - timedelta(minutes=10)).isoformat()
    r = await client.post(
        "/v1/workers/me/location",
        json={"lat": CENTER[0], "lng": CENTER[1], "recorded_at": old},
        headers=stale,
    )
    assert r.status_code == 204, r.text
    for headers in (unverified, offline, nowhere, unskilled, outsider, stale):
        assert await board_ids(client, headers) == []
    fine = (await ready_worker(client, principals, cid, CENTER, skills=("moving",)))[1]
    assert len(await board_ids(client, fine)) == 1
    # Going offline empties the board.
    r = await client.post("/v1/workers/me/presence", json={"status": "offline"}, headers=fine)
    assert r.status_code == 200
    assert await board_ids(client, fine) == []


async def test_board_needs_a_worker_profile_and_the_worker_role(
    client, principals, admin, resident
) -> None:
    _, bare = await principals.user("worker")
    r = await client.get("/v1/workers/me/jobs-nearby", headers=bare)
    assert r.status_code == 409 and r.json()["code"] == "no_profile"
    for who in (resident, admin):
        r = await client.get("/v1/workers/me/jobs-nearby", headers=who)
        assert r.status_code == 403 and r.json()["code"] == "forbidden_role"
    r = await client.get("/v1/workers/me/jobs-nearby")
    assert r.status_code == 401


@pytest.mark.parametrize(
    "params",
    [
        {"radius_m": 99},
        {"radius_m": 20_001},
        {"radius_m": "far"},
        {"radius_m": 2500.5},
        {"skill": ""},
        {"skill": "a b"},
        {"skill": "x" * 41},
        {"limit": 0},
        {"limit": 101},
    ],
)
async def test_board_refuses_bad_parameters(client, principals, admin, params) -> None:
    cid = await community(client, admin)
    _, me = await ready_worker(client, principals, cid, CENTER, skills=("moving",))
    r = await client.get("/v1/workers/me/jobs-nearby", params=params, headers=me)
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "validation_error"


# --- taking ---------------------------------------------------------------------------------


async def test_take_assigns_the_job_and_settles_the_wave_offers(
    app, client, principals, admin, resident, engine
) -> None:
    cid = await community(client, admin)
    pool = {"numbers": ["+12025550101"]}
    r = await client.post(f"/v1/communities/{cid}/proxy-numbers", json=pool, headers=admin)
    assert r.status_code == 201, r.text
    offerees = await crew(client, principals, cid, [100, 150, 200])
    job = await post_job(client, resident, address="Flat 5, 12 Yuyuan Road")
    assert job["offers"]["pending"] == 3
    # Beyond the first wave's 1000 m: not offered it yet, but it is on their board.
    me, headers = (await crew(client, principals, cid, [1500]))[0]
    (item,) = await board(client, headers)
    assert item["id"] == job["id"]
    r = await take(client, headers, job["id"])
    assert r.status_code == 200, r.text
    taken = r.json()
    assert taken["status"] == "assigned" and taken["worker_id"] == me
    assert taken["assignment_version"] == 1
    # Taken, the job tells the worker where it is.
    assert taken["address"] == "Flat 5, 12 Yuyuan Road"
    assert taken["location"] == {"lat": CENTER[0], "lng": CENTER[1]}
    assert taken["proxy_number"] is not None
    assert taken["offers"]["accepted"] == 1 and taken["offers"]["taken"] == 3
    rows = await offer_rows(engine, job["id"])
    assert rows.pop(me) == "accepted"
    assert set(rows.values()) == {"taken"}
    for _, h in offerees:
        assert await offers_of(client, h) == []
        assert await board_ids(client, h) == []
    async with engine.connect() as conn:
        told = await conn.scalar(
            text("SELECT count(*) FROM outbox WHERE kind = 'offer_taken' AND to_user_id = ANY(:w)"),
            {"w": [wid for wid, _ in offerees]},
        )
        source = await conn.scalar(
            text("SELECT source FROM assignments WHERE job_id = :j AND active"), {"j": job["id"]}
        )
    assert told == 3 and source == "grab"
    # What every assignment does: the escrow held, the resident's view shows the worker.
    await escrow_held(app)
    read = (await client.get(f"/v1/jobs/{job['id']}", headers=resident)).json()
    assert read["worker_id"] == me and read["start_pin"]
    # A wave offeree too late loses to the board.
    (late_id, late_h) = offerees[0]
    async with engine.connect() as conn:
        offer_id = await conn.scalar(
            text("SELECT id FROM offers WHERE job_id = :j AND worker_id = :w"),
            {"j": job["id"], "w": late_id},
        )
    r = await client.post(f"/v1/offers/{offer_id}/accept", headers=late_h)
    assert r.status_code == 409 and r.json()["code"] == "already_taken"
    # The winner's retry gets the job again; anyone else is too late.
    again = await take(client, headers, job["id"])
    assert again.status_code == 200 and again.json()["id"] == job["id"]
    r = await take(client, offerees[1][1], job["id"])
    assert r.status_code == 409 and r.json()["code"] == "already_taken"
    assert await board_ids(client, headers) == []


async def test_a_wave_offeree_takes_from_the_board_through_their_offer(
    client, principals, admin, resident, engine
) -> None:
    cid = await community(client, admin)
    (wid, h), (_, h2) = await crew(client, principals, cid, [100, 150])
    job = await post_job(client, resident)
    (offer,) = await offers_of(client, h)
    r = await take(client, h, job["id"])
    assert r.status_code == 200, r.text
    rows = await offer_rows(engine, job["id"])
    assert rows == {wid: "accepted", next(iter(set(rows) - {wid})): "taken"}
    assert len(rows) == 2 and offer["status"] == "pending"
    assert await offers_of(client, h2) == []


async def test_twenty_takers_one_winner(client, principals, admin, resident, engine) -> None:
    cid = await community(client, admin)
    team = await crew(client, principals, cid, [100 + 40 * i for i in range(20)])
    job = await post_job(client, resident)
    results = await asyncio.gather(*(take(client, h, job["id"]) for _, h in team))
    codes = sorted(r.status_code for r in results)
    assert codes == [200] + [409] * 19, [r.text for r in results if r.status_code not in (200, 409)]
    assert {r.json()["code"] for r in results if r.status_code == 409} == {"already_taken"}
    winner = next(r.json() for r in results if r.status_code == 200)
    assert winner["status"] == "assigned"
    rows = await offer_rows(engine, job["id"])
    assert list(rows.values()).count("accepted") == 1
    assert "pending" not in rows.values()
    async with engine.connect() as conn:
        active = await conn.scalar(
            text("SELECT count(*) FROM assignments WHERE job_id = :j AND active"), {"j": job["id"]}
        )
    assert active == 1


async def test_board_takes_race_wave_accepts_one_winner(
    client, principals, admin, resident, engine
) -> None:
    cid = await community(client, admin)
    offerees = await crew(client, principals, cid, [100, 150, 200])
    takers = await crew(client, principals, cid, [1200, 1300, 1400, 1500])
    job = await post_job(client, resident)
    offers = [(await offers_of(client, h))[0] for _, h in offerees]
    calls = [
        client.post(f"/v1/offers/{o['id']}/accept", headers=h)
        for o, (_, h) in zip(offers, offerees, strict=True)
    ] + [take(client, h, job["id"]) for _, h in takers]
    results = await asyncio.gather(*calls)
    assert sorted(r.status_code for r in results) == [200] + [409] * 6
    assert {r.json()["code"] for r in results if r.status_code == 409} == {"already_taken"}
    rows = await offer_rows(engine, job["id"])
    assert list(rows.values()).count("accepted") == 1 and "pending" not in rows.values()


async def test_take_refuses_workers_who_may_not_take_it(
    client, principals, admin, resident
) -> None:
    cid = await community(client, admin)
    other = await community(client, admin, name="Next door")
    job = await post_job(client, resident, location=where(200))
    cases = {
        "verified": dict(verified=False),
        "community": dict(community_id=other),
        "skills": dict(skills=("plumbing",)),
        "online": dict(online=False),
        "position": dict(at=None),
    }
    for word, kw in cases.items():
        community_id = kw.pop("community_id", cid)
        place = kw.pop("at", CENTER)
        kw.setdefault("skills", ("moving",))
        _, h = await ready_worker(client, principals, community_id, place, **kw)
        r = await take(client, h, job["id"])
        assert r.status_code == 403, (word, r.text)
        assert r.json()["code"] == "not_eligible" and word in r.json()["detail"], word
    # The resident's own job, taken with a worker's token of the same phone.
    phone = principals.next_phone()
    _, own_resident = await principals.user("resident", phone)
    mine = await post_job(client, own_resident, "mine", location=where(200))
    uid, own_worker = await principals.user("worker", phone)
    r = await client.put(
        "/v1/workers/me",
        json={"name": "Me", "skills": ["moving"], "community_ids": [cid]},
        headers=own_worker,
    )
    assert r.status_code == 200
    ops = await principals.operator(cid)
    assert (await client.post(f"/v1/ops/workers/{uid}/verify", headers=ops)).status_code == 200
    await client.post("/v1/workers/me/presence", json={"status": "online"}, headers=own_worker)
    await client.post(
        "/v1/workers/me/location", json={"lat": CENTER[0], "lng": CENTER[1]}, headers=own_worker
    )
    assert mine["id"] not in await board_ids(client, own_worker)
    r = await take(client, own_worker, mine["id"])
    assert r.status_code == 403 and "own" in r.json()["detail"]
    # Nothing was taken.
    read = (await client.get(f"/v1/jobs/{job['id']}", headers=resident)).json()
    assert read["status"] == "open"


async def test_take_answers_bad_calls_with_their_codes(client, principals, admin, resident) -> None:
    cid = await community(client, admin)
    _, h = await ready_worker(client, principals, cid, CENTER, skills=("moving",))
    for job_id in (999_999, 0, 2**63 - 1):
        r = await take(client, h, job_id)
        assert r.status_code == 404 and r.json()["code"] == "job_not_found", job_id
    r = await client.post("/v1/jobs/abc/take", headers=h)
    assert r.status_code in (400, 404) and r.status_code < 500
    r = await client.post(f"/v1/jobs/{2**64}/take", headers=h)
    assert 400 <= r.status_code < 500
    job = await post_job(client, resident)
    r = await client.post(f"/v1/jobs/{job['id']}/take", headers=resident)
    assert r.status_code == 403 and r.json()["code"] == "forbidden_role"
    r = await take(client, h, job["id"], key="\x7f" * 3)
    assert r.status_code == 400
    r = await client.post(
        f"/v1/jobs/{job['id']}/cancel", json={"reason": "not needed"}, headers=resident
    )
    assert r.status_code == 200
    r = await take(client, h, job["id"])
    assert r.status_code == 409 and r.json()["code"] == "job_not_open"


async def test_take_with_an_idempotency_key_replays_and_refuses_reuse(
    client, principals, admin, resident
) -> None:
    cid = await community(client, admin)
    _, h = await ready_worker(client, principals, cid, at(1500), skills=("moving",))
    job = await post_job(client, resident)
    first = await take(client, h, job["id"], key="take-1")
    assert first.status_code == 200, first.text
    again = await take(client, h, job["id"], key="take-1")
    assert again.status_code == 200 and again.content == first.content
    other = await post_job(client, resident, "k2", location=where(300))
    r = await take(client, h, other["id"], key="take-1")
    assert r.status_code == 422 and r.json()["code"] == "idempotency_key_reused"
    read = (await client.get(f"/v1/jobs/{other['id']}", headers=resident)).json()
    assert read["status"] == "open"


async def test_min_accept_ms_runs_from_when_the_job_was_listed(
    client, principals, admin, resident, engine
) -> None:
    cid = await community(client, admin, dispatch={"min_accept_ms": 1500})
    wid, h = await ready_worker(client, principals, cid, at(1500), skills=("moving",))
    job = await post_job(client, resident)
    # Never listed to this worker: it counts as listed now, so at once is too fast.
    r = await take(client, h, job["id"])
    assert r.status_code == 409 and r.json()["code"] == "accept_too_fast"
    other = await post_job(client, resident, "k2", location=where(300))
    assert other["id"] in await board_ids(client, h)
    await asyncio.sleep(1.6)
    r = await take(client, h, other["id"])
    assert r.status_code == 200, r.text
    async with engine.connect() as conn:
        fast = await conn.scalar(
            text("SELECT fast_accepts FROM workers WHERE user_id = :w"), {"w": wid}
        )
    assert fast == 1


async def test_a_booking_on_the_board_books_its_slot_for_the_taker(
    client, principals, admin, resident, engine
) -> None:
    from tests.dispatch.test_booking_dispatch import book, bookable_worker, slot

    cid = await community(client, admin, timezone="Asia/Shanghai")
    chosen, _ = await bookable_worker(client, principals, cid, at(900))
    me, h = await bookable_worker(client, principals, cid, at(500))
    _, no_bookings = await ready_worker(client, principals, cid, at(500))
    start = slot()
    job = await book(client, resident, start, worker_id=chosen)
    assert job["offers"]["pending"] == 1
    (item,) = await board(client, h)
    assert item["id"] == job["id"] and item["mode"] == "booking"
    assert datetime.fromisoformat(item["scheduled_start"]) == start
    assert item["duration_min"] == 120 and item["window_start"] is not None
    # A worker who takes no bookings is not shown it, and cannot book it.
    assert await board_ids(client, no_bookings) == []
    r = await take(client, no_bookings, job["id"])
    assert r.status_code == 409 and r.json()["code"] == "worker_unavailable"
    r = await take(client, h, job["id"])
    assert r.status_code == 200, r.text
    assert r.json()["worker_id"] == me and r.json()["status"] == "assigned"
    rows = await offer_rows(engine, job["id"])
    assert rows[me] == "accepted" and rows[chosen] == "taken"
    cal = await client.get(
        "/v1/workers/me/calendar",
        params={
            "from": (start - timedelta(hours=2)).isoformat(),
            "to": (start + timedelta(hours=4)).isoformat(),
        },
        headers=h,
    )
    assert [b["job_id"] for b in cal.json()["bookings"]] == [job["id"]]


async def test_a_job_handed_back_is_not_on_its_last_holders_board(
    client, principals, admin, resident
) -> None:
    cid = await community(client, admin)
    (_, h), (_, other) = await crew(client, principals, cid, [1500, 1600])
    job = await post_job(client, resident)
    r = await take(client, h, job["id"])
    assert r.status_code == 200, r.text
    r = await client.post(
        f"/v1/jobs/{job['id']}/cancel",
        json={"reason": "van broke down", "assignment_version": r.json()["assignment_version"]},
        headers=h,
    )
    assert r.status_code == 200 and r.json()["status"] == "open", r.text
    assert await board_ids(client, h) == []
    r = await take(client, h, job["id"])
    assert r.status_code == 403 and r.json()["code"] == "not_eligible"
    assert await board_ids(client, other) == [job["id"]]
    assert (await take(client, other, job["id"])).status_code == 200
