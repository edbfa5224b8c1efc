"""The check-in ladder with a clock the test drives (`DurableTimers.fire_due(now)`), delivered for
real: texts and the safety call go through the twilio library to the local Twilio API, and the
call's `<Gather>` answer comes back as a signed webhook. Each step in order, exactly once, stopped
by a check-in at any step; a forged or unsigned answer is 403 and checks nobody in; a job that
overruns asks once."""

from __future__ import annotations

from datetime import datetime, timedelta
from urllib.parse import urlsplit

import pytest
from sqlalchemy import text

from tests.dispatch.helpers import CENTER, escrow_held
from tests.notifications.conftest import (
    assign,
    live_settings,
    make_world,
    outbox,
    post_job,
    sign,
    wait_for,
    worker,
)

LADDER = ["remind", "sms", "call", "alert", "contacts"]
OPS_LINE = "+12025550199"  # a platform number, like the proxies


@pytest.fixture
def settings(base_settings, twilio_peer, vapid_key):
    return live_settings(base_settings, twilio_peer, vapid_key)


async def started(client, principals, **dispatch):
    """A job in a safety category, started with the resident's PIN; its worker has two
    emergency contacts."""
    world = await make_world(
        client, principals, safety_categories=["moving"], checkin_interval_min=30,
        checkin_grace_min=5, operators_phone=OPS_LINE, **dispatch,
    )  # fmt: skip
    w = await worker(client, principals, world)
    contacts = {"contacts": [{"name": "Mum", "phone": "+8613900005678"},
                             {"name": "Wei", "phone": "+8613800001234"}]}  # fmt: skip
    r = await client.put("/v1/me/emergency-contacts", json=contacts, headers=w.headers)
    assert r.status_code == 200, r.text
    return world, w, await start_a_job(client, world, w, "ladder-1")


async def start_a_job(client, world, w, key: str) -> dict:
    """A job posted, taken by `w` and started with the resident's PIN."""
    job = await post_job(client, world.resident, key)
    taken = await assign(client, w, job["id"])
    pin = (await client.get(f"/v1/jobs/{job['id']}", headers=world.resident.headers)).json()[
        "start_pin"
    ]
    body = {"pin": pin, "location": {"lat": CENTER[0], "lng": CENTER[1]},
            "assignment_version": taken["assignment_version"]}  # fmt: skip
    r = await client.post(f"/v1/jobs/{job['id']}/start", json=body, headers=w.headers)
    assert r.status_code == 200, r.text
    return taken


async def ladder_of(client, job_id, headers) -> list[dict]:
    r = await client.get(f"/v1/jobs/{job_id}/safety", headers=headers)
    assert r.status_code == 200, r.text
    return r.json()["ladder"]


def at(iso: str) -> datetime:
    return datetime.fromisoformat(iso.replace("Z", "+00:00"))


async def test_each_step_in_order_exactly_once(
    app, client, principals, engine, twilio_peer
) -> None:
    world, w, job = await started(client, principals)
    durable = app.state.runtime.durable
    await escrow_held(app)
    [first] = await ladder_of(client, job["id"], w.headers)
    assert (first["step"], first["reason"], first["outcome"]) == ("remind", "periodic", "pending")
    missed = at(first["due_at"])  # 30 min after the start, plus 5 of grace
    assert await durable.fire_due(missed - timedelta(seconds=1)) == 0
    for i, step in enumerate(LADDER):
        due = missed + timedelta(minutes=5 * i)
        assert await durable.fire_due(due) == 1, step
        assert await durable.fire_due(due + timedelta(seconds=30)) == 0  # once
        shown = await ladder_of(client, job["id"], world.operator)
        assert [s["step"] for s in shown] == LADDER[: i + 2 if i + 1 < len(LADDER) else i + 1]
        assert shown[i]["outcome"] != "pending" and shown[i]["done_at"] is not None
    outcomes = [s["outcome"] for s in await ladder_of(client, job["id"], w.headers)]
    assert outcomes == ["reminded", "texted", "called", "alerted", "contacts_texted:2"]

    [reminder] = await outbox(engine, kind="checkin_remind")
    assert reminder["to_user_id"] == w.id and reminder["channel"] == "app"
    texts = await wait_for(
        lambda: settled(_sent_to(twilio_peer, w.phone) if len(twilio_peer.calls) == 1 else None)
    )
    assert len(texts) == 1 and "check in" in texts[0]["body"].lower()
    [call] = twilio_peer.calls
    assert call["to"] == w.phone and "<Gather" in call["twiml"] and "Press 1" in call["twiml"]
    alerts = await client.get(
        f"/v1/ops/communities/{world.community_id}/alerts", headers=world.operator
    )
    missed_alerts = [a for a in alerts.json() if a["kind"] == "missed_checkin"]
    assert [(a["severity"], a["job_id"]) for a in missed_alerts] == [("high", job["id"])]
    to_contacts = await wait_for(
        lambda: settled([m for m in twilio_peer.messages
                         if m["to"] in ("+8613900005678", "+8613800001234")] or None)
    )  # fmt: skip
    assert len(to_contacts) == 2
    for m in to_contacts:
        assert OPS_LINE in m["body"] and "Jing'an" in m["body"]
        assert w.phone not in m["body"] and world.resident.phone not in m["body"]
    # Nothing more to climb, however often the timers are swept.
    assert await durable.fire_due(missed + timedelta(hours=3)) == 1  # the overrun question
    assert [s["step"] for s in await ladder_of(client, job["id"], w.headers)][-1] == "remind"


