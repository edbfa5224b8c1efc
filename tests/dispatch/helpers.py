"""Shared set-up for dispatch tests: communities and workers ready to be found."""

from __future__ import annotations

import httpx

CENTER = (31.2304, 121.4737)


async def community(client: httpx.AsyncClient, admin: dict[str, str], **extra) -> int:
    body = {"name": "Jing'an", "center": {"lat": CENTER[0], "lng": CENTER[1]}, "radius_m": 3000}
    r = await client.post("/v1/communities", json={**body, **extra}, headers=admin)
    assert r.status_code == 201, r.text
    return r.json()["id"]


async def ready_worker(
    client: httpx.AsyncClient,
    principals,
    community_id: int,
    at: tuple[float, float] | None,
    *,
    skills: tuple[str, ...] = ("plumbing",),
    verified: bool = True,
    online: bool = True,
) -> tuple[int, dict[str, str]]:
    wid, headers = await principals.user("worker")
    r = await client.put(
        "/v1/workers/me",
        json={"name": f"W{wid}", "skills": list(skills), "community_ids": [community_id]},
        headers=headers,
    )
    assert r.status_code == 200, r.text
    if verified:
        ops = await principals.operator(community_id)
        assert (await client.post(f"/v1/ops/workers/{wid}/verify", headers=ops)).status_code == 200
    if online:
        r = await client.post("/v1/workers/me/presence", json={"status": "online"}, headers=headers)
        assert r.status_code == 200, r.text
    if at is not None:
        r = await client.post(
            "/v1/workers/me/location", json={"lat": at[0], "lng": at[1]}, headers=headers
        )
        assert r.status_code == 204, r.text
    return wid, headers


async def nearby_ids(client, headers, **params) -> list[int]:
    query = {"lat": CENTER[0], "lng": CENTER[1], "radius_m": 2000, **params}
    r = await client.get("/v1/workers/nearby", params=query, headers=headers)
    assert r.status_code == 200, r.text
    return [w["worker_id"] for w in r.json()]


async def escrow_held(app) -> None:
    """Wait until every assignment's escrow hold (a timer due at once) has been placed, so a
    test counting the timers it fires counts only its own."""
    import asyncio
    from datetime import UTC, datetime

    from sqlalchemy import text

    runtime = app.state.runtime
    for _ in range(200):
        await runtime.durable.fire_due(datetime.now(UTC))
        async with runtime.sessions() as session:
            left = await session.scalar(
                text(
                    "SELECT count(*) FROM timers WHERE kind = 'escrow_hold' "
                    "AND fired_at IS NULL AND cancelled_at IS NULL"
                )
            )
        if not left:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("escrow holds not placed")
