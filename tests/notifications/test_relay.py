"""The outbox relay against the real twilio and pywebpush libraries talking to local peers:
channel preference (in-app, Web Push, SMS), dead subscriptions, retries and the dead-letter
queue, receipts in every order, and the daily SMS budget."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace

import pytest
from sqlalchemy import text

from dispatch.grab.events import worker_channel
from tests.notifications.conftest import (
    SUBJECT,
    live_settings,
    make_world,
    outbox,
    post_job,
    sign,
    wait_for,
    webhook,
    worker,
)
from tests.redis_mode import ChannelListener


@pytest.fixture
def settings(base_settings, twilio_peer, vapid_key):
    return live_settings(base_settings, twilio_peer, vapid_key)


async def offer_rows(engine, worker_id: int) -> list[dict]:
    return [r for r in await outbox(engine, kind="offer") if r["to_user_id"] == worker_id]


async def settled(engine, worker_id: int) -> dict:
    async def done():
        rows = await offer_rows(engine, worker_id)
        return rows[0] if rows and rows[0]["status"] not in ("pending", "sending") else None

    return await wait_for(done)


async def test_an_offline_worker_gets_the_offer_by_sms(client, principals, engine, twilio_peer):
    world = await make_world(client, principals)
    w = await worker(client, principals, world)
    job = await post_job(client, world.resident, "k1")
    row = await settled(engine, w.id)
    assert row["status"] == "sent" and row["via"] == "sms" and row["provider"] == "twilio"
    [sms] = [m for m in twilio_peer.messages if m["to"] == w.phone]
    assert row["provider_ref"] == sms["sid"] and "Move a sofa" in sms["body"]
    assert sms["status_callback"] == "https://dispatch.example.org/v1/telephony/status"
    assert job["title"] in sms["body"]
    # The resident heard nothing: offers go to workers only.
    assert not [m for m in twilio_peer.messages if m["to"] == world.resident.phone]


async def test_a_connected_worker_is_not_texted(client, principals, engine, redis, twilio_peer):
    world = await make_world(client, principals)
    w = await worker(client, principals, world)
    async with ChannelListener(redis, worker_channel(w.id)):  # what the worker's stream holds
        await post_job(client, world.resident, "k1")
        row = await settled(engine, w.id)
    assert row["status"] == "sent" and row["via"] == "ws"
    assert twilio_peer.messages == []


async def test_push_is_preferred_to_sms(client, principals, engine, push_peer, twilio_peer):
    world = await make_world(client, principals)
    w = await worker(client, principals, world)
    sub = push_peer.new_subscription()
    r = await client.post("/v1/workers/me/push-subscriptions", json=sub, headers=w.headers)
    assert r.status_code == 201, r.text
    job = await post_job(client, world.resident, "k1")
    row = await settled(engine, w.id)
    assert row["status"] == "sent" and row["via"] == "push"
    [pushed] = push_peer.received
    event = json.loads(pushed.payload)
    assert event["kind"] == "offer" and event["event"]["offer"]["job_id"] == job["id"]
    assert pushed.claims["sub"] == SUBJECT and pushed.urgency == "high"
    assert 0 < pushed.ttl <= 30  # no point delivering an offer after it expires
    assert twilio_peer.messages == []


async def test_a_dead_subscription_is_dropped_and_sms_follows(
    client, principals, engine, push_peer, twilio_peer
):
    world = await make_world(client, principals)
    w = await worker(client, principals, world)
    sub = push_peer.new_subscription()
    assert (
        await client.post("/v1/workers/me/push-subscriptions", json=sub, headers=w.headers)
    ).status_code == 201
    push_peer.expire(sub)
    await post_job(client, world.resident, "k1")
    row = await settled(engine, w.id)
    assert row["via"] == "sms" and row["status"] == "sent"
    r = await client.get("/v1/workers/me/push-subscriptions", headers=w.headers)
    assert r.json() == []


async def test_failures_retry_then_dead_letter_with_an_alert(
    client, principals, engine, twilio_peer
):
    world = await make_world(client, principals)
    w = await worker(client, principals, world)
    twilio_peer.fail_next(10, status=500)
    job = await post_job(client, world.resident, "k1")
    row = await settled(engine, w.id)
    assert row["status"] == "dead" and row["attempts"] == 3  # relay_max_attempts
    assert "500" in row["last_error"]
    assert twilio_peer.messages == []
    dead = await client.get("/v1/admin/outbox", params={"status": "dead"}, headers=world.admin)
    assert [m["id"] for m in dead.json()] == [row["id"]]
    alerts = await client.get(
        f"/v1/ops/communities/{world.community_id}/alerts", headers=world.operator
    )
    [alert] = [a for a in alerts.json() if a["kind"] == "delivery_failed"]
    assert alert["job_id"] == job["id"] and alert["detail"]["outbox_id"] == row["id"]


async def test_a_transient_failure_is_retried_once(client, principals, engine, twilio_peer):
    world = await make_world(client, principals)
    w = await worker(client, principals, world)
    twilio_peer.fail_next(1, status=503)
    await post_job(client, world.resident, "k1")
    row = await settled(engine, w.id)
    assert row["status"] == "sent" and row["attempts"] == 2
    assert len([m for m in twilio_peer.messages if m["to"] == w.phone]) == 1


async def test_an_unsubscribed_number_is_dead_at_once(client, principals, engine, twilio_peer):
    world = await make_world(client, principals)
    w = await worker(client, principals, world)
    twilio_peer.reject_to(w.phone, code=21610)
    await post_job(client, world.resident, "k1")
    row = await settled(engine, w.id)
    assert row["status"] == "dead" and row["attempts"] == 1 and "21610" in row["last_error"]
    assert w.phone not in row["last_error"]
    # Operators read the dead letter; the scan of every response checks it names no number.
    dead = await client.get("/v1/admin/outbox", params={"status": "dead"}, headers=world.admin)
    assert [m["last_error"] for m in dead.json()] == [row["last_error"]]


async def test_a_sign_in_code_goes_out_by_sms_and_is_not_shown(client, principals, twilio_peer):
    admin = await principals.admin()
    r = await client.post("/v1/auth/otp", json={"phone": "+8613812345678"})
    assert r.status_code == 202

    async def sent():
        return [m for m in twilio_peer.messages if m["to"] == "+8613812345678"]

    [sms] = await wait_for(sent)
    code = sms["body"].split("code is ")[1][:6]

    async def recorded():
        [row] = (await client.get("/v1/admin/outbox", headers=admin)).json()
        return row if row["status"] == "sent" else None

    row = await wait_for(recorded)
    assert row["body"] is None and row["via"] == "sms" and row["provider"] == "twilio"
    r = await client.post(
        "/v1/auth/token", json={"phone": "+8613812345678", "code": code, "role": "worker"}
    )
    assert r.status_code == 200


async def sms_rows(engine, n: int) -> list[dict]:
    async def sent():
        rows = [r for r in await outbox(engine, channel="sms") if r["provider_ref"]]
        return rows if len(rows) >= n else None

    return await wait_for(sent)


MESSAGE_ORDERS = list(itertools.permutations(["queued", "sent", "delivered"]))


async def test_message_receipts_only_move_forward_in_any_order(client, principals, engine):
    for i in range(len(MESSAGE_ORDERS)):
        r = await client.post("/v1/auth/otp", json={"phone": f"+86138000000{i:02d}"})
        assert r.status_code == 202
    rows = await sms_rows(engine, len(MESSAGE_ORDERS))
    for row, order in zip(rows, MESSAGE_ORDERS, strict=True):
        for status in order:
            params = {"MessageSid": row["provider_ref"], "MessageStatus": status,
                      "AccountSid": "AC", "To": "+8613800000000"}  # fmt: skip
            r = await webhook(client, "/v1/telephony/status", params)
            assert r.status_code == 204, r.text
    for row in await outbox(engine, channel="sms"):
        assert (row["provider_status"], row["status"]) == ("delivered", "delivered"), row
    # A failure receipt after delivery changes nothing; one before it is superseded.
    params = {"MessageSid": rows[0]["provider_ref"], "MessageStatus": "undelivered",
              "ErrorCode": "30003"}  # fmt: skip
    assert (await webhook(client, "/v1/telephony/status", params)).status_code == 204
    [first] = await outbox(engine, id=rows[0]["id"])
    assert first["status"] == "delivered" and first["last_error"] is None


async def test_an_undelivered_receipt_is_recorded(client, engine):
    assert (await client.post("/v1/auth/otp", json={"phone": "+8613800000099"})).status_code == 202
    [row] = await sms_rows(engine, 1)
    for status in ("undelivered", "sent"):
        params = {"MessageSid": row["provider_ref"], "MessageStatus": status, "ErrorCode": "30005"}
        assert (await webhook(client, "/v1/telephony/status", params)).status_code == 204
    [row] = await outbox(engine, id=row["id"])
    assert row["status"] == "undelivered" and row["last_error"] == "provider error 30005"


CALL_ORDERS = list(itertools.permutations(["ringing", "in-progress", "completed"]))


async def test_call_receipts_only_move_forward_in_any_order(client, engine):
    for i, order in enumerate(CALL_ORDERS):
        sid = f"CA{i:032d}"
        r = await webhook(
            client,
            "/v1/telephony/voice",
            {
                "From": "+8613700000000",
                "To": "+12025550101",
                "CallSid": sid,
                "CallStatus": "ringing",
            },
        )
        assert r.status_code == 200
        for status in order:
            params = {"CallSid": sid, "CallStatus": status, "CallDuration": "42"}
            assert (await webhook(client, "/v1/telephony/status", params)).status_code == 204
    async with engine.connect() as conn:
        rows = (await conn.execute(text("SELECT status, duration_s FROM call_records"))).all()
    assert len(rows) == len(CALL_ORDERS)
    assert {tuple(r) for r in rows} == {("completed", 42)}


async def test_unsigned_receipts_change_nothing(client, engine):
    assert (await client.post("/v1/auth/otp", json={"phone": "+8613800000098"})).status_code == 202
    [row] = await sms_rows(engine, 1)
    params = {"MessageSid": row["provider_ref"], "MessageStatus": "delivered"}
    r = await client.post("/v1/telephony/status", data=params)
    assert r.status_code == 403
    r = await client.post(
        "/v1/telephony/status", data=params, headers=sign("/v1/telephony/voice", params)
    )
    assert r.status_code == 403
    [row] = await outbox(engine, id=row["id"])
    assert row["provider_status"] == "queued"


async def test_garbage_receipts_are_400(client):
    r = await webhook(client, "/v1/telephony/status", {"Foo": "bar"})
    assert r.status_code == 400 and r.json()["code"] == "invalid_webhook"


class TestBudget:
    @pytest.fixture
    def settings(self, base_settings, twilio_peer, vapid_key):
        return replace(live_settings(base_settings, twilio_peer, vapid_key), sms_daily_budget=5)

    async def test_budget_alerts_at_80_percent_and_then_refuses(
        self, client, principals, engine, twilio_peer
    ):
        world = await make_world(client, principals)
        for i in range(4):
            r = await client.post("/v1/auth/otp", json={"phone": f"+861380000010{i}"})
            assert r.status_code == 202
        await sms_rows(engine, 4)
        alerts = await client.get(
            f"/v1/ops/communities/{world.community_id}/alerts", headers=world.operator
        )
        assert [a["kind"] for a in alerts.json()] == ["sms_budget_80"]
        assert (
            await client.post("/v1/auth/otp", json={"phone": "+8613800000105"})
        ).status_code == 202
        await sms_rows(engine, 5)
        r = await client.post("/v1/auth/otp", json={"phone": "+8613800000106"})
        assert r.status_code == 429 and r.json()["code"] == "sms_budget_exhausted"
        assert 0 < int(r.headers["Retry-After"]) <= 86_401
        assert len(twilio_peer.messages) == 5
        # An offer to an offline worker is not texted once the budget is spent.
        w = await worker(client, principals, world)
        await post_job(client, world.resident, "k1")
        row = await settled(engine, w.id)
        assert row["status"] == "skipped" and "budget" in row["last_error"]
        alerts = await client.get(
            f"/v1/ops/communities/{world.community_id}/alerts", headers=world.operator
        )
        assert [a["kind"] for a in alerts.json()] == ["sms_budget_80"]  # raised once a day
