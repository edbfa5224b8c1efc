"""Workers end to end: profile, verification, presence, pings, nearby search, privacy, rebuild."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import h3.api.basic_int as h3
import pytest

from app import create_app
from geo.areas import destination
from tests.dispatch.helpers import CENTER, community, nearby_ids, ready_worker


@pytest.fixture
async def setup(client, principals):
    admin = await principals.admin()
    cid = await community(client, admin)
    return cid, await principals.operator(cid)


async def test_profile_and_verification_flow(client, principals, setup) -> None:
    cid, ops = setup
    wid, headers = await principals.user("worker")
    r = await client.put(
        "/v1/workers/me",
        json={
            "name": "Lao Wang",
            "skills": ["plumbing", "moving", "plumbing"],
            "community_ids": [cid],
        },
        headers=headers,
    )
    assert r.status_code == 200
    body = r.json()
    assert body["skills"] == ["moving", "plumbing"] and body["community_ids"] == [cid]
    assert body["verified"] is False and body["verification"] == "unverified"
    r = await client.post(
        "/v1/workers/me/verification",
        json={"legal_name": "王建国", "id_number": "110101199003071234"},
        headers=headers,
    )
    assert r.status_code == 202 and r.json() == {"verification": "pending"}
    r = await client.post(f"/v1/ops/workers/{wid}/verify", headers=ops)
    assert r.status_code == 200 and r.json()["verified"] is True
    assert (await client.get("/v1/workers/me", headers=headers)).json()["verified"] is True


async def test_profile_needs_existing_communities_and_worker_role(
    client, principals, setup
) -> None:
    _, headers = await principals.user("worker")
    r = await client.put(
        "/v1/workers/me", json={"name": "x", "skills": [], "community_ids": [999]}, headers=headers
    )
    assert r.status_code == 422 and r.json()["code"] == "community_not_found"
    _, resident = await principals.user("resident")
    r = await client.put(
        "/v1/workers/me", json={"name": "x", "skills": [], "community_ids": []}, headers=resident
    )
    assert r.status_code == 403


async def test_operator_of_another_community_cannot_verify(client, principals, setup) -> None:
    cid, _ = setup
    admin = await principals.admin()
    other = await community(client, admin, name="Elsewhere", center={"lat": 39.9, "lng": 116.4})
    wid, _ = await ready_worker(client, principals, cid, None, verified=False, online=False)
    r = await client.post(f"/v1/ops/workers/{wid}/verify", headers=await principals.operator(other))
    assert r.status_code == 403 and r.json()["code"] == "not_yours"


async def test_only_verified_online_skilled_workers_are_found(client, principals, setup) -> None:
    cid, ops = setup
    spot = destination(*CENTER, 30.0, 400)
    good, _ = await ready_worker(client, principals, cid, spot)
    await ready_worker(client, principals, cid, spot, verified=False)
    offline, _ = await ready_worker(client, principals, cid, spot, online=False)
    mover, _ = await ready_worker(client, principals, cid, spot, skills=("moving",))
    assert await nearby_ids(client, ops) == sorted([good, mover])
    assert await nearby_ids(client, ops, skill="plumbing") == [good]
    assert offline not in await nearby_ids(client, ops)


async def test_nearest_first_with_distances(client, principals, setup) -> None:
    cid, ops = setup
    far, _ = await ready_worker(client, principals, cid, destination(*CENTER, 0.0, 900))
    near, _ = await ready_worker(client, principals, cid, destination(*CENTER, 0.0, 100))
    r = await client.get(
        "/v1/workers/nearby", params={"lat": CENTER[0], "lng": CENTER[1]}, headers=ops
    )
    found = r.json()
    assert [w["worker_id"] for w in found] == [near, far]
    assert found[0]["distance_m"] == pytest.approx(100, abs=0.2)
    assert await nearby_ids(client, ops, radius_m=500) == [near]


async def test_going_offline_removes_from_search(client, principals, setup) -> None:
    cid, ops = setup
    wid, headers = await ready_worker(client, principals, cid, CENTER)
    assert await nearby_ids(client, ops) == [wid]
    await client.post("/v1/workers/me/presence", json={"status": "offline"}, headers=headers)
    assert await nearby_ids(client, ops) == []
    await client.post("/v1/workers/me/presence", json={"status": "online"}, headers=headers)
    assert await nearby_ids(client, ops) == [wid]


async def test_stale_positions_do_not_count(client, principals, setup) -> None:
    cid, ops = setup
    _, headers = await ready_worker(client, principals, cid, None)
    old = (datetime.now(UTC) - timedelta(seconds=600)).isoformat()
    r = await client.post(
        "/v1/workers/me/location",
        json={"lat": CENTER[0], "lng": CENTER[1], "recorded_at": old},
        headers=headers,
    )
    assert r.status_code == 204
    assert await nearby_ids(client, ops) == []  # location_max_age_s is 120 by default


async def test_worker_outside_the_community_is_not_found(client, principals, setup) -> None:
    cid, ops = setup
    outside = destination(*CENTER, 90.0, 3100)  # community radius is 3000 m
    await ready_worker(client, principals, cid, outside)
    edge = destination(*CENTER, 90.0, 2950)  # 150 m from the worker, inside the community
    assert await nearby_ids(client, ops, lat=edge[0], lng=edge[1], radius_m=1000) == []


async def test_impossible_speed_is_rejected_and_last_position_kept(
    client, principals, setup
) -> None:
    cid, ops = setup
    wid, headers = await ready_worker(client, principals, cid, CENTER)
    jump = destination(*CENTER, 0.0, 2500)
    r = await client.post(
        "/v1/workers/me/location", json={"lat": jump[0], "lng": jump[1]}, headers=headers
    )
    assert r.status_code == 422 and r.json()["code"] == "impossible_speed"
    assert await nearby_ids(client, ops, radius_m=50) == [wid]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"lat": 91, "lng": 0}, 400, "validation_error"),
        ({"lat": 0, "lng": -181}, 400, "validation_error"),
        ({"lat": "x", "lng": 0}, 400, "validation_error"),
        ({}, 400, "validation_error"),
        (
            {"lat": 31.2, "lng": 121.4, "recorded_at": "2999-01-01T00:00:00Z"},
            422,
            "timestamp_in_future",
        ),
        (
            {"lat": 31.2, "lng": 121.4, "recorded_at": "2001-01-01T00:00:00Z"},
            422,
            "timestamp_too_old",
        ),
        ({"lat": 31.2, "lng": 121.4, "accuracy_m": 5000}, 422, "low_accuracy"),
    ],
)
async def test_bad_pings_are_4xx(client, principals, setup, body, status, code) -> None:
    cid, _ = setup
    _, headers = await ready_worker(client, principals, cid, None)
    r = await client.post("/v1/workers/me/location", json=body, headers=headers)
    assert r.status_code == status and r.json()["code"] == code


async def test_ping_without_profile_is_409(client, principals, setup) -> None:
    _, headers = await principals.user("worker")
    r = await client.post(
        "/v1/workers/me/location", json={"lat": 31.2, "lng": 121.4}, headers=headers
    )
    assert r.status_code == 409 and r.json()["code"] == "no_profile"


async def test_ping_without_community_is_409_until_one_is_joined(client, principals, setup) -> None:
    cid, _ = setup
    wid, headers = await principals.user("worker")
    profile = {"name": f"W{wid}", "skills": ["plumbing"], "community_ids": []}
    assert (await client.put("/v1/workers/me", json=profile, headers=headers)).status_code == 200
    ping = {"lat": CENTER[0], "lng": CENTER[1]}
    r = await client.post("/v1/workers/me/location", json=ping, headers=headers)
    assert r.status_code == 409 and r.json()["code"] == "no_community"
    profile["community_ids"] = [cid]
    assert (await client.put("/v1/workers/me", json=profile, headers=headers)).status_code == 200
    r = await client.post("/v1/workers/me/location", json=ping, headers=headers)
    assert r.status_code == 204, r.text


async def test_batch_applies_in_time_order_and_reports_each_point(
    client, principals, setup
) -> None:
    cid, ops = setup
    wid, headers = await ready_worker(client, principals, cid, None)
    now = datetime.now(UTC)
    a, b = destination(*CENTER, 0.0, 50), destination(*CENTER, 0.0, 100)
    points = [
        {"lat": b[0], "lng": b[1], "recorded_at": (now - timedelta(seconds=10)).isoformat()},
        {"lat": a[0], "lng": a[1], "recorded_at": (now - timedelta(seconds=20)).isoformat()},
        {"lat": 31.2, "lng": 121.4, "recorded_at": "2999-01-01T00:00:00Z"},
        {"lat": b[0], "lng": b[1], "recorded_at": (now - timedelta(seconds=10)).isoformat()},
        {"lat": 40.0, "lng": 116.0, "recorded_at": (now - timedelta(seconds=5)).isoformat()},
    ]
    r = await client.post("/v1/workers/me/locations", json={"points": points}, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json() == {
        "accepted": 2,
        "ignored": 1,
        "rejected": [
            {"index": 2, "code": "timestamp_in_future"},
            {"index": 4, "code": "impossible_speed"},
        ],
    }
    found = (
        await client.get(
            "/v1/workers/nearby", params={"lat": b[0], "lng": b[1], "radius_m": 10}, headers=ops
        )
    ).json()
    assert [w["worker_id"] for w in found] == [wid]


async def test_resident_sees_only_snapped_positions(client, principals, setup) -> None:
    cid, _ = setup
    spot = destination(*CENTER, 77.0, 777)
    await ready_worker(client, principals, cid, spot)
    _, resident = await principals.user("resident")
    r = await client.get(
        "/v1/workers/nearby", params={"lat": CENTER[0], "lng": CENTER[1]}, headers=resident
    )
    assert r.status_code == 200
    (w,) = r.json()
    clat, clng = h3.cell_to_latlng(h3.latlng_to_cell(spot[0], spot[1], 7))
    assert (w["location"]["lat"], w["location"]["lng"]) == pytest.approx((clat, clng))
    assert w["distance_m"] % 100 == 0
    raw = json.dumps(r.json())
    for value in spot:
        for digits in (4, 5, 6):
            assert f"{value:.{digits}f}" not in raw, "a raw coordinate leaked"


async def test_operator_cannot_search_another_community(client, principals, setup) -> None:
    admin = await principals.admin()
    other = await community(client, admin, name="Elsewhere", center={"lat": 39.9, "lng": 116.4})
    r = await client.get(
        "/v1/workers/nearby",
        params={"lat": CENTER[0], "lng": CENTER[1]},
        headers=await principals.operator(other),
    )
    assert r.status_code == 403 and r.json()["code"] == "not_yours"
    _, worker = await principals.user("worker")
    r = await client.get("/v1/workers/nearby", params={"lat": 0, "lng": 0}, headers=worker)
    assert r.status_code == 403


async def test_index_is_rebuilt_from_the_database_after_redis_loses_everything(
    client, principals, setup, redis
) -> None:
    cid, ops = setup
    a, _ = await ready_worker(client, principals, cid, destination(*CENTER, 0.0, 200))
    b, _ = await ready_worker(client, principals, cid, destination(*CENTER, 180.0, 300))
    await ready_worker(client, principals, cid, CENTER, verified=False)
    assert await nearby_ids(client, ops) == [a, b]
    await redis.flushall()
    assert await nearby_ids(client, ops) == []
    r = await client.post(f"/v1/ops/communities/{cid}/rebuild-index", headers=ops)
    assert r.status_code == 200 and r.json() == {"workers": 3}
    assert await nearby_ids(client, ops) == [a, b]


async def test_rebuilds_racing_presence_changes_leave_each_worker_as_they_last_were(
    app, client, principals, setup
) -> None:
    """Rebuilds read a snapshot and write it worker by worker; presence changes commit and
    publish meanwhile. With real concurrency (the rebuild endpoint again and again while eight
    workers go on and off line), every worker ends in the index as their last change left them:
    no rebuild's older read overwrites a newer publish, in either order (the index's stamps)."""
    import random

    from dispatch.infra import aftercommit

    cid, ops = setup
    workers = [
        await ready_worker(client, principals, cid, destination(*CENTER, 45.0 * i, 100 + 30 * i))
        for i in range(8)
    ]
    await app.state.runtime.workers.positions.flush()  # the rebuild reads positions from rows
    rng = random.Random(17)
    last: dict[int, bool] = {w: True for w, _ in workers}

    async def toggle(wid: int, headers: dict[str, str]) -> None:
        await asyncio.sleep(rng.random() * 0.01)
        online = not last[wid]
        r = await client.post(
            "/v1/workers/me/presence",
            json={"status": "online" if online else "offline"},
            headers=headers,
        )
        assert r.status_code == 200, r.text
        last[wid] = online

    async def rebuild() -> None:
        r = await client.post(f"/v1/ops/communities/{cid}/rebuild-index", headers=ops)
        assert r.status_code == 200, r.text

    for round_ in range(15):  # each round's last word is a change or a rebuild, by chance
        await asyncio.gather(rebuild(), *(toggle(w, h) for w, h in workers))
        await aftercommit.drain()
        expected = sorted(w for w, on in last.items() if on)
        assert sorted(await nearby_ids(client, ops)) == expected, f"round {round_}"


async def test_a_worker_the_index_lost_is_found_again_by_their_next_ping(
    app, client, principals, setup
) -> None:
    """A worker whose status the index no longer holds (a rebuild cut short, Redis losing keys)
    is published from the database by their next ping, not left unsearchable until the next
    change of theirs."""
    cid, ops = setup
    wid, headers = await ready_worker(client, principals, cid, CENTER)
    assert await nearby_ids(client, ops) == [wid]
    await app.state.runtime.live.remove(cid, wid)
    assert await nearby_ids(client, ops) == []
    spot = destination(*CENTER, 90.0, 40)
    r = await client.post(
        "/v1/workers/me/location", json={"lat": spot[0], "lng": spot[1]}, headers=headers
    )
    assert r.status_code == 204, r.text
    assert await nearby_ids(client, ops) == [wid]


async def test_a_starting_process_rebuilds_indexes_redis_lost(
    app, client, principals, setup, redis, settings
) -> None:
    cid, ops = setup
    wid, _ = await ready_worker(client, principals, cid, CENTER)
    await app.state.runtime.workers.positions.flush()  # as the 2 s write-behind would have
    await redis.flushall()
    fresh = create_app(settings)
    async with fresh.lifespan():
        rt = fresh.state.runtime
        for _ in range(100):
            if await rt.live.search(cid, *CENTER, 100):
                break
            await asyncio.sleep(0.05)
        found = await rt.live.search(cid, *CENTER, 100)
    assert [n.worker_id for n in found] == [wid]
    assert await nearby_ids(client, ops) == [wid]
