"""Reading masked-number sessions from dispatch, by their tables' names (the tables and their
lifecycle are `notifications`'; dispatch imports nothing of it)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.models import Job


async def proxy_number_for(session: AsyncSession, job: Job, user_id: int) -> str | None:
    """The proxy number `user_id` reaches the job's other participant on, while the session
    lasts; None for anyone else (operators included) and when no number could be allocated."""
    if user_id not in (job.resident_id, job.worker_id):
        return None
    return await session.scalar(
        _PROXY_NUMBER, {"job_id": job.id, "user_id": user_id, "now": datetime.now(UTC)}
    )


_PROXY_NUMBER = text("""
SELECT n.number FROM proxy_sessions s JOIN proxy_numbers n ON n.id = s.proxy_number_id
WHERE s.job_id = :job_id AND (s.resident_id = :user_id OR s.worker_id = :user_id)
  AND (s.ends_at IS NULL OR s.ends_at > :now)
ORDER BY s.id DESC LIMIT 1
""")
