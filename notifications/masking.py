"""Masked numbers: a session per assignment on a proxy number from the community's pool, so the
resident and the worker can call and text each other without either learning the other's number.

A participant holds a number in at most one active session (a partial unique index on
`proxy_holds`), so a call from them to that number names exactly one session, and concurrent
allocations that pick the same number for the same person cannot both commit: the loser's hold
collides at the index (`ON CONFLICT DO NOTHING`, after waiting for the winner), so it removes its
session and tries the next number; the assignment goes on either way.
Sessions end with the assignment: at completion or cancellation plus the community's
`proxy_grace_h` (the resident may still need to reach the worker about a forgotten tool), at once
when the worker is released or replaced. Holds whose session has ended are released lazily, by the
next allocation that needs the number, so nothing depends on a timer for correctness.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.communities.service import CommunityService
from dispatch.identity.phones import PhoneVault
from dispatch.infra.logs import log
from dispatch.models import Job, User
from dispatch.ops.alerts import raise_alert
from notifications.models import ProxyHold, ProxyNumber, ProxySession

CANDIDATES = 8
"""Numbers tried per allocation before giving up (each failure is a concurrent allocation that
took the same number for the same person first)."""
GRACE_REASONS = frozenset({"completed", "cancelled"})

# The allocation is one statement (it runs inside every winning accept): the least-loaded number
# of the pool neither participant holds, a session on it and a hold per participant. A hold that
# collides at the partial unique index (a concurrent allocation gave the number to one of us)
# is skipped, so the caller sees fewer holds than participants and tries again. The pool's size
# comes back too, to tell "no pool" from "pool exhausted".
_ALLOCATE = text(
    """
    WITH pick AS (
        SELECT n.id FROM proxy_numbers n
        WHERE n.community_id = :community_id AND n.active
          AND NOT EXISTS (
              SELECT 1 FROM proxy_holds h
              WHERE h.proxy_number_id = n.id AND h.active AND h.user_id = ANY(:users))
        ORDER BY (SELECT count(*) FROM proxy_holds h
                  WHERE h.proxy_number_id = n.id AND h.active), n.id
        LIMIT 1
    ), opened AS (
        INSERT INTO proxy_sessions (job_id, community_id, proxy_number_id, resident_id,
                                    worker_id, assignment_version, opened_at)
        SELECT :job_id, :community_id, pick.id, :resident_id, :worker_id, :version, :now
        FROM pick
        RETURNING id, proxy_number_id
    ), held AS (
        -- Ascending user order: two allocations for the same pair cannot deadlock.
        INSERT INTO proxy_holds (session_id, user_id, proxy_number_id, active)
        SELECT opened.id, u.user_id, opened.proxy_number_id, true
        FROM opened, unnest(CAST(:users AS bigint[])) AS u(user_id)
        ORDER BY u.user_id
        ON CONFLICT (proxy_number_id, user_id) WHERE active DO NOTHING
        RETURNING user_id
    )
    SELECT (SELECT id FROM opened),
           (SELECT count(*) FROM held),
           (SELECT count(*) FROM proxy_numbers WHERE community_id = :community_id AND active)
    """
)
_UNOPEN = text("DELETE FROM proxy_sessions WHERE id = :id")  # its holds go with it (cascade)
_CLOSE_ENDED = """
    WITH ended AS (
        UPDATE proxy_sessions SET closed_at = :now
        WHERE {scope} AND ends_at <= :now AND closed_at IS NULL
        RETURNING id
    )
    UPDATE proxy_holds SET active = false
    WHERE session_id IN (SELECT id FROM ended) AND active
"""
_CLOSE_USERS = text(
    _CLOSE_ENDED.format(scope="(resident_id = ANY(:users) OR worker_id = ANY(:users))")
)
_CLOSE_JOB = text(_CLOSE_ENDED.format(scope="job_id = :job_id"))


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
        params = {
            "job_id": job.id,
            "community_id": job.community_id,
            "resident_id": job.resident_id,
            "worker_id": worker_id,
            "version": job.assignment_version,
            "now": now,
            "users": participants,
        }
        closed = False
        for _ in range(CANDIDATES):
            opened, held, pool = (await session.execute(_ALLOCATE, params)).one()
            if opened is not None and held == len(participants):
                return
            if opened is not None:
                # A concurrent allocation gave this number to one of us first (the insert of
                # our hold waited for it at the unique index): undo and pick again.
                await session.execute(_UNOPEN, {"id": opened})
                continue
            if not pool:
                return  # masked numbers are not set up here: the app's messages are the channel
            if closed:
                break
            # Numbers may still be held by our ended sessions: release them, then try again.
            await self._close_ended(session, participants, now)
            closed = True
        log.warning("proxy_pool_exhausted", job_id=job.id, community_id=job.community_id)
        await raise_alert(
            session,
            community_id=job.community_id,
            kind="proxy_pool_exhausted",
            job_id=job.id,
            worker_id=worker_id,
            detail={
                "message": "no free masked number for this job; the resident and the "
                "worker can still message each other in the app"
            },
            now=now,
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
            await session.execute(_CLOSE_JOB, {"job_id": job.id, "now": now})

    # --- allocation ------------------------------------------------------------------------------

    @staticmethod
    async def _close_ended(session: AsyncSession, users: list[int], now: datetime) -> None:
        """Close the users' sessions whose end has come, freeing their holds (their numbers may
        then be given to the same people again)."""
        await session.execute(_CLOSE_USERS, {"users": users, "now": now})

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
