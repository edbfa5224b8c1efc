"""Durable timers on SAQ. The database row is the truth; an SAQ job is only a wake-up kept in
Redis. A sweep, on start-up and every 15 s, acts on anything overdue in the database, so a timer
lost with Redis (or with a killed process) still fires.

Two kinds of rows:
- a grab or booking job's `wave_deadline` (its offers lapse and the next wave goes out): armed
  by the dispatcher, woken at the deadline, and advancing twice changes nothing the second time
  (`Dispatcher.advance` only acts on the wave it was armed for);
- `timers` rows (reminders, no-shows, and safety's steps later): `arm` is their one writer, in
  the transaction of the change that makes them due; `DurableTimers.fire_due` runs each due row's
  handler in the transaction that stamps it fired (rows taken with SKIP LOCKED, so several
  processes never fire one twice, and a process killed mid-way leaves the row to fire again).
  A handler's effects (outbox messages, alerts) commit with the stamp: exactly once.

Wake-ups: once the transaction that armed a row commits, an SAQ job is scheduled for the row's
second (one per second, by its key, however many rows fall due in it), a second early; it fires
what is due and then again at each due time up to the end of its second, so a row fires within
about `WAKE_STEP_S` of its time, not at the next sweep. SAQ's scheduler polls once a second,
which is why the wake-up is set a second before the row.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from redis.asyncio import Redis
from redis.exceptions import RedisError
from saq import CronJob, Job, Queue, Worker
from saq.queue.redis import RedisQueue
from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dispatch.infra import aftercommit
from dispatch.infra.clock import Clock
from dispatch.infra.db import sqlstate
from dispatch.infra.logs import log
from dispatch.models import Timer

if TYPE_CHECKING:
    from dispatch.grab.dispatcher import Dispatcher

QUEUE_NAME = "{dispatch}"
"""Hash-tagged: every key SAQ writes for the queue (`saq:{dispatch}:*`, job ids
`saq:job:{dispatch}:*`) shares one Redis Cluster slot, as its scripts and transactions need."""
FIRE_BATCH = 100
WAKE_STEP_S = 0.1
"""A wake-up's shortest sleep between two firings inside its second."""
_WAKER = "timer_waker"
MAX_ATTEMPTS = 20
"""A timer whose handler failed this often is left for operators (logged each time)."""


class Busy(Exception):
    """A handler's row is held by another transaction (`lock_row`): the timer fires again at the
    next sweep, with no attempt counted."""


async def lock_row(session: AsyncSession, model: type[Any], ident: Any) -> Any:
    """`model`'s row `ident` locked FOR UPDATE NOWAIT, for a timer's handler (None if there is
    none); `Busy` if another transaction holds it. Due timers fire together in one transaction,
    so a handler that waited for a lock would wait holding the locks of the timers fired before
    it, and the holder, wanting one of those, deadlocked with it (seen in CI: an assignment's
    escrow hold fired beside another job's, against that job's completion)."""
    try:
        return await session.get(model, ident, with_for_update={"nowait": True})
    except DBAPIError as exc:
        if sqlstate(exc) == "55P03":  # lock_not_available
            raise Busy(f"{model.__name__} {ident} is held by another transaction") from exc
        raise


AfterFire = Callable[[], Awaitable[None]]
Handler = Callable[[AsyncSession, Timer, datetime], Awaitable[AfterFire | None]]
"""What a kind of timer does when due, inside the transaction that marks it fired; it may return
what to do once that transaction has committed (live events: best effort, the rows are the
truth)."""
BatchHandler = Callable[[AsyncSession, Sequence[Timer], datetime], Awaitable[None]]
"""The same for many rows of one kind at once (set-based statements: a ladder step of ten
thousand night jobs due in one minute); their after-commit work goes through `aftercommit`."""


@dataclass(frozen=True)
class Arming:
    """One timer to arm: what it is (`kind`, `ref_id`), when, and its key (one timer a key)."""

    kind: str
    ref_id: int
    due: datetime
    key: str
    payload: dict[str, Any] = field(default_factory=dict)


