"""Local servers that speak the providers' protocols (Twilio REST, Web Push), for tests that run
the real client libraries against them. `LocalHttpServer` is their common life cycle."""

from __future__ import annotations

import asyncio
from typing import Self

from aiohttp import web


class LocalHttpServer:
    """An aiohttp server on 127.0.0.1 (a free port) in the running event loop.

    `async with Peer() as peer:` starts it, `peer.base_url` is where it listens. Subclasses add
    routes in `routes()`. `wait_until(predicate)` waits for the server to see something.
    """

    def __init__(self) -> None:
        self.base_url = ""
        self._runner: web.AppRunner | None = None
        self._changed = asyncio.Event()

    def routes(self) -> list[web.RouteDef]:
        raise NotImplementedError

    async def start(self) -> None:
        app = web.Application()
        app.add_routes(self.routes())
        # In-flight handlers (a delayed answer) get a short grace on stop, not aiohttp's 60 s.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.base_url = f"http://{host}:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _notify(self) -> None:
        self._changed.set()

    async def wait_until(self, predicate, within_s: float = 5.0) -> None:
        """Wait until `predicate()` is true; re-checked whenever the server records something."""
        async with asyncio.timeout(within_s):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()
