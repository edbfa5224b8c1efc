"""Twilio retries a webhook (same CallSid / MessageSid, same status) on a timeout or a 5xx, and
may deliver the same one twice at once: each route then has exactly one effect. Replays one
after the other and identical webhooks at the same moment (over real sockets against the test's
app, `served_base`), for the voice, SMS and status routes; then malformed signed input, which
must be a 4xx with a stable code, never a 500."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from notifications.webhooks import RELAY_LIMIT
from tests.notifications.conftest import (
    live_settings,
    outbox,
    sign,
    wait_for,
    webhook,
)
from tests.notifications.test_masking import assigned, call_records, voice

AT_ONCE = 8
"""Identical webhooks sent at the same moment."""


@pytest.fixture
def settings(base_settings, twilio_peer, vapid_key):
    return live_settings(base_settings, twilio_peer, vapid_key)


@pytest.fixture
async def wire(served_base):
    """A client over real sockets, one connection per request in flight."""
    limits = httpx.Limits(max_connections=AT_ONCE * 2)
    async with httpx.AsyncClient(base_url=served_base, limits=limits, timeout=30) as http:
        yield http


async def at_once(http: httpx.AsyncClient, path: str, params: dict[str, str]) -> list:
    headers = sign(path, params)
    return await asyncio.gather(
        *(http.post(path, data=params, headers=headers) for _ in range(AT_ONCE))
    )


def text_to(sender: str, proxy: str, sid: str, body: str = "on my way") -> dict[str, str]:
    return {"From": sender, "To": proxy, "Body": body, "MessageSid": sid}


async def relayed_rows(engine) -> list[dict]:
    return await outbox(engine, kind="relay")


# --- voice ---------------------------------------------------------------------------------------


async def test_identical_call_webhooks_at_once_record_one_call(
    client, principals, engine, wire
) -> None:
    world, w, taken = await assigned(client, principals)
    answers = await at_once(
        wire, "/v1/telephony/voice", voice(world.resident.phone, taken["proxy_number"])
    )
    assert [a.status_code for a in answers] == [200] * AT_ONCE
    assert len({a.text for a in answers}) == 1 and f"<Number>{w.phone}</Number>" in answers[0].text
    [record] = await call_records(engine)
    assert record["outcome"] == "dialed" and record["status"] == "ringing"


async def test_a_replayed_call_webhook_does_not_move_the_record_back(
    client, principals, engine
) -> None:
    """The call went on (a status callback said completed) when Twilio retries the first
    webhook: the record stays completed, with its duration."""
    world, _, taken = await assigned(client, principals)
    params = voice(world.resident.phone, taken["proxy_number"])
    await webhook(client, "/v1/telephony/voice", params)
    done = {"CallSid": params["CallSid"], "CallStatus": "completed", "CallDuration": "61"}
    assert (await webhook(client, "/v1/telephony/status", done)).status_code == 204
    [before] = await call_records(engine)
    again = await webhook(client, "/v1/telephony/voice", params)
    assert again.status_code == 200 and "<Dial" in again.text
    assert await call_records(engine) == [before]
    assert (before["status"], before["duration_s"]) == ("completed", 61)


# --- SMS -----------------------------------------------------------------------------------------


async def test_identical_text_webhooks_at_once_relay_one_text(
    client, principals, engine, twilio_peer, wire
) -> None:
    world, w, taken = await assigned(client, principals)
    proxy = taken["proxy_number"]
    answers = await at_once(
        wire, "/v1/telephony/sms", text_to(world.resident.phone, proxy, "SM" + "d" * 32)
    )
    assert [a.status_code for a in answers] == [200] * AT_ONCE
    assert {a.text.strip()[-12:] for a in answers} == {"<Response />"}

    async def sent():
        return [m for m in twilio_peer.messages if m["from_"] == proxy] or None

    await wait_for(sent)
    await asyncio.sleep(0.5)  # a second relay, if there were one, would have gone by now
    [m] = await sent()
    assert m["to"] == w.phone
    [row] = await relayed_rows(engine)
    assert row["provider_ref"] == m["sid"]


async def test_replayed_texts_do_not_use_up_the_senders_relay_limit(
    client, principals, engine
) -> None:
    """A participant may relay RELAY_LIMIT texts an hour: Twilio retrying one text many times
    counts once, so their next texts still go through."""
    world, _, taken = await assigned(client, principals)
    proxy, me = taken["proxy_number"], world.resident.phone
    first = text_to(me, proxy, "SM" + "e" * 32)
    for _ in range(RELAY_LIMIT.max_hits + 5):
        assert (await webhook(client, "/v1/telephony/sms", first)).status_code == 200
    for i in range(RELAY_LIMIT.max_hits - 1):
        assert (
            await webhook(client, "/v1/telephony/sms", text_to(me, proxy, f"SM{i:032x}"))
        ).status_code == 200
    assert len(await relayed_rows(engine)) == RELAY_LIMIT.max_hits
    # The limit still holds for distinct texts: one more is dropped.
    assert (
        await webhook(client, "/v1/telephony/sms", text_to(me, proxy, "SM" + "f" * 32))
    ).status_code == 200
    assert len(await relayed_rows(engine)) == RELAY_LIMIT.max_hits


async def test_identical_texts_at_once_count_once_against_the_limit(
    client, principals, engine, wire, redis
) -> None:
    world, _, taken = await assigned(client, principals)
    proxy, me = taken["proxy_number"], world.resident.phone
    await at_once(wire, "/v1/telephony/sms", text_to(me, proxy, "SM" + "7" * 32))
    [row] = await relayed_rows(engine)
    key = f"rl:{RELAY_LIMIT.name}:{row['payload']['session_id']}:{world.resident.id}"
    assert int(await redis.get(key)) == 1


# --- status callbacks ----------------------------------------------------------------------------


async def test_replayed_and_simultaneous_message_receipts_change_a_row_once(
    client, principals, engine, wire
) -> None:
    world, _, taken = await assigned(client, principals)
    sms = text_to(world.resident.phone, taken["proxy_number"], "SM" + "8" * 32)
    await webhook(client, "/v1/telephony/sms", sms)

    async def handed_over():
        [row] = await relayed_rows(engine)
        return row if row["provider_ref"] else None

    ref = (await wait_for(handed_over))["provider_ref"]
    delivered = {"MessageSid": ref, "MessageStatus": "delivered", "To": "+8613800000000"}
    answers = await at_once(wire, "/v1/telephony/status", delivered)
    assert [a.status_code for a in answers] == [204] * AT_ONCE
    [once] = await relayed_rows(engine)
    assert (once["provider_status"], once["status"]) == ("delivered", "delivered")
    await asyncio.sleep(0.01)
    assert (await webhook(client, "/v1/telephony/status", delivered)).status_code == 204
    assert await relayed_rows(engine) == [once]  # updated_at too: the replay wrote nothing


async def test_replayed_and_simultaneous_call_receipts_change_a_record_once(
    client, principals, engine, wire
) -> None:
    world, _, taken = await assigned(client, principals)
    params = voice(world.resident.phone, taken["proxy_number"])
    await webhook(client, "/v1/telephony/voice", params)
    done = {"CallSid": params["CallSid"], "CallStatus": "completed", "CallDuration": "30"}
    answers = await at_once(wire, "/v1/telephony/status", done)
    assert [a.status_code for a in answers] == [204] * AT_ONCE
    [once] = await call_records(engine)
    assert (once["status"], once["duration_s"]) == ("completed", 30)
    # A retry carrying another duration (or a late ringing) changes nothing either.
    for late in ({**done, "CallDuration": "31"}, {**done, "CallStatus": "ringing"}):
        assert (await webhook(client, "/v1/telephony/status", late)).status_code == 204
    assert await call_records(engine) == [once]


async def test_receipts_for_unknown_sids_are_no_ops(client, engine) -> None:
    for params in (
        {"MessageSid": "SM" + "0" * 32, "MessageStatus": "delivered"},
        {"CallSid": "CA" + "0" * 32, "CallStatus": "completed"},
    ):
        assert (await webhook(client, "/v1/telephony/status", params)).status_code == 204
    assert await call_records(engine) == [] and await outbox(engine) == []


# --- malformed, but signed ------------------------------------------------------------------------


async def _problem(client, path: str, params: dict[str, str]) -> tuple[int, str | None]:
    r = await webhook(client, path, params)
    code = (
        r.json().get("code")
        if r.headers.get("content-type", "").startswith("application/") and r.status_code >= 400
        else None
    )
    return r.status_code, code


@pytest.mark.parametrize(
    ("path", "params"),
    [
        (
            "/v1/telephony/status",
            {"CallSid": "CA1", "CallStatus": "completed", "CallDuration": "²"},
        ),
        (
            "/v1/telephony/status",
            {"CallSid": "CA1", "CallStatus": "completed", "CallDuration": "9" * 30},
        ),
        ("/v1/telephony/status", {"MessageSid": "SM1\x00", "MessageStatus": "delivered"}),
        (
            "/v1/telephony/status",
            {"MessageSid": "SM" + "1" * 300, "MessageStatus": "delivered", "ErrorCode": "3" * 300},
        ),
        ("/v1/telephony/status", {"CallSid": "CA" + "1" * 300, "CallStatus": "completed"}),
        (
            "/v1/telephony/voice",
            {"From": "+86139\x0000001", "To": "+12025550101", "CallSid": "CA1"},
        ),
        ("/v1/telephony/voice", {"From": "x" * 5000, "To": "y" * 5000, "CallSid": "C" * 5000}),
        (
            "/v1/telephony/voice",
            {"From": "+8613900000001", "To": "+12025550101", "CallSid": "CA\x002"},
        ),
        (
            "/v1/telephony/sms",
            {"From": "+8613900000001", "To": "+12025550101\x00", "MessageSid": "SM1"},
        ),
        (
            "/v1/telephony/sms",
            {
                "From": "+8613900000001",
                "To": "+12025550101",
                "MessageSid": "S" * 5000,
                "Body": "\x00" * 10,
            },
        ),
    ],
)
async def test_malformed_signed_webhooks_are_4xx_never_500(
    client, principals, path, params
) -> None:
    await assigned(client, principals)
    status, code = await _problem(client, path, params)
    assert status < 500, (status, code)
    if status >= 400:
        assert code in {"invalid_value", "invalid_webhook"}, code


async def test_missing_fields_are_400_invalid_webhook(client) -> None:
    for path, params in (
        ("/v1/telephony/voice", {"From": "+8613900000001"}),
        ("/v1/telephony/sms", {"From": "+8613900000001", "To": "+12025550101"}),
        ("/v1/telephony/status", {"MessageSid": "SM1"}),
    ):
        assert await _problem(client, path, params) == (400, "invalid_webhook")
