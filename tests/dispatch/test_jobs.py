"""Posting jobs: what a resident gets back, who may post, Idempotency-Key retries, and jobs that
must be reviewed before they go out."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from dispatch.models import Job

CENTER = {"lat": 31.2304, "lng": 121.4737}  # People's Square, Shanghai
SPOT = {"lat": 31.2331, "lng": 121.4752}  # a flat a few hundred metres north


def job_body(**overrides: Any) -> dict[str, Any]:
    return {
        "title": "Fix a dripping kitchen tap",
        "description": "The tap drips all night; washers are under the sink.",
        "category": "plumbing",
        "skills": ["plumbing", "Tools", "plumbing", "carpentry"],
        "location": SPOT,
        "address": "Room 1201, Building 3",
        "mode": "grab",
        "price_cents": 8000,
        "materials": [
            {"name": "washer", "cost_cents": 150, "quantity": 4},
            {"name": "PTFE tape", "cost_cents": 300},
        ],
        **overrides,
    }


def assert_problem(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == code, r.text


async def jobs_stored(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(select(func.count()).select_from(Job)))


async def make_community(client: httpx.AsyncClient, admin: dict[str, str]) -> int:
    body = {"name": "Renmin Square", "center": CENTER, "radius_m": 3000}
    r = await client.post("/v1/communities", json=body, headers=admin)
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


async def post_job(
    client: httpx.AsyncClient, headers: dict[str, str], key: str | None = "job-1", **overrides: Any
) -> httpx.Response:
    if key is not None:
        headers = {**headers, "Idempotency-Key": key}
    return await client.post("/v1/jobs", json=job_body(**overrides), headers=headers)


@pytest.fixture
async def community(client: httpx.AsyncClient, principals: Any) -> int:
    return await make_community(client, await principals.admin())


@pytest.fixture
async def resident(principals: Any, community: int) -> tuple[int, dict[str, str]]:
    """(user_id, headers) of a resident living in `community`."""
    return await principals.user("resident")


async def test_resident_posts_a_job_and_it_opens_with_their_details(
    client: httpx.AsyncClient, community: int, resident: tuple[int, dict[str, str]]
) -> None:
    uid, headers = resident
    r = await post_job(client, headers)
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["status"] == "open"
    assert job["review_reason"] is None
    assert job["mode"] == "grab"
    assert job["community_id"] == community
    assert job["resident_id"] == uid
    assert job["worker_id"] is None
    assert job["title"] == "Fix a dripping kitchen tap"
    assert job["category"] == "plumbing"
    assert job["location"] == SPOT
    assert job["address"] == "Room 1201, Building 3"
    assert job["price_cents"] == 8000
    assert job["materials"] == [
        {"name": "washer", "cost_cents": 150, "quantity": 4},
        {"name": "PTFE tape", "cost_cents": 300, "quantity": 1},
    ]
    assert job["window"] is None
    assert job["insured"] is False
    created = datetime.fromisoformat(job["created_at"])
    assert abs(datetime.now(UTC) - created) < timedelta(minutes=1)


async def test_skills_come_back_sorted_without_duplicates(
    client: httpx.AsyncClient, resident: tuple[int, dict[str, str]]
) -> None:
    r = await post_job(client, resident[1], skills=["tiling", "plumbing", "tiling", "Abseil"])
    assert r.status_code == 201, r.text
    assert r.json()["skills"] == ["Abseil", "plumbing", "tiling"]


async def test_currency_defaults_to_cny_and_can_be_set(
    client: httpx.AsyncClient, resident: tuple[int, dict[str, str]]
) -> None:
    default = await post_job(client, resident[1], key="cny")
    assert default.status_code == 201 and default.json()["currency"] == "CNY"
    dollars = await post_job(client, resident[1], key="usd", currency="USD")
    assert dollars.status_code == 201 and dollars.json()["currency"] == "USD"


async def test_owner_reads_their_job_and_finds_it_in_their_list(
    client: httpx.AsyncClient, principals: Any, resident: tuple[int, dict[str, str]]
) -> None:
    _, headers = resident
    posted = (await post_job(client, headers)).json()
    read = await client.get(f"/v1/jobs/{posted['id']}", headers=headers)
    assert read.status_code == 200
    assert read.json() == posted
    listed = await client.get("/v1/jobs", headers=headers)
    assert listed.status_code == 200
    assert listed.json() == [posted]
    _, neighbour = await principals.user("resident")
    assert (await client.get("/v1/jobs", headers=neighbour)).json() == []


async def test_job_list_is_newest_first(
    client: httpx.AsyncClient, resident: tuple[int, dict[str, str]]
) -> None:
    _, headers = resident
    first = (await post_job(client, headers, key="a", title="First")).json()
    second = (await post_job(client, headers, key="b", title="Second")).json()
    listed = await client.get("/v1/jobs", headers=headers)
    assert [j["id"] for j in listed.json()] == [second["id"], first["id"]]


@pytest.mark.parametrize("role", ["worker", "admin", "operator"])
async def test_only_residents_can_post_jobs(
    client: httpx.AsyncClient, principals: Any, engine: AsyncEngine, community: int, role: str
) -> None:
    if role == "admin":
        headers = await principals.admin()
    elif role == "operator":
        headers = await principals.operator(community)
    else:
        _, headers = await principals.user(role)
    assert_problem(await post_job(client, headers), 403, "forbidden_role")
    assert await jobs_stored(engine) == 0


async def test_posting_without_an_idempotency_key_is_400(
    client: httpx.AsyncClient, engine: AsyncEngine, resident: tuple[int, dict[str, str]]
) -> None:
    assert_problem(await post_job(client, resident[1], key=None), 400, "idempotency_key_required")
    assert_problem(await post_job(client, resident[1], key=""), 400, "idempotency_key_required")
    assert await jobs_stored(engine) == 0


async def test_retry_with_the_same_key_and_body_replays_the_first_answer(
    client: httpx.AsyncClient, engine: AsyncEngine, resident: tuple[int, dict[str, str]]
) -> None:
    first = await post_job(client, resident[1], key="retry-me")
    again = await post_job(client, resident[1], key="retry-me")
    assert first.status_code == again.status_code == 201
    assert again.content == first.content
    assert await jobs_stored(engine) == 1
    assert len((await client.get("/v1/jobs", headers=resident[1])).json()) == 1


async def test_same_key_with_a_different_body_is_422(
    client: httpx.AsyncClient, engine: AsyncEngine, resident: tuple[int, dict[str, str]]
) -> None:
    first = await post_job(client, resident[1], key="once")
    assert first.status_code == 201
    r = await post_job(client, resident[1], key="once", price_cents=9000)
    assert_problem(r, 422, "idempotency_key_reused")
    assert await jobs_stored(engine) == 1


async def test_a_refused_post_does_not_use_up_its_key(
    client: httpx.AsyncClient, engine: AsyncEngine, resident: tuple[int, dict[str, str]]
) -> None:
    refused = await post_job(client, resident[1], key="k", mode="booking")
    assert_problem(refused, 422, "window_required")
    accepted = await post_job(client, resident[1], key="k")
    assert accepted.status_code == 201, accepted.text
    assert await jobs_stored(engine) == 1


async def test_two_residents_using_the_same_key_each_get_their_own_job(
    client: httpx.AsyncClient, principals: Any, engine: AsyncEngine, community: int
) -> None:
    alice_id, alice = await principals.user("resident")
    bob_id, bob = await principals.user("resident")
    a = await post_job(client, alice, key="shared-key")
    b = await post_job(client, bob, key="shared-key")
    assert a.status_code == b.status_code == 201
    assert a.json()["id"] != b.json()["id"]
    assert (a.json()["resident_id"], b.json()["resident_id"]) == (alice_id, bob_id)
    assert await jobs_stored(engine) == 2


async def test_twenty_concurrent_retries_create_exactly_one_job(
    client: httpx.AsyncClient, engine: AsyncEngine, resident: tuple[int, dict[str, str]]
) -> None:
    answers = await asyncio.gather(
        *(post_job(client, resident[1], key="double-tap") for _ in range(20))
    )
    assert [r.status_code for r in answers] == [201] * 20, [r.text for r in answers]
    assert len({r.json()["id"] for r in answers}) == 1
    assert len({r.content for r in answers}) == 1
    assert await jobs_stored(engine) == 1


@pytest.mark.parametrize(
    "description",
    [
        pytest.param("需要先交押金200元", id="chinese-deposit"),
        pytest.param("Easy cash! Please pay a registration fee before starting.", id="english-fee"),
    ],
)
async def test_job_asking_the_worker_to_pay_waits_for_review(
    client: httpx.AsyncClient, resident: tuple[int, dict[str, str]], description: str
) -> None:
    r = await post_job(client, resident[1], description=description)
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["status"] == "under_review"
    assert isinstance(job["review_reason"], str) and job["review_reason"]
    read = await client.get(f"/v1/jobs/{job['id']}", headers=resident[1])
    assert read.json()["status"] == "under_review"


async def test_booking_with_a_window_is_accepted_and_echoes_it(
    client: httpx.AsyncClient, resident: tuple[int, dict[str, str]]
) -> None:
    start = (datetime.now(UTC) + timedelta(days=2)).replace(microsecond=0)
    end = start + timedelta(hours=3)
    # Start sent in Shanghai time (UTC+8), end in UTC: the same instants come back.
    shanghai = timezone(timedelta(hours=8))
    window = {"start": start.astimezone(shanghai).isoformat(), "end": end.isoformat()}
    r = await post_job(client, resident[1], mode="booking", window=window)
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["mode"] == "booking"
    assert datetime.fromisoformat(job["window"]["start"]) == start
    assert datetime.fromisoformat(job["window"]["end"]) == end
