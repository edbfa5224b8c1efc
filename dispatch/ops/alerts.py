"""The one writer of operator alerts: every part of the service that needs a person's attention
(an unfilled job, a worker handing a job back, no masked number left, a message that could not be
delivered, the SMS budget) raises it here, in the caller's transaction."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dispatch.communities.service import CommunityService
from dispatch.identity.principal import Principal
from dispatch.models import Alert, Community, Job
from dispatch.models.base import get_row
from dispatch.models.dispatching import REPEATABLE_ALERTS, REPEATABLE_SQL
from dispatch.ops import events


async def raise_alert(
    session: AsyncSession,
    *,
    community_id: int,
    kind: str,
    detail: dict[str, Any] | None = None,
    job_id: int | None = None,
    worker_id: int | None = None,
    now: datetime | None = None,
    severity: str = "warning",
) -> int | None:
    """Raise an alert for the community's operators. An alert of a kind about a job is raised
    once (a replayed timer or a retried request raises nothing new): its id, or None when it was
    already raised. SOS presses and missed check-ins are each their own alert."""
    now = now or datetime.now(UTC)
    stmt = insert(Alert).values(
        community_id=community_id,
        kind=kind,
        job_id=job_id,
        worker_id=worker_id,
        detail=detail or {},
        severity=severity,
        created_at=now,
    )
    if job_id is not None and kind not in REPEATABLE_ALERTS:
        stmt = stmt.on_conflict_do_nothing(
            index_elements=[Alert.job_id, Alert.kind],
            index_where=text(f"job_id IS NOT NULL AND kind NOT IN {REPEATABLE_SQL}"),
        )
    alert_id = await session.scalar(stmt.returning(Alert.id))
    if alert_id is not None:
        events.emit(
            session, community_id, "alert",
            {"id": alert_id, "kind": kind, "severity": severity, "job_id": job_id,
             "worker_id": worker_id, "detail": detail or {}, "created_at": now},
        )  # fmt: skip
    return alert_id


async def alert_communities(session: AsyncSession, job_id: int | None) -> Iterable[int]:
    """Whose operators hear of a matter: the job's community, or every community when the
    matter is service-wide (the SMS budget, a message that names no job)."""
    if job_id is not None:
        community_id = await session.scalar(select(Job.community_id).where(Job.id == job_id))
        return [community_id] if community_id is not None else []
    return list(await session.scalars(select(Community.id)))


class AlertService:
    """The operators' alert queue: reading it and acknowledging (each call one transaction)."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], communities: CommunityService
    ) -> None:
        self.sessions = sessions
        self.communities = communities

    async def queue(
        self, who: Principal, community_id: int, *, include_acked: bool, limit: int
    ) -> list[Alert]:
        """The community's alerts, newest first; unacknowledged only unless asked."""
        who.require_operator_of(community_id)
        stmt = (
            select(Alert)
            .where(Alert.community_id == community_id)
            .order_by(Alert.created_at.desc(), Alert.id.desc())
            .limit(limit)
        )
        if not include_acked:
            stmt = stmt.where(Alert.acked_at.is_(None))
        async with self.sessions() as session:
            await self.communities.get(session, community_id)  # 404 for one that is not
            return list((await session.scalars(stmt)).all())

    async def ack(self, who: Principal, alert_id: int) -> Alert:
        """Acknowledge an alert (once: a second ack keeps the first's time and operator)."""
        async with self.sessions.begin() as session:
            alert = await get_row(session, Alert, alert_id, lock=True)
            who.require_operator_of(alert.community_id)
            if alert.acked_at is None:
                alert.acked_at, alert.acked_by = datetime.now(UTC), who.user_id
            return alert
