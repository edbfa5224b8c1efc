"""Safety on site through the API: the start PIN (the resident's alone; five wrong tries lock it
and tell operators) and geofenced check-ins (the boundary, imprecise fixes, bad coordinates)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import text

from geo.areas import destination
from tests.dispatch.helpers import CENTER, community
from tests.dispatch.test_grab import crew, offers_of, post_job, wait_for


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


async def test_emergency_contacts_are_shown_as_hints_only(client, principals) -> None:
    _, h = await principals.user("worker")
    body = {"contacts": [{"name": "Mum", "phone": "+86 139 0000 5678"},
                         {"name": "Wei", "phone": "13800001234"}]}  # fmt: skip
    r = await client.put("/v1/me/emergency-contacts", json=body, headers=h)
    assert r.status_code == 200, r.text
    assert r.json() == [
        {"name": "Mum", "phone_hint": "…5678"},
        {"name": "Wei", "phone_hint": "…1234"},
    ]
    assert (await client.get("/v1/me/emergency-contacts", headers=h)).json() == r.json()
    four = {"contacts": [{"name": f"C{i}", "phone": f"+8613900000{i:03d}"} for i in range(4)]}
    assert (await client.put("/v1/me/emergency-contacts", json=four, headers=h)).status_code == 400
    bad = {"contacts": [{"name": "X", "phone": "12"}]}
    r = await client.put("/v1/me/emergency-contacts", json=bad, headers=h)
    assert r.status_code == 422 and r.json()["code"] == "invalid_phone"
    async with principals.sessions() as session:
        stored = (await session.execute(text("SELECT phone_enc FROM emergency_contacts"))).all()
    assert all(b"5678" not in enc and b"1234" not in enc for (enc,) in stored)


async def test_sos_is_one_critical_alert_a_minute_and_texts_the_contacts(
    client, principals, admin, resident
) -> None:
    cid, _, h, job = await assigned_job(client, principals, admin, resident)
    body = {"contacts": [{"name": "Mum", "phone": "+8613900005678"}]}
    assert (await client.put("/v1/me/emergency-contacts", json=body, headers=h)).status_code == 200
    where = {"location": {"lat": CENTER[0], "lng": CENTER[1]}, "note": "help"}
    first = await client.post(f"/v1/jobs/{job['id']}/sos", json=where, headers=h)
    assert first.status_code == 202, first.text
    again = await client.post(f"/v1/jobs/{job['id']}/sos", json={}, headers=h)
    assert again.json()["alert_id"] == first.json()["alert_id"]  # within a minute: one SOS
    by_resident = await client.post(f"/v1/jobs/{job['id']}/sos", json={}, headers=resident)
    assert by_resident.status_code == 202
    assert by_resident.json()["alert_id"] != first.json()["alert_id"]
    stranger = (await principals.user("resident"))[1]
    assert (
        await client.post(f"/v1/jobs/{job['id']}/sos", json={}, headers=stranger)
    ).status_code == 403
    ops = await principals.operator(cid)
    alerts = (await client.get(f"/v1/ops/communities/{cid}/alerts", headers=ops)).json()
    sos = [a for a in alerts if a["kind"] == "sos"]
    assert len(sos) == 2 and {a["severity"] for a in sos} == {"critical"}
    async with principals.sessions() as session:
        texts = (
            await session.execute(
                text("SELECT to_hint, priority FROM outbox WHERE kind = 'sos' AND channel = 'sms'")
            )
        ).all()
    assert [tuple(t) for t in texts] == [("…5678", 100)]  # the worker's contact, ahead of all


async def test_sos_jumps_a_backlog_of_offers(app, client, principals, admin, resident) -> None:
    """5,000 offers wait in the outbox; the relay's next batch carries the SOS text first."""
    _, _, h, job = await assigned_job(client, principals, admin, resident)
    body = {"contacts": [{"name": "Mum", "phone": "+8613900005678"}]}
    assert (await client.put("/v1/me/emergency-contacts", json=body, headers=h)).status_code == 200
    async with principals.sessions.begin() as session:
        await session.execute(
            text(
                "INSERT INTO outbox (channel, kind, to_user_id, body, payload, status, attempts, "
                "priority, created_at, updated_at) SELECT 'app', 'offer', :w, 'x', '{}', "
                "'pending', 0, 0, now(), now() FROM generate_series(1, 5000)"
            ),
            {"w": job["worker_id"]},
        )
    r = await client.post(f"/v1/jobs/{job['id']}/sos", json={}, headers=h)
    assert r.status_code == 202
    async with principals.sessions() as session:
        first = (
            await session.execute(
                text(
                    "SELECT kind FROM outbox WHERE status IN ('pending', 'sending') "
                    "ORDER BY priority DESC, next_attempt_at NULLS FIRST, id LIMIT 1"
                )
            )
        ).scalar()
    assert first == "sos"
    # And the relay running in this app does deliver it (held: no SMS provider here) while
    # most of the backlog still waits behind it.

    async def drained() -> bool:
        async with principals.sessions() as session:
            left = await session.scalar(
                text("SELECT count(*) FROM outbox WHERE status IN ('pending', 'sending')")
            )
        return left == 0

    await wait_for(drained, within=60, every=0.2)
    async with principals.sessions() as session:
        after = await session.scalar(
            text(
                "SELECT count(*) FROM outbox o, outbox s WHERE s.kind = 'sos' "
                "AND o.kind = 'offer' AND o.updated_at > s.updated_at"
            )
        )
    assert after >= 2500, after


async def test_the_safety_timeline(client, principals, admin, resident) -> None:
    cid = await community(client, admin, dispatch={"safety_categories": ["moving"]})
    ((_, h),) = await crew(client, principals, cid, [100])
    await post_job(client, resident, key="t1")
    (offer,) = await offers_of(client, h)
    job = (await client.post(f"/v1/offers/{offer['id']}/accept", headers=h)).json()
    pin = (await client.get(f"/v1/jobs/{job['id']}", headers=resident)).json()["start_pin"]
    here = {"lat": CENTER[0], "lng": CENTER[1]}
    await client.post(
        f"/v1/jobs/{job['id']}/checkins", json={"kind": "arrival", "location": here}, headers=h
    )
    r = await client.post(
        f"/v1/jobs/{job['id']}/start",
        json={"pin": pin, "location": here, "assignment_version": job["assignment_version"]},
        headers=h,
    )
    assert r.status_code == 200
    t = (await client.get(f"/v1/jobs/{job['id']}/safety", headers=resident)).json()
    assert t["status"] == "in_progress" and t["requires_checkins"] is True
    assert t["pin"] == {"set": True, "locked": False, "wrong_tries": 0}
    started = datetime.fromisoformat(t["started_at"])
    assert datetime.fromisoformat(t["next_checkin_due"]) == started + timedelta(minutes=30)
    assert [c["kind"] for c in t["checkins"]] == ["arrival"]
    r = await client.post(
        f"/v1/jobs/{job['id']}/checkins", json={"kind": "periodic", "location": here}, headers=h
    )
    assert r.status_code == 201
    later = (await client.get(f"/v1/jobs/{job['id']}/safety", headers=h)).json()
    assert datetime.fromisoformat(later["next_checkin_due"]) == datetime.fromisoformat(
        r.json()["created_at"]
    ) + timedelta(minutes=30)
    ops = await principals.operator(cid)
    assert (await client.get(f"/v1/jobs/{job['id']}/safety", headers=ops)).status_code == 200
    stranger = (await principals.user("resident"))[1]
    assert (await client.get(f"/v1/jobs/{job['id']}/safety", headers=stranger)).status_code == 403
