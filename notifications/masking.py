"""Masked numbers: a session per assignment on a proxy number from the community's pool, so the
resident and the worker can call and text each other without either learning the other's number.

A participant holds a number in at most one active session (a partial unique index on
`proxy_holds`), so a call from them to that number names exactly one session, and concurrent
allocations that pick the same number for the same person cannot both commit: the loser's insert
fails at the index and it tries the next number (inside a savepoint, the assignment goes on).
Sessions end with the assignment: at completion or cancellation plus the community's
`proxy_grace_h` (the resident may still need to reach the worker about a forgotten tool), at once
when the worker is released or replaced. Holds whose session has ended are released lazily, by the
next allocation that needs the number, so nothing depends on a timer for correctness.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import exists, func, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from dispatch.communities import CommunityService
from dispatch.logs import log
from dispatch.models import Alert, Job, ProxyHold, ProxyNumber, ProxySession, User
from dispatch.phones import PhoneVault

CANDIDATES = 8
"""Numbers tried per allocation before giving up (each failure is a concurrent allocation that
took the same number for the same person first)."""
GRACE_REASONS = frozenset({"completed", "cancelled"})


@dataclass(frozen=True)
class Route:
    """Where a call or text from `caller_id` to a proxy number goes."""

    session_id: int
    job_id: int
    caller_id: int
    other_id: int
    other_phone: str | None
    proxy: str


class ProxyBroker:
    """Opens and ends masked-number sessions (an assignment hook) and routes inbound calls."""

    def __init__(self, communities: CommunityService, vault: PhoneVault) -> None:
        self.communities = communities
        self.vault = vault

    # --- the assignment hook -------------------------------------------------------------------

    async def assigned(
        self, session: AsyncSession, job: Job, worker_id: int, now: datetime
    ) -> None:
        participants = sorted({job.resident_id, worker_id})
        await self._close_ended(
            session,
            or_(
                ProxySession.resident_id.in_(participants),
                ProxySession.worker_id.in_(participants),
            ),
            now,
        )
        for _ in range(2):
            candidates = await self._candidates(session, job.community_id, participants)
            for number_id in candidates:
                try:
                    async with session.begin_nested():
                        session_id = await session.scalar(
                            insert(ProxySession)
                            .values(
                                job_id=job.id,
                                community_id=job.community_id,
                                proxy_number_id=number_id,
                                resident_id=job.resident_id,
                                worker_id=worker_id,
                                assignment_version=job.assignment_version,
                                opened_at=now,
                            )
                            .returning(ProxySession.id)
                        )
                        # Ascending user order: two allocations for the same pair cannot deadlock.
                        await session.execute(
                            insert(ProxyHold).values(
                                [
                                    {
                                        "session_id": session_id,
                                        "user_id": uid,
                                        "proxy_number_id": number_id,
                                        "active": True,
                                    }
                                    for uid in participants
                                ]
                            )
                        )
                    return
                except IntegrityError:
                    continue  # someone took this number for one of us meanwhile
            if not candidates:
                break
        pool = await session.scalar(
            select(func.count()).where(
                ProxyNumber.community_id == job.community_id, ProxyNumber.active.is_(True)
            )
        )
        if not pool:
            return  # masked numbers are not set up here: the app's messages are the channel
        log.warning("proxy_pool_exhausted", job_id=job.id, community_id=job.community_id)
        await session.execute(
            pg_insert(Alert)
            .values(
                community_id=job.community_id,
                kind="proxy_pool_exhausted",
                job_id=job.id,
                worker_id=worker_id,
                detail={
                    "message": "no free masked number for this job; the resident and the "
                    "worker can still message each other in the app"
                },
                created_at=now,
            )
            .on_conflict_do_nothing(
                index_elements=[Alert.job_id, Alert.kind], index_where=Alert.job_id.is_not(None)
            )
        )

    async def released(
        self, session: AsyncSession, job: Job, worker_id: int, reason: str, now: datetime
    ) -> None:
        ends = now
        if reason in GRACE_REASONS:
            view = await self.communities.get(session, job.community_id)
            ends = now + timedelta(hours=view.dispatch.proxy_grace_h)
        await session.execute(
            update(ProxySession)
            .where(
                ProxySession.job_id == job.id,
                ProxySession.worker_id == worker_id,
                ProxySession.ends_at.is_(None),
            )
            .values(ends_at=ends)
        )
        if ends <= now:
            await self._close_ended(session, ProxySession.job_id == job.id, now)

    # --- allocation ------------------------------------------------------------------------------

    async def _candidates(
        self, session: AsyncSession, community_id: int, participants: list[int]
    ) -> list[int]:
        """Numbers of the pool neither participant holds, least loaded first."""
        held_by_us = exists().where(
            ProxyHold.proxy_number_id == ProxyNumber.id,
            ProxyHold.active.is_(True),
            ProxyHold.user_id.in_(participants),
        )
        load = (
            select(func.count())
            .where(ProxyHold.proxy_number_id == ProxyNumber.id, ProxyHold.active.is_(True))
            .scalar_subquery()
        )
        rows = await session.scalars(
            select(ProxyNumber.id)
            .where(
                ProxyNumber.community_id == community_id,
                ProxyNumber.active.is_(True),
                ~held_by_us,
            )
            .order_by(load, ProxyNumber.id)
            .limit(CANDIDATES)
        )
        return list(rows)

    async def _close_ended(
        self, session: AsyncSession, scope: ColumnElement[bool], now: datetime
    ) -> None:
        """Close the sessions in `scope` whose end has come, freeing their holds (their
        numbers may then be given to the same people again)."""
        ended = select(ProxySession.id).where(
            scope, ProxySession.ends_at <= now, ProxySession.closed_at.is_(None)
        )
        await session.execute(
            update(ProxyHold)
            .where(ProxyHold.session_id.in_(ended), ProxyHold.active.is_(True))
            .values(active=False)
        )
        await session.execute(
            update(ProxySession)
            .where(scope, ProxySession.ends_at <= now, ProxySession.closed_at.is_(None))
            .values(closed_at=now)
        )

    # --- routing ---------------------------------------------------------------------------------

    async def route(
        self, session: AsyncSession, proxy: str, caller_phone: str, now: datetime
    ) -> Route | None:
        """The live session `caller_phone` reaches by calling or texting `proxy`, if any."""
        caller_id = await session.scalar(
            select(User.id).where(User.phone_hash == self.vault.hash(caller_phone))
        )
        if caller_id is None:
            return None
        row = (
            await session.execute(
                select(ProxySession)
                .join(ProxyHold, ProxyHold.session_id == ProxySession.id)
                .join(ProxyNumber, ProxyNumber.id == ProxyHold.proxy_number_id)
                .where(
                    ProxyNumber.number == proxy,
                    ProxyHold.user_id == caller_id,
                    ProxyHold.active.is_(True),
                    or_(ProxySession.ends_at.is_(None), ProxySession.ends_at > now),
                )
            )
        ).scalar_one_or_none()
        if row is None:
            return None
        other_id = row.worker_id if caller_id == row.resident_id else row.resident_id
        enc = await session.scalar(select(User.phone_enc).where(User.id == other_id))
        return Route(
            session_id=row.id,
            job_id=row.job_id,
            caller_id=caller_id,
            other_id=other_id,
            other_phone=self.vault.decrypt(enc) if enc else None,
            proxy=proxy,
        )


__all__ = ["ProxyBroker", "Route"]
