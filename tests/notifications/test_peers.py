"""The protocol peers against the real libraries: twilio's async REST client and pywebpush.

These prove the peers speak what the libraries speak, and that they refuse what the real services
refuse, so tests of the notification channels built on them mean something.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
from py_vapid import Vapid
from py_vapid.jwt import sign as sign_jwt
from pywebpush import WebPushException, webpush_async
from twilio.base.exceptions import TwilioRestException
from twilio.request_validator import RequestValidator
from twilio.rest.api.v2010.account.call import CallInstance
from twilio.rest.api.v2010.account.message import MessageInstance

from notifications.twilio_http import (
    RoutedTwilioHttpClient,
    aclose_twilio_client,
    make_twilio_client,
)
from tests.notifications.peers.push_service import PushServicePeer, b64url, raw_public_key
from tests.notifications.peers.twilio_api import TwilioApiPeer

SID = "AC" + "0123456789abcdef" * 2
TOKEN = "peer-test-auth-token"
PROXY = "+15005550006"
RESIDENT = "+8613800138000"
SUBJECT = "mailto:ops@example.org"


@pytest.fixture
async def twilio_peer():
    async with TwilioApiPeer(SID, TOKEN) as peer:
        yield peer


@pytest.fixture
async def twilio(twilio_peer: TwilioApiPeer):
    client = make_twilio_client(SID, TOKEN, api_base=twilio_peer.base_url)
    yield client
    await aclose_twilio_client(client)


# -- Twilio -------------------------------------------------------------------------------------


async def test_sms_goes_to_the_peer_and_comes_back_as_a_message_instance(twilio_peer, twilio):
    callback = "https://dispatch.example.org/v1/telephony/status"
    msg = await twilio.messages.create_async(
        to=RESIDENT, from_=PROXY, body="Your helper is on the way", status_callback=callback
    )

    assert isinstance(msg, MessageInstance)
    assert msg.sid.startswith("SM") and len(msg.sid) == 34
    assert (msg.status, msg.to, msg.from_, msg.account_sid) == ("queued", RESIDENT, PROXY, SID)
    assert msg.body == "Your helper is on the way" and msg.num_segments == "1"
    assert msg.direction == "outbound-api" and msg.price is None and msg.error_code is None
    assert abs(msg.date_created.timestamp() - time.time()) < 60
    [sent] = twilio_peer.messages
    assert sent["sid"] == msg.sid
    assert (sent["to"], sent["from_"], sent["body"]) == (RESIDENT, PROXY, msg.body)
    assert sent["status_callback"] == callback
    last_url = twilio.http_client._test_only_last_request.url
    assert last_url == f"{twilio_peer.base_url}/2010-04-01/Accounts/{SID}/Messages.json"


async def test_fetch_shows_the_status_the_peer_moved_the_message_to(twilio_peer, twilio):
    msg = await twilio.messages.create_async(to=RESIDENT, from_=PROXY, body="hello")
    twilio_peer.set_status(msg.sid, "undelivered", error_code=30003)

    fetched = await twilio.messages(msg.sid).fetch_async()

    assert (fetched.sid, fetched.status, fetched.error_code) == (msg.sid, "undelivered", 30003)
    with pytest.raises(TwilioRestException) as missing:
        await twilio.messages("SM" + "f" * 32).fetch_async()
    assert (missing.value.status, missing.value.code) == (404, 20404)


async def test_messaging_service_without_from_is_accepted_not_queued(twilio_peer, twilio):
    service = "MG" + "a" * 32
    msg = await twilio.messages.create_async(to=RESIDENT, messaging_service_sid=service, body="x")
    assert (msg.status, msg.from_, msg.messaging_service_sid) == ("accepted", None, service)


async def test_wrong_auth_token_is_refused_with_401(twilio_peer):
    client = make_twilio_client(SID, "not-the-token", api_base=twilio_peer.base_url)
    try:
        with pytest.raises(TwilioRestException) as refused:
            await client.messages.create_async(to=RESIDENT, from_=PROXY, body="hello")
    finally:
        await aclose_twilio_client(client)
    assert (refused.value.status, refused.value.code) == (401, 20003)
    assert twilio_peer.messages == []
    assert [r["status"] for r in twilio_peer.requests] == [401]


async def test_other_account_in_the_path_is_not_found(twilio_peer, twilio):
    other = twilio.api.v2010.accounts("AC" + "9" * 32)
    with pytest.raises(TwilioRestException) as refused:
        await other.messages.create_async(to=RESIDENT, from_=PROXY, body="hello")
    assert (refused.value.status, refused.value.code) == (404, 20404)
    assert twilio_peer.messages == []


async def test_injected_failures_then_success(twilio_peer, twilio):
    twilio_peer.fail_next(2, status=500)
    for _ in range(2):
        with pytest.raises(TwilioRestException) as failed:
            await twilio.messages.create_async(to=RESIDENT, from_=PROXY, body="retry me")
        assert (failed.value.status, failed.value.code) == (500, 20500)
    msg = await twilio.messages.create_async(to=RESIDENT, from_=PROXY, body="retry me")
    assert [m["sid"] for m in twilio_peer.messages] == [msg.sid]
    assert [r["status"] for r in twilio_peer.requests] == [500, 500, 201]


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"to": "13800138000", "from_": PROXY, "body": "x"}, 21211),
        ({"to": "+86 138 0013 8000", "from_": PROXY, "body": "x"}, 21211),
        ({"to": RESIDENT, "from_": "proxy", "body": "x"}, 21212),
        ({"to": RESIDENT, "body": "x"}, 21603),
        ({"to": RESIDENT, "from_": PROXY, "body": ""}, 21602),
        ({"to": RESIDENT, "from_": PROXY, "body": "x" * 1601}, 21617),
    ],
)
async def test_invalid_messages_are_refused_with_400(twilio_peer, twilio, fields, code):
    with pytest.raises(TwilioRestException) as refused:
        await twilio.messages.create_async(**fields)
    assert (refused.value.status, refused.value.code) == (400, code)
    assert twilio_peer.messages == []


async def test_unsubscribed_recipient_is_refused(twilio_peer, twilio):
    twilio_peer.reject_to(RESIDENT)
    with pytest.raises(TwilioRestException) as refused:
        await twilio.messages.create_async(to=RESIDENT, from_=PROXY, body="hello")
    assert (refused.value.status, refused.value.code) == (400, 21610)
    other = await twilio.messages.create_async(to="+15005550001", from_=PROXY, body="hello")
    assert [m["sid"] for m in twilio_peer.messages] == [other.sid]


async def test_long_unicode_body_counts_ucs2_segments(twilio):
    msg = await twilio.messages.create_async(to=RESIDENT, from_=PROXY, body="师傅已出发" * 20)
    assert msg.num_segments == "2"  # 100 characters > 70, at 67 a segment


async def test_call_with_twiml(twilio_peer, twilio):
    twiml = "<Response><Say>Please check in.</Say></Response>"
    call = await twilio.calls.create_async(
        to=RESIDENT, from_=PROXY, twiml=twiml, status_callback="https://d.example.org/s"
    )
    assert isinstance(call, CallInstance)
    assert call.sid.startswith("CA") and len(call.sid) == 34 and call.status == "queued"
    [placed] = twilio_peer.calls
    assert (placed["sid"], placed["to"], placed["twiml"], placed["url"]) == (
        call.sid,
        RESIDENT,
        twiml,
        None,
    )
    with pytest.raises(TwilioRestException) as refused:
        await twilio.calls.create_async(to=RESIDENT, from_=PROXY)
    assert (refused.value.status, refused.value.code) == (400, 21205)


async def test_sender_cancelled_while_the_answer_is_held_leaves_an_accepted_message(
    twilio_peer, twilio
):
    twilio_peer.delay_s = 30
    send = asyncio.create_task(twilio.messages.create_async(to=RESIDENT, from_=PROXY, body="x"))
    await twilio_peer.wait_until(lambda: twilio_peer.messages)
    send.cancel()
    with pytest.raises(asyncio.CancelledError):
        await send
    assert len(twilio_peer.messages) == 1  # Twilio has it; the sender never learnt its sid


async def test_requests_time_out(twilio_peer):
    twilio_peer.delay_s = 5
    client = make_twilio_client(SID, TOKEN, api_base=twilio_peer.base_url, timeout=0.3)
    try:
        with pytest.raises(TimeoutError):
            await client.messages.create_async(to=RESIDENT, from_=PROXY, body="x")
    finally:
        await aclose_twilio_client(client)


async def test_client_can_be_used_again_after_aclose(twilio_peer, twilio):
    await twilio.messages.create_async(to=RESIDENT, from_=PROXY, body="one")
    await aclose_twilio_client(twilio)
    await twilio.messages.create_async(to=RESIDENT, from_=PROXY, body="two")
    assert [m["body"] for m in twilio_peer.messages] == ["one", "two"]


def test_client_is_built_without_a_running_loop_and_routes_only_twilio_hosts():
    client = make_twilio_client(SID, TOKEN, api_base="http://127.0.0.1:40123/")
    http = client.http_client
    assert isinstance(http, RoutedTwilioHttpClient) and http.is_async and http.session is None
    assert (
        http.route("https://api.twilio.com/2010-04-01/Accounts/AC1/Messages.json?PageSize=5")
        == "http://127.0.0.1:40123/2010-04-01/Accounts/AC1/Messages.json?PageSize=5"
    )
    assert http.route("https://messaging.twilio.com/v1/Services") == (
        "http://127.0.0.1:40123/v1/Services"
    )
    assert http.route("https://eviltwilio.com/x") == "https://eviltwilio.com/x"
    production = make_twilio_client(SID, TOKEN).http_client
    url = "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages.json"
    assert production.route(url) == url
    with pytest.raises(ValueError):
        RoutedTwilioHttpClient("127.0.0.1:40123")


async def test_signed_status_callback_verifies_with_request_validator(twilio_peer, twilio):
    url = "https://dispatch.example.org/v1/telephony/status"
    msg = await twilio.messages.create_async(
        to=RESIDENT, from_=PROXY, body="hi", status_callback=url
    )
    params = twilio_peer.message_status_params(msg.sid, "delivered")
    headers, form = twilio_peer.signed_status_callback(url, params)

    assert form["MessageSid"] == msg.sid and form["MessageStatus"] == "delivered"
    validator = RequestValidator(TOKEN)
    assert validator.validate(url, form, headers["X-Twilio-Signature"])
    assert not validator.validate(
        url, {**form, "MessageStatus": "failed"}, headers["X-Twilio-Signature"]
    )
    assert not validator.validate(url + "?x=1", form, headers["X-Twilio-Signature"])
    assert not RequestValidator("other").validate(url, form, headers["X-Twilio-Signature"])


# -- Web Push -----------------------------------------------------------------------------------


def vapid_keys() -> tuple[Vapid, str]:
    """A VAPID key pair and its private key as raw base64url (32 bytes, no padding)."""
    vapid = Vapid()
    vapid.generate_keys()
    raw = vapid.private_key.private_numbers().private_value.to_bytes(32, "big")
    return vapid, b64url(raw)


def application_server_key(vapid: Vapid) -> str:
    return b64url(raw_public_key(vapid.public_key))


@pytest.fixture
async def push():
    async with PushServicePeer() as peer:
        yield peer


async def test_push_is_decrypted_to_the_exact_payload(push):
    vapid, raw_key = vapid_keys()
    sub = push.new_subscription(application_server_key=application_server_key(vapid))
    assert len(sub["keys"]["auth"]) == 22 and "=" not in sub["keys"]["p256dh"]
    payload = '{"kind":"offer","job_id":42,"title":"Move a sofa 搬沙发"}'

    async with aiohttp.ClientSession() as session:
        response = await webpush_async(
            sub,
            payload,
            vapid_private_key=raw_key,
            vapid_claims={"sub": SUBJECT},
            ttl=60,
            headers={"Urgency": "high", "Topic": "job-42"},
            timeout=5,
            aiohttp_session=session,
        )
        assert response.status == 201 and "/message/" in response.headers["Location"]

    [got] = push.received
    assert got.subscription_id == push.subscription(sub).id
    assert got.payload == payload.encode()
    assert got.claims["sub"] == SUBJECT and got.claims["aud"] == push.base_url
    assert time.time() < got.claims["exp"] <= time.time() + 24 * 3600
    assert got.vapid_key == application_server_key(vapid)
    assert (got.ttl, got.urgency, got.topic) == (60, "high", "job-42")
    assert got.headers["Content-Encoding"] == "aes128gcm"


async def test_push_without_payload(push):
    _, raw_key = vapid_keys()
    sub = push.new_subscription()
    await webpush_async(sub, None, vapid_private_key=raw_key, vapid_claims={"sub": SUBJECT})
    assert push.received[0].payload is None


@pytest.mark.parametrize("form", ["raw", "raw padded", "der b64", "pem file", "pem text"])
async def test_vapid_private_key_formats_pywebpush_accepts(push, tmp_path, form):
    vapid, raw_key = vapid_keys()
    pem = vapid.private_pem().decode()
    pem_file = tmp_path / "private_key.pem"
    pem_file.write_text(pem)
    key = {
        "raw": raw_key,
        "raw padded": raw_key + "=",
        "der b64": "".join(pem.strip().splitlines()[1:-1]),
        "pem file": str(pem_file),
        "pem text": pem,
    }[form]
    sub = push.new_subscription(application_server_key=application_server_key(vapid))
    send = webpush_async(sub, "x", vapid_private_key=key, vapid_claims={"sub": SUBJECT})
    if form == "pem text":  # PEM text is decoded as base64 DER, headers and all, and fails
        with pytest.raises(ValueError):
            await send
        assert push.requests == []
    else:
        await send
        assert push.received[0].payload == b"x"


async def test_push_signed_by_another_key_is_forbidden(push):
    subscribed_with, _ = vapid_keys()
    _, other_key = vapid_keys()
    sub = push.new_subscription(application_server_key=application_server_key(subscribed_with))
    with pytest.raises(WebPushException) as refused:
        await webpush_async(sub, "x", vapid_private_key=other_key, vapid_claims={"sub": SUBJECT})
    assert refused.value.status_code == 403
    assert push.received == [] and push.refusals()[0][0] == 403


async def test_tampered_vapid_token_is_refused(push):
    vapid, _ = vapid_keys()
    sub = push.new_subscription()
    claims = {"sub": SUBJECT, "aud": push.base_url, "exp": int(time.time()) + 600}
    authorization = vapid.sign(claims)["Authorization"]
    forged_claims = b64url(f'{{"aud":"{push.base_url}","exp":{claims["exp"]},"sub":"x"}}'.encode())
    head, _, rest = authorization.partition(".")
    _, _, signature_and_key = rest.partition(".")
    forged = f"{head}.{forged_claims}.{signature_and_key}"
    with pytest.raises(WebPushException) as refused:
        await webpush_async(sub, "x", headers={"Authorization": forged})
    assert refused.value.status_code == 401
    assert "signature" in push.refusals()[0][1]


async def test_missing_vapid_is_refused(push):
    sub = push.new_subscription()
    with pytest.raises(WebPushException) as refused:
        await webpush_async(sub, "x")
    assert refused.value.status_code == 401
    assert refused.value.response.headers["WWW-Authenticate"] == "vapid"


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"aud": "https://push.example.net"}, "aud"),
        ({"exp": int(time.time()) + 48 * 3600}, "24 h"),
        ({"sub": "ops@example.org"}, "sub"),
    ],
)
async def test_bad_vapid_claims_are_refused(push, claims, reason):
    vapid, _ = vapid_keys()
    sub = push.new_subscription()
    claims = {"sub": SUBJECT, "aud": push.base_url, "exp": int(time.time()) + 600} | claims
    # Signed directly: py_vapid's own checks would stop a bad `sub` before it is sent.
    token = sign_jwt(claims, vapid.private_key)
    authorization = f"vapid t={token}, k={application_server_key(vapid)}"
    with pytest.raises(WebPushException) as refused:
        await webpush_async(sub, "x", headers={"Authorization": authorization})
    assert refused.value.status_code == 401
    assert reason in push.refusals()[0][1]


async def test_claims_dict_reused_across_push_services_keeps_the_first_aud(push):
    """pywebpush writes `aud` and `exp` into the claims dict it is given: pass a fresh dict for
    every send, or the second push service sees the first one's audience and refuses."""
    _, raw_key = vapid_keys()
    claims = {"sub": SUBJECT}
    await webpush_async(
        push.new_subscription(), "a", vapid_private_key=raw_key, vapid_claims=claims
    )
    assert claims["aud"] == push.base_url
    async with PushServicePeer() as other:
        with pytest.raises(WebPushException) as refused:
            await webpush_async(
                other.new_subscription(), "b", vapid_private_key=raw_key, vapid_claims=claims
            )
        assert refused.value.status_code == 401 and "aud" in other.refusals()[0][1]


