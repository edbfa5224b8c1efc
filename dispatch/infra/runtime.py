"""The process-wide resources a running service holds, opened and closed by the app lifespan."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from dispatch.booking.service import NO_SHOW, REMINDER, BookingDispatch, BookingService
from dispatch.communities.service import CommunityService
from dispatch.devtools.local_servers import LocalServers
from dispatch.grab.board import Board
from dispatch.grab.dispatcher import Dispatcher
from dispatch.grab.events import EventBus
from dispatch.identity.me import Profiles
from dispatch.identity.otp import OtpService
from dispatch.identity.phones import PhoneVault
from dispatch.infra import aftercommit
from dispatch.infra.clock import Clock
from dispatch.infra.db import make_engine, make_sessionmaker, migrate_async
from dispatch.infra.redis_client import open_redis
from dispatch.infra.settings import Settings
from dispatch.infra.smsbudget import SmsBudget
from dispatch.infra.timers import DurableTimers, Timers
from dispatch.infra.wire import Pipeliner
from dispatch.jobs.service import JobService
from dispatch.money.ledger import Ledger
from dispatch.money.provider import LocalProvider
from dispatch.money.service import AUTO_CONFIRM, ESCROW, PAYOUT, MoneyService
from dispatch.ops import events as ops_events
from dispatch.ops.alerts import AlertService
from dispatch.ops.dispatchlog import DispatchLog
from dispatch.ops.snapshot import Snapshots
from dispatch.safety.ladder import OVERRUN, STEP, Ladder
from dispatch.safety.service import Emergencies, SafetyHook, SafetyService
from dispatch.trust.service import ReviewService
from dispatch.workers.positions import PositionSink
from dispatch.workers.service import WorkerService
from geo.live import LiveIndex
from geo.live.redis import RedisLiveIndex

INDEX_CHECK_S = 2.0
"""How often each process checks that every community's live index still exists in Redis."""


