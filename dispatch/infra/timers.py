"""Durable timers on SAQ. The database row is the truth (a job's `wave_deadline`); the SAQ job
is a wake-up kept in Redis. A sweep, on start-up and every 15 s, advances anything overdue in the
database, so a timer lost with Redis still fires, and advancing twice changes nothing the second
time (`Dispatcher.advance` only acts on the wave it was armed for).
"""

from __future__ import annotations

import asyncio
import math
from datetime import datetime
from typing import TYPE_CHECKING, Any

from redis.asyncio import Redis
from saq import CronJob, Queue, Worker
from saq.queue.redis import RedisQueue

from dispatch.infra.logs import log

if TYPE_CHECKING:
    from dispatch.grab.dispatcher import Dispatcher

QUEUE_NAME = "dispatch"


async def advance_wave(ctx: dict[str, Any], *, job_id: int, wave: int) -> bool:
    dispatcher: Dispatcher = ctx["dispatcher"]
    return await dispatcher.advance(job_id, wave)


async def sweep_overdue(ctx: dict[str, Any]) -> int:
    dispatcher: Dispatcher = ctx["dispatcher"]
    advanced = await dispatcher.sweep_overdue()
    if advanced:
        log.info("overdue_waves_advanced", count=advanced)
    return advanced


class _EmbeddedWorker(Worker):
    # The web server owns the process's signals; this worker stops when the app stops.
    SIGNALS: list[Any] = []


class Timers:
    """The queue of wake-ups and the in-process worker that runs them."""

    def __init__(self, redis: Redis, dispatcher: Dispatcher, *, name: str = QUEUE_NAME) -> None:
        self.queue: Queue = RedisQueue(redis, name=name)
        self.dispatcher = dispatcher
        self.worker = _EmbeddedWorker(
            self.queue,
            functions=[advance_wave, sweep_overdue],
            cron_jobs=[CronJob(sweep_overdue, cron="* * * * * */15", timeout=60)],
            concurrency=4,
            # A blocking BLMOVE with no timeout cannot be interrupted on shutdown; return each
            # second instead.
            dequeue_timeout=1.0,
            startup=self._startup,
            timers={"schedule": 1, "sweep": 10},  # SAQ uses `schedule` as a lock TTL too
        )
        self._task: asyncio.Task[None] | None = None
        dispatcher.schedule = self.schedule

    async def _startup(self, ctx: dict[str, Any]) -> None:
        ctx["dispatcher"] = self.dispatcher

    async def schedule(self, job_id: int, wave: int, due: datetime) -> None:
        await self.queue.enqueue(
            "advance_wave",
            job_id=job_id,
            wave=wave,
            key=f"advance:{job_id}:{wave}:{due.timestamp():.0f}",
            scheduled=math.ceil(due.timestamp()),
            timeout=30,
            retries=5,
        )

    async def start(self) -> None:
        await self.queue.connect()
        self._task = asyncio.create_task(self.worker.start())
        # Whatever fell due while no process was running.
        asyncio.get_running_loop().create_task(self._sweep_now())

    async def _sweep_now(self) -> None:
        try:
            await self.dispatcher.sweep_overdue()
        except Exception as exc:
            log.error("startup_sweep_failed", error=repr(exc))

    async def stop(self) -> None:
        # SAQ's own stop() waits for its tasks with no bound; stop them ourselves, bounded.
        worker = self.worker
        worker.event.set()
        worker._stopped = True  # so stop() from start()'s finally returns at once
        tasks = [*worker.tasks, *([self._task] if self._task is not None else [])]
        for task in tasks:
            task.cancel()
        if tasks:
            # Upkeep loops that swallowed the cancellation finish their sleep, see the stop
            # event and exit without touching Redis; no need to wait for them.
            await asyncio.wait(tasks, timeout=0.5)
        worker.pool.shutdown(wait=False, cancel_futures=True)