async def arm_many(session: AsyncSession, armings: Sequence[Arming]) -> int:
    """Arm timers in the caller's transaction, in one statement (the one writer of `timers`);
    a key already armed is skipped. How many were armed; each wakes its second after commit."""
    if not armings:
        return 0
    created = datetime.now(UTC)
    values = [
        {"kind": a.kind, "ref_id": a.ref_id, "due_at": a.due, "key": a.key,
         "payload": a.payload, "created_at": created, "attempts": 0}
        for a in armings
    ]  # fmt: skip
    stmt = (
        insert(Timer)
        .values(values)
        .on_conflict_do_nothing(index_elements=[Timer.key])
        .returning(Timer.due_at)
    )
    dues = list((await session.scalars(stmt)).all())
    waker: Callable[[int], Awaitable[None]] | None = aftercommit.resource(session, _WAKER)
    if waker is not None:
        for second in {math.floor(due.timestamp()) for due in dues}:
            aftercommit.promise(session, ("timer_wake", second), partial(waker, second))
    return len(dues)


async def arm(
    session: AsyncSession,
    *,
    kind: str,
    ref_id: int,
    due: datetime,
    key: str,
    payload: dict[str, Any] | None = None,
) -> bool:
    """Arm one durable timer in the caller's transaction; False if one with this key exists
    (arming a step twice is a no-op)."""
    return await arm_many(session, [Arming(kind, ref_id, due, key, payload or {})]) == 1


async def disarm(session: AsyncSession, *, kind: str, ref_id: int, now: datetime) -> int:
    """Cancel the pending timers of a kind for one thing (say, a cancelled booking's)."""
    done = await session.execute(
        update(Timer)
        .where(
            Timer.kind == kind,
            Timer.ref_id == ref_id,
            Timer.fired_at.is_(None),
            Timer.cancelled_at.is_(None),
        )
        .values(cancelled_at=now)
    )
    return int(done.rowcount or 0)  # type: ignore[attr-defined]


