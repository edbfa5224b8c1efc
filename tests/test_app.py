"""The service's own surface: health, readiness, metrics, OpenAPI, errors."""

from __future__ import annotations

import httpx


async def test_healthz(client: httpx.AsyncClient) -> None:
    r = await client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


async def test_readyz_checks_database_and_redis(client: httpx.AsyncClient) -> None:
    r = await client.get("/readyz")
    assert r.status_code == 200
    assert r.json()["checks"] == {"database": "ok", "redis": "ok"}


async def test_metrics_exposes_request_counts(client: httpx.AsyncClient) -> None:
    await client.get("/healthz")
    r = await client.get("/metrics")
    assert r.status_code == 200
    assert 'path="/healthz"' in r.text and "dispatch_requests_total" in r.text


async def test_openapi_schema_lists_the_contract(client: httpx.AsyncClient) -> None:
    r = await client.get("/schema/openapi.json")
    assert r.status_code == 200
    paths = r.json()["paths"]
    for path in (
        "/v1/auth/otp",
        "/v1/auth/token",
        "/v1/communities",
        "/v1/jobs",
        "/v1/admin/outbox",
    ):
        assert path in paths, path


async def test_unknown_path_is_problem_details(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/nope")
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "not_found"


async def test_missing_or_bad_token_is_401(client: httpx.AsyncClient) -> None:
    assert (await client.get("/v1/jobs")).json()["code"] == "unauthorized"
    r = await client.get("/v1/jobs", headers={"Authorization": "Bearer not-a-jwt"})
    assert r.status_code == 401 and r.json()["code"] == "unauthorized"


async def test_token_signed_with_another_key_is_401(client: httpx.AsyncClient) -> None:
    from dispatch.identity.auth import issue_token

    forged = issue_token("some-other-secret-of-at-least-32-bytes", 1, "admin")
    r = await client.get("/v1/admin/outbox", headers={"Authorization": f"Bearer {forged}"})
    assert r.status_code == 401


def test_handlers_resolve_their_dependencies_one_at_a_time() -> None:
    """Litestar resolves a batch of two or more dependencies in an anyio task group, 65-95 µs a
    request (dispatch/web/deps.py): a handler takes one injected service, and reads its caller
    from the request. `dependency_batches` is Litestar's own plan of that resolution."""
    from app import create_app
    from dispatch.infra.settings import Settings

    app = create_app(Settings())
    crowded = []
    checked = 0
    for route in app.routes:
        for handler in getattr(route, "route_handlers", ()):
            params = {p.name: p for p in getattr(route, "path_parameters", {}).values()}
            model = handler.create_kwargs_model(path_parameters=params)
            checked += 1
            if any(len(batch) > 1 for batch in model.dependency_batches):
                names = [sorted(d.key for d in b) for b in model.dependency_batches]
                crowded.append(f"{route.path} {names}")
    assert checked > 30 and not crowded, crowded
