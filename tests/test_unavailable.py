"""A backing service that cannot serve now is the service's condition, not a defect: 503
`service_unavailable` with `Retry-After`, never 500, and the next request after it is served.
Here the connection pool is full (the test holds every connection of the app's own pool); the
chaos run (`make chaos`) kills and restarts the servers themselves."""

from __future__ import annotations

from dataclasses import replace

import pytest
from litestar import Request
from sqlalchemy import text

from dispatch.infra.settings import Settings

AT = {"lat": 31.2304, "lng": 121.4737}


@pytest.fixture
def settings(base_settings: Settings) -> Settings:
    storage = replace(base_settings.storage, pool_size=2, pool_timeout_s=0.3)
    return replace(base_settings, storage=storage)


async def test_a_full_connection_pool_is_503_with_retry_after(app, client, principals) -> None:
    admin = await principals.admin()
    assert (await client.get("/v1/communities", params=AT, headers=admin)).status_code == 200
    engine = app.state.runtime.engine
    held = [await engine.connect() for _ in range(4)]  # the pool and its overflow
    try:
        for conn in held:
            await conn.execute(text("SELECT 1"))
        r = await client.get("/v1/communities", params=AT, headers=admin)
    finally:
        for conn in held:
            await conn.close()
    assert r.status_code == 503, r.text
    assert r.json()["code"] == "service_unavailable"
    assert r.headers["Retry-After"] == "2"
    assert r.headers["content-type"].startswith("application/problem+json")
    assert (await client.get("/v1/communities", params=AT, headers=admin)).status_code == 200


async def test_a_dropped_connection_under_a_raw_read_is_503(
    app, client, principals, engine
) -> None:
    """The ping path reads a worker's communities straight from asyncpg's connection (no
    SQLAlchemy to wrap its errors). With every connection of the app's pool dropped by the
    server (as a PostgreSQL restart drops them), a ping that must read them is a 503 with
    `Retry-After`, never a 500, and pings are served again once the dead connections are gone."""
    from tests.dispatch.helpers import community, ready_worker

    admin = await principals.admin()
    cid = await community(client, admin)
    _, headers = await ready_worker(client, principals, cid, None)  # its listing not cached
    async with engine.connect() as conn:
        await conn.execute(text(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE pid <> pg_backend_pid() AND datname = current_database()"))  # fmt: skip
    statuses = []
    for _ in range(20):
        r = await client.post("/v1/workers/me/location", json=AT, headers=headers)
        statuses.append(r.status_code)
        assert r.status_code in (204, 503), r.text
        if r.status_code == 503:
            assert r.headers.get("retry-after") == "2"
            assert r.json()["code"] == "service_unavailable"
        if r.status_code == 204:
            break
    assert statuses[-1] == 204, statuses
    # The server dropped the test's own pooled connections too: let both pools start afresh.
    await app.state.runtime.engine.dispose()
    await engine.dispose()


async def test_a_deadlock_the_database_broke_is_503_with_retry_after(engine) -> None:
    """A transaction PostgreSQL rolled back to break a deadlock stored nothing, and the same
    request again succeeds: 503 with `Retry-After`, not 500. The error is a real one."""
    import asyncio

    from sqlalchemy.exc import DBAPIError

    from dispatch.web.errors import database_data_error

    await_both = asyncio.Barrier(2)

    async def one(first: str, second: str) -> BaseException | None:
        async with engine.connect() as conn:
            await conn.execute(text("SET LOCAL deadlock_timeout = '50ms'"))
            await conn.execute(text(f"SELECT pg_advisory_xact_lock({first})"))
            await await_both.wait()
            try:
                await conn.execute(text(f"SELECT pg_advisory_xact_lock({second})"))
            except DBAPIError as exc:
                await conn.rollback()
                return exc
            await conn.rollback()
            return None

    errors = [e for e in await asyncio.gather(one("9101", "9102"), one("9102", "9101")) if e]
    assert len(errors) == 1
    scope = {"type": "http", "path": "/x", "method": "POST", "headers": [], "query_string": b""}
    r = database_data_error(Request(scope=scope), errors[0])
    assert r.status_code == 503
    assert r.headers["Retry-After"] == "2"
