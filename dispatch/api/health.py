"""Liveness and readiness."""

from __future__ import annotations

import asyncio
from typing import Any

from litestar import Response, get
from litestar.datastructures import State
from sqlalchemy import text

from dispatch.api.deps import runtime_of
from dispatch.api.errors import problem


@get("/healthz", exclude_from_auth=True, sync_to_thread=False, include_in_schema=True)
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@get("/readyz", exclude_from_auth=True)
async def readyz(state: State) -> Response[Any]:
    rt = runtime_of(state)
    checks: dict[str, str] = {}

    async def database() -> None:
        async with rt.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    for name, probe in (("database", database), ("redis", rt.redis.ping)):
        try:
            await asyncio.wait_for(probe(), timeout=2.0)
            checks[name] = "ok"
        except Exception as exc:
            checks[name] = f"down: {type(exc).__name__}"
    if all(v == "ok" for v in checks.values()):
        return Response({"status": "ready", "checks": checks})
    failing = ", ".join(k for k, v in checks.items() if v != "ok")
    return problem(503, "not_ready", "Not ready", f"unavailable: {failing}")
