"""Liveness and readiness."""

from __future__ import annotations

import asyncio
from typing import Literal

from litestar import Response, get
from litestar.datastructures import State
from msgspec import Struct
from sqlalchemy import text

from dispatch.web.deps import runtime_of
from dispatch.web.errors import problem


class Health(Struct):
    status: Literal["ok"]


class Readiness(Struct):
    status: Literal["ready"]
    checks: dict[str, str]


@get("/healthz", exclude_from_auth=True, sync_to_thread=False, include_in_schema=True)
def healthz() -> Health:
    return Health(status="ok")


@get("/readyz", exclude_from_auth=True)
async def readyz(state: State) -> Response[Readiness]:
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
        return Response(Readiness(status="ready", checks=checks))
    failing = ", ".join(k for k, v in checks.items() if v != "ok")
    return problem(503, "not_ready", "Not ready", f"unavailable: {failing}")
