"""Phone sign-in: codes by SMS through the outbox, hashed, expiring, single-use, limited."""

from __future__ import annotations

import re
from datetime import timedelta

import httpx
import jwt
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from dispatch.models import OtpCode, OutboxMessage, User
from tests.conftest import TEST_SECRET, with_auth
from tests.redis_mode import flush_all

PHONE = "+8613812345678"


async def latest_code(client: httpx.AsyncClient, admin: dict[str, str], phone: str = PHONE) -> str:
    r = await client.get("/v1/admin/outbox", params={"to": phone, "channel": "sms"}, headers=admin)
    assert r.status_code == 200, r.text
    body = r.json()[0]["body"]
    found = re.search(r"\b(\d{6})\b", body)
    assert found, body
    return found.group(1)


async def request_code(client: httpx.AsyncClient, phone: str = PHONE) -> httpx.Response:
    return await client.post("/v1/auth/otp", json={"phone": phone})


async def sign_in(client: httpx.AsyncClient, code: str, role: str = "resident", phone: str = PHONE):
    return await client.post("/v1/auth/token", json={"phone": phone, "code": code, "role": role})


async def test_happy_path_code_from_outbox_gives_token(client, principals) -> None:
    admin = await principals.admin()
    r = await request_code(client)
    assert r.status_code == 202
    code = await latest_code(client, admin)
    r = await sign_in(client, code)
    assert r.status_code == 200, r.text
    out = r.json()
    claims = jwt.decode(out["access_token"], TEST_SECRET, algorithms=["HS256"], issuer="dispatch")
    assert claims["sub"] == str(out["user_id"]) and claims["extras"]["role"] == "resident"
    # The token works on a guarded endpoint.
    mine = await client.get("/v1/jobs", headers={"Authorization": f"Bearer {out['access_token']}"})
    assert mine.status_code == 200 and mine.json() == []


async def test_outbox_message_is_held_and_shows_only_a_hint(client, principals) -> None:
    admin = await principals.admin()
    await request_code(client)
    r = await client.get("/v1/admin/outbox", headers=admin)
    (msg,) = r.json()
    assert msg["status"] == "held" and msg["channel"] == "sms" and msg["kind"] == "otp"
    assert msg["to_hint"] == "…5678"
    assert PHONE not in r.text


async def test_same_phone_signs_in_as_both_roles_with_one_user(client, principals, redis) -> None:
    admin = await principals.admin()
    ids = []
    for role in ("resident", "worker"):
        await flush_all(redis)  # skip the minimum interval between two requests
        await request_code(client)
        r = await sign_in(client, await latest_code(client, admin), role=role)
        assert r.status_code == 200 and r.json()["role"] == role
        ids.append(r.json()["user_id"])
    assert ids[0] == ids[1]


async def test_code_is_stored_hashed_and_phone_never_in_plain(client, principals, engine) -> None:
    admin = await principals.admin()
    await request_code(client)
    code = await latest_code(client, admin)
    await sign_in(client, code)
    async with engine.connect() as conn:
        for table in ("otp_codes", "users", "outbox"):
            rows = (await conn.exec_driver_sql(f"SELECT * FROM {table}")).all()  # noqa: S608
            dump = repr(rows)
            assert PHONE not in dump and PHONE[1:] not in dump, table
        (stored,) = (await conn.execute(select(OtpCode.code_hash))).scalars().all()
        assert code.encode() not in stored


async def test_wrong_code_is_401(client, principals) -> None:
    admin = await principals.admin()
    await request_code(client)
    code = await latest_code(client, admin)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    r = await sign_in(client, wrong)
    assert r.status_code == 401 and r.json()["code"] == "invalid_code"
    # The right code still works after one wrong guess.
    assert (await sign_in(client, code)).status_code == 200


async def test_code_is_single_use(client, principals) -> None:
    admin = await principals.admin()
    await request_code(client)
    code = await latest_code(client, admin)
    assert (await sign_in(client, code)).status_code == 200
    r = await sign_in(client, code)
    assert r.status_code == 401 and r.json()["code"] == "invalid_code"


async def test_expired_code_is_401(client, principals, engine: AsyncEngine) -> None:
    admin = await principals.admin()
    await request_code(client)
    code = await latest_code(client, admin)
    async with engine.begin() as conn:
        await conn.execute(
            update(OtpCode).values(expires_at=OtpCode.created_at - timedelta(seconds=1))
        )
    r = await sign_in(client, code)
    assert r.status_code == 401 and r.json()["code"] == "invalid_code"


async def test_too_many_wrong_attempts_burn_the_code(client, principals, settings) -> None:
    admin = await principals.admin()
    await request_code(client)
    code = await latest_code(client, admin)
    wrong = f"{(int(code) + 7) % 1_000_000:06d}"
    for _ in range(settings.auth.otp_max_attempts):
        assert (await sign_in(client, wrong)).status_code == 401
    r = await sign_in(client, code)
    assert r.status_code == 401 and r.json()["code"] == "invalid_code"


async def test_new_code_replaces_the_old_one(client, principals, redis) -> None:
    admin = await principals.admin()
    await request_code(client)
    first = await latest_code(client, admin)
    await flush_all(redis)  # skip the minimum interval between two requests
    await request_code(client)
    second = await latest_code(client, admin)
    if first != second:
        assert (await sign_in(client, first)).status_code == 401
    assert (await sign_in(client, second)).status_code == 200


async def test_requests_too_soon_are_429_with_retry_after(client) -> None:
    assert (await request_code(client)).status_code == 202
    r = await request_code(client)
    assert r.status_code == 429 and r.json()["code"] == "rate_limited"
    assert int(r.headers["Retry-After"]) >= 1


@pytest.fixture
def settings(base_settings):
    return with_auth(
        base_settings,
        otp_min_interval_s=1,
        otp_per_phone_limit=3,
        otp_per_client_limit=5,
    )


async def test_per_phone_limit(client, redis) -> None:
    for i in range(3):
        await redis.delete(*[k async for k in redis.scan_iter("rl:otp-gap:*")] or ["_"])
        assert (await request_code(client)).status_code == 202, i
    await redis.delete(*[k async for k in redis.scan_iter("rl:otp-gap:*")] or ["_"])
    r = await request_code(client)
    assert r.status_code == 429 and "phone" in r.json()["detail"]


async def test_per_client_limit_spans_phones(client) -> None:
    for i in range(5):
        assert (await request_code(client, f"+86138000000{i:02d}")).status_code == 202
    r = await request_code(client, "+8613800000099")
    assert r.status_code == 429 and "client" in r.json()["detail"]


async def test_other_clients_are_not_limited_by_one(app, client) -> None:
    for i in range(5):
        await request_code(client, f"+86138000000{i:02d}")
    other = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=("10.9.9.9", 1)), base_url="http://t"
    )
    async with other:
        assert (await request_code(other, "+8613800000099")).status_code == 202


async def test_logs_never_carry_the_phone_or_code(client, principals, capfd) -> None:
    admin = await principals.admin()
    await request_code(client)
    code = await latest_code(client, admin)
    await sign_in(client, "000000" if code != "000000" else "111111")
    await sign_in(client, code)
    out, err = capfd.readouterr()
    logs = out + err
    assert PHONE not in logs and PHONE[1:] not in logs
    assert code not in logs


async def test_users_have_no_plain_phone_column(engine) -> None:
    assert "phone" not in User.__table__.c
    assert {"phone_hash", "phone_enc"} <= set(User.__table__.c.keys())
    assert "to" not in OutboxMessage.__table__.c
