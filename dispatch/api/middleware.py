"""Request logging: method, route path (never the query string), status and duration."""

from __future__ import annotations

import time
from typing import Any

from litestar.types import ASGIApp, Message, Receive, Scope, Send

from dispatch.logs import log


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
