"""Take it by text: a worker without the app replies "1" to the offer's text and takes the job
through the same claim path as the app, against the real twilio library (a local Twilio API
for the texts out, signed webhooks in)."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text

from tests.notifications.conftest import (
    FROM,
    POOL,
    live_settings,
    make_world,
    outbox,
    post_job,
    wait_for,
    webhook,
    worker,
)


@pytest.fixture
def settings(base_settings, twilio_peer, vapid_key):
    return live_settings(base_settings, twilio_peer, vapid_key)


def reply(sender: str, body: str, n: int) -> dict[str, str]:
    return {"From": sender, "To": FROM, "Body": body, "MessageSid": f"SM{n:032d}"}


async def test_twenty_workers_reply_1_and_one_wins(client, principals, engine, twilio_peer):
    world = await make_world(client, principals, waves=[{"radius_m": 2000, "size": None}])
    crew = [await worker(client, principals, world) for _ in range(20)]
    job = await post_job(client, world.resident, "k1", title="Fix a tap")

    async def all_texted():
        rows = await outbox(engine, kind="offer")
        return len(rows) == 20 and all(r["via"] == "sms" for r in rows)

    await wait_for(all_texted)
    texted = {m["to"]: m["body"] for m in twilio_peer.messages}
    body = texted[crew[0].phone]
    assert body.startswith("New job 100 m away: Fix a tap, 80.00 CNY. Reply 1 to take it (30 s)")

    answers = await asyncio.gather(
        *(
            webhook(client, "/v1/telephony/sms", reply(w.phone, " 1 ", i))
            for i, w in enumerate(crew)
        )
    )
    assert [r.status_code for r in answers] == [200] * 20
    won = [r.text for r in answers if "You have the job" in r.text]
    lost = [r.text for r in answers if "another worker took this job first" in r.text]
    assert len(won) == 1 and len(lost) == 19
    assert "Fix a tap" in won[0] and any(n in won[0] for n in POOL)  # the masked number
    winner = crew[next(i for i, r in enumerate(answers) if "You have the job" in r.text)]
    async with engine.connect() as conn:
        held = (
            await conn.execute(
                text("SELECT worker_id FROM assignments WHERE job_id = :j AND active"),
                {"j": job["id"]},
            )
        ).all()
    assert [h[0] for h in held] == [winner.id]
    # The winner's replayed webhook takes nothing more (their offer is no longer open).
    index = crew.index(winner)
    again = await webhook(client, "/v1/telephony/sms", reply(winner.phone, "1", index))
    assert "no open offer" in again.text


async def test_replies_that_take_nothing(client, principals, engine, twilio_peer):
    world = await make_world(client, principals)
    w = await worker(client, principals, world)
    # No offer yet: a polite answer, nothing assigned.
    r = await webhook(client, "/v1/telephony/sms", reply(w.phone, "1", 1))
    assert r.status_code == 200 and "no open offer" in r.text
    job = await post_job(client, world.resident, "k1")

    async def texted():
        return [m for m in twilio_peer.messages if m["to"] == w.phone]

    await wait_for(texted)
    # An unknown number, a resident's, an unsigned webhook: nothing taken.
    r = await webhook(client, "/v1/telephony/sms", reply("+8613800001234", "1", 2))
    assert "not registered as a worker" in r.text
    r = await webhook(client, "/v1/telephony/sms", reply(world.resident.phone, "1", 3))
    assert "not registered as a worker" in r.text
    r = await client.post("/v1/telephony/sms", data=reply(w.phone, "1", 4))
    assert r.status_code == 403
    # Any other text to the platform's number is refused as before, not taken.
    r = await webhook(client, "/v1/telephony/sms", reply(w.phone, "hello", 5))
    assert "not connected to an active job" in r.text
    got = await client.get(f"/v1/jobs/{job['id']}", headers=world.resident.headers)
    assert got.json()["status"] == "open"
    # Chinese: "接单" takes it.
    r = await webhook(client, "/v1/telephony/sms", reply(w.phone, "接单", 6))
    assert "You have the job" in r.text


async def test_the_vapid_public_key_is_public(client, vapid_key) -> None:
    """What a page subscribes with: the public half of the configured key, base64url, with
    no sign-in (the app asks before anyone has signed in)."""
    from cryptography.hazmat.primitives import serialization
    from py_vapid import Vapid

    r = await client.get("/v1/push/vapid-public-key")
    assert r.status_code == 200
    key = r.json()["key"]
    expected = Vapid.from_string(private_key=vapid_key).public_key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    padded = key + "=" * (-len(key) % 4)
    import base64

    assert base64.urlsafe_b64decode(padded) == expected and "=" not in key
