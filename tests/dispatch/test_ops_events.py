"""The operators' live event stream over a real socket (server-sent events): an SOS reaches it as
a critical alert, check-ins and the job's start come through, `Last-Event-ID` resumes, and only
the community's operators may open it (a bearer header, or a one-minute stream token in the query
that is good for nothing else)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

from tests.dispatch.helpers import CENTER, community
from tests.dispatch.test_safety import assigned_job


@asynccontextmanager
async def stream(
    base: str, cid: int, headers: dict[str, str] | None = None, **params: str
) -> AsyncIterator[tuple[httpx.Response, AsyncIterator[dict]]]:
    async with (
        httpx.AsyncClient(base_url=base, timeout=30) as http,
        http.stream(
            "GET", f"/v1/ops/communities/{cid}/events", headers=headers or {}, params=params
        ) as response,
    ):

        async def events() -> AsyncIterator[dict]:
            event: dict = {}
            async for line in response.aiter_lines():
                if not line:
                    if event:
                        yield event
                    event = {}
                elif line.startswith(":"):
                    continue
                else:
                    field, _, value = line.partition(": ")
                    event[field] = json.loads(value) if field == "data" else value

        yield response, events()


async def next_of(events: AsyncIterator[dict], kind: str, within: float = 10.0) -> dict:
    async def find() -> dict:
        async for event in events:
            if event.get("event") == kind:
                return event
        raise AssertionError("the stream ended")

    return await asyncio.wait_for(find(), within)


async def test_sos_checkins_and_the_start_reach_the_stream(
    served_base, client, principals, admin, resident
) -> None:
    cid, _, h, job = await assigned_job(client, principals, admin, resident)
    ops = await principals.operator(cid)
    async with stream(served_base, cid, ops) as (response, events):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        hello = await next_of(events, "hello")
        assert hello["data"]["community_id"] == cid
        pin = (await client.get(f"/v1/jobs/{job['id']}", headers=resident)).json()["start_pin"]
        body = {"pin": pin, "location": {"lat": CENTER[0], "lng": CENTER[1]},
                "assignment_version": job["assignment_version"]}  # fmt: skip
        assert (await client.post(f"/v1/jobs/{job['id']}/start", json=body, headers=h)).is_success
        started = (await next_of(events, "job"))["data"]
        assert (started["id"], started["status"], started["worker_id"]) == (
            job["id"], "in_progress", job["worker_id"],
        )  # fmt: skip
        checkin = {"kind": "periodic", "location": {"lat": CENTER[0], "lng": CENTER[1]}}
        r = await client.post(f"/v1/jobs/{job['id']}/checkins", json=checkin, headers=h)
        assert r.status_code == 201
        seen = await next_of(events, "checkin")
        assert (seen["data"]["job_id"], seen["data"]["kind"]) == (job["id"], "periodic")
        r = await client.post(f"/v1/jobs/{job['id']}/sos", json={"note": "help"}, headers=resident)
        assert r.status_code == 202
        alert = await next_of(events, "alert")
        assert alert["data"]["id"] == r.json()["alert_id"]
        assert (alert["data"]["kind"], alert["data"]["severity"]) == ("sos", "critical")
        assert alert["id"] and "-" in alert["id"]


async def test_last_event_id_resumes_after_it(
    served_base, client, principals, admin, resident
) -> None:
    cid, _, h, job = await assigned_job(client, principals, admin, resident)
    ops = await principals.operator(cid)
    async with stream(served_base, cid, ops) as (_, events):
        await next_of(events, "hello")
        first = await client.post(f"/v1/jobs/{job['id']}/sos", json={}, headers=resident)
        got = await next_of(events, "alert")
        assert got["data"]["id"] == first.json()["alert_id"]
    second = await client.post(f"/v1/jobs/{job['id']}/sos", json={}, headers=h)  # the worker's
    assert second.status_code == 202
    async with stream(served_base, cid, {**ops, "Last-Event-ID": got["id"]}) as (_, events):
        missed = await next_of(events, "alert")
        assert missed["data"]["id"] == second.json()["alert_id"]


async def test_who_may_open_it(served_base, client, principals, admin, resident) -> None:
    cid = await community(client, admin)
    other = await community(client, admin, name="Xuhui")
    ops = await principals.operator(cid)
    r = await client.post(f"/v1/ops/communities/{cid}/stream-token", headers=ops)
    assert r.status_code == 201, r.text
    token = r.json()["token"]
    async with stream(served_base, cid, token=token) as (response, events):
        assert response.status_code == 200
        await next_of(events, "hello")
    refused = [
        (cid, {}, {}, 401),  # nobody
        (cid, {}, {"token": "not-a-token"}, 401),
        (cid, {"Authorization": f"Bearer {token}"}, {}, 401),  # a stream token is no bearer
        (other, {}, {"token": token}, 403),  # another community's stream
        (other, ops, {}, 403),
        (cid, resident, {}, 403),
        (cid, {}, {"token": resident["Authorization"][7:]}, 401),  # a bearer is no stream token
    ]
    for target, headers, params, status in refused:
        async with stream(served_base, target, headers, **params) as (response, _):
            assert response.status_code == status, (target, headers, params)
            await response.aread()
    # The stream token opens the stream and nothing else.
    r = await client.get(
        f"/v1/ops/communities/{cid}/alerts", headers={"Authorization": f"Bearer {token}"}
    )
    assert r.status_code == 401
    assert (
        await client.post(f"/v1/ops/communities/{cid}/stream-token", headers=resident)
    ).status_code == 403


async def test_a_jobs_life_in_order(served_base, client, principals, admin, resident) -> None:
    """Posted, its wave out (with its reach and who was offered), taken, done: in that order."""
    from tests.dispatch.test_grab import crew, offers_of, post_job

    cid = await community(client, admin)
    ops = await principals.operator(cid)
    team = await crew(client, principals, cid, [100, 200])
    async with stream(served_base, cid, ops) as (_, events):
        await next_of(events, "hello")
        job = await post_job(client, resident, key="life-1")
        (offer,) = await offers_of(client, team[0][1])
        taken = await client.post(f"/v1/offers/{offer['id']}/accept", headers=team[0][1])
        version = taken.json()["assignment_version"]
        r = await client.post(
            f"/v1/jobs/{job['id']}/complete", json={"assignment_version": version},
            headers=team[0][1],
        )  # fmt: skip
        assert r.status_code == 200, r.text
        seen = [(await next_of(events, "job"))["data"] for _ in range(4)]
    assert [(e["id"], e["status"], e["wave"]) for e in seen] == [
        (job["id"], "open", 0), (job["id"], "open", 1), (job["id"], "assigned", 1),
        (job["id"], "completed", 1),
    ]  # fmt: skip
    assert seen[1]["wave_radius_m"] == 1000
    assert sorted(seen[1]["offered"]) == sorted(w for w, _ in team)
    assert seen[2]["worker_id"] == team[0][0] and seen[3]["worker_id"] == team[0][0]


async def test_positions_come_coalesced(served_base, client, principals, admin) -> None:
    """Five pings in a burst from one worker: the stream carries its position once, and the
    next no sooner than a second later."""
    import time

    from geo.areas import destination
    from tests.dispatch.test_grab import crew

    cid = await community(client, admin)
    ops = await principals.operator(cid)
    ((wid, h),) = await crew(client, principals, cid, [100])
    async with stream(served_base, cid, ops) as (_, events):
        await next_of(events, "hello")
        lat, lng = destination(*CENTER, 0.0, 100)
        for _ in range(5):
            r = await client.post(
                "/v1/workers/me/location", json={"lat": lat, "lng": lng}, headers=h
            )
            assert r.status_code == 204, r.text
        got = await next_of(events, "positions", within=5)
        first_at = time.monotonic()
        mine = [p for p in got["data"]["workers"] if p["id"] == wid]
        assert len(mine) == 1 and abs(mine[0]["lat"] - lat) < 1e-6
        r = await client.post("/v1/workers/me/location", json={"lat": lat, "lng": lng}, headers=h)
        await next_of(events, "positions", within=5)
        assert time.monotonic() - first_at > 0.5  # the next one waited for the next second


async def test_a_reader_left_behind_is_told_to_resync(redis, clean_state) -> None:
    """The stream keeps no buffer per reader: one that fell behind the trimming gets `resync`
    (and goes on from the newest); one still within it loses nothing."""
    from dispatch.ops.events import OpsFeed, append, stream_key

    feed = OpsFeed(redis, None, None, "unused")  # type: ignore[arg-type]
    for k in range(50):
        await append(redis, 7, "job", {"k": k})
    ids = [i.decode() for i, _ in await redis.xrange(stream_key(7))]
    assert len(ids) == 50
    await redis.xtrim(stream_key(7), maxlen=10, approximate=False)

    async def first(after: str, n: int) -> list[tuple[str, str, str] | None]:
        got = []
        async for item in feed.follow(7, after, block_ms=100, batch=5):
            got.append(item)
            if len(got) == n:
                return got
        return got

    behind = await first(ids[4], 1)
    assert behind[0] is not None and behind[0][1] == "resync"
    assert await feed.lost(7, ids[4]) is True
    within = await first(ids[44], 5)
    assert [json.loads(i[2])["k"] for i in within if i] == [45, 46, 47, 48, 49]
    assert await feed.lost(7, ids[44]) is False
