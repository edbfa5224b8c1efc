"""The ping path's per-process listing cache across two real app processes: a profile change made
through one process reaches pings sent to the other at once, not when its cache expires.

Process A is the app under test in this process (`client`); process B is `dispatch serve` on the
same database and Redis. B learns a worker's communities from its first ping and keeps them for
minutes (`LISTING_TTL_S`); every later ping checks them against the profile version in the
worker's status in Redis."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest

from dispatch.workers.service import LISTING_TTL_S
from geo.areas import destination
from tests.conftest import TEST_SECRET
from tests.dispatch.helpers import CENTER, community, nearby_ids, ready_worker
from tests.processes import serving

ELSEWHERE = (39.9042, 116.4074)


@pytest.fixture
async def other_process(server_urls: tuple[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    async with serving(server_urls, TEST_SECRET) as http:
        yield http


async def test_profile_changes_reach_the_other_process_at_the_next_ping(
    client, principals, redis, other_process
) -> None:
    assert LISTING_TTL_S >= 60, "the test is meant for a cache that outlives it"
    admin = await principals.admin()
    home = await community(client, admin)
    away = await community(
        client, admin, name="Elsewhere", center={"lat": ELSEWHERE[0], "lng": ELSEWHERE[1]}
    )
    ops_home, ops_away = await principals.operator(home), await principals.operator(away)
    wid, headers = await ready_worker(client, principals, home, None)
    b = other_process
    # Pings carry times 5 s apart (within the 120 s freshness), so steps of metres are never
    # taken for more than 200 km/h however fast the test runs.
    stamps = iter(time.time() - 100 + 5 * k for k in range(20))

    async def ping_b(at: tuple[float, float]) -> None:
        body = {"lat": at[0], "lng": at[1],
                "recorded_at": datetime.fromtimestamp(next(stamps), UTC).isoformat()}  # fmt: skip
        r = await b.post("/v1/workers/me/location", json=body, headers=headers)
        assert r.status_code == 204, r.text

    # B reads the listing (home) and caches it.
    await ping_b(CENTER)
    near = destination(*CENTER, 0.0, 1)
    await ping_b(near)
    assert await nearby_ids(client, ops_home, lat=near[0], lng=near[1], radius_m=5) == [wid]

    # Through A: offline, then online again. B's pings keep their cached listing (the profile
    # version is unchanged); availability is in the index, so offline means not found at once.
    await client.post("/v1/workers/me/presence", json={"status": "offline"}, headers=headers)
    await ping_b(destination(*CENTER, 0.0, 2))
    assert await nearby_ids(client, ops_home) == []
    await client.post("/v1/workers/me/presence", json={"status": "online"}, headers=headers)
    assert await nearby_ids(client, ops_home) == [wid]

    # Through A: the worker moves to the other community. B's next ping must land there, and
    # nothing may be written for the worker in the community it left.
    r = await client.put(
        "/v1/workers/me",
        json={"name": f"W{wid}", "skills": ["plumbing"], "community_ids": [away]},
        headers=headers,
    )
    assert r.status_code == 200, r.text
    assert not await redis.hexists(f"live:{{c:{home}}}:w", str(wid))
    there = destination(*ELSEWHERE, 90.0, 100)
    await ping_b(there)
    assert not await redis.hexists(f"live:{{c:{home}}}:w", str(wid)), "B wrote by a stale listing"
    found = await nearby_ids(client, ops_away, lat=there[0], lng=there[1], radius_m=10)
    assert found == [wid]
    assert await nearby_ids(client, ops_home) == []

    # And back, serving both: B's pings go to both communities again.
    r = await client.put(
        "/v1/workers/me",
        json={"name": f"W{wid}", "skills": ["plumbing"], "community_ids": [home, away]},
        headers=headers,
    )
    assert r.status_code == 200, r.text
    await ping_b(destination(*ELSEWHERE, 90.0, 101))
    assert await redis.hexists(f"live:{{c:{home}}}:w", str(wid))

    # A worker who leaves every community gets B's 409 at the next ping, not minutes later.
    r = await client.put(
        "/v1/workers/me",
        json={"name": f"W{wid}", "skills": ["plumbing"], "community_ids": []},
        headers=headers,
    )
    assert r.status_code == 200, r.text
    r = await b.post("/v1/workers/me/location", json={"lat": there[0], "lng": there[1]},
                     headers=headers)  # fmt: skip
    assert r.status_code == 409 and r.json()["code"] == "no_community"
    assert await nearby_ids(client, ops_away, lat=there[0], lng=there[1]) == []


async def test_a_batch_by_a_stale_listing_is_moved_by_the_fresh_one(
    client, principals, redis, other_process
) -> None:
    """The same for the batch route: all points land in the new community, in time order."""
    admin = await principals.admin()
    home = await community(client, admin)
    away = await community(
        client, admin, name="Elsewhere", center={"lat": ELSEWHERE[0], "lng": ELSEWHERE[1]}
    )
    wid, headers = await ready_worker(client, principals, home, CENTER)
    b = other_process
    r = await b.post(
        "/v1/workers/me/location", json={"lat": CENTER[0], "lng": CENTER[1]}, headers=headers
    )
    assert r.status_code == 204, r.text
    r = await client.put(
        "/v1/workers/me",
        json={"name": f"W{wid}", "skills": ["plumbing"], "community_ids": [away]},
        headers=headers,
    )
    assert r.status_code == 200, r.text
    points = [destination(*ELSEWHERE, 0.0, 0.1 * k) for k in range(1, 4)]
    body = {"points": [{"lat": lat, "lng": lng} for lat, lng in points]}
    r = await b.post("/v1/workers/me/locations", json=body, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] >= 1 and r.json()["rejected"] == []
    assert not await redis.hexists(f"live:{{c:{home}}}:w", str(wid))
    assert await redis.hexists(f"live:{{c:{away}}}:w", str(wid))
