"""Jobs: what a resident asked for, where, and where it stands."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from geoalchemy2 import Geography, WKBElement
from sqlalchemy import (
    ARRAY,
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from dispatch.models.base import Base, IdMixin, TimestampMixin
from geo.live.cells import cell_code
from geo.shapes import wkb_to_latlng

JOB_STATUSES = (
    "under_review", "open", "assigned", "in_progress", "completed",
    "confirmed", "cancelled", "unfilled", "disputed",
)  # fmt: skip


def location_code(context: Any) -> int:
    """`jobs.h3_code` of a row being inserted: the fine cell code of its location (the one place
    it is computed; a job is never moved, so there is no update to follow)."""
    lat, lng = wkb_to_latlng(context.get_current_parameters()["location"])
    return cell_code(lat, lng)


class Job(IdMixin, TimestampMixin, Base):
    __tablename__ = "jobs"
    __table_args__ = (
        CheckConstraint(
            "status IN (" + ", ".join(f"'{s}'" for s in JOB_STATUSES) + ")", name="status"
        ),
        CheckConstraint("mode IN ('grab', 'booking')", name="mode"),
        CheckConstraint("price_cents >= 0", name="price"),
        Index(None, "community_id", "status"),
        Index(None, "resident_id", "created_at"),
        Index(None, "worker_id", "created_at"),
        Index("ix_jobs_location", "location", postgresql_using="gist"),
        Index("ix_jobs_wave_deadline", "wave_deadline", postgresql_where=text("status = 'open'")),
        Index(
            "ix_jobs_open_h3_code",
            "community_id",
            "h3_code",
            postgresql_where=text("status = 'open'"),
        ),
    )

    community_id: Mapped[int] = mapped_column(ForeignKey("communities.id"))
    resident_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    worker_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("users.id"))
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(String(5000), default="")
    category: Mapped[str] = mapped_column(String(64))
    skills: Mapped[list[str]] = mapped_column(ARRAY(Text), default=list)
    location: Mapped[WKBElement] = mapped_column(Geography("POINT", srid=4326, spatial_index=False))
    cell: Mapped[int] = mapped_column(BigInteger)
    """H3 cell (resolution 9) of the location, for per-cell supply and demand."""
    h3_code: Mapped[int] = mapped_column(BigInteger, default=location_code)
    """The code of the location's FINE_RES H3 cell (`geo.live.cells.cell_code`), as workers are
    scored in the live index: the jobs board reads open jobs by ranges of it."""
    address: Mapped[str | None] = mapped_column(String(500))
    mode: Mapped[str] = mapped_column(String(16))
    window_start: Mapped[datetime | None]
    window_end: Mapped[datetime | None]
    price_cents: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    materials: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, default=list)
    insured: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(16))
    version: Mapped[int] = mapped_column(Integer, default=1)
    review_reason: Mapped[str | None] = mapped_column(Text)
    wave: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """The offer wave now out (0: none yet)."""
    wave_deadline: Mapped[datetime | None]
    """When the current wave's offers lapse and the next wave is due (the durable timer)."""
    assignment_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """Fencing token of the current assignment; bumped on every (re)assignment."""
    assigned_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]
    cancelled_at: Mapped[datetime | None]
    cancelled_by: Mapped[str | None] = mapped_column(String(16))
    cancel_reason: Mapped[str | None] = mapped_column(String(500))
    cancellation_fee_cents: Mapped[int | None] = mapped_column(Integer)
    # Scheduled booking (mode 'booking'):
    duration_min: Mapped[int | None] = mapped_column(Integer)
    requested_worker_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("users.id"))
    """The worker the resident chose from the proposals; asked first."""
    scheduled_start: Mapped[datetime | None]
    scheduled_end: Mapped[datetime | None]
    """The slot offered to the worker asked now, then the confirmed booking's time."""
    booked_at: Mapped[datetime | None]
    no_show_at: Mapped[datetime | None]
    """When the assigned worker was found not to have started by the grace after the start."""
    compensation_cents: Mapped[int | None] = mapped_column(Integer)
    """What a worker's late cancellation owes the resident (settled with the money issue)."""
    reschedule: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    """A resident's proposal of a new window: {start, end, status, proposed_at, answered_at}."""
    # Safety on site:
    start_pin: Mapped[str | None] = mapped_column(String(8))
    """Shown to the resident alone; the worker must give it to start (set at each assignment)."""
    pin_failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    arrived_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    sos_at: Mapped[datetime | None]
    """The last SOS pressed on the job (it stays flagged)."""
    # Money (the terms are the community's when the job was posted: they never change under it):
    commission_bps: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    insurance_bps: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """The premium on an insured job, taken from the worker's pay into the insurance pool."""
    confirmed_at: Mapped[datetime | None]
    dispute: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    """{reason, by, opened_at, resolved_at?, worker_share_bps?, note?, resolved_by?}"""
