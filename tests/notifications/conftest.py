"""Set-up for notification tests: the local Twilio API and Web Push service, settings that point
the service at them, and a job assigned to a worker with a masked number."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, replace
from typing import Any

import httpx
import pytest
from py_vapid import Vapid
from sqlalchemy import text
from twilio.request_validator import RequestValidator

from dispatch.infra.settings import Settings
from tests.conftest import Principals
from tests.dispatch.helpers import CENTER
from tests.notifications.peers.push_service import PushServicePeer, b64url
from tests.notifications.peers.twilio_api import TwilioApiPeer

SID = "AC" + "5f" * 16
TOKEN = "notifications-test-auth-token"
FROM = "+12025550100"
PUBLIC = "https://dispatch.example.org"
SUBJECT = "mailto:ops@example.org"
POOL = ["+12025550101", "+12025550102", "+12025550103"]


@pytest.fixture
async def twilio_peer():
    async with TwilioApiPeer(SID, TOKEN) as peer:
        yield peer


@pytest.fixture
async def push_peer():
    async with PushServicePeer() as peer:
        yield peer


@pytest.fixture(scope="session")
def vapid_key() -> str:
    key = Vapid()
    key.generate_keys()
    raw = key.private_key.private_numbers().private_value.to_bytes(32, "big")
    return b64url(raw)


def live_settings(base: Settings, twilio: TwilioApiPeer, vapid_key: str, **extra: Any) -> Settings:
    """The service with Twilio and Web Push configured, pointed at the local peers."""
    values: dict[str, Any] = {
        "push_allow_http": True,
        "egress_allowed_hosts": ("127.0.0.1",),  # the local push service
        "relay_backoff_s": 0.05,
        "relay_max_attempts": 3,
        "relay_lease_s": 5.0,
        **extra,
    }
    return replace(
        base,
        public_base_url=PUBLIC,
        twilio_account_sid=SID,
        twilio_auth_token=TOKEN,
        twilio_from_number=FROM,
        twilio_api_base=twilio.base_url,
        vapid_private_key=vapid_key,
        vapid_subject=SUBJECT,
        **values,
    )


def sign(url_path: str, params: dict[str, str], token: str = TOKEN) -> dict[str, str]:
    return {
        "X-Twilio-Signature": RequestValidator(token).compute_signature(PUBLIC + url_path, params)
    }


async def webhook(
    client: httpx.AsyncClient, path: str, params: dict[str, str], **sign_kw: Any
) -> httpx.Response:
    return await client.post(path, data=params, headers=sign(path, params, **sign_kw))


async def wait_for(predicate, within: float = 15.0, every: float = 0.05) -> Any:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(every)
    raise AssertionError("condition not reached in time")


async def outbox(engine, **where: Any) -> list[dict[str, Any]]:
    clause = " AND ".join(f"{k} = :{k}" for k in where) or "TRUE"
    async with engine.connect() as conn:
        sql = f"SELECT * FROM outbox WHERE {clause} ORDER BY id"  # noqa: S608 - test-given columns
        rows = await conn.execute(text(sql), where)
        return [dict(r._mapping) for r in rows]


@dataclass
class Person:
    id: int
    headers: dict[str, str]
    phone: str


@dataclass
class World:
    community_id: int
    admin: dict[str, str]
    operator: dict[str, str]
    resident: Person


async def make_world(
    client: httpx.AsyncClient, principals: Principals, pool: list[str] = POOL, **dispatch: Any
) -> World:
    admin = await principals.admin()
    body = {
        "name": "Jing'an",
        "center": {"lat": CENTER[0], "lng": CENTER[1]},
        "radius_m": 3000,
        "dispatch": {"offer_ttl_s": 30, "waves": [{"radius_m": 2000, "size": 5}], **dispatch},
    }
    r = await client.post("/v1/communities", json=body, headers=admin)
    assert r.status_code == 201, r.text
    cid = r.json()["id"]
    if pool:
        r = await client.post(
            f"/v1/communities/{cid}/proxy-numbers", json={"numbers": pool}, headers=admin
        )
        assert r.status_code == 201, r.text
    resident = await person(principals, "resident")
    return World(cid, admin, await principals.operator(cid), resident)


async def person(principals: Principals, role: str) -> Person:
    phone = principals.next_phone()
    uid, headers = await principals.user(role, phone)
    return Person(uid, headers, phone)


async def worker(client: httpx.AsyncClient, principals: Principals, world: World) -> Person:
    w = await person(principals, "worker")
    prof = {"name": f"W{w.id}", "skills": ["moving"], "community_ids": [world.community_id]}
    assert (await client.put("/v1/workers/me", json=prof, headers=w.headers)).status_code == 200
    r = await client.post(f"/v1/ops/workers/{w.id}/verify", headers=world.operator)
    assert r.status_code == 200, r.text
    r = await client.post("/v1/workers/me/presence", json={"status": "online"}, headers=w.headers)
    assert r.status_code == 200, r.text
    where = {"lat": CENTER[0] + 0.001, "lng": CENTER[1]}
    assert (
        await client.post("/v1/workers/me/location", json=where, headers=w.headers)
    ).status_code == 204
    return w


async def post_job(
    client: httpx.AsyncClient, resident: Person, key: str, title: str = "Move a sofa"
) -> dict:
    body = {
        "title": title,
        "category": "moving",
        "skills": ["moving"],
        "location": {"lat": CENTER[0], "lng": CENTER[1]},
        "mode": "grab",
        "price_cents": 8000,
    }
    r = await client.post(
        "/v1/jobs", json=body, headers={**resident.headers, "Idempotency-Key": key}
    )
    assert r.status_code == 201, r.text
    return r.json()


async def pending_offer(client: httpx.AsyncClient, w: Person, job_id: int) -> dict:
    r = await client.get("/v1/workers/me/offers", headers=w.headers)
    assert r.status_code == 200, r.text
    [offer] = [o for o in r.json() if o["job_id"] == job_id]
    return offer


async def assign(client: httpx.AsyncClient, w: Person, job_id: int) -> dict:
    offer = await pending_offer(client, w, job_id)
    r = await client.post(f"/v1/offers/{offer['id']}/accept", headers=w.headers)
    assert r.status_code == 200, r.text
    return r.json()
