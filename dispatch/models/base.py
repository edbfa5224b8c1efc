"""Declarative base and mixins that keep every table uniform."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TypeVar

from sqlalchemy import BigInteger, DateTime, Identity, MetaData, func
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from dispatch.core.errors import NotFound

T = TypeVar("T")

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


MAX_DB_ID = 2**63 - 1


def is_db_id(value: int) -> bool:
    """Could this be a row id at all (a positive BIGINT)? Larger numbers name nothing."""
    return 0 < value <= MAX_DB_ID


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: DateTime(timezone=True)}


class IdMixin:
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)


class TimestampMixin:
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), onupdate=func.now())


async def get_row(session: AsyncSession, model: type[T], ident: int, *, lock: bool = False) -> T:
    """The `model` row with id `ident` (locked FOR UPDATE with `lock`); NotFound with the code
    `<model>_not_found` when no such row exists, or the number could not be an id at all."""
    row = await session.get(model, ident, with_for_update=lock) if is_db_id(ident) else None
    if row is None:
        name = model.__name__.lower()
        raise NotFound(f"{name} {ident} does not exist", code=f"{name}_not_found")
    return row
