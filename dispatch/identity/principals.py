"""Creating principals outside the OTP flow: the CLI's admins, operators and seeded users."""

from __future__ import annotations

from sqlalchemy import any_, case, func, literal, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.core.errors import Conflict, NotFound
from dispatch.identity.locale import FALLBACK
from dispatch.identity.phones import PhoneVault, phone_hint
from dispatch.models import Community, User


async def check_communities(session: AsyncSession, communities: list[int]) -> None:
    """404 `community_not_found` unless every one exists."""
    if communities:
        found = set(
            (await session.scalars(select(Community.id).where(Community.id.in_(communities)))).all()
        )
        missing = sorted(set(communities) - found)
        if missing:
            raise NotFound(f"no community {missing}", code="community_not_found")


async def grant_operator(
    session: AsyncSession,
    vault: PhoneVault,
    phone: str,
    communities: list[int],
    default_locale: str = FALLBACK,
) -> int:
    """Make the person with this phone (created if new) an operator of exactly `communities`;
    they sign in by code with `role: operator`. `phone` is canonical E.164."""
    await check_communities(session, communities)
    user_id = await upsert_phone_user(
        session, vault, phone, vault.hash(phone), "operator", default_locale=default_locale
    )
    await session.execute(
        update(User)
        .where(User.id == user_id)
        .values(operator_community_ids=sorted(set(communities)))
    )
    return user_id


async def handle_user(session: AsyncSession, handle: str, role: str, communities: list[int]) -> int:
    """The user named `handle` (created if missing) holding `role` over `communities`."""
    await check_communities(session, communities)
    stmt = insert(User).values(
        handle=handle, roles=[role], operator_community_ids=sorted(communities), name=handle
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=[User.handle],
        set_={
            "roles": stmt.excluded.roles,
            "operator_community_ids": stmt.excluded.operator_community_ids,
        },
    ).returning(User.id)
    return int(await session.scalar(stmt))  # type: ignore[arg-type]


# Notifications own the masked-number pool (notifications/models.py); sign-in only asks whether a
# number is in it, by the table's name, so identity needs nothing of notifications' code.
_IS_POOL_NUMBER = text("SELECT 1 FROM proxy_numbers WHERE number = :phone LIMIT 1")


async def refuse_pool_number(session: AsyncSession, phone: str) -> None:
    """A masked-number pool's number is the platform's, never a person's: 409."""
    if await session.scalar(_IS_POOL_NUMBER, {"phone": phone}):
        raise Conflict(
            "this number is one of the service's masked numbers and cannot be an account",
            code="phone_is_a_proxy_number",
        )


async def upsert_phone_user(
    session: AsyncSession,
    vault: PhoneVault,
    phone: str,
    phone_hash: bytes,
    role: str,
    *,
    default_locale: str = FALLBACK,
) -> int:
    """The user with this phone (created if new), with `role` added to their roles. `phone` is
    canonical E.164 (`phones.normalize_phone`); a masked-number pool's number is refused. A new
    user speaks `default_locale` until they choose (`locale.locale_for_phone` gives the
    service's choice); an existing one keeps theirs."""
    await refuse_pool_number(session, phone)
    user_id = await session.scalar(
        insert(User)
        .values(
            phone_hash=phone_hash,
            phone_enc=vault.encrypt(phone),
            phone_hint=phone_hint(phone),
            roles=[role],
            operator_community_ids=[],
            default_locale=default_locale,
        )
        .on_conflict_do_nothing(index_elements=[User.phone_hash])
        .returning(User.id)
    )
    if user_id is None:
        user_id = await session.scalar(
            update(User)
            .where(User.phone_hash == phone_hash)
            .values(
                roles=case(
                    (literal(role) == any_(User.roles), User.roles),
                    else_=func.array_append(User.roles, role),
                )
            )
            .returning(User.id)
        )
    return int(user_id)
