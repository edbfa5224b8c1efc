"""Why this worker: the dispatch log of a grab job with known workers matches what happened (who
was offered at what distance and rank, who was left out and why, each offer's fate), and replay
with today's rules picks the same workers."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from geo.areas import destination
from tests.dispatch.helpers import CENTER, community, ready_worker
from tests.dispatch.test_grab import offers_of, post_job


def north(m: float) -> tuple[float, float]:
    return destination(*CENTER, 0.0, m)


async def test_the_log_tells_what_happened(app, client, principals, admin, resident) -> None:
    cid = await community(client, admin)
    ops = await principals.operator(cid)
    moving = ("moving",)
    near = [await ready_worker(client, principals, cid, north(d), skills=moving)
            for d in (100, 200, 300, 400)]  # fmt: skip
    await ready_worker(client, principals, cid, north(500), skills=moving, verified=False)
    off, off_h = await ready_worker(client, principals, cid, north(600), skills=moving)
    r = await client.post("/v1/workers/me/presence", json={"status": "offline"}, headers=off_h)
    assert r.status_code == 200
    await ready_worker(client, principals, cid, north(700), skills=("plumbing",))
    await ready_worker(client, principals, cid, north(1500), skills=moving)  # beyond wave 1
    await app.state.runtime.workers.positions.flush()

    job = await post_job(client, resident, key="log-1")
    (offer,) = await offers_of(client, near[0][1])
    assert (await client.post(f"/v1/offers/{offer['id']}/accept", headers=near[0][1])).is_success

    url = f"/v1/ops/jobs/{job['id']}/dispatch-log"
    for _ in range(50):  # written right after the wave commits
        r = await client.get(url, headers=ops)
        if r.json()["waves"]:
            break
        await asyncio.sleep(0.05)
    assert r.status_code == 200, r.text
    [wave] = r.json()["waves"]
    assert (wave["wave"], wave["radius_m"], wave["size"]) == (1, 1000, 3)
    got = [(c["worker_id"], round(c["distance_m"]), c["rank"], c["picked"], c["why_not"],
            c["fate"]) for c in wave["offered"]]  # fmt: skip
    a, b, c, d = (w for w, _ in near)
    assert got == [
        (a, 100, 1, True, None, "accepted"), (b, 200, 2, True, None, "taken"),
        (c, 300, 3, True, None, "taken"), (d, 400, 4, False, "beyond_size", None),
    ]  # fmt: skip
    assert wave["excluded"] == {"unverified": 1, "offline": 1, "unskilled": 1}
    assert off not in [x[0] for x in got]

    r = await client.post(f"/v1/ops/jobs/{job['id']}/replay", headers=ops)
    assert r.status_code == 200, r.text
    assert r.json() == {"same": True, "waves": [{"wave": 1, "picked": [a, b, c],
                                                 "recorded": [a, b, c]}]}  # fmt: skip
    other = await community(client, admin, name="Xuhui")
    theirs = await principals.operator(other)
    assert (await client.get(url, headers=theirs)).status_code == 403
    assert (await client.get(url, headers=resident)).status_code == 403


async def test_each_worker_left_out_is_counted_by_its_first_reason(
    app, client, principals, admin, resident
) -> None:
    """One worker within the first wave's reach for each reason the index leaves them out, the
    job near the community's edge (3 km circle) so that one of them is outside it."""
    cid = await community(client, admin)
    ops = await principals.operator(cid)
    moving = ("moving",)
    _, busy_h = await ready_worker(client, principals, cid, north(2400), skills=moving)
    first = await post_job(client, resident, key="busy-1", location=dict(
        zip(("lat", "lng"), north(2400), strict=True)))  # fmt: skip
    (offer,) = await offers_of(client, busy_h)
    assert (await client.post(f"/v1/offers/{offer['id']}/accept", headers=busy_h)).is_success
    assert first["id"] == offer["job_id"]
    await ready_worker(client, principals, cid, north(2300), skills=moving, verified=False)
    _, off_h = await ready_worker(client, principals, cid, north(2200), skills=moving)
    r = await client.post("/v1/workers/me/presence", json={"status": "offline"}, headers=off_h)
    assert r.status_code == 200
    await ready_worker(client, principals, cid, north(2600), skills=("plumbing",))
    _, stale_h = await ready_worker(client, principals, cid, None, skills=moving)
    old = (datetime.now(UTC) - timedelta(seconds=600)).isoformat()
    lat, lng = north(2700)
    r = await client.post(
        "/v1/workers/me/location", json={"lat": lat, "lng": lng, "recorded_at": old},
        headers=stale_h,
    )  # fmt: skip
    assert r.status_code == 204
    await ready_worker(client, principals, cid, north(3200), skills=moving)  # outside: 3 km
    await ready_worker(client, principals, cid, north(3800), skills=moving)  # beyond reach
    await app.state.runtime.workers.positions.flush()

    job = await post_job(client, resident, key="edge-1", location=dict(
        zip(("lat", "lng"), north(2500), strict=True)))  # fmt: skip
    url = f"/v1/ops/jobs/{job['id']}/dispatch-log"
    for _ in range(50):
        r = await client.get(url, headers=ops)
        if r.json()["waves"]:
            break
        await asyncio.sleep(0.05)
    wave = r.json()["waves"][0]
    assert (wave["wave"], wave["offered"]) == (1, [])
    assert wave["excluded"] == {
        "busy": 1, "unverified": 1, "offline": 1, "unskilled": 1, "stale_location": 1,
        "outside_community": 1,
    }  # fmt: skip


