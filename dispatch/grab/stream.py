"""A worker's live stream: pending offers on connect, then every event as it happens."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from litestar import WebSocket, websocket
from litestar.datastructures import State
from litestar.exceptions import WebSocketDisconnect

from dispatch.grab import events as ev
from dispatch.identity.auth import principal_of_token
from dispatch.web.deps import runtime_of

_POLICY_VIOLATION = 1008
_TRY_AGAIN_LATER = 1013


def _bearer(socket: WebSocket[Any, Any, Any]) -> str | None:
    header = socket.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    # Browsers cannot set headers on a WebSocket: accept the token as a query parameter too.
    return socket.query_params.get("token")


@websocket("/v1/workers/me/stream", exclude_from_auth=True)
async def worker_stream(socket: WebSocket[Any, Any, Any], state: State) -> None:
    rt = runtime_of(state)
    principal = principal_of_token(_bearer(socket), rt.settings.auth.secret_key)
    if principal is None or principal.role != "worker":
        await socket.close(code=_POLICY_VIOLATION, reason="a worker's bearer token is required")
        return
    await socket.accept()
    # The process's one pub/sub connection carries this worker's events (see EventBus); the
    # subscription is confirmed before the pending offers are read, so none falls between.
    async with rt.bus.subscription(principal.user_id) as events:
        pending = await rt.dispatcher.offers_for(principal.user_id)
        await socket.send_bytes(ev.encode(ev.Hello(offers=pending)))

        async def forward() -> None:
            async for data in events:
                await socket.send_text(data.decode())

        async def watch_close() -> None:
            with contextlib.suppress(WebSocketDisconnect):
                while True:
                    await socket.receive_data(mode="text")

        tasks = [asyncio.create_task(forward()), asyncio.create_task(watch_close())]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    if any(t.done() and not t.cancelled() and isinstance(t.exception(), ev.Overflow)
           for t in done):  # fmt: skip
        # Too slow a reader to keep up: it reconnects and gets its pending offers afresh.
        with contextlib.suppress(Exception):
            await socket.close(code=_TRY_AGAIN_LATER, reason="too far behind; reconnect")
