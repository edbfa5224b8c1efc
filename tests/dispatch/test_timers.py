"""Durable timers: a batch handler gets a kind's due rows together; a row that makes the batch
fail is found by trying each alone, and only it is counted as failing; armed rows wake their
second once the arming transaction commits (and not when it rolls back)."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from dispatch.infra import aftercommit
from dispatch.infra.clock import Clock
from dispatch.infra.db import make_sessionmaker
from dispatch.infra.timers import Arming, DurableTimers, arm_many


async def test_a_poison_row_fails_alone(engine, clean_state) -> None:
    sessions = make_sessionmaker(engine)
    durable = DurableTimers(sessions, Clock())
    seen: list[list[int]] = []

    async def handler(session, rows, now) -> None:
        seen.append([r.ref_id for r in rows])
        if any(r.ref_id == 3 for r in rows):
            raise RuntimeError("poison")
        for r in rows:
            r.payload = {"done": True}

    durable.register_batch("test_batch", handler)
    due = datetime.now(UTC) - timedelta(seconds=1)
    async with sessions.begin() as session:
        armed = await arm_many(
            session, [Arming("test_batch", i, due, f"t:{i}") for i in range(1, 6)]
        )
    assert armed == 5
    assert await durable.fire_due() == 4
    assert seen[0] == [1, 2, 3, 4, 5]  # together first
    assert sorted(map(tuple, seen[1:])) == [(1,), (2,), (3,), (4,), (5,)]  # then one by one
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text("SELECT ref_id, fired_at IS NOT NULL, attempts, payload FROM timers "
                     "ORDER BY ref_id")
            )
        ).all()  # fmt: skip
    assert [(r, f, a) for r, f, a, _ in rows] == [
        (1, True, 0), (2, True, 0), (3, False, 1), (4, True, 0), (5, True, 0),
    ]  # fmt: skip
    assert all(p == {"done": True} for r, f, _, p in rows if f)
    async with sessions.begin() as session:  # arming the same keys again changes nothing
        assert await arm_many(session, [Arming("test_batch", 1, due, "t:1")]) == 0


async def test_wake_ups_follow_the_commit(engine, clean_state) -> None:
    sessions = make_sessionmaker(engine)
    woken: list[int] = []

    async def wake(second: int) -> None:
        woken.append(second)

    aftercommit.bind(sessions, timer_waker=wake)
    due = datetime(2030, 1, 1, 12, 0, 0, 250_000, tzinfo=UTC)
    async with sessions.begin() as session:
        await arm_many(
            session,
            [Arming("test_wake", i, due + timedelta(milliseconds=100 * i), f"w:{i}")
             for i in range(3)],
        )  # fmt: skip
        assert woken == []  # not before the commit
    for _ in range(10):
        if woken:
            break
        await asyncio.sleep(0.01)
    assert woken == [int(due.timestamp())]  # one wake-up for the second
    with contextlib.suppress(RuntimeError):
        async with sessions.begin() as session:
            await arm_many(session, [Arming("test_wake", 9, due + timedelta(hours=1), "w:9")])
            raise RuntimeError("roll back")
    await asyncio.sleep(0.05)
    assert woken == [int(due.timestamp())]


async def test_the_timer_queue_waits_when_redis_is_gone() -> None:
    """SAQ retries a failed dequeue at once; with Redis down that spun a core. Ours waits."""
    import time

    from redis.asyncio import Redis

    from dispatch.infra.timers import _RedisQueue
    from tests.processes import free_port

    gone = Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=1)
    queue = _RedisQueue(gone, name="gone")
    started = time.monotonic()
    assert await queue.dequeue(timeout=0.1) is None
    assert time.monotonic() - started >= 0.9
    await gone.aclose()
