"""The one writer of operator alerts: every part of the service that needs a person's attention
(an unfilled job, a worker handing a job back, no masked number left, a message that could not be
delivered, the SMS budget) raises it here, in the caller's transaction."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.models import Alert, Community, Job


async def raise_alert(
    session: AsyncSession,
    *,
    community_id: int,
    kind: str,
    detail: dict[str, Any] | None = None,
    job_id: int | None = None,
    worker_id: int | None = None,
    now: datetime | None = None,
) -> int | None:
    """Raise an alert for the community's operators. An alert of a kind about a job is raised
    once (a replayed timer or a retried request raises nothing new): its id, or None when it was
    already raised."""
    stmt = insert(Alert).values(
        community_id=community_id,
        kind=kind,
        job_id=job_id,
        worker_id=worker_id,
        detail=detail or {},
        created_at=now or datetime.now(UTC),
    )
    if job_id is not None:
        stmt = stmt.on_conflict_do_nothing(
            index_elements=[Alert.job_id, Alert.kind], index_where=Alert.job_id.is_not(None)
        )
    return await session.scalar(stmt.returning(Alert.id))


async def alert_communities(session: AsyncSession, job_id: int | None) -> Iterable[int]:
    """Whose operators hear of a matter: the job's community, or every community when the
    matter is service-wide (the SMS budget, a message that names no job)."""
    if job_id is not None:
        community_id = await session.scalar(select(Job.community_id).where(Job.id == job_id))
        return [community_id] if community_id is not None else []
    return list(await session.scalars(select(Community.id)))
