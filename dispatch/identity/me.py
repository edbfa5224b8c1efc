"""The caller's own account settings: the language texts, pushes and calls to them are in."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dispatch.core.errors import Unauthorized
from dispatch.identity.locale import check_locale
from dispatch.identity.principal import Principal
from dispatch.models import SPOKEN_LOCALE, User


@dataclass(frozen=True, slots=True)
class Me:
    user_id: int
    role: str
    locale: str
    """The language they are written to in: theirs if they chose, else their account's."""


class Profiles:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    async def me(self, who: Principal) -> Me:
        async with self.sessions() as session:
            locale = await session.scalar(select(SPOKEN_LOCALE).where(User.id == who.user_id))
        return _me(who, locale)

    async def choose_locale(self, who: Principal, locale: str) -> Me:
        """Every text, push and call to them from now on is in `locale` (422 `unknown_locale`
        unless the service speaks it)."""
        check_locale(locale)
        async with self.sessions.begin() as session:
            spoken = await session.scalar(
                update(User)
                .where(User.id == who.user_id)
                .values(locale=locale)
                .returning(SPOKEN_LOCALE)
            )
        return _me(who, spoken)


def _me(who: Principal, locale: str | None) -> Me:
    if locale is None:  # a valid token for an account that is gone
        raise Unauthorized("this account no longer exists")
    return Me(who.user_id, who.role, locale)
