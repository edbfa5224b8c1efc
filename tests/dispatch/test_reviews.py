"""Reviews through the API: both sides of a completed job rate each other once, within 14 days;
a pair's reviews count once per 30 days; a worker's rating is a Bayesian average residents see
beside its count; comments (like job text, messages and cancellation reasons) are screened for
off-platform contacts."""

from __future__ import annotations

import asyncio

from sqlalchemy import text

from tests.dispatch.helpers import community
from tests.dispatch.test_grab import crew, offers_of, post_job

WECHAT = "加我微信 lili2026 私聊"


async def done_job(client, resident, hw, key: str = "k1", **job) -> dict:
    """A job posted, taken by the (only) worker and completed."""
    posted = await post_job(client, resident, key, **job)
    offer = next(o for o in await offers_of(client, hw) if o["job_id"] == posted["id"])
    r = await client.post(f"/v1/offers/{offer['id']}/accept", headers=hw)
    assert r.status_code == 200, r.text
    r = await client.post(
        f"/v1/jobs/{posted['id']}/complete", json={"assignment_version": 1}, headers=hw
    )
    assert r.status_code == 200, r.text
    return r.json()


async def review(client, job_id: int, headers, rating: int, comment: str | None = None):
    body = {"rating": rating, **({"comment": comment} if comment else {})}
    return await client.post(f"/v1/jobs/{job_id}/reviews", json=body, headers=headers)


async def test_both_sides_review_once_after_completion(
    client, principals, admin, resident, engine
) -> None:
    cid = await community(client, admin)
    ((wid, hw),) = await crew(client, principals, cid, [100])
    posted = await post_job(client, resident)
    # Before the work is done there is nothing to review.
    early = await review(client, posted["id"], resident, 5)
    assert early.status_code == 409 and early.json()["code"] == "not_completed"
    (offer,) = await offers_of(client, hw)
    assert (await client.post(f"/v1/offers/{offer['id']}/accept", headers=hw)).status_code == 200
    r = await client.post(
        f"/v1/jobs/{posted['id']}/complete", json={"assignment_version": 1}, headers=hw
    )
    assert r.status_code == 200

    mine = await review(client, posted["id"], resident, 4, "Quick and tidy")
    assert mine.status_code == 201, mine.text
    assert mine.json()["role"] == "resident" and mine.json()["counted"] is True
    again = await review(client, posted["id"], resident, 5)
    assert again.status_code == 409 and again.json()["code"] == "already_reviewed"
    theirs = await review(client, posted["id"], hw, 5, "Friendly, clear directions")
    assert theirs.status_code == 201 and theirs.json()["role"] == "worker"

    _, outsider = await principals.user("resident")
    r = await review(client, posted["id"], outsider, 1)
    assert r.status_code == 403 and r.json()["code"] == "not_yours"
    assert (
        await client.get(f"/v1/jobs/{posted['id']}/reviews", headers=outsider)
    ).status_code == 403
    listed = await client.get(f"/v1/jobs/{posted['id']}/reviews", headers=hw)
    assert [x["rating"] for x in listed.json()] == [4, 5]

    # The worker's shown rating: (5 x 4.5 + 4) / 6; its count; the resident's rating too.
    card = await client.get(f"/v1/workers/{wid}/reviews", headers=outsider)
    assert card.status_code == 200
    assert card.json()["rating"] == round((22.5 + 4) / 6, 2) and card.json()["rating_count"] == 1
    assert [x["comment"] for x in card.json()["reviews"]] == ["Quick and tidy"]
    job = (await client.get(f"/v1/jobs/{posted['id']}", headers=resident)).json()
    assert job["worker"] == {"id": wid, "name": job["worker"]["name"], "rating": 4.42,
                             "rating_count": 1}  # fmt: skip
    async with engine.connect() as conn:
        sums = (
            await conn.execute(
                text("SELECT rating_sum, rating_count FROM users WHERE id = :id"),
                {"id": posted["resident_id"]},
            )
        ).one()
    assert tuple(sums) == (5, 1)
    # Too late: the window closes 14 days after completion.
    async with engine.begin() as conn:
        await conn.execute(
            text("UPDATE jobs SET completed_at = completed_at - interval '15 days' WHERE id = :id"),
            {"id": posted["id"]},
        )
        await conn.execute(text("DELETE FROM reviews WHERE role = 'worker'"))
    late = await review(client, posted["id"], hw, 5)
    assert late.status_code == 409 and late.json()["code"] == "review_window_closed"


