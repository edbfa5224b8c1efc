"""The operators' boards beside the map: the verification queue (real-name details for the
community's operators alone, approved in place) and the community's outbox (how each message
went, with no number and no text)."""

from __future__ import annotations

from tests.dispatch.helpers import community
from tests.dispatch.test_grab import crew, post_job


async def test_the_verification_queue(client, principals, admin) -> None:
    cid = await community(client, admin)
    other = await community(client, admin, name="Xuhui")
    ops = await principals.operator(cid)
    wid, h = await principals.user("worker")
    prof = {"name": "Wang", "skills": ["plumbing"], "community_ids": [cid]}
    assert (await client.put("/v1/workers/me", json=prof, headers=h)).status_code == 200
    r = await client.post(
        "/v1/workers/me/verification",
        json={"legal_name": "王建国", "id_number": "110101199003071234"}, headers=h,
    )  # fmt: skip
    assert r.status_code == 202
    r = await client.get(f"/v1/ops/communities/{cid}/verifications", headers=ops)
    assert r.status_code == 200, r.text
    [pending] = r.json()
    assert (pending["worker_id"], pending["legal_name"], pending["id_number_hint"]) == (
        wid, "王建国", "…1234",
    )  # fmt: skip
    assert "110101199003071234" not in r.text
    theirs = await principals.operator(other)
    r = await client.get(f"/v1/ops/communities/{cid}/verifications", headers=theirs)
    assert r.status_code == 403
    assert (await client.post(f"/v1/ops/workers/{wid}/verify", headers=ops)).status_code == 200
    assert (await client.get(f"/v1/ops/communities/{cid}/verifications", headers=ops)).json() == []


async def test_the_communitys_outbox(client, principals, admin, resident) -> None:
    cid = await community(client, admin)
    ops = await principals.operator(cid)
    await crew(client, principals, cid, [100, 200])
    job = await post_job(client, resident, key="box-1")
    r = await client.get(f"/v1/ops/communities/{cid}/outbox", headers=ops)
    assert r.status_code == 200, r.text
    rows = r.json()
    assert [m["kind"] for m in rows] == ["offer", "offer"]
    assert all(m["job_id"] == job["id"] and "body" not in m and "to_hint" not in m for m in rows)
    other = await community(client, admin, name="Xuhui")
    r = await client.get(f"/v1/ops/communities/{other}/outbox", headers=ops)
    assert r.status_code == 403
