"""The operators' live event stream over a real socket (server-sent events): an SOS reaches it as
a critical alert, check-ins and the job's start come through, `Last-Event-ID` resumes, and only
the community's operators may open it (a bearer header, or a one-minute stream token in the query
that is good for nothing else)."""

from __future__ import annotations

import asyncio
import json
import re
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
                    event[field] = json.loads(value) if field == "data" and value else value

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
    # Each event's (version, wave) is above the one before: what a console orders a job's news
    # by when two transactions' events come in the other order. The snapshot has the last.
    order = [(e["version"], e["wave"]) for e in seen]
    assert order == sorted(order) and len(set(order)) == 4, order
    snap = await client.get(f"/v1/ops/communities/{cid}/snapshot", headers=ops)
    (pin,) = [j for j in snap.json()["jobs"] if j["id"] == job["id"]]
    assert (pin["version"], pin["wave"]) == order[-1]


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

    async def first(after: str, n: int) -> list[tuple[str, str, bytes]]:
        got = []
        async for batch in feed.follow(7, after, block_ms=100, batch=5):
            got.extend(batch or [])
            if len(got) >= n:
                return got[:n]
        return got

    behind = await first(ids[4], 1)
    assert behind[0] is not None and behind[0][1] == "resync"
    assert await feed.lost(7, ids[4]) is True
    within = await first(ids[44], 5)
    assert [json.loads(i[2])["k"] for i in within if i] == [45, 46, 47, 48, 49]
    assert await feed.lost(7, ids[44]) is False


async def test_positions_trim_the_stream_by_age(redis, clean_state) -> None:
    """Positions entries are the stream's bulk (a busy city's second of pings is tens of kB),
    so their XADD trims the stream by age, on Redis's clock: a second of flushes with a cap of
    0.3 s leaves only the last fraction of it, while the other events' cap by count holds."""
    import time

    from dispatch.ops.events import STREAM_MAXLEN, PositionFeed, _id, append, stream_key

    feed = PositionFeed(redis, max_age_s=0.3)
    key = stream_key(8)
    started = time.monotonic()
    flushes = 0
    while time.monotonic() - started < 1.2:
        for w in range(20):
            feed.record([8], w, 31.23 + w * 1e-4, 121.47, time.time())
        assert await feed.flush() == 20
        flushes += 1
    entries = await redis.xrange(key)
    first_ms, last_ms = _id(entries[0][0].decode())[0], _id(entries[-1][0].decode())[0]
    # Approximate trimming drops whole nodes of 100 entries: allow one node's worth of age.
    node_ms = 100 * 1200 / flushes
    assert last_ms - first_ms <= 300 + 2 * node_ms + 50, (last_ms - first_ms, node_ms)
    assert len(entries) < flushes
    assert entries[-1][1][b"type"] == b"positions"
    # Other events still cap by count only.
    await append(redis, 8, "job", {"k": 1})
    assert await redis.xlen(key) <= STREAM_MAXLEN


async def test_workers_and_jobs_carry_their_cells(
    served_base, client, principals, admin, resident
) -> None:
    """Between snapshots the console recounts supply and demand: a worker's verification and
    presence come as `worker` events, positions and jobs with their H3 cell."""
    import h3

    from geo.areas import destination
    from tests.dispatch.helpers import ready_worker
    from tests.dispatch.test_grab import post_job

    cid = await community(client, admin)
    ops = await principals.operator(cid)
    at = destination(*CENTER, 90.0, 250)
    cell = h3.latlng_to_cell(*at, 8)
    async with stream(served_base, cid, ops) as (_, events):
        await next_of(events, "hello")
        wid, h = await ready_worker(client, principals, cid, at, skills=("moving",))
        # Each event is the worker as read after its request's commit: the verification's
        # says off line, unless its read came after the presence change had committed.
        verified = (await next_of(events, "worker"))["data"]
        assert (verified["id"], verified["verification"]) == (wid, "verified")
        assert verified["name"] == f"W{wid}"
        assert verified["available"] is verified["online"]
        online = verified
        if not verified["online"]:
            online = (await next_of(events, "worker"))["data"]
            assert online["stamp"] > verified["stamp"]
        assert (online["online"], online["available"]) == (True, True)
        moved = (await next_of(events, "positions"))["data"]["workers"]
        assert [(p["id"], p["cell"]) for p in moved] == [(wid, cell)]
        job = await post_job(client, resident)
        opened = (await next_of(events, "job"))["data"]
        assert (opened["id"], opened["cell"]) == (job["id"], h3.latlng_to_cell(*CENTER, 8))
        r = await client.post("/v1/workers/me/presence", json={"status": "offline"}, headers=h)
        assert r.status_code == 200
        gone = (await next_of(events, "worker"))["data"]
        if gone["online"]:  # the verification's, read after the presence change
            gone = (await next_of(events, "worker"))["data"]
        assert (gone["id"], gone["online"], gone["available"]) == (wid, False, False)
    assert "+86" not in json.dumps([verified, online, moved, opened, gone])


