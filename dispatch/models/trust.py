"""Reviews, both ways: a resident rates the worker and the worker the resident, once each per
job. `counted` is False for a review between a pair who already have one counted in the last
30 days: it is shown, and does not move the rating (padded reviews)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import Mapped, mapped_column

from dispatch.models.base import Base, IdMixin


class Review(IdMixin, Base):
    __tablename__ = "reviews"
    __table_args__ = (
        UniqueConstraint("job_id", "author_id"),
        CheckConstraint("rating BETWEEN 1 AND 5", name="rating"),
        CheckConstraint("role IN ('resident', 'worker')", name="role"),
        Index(None, "subject_id", "created_at"),
        Index(None, "author_id", "subject_id", "created_at"),
    )

    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"))
    author_id: Mapped[int] = mapped_column(BigInteger)
    subject_id: Mapped[int] = mapped_column(BigInteger)
    role: Mapped[str] = mapped_column(String(16))
    """The author's side: `resident` rates a worker, `worker` rates a resident."""
    rating: Mapped[int] = mapped_column(SmallInteger)
    comment: Mapped[str | None] = mapped_column(Text)
    counted: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
