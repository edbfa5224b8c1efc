"""Full garbage collections between requests, not inside them.

CPython's automatic generation-2 collection walks every tracked object the process holds (in a
serving process, some 50k after warm-up: connection caches, prepared statements, ORM state),
which takes 25-50 ms on the benchmark machine, and it starts inside whichever request happens to
allocate past the threshold: that request, and every other one on the event loop, waits. This
module turns the automatic generation-2 collection off while the app runs and makes it from a
task instead, at a moment no HTTP request is in flight (WebSocket streams do not count: they
are always open), at most every `every_s` seconds and at least every `every_s + patience_s`
(collected anyway when the service never goes quiet). Generations 0 and 1 (well under a
millisecond, a few ms) stay automatic. The thresholds are restored when the app stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time

from litestar.types import ASGIApp, Receive, Scope, Send
from prometheus_client import Counter, Histogram

from dispatch.infra.logs import log

FULL_COLLECTIONS = Counter(
    "dispatch_gc_full_collections",
    "Full garbage collections made by the idle collector, by whether the service was quiet",
    ["moment"],
)
FULL_PAUSE = Histogram(
    "dispatch_gc_full_pause_seconds",
    "How long each full garbage collection held the event loop",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)

AUTOMATIC_FULL_OFF = 1 << 30
"""A generation-2 threshold no process reaches: gen-1 collections needed before a gen-2 one."""


class IdleCollector:
    """Counts HTTP requests in flight (`middleware`) and makes full collections when there are
    none (`start`/`stop`)."""

    def __init__(self, every_s: float = 10.0, patience_s: float = 20.0):
        self.every_s = every_s
        self.patience_s = patience_s
        self.in_flight = 0
        self._quiet: asyncio.Event | None = None
        """Set whenever the last request in flight finishes (made by `start`, on its loop)."""
        self.collections = 0
        self.forced = 0
        """Collections made while requests were in flight (the service never went quiet)."""
        self.last_pause_s = 0.0
        self._task: asyncio.Task[None] | None = None
        self._thresholds: tuple[int, int, int] | None = None

    def middleware(self, app: ASGIApp) -> ASGIApp:
        async def counting(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            self.in_flight += 1
            try:
                await app(scope, receive, send)
            finally:
                self.in_flight -= 1
                if not self.in_flight and self._quiet is not None:
                    self._quiet.set()

        return counting

    def start(self) -> None:
        if self._task is not None:
            return
        self._quiet = asyncio.Event()
        self._thresholds = gc.get_threshold()
        first, second, _ = self._thresholds
        gc.set_threshold(first, second, AUTOMATIC_FULL_OFF)
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._thresholds is not None:
            gc.set_threshold(*self._thresholds)
            self._thresholds = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.every_s)
            await self.collect_when_idle()

    async def collect_when_idle(self) -> bool:
        """Wait (up to `patience_s`) for a moment with no request in flight, then collect every
        generation. True if the moment was quiet."""
        if self.in_flight:
            event = self._quiet = self._quiet or asyncio.Event()
            event.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.patience_s):
                    await event.wait()
        quiet = not self.in_flight
        started = time.perf_counter()
        gc.collect()
        self.last_pause_s = time.perf_counter() - started
        self.collections += 1
        FULL_COLLECTIONS.labels("quiet" if quiet else "busy").inc()
        FULL_PAUSE.observe(self.last_pause_s)
        if not quiet:
            self.forced += 1
            log.info("gc_forced_while_busy", in_flight=self.in_flight, ms=self.last_pause_s * 1e3)
        return quiet


IDLE_GC = IdleCollector()
"""The process's collector: its middleware is in every app; serving apps start it."""
