"""In-app messages between a job's resident and its worker, with or without a masked number."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy import select

from dispatch.core import texts
from dispatch.core.errors import Conflict, Forbidden
from dispatch.identity.principal import Principal
from dispatch.infra import outbox, ratelimit
from dispatch.trust.screening import screen
from notifications.models import JobMessage

if TYPE_CHECKING:
    from notifications.service import Notifications

MESSAGE_LIMIT = ratelimit.Limit("job-message", 60, 600)
"""Messages one user may write per ten minutes."""


class Messages:
    def __init__(self, notifications: Notifications) -> None:
        self.n = notifications

    async def write(self, who: Principal, job_id: int, text: str) -> JobMessage:
        """Write to the other participant (told through the outbox). Off-platform contacts in
        the text (phones, WeChat ids, "pay me directly") are hidden: contact and money go
        through the platform (`dispatch.trust.screening`)."""
        rt = self.n.rt
        await ratelimit.hit(rt.redis, MESSAGE_LIMIT, str(who.user_id))
        now = datetime.now(UTC)
        async with rt.sessions.begin() as session:
            job = await rt.jobs.get_visible(session, who, job_id)
            if who.user_id == job.resident_id:
                recipient = job.worker_id
            elif who.user_id == job.worker_id:
                recipient = job.resident_id
            else:
                raise Forbidden("only the job's resident and worker write here", code="not_yours")
            if recipient is None:
                raise Conflict("nobody has taken this job yet", code="no_counterpart")
            region = (await rt.communities.get(session, job.community_id)).phone_region
            hidden = screen(text.strip(), region).text
            message = JobMessage(
                job_id=job.id,
                sender_id=who.user_id,
                recipient_id=recipient,
                text=hidden,
                created_at=now,
            )
            session.add(message)
            await session.flush()
            await outbox.enqueue(
                session,
                outbox.Outgoing(
                    channel="app",
                    kind="message",
                    to_user_id=recipient,
                    body=texts.every("message.new", title=job.title, text=hidden).cut(1500),
                    payload={
                        "type": "job_message",
                        "job_id": job.id,
                        "message_id": message.id,
                        "sender_id": who.user_id,
                        "text": hidden,
                    },
                    dedupe_key=f"message:{message.id}",
                ),
                now,
            )
        self.n.relay.poke()
        return message

    async def conversation(
        self, who: Principal, job_id: int, after_id: int, limit: int
    ) -> list[JobMessage]:
        """The job's messages, oldest first (participants and the community's operators)."""
        rt = self.n.rt
        async with rt.sessions() as session:
            job = await rt.jobs.get_visible(session, who, job_id)
            rows = await session.scalars(
                select(JobMessage)
                .where(JobMessage.job_id == job.id, JobMessage.id > after_id)
                .order_by(JobMessage.id)
                .limit(limit)
            )
            return list(rows.all())
