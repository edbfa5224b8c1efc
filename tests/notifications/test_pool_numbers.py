"""A masked-number pool holds the service's numbers, never a person's: a registered user's number
cannot join a pool, and a pool number cannot sign in as a user."""

from __future__ import annotations

from tests.dispatch.test_identity import request_code, sign_in
from tests.notifications.conftest import POOL, make_world, person


async def test_a_users_own_number_cannot_join_a_pool(client, principals) -> None:
    world = await make_world(client, principals, pool=[])
    user = await person(principals, "worker")
    path = f"/v1/communities/{world.community_id}/proxy-numbers"
    for typed in (user.phone, user.phone.replace("+86", "0086"), user.phone[3:]):
        r = await client.post(path, json={"numbers": [typed]}, headers=world.admin)
        assert r.status_code == 409, r.text
        assert r.json()["code"] == "proxy_number_is_a_user"
    listing = await client.get(path, headers=world.admin)
    assert listing.json() == []


async def test_a_pool_number_cannot_become_an_account(client, principals, engine) -> None:
    await make_world(client, principals, pool=POOL[:1])
    r = await request_code(client, POOL[0])
    assert r.status_code == 409 and r.json()["code"] == "phone_is_a_proxy_number"
    r = await sign_in(client, "123456", phone=POOL[0])
    assert r.status_code in (401, 409)  # no code was ever sent to it
    async with engine.connect() as conn:
        found = await conn.exec_driver_sql("SELECT count(*) FROM otp_codes")
        assert found.scalar() == 0
