"""The check-in ladder across real processes: the service is SIGKILLed between every two steps and
restarted with its clock moved on (`DISPATCH_CLOCK_OFFSET_S`); after each restart the step now due
happens, and every step happens exactly once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import text

from tests.conftest import TEST_SECRET
from tests.dispatch.helpers import CENTER
from tests.dispatch.test_grab import wait_for
from tests.processes import ONE_AT_A_TIME, ServiceProcess

pytestmark = [pytest.mark.slow, ONE_AT_A_TIME]
LADDER = ["remind", "sms", "call", "alert", "contacts"]
EFFECTS = """
    SELECT (SELECT count(*) FROM outbox WHERE kind = 'checkin_remind'),
           (SELECT count(*) FROM outbox WHERE kind = 'checkin'),
           (SELECT count(*) FROM outbox WHERE kind = 'checkin_call'),
           (SELECT count(*) FROM alerts WHERE kind = 'missed_checkin'),
           (SELECT count(*) FROM outbox WHERE kind = 'checkin_contacts')
"""


async def started_job(http: httpx.AsyncClient, principals, base: str) -> tuple[int, datetime]:
    """A job in a safety category, started; its worker has two emergency contacts."""
    admin = await principals.admin()
    body = {"name": "Nights", "center": {"lat": CENTER[0], "lng": CENTER[1]}, "radius_m": 5000,
            "dispatch": {"safety_categories": ["moving"], "checkin_interval_min": 30,
                         "checkin_grace_min": 5}}  # fmt: skip
    r = await http.post(f"{base}/v1/communities", json=body, headers=admin)
    assert r.status_code == 201, r.text
    cid = r.json()["id"]
    ops = await principals.operator(cid)
    wid, h = await principals.user("worker")
    prof = {"name": "Li", "skills": ["moving"], "community_ids": [cid]}
    assert (await http.put(f"{base}/v1/workers/me", json=prof, headers=h)).status_code == 200
    assert (await http.post(f"{base}/v1/ops/workers/{wid}/verify", headers=ops)).status_code == 200
    contacts = {"contacts": [{"name": "Mum", "phone": "+8613900005678"},
                             {"name": "Wei", "phone": "+8613800001234"}]}  # fmt: skip
    assert (
        await http.put(f"{base}/v1/me/emergency-contacts", json=contacts, headers=h)
    ).status_code == 200
    r = await http.post(f"{base}/v1/workers/me/presence", json={"status": "online"}, headers=h)
    assert r.status_code == 200
    here = {"lat": CENTER[0] + 0.001, "lng": CENTER[1]}
    assert (
        await http.post(f"{base}/v1/workers/me/location", json=here, headers=h)
    ).status_code == 204
    resident = (await principals.user("resident"))[1]
    job = {"title": "Move a sofa", "category": "moving", "skills": ["moving"],
           "location": {"lat": CENTER[0], "lng": CENTER[1]}, "mode": "grab",
           "price_cents": 8000}  # fmt: skip
    r = await http.post(f"{base}/v1/jobs", json=job, headers={**resident, "Idempotency-Key": "n"})
    assert r.status_code == 201, r.text
    job_id = r.json()["id"]

    async def offered() -> list:
        return (await http.get(f"{base}/v1/workers/me/offers", headers=h)).json()

    await wait_for(offered, within=10)
    (offer,) = await offered()
    r = await http.post(f"{base}/v1/offers/{offer['id']}/accept", headers=h)
    assert r.status_code == 200, r.text
    version = r.json()["assignment_version"]
    pin = (await http.get(f"{base}/v1/jobs/{job_id}", headers=resident)).json()["start_pin"]
    start = {"pin": pin, "location": here, "assignment_version": version}
    r = await http.post(f"{base}/v1/jobs/{job_id}/start", json=start, headers=h)
    assert r.status_code == 200, r.text
    r = await http.get(f"{base}/v1/jobs/{job_id}/safety", headers=h)
    [first] = r.json()["ladder"]
    return job_id, datetime.fromisoformat(first["due_at"].replace("Z", "+00:00"))


async def effects(engine) -> list[int]:
    async with engine.connect() as conn:
        return list((await conn.execute(text(EFFECTS))).one())


async def test_each_step_once_with_a_sigkill_between_every_two(
    server_urls, principals, engine, clean_state
) -> None:
    first = ServiceProcess(server_urls, TEST_SECRET)
    await asyncio.to_thread(first.wait_ready)
    async with httpx.AsyncClient(timeout=30) as http:
        _, missed = await started_job(http, principals, first.base)
    first.kill()
    assert await effects(engine) == [0, 0, 0, 0, 0]
    for i, step in enumerate(LADDER):
        # The clock moved to just after step i's time: it is due, step i + 1 is not.
        due = missed + timedelta(minutes=5 * i)
        offset = str((due - datetime.now(UTC)).total_seconds() + 10)
        proc = ServiceProcess(server_urls, TEST_SECRET, DISPATCH_CLOCK_OFFSET_S=offset)
        await asyncio.to_thread(proc.wait_ready)

        async def stepped(i: int = i) -> bool:
            return sum(1 for n in await effects(engine) if n) >= i + 1

        await wait_for(stepped, within=30, every=0.2)
        proc.kill()  # SIGKILL between step i and step i + 1
        expected = [1, 1, 1, 1, 2][: i + 1] + [0] * (len(LADDER) - i - 1)
        assert await effects(engine) == expected, step
    # Long after the last step, two more lives: nothing happens again.
    later = str((missed + timedelta(minutes=60) - datetime.now(UTC)).total_seconds())
    for _ in range(2):
        proc = ServiceProcess(server_urls, TEST_SECRET, DISPATCH_CLOCK_OFFSET_S=later)
        await asyncio.to_thread(proc.wait_ready)
        await asyncio.sleep(1.5)
        proc.kill()
    assert await effects(engine) == [1, 1, 1, 1, 2]
    async with engine.connect() as conn:
        fired = (
            await conn.execute(
                text(
                    "SELECT payload->>'action', payload->>'outcome' FROM timers "
                    "WHERE kind = 'safety_step' ORDER BY due_at"
                )
            )
        ).all()
    assert [a for a, _ in fired] == LADDER
    assert [o for _, o in fired] == ["reminded", "texted", "called", "alerted", "contacts_texted:2"]
