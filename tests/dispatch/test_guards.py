"""Who may do what: sign-in is required, roles are enforced, operators see only their communities,
and tokens that are expired, forged or tampered with are refused."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from dispatch.identity.auth import issue_token
from dispatch.models import Community
from tests.conftest import TEST_SECRET

SHANGHAI = {"lat": 31.2304, "lng": 121.4737}
HANGZHOU = {"lat": 30.2741, "lng": 120.1551}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def token_of(headers: dict[str, str]) -> str:
    return headers["Authorization"].removeprefix("Bearer ")


def claims_of(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


def assert_problem(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == code, r.text


async def make_community(
    client: httpx.AsyncClient, admin: dict[str, str], center: dict[str, float], **overrides: Any
) -> int:
    body = {"name": "Community", "center": center, "radius_m": 3000, **overrides}
    r = await client.post("/v1/communities", json=body, headers=admin)
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


async def post_job(
    client: httpx.AsyncClient, resident: dict[str, str], where: dict[str, float], title: str
) -> int:
    body = {
        "title": title,
        "category": "cleaning",
        "location": where,
        "mode": "grab",
        "price_cents": 5000,
    }
    r = await client.post("/v1/jobs", json=body, headers={**resident, "Idempotency-Key": title})
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


async def two_cities_with_a_job_each(
    client: httpx.AsyncClient, principals: Any
) -> tuple[int, int, int, int]:
    """(shanghai_id, hangzhou_id, shanghai_job, hangzhou_job), each job by its own resident."""
    admin = await principals.admin()
    shanghai = await make_community(client, admin, SHANGHAI)
    hangzhou = await make_community(client, admin, HANGZHOU)
    _, resident_a = await principals.user("resident")
    _, resident_b = await principals.user("resident")
    job_a = await post_job(client, resident_a, SHANGHAI, "shanghai-job")
    job_b = await post_job(client, resident_b, HANGZHOU, "hangzhou-job")
    return shanghai, hangzhou, job_a, job_b


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/jobs"),
        ("POST", "/v1/jobs"),
        ("GET", "/v1/jobs/1"),
        ("POST", "/v1/communities"),
        ("GET", "/v1/communities/1"),
        ("GET", "/v1/communities?lat=31.23&lng=121.47"),
        ("GET", "/v1/admin/outbox"),
    ],
)
async def test_calls_without_a_token_are_401(
    client: httpx.AsyncClient, method: str, path: str
) -> None:
    r = await client.request(method, path, json={} if method == "POST" else None)
    assert_problem(r, 401, "unauthorized")


@pytest.mark.parametrize("role", ["resident", "worker"])
async def test_residents_and_workers_cannot_create_communities(
    client: httpx.AsyncClient, principals: Any, engine: AsyncEngine, role: str
) -> None:
    _, headers = await principals.user(role)
    body = {"name": "Mine", "center": SHANGHAI}
    r = await client.post("/v1/communities", json=body, headers=headers)
    assert_problem(r, 403, "forbidden_role")
    async with engine.connect() as conn:
        assert await conn.scalar(select(func.count()).select_from(Community)) == 0


async def test_operators_cannot_create_communities(
    client: httpx.AsyncClient, principals: Any
) -> None:
    shanghai = await make_community(client, await principals.admin(), SHANGHAI)
    operator = await principals.operator(shanghai)
    r = await client.post(
        "/v1/communities", json={"name": "Mine", "center": HANGZHOU}, headers=operator
    )
    assert_problem(r, 403, "forbidden_role")
    found = await client.get("/v1/communities", params=HANGZHOU, headers=operator)
    assert found.json() == []


async def test_only_admins_read_the_outbox(client: httpx.AsyncClient, principals: Any) -> None:
    admin = await principals.admin()
    shanghai = await make_community(client, admin, SHANGHAI)
    _, resident = await principals.user("resident")
    _, worker = await principals.user("worker")
    operator = await principals.operator(shanghai)
    for who in (operator, worker, resident):
        assert_problem(await client.get("/v1/admin/outbox", headers=who), 403, "forbidden_role")
    r = await client.get("/v1/admin/outbox", headers=admin)
    assert r.status_code == 200 and r.json() == []


async def test_operator_reads_jobs_in_their_community_but_not_in_another(
    client: httpx.AsyncClient, principals: Any
) -> None:
    shanghai, _, job_a, job_b = await two_cities_with_a_job_each(client, principals)
    operator = await principals.operator(shanghai)
    own = await client.get(f"/v1/jobs/{job_a}", headers=operator)
    assert own.status_code == 200 and own.json()["id"] == job_a
    assert_problem(await client.get(f"/v1/jobs/{job_b}", headers=operator), 403, "not_yours")


async def test_resident_cannot_read_another_residents_job(
    client: httpx.AsyncClient, principals: Any
) -> None:
    _, _, job_a, _ = await two_cities_with_a_job_each(client, principals)
    _, stranger = await principals.user("resident")
    assert_problem(await client.get(f"/v1/jobs/{job_a}", headers=stranger), 403, "not_yours")


async def test_unassigned_worker_cannot_read_a_job(
    client: httpx.AsyncClient, principals: Any
) -> None:
    _, _, job_a, _ = await two_cities_with_a_job_each(client, principals)
    _, worker = await principals.user("worker")
    assert_problem(await client.get(f"/v1/jobs/{job_a}", headers=worker), 403, "not_yours")


async def test_operator_job_list_holds_only_their_communities_jobs(
    client: httpx.AsyncClient, principals: Any
) -> None:
    shanghai, hangzhou, job_a, job_b = await two_cities_with_a_job_each(client, principals)
    listed = await client.get("/v1/jobs", headers=await principals.operator(shanghai))
    assert listed.status_code == 200
    assert [j["id"] for j in listed.json()] == [job_a]
    both = await client.get("/v1/jobs", headers=await principals.operator(shanghai, hangzhou))
    assert sorted(j["id"] for j in both.json()) == sorted([job_a, job_b])


async def test_expired_token_is_401(client: httpx.AsyncClient, principals: Any) -> None:
    uid, _ = await principals.user("resident")
    # issue_token refuses a negative ttl (litestar's Token wants `exp` in the future), so the
    # expired token is the service's own token with `exp` moved into the past and re-signed.
    claims = claims_of(issue_token(TEST_SECRET, uid, "resident"))
    resigned = jwt.encode(claims, TEST_SECRET, algorithm="HS256")
    assert (await client.get("/v1/jobs", headers=bearer(resigned))).status_code == 200
    claims["iat"] = int((datetime.now(UTC) - timedelta(hours=2)).timestamp())
    claims["exp"] = int((datetime.now(UTC) - timedelta(seconds=10)).timestamp())
    expired = jwt.encode(claims, TEST_SECRET, algorithm="HS256")
    assert_problem(await client.get("/v1/jobs", headers=bearer(expired)), 401, "unauthorized")


async def test_token_with_its_role_changed_and_resigned_with_another_key_is_401(
    client: httpx.AsyncClient, principals: Any
) -> None:
    _, resident = await principals.user("resident")
    claims = claims_of(token_of(resident))
    claims["extras"]["role"] = "admin"
    tampered = jwt.encode(claims, "an-attackers-own-signing-key-32-bytes!", algorithm="HS256")
    r = await client.get("/v1/admin/outbox", headers=bearer(tampered))
    assert_problem(r, 401, "unauthorized")
    # The same claims signed with the real key do pass: the signature is what refused them.
    genuine = jwt.encode(claims, TEST_SECRET, algorithm="HS256")
    assert (await client.get("/v1/admin/outbox", headers=bearer(genuine))).status_code == 200


async def test_unsigned_token_is_401(client: httpx.AsyncClient, principals: Any) -> None:
    _, resident = await principals.user("resident")
    claims = claims_of(token_of(resident))
    claims["extras"]["role"] = "admin"
    unsigned = jwt.encode(claims, None, algorithm="none")
    r = await client.get("/v1/admin/outbox", headers=bearer(unsigned))
    assert_problem(r, 401, "unauthorized")


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"iss": "someone-else"}, id="foreign-issuer"),
        pytest.param({"extras": {"role": "superuser"}}, id="unknown-role"),
        pytest.param({"sub": "not-a-number"}, id="non-numeric-subject"),
    ],
)
async def test_correctly_signed_token_with_bad_claims_is_401(
    client: httpx.AsyncClient, principals: Any, change: dict[str, Any]
) -> None:
    _, resident = await principals.user("resident")
    claims = {**claims_of(token_of(resident)), **change}
    token = jwt.encode(claims, TEST_SECRET, algorithm="HS256")
    assert_problem(await client.get("/v1/jobs", headers=bearer(token)), 401, "unauthorized")


async def test_a_remembered_token_is_still_refused_once_expired_or_altered(
    client, principals
) -> None:
    """The auth middleware remembers verified tokens (CachingJWTAuthenticationMiddleware): a
    token it has accepted is refused once its exp has passed, and a copy differing in one byte of
    its signature is checked in full and refused."""
    uid, _ = await principals.user("worker")
    token = issue_token(TEST_SECRET, uid, "worker", ttl_s=2)
    profile = {"name": "W", "skills": [], "community_ids": []}
    for _ in range(2):  # verified, then remembered
        r = await client.put("/v1/workers/me", json=profile, headers=bearer(token))
        assert r.status_code == 200, r.text
    head, payload, signature = token.split(".")
    altered = (
        f"{head}.{payload}.{signature[:-2]}{'A' if signature[-2] != 'A' else 'B'}{signature[-1]}"
    )
    assert_problem(
        await client.put("/v1/workers/me", json=profile, headers=bearer(altered)),
        401,
        "unauthorized",
    )
    expires = claims_of(token)["exp"]
    await asyncio.sleep(max(0.0, expires - time.time()) + 0.1)
    assert_problem(
        await client.put("/v1/workers/me", json=profile, headers=bearer(token)), 401, "unauthorized"
    )
