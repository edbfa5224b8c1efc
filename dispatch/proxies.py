"""Reading masked-number sessions from dispatch (their lifecycle lives in `notifications`)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.models import Job, ProxyNumber, ProxySession


async def proxy_number_for(session: AsyncSession, job: Job, user_id: int) -> str | None:
    """The proxy number `user_id` reaches the job's other participant on, while the session
    lasts; None for anyone else (operators included) and when no number could be allocated."""
    if user_id not in (job.resident_id, job.worker_id):
        return None
    now = datetime.now(UTC)
    return await session.scalar(
        select(ProxyNumber.number)
        .join(ProxySession, ProxySession.proxy_number_id == ProxyNumber.id)
        .where(
            ProxySession.job_id == job.id,
            or_(ProxySession.resident_id == user_id, ProxySession.worker_id == user_id),
            or_(ProxySession.ends_at.is_(None), ProxySession.ends_at > now),
        )
        .order_by(ProxySession.id.desc())
        .limit(1)
    )
