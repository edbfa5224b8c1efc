"""Admin: the outbox, and who operates which communities."""

from __future__ import annotations

from typing import Annotated, Literal

from litestar import get, post
from litestar.di import NamedDependency
from litestar.params import FromQuery, JSONBody, QueryParameter
from msgspec import Meta, Struct

from dispatch.identity.auth import admin_only
from dispatch.identity.locale import locale_for_phone
from dispatch.identity.phones import hide_phones, normalize_phone, phone_hint
from dispatch.identity.principals import grant_operator
from dispatch.infra import outbox
from dispatch.infra.runtime import Runtime
from dispatch.web.schemas import Id, OutboxOut, Phone

# A body is shown only where no provider carried the message and none will: then it never left
# us and the admin reading it here is how the local default delivers (say, a sign-in code to a
# tester). A message still pending or being sent may yet go out through a provider: hidden.
_BODY_VISIBLE = frozenset({"held", "skipped", "dead"})
STATUSES = Literal[
    "pending", "sending", "held", "sent", "delivered", "undelivered", "skipped", "dead"
]


@get("/v1/admin/outbox", guards=[admin_only], tags=["admin"])
async def list_outbox(
    rt: NamedDependency[Runtime],
    to: Annotated[str | None, QueryParameter(max_length=40)] = None,
    channel: FromQuery[Literal["sms", "push", "ws", "app", "held"] | None] = None,
    status: FromQuery[STATUSES | None] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=500)] = 100,
) -> list[OutboxOut]:
    """Messages in the outbox, newest first, filtered by recipient phone, channel (as addressed
    or as carried) and status (`dead` is the dead-letter queue)."""
    to_hash = rt.vault.hash(normalize_phone(to, rt.settings.phone_region)) if to else None
    rows = await outbox.recent(
        rt.sessions, to_hash=to_hash, channel=channel, status=status, limit=limit
    )
    return [
        OutboxOut(
            id=m.id,
            channel=m.channel,
            kind=m.kind,
            to_user_id=m.to_user_id,
            to_hint=m.to_hint,
            status=m.status,
            body=hide_phones(m.body, rt.settings.phone_region)
            if m.provider is None and m.status in _BODY_VISIBLE
            else None,
            created_at=m.created_at,
            attempts=m.attempts,
            provider=m.provider,
            via=m.via,
            provider_status=m.provider_status,
            last_error=m.last_error,
        )
        for m in rows
    ]


class OperatorIn(Struct, forbid_unknown_fields=True):
    phone: Phone
    community_ids: Annotated[list[Id], Meta(min_length=1, max_length=100)]


class OperatorOut(Struct):
    user_id: int
    phone_hint: str
    community_ids: list[int]


@post("/v1/admin/operators", guards=[admin_only], status_code=200, tags=["admin"])
async def grant_operators(rt: NamedDependency[Runtime], data: JSONBody[OperatorIn]) -> OperatorOut:
    """Make the person with this phone an operator of exactly these communities (created if
    new; granting again replaces the list). They sign in at `/ops/` by code, `role: operator`;
    a token names the communities it was issued for."""
    phone = normalize_phone(data.phone, rt.settings.phone_region)
    async with rt.sessions.begin() as session:
        user_id = await grant_operator(
            session, rt.vault, phone, list(data.community_ids),
            locale_for_phone(phone, rt.settings.default_locale),
        )  # fmt: skip
    return OperatorOut(user_id, phone_hint(phone), sorted(set(data.community_ids)))
