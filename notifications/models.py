"""Masked numbers and the other delivery state notifications keep: proxy-number pools, call
sessions between a job's resident and worker, call records, Web Push subscriptions and in-app
job messages.

A proxy number belongs to the platform, not to a person, so it is stored plainly. A participant
may hold a number in at most one active session (`uq_proxy_holds_active`): then a call from them to
that number names exactly one session, and nobody ever meets one number twice at once.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, SmallInteger, String, Text
from sqlalchemy import text as sql_text
from sqlalchemy.orm import Mapped, mapped_column

from dispatch.models.base import Base, IdMixin


class ProxyNumber(IdMixin, Base):
    __tablename__ = "proxy_numbers"

    community_id: Mapped[int] = mapped_column(
        ForeignKey("communities.id", ondelete="CASCADE"), index=True
    )
    number: Mapped[str] = mapped_column(String(16), unique=True)
    """E.164, one of the platform's numbers at the phone provider."""
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime]


class ProxySession(IdMixin, Base):
    __tablename__ = "proxy_sessions"
    __table_args__ = (Index(None, "job_id", "ends_at"),)

    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    community_id: Mapped[int] = mapped_column(ForeignKey("communities.id", ondelete="CASCADE"))
    proxy_number_id: Mapped[int] = mapped_column(ForeignKey("proxy_numbers.id"))
    resident_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id"))
    worker_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id"))
    assignment_version: Mapped[int] = mapped_column(Integer)
    opened_at: Mapped[datetime]
    ends_at: Mapped[datetime | None]
    """None while the assignment lasts; then its end plus the community's grace."""
    closed_at: Mapped[datetime | None]
    """Set once `ends_at` has passed and the holds are released (the number may be reused)."""


class ProxyHold(Base):
    """One participant's hold on a proxy number for one session."""

    __tablename__ = "proxy_holds"
    __table_args__ = (
        Index(
            "uq_proxy_holds_active",
            "proxy_number_id",
            "user_id",
            unique=True,
            postgresql_where=sql_text("active"),
        ),
    )

    session_id: Mapped[int] = mapped_column(
        ForeignKey("proxy_sessions.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id"), primary_key=True)
    proxy_number_id: Mapped[int] = mapped_column(ForeignKey("proxy_numbers.id"))
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class CallRecord(Base):
    """A relayed call, keyed by the provider's call id; its status only moves forward."""

    __tablename__ = "call_records"

    call_sid: Mapped[str] = mapped_column(String(64), primary_key=True)
    session_id: Mapped[int | None] = mapped_column(
        ForeignKey("proxy_sessions.id", ondelete="SET NULL")
    )
    caller_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("users.id"))
    outcome: Mapped[str] = mapped_column(String(16))
    """dialed (relayed to the other participant) or refused."""
    status: Mapped[str] = mapped_column(String(20))
    status_rank: Mapped[int] = mapped_column(SmallInteger)
    duration_s: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class PushSubscription(IdMixin, Base):
    __tablename__ = "push_subscriptions"

    user_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    endpoint: Mapped[str] = mapped_column(Text, unique=True)
    p256dh: Mapped[str] = mapped_column(String(100))
    auth: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime]
    last_ok_at: Mapped[datetime | None]
    failures: Mapped[int] = mapped_column(Integer, default=0)


class JobMessage(IdMixin, Base):
    """In-app messaging between a job's participants: always there, numbers or not."""

    __tablename__ = "job_messages"
    __table_args__ = (Index(None, "job_id", "id"),)

    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    sender_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id"))
    recipient_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id"))
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]
