"""Request logging: method, route path (never the query string), status and duration."""

from __future__ import annotations

import time
from typing import Any

from litestar.types import ASGIApp, Message, Receive, Scope, Send

from dispatch.infra.logs import log


def request_log_middleware(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        started = time.perf_counter()
        status: dict[str, Any] = {"code": 500}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await app(scope, receive, send_wrapper)
        finally:
            code = status["code"]
            if code >= 400 or log.is_enabled_for(10):  # type: ignore[attr-defined]
                log.info(
                    "request",
                    method=scope["method"],
                    path=scope["path"],
                    status=code,
                    ms=round((time.perf_counter() - started) * 1000, 2),
                )

    return middleware


def options_middleware(app: ASGIApp) -> ASGIApp:
    """Answer OPTIONS for every route with the methods it really has, before any guard.

    Litestar's automatic OPTIONS handler lists only the methods of the first handler registered
    on a path (`Allow: OPTIONS, POST` on `/v1/jobs`, which also has GET), and it inherits the
    controller's guards, which read a user that the auth middleware never set for OPTIONS (a
    500). An OPTIONS request needs no principal: it is answered here from the app's route table.
    """
    allowed: dict[str, bytes] = {}

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "OPTIONS":
            await app(scope, receive, send)
            return
        template = scope.get("path_template", scope["path"])
        if not allowed:
            for route in scope["litestar_app"].routes:
                methods = getattr(route, "methods", None)
                if methods:
                    for path in (route.path, route.path_format):
                        joined = allowed.get(path, b"").decode().split(", ")
                        union = sorted({*methods, "OPTIONS", *filter(None, joined)})
                        allowed[path] = ", ".join(union).encode()
        allow = allowed.get(template)
        if allow is None:
            await app(scope, receive, send)
            return
        await send({"type": "http.response.start", "status": 204, "headers": [(b"allow", allow)]})
        await send({"type": "http.response.body", "body": b""})

    return middleware
