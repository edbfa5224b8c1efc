"""No request on a user's behalf to a private address: push endpoints on loopback, private,
link-local, multicast or reserved hosts (in any notation) are refused when registered, and a
subscription that points inward anyway (stored before the rule, or a name resolving inward) is
never called."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from notifications.egress import NonPublicAddress, PublicOnlyResolver, check_public_url
from tests.notifications.conftest import live_settings, make_world, post_job, wait_for, worker
from tests.notifications.test_relay import settled

INWARD = [
    "https://127.0.0.1:6379/x",
    "https://169.254.169.254/latest/meta-data",
    "https://[::1]/x",
    "https://10.0.0.1/x",
    "https://0x7f000001/x",
    "https://127.1/x",
    "https://0177.0.0.1/x",
    "https://2130706433/x",
    "https://[::ffff:127.0.0.1]/x",
    "https://[::ffff:a9fe:a9fe]/x",
    "https://[fe80::1]/x",
    "https://[fc00::1]/x",
    "https://192.168.1.1/x",
    "https://172.16.0.1/x",
    "https://100.64.0.1/x",
    "https://0.0.0.0/x",
    "https://224.0.0.251/x",
    "https://240.0.0.1/x",
    "https://[ff02::1]/x",
    "https://[2002:7f00:1::]/x",
    "https://localhost/x",
    "https://localhost./x",
    "https://push.localhost/x",
]
PUBLIC = [
    "https://fcm.googleapis.com/fcm/send/abc",
    "https://updates.push.services.mozilla.com/wpush/v2/abc",
    "https://8.8.8.8/x",
    "https://[2606:4700::1111]/x",
]


@pytest.mark.parametrize("url", INWARD)
def test_inward_urls_are_refused(url: str) -> None:
    with pytest.raises(NonPublicAddress):
        check_public_url(url)


@pytest.mark.parametrize("url", PUBLIC)
def test_public_urls_pass(url: str) -> None:
    check_public_url(url)


def test_allowed_hosts_are_exempt() -> None:
    check_public_url("http://127.0.0.1:8443/push/x", allowed=("127.0.0.1",))
    check_public_url("http://127.0.0.1:8443/push/x", allowed=("127.0.0.1:8443",))
    with pytest.raises(NonPublicAddress):
        check_public_url("http://127.0.0.1:9000/push/x", allowed=("127.0.0.1:8443",))


async def test_a_name_that_resolves_inward_is_refused_when_called() -> None:
    resolver = PublicOnlyResolver()
    with pytest.raises(NonPublicAddress):
        await resolver.resolve("localhost", 443)
    allowed = PublicOnlyResolver(allowed=("localhost",))
    assert await allowed.resolve("localhost", 443)
    await resolver.close()
    await allowed.close()


KEYS = {
    "p256dh": "BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1Xbj"
    "hazAkj7I99e8QcYP7DkM",
    "auth": "tBHItJI5svbpez7KI4CCXg",
}


async def test_registering_an_inward_endpoint_is_422(client, principals) -> None:
    _, headers = await principals.user("worker")
    for url in INWARD:
        body = {"endpoint": url, "keys": KEYS}
        r = await client.post("/v1/workers/me/push-subscriptions", json=body, headers=headers)
        assert r.status_code == 422, (url, r.text)
        assert r.json()["code"] == "invalid_subscription"


async def test_a_public_endpoint_registers(client, principals) -> None:
    _, headers = await principals.user("worker")
    body = {"endpoint": PUBLIC[0], "keys": KEYS}
    r = await client.post("/v1/workers/me/push-subscriptions", json=body, headers=headers)
    assert r.status_code == 201, r.text


class TestStoredInward:
    """The suite's push service listens on 127.0.0.1; here 127.0.0.1 is not allowed."""

    @pytest.fixture
    def settings(self, base_settings, twilio_peer, vapid_key):
        return live_settings(base_settings, twilio_peer, vapid_key, egress_allowed_hosts=())

    async def test_an_inward_subscription_is_never_called(
        self, client, principals, engine, push_peer
    ) -> None:
        world = await make_world(client, principals)
        w = await worker(client, principals, world)
        sub = push_peer.new_subscription()
        r = await client.post("/v1/workers/me/push-subscriptions", json=sub, headers=w.headers)
        assert r.status_code == 422 and r.json()["code"] == "invalid_subscription"
        # As if stored before the rule existed.
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO push_subscriptions (user_id, endpoint, p256dh, auth, "
                    "created_at, failures) VALUES (:u, :e, :p, :a, now(), 0)"
                ),
                {"u": w.id, "e": sub["endpoint"], "p": sub["keys"]["p256dh"].rstrip("="),
                 "a": sub["keys"]["auth"].rstrip("=")},
            )  # fmt: skip
        await post_job(client, world.resident, "k1")
        row = await settled(engine, w.id)
        assert row["via"] == "sms"  # push could not take it; the offer still went out
        assert push_peer.received == []

        async def forgotten() -> bool:
            async with engine.connect() as conn:
                return not (await conn.execute(text("SELECT 1 FROM push_subscriptions"))).all()

        await wait_for(forgotten)
