"""Fair ranking and the anti-bot rules through the API: a wave's offerees by score (the
dispatch log shows each part), the hourly offer cap, accepts refused for coming too fast or
for holding too many open jobs (counted for operators, a suspected bot alerted), and the
claim released for the others when an accept is refused."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis
from sqlalchemy import text

from tests.dispatch.helpers import community
from tests.dispatch.test_grab import crew, offers_of, post_job

ONE = {"waves": [{"radius_m": 1000, "size": 1}]}


async def rate(engine, worker_id: int, stars_sum: int, count: int) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            text("UPDATE workers SET rating_sum = :s, rating_count = :n WHERE user_id = :w"),
            {"s": stars_sum, "n": count, "w": worker_id},
        )


async def test_a_better_worker_a_little_farther_is_asked_first(
    client, principals, admin, resident, engine
) -> None:
    cid = await community(client, admin, dispatch=ONE)
    (near, nh), (good, gh) = await crew(client, principals, cid, [100, 250])
    await rate(engine, near, 300, 100)  # 3.0 stars over 100 reviews
    await rate(engine, good, 490, 100)  # 4.9
    job = await post_job(client, resident)
    assert await offers_of(client, nh) == []
    assert [o["job_id"] for o in await offers_of(client, gh)] == [job["id"]]
    log = await client.get(f"/v1/ops/jobs/{job['id']}/dispatch-log", headers=admin)
    (wave,) = log.json()["waves"]
    by = {c["worker_id"]: c for c in wave["offered"]}
    assert by[good]["picked"] and by[good]["rank"] == 1
    assert by[near]["why_not"] == "beyond_size" and by[near]["rank"] == 2
    parts = by[near]["score"]
    assert set(parts) >= {"distance", "rating", "reliability", "exposure", "total"}
    assert parts["rating"] > by[good]["score"]["rating"]
    assert parts["distance"] < by[good]["score"]["distance"]
    replay = await client.post(f"/v1/ops/jobs/{job['id']}/replay", headers=admin)
    assert replay.json()["same"] is True


async def test_the_hourly_cap_passes_offers_on(client, principals, admin, resident) -> None:
    cid = await community(client, admin, dispatch={**ONE, "offers_per_worker_hour": 1})
    team = await crew(client, principals, cid, [100, 400, 700])
    jobs = [await post_job(client, resident, f"k{i}") for i in range(4)]
    got = [{o["job_id"] for o in await offers_of(client, h)} for _, h in team]
    # One offer each in the hour, nearest first; the fourth job finds everyone capped.
    assert got == [{jobs[0]["id"]}, {jobs[1]["id"]}, {jobs[2]["id"]}]
    log = await client.get(f"/v1/ops/jobs/{jobs[3]['id']}/dispatch-log", headers=admin)
    candidates = [c for w in log.json()["waves"] for c in w["offered"]]
    assert candidates and {c["why_not"] for c in candidates} == {"capped"}
    assert {c["score"]["recent_offers"] for c in candidates} == {1}
    board = await client.get(f"/v1/ops/communities/{cid}/worker-trust", headers=admin)
    assert sorted(w["offers_last_hour"] for w in board.json()) == [1, 1, 1]


async def test_similar_workers_take_turns(client, principals, admin, resident) -> None:
    cid = await community(client, admin, dispatch=ONE)
    (a, ah), (b, bh) = await crew(client, principals, cid, [100, 150])
    jobs = [await post_job(client, resident, f"k{i}") for i in range(4)]
    got = {w: {o["job_id"] for o in await offers_of(client, h)} for w, h in [(a, ah), (b, bh)]}
    # Nearest-first would have sent all four to `a`; rotation alternates them.
    assert got == {a: {jobs[0]["id"], jobs[2]["id"]}, b: {jobs[1]["id"], jobs[3]["id"]}}


async def test_an_accept_too_soon_after_the_offer_is_refused_and_counted(
    client, principals, admin, resident, redis: Redis
) -> None:
    cid = await community(client, admin, dispatch={"min_accept_ms": 1500})
    ((wid, hw), (_, other)) = await crew(client, principals, cid, [100, 200])
    job = await post_job(client, resident)
    (offer,) = await offers_of(client, hw)
    r = await client.post(f"/v1/offers/{offer['id']}/accept", headers=hw)
    assert r.status_code == 409 and r.json()["code"] == "accept_too_fast"
    # The offer cache gone, the database refuses it the same way.
    await redis.delete(f"offer:{{grab}}:{offer['id']}")
    r = await client.post(f"/v1/offers/{offer['id']}/accept", headers=hw)
    assert r.status_code == 409 and r.json()["code"] == "accept_too_fast"
    # Nothing was claimed: once the time has passed, anyone offered it may take it.
    await asyncio.sleep(1.6)
    (theirs,) = await offers_of(client, other)
    r = await client.post(f"/v1/offers/{theirs['id']}/accept", headers=other)
    assert r.status_code == 200, r.text
    board = await client.get(f"/v1/ops/communities/{cid}/worker-trust", headers=admin)
    first = board.json()[0]
    assert first["worker_id"] == wid and first["fast_accepts"] == 2
    assert job["status"] == "open"


async def test_a_bot_is_alerted_after_three_too_fast_accepts(
    client, principals, admin, resident
) -> None:
    cid = await community(client, admin, dispatch={"min_accept_ms": 5000})
    ((wid, hw),) = await crew(client, principals, cid, [100])
    for i in range(3):
        await post_job(client, resident, f"k{i}")
    for offer in await offers_of(client, hw):
        r = await client.post(f"/v1/offers/{offer['id']}/accept", headers=hw)
        assert r.json()["code"] == "accept_too_fast"
    alerts = await client.get(f"/v1/ops/communities/{cid}/alerts", headers=admin)
    (bot,) = [a for a in alerts.json() if a["kind"] == "suspected_bot"]
    assert bot["detail"] == {"worker_id": wid, "fast_accepts": 3}


async def test_a_worker_holding_too_many_open_jobs_cannot_take_another(
    client, principals, admin, resident
) -> None:
    cid = await community(
        client, admin, dispatch={"max_open_assignments": 1, "waves": [{"radius_m": 1000}]}
    )
    (busy, bh), (_, oh) = await crew(client, principals, cid, [100, 200])
    # Offered two jobs while free (busy workers get no offers), they take the first...
    first = await post_job(client, resident, "a")
    second = await post_job(client, resident, "b")
    offer = next(o for o in await offers_of(client, bh) if o["job_id"] == first["id"])
    assert (await client.post(f"/v1/offers/{offer['id']}/accept", headers=bh)).status_code == 200
    # ... and cannot take the second as well.
    offer = next(o for o in await offers_of(client, bh) if o["job_id"] == second["id"])
    r = await client.post(f"/v1/offers/{offer['id']}/accept", headers=bh)
    assert r.status_code == 409 and r.json()["code"] == "too_many_open_assignments"
    # The refused accept held no claim: the other worker takes the job at once.
    theirs = next(o for o in await offers_of(client, oh) if o["job_id"] == second["id"])
    assert (await client.post(f"/v1/offers/{theirs['id']}/accept", headers=oh)).status_code == 200
    # Done with the first, the busy worker may take work again.
    r = await client.post(
        f"/v1/jobs/{first['id']}/complete", json={"assignment_version": 1}, headers=bh
    )
    assert r.status_code == 200
    third = await post_job(client, resident, "c")
    offer = next(o for o in await offers_of(client, bh) if o["job_id"] == third["id"])
    r = await client.post(f"/v1/offers/{offer['id']}/accept", headers=bh)
    assert r.status_code == 200, r.text
    board = await client.get(f"/v1/ops/communities/{cid}/worker-trust", headers=admin)
    row = next(w for w in board.json() if w["worker_id"] == busy)
    assert row["open_refusals"] == 1 and row["jobs_done"] == 1
