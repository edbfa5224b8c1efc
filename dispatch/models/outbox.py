"""The outbox: every message the service means to send, written in the same transaction as the
state change that caused it. Channels deliver from here; without a provider a message is `held`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from dispatch.models.base import Base, IdMixin, TimestampMixin


class OutboxMessage(IdMixin, TimestampMixin, Base):
    __tablename__ = "outbox"
    __table_args__ = (
        Index(None, "status", "next_attempt_at"),
        Index(None, "to_hash", "created_at"),
        Index(None, "to_user_id", "created_at"),
    )

    channel: Mapped[str] = mapped_column(String(16))
    """How the writer addressed it: `sms` (to a phone), `app` (to a user, by their channels in
    order of preference) or `ws` (like `app`, but the writer already published the live event
    after commit, so the relay only falls back to push or SMS when nobody was listening)."""
    via: Mapped[str | None] = mapped_column(String(16))
    """The channel that carried it: ws, push, sms, or held (no provider configured)."""
    kind: Mapped[str] = mapped_column(String(32))
    """otp, offer, offer_taken, reminder, checkin, alert, relay…"""
    to_user_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("users.id", ondelete="SET NULL")
    )
    to_hash: Mapped[bytes | None] = mapped_column(LargeBinary(32))
    to_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    to_hint: Mapped[str | None] = mapped_column(String(8))
    body: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    status: Mapped[str] = mapped_column(String(16))
    """pending (waiting for the relay, or for a retry at `next_attempt_at`), sending (leased by a
    relay until `next_attempt_at`), held (no provider: stays here, shown to admins), sent,
    delivered, undelivered, skipped (no channel would carry it), dead (retries exhausted)."""
    provider: Mapped[str | None] = mapped_column(String(32))
    provider_ref: Mapped[str | None] = mapped_column(String(64), unique=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    priority: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """Higher first: an SOS is relayed before any backlog of offers."""
    next_attempt_at: Mapped[datetime | None]
    dedupe_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    from_number: Mapped[str | None] = mapped_column(String(16))
    """For relayed texts: the proxy number the message must come from."""
    provider_status: Mapped[str | None] = mapped_column(String(20))
    """The provider's latest receipt (queued, sent, delivered, undelivered, failed, read)."""
    provider_rank: Mapped[int] = mapped_column(SmallInteger, default=0, server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime | None]
