"""Web Push subscriptions: a worker's devices, registered, listed and forgotten."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dispatch.core.errors import NotFound
from dispatch.infra.settings import Settings
from notifications.models import PushSubscription
from notifications.push import check_subscription


class Subscriptions:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], settings: Settings) -> None:
        self.sessions = sessions
        self.settings = settings

    async def register(
        self, user_id: int, endpoint: str, p256dh: str, auth: str
    ) -> PushSubscription:
        """Register a device (422 `invalid_subscription` for one that cannot be real or points
        where we must not post). Registering an endpoint again refreshes its keys; an endpoint
        moves to whoever registers it."""
        check_subscription(
            endpoint,
            p256dh,
            auth,
            allow_http=self.settings.push_allow_http,
            allowed_hosts=self.settings.egress_allowed_hosts,
        )
        stmt = insert(PushSubscription).values(
            user_id=user_id,
            endpoint=endpoint,
            p256dh=p256dh.rstrip("="),
            auth=auth.rstrip("="),
            created_at=datetime.now(UTC),
            failures=0,
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=[PushSubscription.endpoint],
            set_={
                "user_id": stmt.excluded.user_id,
                "p256dh": stmt.excluded.p256dh,
                "auth": stmt.excluded.auth,
                "failures": 0,
            },
        ).returning(PushSubscription)
        async with self.sessions.begin() as session:
            return (await session.execute(stmt)).scalar_one()

    async def of(self, user_id: int) -> list[PushSubscription]:
        async with self.sessions() as session:
            rows = await session.scalars(
                select(PushSubscription)
                .where(PushSubscription.user_id == user_id)
                .order_by(PushSubscription.id)
            )
            return list(rows.all())

    async def forget(self, user_id: int, endpoint: str) -> None:
        """Forget one of the user's subscriptions (say, on sign-out); 404 if it is not theirs."""
        async with self.sessions.begin() as session:
            gone = await session.execute(
                delete(PushSubscription).where(
                    PushSubscription.user_id == user_id, PushSubscription.endpoint == endpoint
                )
            )
        if not gone.rowcount:  # type: ignore[attr-defined]
            raise NotFound("no such subscription of yours", code="subscription_not_found")
