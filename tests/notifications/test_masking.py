"""Masked numbers: sessions on assignment, signed webhooks that bridge calls and relay texts,
refusals outside a session, closing with the grace window, concurrent allocations, an empty pool."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from dispatch.grab.events import worker_channel
from dispatch.models import Job
from notifications.masking import ProxyBroker
from tests.notifications.conftest import (
    FROM,
    POOL,
    PUBLIC,
    assign,
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

E164 = re.compile(r"\+[1-9]\d{6,14}")


@pytest.fixture
def settings(base_settings, twilio_peer, vapid_key):
    return live_settings(base_settings, twilio_peer, vapid_key)


async def assigned(client, principals, **dispatch):
    world = await make_world(client, principals, **dispatch)
    w = await worker(client, principals, world)
    job = await post_job(client, world.resident, "job-1")
    taken = await assign(client, w, job["id"])
    return world, w, taken


def voice(caller: str, proxy: str, sid: str = "CA" + "1" * 32) -> dict[str, str]:
    return {
        "From": caller,
        "To": proxy,
        "CallSid": sid,
        "CallStatus": "ringing",
        "Direction": "inbound",
    }


async def call_records(engine) -> list[dict]:
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT * FROM call_records ORDER BY created_at"))
        return [dict(r._mapping) for r in rows]


async def test_assignment_opens_a_session_the_participants_see(client, principals) -> None:
    world, _, taken = await assigned(client, principals)
    proxy = taken["proxy_number"]
    assert proxy in POOL
    seen = await client.get(f"/v1/jobs/{taken['id']}", headers=world.resident.headers)
    assert seen.json()["proxy_number"] == proxy
    ops = await client.get(f"/v1/jobs/{taken['id']}", headers=world.operator)
    assert ops.json()["proxy_number"] is None  # operators are not participants


async def test_a_call_is_bridged_to_the_other_participant(client, principals, engine) -> None:
    world, w, taken = await assigned(client, principals)
    proxy = taken["proxy_number"]

    r = await webhook(client, "/v1/telephony/voice", voice(world.resident.phone, proxy))
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/xml")
    assert f'callerId="{proxy}"' in r.text
    assert f"<Number>{w.phone}</Number>" in r.text
    # The answer goes to the phone company: the worker's number to dial, the proxy to show, and
    # nothing else (the resident's own number is not echoed back either).
    assert set(E164.findall(r.text)) == {proxy, w.phone}

    back = await webhook(client, "/v1/telephony/voice", voice(w.phone, proxy, "CA" + "2" * 32))
    assert f"<Number>{world.resident.phone}</Number>" in back.text
    assert [c["outcome"] for c in await call_records(engine)] == ["dialed", "dialed"]


async def test_replayed_call_webhook_records_once(client, principals, engine) -> None:
    world, _, taken = await assigned(client, principals)
    params = voice(world.resident.phone, taken["proxy_number"])
    first = await webhook(client, "/v1/telephony/voice", params)
    again = await webhook(client, "/v1/telephony/voice", params)
    assert first.text == again.text
    assert len(await call_records(engine)) == 1


@pytest.mark.parametrize("attack", ["unsigned", "tampered", "wrong_url", "wrong_token"])
async def test_bad_signatures_are_403_with_no_side_effect(
    client, principals, engine, attack
) -> None:
    world, w, taken = await assigned(client, principals)
    params = voice(world.resident.phone, taken["proxy_number"])
    path = "/v1/telephony/voice"
    if attack == "unsigned":
        headers = {}
    elif attack == "tampered":
        headers = sign(path, params)
        params = {**params, "From": w.phone}  # pretend to be the other side
    elif attack == "wrong_url":
        headers = {"X-Twilio-Signature": sign("/v1/telephony/sms", params)["X-Twilio-Signature"]}
    else:
        headers = sign(path, params, token="someone-elses-token")
    r = await client.post(path, data=params, headers=headers)
    assert r.status_code == 403 and r.json()["code"] == "invalid_signature"
    assert "Dial" not in r.text
    assert await call_records(engine) == []
    sms = {"From": world.resident.phone, "To": taken["proxy_number"], "Body": "hi",
           "MessageSid": "SM" + "9" * 32}  # fmt: skip
    r = await client.post("/v1/telephony/sms", data=sms, headers=headers)
    assert r.status_code == 403
    assert await outbox(engine, kind="relay") == []


async def test_a_stranger_hears_a_polite_refusal(client, principals, engine) -> None:
    world, w, taken = await assigned(client, principals)
    stranger = "+8613700000001"
    r = await webhook(client, "/v1/telephony/voice", voice(stranger, taken["proxy_number"]))
    assert r.status_code == 200
    assert "<Say>" in r.text and "<Dial" not in r.text
    assert w.phone not in r.text and world.resident.phone not in r.text
    # A known person calling a pool number that is not theirs is refused the same way.
    other = next(p for p in POOL if p != taken["proxy_number"])
    r = await webhook(
        client, "/v1/telephony/voice", voice(world.resident.phone, other, "CA" + "3" * 32)
    )
    assert "<Dial" not in r.text
    assert [c["outcome"] for c in await call_records(engine)] == ["refused", "refused"]


async def test_session_lasts_the_grace_after_completion_then_refuses(client, principals) -> None:
    world, w, taken = await assigned(client, principals)  # proxy_grace_h 24 by default
    r = await client.post(
        f"/v1/jobs/{taken['id']}/complete",
        json={"assignment_version": taken["assignment_version"]},
        headers=w.headers,
    )
    assert r.status_code == 200, r.text
    params = voice(world.resident.phone, taken["proxy_number"])
    r = await webhook(client, "/v1/telephony/voice", params)
    assert "<Dial" in r.text  # still within the grace window


async def test_session_closed_after_completion_without_grace(client, principals) -> None:
    world, w, taken = await assigned(client, principals, proxy_grace_h=0)
    r = await client.post(
        f"/v1/jobs/{taken['id']}/complete",
        json={"assignment_version": taken["assignment_version"]},
        headers=w.headers,
    )
    assert r.status_code == 200, r.text
    r = await webhook(
        client, "/v1/telephony/voice", voice(world.resident.phone, taken["proxy_number"])
    )
    assert "<Dial" not in r.text and "<Say>" in r.text
    seen = await client.get(f"/v1/jobs/{taken['id']}", headers=world.resident.headers)
    assert seen.json()["proxy_number"] is None


async def test_cancelling_closes_the_session_after_grace(client, principals) -> None:
    world, w, taken = await assigned(client, principals, proxy_grace_h=0)
    r = await client.post(
        f"/v1/jobs/{taken['id']}/cancel", json={"reason": "changed my mind"},
        headers=world.resident.headers,
    )  # fmt: skip
    assert r.status_code == 200, r.text
    r = await webhook(client, "/v1/telephony/voice", voice(w.phone, taken["proxy_number"]))
    assert "<Dial" not in r.text


async def test_a_text_is_relayed_from_the_proxy_once(
    client, principals, engine, twilio_peer
) -> None:
    world, w, taken = await assigned(client, principals)
    proxy = taken["proxy_number"]
    body = "I'm at the gate, call me +8613911112222"
    params = {"From": world.resident.phone, "To": proxy, "Body": body,
              "MessageSid": "SM" + "a" * 32}  # fmt: skip
    r = await webhook(client, "/v1/telephony/sms", params)
    assert r.status_code == 200 and r.text.strip().endswith("<Response />")
    again = await webhook(client, "/v1/telephony/sms", params)  # Twilio retried the webhook
    assert again.status_code == 200

    def relayed():
        return [m for m in twilio_peer.messages if m["from_"] == proxy]

    async def sent():
        return relayed() or None

    await wait_for(sent)
    await asyncio.sleep(0.5)  # a second relay, if there were one, would have gone by now
    [m] = relayed()
    assert m["to"] == w.phone and "I'm at the gate" in m["body"]
    [row] = await outbox(engine, kind="relay")
    assert row["status"] == "sent" and row["provider_ref"] == m["sid"]


async def test_text_from_a_stranger_gets_a_reply_not_a_relay(client, principals, engine) -> None:
    _, _, taken = await assigned(client, principals)
    params = {"From": "+8613700000002", "To": taken["proxy_number"], "Body": "hello?",
              "MessageSid": "SM" + "b" * 32}  # fmt: skip
    r = await webhook(client, "/v1/telephony/sms", params)
    assert r.status_code == 200 and "<Message>" in r.text and "not connected" in r.text
    assert await outbox(engine, kind="relay") == []


async def test_concurrent_allocations_never_share_a_number_for_one_person(
    client, principals, engine
) -> None:
    world = await make_world(client, principals)
    crew = [await worker(client, principals, world) for _ in range(3)]
    jobs = [await post_job(client, world.resident, f"k{i}", f"Job {i}") for i in range(3)]
    offers = []
    for i, (w, job) in enumerate(zip(crew, jobs, strict=True)):
        r = await client.get("/v1/workers/me/offers", headers=w.headers)
        offers.append((w, next(o for o in r.json() if o["job_id"] == job["id"]), i))
    answers = await asyncio.gather(
        *(client.post(f"/v1/offers/{o['id']}/accept", headers=w.headers) for w, o, _ in offers)
    )
    assert [a.status_code for a in answers] == [200, 200, 200]
    numbers = [a.json()["proxy_number"] for a in answers]
    # The resident holds three sessions at once: each on a different number of the pool of three.
    assert sorted(numbers) == sorted(POOL)
    async with engine.connect() as conn:
        held = (
            await conn.execute(
                text(
                    "SELECT proxy_number_id, user_id FROM proxy_holds WHERE active "
                    "GROUP BY 1, 2 HAVING count(*) > 1"
                )
            )
        ).all()
    assert held == []


async def test_the_database_refuses_a_second_active_hold(client, principals, engine) -> None:
    world, w, _ = await assigned(client, principals)
    async with engine.begin() as conn:
        row = (
            await conn.execute(text("SELECT session_id, proxy_number_id FROM proxy_holds LIMIT 1"))
        ).one()
        job2 = await post_job(client, world.resident, "job-2")
        sid = (
            await conn.execute(
                text(
                    "INSERT INTO proxy_sessions (job_id, community_id, proxy_number_id, "
                    "resident_id, worker_id, assignment_version, opened_at) "
                    "VALUES (:j, :c, :n, :r, :w, 1, now()) RETURNING id"
                ),
                {
                    "j": job2["id"],
                    "c": world.community_id,
                    "n": row.proxy_number_id,
                    "r": world.resident.id,
                    "w": w.id,
                },
            )
        ).scalar_one()
    with pytest.raises(IntegrityError):
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO proxy_holds (session_id, user_id, proxy_number_id, active) "
                    "VALUES (:s, :u, :n, true)"
                ),
                {"s": sid, "u": world.resident.id, "n": row.proxy_number_id},
            )


async def test_empty_pool_alerts_and_in_app_messages_still_work(
    client, principals, engine, redis
) -> None:
    world = await make_world(client, principals, pool=[POOL[0]])
    a, b = await worker(client, principals, world), await worker(client, principals, world)
    first = await assign(client, a, (await post_job(client, world.resident, "k1"))["id"])
    assert first["proxy_number"] == POOL[0]
    second = await assign(
        client, b, (await post_job(client, world.resident, "k2", "Fix tap"))["id"]
    )
    assert second["proxy_number"] is None  # the resident already holds the only number
    alerts = await client.get(
        f"/v1/ops/communities/{world.community_id}/alerts", headers=world.operator
    )
    [alert] = [x for x in alerts.json() if x["kind"] == "proxy_pool_exhausted"]
    assert alert["job_id"] == second["id"]

    # The worker's stream is connected (a subscriber on its channel): the message arrives there.
    async with ChannelListener(redis, worker_channel(b.id)) as listener:
        r = await client.post(
            f"/v1/jobs/{second['id']}/messages",
            json={"text": "Gate code 4411, or ring me on +8613911112222"},
            headers=world.resident.headers,
        )
        assert r.status_code == 201, r.text
        assert "+8613911112222" not in r.text and "[number hidden]" in r.text

        async def delivered():
            msg = await listener.get_message(timeout=0.2)
            return msg

        msg = await wait_for(delivered)
        assert b"Gate code 4411" in msg["data"] and b"job_message" in msg["data"]
    listing = await client.get(f"/v1/jobs/{second['id']}/messages", headers=b.headers)
    assert [m["text"] for m in listing.json()] == ["Gate code 4411, or ring me on [number hidden]"]
    [row] = await outbox(engine, kind="message")
    assert row["via"] == "ws"
    outsider = await client.get(f"/v1/jobs/{second['id']}/messages", headers=a.headers)
    assert outsider.status_code == 403


async def test_a_freed_number_is_reused(client, principals) -> None:
    world = await make_world(client, principals, pool=[POOL[0]], proxy_grace_h=0)
    a = await worker(client, principals, world)
    first = await assign(client, a, (await post_job(client, world.resident, "k1"))["id"])
    r = await client.post(
        f"/v1/jobs/{first['id']}/complete",
        json={"assignment_version": first["assignment_version"]}, headers=a.headers,
    )  # fmt: skip
    assert r.status_code == 200
    second = await assign(client, a, (await post_job(client, world.resident, "k2"))["id"])
    assert second["proxy_number"] == POOL[0]


async def test_pool_admin(client, principals) -> None:
    world = await make_world(client, principals, pool=[])
    path = f"/v1/communities/{world.community_id}/proxy-numbers"
    r = await client.post(path, json={"numbers": POOL[:2] + POOL[:1]}, headers=world.admin)
    assert r.status_code == 201 and r.json() == {
        "community_id": world.community_id,
        "added": 2,
        "total": 2,
    }
    r = await client.post(path, json={"numbers": ["12345"]}, headers=world.admin)
    assert r.status_code == 422 and r.json()["code"] == "invalid_phone"
    r = await client.post(path, json={"numbers": [FROM]}, headers=world.resident.headers)
    assert r.status_code == 403
    other = await make_world(client, principals, pool=[])
    r = await client.post(
        f"/v1/communities/{other.community_id}/proxy-numbers", json={"numbers": POOL[:1]},
        headers=world.admin,
    )  # fmt: skip
    assert r.status_code == 409 and r.json()["code"] == "proxy_number_taken"
    listing = await client.get(path, headers=world.admin)
    assert [(n["number"], n["holders"]) for n in listing.json()] == [(POOL[0], 0), (POOL[1], 0)]
    assert PUBLIC  # the webhooks are signed for this base URL


async def test_logs_never_carry_a_participants_number(client, principals, capfd, twilio_peer):
    world, w, taken = await assigned(client, principals)
    proxy = taken["proxy_number"]
    await webhook(client, "/v1/telephony/voice", voice(world.resident.phone, proxy))
    twilio_peer.reject_to(w.phone, code=21211)  # the refusal names the number; logs must not
    sms = {
        "From": world.resident.phone,
        "To": proxy,
        "Body": "hello",
        "MessageSid": "SM" + "c" * 32,
    }
    await webhook(client, "/v1/telephony/sms", sms)

    async def dead():
        rows = await outbox_rows(client, world)
        return rows or None

    await wait_for(dead)
    out, err = capfd.readouterr()
    logs = out + err
    for phone in (world.resident.phone, w.phone):
        assert phone not in logs and phone[1:] not in logs


async def outbox_rows(client, world):
    r = await client.get("/v1/admin/outbox", params={"status": "dead"}, headers=world.admin)
    return r.json()


async def test_an_allocation_that_collides_with_a_concurrent_one_takes_the_next_number(
    app, client, principals, engine
) -> None:
    """Two allocations for the same resident in overlapping transactions: the second picks the
    same number (the first's holds are not committed yet), waits at the unique index, then
    gives that session up and takes another number."""
    world = await make_world(client, principals)
    w1, w2 = [await worker(client, principals, world) for _ in range(2)]
    j1, j2 = [await post_job(client, world.resident, f"k{i}", f"Job {i}") for i in range(2)]
    rt = app.state.runtime
    (broker,) = [h for h in rt.dispatcher.hooks if isinstance(h, ProxyBroker)]
    now = datetime.now(UTC)

    async def number_of(conn, job_id: int) -> list[str]:
        rows = await conn.execute(
            text(
                "SELECT n.number FROM proxy_sessions s JOIN proxy_numbers n "
                "ON n.id = s.proxy_number_id WHERE s.job_id = :j"
            ),
            {"j": job_id},
        )
        return [r[0] for r in rows]

    async with rt.sessions.begin() as first:
        await broker.assigned(first, await first.get(Job, j1["id"]), w1.id, now)

        async def second() -> None:
            async with rt.sessions.begin() as s:
                await broker.assigned(s, await s.get(Job, j2["id"]), w2.id, now)

        task = asyncio.create_task(second())

        # The second allocation blocks on the first one's uncommitted hold of the same number.
        # (A connection per look: within a transaction pg_stat_activity is a snapshot.)
        async def blocked() -> int:
            async with engine.connect() as conn:
                return await conn.scalar(
                    text(
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                        "AND query LIKE '%INSERT INTO proxy_holds%'"
                    )
                )

        await wait_for(blocked)
        assert not task.done()
    await asyncio.wait_for(task, 10)
    async with engine.connect() as conn:
        (n1,) = await number_of(conn, j1["id"])
        (n2,) = await number_of(conn, j2["id"])
        holds = (
            await conn.execute(
                text("SELECT user_id, count(*) FROM proxy_holds WHERE active GROUP BY 1")
            )
        ).all()
    assert n1 != n2 and {n1, n2} <= set(POOL)
    assert dict(holds) == {world.resident.id: 2, w1.id: 1, w2.id: 1}
