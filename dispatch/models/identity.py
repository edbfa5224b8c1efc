"""People and their sign-in codes. Phones are stored as a keyed hash (to look up) and ciphertext
(to deliver SMS and relay calls); the plain number is never stored or returned."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    ARRAY,
    BigInteger,
    CheckConstraint,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Text,
    func,
)
from sqlalchemy.orm import Mapped, mapped_column

from dispatch.models.base import Base, IdMixin, TimestampMixin


class User(IdMixin, TimestampMixin, Base):
    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint("locale IN ('en', 'zh-CN')", name="locale"),
        CheckConstraint("default_locale IN ('en', 'zh-CN')", name="default_locale"),
    )

    phone_hash: Mapped[bytes | None] = mapped_column(LargeBinary(32), unique=True)
    phone_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    phone_hint: Mapped[str | None] = mapped_column(String(8))
    handle: Mapped[str | None] = mapped_column(String(120), unique=True)
    """Stable name of a principal without a phone (CLI-issued admins and operators)."""
    roles: Mapped[list[str]] = mapped_column(ARRAY(Text), default=list)
    operator_community_ids: Mapped[list[int]] = mapped_column(ARRAY(BigInteger), default=list)
    name: Mapped[str | None] = mapped_column(String(120))
    rating_sum: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    rating_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """Counted reviews of this person as a resident (workers' are on `workers`)."""
    locale: Mapped[str | None] = mapped_column(Text)
    """The language they chose (`PUT /v1/me`); None until they choose."""
    default_locale: Mapped[str] = mapped_column(Text, default="en", server_default="en")
    """Their language until they choose one, given when the account was made
    (`dispatch.identity.locale`)."""


SPOKEN_LOCALE = func.coalesce(User.locale, User.default_locale)
"""A user's language in SQL: the one they chose, else the one their account was given
(`dispatch.identity.locale.spoken_locale` in Python)."""


class OtpCode(IdMixin, Base):
    __tablename__ = "otp_codes"
    __table_args__ = (Index(None, "phone_hash", "created_at"),)

    phone_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    code_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    expires_at: Mapped[datetime]
    attempts: Mapped[int] = mapped_column(SmallInteger, default=0)
    consumed_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
