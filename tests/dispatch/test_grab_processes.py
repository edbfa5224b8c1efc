"""Grab-order across real app processes: a 50-way race over two processes (200 jobs), a process
SIGKILLed between offer and expiry, and offers arriving on a worker's WebSocket."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from sqlalchemy import text
from websockets.asyncio.client import connect

from geo.areas import destination
from tests.conftest import TEST_SECRET
from tests.dispatch.helpers import CENTER
from tests.processes import ONE_AT_A_TIME, ServiceProcess

pytestmark = [pytest.mark.slow, ONE_AT_A_TIME]


class Server(ServiceProcess):
    def __init__(self, urls: tuple[str, str]) -> None:
        super().__init__(urls, TEST_SECRET)
        self.wait_ready()


@contextmanager
def servers(urls: tuple[str, str], n: int) -> Iterator[list[Server]]:
    started: list[Server] = []
    try:
        for _ in range(n):
            started.append(Server(urls))
        yield started
    finally:
        for s in started:
            s.stop()


async def setup_world(
    http: httpx.AsyncClient,
    principals,
    base: str,
    workers: int,
    dispatch: dict,
    spacing_m: float = 20,
) -> tuple[int, dict[str, str], list[tuple[int, dict[str, str]]]]:
    admin = await principals.admin()
    body = {"name": "Race", "center": {"lat": CENTER[0], "lng": CENTER[1]}, "radius_m": 5000,
            "dispatch": dispatch}  # fmt: skip
    r = await http.post(f"{base}/v1/communities", json=body, headers=admin)
    assert r.status_code == 201, r.text
    cid = r.json()["id"]
    ops = await principals.operator(cid)
    team = []
    for i in range(workers):
        wid, h = await principals.user("worker")
        prof = {"name": f"W{i}", "skills": ["moving"], "community_ids": [cid]}
        assert (await http.put(f"{base}/v1/workers/me", json=prof, headers=h)).status_code == 200
        assert (
            await http.post(f"{base}/v1/ops/workers/{wid}/verify", headers=ops)
        ).status_code == 200
        r = await http.post(f"{base}/v1/workers/me/presence", json={"status": "online"}, headers=h)
        assert r.status_code == 200
        lat, lng = destination(*CENTER, 0.0, spacing_m * (i + 1))
        r = await http.post(
            f"{base}/v1/workers/me/location", json={"lat": lat, "lng": lng}, headers=h
        )
        assert r.status_code == 204, r.text
        team.append((wid, h))
    resident = (await principals.user("resident"))[1]
    return cid, resident, team


def job_body(title: str = "Carry boxes") -> dict:
    where = {"lat": CENTER[0], "lng": CENTER[1]}
    return {"title": title, "category": "moving", "skills": ["moving"], "location": where,
            "mode": "grab", "price_cents": 5000}  # fmt: skip


async def offers_for(engine, job_id: int) -> list[tuple[int, int, int]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT id, worker_id, wave FROM offers WHERE job_id = :j ORDER BY id"),
            {"j": job_id},
        )
        return [tuple(r) for r in rows.all()]


async def test_fifty_workers_race_over_two_processes_for_200_jobs(
    server_urls, principals, engine, clean_state
) -> None:
    workers, jobs = 50, 200
    with servers(server_urls, 2) as (a, b):
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
        async with httpx.AsyncClient(timeout=30, limits=limits) as http:
            everyone = {
                "offer_ttl_s": 60,
                "waves": [{"radius_m": None, "size": None}],
                "location_max_age_s": 3600,  # the run outlasts the default 120 s freshness
                "offers_per_worker_hour": None,  # each worker is offered all 200 jobs
            }
            _, resident, team = await setup_world(http, principals, a.base, workers, everyone)
            by_worker = dict(team)
            for n in range(jobs):
                base = (a, b)[n % 2].base
                r = await http.post(
                    f"{base}/v1/jobs",
                    json=job_body(),
                    headers={**resident, "Idempotency-Key": f"j{n}"},
                )
                assert r.status_code == 201, r.text
                job_id = r.json()["id"]
                offers = await offers_for(engine, job_id)
                assert len(offers) == workers, f"job {n}: {len(offers)} offers"
                results = await asyncio.gather(
                    *(
                        http.post(
                            f"{(a, b)[i % 2].base}/v1/offers/{oid}/accept", headers=by_worker[wid]
                        )
                        for i, (oid, wid, _) in enumerate(offers)
                    )
                )
                statuses = sorted(r.status_code for r in results)
                assert statuses == [200] + [409] * (workers - 1), f"job {n}: {statuses}"
                assert {r.json()["code"] for r in results if r.status_code == 409} == {
                    "already_taken"
                }
                won = next(r.json() for r in results if r.status_code == 200)
                done = await http.post(
                    f"{a.base}/v1/jobs/{job_id}/complete",
                    json={"assignment_version": won["assignment_version"]},
                    headers=by_worker[won["worker_id"]],
                )
                assert done.status_code == 200, done.text
    async with engine.connect() as conn:
        per_job = (
            await conn.execute(
                text(
                    "SELECT job_id, count(*) FROM assignments GROUP BY job_id HAVING count(*) <> 1"
                )
            )
        ).all()
        assert per_job == []
        assert (await conn.execute(text("SELECT count(*) FROM assignments"))).scalar() == jobs


async def test_a_killed_process_still_escalates_after_restart(
    server_urls, principals, engine, clean_state
) -> None:
    ladder = {
        "offer_ttl_s": 2,
        "waves": [{"radius_m": 500, "size": 1}, {"radius_m": None, "size": None}],
    }
    with servers(server_urls, 1) as (first,):
        async with httpx.AsyncClient(timeout=30) as http:
            cid, resident, team = await setup_world(
                http, principals, first.base, 2, ladder, spacing_m=400
            )
            r = await http.post(
                f"{first.base}/v1/jobs",
                json=job_body(),
                headers={**resident, "Idempotency-Key": "k"},
            )
            job_id = r.json()["id"]
            assert [(w, wave) for _, w, wave in await offers_for(engine, job_id)] == [
                (team[0][0], 1)
            ]
            first.kill()  # SIGKILL between the offer and its expiry
    await asyncio.sleep(2.5)  # the wave falls due while no process runs
    with servers(server_urls, 1) as (second,):
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            async with engine.connect() as conn:
                status = (
                    await conn.execute(text("SELECT status FROM jobs WHERE id = :j"), {"j": job_id})
                ).scalar()
            if status == "unfilled":
                break
            await asyncio.sleep(0.2)
        offers = await offers_for(engine, job_id)
        assert [(w, wave) for _, w, wave in offers] == [(team[0][0], 1), (team[1][0], 2)]
        assert status == "unfilled"
        async with engine.connect() as conn:
            alerts = (
                await conn.execute(text("SELECT kind FROM alerts WHERE job_id = :j"), {"j": job_id})
            ).all()
        assert alerts == [("job_unfilled",)]
        _ = (second, cid)


async def test_offers_and_taken_events_reach_the_worker_stream(
    server_urls, principals, engine, clean_state
) -> None:
    with servers(server_urls, 1) as (srv,):
        async with httpx.AsyncClient(timeout=30) as http:
            everyone = {
                "offer_ttl_s": 60,
                "waves": [{"radius_m": None, "size": None}],
                "location_max_age_s": 3600,  # the run outlasts the default 120 s freshness
            }
            _, resident, team = await setup_world(http, principals, srv.base, 2, everyone)
            (wa, ha), (wb, hb) = team
            ws_url = f"ws://127.0.0.1:{srv.port}/v1/workers/me/stream"
            async with connect(ws_url, additional_headers=ha) as ws:
                hello = json.loads(await asyncio.wait_for(ws.recv(), 5))
                assert hello == {"type": "hello", "offers": []}
                started = time.monotonic()
                r = await http.post(
                    f"{srv.base}/v1/jobs",
                    json=job_body(),
                    headers={**resident, "Idempotency-Key": "w"},
                )
                offer = json.loads(await asyncio.wait_for(ws.recv(), 5))
                assert offer["type"] == "offer" and offer["offer"]["job_id"] == r.json()["id"]
                assert time.monotonic() - started < 2
                other = next(o for o, w, _ in await offers_for(engine, r.json()["id"]) if w == wb)
                assert (
                    await http.post(f"{srv.base}/v1/offers/{other}/accept", headers=hb)
                ).status_code == 200
                taken = json.loads(await asyncio.wait_for(ws.recv(), 5))
                assert taken == {
                    "type": "offer_taken",
                    "offer_id": offer["offer"]["id"],
                    "job_id": r.json()["id"],
                }
            # Without a worker token the stream refuses.
            with pytest.raises(Exception):  # noqa: B017 - the handshake is refused
                async with connect(ws_url, additional_headers=resident) as ws:
                    await asyncio.wait_for(ws.recv(), 5)
            _ = wa
