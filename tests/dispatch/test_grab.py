"""Grab-order dispatch in one process: waves, claims, declines, expiry, cancellation, fencing."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from geo.areas import destination
from tests.dispatch.helpers import CENTER, community, ready_worker

FAST = {
    "offer_ttl_s": 1,
    "waves": [
        {"radius_m": 500, "size": 1},
        {"radius_m": 2000, "size": 2},
        {"radius_m": None, "size": None},
    ],
}


async def post_job(
    client: httpx.AsyncClient, headers: dict[str, str], key: str = "k1", **extra: Any
):
    body = {
        "title": "Move a sofa",
        "category": "moving",
        "skills": ["moving"],
        "location": {"lat": CENTER[0], "lng": CENTER[1]},
        "mode": "grab",
        "price_cents": 8000,
        **extra,
    }
    r = await client.post("/v1/jobs", json=body, headers={**headers, "Idempotency-Key": key})
    assert r.status_code == 201, r.text
    return r.json()


async def offers_of(client: httpx.AsyncClient, headers: dict[str, str]) -> list[dict]:
    r = await client.get("/v1/workers/me/offers", headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


async def crew(client, principals, cid: int, distances: list[int], **kw) -> list[tuple[int, dict]]:
    """Workers at the given distances north of the centre, ready for offers."""
    out = []
    for d in distances:
        out.append(
            await ready_worker(
                client, principals, cid, destination(*CENTER, 0.0, d), skills=("moving",), **kw
            )
        )
    return out


async def wait_for(predicate, within: float = 15.0, every: float = 0.1) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(every)
    raise AssertionError("condition not reached in time")


async def test_first_wave_goes_to_the_nearest_eligible(client, principals, admin, resident) -> None:
    cid = await community(client, admin)
    near = await crew(client, principals, cid, [100, 200, 300, 400])
    await ready_worker(client, principals, cid, CENTER, skills=("plumbing",))  # unskilled
    await ready_worker(client, principals, cid, CENTER, skills=("moving",), verified=False)
    await ready_worker(client, principals, cid, CENTER, skills=("moving",), online=False)
    job = await post_job(client, resident)
    assert job["status"] == "open"
    assert job["offers"] == {"wave": 1, "pending": 3, "accepted": 0, "declined": 0,
                             "expired": 0, "taken": 0, "withdrawn": 0}  # fmt: skip
    got = [len(await offers_of(client, h)) for _, h in near]
    assert got == [1, 1, 1, 0]
    (offer,) = await offers_of(client, near[0][1])
    assert offer["job_id"] == job["id"] and offer["wave"] == 1
    assert offer["distance_m"] == pytest.approx(100, abs=1)
    assert offer["job"]["title"] == "Move a sofa"
    # The offer shows the neighbourhood, not the address.
    assert offer["job"]["approx_location"] != {"lat": CENTER[0], "lng": CENTER[1]}


async def test_one_accept_wins_the_rest_are_409(client, principals, admin, resident) -> None:
    cid = await community(client, admin)
    team = await crew(client, principals, cid, [100, 150, 200])
    job = await post_job(client, resident)
    offers = [(await offers_of(client, h))[0] for _, h in team]
    results = await asyncio.gather(
        *(
            client.post(f"/v1/offers/{o['id']}/accept", headers=h)
            for o, (_, h) in zip(offers, team, strict=True)
        )
    )
    codes = sorted(r.status_code for r in results)
    assert codes == [200, 409, 409]
    winner = next(r.json() for r in results if r.status_code == 200)
    assert winner["status"] == "assigned" and winner["assignment_version"] == 1
    assert all(r.json()["code"] == "already_taken" for r in results if r.status_code == 409)
    read = (await client.get(f"/v1/jobs/{job['id']}", headers=resident)).json()
    assert read["offers"]["accepted"] == 1 and read["offers"]["taken"] == 2
    # The winner is busy now: not offered the next job.
    job2 = await post_job(client, resident, key="k2")
    assert job2["offers"]["pending"] == 2


async def test_accept_errors(client, principals, admin, resident) -> None:
    cid = await community(client, admin, dispatch={"offer_ttl_s": 1})
    (_a, ha), (_b, hb) = await crew(client, principals, cid, [100, 150])
    await post_job(client, resident)
    offer_a = (await offers_of(client, ha))[0]
    r = await client.post(f"/v1/offers/{offer_a['id']}/accept", headers=hb)
    assert r.status_code == 403 and r.json()["code"] == "not_your_offer"
    r = await client.post("/v1/offers/999999/accept", headers=hb)
    assert r.status_code == 404
    await asyncio.sleep(1.2)
    r = await client.post(f"/v1/offers/{offer_a['id']}/accept", headers=ha)
    assert r.status_code == 410 and r.json()["code"] == "offer_expired"


async def test_waves_escalate_then_unfilled_alert(client, principals, admin, resident) -> None:
    cid = await community(client, admin, dispatch=FAST)
    ops = await principals.operator(cid)
    team = await crew(client, principals, cid, [100, 800, 1500, 2500])
    job = await post_job(client, resident)
    seen: dict[int, int] = {}

    async def record() -> bool:
        for wid, h in team:
            for o in await offers_of(client, h):
                seen.setdefault(wid, o["wave"])
        j = (await client.get(f"/v1/jobs/{job['id']}", headers=resident)).json()
        return j["status"] == "unfilled"

    await wait_for(record, within=20)
    ids = [wid for wid, _ in team]
    assert seen == {ids[0]: 1, ids[1]: 2, ids[2]: 2, ids[3]: 3}
    alerts = (await client.get(f"/v1/ops/communities/{cid}/alerts", headers=ops)).json()
    assert [(a["kind"], a["job_id"]) for a in alerts] == [("job_unfilled", job["id"])]
    r = await client.post(f"/v1/ops/alerts/{alerts[0]['id']}/ack", headers=ops)
    assert r.status_code == 200 and r.json()["acked_at"] is not None
    assert (await client.get(f"/v1/ops/communities/{cid}/alerts", headers=ops)).json() == []


async def test_declines_escalate_at_once(client, principals, admin, resident) -> None:
    cid = await community(client, admin, dispatch={**FAST, "offer_ttl_s": 60})
    (_a, ha), (_b, hb), (_c, hc) = await crew(client, principals, cid, [100, 800, 900])
    job = await post_job(client, resident)
    (offer,) = await offers_of(client, ha)
    assert (await client.post(f"/v1/offers/{offer['id']}/decline", headers=ha)).status_code == 204
    assert [o["wave"] for o in await offers_of(client, hb)] == [2]
    assert [o["wave"] for o in await offers_of(client, hc)] == [2]
    assert await offers_of(client, ha) == []  # never the same job twice
    read = (await client.get(f"/v1/jobs/{job['id']}", headers=resident)).json()
    assert read["offers"]["wave"] == 2 and read["offers"]["declined"] == 1


async def test_cancelling_an_open_job_withdraws_offers_and_stops_waves(
    client, principals, admin, resident
) -> None:
    cid = await community(client, admin, dispatch=FAST)
    team = await crew(client, principals, cid, [100, 800, 1500])
    job = await post_job(client, resident)
    r = await client.post(
        f"/v1/jobs/{job['id']}/cancel", json={"reason": "changed my mind"}, headers=resident
    )
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "cancelled" and body["cancellation"]["fee_cents"] == 0
    assert body["offers"]["withdrawn"] == 1
    await asyncio.sleep(2.5)  # past the first wave's deadline: nothing more goes out
    assert all([await offers_of(client, h) == [] for _, h in team])
    (offer_id,) = [1]  # the first offer ever made
    r = await client.post(f"/v1/offers/{offer_id}/accept", headers=team[0][1])
    assert r.status_code == 410


async def test_fencing_refuses_a_stale_holder(client, principals, admin, resident) -> None:
    cid = await community(client, admin)
    ops = await principals.operator(cid)
    (_a, ha), (b, hb) = await crew(client, principals, cid, [100, 3000])
    job = await post_job(client, resident)
    (offer,) = await offers_of(client, ha)
    taken = (await client.post(f"/v1/offers/{offer['id']}/accept", headers=ha)).json()
    assert taken["assignment_version"] == 1
    r = await client.post(f"/v1/ops/jobs/{job['id']}/assign", json={"worker_id": b}, headers=ops)
    assert (
        r.status_code == 200 and r.json()["worker_id"] == b and r.json()["assignment_version"] == 2
    )
    r = await client.post(
        f"/v1/jobs/{job['id']}/complete", json={"assignment_version": 1}, headers=ha
    )
    assert r.status_code == 403  # no longer the holder
    r = await client.post(
        f"/v1/jobs/{job['id']}/complete", json={"assignment_version": 1}, headers=hb
    )
    assert r.status_code == 409 and r.json()["code"] == "stale_assignment"
    r = await client.post(
        f"/v1/jobs/{job['id']}/complete", json={"assignment_version": 2}, headers=hb
    )
    assert r.status_code == 200 and r.json()["status"] == "completed"


async def test_worker_hands_back_and_the_job_goes_out_again(
    client, principals, admin, resident
) -> None:
    cid = await community(client, admin, dispatch={**FAST, "offer_ttl_s": 60})
    ops = await principals.operator(cid)
    (_a, ha), (b, hb) = await crew(client, principals, cid, [100, 800])
    job = await post_job(client, resident)
    (offer,) = await offers_of(client, ha)
    assert (await client.post(f"/v1/offers/{offer['id']}/accept", headers=ha)).status_code == 200
    r = await client.post(
        f"/v1/jobs/{job['id']}/cancel",
        json={"reason": "van broke", "assignment_version": 1},
        headers=ha,
    )
    assert r.status_code == 200 and r.json()["status"] == "open"
    (offer_b,) = await offers_of(client, hb)
    r = await client.post(f"/v1/offers/{offer_b['id']}/accept", headers=hb)
    assert (
        r.status_code == 200 and r.json()["worker_id"] == b and r.json()["assignment_version"] == 2
    )
    kinds = [
        x["kind"]
        for x in (await client.get(f"/v1/ops/communities/{cid}/alerts", headers=ops)).json()
    ]
    assert kinds == ["worker_cancelled"]


async def test_resident_pays_a_fee_only_after_the_grace(
    client, principals, admin, resident, engine
) -> None:
    from sqlalchemy import text

    cid = await community(client, admin)
    ((_a, ha),) = await crew(client, principals, cid, [100])
    job = await post_job(client, resident, price_cents=10000)
    (offer,) = await offers_of(client, ha)
    await client.post(f"/v1/offers/{offer['id']}/accept", headers=ha)
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE jobs SET assigned_at = now() - interval '10 minutes'"))
    r = await client.post(
        f"/v1/jobs/{job['id']}/cancel", json={"reason": "found a friend"}, headers=resident
    )
    assert r.status_code == 200 and r.json()["cancellation"]["fee_cents"] == 1000
    # The worker is free again.
    job2 = await post_job(client, resident, key="k2")
    assert job2["offers"]["pending"] == 1


async def test_idempotent_post_sends_one_wave(client, principals, admin, resident) -> None:
    cid = await community(client, admin)
    team = await crew(client, principals, cid, [100, 200])
    first = await post_job(client, resident, key="same")
    again = await post_job(client, resident, key="same")
    assert first == again
    assert [len(await offers_of(client, h)) for _, h in team] == [1, 1]


async def test_twenty_concurrent_accepts_in_process(client, principals, admin, resident) -> None:
    cid = await community(client, admin, dispatch={"waves": [{"radius_m": None, "size": None}]})
    team = await crew(client, principals, cid, [50 * i for i in range(1, 21)])
    await post_job(client, resident)
    offers = [(await offers_of(client, h))[0] for _, h in team]
    results = await asyncio.gather(
        *(
            client.post(f"/v1/offers/{o['id']}/accept", headers=h)
            for o, (_, h) in zip(offers, team, strict=True)
        )
    )
    assert sorted(r.status_code for r in results) == [200] + [409] * 19


async def test_accept_with_an_idempotency_key_replays_and_refuses_reuse(
    client, principals, admin, resident
) -> None:
    cid = await community(client, admin)
    (_a, ha), (_b, hb), (_c, hc) = await crew(client, principals, cid, [100, 150, 200])
    await post_job(client, resident)
    o1 = {name: (await offers_of(client, h))[0] for name, h in (("a", ha), ("b", hb), ("c", hc))}
    first = await client.post(
        f"/v1/offers/{o1['a']['id']}/accept", headers={**ha, "Idempotency-Key": "K"}
    )
    assert first.status_code == 200 and first.json()["status"] == "assigned"
    # The winner's retry is the first answer, byte for byte.
    again = await client.post(
        f"/v1/offers/{o1['a']['id']}/accept", headers={**ha, "Idempotency-Key": "K"}
    )
    assert again.status_code == 200 and again.content == first.content
    # A loser's 409 is not stored under its key: the key still takes the next job.
    lost = await client.post(
        f"/v1/offers/{o1['c']['id']}/accept", headers={**hc, "Idempotency-Key": "K2"}
    )
    assert lost.status_code == 409 and lost.json()["code"] == "already_taken"
    job2 = await post_job(client, resident, key="k2")
    o2 = (await offers_of(client, hc))[0]
    won = await client.post(
        f"/v1/offers/{o2['id']}/accept", headers={**hc, "Idempotency-Key": "K2"}
    )
    assert won.status_code == 200 and won.json()["id"] == job2["id"]
    done = await client.post(
        f"/v1/jobs/{job2['id']}/complete", json={"assignment_version": 1}, headers=hc
    )
    assert done.status_code == 200, done.text
    # The same key for another offer is refused, and the offer stays open to take.
    job3 = await post_job(client, resident, key="k3")
    o3 = next(o for o in await offers_of(client, hc) if o["job_id"] == job3["id"])
    reused = await client.post(
        f"/v1/offers/{o3['id']}/accept", headers={**hc, "Idempotency-Key": "K2"}
    )
    assert reused.status_code == 422 and reused.json()["code"] == "idempotency_key_reused"
    r = await client.post(f"/v1/offers/{o3['id']}/accept", headers={**hc, "Idempotency-Key": "K3"})
    assert r.status_code == 200 and r.json()["worker_id"] == _c