async def test_a_pair_counts_once_per_thirty_days(client, principals, admin, resident, engine):
    cid = await community(client, admin)
    ((wid, hw),) = await crew(client, principals, cid, [100])
    first = await done_job(client, resident, hw, "a")
    second = await done_job(client, resident, hw, "b")
    assert (await review(client, first["id"], resident, 5)).json()["counted"] is True
    padded = await review(client, second["id"], resident, 5)
    assert padded.status_code == 201 and padded.json()["counted"] is False
    card = (await client.get(f"/v1/workers/{wid}/reviews", headers=resident)).json()
    assert card["rating_count"] == 1 and len(card["reviews"]) == 2
    # A month later the pair's next review counts again.
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE reviews SET created_at = created_at - interval '31 days'"))
    third = await done_job(client, resident, hw, "c")
    assert (await review(client, third["id"], resident, 3)).json()["counted"] is True
    card = (await client.get(f"/v1/workers/{wid}/reviews", headers=resident)).json()
    assert card["rating_count"] == 2 and card["rating"] == round((22.5 + 8) / 7, 2)


async def test_concurrent_reviews_one_wins(client, principals, admin, resident) -> None:
    cid = await community(client, admin)
    ((wid, hw),) = await crew(client, principals, cid, [100])
    jobs = [await done_job(client, resident, hw, f"k{i}") for i in range(3)]
    # The same review of one job, 20 times at once; one review of each of three jobs at once.
    same = await asyncio.gather(*(review(client, jobs[0]["id"], resident, 4) for _ in range(20)))
    codes = sorted(r.status_code for r in same)
    assert codes == [201] + [409] * 19
    assert {r.json()["code"] for r in same if r.status_code == 409} == {"already_reviewed"}
    many = await asyncio.gather(*(review(client, j["id"], hw, 5) for j in jobs))
    assert [r.status_code for r in many] == [201, 201, 201]
    assert sum(r.json()["counted"] for r in many) == 1  # one pair, one counted review
    card = (await client.get(f"/v1/workers/{wid}/reviews", headers=hw)).json()
    assert card["rating_count"] == 1


async def test_contacts_are_screened_wherever_people_write(
    client, principals, admin, resident
) -> None:
    cid = await community(client, admin)
    ((_, hw),) = await crew(client, principals, cid, [100])
    posted = await post_job(client, resident, description=f"三楼, {WECHAT}")
    assert "lili2026" not in posted["description"] and "[contact hidden]" in posted["description"]
    assert posted["status"] == "open"
    (offer,) = await offers_of(client, hw)
    assert "lili2026" not in str(offer)
    assert (await client.post(f"/v1/offers/{offer['id']}/accept", headers=hw)).status_code == 200
    r = await client.post(
        f"/v1/jobs/{posted['id']}/messages", json={"text": "转账给我, 微信 zhangsan88"},
        headers=hw,
    )  # fmt: skip
    assert r.status_code == 201 and "zhangsan88" not in r.text and "转账给我" not in r.text
    r = await client.post(
        f"/v1/jobs/{posted['id']}/complete", json={"assignment_version": 1}, headers=hw
    )
    r = await review(client, posted["id"], resident, 5, "Great! wechat: handyman_wu")
    assert r.status_code == 201 and "handyman_wu" not in r.text
    # A job asking the worker for a deposit waits for an operator; one saying there is none
    # does not.
    scam = await post_job(client, resident, "k2", description="先交押金200元再上岗")
    assert scam["status"] == "under_review" and "asks the worker to pay" in scam["review_reason"]
    fine = await post_job(client, resident, "k3", description="无需押金, 工具自带")
    assert fine["status"] == "open"
    r = await client.post(
        f"/v1/jobs/{fine['id']}/cancel", json={"reason": "found someone, vx: abc_123"},
        headers=resident,
    )  # fmt: skip
    assert r.status_code == 200 and "abc_123" not in r.text
