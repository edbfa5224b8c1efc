"""Numbers are hidden in every text one user writes and another reads: a job's title,
description, address and materials, a cancellation reason, a worker's name and bio, in-app
messages, in the forms people really type them."""

from __future__ import annotations

import re

from tests.dispatch.helpers import CENTER, community, ready_worker
from tests.dispatch.test_grab import offers_of, post_job

FORMS = ["138 0013 8001", "+86-138-0013-8001", "(138) 0013-8001", "１３８００１３８００１"]
DIGITS = re.compile(r"0\D?0\D?1\D?3|８００１")


def assert_no_number(text: str) -> None:
    assert not DIGITS.search(text), text
    assert "8001" not in text, text


async def test_a_number_in_a_job_reaches_no_worker(client, principals, admin, resident) -> None:
    cid = await community(client, admin)
    _, worker = await ready_worker(client, principals, cid, CENTER, skills=("moving",))
    job = await post_job(
        client,
        resident,
        title=f"Move a sofa, call {FORMS[0]}",
        description=f"我的电话是{FORMS[1]}，或者 {FORMS[3]}",
        address=f"Building 5, room 1203 (ring {FORMS[2]})",
        materials=[{"name": f"straps, ask {FORMS[0]}", "cost_cents": 500}],
    )
    # What is kept of the text stays.
    assert job["title"].startswith("Move a sofa, call ")
    assert "Building 5, room 1203" in job["address"]
    (offer,) = await offers_of(client, worker)
    assert_no_number(str(offer))
    r = await client.post(f"/v1/offers/{offer['id']}/accept", headers=worker)
    assert r.status_code == 200, r.text
    seen = await client.get(f"/v1/jobs/{job['id']}", headers=worker)
    assert seen.status_code == 200
    assert_no_number(seen.text)
    cancelled = await client.post(
        f"/v1/jobs/{job['id']}/cancel", json={"reason": f"sorry, text me on {FORMS[1]}"},
        headers=resident,
    )  # fmt: skip
    assert cancelled.status_code == 200, cancelled.text
    assert_no_number(cancelled.json()["cancellation"]["reason"])


async def test_messages_hide_numbers_in_every_form(client, principals, admin, resident) -> None:
    cid = await community(client, admin)
    _, worker = await ready_worker(client, principals, cid, CENTER, skills=("moving",))
    job = await post_job(client, resident)
    (offer,) = await offers_of(client, worker)
    taken = await client.post(f"/v1/offers/{offer['id']}/accept", headers=worker)
    assert taken.status_code == 200, taken.text
    path = f"/v1/jobs/{job['id']}/messages"
    for form in FORMS:
        r = await client.post(path, json={"text": f"call me on {form} ok?"}, headers=resident)
        assert r.status_code == 201, r.text
        assert r.json()["text"] == "call me on [number hidden] ok?"
    listing = await client.get(path, headers=worker)
    assert len(listing.json()) == len(FORMS)
    assert_no_number(listing.text)


async def test_a_worker_profile_carries_no_number(client, principals, admin, resident) -> None:
    cid = await community(client, admin)
    wid, worker = await ready_worker(client, principals, cid, CENTER)
    r = await client.put(
        "/v1/workers/me",
        json={"name": f"Li {FORMS[0]}", "skills": ["plumbing"], "community_ids": [cid],
              "bio": f"10 years of plumbing. WeChat/phone {FORMS[1]}"},
        headers=worker,
    )  # fmt: skip
    assert r.status_code == 200, r.text
    assert_no_number(r.text)
    near = await client.get(
        "/v1/workers/nearby",
        params={"lat": CENTER[0], "lng": CENTER[1], "radius_m": 1000, "skill": "plumbing"},
        headers=resident,
    )
    assert [w["worker_id"] for w in near.json()] == [wid]
    assert_no_number(near.text)
