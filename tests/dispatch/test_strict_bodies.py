"""JSON bodies are decoded strictly (a string is not a number or a boolean) and only when they are
sent as JSON (else 415); nothing is stored from a refused body."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from dispatch.models import Job
from tests.dispatch.helpers import CENTER, community

JOB = {
    "title": "Fix a dripping tap",
    "category": "plumbing",
    "location": {"lat": CENTER[0], "lng": CENTER[1]},
    "mode": "grab",
    "price_cents": 8000,
}


async def jobs_stored(engine) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(select(func.count()).select_from(Job)))


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"price_cents": "100"}, "price_cents"),
        ({"location": {"lat": "31.2304", "lng": CENTER[1]}}, "location.lat"),
        ({"insured": "true"}, "insured"),
        ({"insured": 1}, "insured"),
        ({"price_cents": 80.5}, "price_cents"),
        ({"title": 12345}, "title"),
    ],
)
async def test_a_value_of_the_wrong_type_is_400(
    client, admin, resident, engine, change, key
) -> None:
    await community(client, admin)
    r = await client.post(
        "/v1/jobs", json={**JOB, **change}, headers={**resident, "Idempotency-Key": "k"}
    )
    assert r.status_code == 400, r.text
    problem = r.json()
    assert problem["code"] == "validation_error"
    assert problem["errors"][0]["key"] == key and problem["errors"][0]["source"] == "body"
    assert await jobs_stored(engine) == 0


@pytest.mark.parametrize("content_type", ["text/plain", None, "application/x-www-form-urlencoded"])
async def test_json_not_sent_as_json_is_415(client, admin, resident, engine, content_type) -> None:
    await community(client, admin)
    headers = {**resident, "Idempotency-Key": "k"}
    if content_type:
        headers["Content-Type"] = content_type
    r = await client.post("/v1/jobs", content=json.dumps(JOB).encode(), headers=headers)
    assert r.status_code == 415, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "unsupported_media_type"
    assert await jobs_stored(engine) == 0


async def test_json_with_a_charset_is_json(client, admin, resident, engine) -> None:
    await community(client, admin)
    json_utf8 = "application/json; charset=utf-8"
    headers = {**resident, "Idempotency-Key": "k", "Content-Type": json_utf8}
    r = await client.post("/v1/jobs", content=json.dumps(JOB).encode(), headers=headers)
    assert r.status_code == 201, r.text
    assert await jobs_stored(engine) == 1


async def test_the_sign_in_body_is_strict_too(client) -> None:
    r = await client.post("/v1/auth/otp", content=b'{"phone": "+8613812345678"}')
    assert r.status_code == 415
    r = await client.post("/v1/auth/otp", json={"phone": 8613812345678})
    assert r.status_code == 400 and r.json()["code"] == "validation_error"