async def test_waves_committed_together_are_written_together(
    app, client, principals, admin, resident, engine, monkeypatch
) -> None:
    """The log's writer batches: the waves of several postings land in one transaction, and a
    row that cannot be written (its job gone) loses only itself."""
    from sqlalchemy import text

    dlog = app.state.runtime.dispatch_log
    monkeypatch.setattr(dlog, "flush_s", 30.0)  # nothing is written until this test flushes
    cid = await community(client, admin)
    await ready_worker(client, principals, cid, north(100), skills=("moving",))
    await app.state.runtime.workers.positions.flush()
    jobs = [await post_job(client, resident, key=f"batch-{i}") for i in range(3)]
    for _ in range(50):
        if len(dlog._pending) == 3:
            break
        await asyncio.sleep(0.02)
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM dispatch_waves"))).scalar() == 0
    commits = []
    monkeypatch.setattr(dlog, "sessions", _counting(dlog.sessions, commits), raising=True)
    assert await dlog.flush() == 3
    assert len(commits) == 1
    async with engine.connect() as conn:
        logged = await conn.execute(text("SELECT job_id FROM dispatch_waves ORDER BY job_id"))
        assert [r[0] for r in logged] == sorted(j["id"] for j in jobs)

    # A batch with a row whose job does not exist: the others are written one by one.
    await post_job(client, resident, key="batch-good")
    for _ in range(50):
        if dlog._pending:
            break
        await asyncio.sleep(0.02)
    good = dlog._pending[0]
    dlog._pending.append(lambda: {**good(), "job_id": 10**12, "wave": 1})
    assert await dlog.flush() == 1
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM dispatch_waves"))).scalar() == 4
    # An operator reading a job's log gets its wave at once, pending or not.
    job = await post_job(client, resident, key="batch-read")
    for _ in range(50):
        if dlog._pending:
            break
        await asyncio.sleep(0.02)
    r = await client.get(f"/v1/ops/jobs/{job['id']}/dispatch-log", headers=admin)
    assert [w["wave"] for w in r.json()["waves"]] == [1]
    dlog._flusher.cancel()  # its 30 s wait would hold later waves of this app back


def _counting(sessions, commits: list):
    """A sessionmaker whose `begin()` blocks are counted."""

    class Counting:
        kw = sessions.kw

        def __call__(self, *a, **k):
            return sessions(*a, **k)

        def begin(self):
            commits.append(1)
            return sessions.begin()

    return Counting()
