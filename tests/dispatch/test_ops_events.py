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
        started = await next_of(events, "job")
        assert started["data"] | {"at": None} == {
            "id": job["id"], "status": "in_progress", "worker_id": job["worker_id"], "at": None,
        }  # fmt: skip
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