async def settled(value):
    return value


def _sent_to(peer, phone: str) -> list[dict]:
    return [m for m in peer.messages if m["to"] == phone and "check" in m["body"].lower()]


@pytest.mark.parametrize("stop_after", range(len(LADDER)))
async def test_a_checkin_at_any_step_stops_the_ladder(
    app, client, principals, engine, stop_after
) -> None:
    _, w, job = await started(client, principals)
    durable = app.state.runtime.durable
    await escrow_held(app)
    [first] = await ladder_of(client, job["id"], w.headers)
    missed = at(first["due_at"])
    for i in range(stop_after + 1):
        assert await durable.fire_due(missed + timedelta(minutes=5 * i)) == 1
    checkin = {"kind": "periodic", "location": {"lat": CENTER[0], "lng": CENTER[1]}}
    r = await client.post(f"/v1/jobs/{job['id']}/checkins", json=checkin, headers=w.headers)
    assert r.status_code == 201, r.text
    shown = await ladder_of(client, job["id"], w.headers)
    old = [s for s in shown if s["outcome"] != "pending"]
    done = [s["step"] for s in old if s["outcome"] != "stopped"]
    assert done == LADDER[: stop_after + 1]
    if stop_after + 1 < len(LADDER):  # the step armed next never happens
        assert [s["outcome"] for s in old[stop_after + 1 :]] == ["stopped"]
    # The next periodic check-in is due an interval after this one: a fresh ladder, from step 1.
    [fresh] = [s for s in shown if s["outcome"] == "pending"]
    assert fresh["step"] == "remind"
    checked = at(r.json()["created_at"])
    assert at(fresh["due_at"]) == checked + timedelta(minutes=35)
    # The stopped steps never happen, whenever the timers are swept.
    await durable.fire_due(missed + timedelta(minutes=29))
    kinds = {"sms": "checkin", "call": "checkin_call", "contacts": "checkin_contacts"}
    for step in LADDER[stop_after + 1 :]:
        if step in kinds:
            assert await outbox(engine, kind=kinds[step]) == [], step


