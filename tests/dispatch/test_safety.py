"""Safety on site through the API: the start PIN (the resident's alone; five wrong tries lock it
and tell operators) and geofenced check-ins (the boundary, imprecise fixes, bad coordinates)."""

from __future__ import annotations

from sqlalchemy import text

from geo.areas import destination
from tests.dispatch.helpers import CENTER, community
from tests.dispatch.test_grab import crew, offers_of, post_job


async def assigned_job(client, principals, admin, resident, key="s1"):
    cid = await community(client, admin)
    ((wid, h),) = await crew(client, principals, cid, [100])
    await post_job(client, resident, key=key)
    (offer,) = await offers_of(client, h)
    r = await client.post(f"/v1/offers/{offer['id']}/accept", headers=h)
    assert r.status_code == 200, r.text
    return cid, wid, h, r.json()


async def test_the_pin_is_the_residents_and_five_wrong_tries_lock_it(
    client, principals, admin, resident
) -> None:
    cid, _, h, job = await assigned_job(client, principals, admin, resident)
    assert job.get("start_pin") is None  # the worker's own answer has no PIN
    mine = (await client.get(f"/v1/jobs/{job['id']}", headers=resident)).json()
    pin = mine["start_pin"]
    assert len(pin) == 4 and pin.isdigit()
    ops = await principals.operator(cid)
    assert (await client.get(f"/v1/jobs/{job['id']}", headers=ops)).json()["start_pin"] is None
    assert (await client.get(f"/v1/jobs/{job['id']}", headers=h)).json()["start_pin"] is None
    wrong = f"{(int(pin) + 1) % 10000:04d}"
    body = {"pin": wrong, "location": {"lat": CENTER[0], "lng": CENTER[1]},
            "assignment_version": job["assignment_version"]}  # fmt: skip
    stale = await client.post(
        f"/v1/jobs/{job['id']}/start", json={**body, "pin": pin, "assignment_version": 99},
        headers=h,
    )  # fmt: skip
    assert stale.status_code == 409 and stale.json()["code"] == "stale_assignment"
    for tries_left in (4, 3, 2, 1):
        r = await client.post(f"/v1/jobs/{job['id']}/start", json=body, headers=h)
        assert r.status_code == 422 and r.json()["code"] == "wrong_pin"
        assert f"{tries_left} tries left" in r.json()["detail"]
    r = await client.post(f"/v1/jobs/{job['id']}/start", json=body, headers=h)
    assert r.status_code == 409 and r.json()["code"] == "pin_locked"
    r = await client.post(f"/v1/jobs/{job['id']}/start", json={**body, "pin": pin}, headers=h)
    assert r.status_code == 409 and r.json()["code"] == "pin_locked"  # locked for good
    alerts = (await client.get(f"/v1/ops/communities/{cid}/alerts", headers=ops)).json()
    assert [a["kind"] for a in alerts if a["job_id"] == job["id"]] == ["pin_locked"]


async def test_the_right_pin_starts_the_job(client, principals, admin, resident) -> None:
    _, _, h, job = await assigned_job(client, principals, admin, resident)
    pin = (await client.get(f"/v1/jobs/{job['id']}", headers=resident)).json()["start_pin"]
    body = {"pin": pin, "location": {"lat": CENTER[0], "lng": CENTER[1]},
            "assignment_version": job["assignment_version"]}  # fmt: skip
    r = await client.post(f"/v1/jobs/{job['id']}/start", json=body, headers=h)
    assert r.status_code == 200 and r.json()["status"] == "in_progress", r.text
    again = await client.post(f"/v1/jobs/{job['id']}/start", json=body, headers=h)
    assert again.status_code == 200  # a retry
    read = (await client.get(f"/v1/jobs/{job['id']}", headers=resident)).json()
    assert read["start_pin"] is None  # no longer needed
    other = (await principals.user("worker"))[1]
    r = await client.post(f"/v1/jobs/{job['id']}/start", json=body, headers=other)
    assert r.status_code == 403


async def test_geofenced_arrival(client, principals, admin, resident) -> None:
    _, _, h, job = await assigned_job(client, principals, admin, resident)
    url = f"/v1/jobs/{job['id']}/checkins"

    def at(metres: float, accuracy: float | None = None) -> dict:
        lat, lng = destination(*CENTER, 45.0, metres)
        body: dict = {"kind": "arrival", "location": {"lat": lat, "lng": lng}}
        if accuracy is not None:
            body["accuracy_m"] = accuracy
        return body

    r = await client.post(url, json=at(150.6), headers=h)
    assert r.status_code == 422 and r.json()["code"] == "outside_geofence"
    assert 150 < r.json()["distance_m"] < 151
    r = await client.post(url, json=at(20, accuracy=151), headers=h)
    assert r.status_code == 422 and r.json()["code"] == "low_accuracy"
    bad = {"kind": "arrival", "location": {"lat": 91, "lng": 0}}
    assert (await client.post(url, json=bad, headers=h)).status_code == 400
    periodic = {**at(10), "kind": "periodic"}
    r = await client.post(url, json=periodic, headers=h)
    assert r.status_code == 409 and r.json()["code"] == "not_started"
    r = await client.post(url, json=at(149.5, accuracy=150), headers=h)  # at the boundary
    assert r.status_code == 201, r.text
    assert 149 < r.json()["distance_m"] < 150
    async with principals.sessions() as session:
        told = await session.scalar(
            text("SELECT count(*) FROM outbox WHERE kind = 'arrival' AND to_user_id = :r"),
            {"r": job["resident_id"]},
        )
    assert told == 1
    other = (await principals.user("worker"))[1]
    assert (await client.post(url, json=at(10), headers=other)).status_code == 403
