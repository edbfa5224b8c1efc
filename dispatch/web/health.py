"""Liveness and readiness."""

from __future__ import annotations

from typing import Literal

from litestar import Response, get
from litestar.di import NamedDependency
from msgspec import Struct

from dispatch.infra.runtime import Runtime
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
async def readyz(rt: NamedDependency[Runtime]) -> Response[Readiness]:
    checks = await rt.readiness()
    if all(v == "ok" for v in checks.values()):
        return Response(Readiness(status="ready", checks=checks))
    failing = ", ".join(k for k, v in checks.items() if v != "ok")
    return problem(503, "not_ready", "Not ready", f"unavailable: {failing}")
