"""Safety on site: the worker's check-ins at the job (arrival inside the geofence, periodic,
departure), each with its distance from the job."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Float, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from dispatch.models.base import Base, IdMixin


class Checkin(IdMixin, Base):
    __tablename__ = "checkins"
    __table_args__ = (Index(None, "job_id", "created_at"),)

    job_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("jobs.id", ondelete="CASCADE"))
    worker_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id"))
    kind: Mapped[str] = mapped_column(String(16))
    """`arrival`, `periodic`, `departure`."""
    source: Mapped[str] = mapped_column(String(16), default="app")
    """`app`, or `call` (the automated safety call's answer)."""
    lat: Mapped[float | None] = mapped_column(Float)
    lng: Mapped[float | None] = mapped_column(Float)
    accuracy_m: Mapped[float | None] = mapped_column(Float)
    distance_m: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime]
