"""Scheduled booking: workers' availability, the calendar blocks of confirmed bookings, and the
durable timers booking (and later safety) steps wake on.

No worker is ever double-booked because the database says so: `bookings` has an exclusion
constraint (btree_gist) over (worker, block) for active rows, where a block is the booking plus
the worker's buffer after it; two overlapping blocks of one worker cannot both be active,
whatever the concurrency and however many processes confirm at once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from geoalchemy2 import Geography, WKBElement
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, TSTZRANGE, ExcludeConstraint, Range
from sqlalchemy.orm import Mapped, mapped_column

from dispatch.models.base import Base, IdMixin


class Availability(Base):
    __tablename__ = "availabilities"
    __table_args__ = (Index("ix_availabilities_home", "home", postgresql_using="gist"),)

    worker_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("workers.user_id", ondelete="CASCADE"), primary_key=True
    )
    timezone: Mapped[str] = mapped_column(String(64))
    weekly: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, default=list)
    """[{day: "mon".."sun", start: "HH:MM", end: "HH:MM"}], as the worker gave them."""
    overrides: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, default=list)
    """[{date: "YYYY-MM-DD", slots: [{start, end}]}]; no slots is a day off."""
    extra: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, default=list)
    """One-off extra hours, [{start, end}] as ISO instants (the older `slots` form)."""
    buffer_min: Mapped[int] = mapped_column(Integer)
    min_notice_min: Mapped[int] = mapped_column(Integer)
    max_jobs_per_day: Mapped[int | None] = mapped_column(Integer)
    home: Mapped[WKBElement | None] = mapped_column(
        Geography("POINT", srid=4326, spatial_index=False)
    )
    travel_radius_m: Mapped[int | None] = mapped_column(Integer)
    updated_at: Mapped[datetime]


class Booking(IdMixin, Base):
    __tablename__ = "bookings"
    __table_args__ = (
        ExcludeConstraint(
            (text("worker_id"), "="),
            (text("block"), "&&"),
            using="gist",
            where=text("active"),
            name="no_double_booking",
        ),
        CheckConstraint("ends_at > starts_at", name="span"),
        Index(None, "job_id"),
        Index(None, "worker_id", "starts_at"),
    )

    job_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("jobs.id", ondelete="CASCADE"))
    worker_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id"))
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    block: Mapped[Range[datetime]] = mapped_column(TSTZRANGE)
    """[starts_at, ends_at + the worker's buffer): what no other active booking may overlap."""
    lat: Mapped[float] = mapped_column(Float)
    lng: Mapped[float] = mapped_column(Float)
    """The job's place, for the travel to and from the worker's neighbouring bookings."""
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    end_reason: Mapped[str | None] = mapped_column(String(32))


class Timer(IdMixin, Base):
    """A durable timer: the row is the truth, an SAQ job only the wake-up. A timer fires once:
    its handler runs in the transaction that stamps `fired_at`."""

    __tablename__ = "timers"
    __table_args__ = (
        Index("ix_timers_due", "due_at", postgresql_where=text("fired_at IS NULL")),
        Index(None, "kind", "ref_id"),
    )

    kind: Mapped[str] = mapped_column(String(48))
    ref_id: Mapped[int] = mapped_column(BigInteger)
    """What it is about (a job, say)."""
    key: Mapped[str] = mapped_column(Text, unique=True)
    """One timer per key: arming the same step twice is a no-op."""
    due_at: Mapped[datetime]
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    created_at: Mapped[datetime]
    fired_at: Mapped[datetime | None]
    cancelled_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
