"""Safety on site: the worker's check-ins at the job (arrival inside the geofence, periodic,
departure), each with its distance from the job."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
)
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


class EmergencyContact(IdMixin, Base):
    """Someone to tell when a person on a job is in trouble. The phone is stored as the users'
    phones are: a keyed hash, ciphertext, and a hint (`…5678`), the only form ever shown."""

    __tablename__ = "emergency_contacts"
    __table_args__ = (Index(None, "user_id", "position"),)

    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(SmallInteger)
    name: Mapped[str] = mapped_column(String(120))
    phone_hash: Mapped[bytes] = mapped_column(LargeBinary)
    phone_enc: Mapped[bytes] = mapped_column(LargeBinary)
    phone_hint: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]


class SosCall(IdMixin, Base):
    """A press of SOS on a job; presses by one person within a minute are one SOS."""

    __tablename__ = "sos_calls"
    __table_args__ = (Index(None, "job_id", "created_at"),)

    job_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("jobs.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id"))
    role: Mapped[str] = mapped_column(String(16))
    lat: Mapped[float | None] = mapped_column(Float)
    lng: Mapped[float | None] = mapped_column(Float)
    note: Mapped[str | None] = mapped_column(String(500))
    alert_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("alerts.id"))
    presses: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime]
    last_press_at: Mapped[datetime]