async def test_expired_subscription_is_gone(push):
    _, raw_key = vapid_keys()
    sub = push.new_subscription()
    push.expire(sub)
    with pytest.raises(WebPushException) as gone:
        await webpush_async(sub, "x", vapid_private_key=raw_key, vapid_claims={"sub": SUBJECT})
    assert gone.value.response.status == 410 and gone.value.status_code == 410
    assert push.received == []


async def test_injected_failure_then_success(push):
    _, raw_key = vapid_keys()
    sub = push.new_subscription()
    push.fail_next(1, status=503, retry_after=7)
    with pytest.raises(WebPushException) as failed:
        await webpush_async(sub, "x", vapid_private_key=raw_key, vapid_claims={"sub": SUBJECT})
    assert failed.value.status_code == 503 and failed.value.retry_after == "7"
    await webpush_async(sub, "x", vapid_private_key=raw_key, vapid_claims={"sub": SUBJECT})
    assert [m.payload for m in push.received] == [b"x"]


async def test_payload_encrypted_for_other_keys_is_refused(push):
    _, raw_key = vapid_keys()
    sub, other = push.new_subscription(), push.new_subscription()
    crossed = {"endpoint": sub["endpoint"], "keys": other["keys"]}
    with pytest.raises(WebPushException) as refused:
        await webpush_async(crossed, "x", vapid_private_key=raw_key, vapid_claims={"sub": SUBJECT})
    assert refused.value.status_code == 400 and "decrypt" in push.refusals()[0][1]


