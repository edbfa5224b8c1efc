"""What the dispatch hot paths write and how often they go to PostgreSQL and Redis: the outbox
rows of a wave and of a taken or cancelled job (written in one statement each), the job's
response summary, and an accept's one Redis round trip for a loser."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import pytest
from litestar import Litestar
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine

from dispatch.grab.dispatcher import SIDE_READS
from dispatch.infra.rawread import RawRead
from dispatch.infra.wire import Pipeliner
from tests.dispatch.helpers import community
from tests.dispatch.test_grab import crew, offers_of, post_job
from tests.redis_mode import not_on_cluster


@pytest.fixture
def settings(base_settings):
    # No outbox relay in these apps: its polling statements would land among the counted ones.
    return replace(base_settings, relay=False)


async def rows(engine: AsyncEngine, sql: str, **params: Any) -> list[Any]:
    async with engine.connect() as conn:
        return list((await conn.execute(text(sql), params)).all())


_TRACED = contextvars.ContextVar("traced", default=False)
"""True in the test's own task (and the tasks it starts): the request's work."""


@contextmanager
def round_trips(app: Litestar, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, list]]:
    """Statements the app sends to PostgreSQL (through SQLAlchemy: "db"; straight from asyncpg,
    `dispatch.infra.rawread`: "raw") and commands (or pipelines) to Redis."""
    rt = app.state.runtime
    seen: dict[str, list] = {"db": [], "raw": [], "redis": []}
    # Redis commands of the request under test only: the app's background work (SAQ polling
    # its queue, timers) shares the client, and on a loaded machine it fell inside the window.
    mine = _TRACED.set(True)

    def statement(_conn, _cursor, sql, *_args) -> None:
        # SQLAlchemy runs the statement in a greenlet that keeps the caller's context: the
        # request's own statements only (a loaded machine put the position write-behind's
        # UPDATE and a timer's SELECT inside the window).
        if _TRACED.get():
            seen["db"].append(sql.split()[0])

    original_command = Redis.execute_command
    original_pipeline = Pipeline.execute

    async def command(self, *args, **kwargs):
        if self is rt.redis and _TRACED.get():
            seen["redis"].append(str(args[0]))
        return await original_command(self, *args, **kwargs)

    async def pipeline(self, *args, **kwargs):
        if not _TRACED.get():
            return await original_pipeline(self, *args, **kwargs)
        names = {str(args[0]).upper() for args, _ in self.command_stack}
        seen["redis"].append(
            "XADD" if names == {"XADD"} else f"pipeline of {len(self.command_stack)}"
        )
        return await original_pipeline(self, *args, **kwargs)

    original_pipelined = Pipeliner.send

    async def pipelined(self, command):
        if not _TRACED.get():
            return await original_pipelined(self, command)
        # The fast path of the live index (search FCALL, move EVALSHA) and of claims: commands
        # of concurrent callers share socket writes.
        seen["redis"].append(command.split(b"\r\n")[2].decode())
        return await original_pipelined(self, command)

    original_read = RawRead.rows

    async def raw_read(self, sessions, params):
        if _TRACED.get():
            seen["raw"].append(self.pg.split()[0])
        return await original_read(self, sessions, params)

    monkeypatch.setattr(RawRead, "rows", raw_read)
    monkeypatch.setattr(Pipeliner, "send", pipelined)
    monkeypatch.setattr(Redis, "execute_command", command)
    monkeypatch.setattr(Pipeline, "execute", pipeline)
    event.listen(rt.engine.sync_engine, "before_cursor_execute", statement)
    try:
        yield seen
    finally:
        event.remove(rt.engine.sync_engine, "before_cursor_execute", statement)
        _TRACED.reset(mine)


async def test_a_wave_writes_offers_outbox_and_deadline_together(
    client, principals, admin, resident, engine
) -> None:
    cid = await community(client, admin)
    team = await crew(client, principals, cid, [100, 200, 300])
    job = await post_job(client, resident)
    assert job["offers"] == {"wave": 1, "pending": 3, "accepted": 0, "declined": 0,
                             "expired": 0, "taken": 0, "withdrawn": 0}  # fmt: skip
    read = (await client.get(f"/v1/jobs/{job['id']}", headers=resident)).json()
    assert read["offers"] == job["offers"]

    wave, deadline = (await rows(engine, "SELECT wave, wave_deadline FROM jobs"))[0]
    offers = await rows(engine, "SELECT id, worker_id, expires_at FROM offers ORDER BY id")
    assert wave == 1 and {o.expires_at for o in offers} == {deadline}
    notes = await rows(
        engine, "SELECT kind, to_user_id, dedupe_key, payload, status, attempts FROM outbox"
    )
    assert sorted((n.to_user_id, n.dedupe_key) for n in notes) == sorted(
        (o.worker_id, f"offer:{o.id}") for o in offers
    )
    assert {(n.kind, n.status, n.attempts) for n in notes} == {("offer", "pending", 0)}
    # Each row's payload is the offer event the worker's stream gets, with its own offer's id.
    for wid, headers in team:
        (offer,) = await offers_of(client, headers)
        (note,) = [n for n in notes if n.to_user_id == wid]
        assert note.payload["type"] == "offer"
        sent = note.payload["offer"]
        assert sent["id"] == offer["id"] and sent["worker_id"] == wid
        assert sent["job_id"] == job["id"] and sent["wave"] == 1
        assert sent["distance_m"] == offer["distance_m"]
        assert sent["job"] == offer["job"]


async def test_the_winner_retires_the_other_offers_with_their_notices(
    client, principals, admin, resident, engine
) -> None:
    cid = await community(client, admin, dispatch={"waves": [{"radius_m": None, "size": None}]})
    team = await crew(client, principals, cid, [100 + 20 * i for i in range(12)])
    job = await post_job(client, resident)
    offers = [(await offers_of(client, h))[0] for _, h in team]
    r = await client.post(f"/v1/offers/{offers[0]['id']}/accept", headers=team[0][1])
    assert r.status_code == 200
    taken = await rows(
        engine,
        "SELECT to_user_id, dedupe_key, payload, status FROM outbox WHERE kind = 'offer_taken'",
    )
    want = {
        (wid, f"offer_taken:{o['id']}") for (wid, _), o in zip(team[1:], offers[1:], strict=True)
    }
    assert {(t.to_user_id, t.dedupe_key) for t in taken} == want
    for t in taken:
        offer_id = int(t.dedupe_key.split(":")[1])
        assert t.payload == {"type": "offer_taken", "offer_id": offer_id, "job_id": job["id"]}
        assert t.status == "pending"
    statuses = await rows(engine, "SELECT status, count(*) FROM offers GROUP BY status")
    assert dict(statuses) == {"accepted": 1, "taken": 11}


async def test_cancelling_withdraws_offers_with_their_notices(
    client, principals, admin, resident, engine
) -> None:
    cid = await community(client, admin)
    team = await crew(client, principals, cid, [100, 200])
    job = await post_job(client, resident)
    offers = [(await offers_of(client, h))[0] for _, h in team]
    r = await client.post(f"/v1/jobs/{job['id']}/cancel", json={"reason": "x"}, headers=resident)
    assert r.status_code == 200 and r.json()["offers"]["withdrawn"] == 2
    notes = await rows(
        engine, "SELECT dedupe_key, payload FROM outbox WHERE kind = 'offer_withdrawn'"
    )
    assert sorted(n.dedupe_key for n in notes) == sorted(
        f"offer_withdrawn:{o['id']}" for o in offers
    )
    assert all(
        n.payload
        == {
            "type": "offer_withdrawn",
            "offer_id": int(n.dedupe_key.split(":")[1]),
            "job_id": job["id"],
            "reason": "cancelled",
        }
        for n in notes
    )


@not_on_cluster
async def test_a_loser_costs_one_redis_round_trip_and_no_database(
    client, app, principals, admin, resident, monkeypatch
) -> None:
    cid = await community(client, admin, dispatch={"waves": [{"radius_m": None, "size": None}]})
    team = await crew(client, principals, cid, [100, 200, 300])
    await post_job(client, resident)
    offers = [(await offers_of(client, h))[0] for _, h in team]
    won = await client.post(f"/v1/offers/{offers[0]['id']}/accept", headers=team[0][1])
    assert won.status_code == 200
    with round_trips(app, monkeypatch) as seen:
        r = await client.post(f"/v1/offers/{offers[1]['id']}/accept", headers=team[1][1])
    assert r.status_code == 409 and r.json()["code"] == "already_taken"
    assert seen["db"] == [] and seen["redis"] == ["EVALSHA"]
    # Someone else's offer and an unknown one: also decided in that one round trip.
    with round_trips(app, monkeypatch) as seen:
        r = await client.post(f"/v1/offers/{offers[2]['id']}/accept", headers=team[1][1])
    assert r.status_code == 403 and r.json()["code"] == "not_your_offer"
    assert seen["db"] == [] and seen["redis"] == ["EVALSHA"]


@not_on_cluster
async def test_first_offer_round_trips(client, app, principals, admin, resident, monkeypatch):
    """Posting a grab job: 6 statements in its transaction (idempotency key claimed, community
    found, job stored, the wave, key row read and answered; COMMIT is not a cursor statement),
    and beside them, outside it, the live-index search and then the candidates' ranking
    records (`Dispatcher.foresee`); then one Redis pipeline carries the offer cache and the
    PUBLISHes."""
    cid = await community(client, admin)
    await crew(client, principals, cid, [100, 200, 300])
    with round_trips(app, monkeypatch) as seen:
        job = await post_job(client, resident)
    assert job["offers"]["pending"] == 3
    assert seen["db"][:6] == ["INSERT", "SELECT", "INSERT", "WITH", "SELECT", "UPDATE"], seen["db"]
    assert seen["raw"] == ["SELECT"], seen["raw"]  # the ranking records, outside the transaction
    # After the commit, off the request's path, the dispatch log's own session may already be
    # writing the wave: one statement (the workers within reach counted into its row).
    assert seen["db"][6:] in ([], ["WITH"]), seen["db"]
    # search (FCALL), the cache + PUBLISH pipeline (3 HSET, 3 EXPIRE, one EVAL publishing
    # the 3 offers), the timer.
    # (The operators' event stream gets its XADDs after commit, on their own: not counted.)
    trips = [c for c in seen["redis"] if c != "XADD"]
    assert trips[:2] == ["FCALL", "pipeline of 7"], seen["redis"]


@not_on_cluster
async def test_a_posting_where_one_just_went_reads_its_ranking_beside_its_search(
    client, app, principals, admin, resident, monkeypatch
):
    """The second posting in a cell reads the ranking records of whom the first one's search
    found at the same time as its own search (`LastCandidates`): one read, beside it, that no
    longer waits for the search. A worker the search finds that the guess did not name is read
    after it, and is ranked and offered like the others."""
    cid = await community(client, admin)
    await crew(client, principals, cid, [100, 200, 300])
    await post_job(client, resident, key="first")
    dispatcher = app.state.runtime.dispatcher
    started: list[str] = []
    search, read = dispatcher._wave_search, dispatcher._ranking_rows

    async def searching(*args, **kwargs):
        started.append("search")
        found = await search(*args, **kwargs)
        started.append("found")
        return found

    async def reading(where, community_id, ids, now):
        started.append(f"read {len(ids)}")
        return await read(where, community_id, ids, now)

    monkeypatch.setattr(dispatcher, "_wave_search", searching)
    monkeypatch.setattr(dispatcher, "_ranking_rows", reading)
    with round_trips(app, monkeypatch) as seen:
        job = await post_job(client, resident, key="second")
    assert job["offers"]["pending"] == 3
    assert seen["raw"] == ["SELECT"], seen["raw"]
    assert started == ["search", "read 3", "found"]  # the read did not wait for the search
    # A newcomer nearer than all of them: found, not in the guess, read after the search.
    ((_, headers),) = await crew(client, principals, cid, [20])
    started.clear()
    with round_trips(app, monkeypatch) as seen:
        job = await post_job(client, resident, key="third")
    assert seen["raw"] == ["SELECT", "SELECT"], seen["raw"]
    assert started == ["search", "read 3", "found", "read 1"]
    assert job["offers"]["pending"] == 3
    assert [o["job_id"] for o in await offers_of(client, headers)] == [job["id"]]


async def test_uncached_offers_are_decided_by_the_database(
    client, principals, admin, resident, redis: Redis
) -> None:
    """With the offer cache gone (Redis lost it), racing accepts still have one winner."""
    cid = await community(client, admin, dispatch={"waves": [{"radius_m": None, "size": None}]})
    team = await crew(client, principals, cid, [50 * i for i in range(1, 9)])
    await post_job(client, resident)
    offers = [(await offers_of(client, h))[0] for _, h in team]
    for key in [k async for k in redis.scan_iter("offer:*")]:
        await redis.delete(key)
    results = await asyncio.gather(
        *(
            client.post(f"/v1/offers/{o['id']}/accept", headers=h)
            for o, (_, h) in zip(offers, team, strict=True)
        )
    )
    assert sorted(r.status_code for r in results) == [200] + [409] * 7
    # Someone else's offer is refused by the database too.
    r = await client.post(f"/v1/offers/{offers[1]['id']}/accept", headers=team[2][1])
    assert r.status_code == 403


async def test_the_serving_heap_is_frozen(app) -> None:
    import gc

    assert gc.get_freeze_count() > 10_000


async def test_offer_cache_entries_lapse_an_hour_after_the_offer(
    client, principals, admin, resident, redis: Redis
) -> None:
    cid = await community(client, admin, dispatch={"offer_ttl_s": 30})
    ((_, headers),) = await crew(client, principals, cid, [100])
    await post_job(client, resident)
    (offer,) = await offers_of(client, headers)
    key = f"offer:{{grab}}:{offer['id']}"
    assert await redis.hget(key, "j") is not None
    assert 30 + 3600 - 5 <= await redis.ttl(key) <= 30 + 3600 + 1


@not_on_cluster
async def test_a_posting_with_no_side_read_free_reads_its_ranking_in_its_transaction(
    client, app, principals, admin, resident, monkeypatch
):
    """With every side read taken (postings holding their connection, each waiting for a
    second, could starve the pool), the ranking records are read in the posting's own
    transaction and the job goes out all the same."""
    cid = await community(client, admin)
    await crew(client, principals, cid, [100, 200, 300])
    side = app.state.runtime.dispatcher._side_reads
    for _ in range(SIDE_READS):
        await side.acquire()
    try:
        with round_trips(app, monkeypatch) as seen:
            job = await post_job(client, resident)
    finally:
        for _ in range(SIDE_READS):
            side.release()
    assert job["offers"]["pending"] == 3
    assert seen["raw"] == []
    assert seen["db"][:7] == [
        "INSERT", "SELECT", "INSERT", "SELECT", "WITH", "SELECT", "UPDATE"
    ], seen["db"]  # fmt: skip
