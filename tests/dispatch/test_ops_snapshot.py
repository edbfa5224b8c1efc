"""The console's snapshot of a community: the open job with its wave's reach and pending offers,
each worker's state as the job moves (offered, assigned, on site, idle), supply and demand per H3
cell, open alerts most severe first, the event stream's position; and only its operators."""

from __future__ import annotations

import h3

from geo.areas import destination
from tests.dispatch.helpers import CENTER, community, escrow_held
from tests.dispatch.test_grab import crew, offers_of, post_job


async def snapshot(client, cid, headers) -> dict:
    r = await client.get(f"/v1/ops/communities/{cid}/snapshot", headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


def states(snap: dict) -> dict[int, str]:
    return {w["id"]: w["state"] for w in snap["workers"]}


async def test_the_snapshot_follows_a_job(client, principals, admin, resident) -> None:
    cid = await community(client, admin)
    ops = await principals.operator(cid)
    team = await crew(client, principals, cid, [100, 200, 300, 2000])
    (w1, h1), (w2, _), (w3, _), (far, _) = team
    empty = await snapshot(client, cid, ops)
    assert empty["community"]["id"] == cid and empty["community"]["radius_m"] == 3000
    assert empty["jobs"] == [] and set(states(empty).values()) == {"idle"}
    assert sum(c["supply"] for c in empty["cells"]) == 4
    assert all(len(c["boundary"]) == 6 for c in empty["cells"])  # H3 hexagons
    # Every cell over the area is listed (empty ones too), so a console can count live in any.
    listed = {c["cell"] for c in empty["cells"]}
    for bearing in range(0, 360, 30):
        assert h3.latlng_to_cell(*destination(*CENTER, bearing, 2900), 8) in listed
    assert len(listed) > 40 and empty["location_max_age_s"] > 0
    assert empty["map_style_url"] is None
    dots = {w["id"]: w for w in empty["workers"]}
    assert dots[w1]["available"] is True
    assert dots[w1]["cell"] == h3.latlng_to_cell(*destination(*CENTER, 0.0, 100), 8)

    job = await post_job(client, resident, key="snap-1")
    snap = await snapshot(client, cid, ops)
    [pin] = snap["jobs"]
    assert (pin["id"], pin["status"], pin["wave"], pin["wave_radius_m"]) == (
        job["id"], "open", 1, 1000,
    )  # fmt: skip
    assert pin["pending_offers"] == 3 and pin["wave_deadline"] is not None
    assert pin["location"] == {"lat": CENTER[0], "lng": CENTER[1]}
    assert states(snap) == {w1: "offered", w2: "offered", w3: "offered", far: "idle"}
    job_cell = h3.latlng_to_cell(*CENTER, 8)
    [here] = [c for c in snap["cells"] if c["cell"] == job_cell]
    assert here["demand"] == 1 and pin["cell"] == job_cell
    assert sum(c["supply"] for c in snap["cells"]) == 1  # only the far one is free

    (offer,) = [o for o in await offers_of(client, h1) if o["job_id"] == job["id"]]
    taken = (await client.post(f"/v1/offers/{offer['id']}/accept", headers=h1)).json()
    snap = await snapshot(client, cid, ops)
    assert snap["jobs"][0]["status"] == "assigned" and snap["jobs"][0]["worker_id"] == w1
    assert snap["jobs"][0]["wave_radius_m"] is None and snap["jobs"][0]["pending_offers"] == 0
    assert states(snap) == {w1: "assigned", w2: "idle", w3: "idle", far: "idle"}
    assert sum(c["demand"] for c in snap["cells"]) == 0

    pin_code = (await client.get(f"/v1/jobs/{job['id']}", headers=resident)).json()["start_pin"]
    body = {"pin": pin_code, "location": {"lat": CENTER[0], "lng": CENTER[1]},
            "assignment_version": taken["assignment_version"]}  # fmt: skip
    assert (await client.post(f"/v1/jobs/{job['id']}/start", json=body, headers=h1)).is_success
    r = await client.post(f"/v1/jobs/{job['id']}/sos", json={}, headers=resident)
    assert r.status_code == 202
    snap = await snapshot(client, cid, ops)
    assert states(snap)[w1] == "on_site"
    assert snap["jobs"][0]["status"] == "in_progress" and snap["jobs"][0]["sos"] is True
    assert snap["alerts"][0]["kind"] == "sos" and snap["alerts"][0]["severity"] == "critical"
    assert snap["event_id"] != empty["event_id"]  # the stream moved on


async def test_only_the_communitys_operators(client, principals, admin, resident) -> None:
    cid = await community(client, admin)
    other = await community(client, admin, name="Xuhui")
    assert (await client.get(f"/v1/ops/communities/{cid}/snapshot", headers=admin)).is_success
    theirs = await principals.operator(other)
    r = await client.get(f"/v1/ops/communities/{cid}/snapshot", headers=theirs)
    assert r.status_code == 403
    r = await client.get(f"/v1/ops/communities/{cid}/snapshot", headers=resident)
    assert r.status_code == 403


async def test_a_quiet_worker_shows_on_the_job(app, client, principals, admin, resident) -> None:
    """A job that must check in shows its ladder: the next step and, once one has fired, the
    latest with its outcome."""
    from datetime import datetime, timedelta

    cid = await community(client, admin, dispatch={"safety_categories": ["moving"]})
    ops = await principals.operator(cid)
    ((_, h),) = await crew(client, principals, cid, [100])
    job = await post_job(client, resident, key="quiet-1")
    (offer,) = await offers_of(client, h)
    taken = (await client.post(f"/v1/offers/{offer['id']}/accept", headers=h)).json()
    pin_code = (await client.get(f"/v1/jobs/{job['id']}", headers=resident)).json()["start_pin"]
    body = {"pin": pin_code, "location": {"lat": CENTER[0], "lng": CENTER[1]},
            "assignment_version": taken["assignment_version"]}  # fmt: skip
    assert (await client.post(f"/v1/jobs/{job['id']}/start", json=body, headers=h)).is_success
    [pin] = (await snapshot(client, cid, ops))["jobs"]
    assert pin["next_step"]["step"] == "remind" and pin["last_step"] is None
    due = datetime.fromisoformat(pin["next_step"]["at"].replace("Z", "+00:00"))
    await escrow_held(app)
    assert await app.state.runtime.durable.fire_due(due + timedelta(seconds=1)) == 1
    [pin] = (await snapshot(client, cid, ops))["jobs"]
    assert (pin["last_step"]["step"], pin["last_step"]["outcome"]) == ("remind", "reminded")
    assert pin["next_step"]["step"] == "sms"