async def test_old_encoding_and_oversized_payloads_are_refused(push):
    _, raw_key = vapid_keys()
    sub = push.new_subscription()
    claims = {"sub": SUBJECT}
    with pytest.raises(WebPushException) as old:
        await webpush_async(
            sub,
            "x",
            vapid_private_key=raw_key,
            vapid_claims=dict(claims),
            content_encoding="aesgcm",
        )
    assert old.value.status_code == 415
    with pytest.raises(WebPushException) as big:
        await webpush_async(sub, "x" * 5000, vapid_private_key=raw_key, vapid_claims=dict(claims))
    assert big.value.status_code == 413
    assert push.received == []


async def test_push_without_ttl_or_with_bad_urgency_is_refused(push):
    vapid, _ = vapid_keys()
    sub = push.new_subscription()
    auth = vapid.sign({"sub": SUBJECT, "aud": push.base_url})["Authorization"]
    async with aiohttp.ClientSession() as session:
        no_ttl = await session.post(sub["endpoint"], headers={"Authorization": auth})
        bad_urgency = await session.post(
            sub["endpoint"], headers={"Authorization": auth, "TTL": "0", "Urgency": "urgent"}
        )
        unknown = await session.post(
            push.base_url + "/push/nope", headers={"Authorization": auth, "TTL": "0"}
        )
    assert (no_ttl.status, bad_urgency.status, unknown.status) == (400, 400, 404)
    assert push.received == []
