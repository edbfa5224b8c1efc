"""The local default: no Twilio credentials, no VAPID key. Messages stay in the outbox as `held`
(admins read them there), webhooks cannot be verified so they are refused, and push subscriptions
are still validated and kept for when a key is configured."""

from __future__ import annotations

from tests.notifications.conftest import (
    make_world,
    outbox,
    post_job,
    sign,
    wait_for,
    worker,
)
from tests.notifications.peers.push_service import PushServicePeer, b64url, b64url_decode


async def test_an_offer_to_an_offline_worker_is_held_for_admins(client, principals, engine):
    world = await make_world(client, principals)
    w = await worker(client, principals, world)
    job = await post_job(client, world.resident, "k1")

    async def held():
        rows = [r for r in await outbox(engine, kind="offer") if r["to_user_id"] == w.id]
        return rows if rows and rows[0]["status"] == "held" else None

    [row] = await wait_for(held)
    assert row["via"] == "held" and row["provider"] is None
    listing = await client.get("/v1/admin/outbox", params={"channel": "held"}, headers=world.admin)
    [shown] = [m for m in listing.json() if m["id"] == row["id"]]
    assert job["title"] in shown["body"]


async def test_otp_is_held_at_once(client, principals):
    admin = await principals.admin()
    assert (await client.post("/v1/auth/otp", json={"phone": "+8613812345670"})).status_code == 202
    [row] = (await client.get("/v1/admin/outbox", headers=admin)).json()
    assert row["status"] == "held" and "sign-in code" in row["body"]


async def test_webhooks_are_refused_without_a_token(client):
    params = {"From": "+8613700000000", "To": "+12025550101", "CallSid": "CA" + "0" * 32}
    for path in ("/v1/telephony/voice", "/v1/telephony/sms", "/v1/telephony/status"):
        r = await client.post(path, data=params, headers=sign(path, params))
        assert r.status_code == 403 and r.json()["code"] == "invalid_signature"


async def test_push_subscriptions_are_validated(client, principals):
    world = await make_world(client, principals)
    w = await worker(client, principals, world)
    path = "/v1/workers/me/push-subscriptions"
    async with PushServicePeer() as peer:
        sub = peer.new_subscription()
    # Plain http is refused unless PUSH_ALLOW_HTTP: real push services are https.
    r = await client.post(path, json=sub, headers=w.headers)
    assert r.status_code == 422 and r.json()["code"] == "invalid_subscription"
    https = {**sub, "endpoint": "https://push.example.net/send/abc123"}
    point = bytearray(b64url_decode(https["keys"]["p256dh"]))
    point[-1] ^= 1  # off the curve
    bad_point = {**https, "keys": {**https["keys"], "p256dh": b64url(bytes(point))}}
    r = await client.post(path, json=bad_point, headers=w.headers)
    assert r.status_code == 422
    short_auth = {**https, "keys": {**https["keys"], "auth": "AAAAAAAAAAAAAAAAAAAAAA"[:16]}}
    assert (await client.post(path, json=short_auth, headers=w.headers)).status_code == 422
    assert (
        await client.post(path, json={"endpoint": https["endpoint"]}, headers=w.headers)
    ).status_code == 400
    creds = {**https, "endpoint": "https://user:pw@push.example.net/x"}
    assert (await client.post(path, json=creds, headers=w.headers)).status_code == 422

    first = await client.post(path, json=https, headers=w.headers)
    again = await client.post(path, json=https, headers=w.headers)
    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == again.json()["id"]
    assert len((await client.get(path, headers=w.headers)).json()) == 1
    r = await client.post(path, json=https, headers=world.resident.headers)
    assert r.status_code == 403  # residents have no worker push channel
    gone = await client.delete(path, params={"endpoint": https["endpoint"]}, headers=w.headers)
    assert gone.status_code == 204
    gone = await client.delete(path, params={"endpoint": https["endpoint"]}, headers=w.headers)
    assert gone.status_code == 404 and gone.json()["code"] == "subscription_not_found"


async def test_job_messages_need_a_counterpart_and_text(client, principals):
    world = await make_world(client, principals)
    job = await post_job(client, world.resident, "k1")
    path = f"/v1/jobs/{job['id']}/messages"
    r = await client.post(path, json={"text": "hello"}, headers=world.resident.headers)
    assert r.status_code == 409 and r.json()["code"] == "no_counterpart"
    r = await client.post(path, json={"text": "   "}, headers=world.resident.headers)
    assert r.status_code == 400
    r = await client.post(path, json={"text": "x\u0000y"}, headers=world.resident.headers)
    assert r.status_code == 400
    stranger = await worker(client, principals, world)
    r = await client.post(path, json={"text": "hi"}, headers=stranger.headers)
    assert r.status_code == 403
