"""Workers: profile, skills, communities served, verification and rating."""

from __future__ import annotations

from datetime import datetime

from geoalchemy2 import Geography, WKBElement
from sqlalchemy import (
    ARRAY,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column

from dispatch.models.base import Base, TimestampMixin


class Worker(TimestampMixin, Base):
    __tablename__ = "workers"
    __table_args__ = (Index("ix_workers_location", "location", postgresql_using="gist"),)

    user_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(120))
    bio: Mapped[str | None] = mapped_column(String(2000))
    skills: Mapped[list[str]] = mapped_column(ARRAY(Text), default=list)
    hourly_rate_cents: Mapped[int | None] = mapped_column(Integer)
    verification: Mapped[str] = mapped_column(String(16), default="unverified")
    """unverified → pending (documents submitted) → verified, or rejected."""
    legal_name_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    id_number_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    rating_sum: Mapped[int] = mapped_column(Integer, default=0)
    rating_count: Mapped[int] = mapped_column(Integer, default=0)
    no_shows: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    jobs_done: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """Completed jobs, any mode (ranking's reliability reads failures against it)."""
    late_cancels: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    fast_accepts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """Accepts refused for arriving faster than `min_accept_ms` (anti-bot, for operators)."""
    open_refusals: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """Accepts refused for holding `max_open_assignments` already."""
    version: Mapped[int] = mapped_column(Integer, default=1)
    online: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    presence_at: Mapped[datetime | None]
    location: Mapped[WKBElement | None] = mapped_column(
        Geography("POINT", srid=4326, spatial_index=False)
    )
    """Last accepted position, written behind the live index every few seconds (for rebuilds
    and the dispatch log's count of who was within reach: `ix_workers_location`)."""
    location_at: Mapped[datetime | None]


class WorkerCommunity(Base):
    __tablename__ = "worker_communities"

    worker_id: Mapped[int] = mapped_column(
        ForeignKey("workers.user_id", ondelete="CASCADE"), primary_key=True
    )
    community_id: Mapped[int] = mapped_column(
        ForeignKey("communities.id", ondelete="CASCADE"), primary_key=True, index=True
    )