async def test_a_late_event_about_a_worker_tells_the_newer_state(
    served_base, app, client, principals, admin, redis
) -> None:
    """A verification's event held back until the worker's going on line has gone out (two
    requests, two after-commit tasks, which may run in either order) still says what is true
    now, not what its request saw: each event is the worker as read after its commit, stamped
    before that read, so the later stamp always carries the newer state. (The console used to
    take a late "off line" for the last word and drop the worker from the map.)"""
    from dispatch.ops.events import stream_key
    from tests.dispatch.helpers import ready_worker

    cid = await community(client, admin)
    workers = app.state.runtime.workers
    publish = workers._publish
    held, gone_online = asyncio.Event(), asyncio.Event()
    told: list[int] = []

    async def in_turn(worker_id: int, tell_ops: bool = False) -> None:
        if tell_ops:
            told.append(worker_id)
            if len(told) == 1:  # the verification's: after the presence change's
                await gone_online.wait()
                held.set()
        await publish(worker_id, tell_ops)
        if tell_ops and len(told) == 2:
            gone_online.set()

    workers._publish = in_turn
    try:
        wid, _ = await ready_worker(client, principals, cid, CENTER, skills=("moving",))
        await asyncio.wait_for(held.wait(), 10)
        for _ in range(100):
            entries = await redis.xrange(stream_key(cid))
            told_ops = [json.loads(f[b"data"]) for _, f in entries if f[b"type"] == b"worker"]
            if len(told_ops) == 2:
                break
            await asyncio.sleep(0.05)
    finally:
        workers._publish = publish
    assert [e["id"] for e in told_ops] == [wid, wid]
    first, last = told_ops
    assert (first["online"], first["verification"]) == (True, "verified")  # going on line's
    assert (last["online"], last["verification"], last["available"]) == (True, "verified", True)
    assert last["stamp"] > first["stamp"]  # the late one read later: the console keeps it


async def test_a_slow_console_does_not_slow_the_service(
    served_base, client, principals, admin, redis
) -> None:
    """End to end over sockets: one console that stops reading (a tiny receive buffer, nothing
    read after `hello`) while three stream lengths of events go out. The service holds no more
    for it than the socket's buffers (its sender waits; nothing queues per reader), another
    console receives every event in order meanwhile, the API answers, and when the slow one
    reads again it is told to resync and goes on from the newest."""
    import socket
    import time
    from urllib.parse import urlsplit

    from dispatch.ops.events import STREAM_MAXLEN, append

    cid = await community(client, admin)
    ops = await principals.operator(cid)
    where = urlsplit(served_base)
    slow = socket.socket()
    try:
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.setblocking(False)
        loop = asyncio.get_running_loop()
        await loop.sock_connect(slow, (where.hostname, where.port))
        request = (
            f"GET /v1/ops/communities/{cid}/events HTTP/1.1\r\nHost: {where.netloc}\r\n"
            f"Authorization: {ops['Authorization']}\r\nAccept: text/event-stream\r\n\r\n"
        )
        await loop.sock_sendall(slow, request.encode())
        head = b""
        while b"event: hello" not in head:
            head += await asyncio.wait_for(loop.sock_recv(slow, 4096), 10)
        assert head.startswith(b"HTTP/1.1 200")

        total = 3 * STREAM_MAXLEN
        pad = "x" * 400
        async with stream(served_base, cid, ops) as (_, events):
            await next_of(events, "hello")

            seen: list[int] = []

            async def flood() -> None:
                # As fast as the reading console keeps up (within half the stream's length).
                for start in range(0, total, 1_000):
                    while start - len(seen) > STREAM_MAXLEN // 2:  # noqa: ASYNC110 (a list filled by the reader)
                        await asyncio.sleep(0.01)
                    async with redis.pipeline(transaction=False) as pipe:
                        for k in range(start, start + 1_000):
                            append(pipe, cid, "flood", {"k": k, "pad": pad})
                        await pipe.execute()

            async def read_all() -> list[int]:
                async for event in events:
                    if event.get("event") == "flood":
                        seen.append(event["data"]["k"])
                        if len(seen) == total:
                            return seen
                return seen

            reader = asyncio.create_task(read_all())
            await flood()
            started = time.monotonic()
            r = await client.get("/healthz")
            assert r.status_code == 200 and time.monotonic() - started < 1.0
            await asyncio.wait_for(reader, 120)
            assert seen == list(range(total))  # every event, in order, for the console that reads

        # The slow one reads again: some events from where it stopped, then `resync`, then the
        # newest, never the events the stream dropped in between.
        tail = b""
        deadline = time.monotonic() + 60
        while b"event: resync" not in tail and time.monotonic() < deadline:
            tail += await asyncio.wait_for(loop.sock_recv(slow, 1 << 16), 10)
        assert b"event: resync" in tail
        before = [int(m) for m in re.findall(rb'"k":(\d+)', tail.split(b"event: resync")[0])]
        assert before and max(before) < total - STREAM_MAXLEN  # where it had stopped, long trimmed
    finally:
        slow.close()  # also when the test fails: no socket left for the next one
