"""What a transaction promises for after it commits: a live event for operators, a timer's
wake-up. The rows are the truth; these are news of them, and must not go out for a change that
rolled back.

`promise(session, key, fn)` records `fn` on the session (once per key, so a hundred timers armed
for one second wake it once). When the outermost transaction commits, the session's promises run
in the order made, in one task on the running loop (best effort: a failure is logged); a rollback
drops them. A promise made inside a savepoint that later rolls back still runs: one wake-up or
event too many is harmless, since readers take the database as the truth.

What promises need (the Redis client, the timers' queue) is bound to the sessionmaker once
(`bind`), so a writer anywhere reaches it through the session it already holds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from dispatch.infra.logs import log

Promise = Callable[[], Awaitable[None]]
_PROMISES = "after_commit"
_UNDO = "after_rollback"
_running: set[asyncio.Task[None]] = set()


def bind(sessions: async_sessionmaker[AsyncSession], **resources: Any) -> None:
    """Make `resources` available to every session of `sessions` (`resource(session, name)`)."""
    info = dict(sessions.kw.get("info") or {})
    info.update(resources)
    sessions.configure(info=info)


def resource(session: AsyncSession | Session, name: str) -> Any:
    return session.info.get(name)


def promise(session: AsyncSession | Session, key: Hashable, fn: Promise) -> None:
    """Run `fn` once the session's transaction commits (the first promise of a key wins)."""
    session.info.setdefault(_PROMISES, {}).setdefault(key, fn)


def on_rollback(session: AsyncSession | Session, key: Hashable, fn: Callable[[], None]) -> None:
    """Call `fn` (plain, quick: it runs inside SQLAlchemy's event) if the session's outermost
    transaction rolls back, for a writer that already told the world outside the database
    (once per key). A commit forgets it."""
    session.info.setdefault(_UNDO, {}).setdefault(key, fn)


class _Batch:
    """A promise that sends every item collected under its key in one call."""

    def __init__(self, send: Callable[[list[Any]], Awaitable[None]]) -> None:
        self.send = send
        self.items: list[Any] = []

    async def __call__(self) -> None:
        await self.send(self.items)


def collect(
    session: AsyncSession | Session,
    key: Hashable,
    item: Any,
    send: Callable[[list[Any]], Awaitable[None]],
) -> None:
    """Add `item` to what `send` gets, once, after the session's transaction commits: one call
    for all the items of a transaction (a hundred ladder steps' events in one pipeline)."""
    promises = session.info.setdefault(_PROMISES, {})
    batch = promises.get(key)
    if batch is None:
        batch = promises[key] = _Batch(send)
    batch.items.append(item)


async def _keep(promises: list[Promise]) -> None:
    for fn in promises:
        try:
            await fn()
        except Exception as exc:
            log.warning("after_commit_failed", error=repr(exc))


async def drain(within_s: float = 10.0) -> None:
    """Wait for the promises under way (a process closing lets them finish first)."""
    current = asyncio.current_task()
    busy = [t for t in _running if t is not current]
    if busy:
        await asyncio.wait(busy, timeout=within_s)


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    if session.in_nested_transaction():
        return  # a savepoint: the promises wait for the transaction itself
    session.info.pop(_UNDO, None)
    promises = session.info.pop(_PROMISES, None)
    if not promises:
        return
    task = asyncio.get_running_loop().create_task(_keep(list(promises.values())))
    _running.add(task)
    task.add_done_callback(_running.discard)


@event.listens_for(Session, "after_rollback")
def _after_rollback(session: Session) -> None:
    if not session.in_nested_transaction():
        session.info.pop(_PROMISES, None)
        for fn in session.info.pop(_UNDO, {}).values():
            try:
                fn()
            except Exception as exc:
                log.warning("after_rollback_failed", error=repr(exc))
