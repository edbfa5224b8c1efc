"""Communities (service areas) and their compacted H3 covers."""

from __future__ import annotations

from typing import Any

from geoalchemy2 import Geography, Geometry, WKBElement
from sqlalchemy import BigInteger, ForeignKey, Integer, SmallInteger, String
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from dispatch.models.base import Base, IdMixin, TimestampMixin


class Community(IdMixin, TimestampMixin, Base):
    __tablename__ = "communities"

    name: Mapped[str] = mapped_column(String(200))
    center: Mapped[WKBElement] = mapped_column(Geography("POINT", srid=4326, spatial_index=False))
    radius_m: Mapped[int | None] = mapped_column(Integer)
    boundary: Mapped[WKBElement | None] = mapped_column(
        Geometry("POLYGON", srid=4326, spatial_index=False)
    )
    timezone: Mapped[str] = mapped_column(String(64))
    dispatch: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    """Only the parameters this community overrides; defaults fill in the rest when read."""
    cover_res: Mapped[int] = mapped_column(SmallInteger)
    cell_count: Mapped[int] = mapped_column(Integer)


class CommunityCell(Base):
    __tablename__ = "community_cells"

    cell: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    community_id: Mapped[int] = mapped_column(
        ForeignKey("communities.id", ondelete="CASCADE"), primary_key=True, index=True
    )