@dataclass
class Runtime:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    redis: Redis
    vault: PhoneVault
    otp: OtpService
    communities: CommunityService
    live: LiveIndex
    workers: WorkerService
    bus: EventBus
    dispatcher: Dispatcher
    board: Board
    jobs: JobService
    alerts: AlertService
    feed: ops_events.OpsFeed
    snapshots: Snapshots
    watchers: ops_events.PositionFeed
    dispatch_log: DispatchLog
    booking: BookingService
    safety: SafetyService
    money: MoneyService
    reviews: ReviewService
    emergencies: Emergencies
    timers: Timers
    durable: DurableTimers
    sms_budget: SmsBudget
    profiles: Profiles
    local: LocalServers | None = field(default=None)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @classmethod
    async def open(cls, settings: Settings) -> Runtime:
        settings = settings.with_secret()
        local = None
        db_url, redis_url = settings.storage.database_url, settings.storage.redis_url
        cluster = settings.storage.redis_cluster
        if db_url is None or redis_url is None:
            home = settings.data_dir.resolve()
            local = LocalServers(
                home / "servers", home=home, redis_mode=settings.storage.local_redis
            )
            local_db, local_redis = local.start()
            if db_url is None:
                # Our own private database: keep its schema current without a separate step.
                await migrate_async(local_db)
            if redis_url is None:
                cluster = local.redis_cluster
            db_url, redis_url = db_url or local_db, redis_url or local_redis
        engine = make_engine(
            db_url, settings.storage.pool_size, pool_timeout_s=settings.storage.pool_timeout_s
        )
        redis = open_redis(redis_url, cluster=cluster)
        vault = PhoneVault(settings.auth.secret_key)
        sessions = make_sessionmaker(engine)
        aftercommit.bind(sessions, **{ops_events.REDIS: redis})
        live = RedisLiveIndex(redis, pipe=Pipeliner.for_client(redis))
        communities = CommunityService(
            default_region=settings.phone_region, sessions=sessions, live=live
        )
        watchers = ops_events.PositionFeed(redis)
        workers = WorkerService(
            sessions, live, communities, vault, PositionSink(sessions), watchers
        )
        bus = EventBus(redis)
        dispatcher = Dispatcher(sessions, live, communities, workers, bus, redis)
        dispatch_log = DispatchLog(sessions)
        dispatcher.log = dispatch_log
        clock = Clock(settings.clock_offset_s)
        booking = BookingService(sessions, communities, workers, clock)
        booking_dispatch = BookingDispatch(booking, dispatcher)
        dispatcher.booking = booking_dispatch
        dispatcher.hooks.append(booking_dispatch)
        ladder = Ladder(communities, settings.public_base_url)
        dispatcher.hooks.append(SafetyHook(ladder))
        durable = DurableTimers(sessions, clock)
        durable.register(REMINDER, booking_dispatch.remind)
        durable.register(NO_SHOW, booking_dispatch.check_no_show)
        durable.register_batch(STEP, ladder.fire_steps)
        durable.register(OVERRUN, ladder.fire_overrun)
        money = MoneyService(
            sessions, communities, Ledger(), LocalProvider(settings.payout_limit_cents), clock
        )
        dispatcher.money = money
        money.assignments = dispatcher
        durable.register(ESCROW, money.fire_escrow)
        durable.register(AUTO_CONFIRM, money.fire_auto_confirm)
        durable.register(PAYOUT, money.fire_payout)
        sms_budget = SmsBudget(redis, settings.sms_daily_budget)
        feed = ops_events.OpsFeed(redis, sessions, communities, settings.auth.secret_key)
        return cls(
            settings=settings,
            engine=engine,
            sessions=sessions,
            redis=redis,
            vault=vault,
            otp=OtpService(
                vault,
                redis,
                settings.auth,
                sms_status="pending" if settings.sms_provider_configured else "held",
                budget=sms_budget,
                region=settings.phone_region,
                sessions=sessions,
                default_locale=settings.default_locale,
            ),
            communities=communities,
            live=live,
            workers=workers,
            bus=bus,
            dispatcher=dispatcher,
            board=Board(sessions, live, communities, workers, dispatcher, redis),
            jobs=JobService(
                communities, sessions, dispatcher if settings.auto_dispatch else None, live
            ),
            alerts=AlertService(sessions, communities),
            feed=feed,
            snapshots=Snapshots(sessions, communities, live, feed, settings.map_style_url),
            watchers=watchers,
            dispatch_log=dispatch_log,
            booking=booking,
            safety=SafetyService(sessions, communities, ladder, clock),
            money=money,
            reviews=ReviewService(sessions, communities, clock),
            emergencies=Emergencies(sessions, communities, vault, settings.phone_region),
            timers=Timers(redis, dispatcher, durable),
            durable=durable,
            sms_budget=sms_budget,
            profiles=Profiles(sessions),
            local=local,
        )

    async def readiness(self) -> dict[str, str]:
        """`ok`, or why not, for the database and Redis (each given two seconds)."""
        checks: dict[str, str] = {}

        async def database() -> None:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))

        for name, probe in (("database", database), ("redis", self.redis.ping)):
            try:
                await asyncio.wait_for(probe(), timeout=2.0)
                checks[name] = "ok"
            except Exception as exc:
                checks[name] = f"down: {type(exc).__name__}"
        return checks

    async def start_background(self) -> None:
        """Work that runs beside requests for the life of the process."""
        await self.live.on_startup()
        await self.timers.start()
        self._tasks.append(asyncio.create_task(self.workers.positions.run()))
        self._tasks.append(asyncio.create_task(self.watchers.run()))
        self._tasks.append(asyncio.create_task(self._rebuild_lost_indexes()))

    def add_task(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run `coro` beside requests until the process stops."""
        self._tasks.append(asyncio.create_task(coro))

    async def _rebuild_lost_indexes(self) -> None:
        """At start-up and then every `INDEX_CHECK_S`: rebuild the live index of every
        community whose marker is gone (Redis restarted empty, or flushed), and push again the
        availability that committed changes could not push, so the service recovers from a
        lost Redis by itself. A check is one SELECT and one SET NX per
        community; while Redis or PostgreSQL is down it fails, is logged and is tried again."""
        from dispatch.infra.logs import log

        failing = False
        while True:
            try:
                rebuilt = await self.workers.rebuild_lost()
                await self.workers.republish()
            except Exception as exc:
                if not failing:
                    log.warning("index_check_failed", error=repr(exc))
                failing = True
            else:
                failing = False
                if rebuilt:
                    log.info("index_rebuilt", communities=rebuilt)
            await asyncio.sleep(INDEX_CHECK_S)

    async def close(self) -> None:
        await self.timers.stop()
        await aftercommit.drain()
        await self.dispatch_log.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.workers.positions.flush()
        await self.bus.close()
        await self.dispatcher.close()
        await self.live.on_shutdown()
        await self.redis.aclose()
        await self.engine.dispose()
        if self.local is not None:
            self.local.stop()


_heap_frozen = False


def freeze_startup_heap() -> None:
    """Exempt everything alive once start-up is done (modules, the app, ORM mappers, the
    runtime: some 150k objects) from garbage collection, so that a full collection walks only
    what requests create. Without this, a full collection in a serving process pauses the event
    loop for 100 to 250 ms. Once per process: later calls (tests build many apps) do nothing."""
    global _heap_frozen
    if _heap_frozen:
        return
    _heap_frozen = True
    gc.collect()
    gc.freeze()
