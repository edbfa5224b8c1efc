"""A backing service that cannot serve now is the service's condition, not a defect: 503
`service_unavailable` with `Retry-After`, never 500, and the next request after it is served.
Here the connection pool is full (the test holds every connection of the app's own pool); the
chaos run (`make chaos`) kills and restarts the servers themselves."""

from __future__ import annotations

from dataclasses import replace

import pytest
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
