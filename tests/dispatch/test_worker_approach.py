"""The resident follows the assigned worker coming nearer: `worker_approach` on their job, a
distance rounded up to 100 m from the worker's last fresh position, never the position, and
only to the job's resident while it waits for the worker."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from geo.areas import destination
from tests.dispatch.helpers import CENTER, community, ready_worker
from tests.dispatch.test_grab import crew, offers_of, post_job


async def move(client, headers, metres: float, ago_s: float = 0) -> None:
    """A fix `metres` north of the centre, taken `ago_s` ago (the index refuses a jump faster
    than a person moves, so the test's walk is spread over the last minute and a half)."""
    lat, lng = destination(*CENTER, 0.0, metres)
    at = (datetime.now(UTC) - timedelta(seconds=ago_s)).isoformat()
    r = await client.post(
        "/v1/workers/me/location", json={"lat": lat, "lng": lng, "recorded_at": at},
        headers=headers,
    )  # fmt: skip
    assert r.status_code == 204, r.text


async def test_the_resident_sees_the_worker_come_nearer(
    client, principals, admin, resident
) -> None:
    cid = await community(client, admin)
    _, hw = await ready_worker(client, principals, cid, None, skills=("moving",))
    await move(client, hw, 730, ago_s=90)
    posted = await post_job(client, resident)
    assert (
        not (await client.get(f"/v1/jobs/{posted['id']}", headers=resident))
        .json()
        .get("worker_approach")
    )  # nobody has it yet
    (offer,) = await offers_of(client, hw)
    assert (await client.post(f"/v1/offers/{offer['id']}/accept", headers=hw)).status_code == 200

    job = (await client.get(f"/v1/jobs/{posted['id']}", headers=resident)).json()
    assert job["worker_approach"]["distance_m"] == 800  # 730 m, rounded up
    assert set(job["worker_approach"]) == {"distance_m", "at"}
    await move(client, hw, 120, ago_s=45)
    job = (await client.get(f"/v1/jobs/{posted['id']}", headers=resident)).json()
    assert job["worker_approach"]["distance_m"] == 200
    await move(client, hw, 3)
    job = (await client.get(f"/v1/jobs/{posted['id']}", headers=resident)).json()
    assert job["worker_approach"]["distance_m"] == 100  # never 0: "here" is the arrival's to say

    # The worker does not see it on their own view, another resident does not see the job.
    mine = (await client.get(f"/v1/jobs/{posted['id']}", headers=hw)).json()
    assert mine.get("worker_approach") is None
    _, other = await principals.user("resident")
    assert (await client.get(f"/v1/jobs/{posted['id']}", headers=other)).status_code in (403, 404)

    # Once the work is done there is nothing to follow.
    r = await client.post(
        f"/v1/jobs/{posted['id']}/complete", json={"assignment_version": 1}, headers=hw
    )
    assert r.status_code == 200, r.text
    job = (await client.get(f"/v1/jobs/{posted['id']}", headers=resident)).json()
    assert job.get("worker_approach") is None


async def test_a_stale_position_is_not_shown(client, principals, admin, resident) -> None:
    cid = await community(client, admin, dispatch={"location_max_age_s": 1})
    ((_, hw),) = await crew(client, principals, cid, [400])
    posted = await post_job(client, resident)
    (offer,) = await offers_of(client, hw)
    assert (await client.post(f"/v1/offers/{offer['id']}/accept", headers=hw)).status_code == 200
    job = (await client.get(f"/v1/jobs/{posted['id']}", headers=resident)).json()
    assert job["worker_approach"]["distance_m"] == 400
    await asyncio.sleep(1.2)
    job = (await client.get(f"/v1/jobs/{posted['id']}", headers=resident)).json()
    assert job.get("worker_approach") is None  # an old fix says nothing about where they are now