class DurableTimers:
    """The handlers of `timers` rows by kind, and the loop that fires due rows."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], clock: Clock | None = None
    ) -> None:
        self.sessions = sessions
        self.clock = clock or Clock()
        self.handlers: dict[str, Handler] = {}
        self.batch_handlers: dict[str, BatchHandler] = {}
        self._firing: set[asyncio.Task[Any]] = set()
        self._closing = False

    def register(self, kind: str, handler: Handler) -> None:
        self.handlers[kind] = handler

    def register_batch(self, kind: str, handler: BatchHandler) -> None:
        self.batch_handlers[kind] = handler

    async def fire_through(self, until_ts: float) -> int:
        """Fire due rows now and at each next due time before `until_ts` (a wake-up's second)."""
        fired = await self.fire_due()
        until = datetime.fromtimestamp(until_ts, UTC)
        while not self._closing:
            async with self.sessions() as session:
                nxt = await session.scalar(
                    select(func.min(Timer.due_at)).where(
                        Timer.fired_at.is_(None),
                        Timer.cancelled_at.is_(None),
                        Timer.due_at < until,
                        Timer.attempts < MAX_ATTEMPTS,
                    )
                )
            if nxt is None:
                return fired
            wait = (nxt - self.clock.now()).total_seconds()
            await asyncio.sleep(max(WAKE_STEP_S, wait))
            fired += await self.fire_due()
        return fired

    async def fire_due(self, now: datetime | None = None) -> int:
        """Fire every timer due at `now` (default: the clock; tests pass their own). Each row's
        handler and its `fired_at` commit together; a failing handler rolls back its row alone
        (counted in `attempts`) and the row fires again at the next sweep. Rows of a kind with a
        batch handler go to it together; if the batch fails, each row is tried alone."""
        if self._closing:
            return 0
        task = asyncio.current_task()
        if task is not None:
            self._firing.add(task)
        try:
            return await self._fire_due(now or self.clock.now())
        finally:
            if task is not None:
                self._firing.discard(task)

    async def close(self, within_s: float = 10.0) -> None:
        """Fire nothing more and wait for the firings under way to commit or roll back (a
        firing cut off mid-transaction would hold its row locks on a connection nobody closes;
        seen as a deadlock with the test suite's TRUNCATE)."""
        self._closing = True
        current = asyncio.current_task()
        busy = [t for t in self._firing if t is not current]
        if busy:
            await asyncio.wait(busy, timeout=within_s)

    async def _fire_due(self, now: datetime) -> int:
        fired = 0
        failed: list[int] = []
        while True:
            afterwards: list[AfterFire] = []
            async with self.sessions.begin() as session:
                rows = (
                    await session.scalars(
                        select(Timer)
                        .where(
                            Timer.fired_at.is_(None),
                            Timer.cancelled_at.is_(None),
                            Timer.due_at <= now,
                            Timer.attempts < MAX_ATTEMPTS,
                            Timer.id.notin_(failed),
                        )
                        .order_by(Timer.due_at, Timer.id)
                        .limit(FIRE_BATCH)
                        .with_for_update(skip_locked=True)
                    )
                ).all()
                singles: list[Timer] = []
                by_kind: dict[str, list[Timer]] = {}
                for row in rows:
                    if row.kind in self.batch_handlers:
                        by_kind.setdefault(row.kind, []).append(row)
                    else:
                        singles.append(row)
                for kind, batch in by_kind.items():
                    if await self._fire(session, batch, now, failed, afterwards, kind=kind):
                        fired += len(batch)
                    else:  # find the row that fails: each alone
                        for row in batch:
                            fired += await self._fire(session, [row], now, failed, afterwards)
                for row in singles:
                    fired += await self._fire(session, [row], now, failed, afterwards)
            for then in afterwards:
                try:
                    await then()
                except Exception as exc:
                    log.warning("timer_after_commit_failed", error=repr(exc))
            if len(rows) < FIRE_BATCH:
                return fired

    async def _fire(
        self,
        session: AsyncSession,
        rows: list[Timer],
        now: datetime,
        failed: list[int],
        afterwards: list[AfterFire],
        *,
        kind: str | None = None,
    ) -> bool:
        """Fire `rows` in one savepoint; False (and, for a single row, its failure counted)
        when the handler raised. `kind` given: a whole batch, whose failure is not counted
        (its rows are tried again one by one)."""
        batch = self.batch_handlers.get(rows[0].kind)
        handler = self.handlers.get(rows[0].kind)
        try:
            async with session.begin_nested():
                then = None
                if batch is not None:
                    await batch(session, rows, now)
                elif handler is not None:
                    then = await handler(session, rows[0], now)
                # When it really fired (a test's `now` may be ahead of the clock).
                stamp = max(now, self.clock.now())
                for row in rows:
                    row.fired_at = stamp
        except Busy as exc:
            failed.extend(r.id for r in rows)  # not now; at the next sweep
            log.info("timer_busy", kind=rows[0].kind, timers=[r.id for r in rows], error=str(exc))
            return False
        except Exception as exc:
            if kind is None:
                rows[0].attempts += 1
                failed.append(rows[0].id)
            log.error(
                "timer_failed", kind=rows[0].kind, timers=[r.id for r in rows], error=repr(exc)
            )
            return False
        if then is not None:
            afterwards.append(then)
        return True


async def wake_timers(ctx: dict[str, Any], *, second: int) -> int:
    """Fire what is due now, then again at each due time until the end of `second` (in the
    timers' clock). Rows fire with SKIP LOCKED, so wake-ups that overlap share the work."""
    durable: DurableTimers = ctx["durable"]
    return await durable.fire_through(second + 1)


async def advance_wave(ctx: dict[str, Any], *, job_id: int, wave: int) -> bool:
    dispatcher: Dispatcher = ctx["dispatcher"]
    return await dispatcher.advance(job_id, wave)


async def sweep_overdue(ctx: dict[str, Any]) -> int:
    dispatcher: Dispatcher = ctx["dispatcher"]
    advanced = await dispatcher.sweep_overdue()
    if advanced:
        log.info("overdue_waves_advanced", count=advanced)
    durable: DurableTimers | None = ctx.get("durable")
    if durable is not None:
        fired = await durable.fire_due()
        if fired:
            log.info("timers_fired", count=fired)
    return advanced


class _RedisQueue(RedisQueue):
    """SAQ's Redis queue, pausing a second after a dequeue that failed. SAQ's workers retry a
    failed dequeue at once: with Redis down that is a loop taking a whole core (seen: a service
    left running after its Redis had stopped sat at 100 % CPU for 38 minutes)."""

    async def _enqueue(self, job: Job) -> Job | None:
        # SAQ names a job's abort key after the job's key alone (`saq:abort:<key>`), not after
        # the queue, and its enqueue script takes that key with the queue's: the key carries
        # the queue's hash tag too, so all of them share one Redis Cluster slot.
        if not job.key.startswith(self.name):
            job.key = f"{self.name}:{job.key}"
        return await super()._enqueue(job)

    async def dequeue(self, timeout: float = 0.0, poll_interval: float = 0.0) -> Any:  # noqa: ASYNC109 - SAQ's signature
        try:
            return await super().dequeue(timeout, poll_interval)
        except RedisError as exc:
            log.warning("timer_queue_unreachable", error=repr(exc))
            await asyncio.sleep(1.0)
            return None


class _EmbeddedWorker(Worker):
    # The web server owns the process's signals; this worker stops when the app stops.
    SIGNALS: list[Any] = []


class Timers:
    """The queue of wake-ups and the in-process worker that runs them."""

    def __init__(
        self,
        redis: Redis,
        dispatcher: Dispatcher,
        durable: DurableTimers | None = None,
        *,
        name: str = QUEUE_NAME,
    ) -> None:
        self.queue: Queue = _RedisQueue(redis, name=name)
        self.dispatcher = dispatcher
        self.durable = durable
        self.worker = _EmbeddedWorker(
            self.queue,
            functions=[advance_wave, sweep_overdue, wake_timers],
            cron_jobs=[CronJob(sweep_overdue, cron="* * * * * */15", timeout=60)],
            concurrency=4,
            # A blocking BLMOVE with no timeout cannot be interrupted on shutdown; return each
            # second instead.
            dequeue_timeout=1.0,
            startup=self._startup,
            timers={"schedule": 1, "sweep": 10},  # SAQ uses `schedule` as a lock TTL too
        )
        self._task: asyncio.Task[None] | None = None
        self._sweep: asyncio.Task[None] | None = None
        dispatcher.schedule = self.schedule
        if durable is not None:
            # Every session of these timers wakes them once its transaction commits.
            aftercommit.bind(durable.sessions, **{_WAKER: self.wake})

    async def wake(self, second: int) -> None:
        """Schedule the wake-up for the timers due in `second` (once per second: SAQ keeps one
        job per key while it is pending). Best effort: the sweep catches what a lost wake-up
        misses."""
        assert self.durable is not None
        real = second - self.durable.clock.offset_s
        try:
            await self.queue.enqueue(
                "wake_timers",
                second=second,
                key=f"wake:{second}",
                scheduled=max(0, math.floor(real) - 1),
                timeout=120,
            )
        except Exception as exc:
            log.warning("timer_wake_failed", error=repr(exc))

    async def _startup(self, ctx: dict[str, Any]) -> None:
        ctx["dispatcher"] = self.dispatcher
        ctx["durable"] = self.durable

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
        self._sweep = asyncio.get_running_loop().create_task(self._sweep_now())

    async def _sweep_now(self) -> None:
        try:
            await self.dispatcher.sweep_overdue()
            if self.durable is not None:
                await self.durable.fire_due()
        except Exception as exc:
            log.error("startup_sweep_failed", error=repr(exc))

    async def stop(self) -> None:
        if self.durable is not None:
            await self.durable.close()
        if self._sweep is not None and not self._sweep.done():
            await asyncio.wait([self._sweep], timeout=10.0)
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