async def test_pressing_1_on_the_safety_call_checks_in(
    app, client, principals, engine, twilio_peer
) -> None:
    world, w, job = await started(client, principals)
    durable = app.state.runtime.durable
    await escrow_held(app)
    [first] = await ladder_of(client, job["id"], w.headers)
    missed = at(first["due_at"])
    for i in range(3):  # remind, sms, call
        assert await durable.fire_due(missed + timedelta(minutes=5 * i)) == 1
    await wait_for(lambda: settled(twilio_peer.calls))
    [call] = twilio_peer.calls
    action = call["twiml"].split('action="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
    parts = urlsplit(action)
    path = f"{parts.path}?{parts.query}"
    answer = {"CallSid": call["sid"], "Digits": "1", "From": call["from_"], "To": w.phone}

    async def checkins() -> int:
        async with engine.connect() as conn:
            return await conn.scalar(text("SELECT count(*) FROM checkins WHERE source = 'call'"))

    forged = [
        {},  # unsigned
        sign(path, answer, token="someone-elses-token"),
        sign(path.replace(f"job_id={job['id']}", "job_id=999"), answer),  # another job's URL
        sign(path, {**answer, "Digits": "2"}),  # signed for another key
    ]
    for headers in forged:
        r = await client.post(path, data=answer, headers=headers)
        assert r.status_code == 403 and r.json()["code"] == "invalid_signature"
    assert await checkins() == 0
    wrong_key = {**answer, "Digits": "9"}
    r = await client.post(path, data=wrong_key, headers=sign(path, wrong_key))
    assert r.status_code == 200 and "not checked in" in r.text
    assert await checkins() == 0
    r = await client.post(path, data=answer, headers=sign(path, answer))
    assert r.status_code == 200 and "You are checked in" in r.text
    assert r.headers["content-type"].startswith("application/xml")
    assert await checkins() == 1
    shown = await ladder_of(client, job["id"], world.operator)
    old = [s["outcome"] for s in shown if s["outcome"] != "pending"]
    assert old == ["reminded", "texted", "called", "stopped"]
    r = await client.get(f"/v1/jobs/{job['id']}/safety", headers=world.operator)
    assert [c["source"] for c in r.json()["checkins"]][-1] == "call"
    # No alert is raised: the worker answered before the ladder reached operators.
    await durable.fire_due(missed + timedelta(minutes=16))
    async with engine.connect() as conn:
        assert await conn.scalar(text("SELECT count(*) FROM alerts")) == 0


async def test_an_overrunning_job_asks_once(app, client, principals, engine) -> None:
    """A job needing no periodic check-ins (daytime, no safety category) still asks once when it
    runs `overrun_min` past its typical duration, on the same ladder."""
    world = await make_world(
        client, principals, typical_duration_min={"moving": 60}, overrun_min=30,
        night_hours=[0, 0],
    )  # fmt: skip
    w = await worker(client, principals, world)
    job = taken = await start_a_job(client, world, w, "overrun-1")
    durable = app.state.runtime.durable
    await escrow_held(app)
    assert await ladder_of(client, job["id"], w.headers) == []
    safety = (await client.get(f"/v1/jobs/{job['id']}/safety", headers=w.headers)).json()
    assert safety["requires_checkins"] is False
    started_at = at(safety["started_at"])
    assert await durable.fire_due(started_at + timedelta(minutes=89)) == 0
    assert await durable.fire_due(started_at + timedelta(minutes=90, seconds=1)) == 1
    [ask] = await ladder_of(client, job["id"], w.headers)
    assert (ask["step"], ask["reason"], ask["outcome"]) == ("remind", "overrun", "pending")
    assert await durable.fire_due(started_at + timedelta(minutes=91)) == 1
    [reminder] = await outbox(engine, kind="checkin_remind")
    assert "longer than expected" in reminder["body"]
    # Completing the job ends the question.
    r = await client.post(
        f"/v1/jobs/{job['id']}/complete",
        json={"assignment_version": taken["assignment_version"]}, headers=w.headers,
    )  # fmt: skip
    assert r.status_code == 200, r.text
    assert [s["outcome"] for s in await ladder_of(client, job["id"], w.headers)] == [
        "reminded", "stopped",
    ]  # fmt: skip
    assert await durable.fire_due(started_at + timedelta(hours=5)) == 0


async def test_no_contact_number_in_any_log_line(
    app, client, principals, engine, twilio_peer, capfd
) -> None:
    """The ladder texts the contacts (the provider refuses one, naming it in its error) and the
    worker presses SOS: the contacts' numbers appear in no log line and no response but the
    admin's outbox (whose bodies are hidden too)."""
    _, w, job = await started(client, principals)
    twilio_peer.reject_to("+8613800001234", code=21211)
    durable = app.state.runtime.durable
    await escrow_held(app)
    [first] = await ladder_of(client, job["id"], w.headers)
    missed = at(first["due_at"])
    for i in range(len(LADDER)):
        assert await durable.fire_due(missed + timedelta(minutes=5 * i)) == 1
    r = await client.post(f"/v1/jobs/{job['id']}/sos", json={}, headers=w.headers)
    assert r.status_code == 202

    async def settled_contacts():
        rows = await outbox(engine, kind="checkin_contacts")
        return rows if rows and all(m["status"] in ("sent", "dead") for m in rows) else None

    rows = await wait_for(settled_contacts)
    assert sorted(m["status"] for m in rows) == ["dead", "sent"]
    out, err = capfd.readouterr()
    logs = out + err
    for phone in ("+8613900005678", "+8613800001234"):
        assert phone not in logs and phone[1:] not in logs and phone[3:] not in logs
