"""The one writer of the outbox: every message the service means to send is enqueued here, in the
transaction of the state change that caused it; the relay (`notifications.relay`) delivers it
after commit. A message with a `dedupe_key` is enqueued once, however often its cause repeats
(a replayed webhook, a retried request).

The grab dispatcher writes its offers and notices set-based, inside the one statement that
creates or retires the offers (that statement is the loser-latency and first-offer budget):
it takes the column list from `ROWS_INSERT` so the outbox's shape is still written down once.

A message is written in its recipient's language. A writer that knows it renders one (`body` a
`str`); one that does not gives every language (a `dispatch.core.texts.Text`) and the row's
INSERT picks the recipient's: the user's (`to_user_id`, else the account holding the phone),
else `locale` (a phone without an account). Set-based writers do the same with
`recipient_text_sql`. Either way, no statement is added to look the language up.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import String, func, literal, or_, select, type_coerce
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dispatch.core.texts import Text
from dispatch.identity.locale import FALLBACK
from dispatch.identity.phones import PhoneVault, phone_hint
from dispatch.models import SPOKEN_LOCALE, OutboxMessage, User

SOS_PRIORITY = 100
SAFETY_PRIORITY = 50
"""A missed check-in's texts and calls: after an SOS, before any backlog of offers."""
ROWS_INSERT = (
    "INSERT INTO outbox (channel, kind, to_user_id, body, payload, status, dedupe_key, attempts)"
)
"""For set-based writers: follow it with a SELECT of these columns, in this order."""
USER_LOCALE = "COALESCE(u.locale, u.default_locale)"
"""A user's language, in SQL, from `users u`."""


def recipient_text_sql(texts: str, user_id: str) -> str:
    """SQL for the body of a row to user `user_id` (a SQL expression) from `texts` (a jsonb
    expression: a `Text`'s `as_json()`), in that user's language: for set-based writers."""
    chosen = f"(SELECT {USER_LOCALE} FROM users u WHERE u.id = {user_id})"  # noqa: S608 (our SQL)
    return f"COALESCE({texts} ->> {chosen}, {texts} ->> '{FALLBACK}')"


@dataclass(frozen=True)
class Recipient:
    """A phone the message goes to (stored as hash, ciphertext and hint, never in plain)."""

    hash: bytes
    enc: bytes
    hint: str

    @classmethod
    def of(cls, vault: PhoneVault, phone: str, phone_hash: bytes | None = None) -> Recipient:
        return cls(phone_hash or vault.hash(phone), vault.encrypt(phone), phone_hint(phone))


@dataclass(frozen=True)
class Outgoing:
    channel: str
    """`sms` (to a phone), `call` (an automated voice call to a phone: `body` is spoken,
    `payload["gather_url"]` takes the key pressed), `app` (to a user, by their channels in
    order) or `ws`."""
    kind: str
    body: str | Text
    """The text, in the recipient's language; or every language (a `Text`) for the INSERT to
    pick the recipient's."""
    to_user_id: int | None = None
    phone: Recipient | None = None
    payload: dict[str, Any] = field(default_factory=dict)
    status: str = "pending"
    """`pending` for the relay; `held` where no provider will carry it (the local default)."""
    dedupe_key: str | None = None
    from_number: str | None = None
    """A relayed text's proxy number, which it must come from."""
    priority: int = 0
    """Relayed before lower priorities (SOS: `SOS_PRIORITY`)."""
    locale: str = FALLBACK
    """The language of a `Text` body when the recipient has no account to say theirs."""


def _body(message: Outgoing) -> Any:
    """The row's body: as given, or the recipient's language picked from every language."""
    body = message.body
    if isinstance(body, str):
        return body
    if message.to_user_id is not None:
        holder = User.id == message.to_user_id
    elif message.phone is not None:
        holder = User.phone_hash == message.phone.hash
    else:
        return body[message.locale]
    chosen = select(SPOKEN_LOCALE).where(holder).scalar_subquery()
    texts = literal(body.as_json(), String).cast(JSONB)
    return func.coalesce(type_coerce(texts.op("->>")(chosen), String), body[message.locale])


def _row(message: Outgoing, now: datetime) -> dict[str, Any]:
    phone = message.phone
    return {
        "channel": message.channel,
        "kind": message.kind,
        "to_user_id": message.to_user_id,
        "to_hash": phone.hash if phone else None,
        "to_enc": phone.enc if phone else None,
        "to_hint": phone.hint if phone else None,
        "from_number": message.from_number,
        "body": _body(message),
        "payload": message.payload,
        "status": message.status,
        "dedupe_key": message.dedupe_key,
        "attempts": 0,
        "priority": message.priority,
        "created_at": now,
        "updated_at": now,
    }


async def enqueue(session: AsyncSession, message: Outgoing, now: datetime | None = None) -> bool:
    """Add the message to the outbox in the caller's transaction; False when a message with its
    dedupe key is there already."""
    return await enqueue_many(session, [message], now) == 1


async def enqueue_many(
    session: AsyncSession, messages: Sequence[Outgoing], now: datetime | None = None
) -> int:
    """Add messages in one statement (a timer batch's); those whose dedupe key is there already
    are skipped. How many were added."""
    if not messages:
        return 0
    now = now or datetime.now(UTC)
    stmt = insert(OutboxMessage).values([_row(m, now) for m in messages])
    if any(m.dedupe_key is not None for m in messages):
        stmt = stmt.on_conflict_do_nothing(index_elements=[OutboxMessage.dedupe_key])
    result = await session.execute(stmt.returning(OutboxMessage.id))
    return len(result.scalars().all())


async def recent(
    sessions: async_sessionmaker[AsyncSession],
    *,
    to_hash: bytes | None = None,
    channel: str | None = None,
    status: str | None = None,
    limit: int = 100,
) -> list[OutboxMessage]:
    """Messages newest first, by recipient, channel (as addressed or as carried) and status."""
    stmt = select(OutboxMessage).order_by(OutboxMessage.id.desc()).limit(limit)
    if to_hash is not None:
        stmt = stmt.where(OutboxMessage.to_hash == to_hash)
    if channel is not None:
        stmt = stmt.where(or_(OutboxMessage.channel == channel, OutboxMessage.via == channel))
    if status is not None:
        stmt = stmt.where(OutboxMessage.status == status)
    async with sessions() as session:
        return list((await session.scalars(stmt)).all())


async def tell(
    session: AsyncSession,
    *,
    to_user_id: int,
    kind: str,
    body: str | Text,
    payload: dict[str, Any],
    dedupe_key: str,
    now: datetime | None = None,
) -> bool:
    """Tell one user in the app (their stream, else push, else SMS for urgent kinds), once per
    `dedupe_key`, in their language (`body`: every language): the common case of `enqueue`."""
    message = Outgoing(
        channel="app", kind=kind, body=body, to_user_id=to_user_id, payload=payload,
        dedupe_key=dedupe_key,
    )  # fmt: skip
    return await enqueue(session, message, now)
