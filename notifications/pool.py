"""The masked-number pool of each community: adding numbers and reading who holds them."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dispatch.communities.service import CommunityService
from dispatch.core.errors import Conflict
from dispatch.identity.phones import PhoneVault, normalize_phone
from dispatch.models import User
from notifications.models import ProxyHold, ProxyNumber


class Pool:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        communities: CommunityService,
        vault: PhoneVault,
    ) -> None:
        self.sessions = sessions
        self.communities = communities
        self.vault = vault

    async def add(self, community_id: int, typed: list[str]) -> tuple[int, int]:
        """Add numbers (idempotent per number; national ones read in the community's country);
        (added, total). A number of another community's pool → 409 `proxy_number_taken`; a
        registered user's own number → 409 `proxy_number_is_a_user`."""
        now = datetime.now(UTC)
        async with self.sessions.begin() as session:
            view = await self.communities.get(session, community_id)
            numbers = sorted({normalize_phone(x, view.phone_region) for x in typed})
            people = await session.scalar(
                select(func.count())
                .select_from(User)
                .where(User.phone_hash.in_([self.vault.hash(x) for x in numbers]))
            )
            if people:
                raise Conflict(
                    f"{people} of these numbers belong to registered users; a masked number "
                    "must be the service's own",
                    code="proxy_number_is_a_user",
                )
            elsewhere = (
                await session.scalars(
                    select(ProxyNumber.number).where(
                        ProxyNumber.number.in_(numbers), ProxyNumber.community_id != community_id
                    )
                )
            ).all()
            if elsewhere:
                raise Conflict(
                    f"{len(elsewhere)} of these numbers serve another community",
                    code="proxy_number_taken",
                )
            added = await session.execute(
                insert(ProxyNumber)
                .values(
                    [
                        {
                            "community_id": community_id,
                            "number": x,
                            "active": True,
                            "created_at": now,
                        }
                        for x in numbers
                    ]
                )
                .on_conflict_do_nothing(index_elements=[ProxyNumber.number])
                .returning(ProxyNumber.id)
            )
            count = len(added.all())
            total = await session.scalar(
                select(func.count()).where(ProxyNumber.community_id == community_id)
            )
        return count, int(total or 0)

    async def numbers(self, community_id: int) -> list[tuple[str, bool, int]]:
        """(number, active, participants holding it now) for each number of the pool."""
        holders = (
            select(func.count())
            .where(ProxyHold.proxy_number_id == ProxyNumber.id, ProxyHold.active.is_(True))
            .scalar_subquery()
        )
        async with self.sessions() as session:
            await self.communities.get(session, community_id)  # 404 for one that is not
            rows = await session.execute(
                select(ProxyNumber.number, ProxyNumber.active, holders)
                .where(ProxyNumber.community_id == community_id)
                .order_by(ProxyNumber.number)
            )
            return [(a, b, int(c)) for a, b, c in rows]
