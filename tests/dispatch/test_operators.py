"""Operators: an admin grants the role by phone for some communities; the operator signs in by
code with `role: operator`, and the token reaches those communities alone. Signing in never
makes anyone an operator."""

from __future__ import annotations

import pytest

from tests.conftest import with_auth
from tests.dispatch.helpers import community
from tests.dispatch.test_identity import latest_code

PHONE = "+8613911112222"


@pytest.fixture
def settings(base_settings):
    return with_auth(base_settings, otp_min_interval_s=0)  # sign in twice in a row


async def sign_in(client, admin, phone: str, role: str = "operator"):
    assert (await client.post("/v1/auth/otp", json={"phone": phone})).status_code == 202
    code = await latest_code(client, admin, phone)
    return await client.post("/v1/auth/token", json={"phone": phone, "code": code, "role": role})


async def test_a_granted_operator_signs_in_to_their_communities(client, admin) -> None:
    mine = await community(client, admin)
    other = await community(client, admin, name="Xuhui")
    r = await client.post(
        "/v1/admin/operators", json={"phone": PHONE, "community_ids": [mine]}, headers=admin
    )
    assert r.status_code == 200, r.text
    assert r.json()["community_ids"] == [mine] and r.json()["phone_hint"] == "…2222"
    r = await sign_in(client, admin, PHONE)
    assert r.status_code == 200, r.text
    assert r.json()["role"] == "operator"
    ops = {"Authorization": f"Bearer {r.json()['access_token']}"}
    assert (await client.get(f"/v1/ops/communities/{mine}/alerts", headers=ops)).status_code == 200
    r = await client.get(f"/v1/ops/communities/{other}/snapshot", headers=ops)
    assert r.status_code == 403
    # Granting again replaces the list.
    r = await client.post(
        "/v1/admin/operators", json={"phone": PHONE, "community_ids": [other]}, headers=admin
    )
    assert r.json()["community_ids"] == [other]
    fresh = await sign_in(client, admin, PHONE)
    ops = {"Authorization": f"Bearer {fresh.json()['access_token']}"}
    assert (await client.get(f"/v1/ops/communities/{other}/alerts", headers=ops)).status_code == 200
    assert (await client.get(f"/v1/ops/communities/{mine}/alerts", headers=ops)).status_code == 403


async def test_signing_in_makes_no_operator(client, admin, resident) -> None:
    await community(client, admin)
    r = await sign_in(client, admin, "+8613933334444")
    assert r.status_code == 403 and r.json()["code"] == "not_an_operator"
    r = await client.post(
        "/v1/admin/operators", json={"phone": PHONE, "community_ids": [999]}, headers=admin
    )
    assert r.status_code == 404 and r.json()["code"] == "community_not_found"
    r = await client.post(
        "/v1/admin/operators", json={"phone": PHONE, "community_ids": [1]}, headers=resident
    )
    assert r.status_code == 403
