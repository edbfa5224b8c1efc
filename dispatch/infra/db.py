"""Database engine, sessions and migrations."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a database error as SQLAlchemy wraps asyncpg's (on the adapted error or
    on the driver's error behind it), or None."""
    orig = getattr(exc, "orig", None)
    code = getattr(orig, "sqlstate", None) or getattr(
        getattr(orig, "__cause__", None), "sqlstate", None
    )
    return code if isinstance(code, str) else None


SERVER_SETTINGS = {
    "application_name": "dispatch",
    "timezone": "UTC",
    "jit": "off",
    "max_parallel_workers_per_gather": "0",
}
"""Every connection's settings. The service runs short statements over few rows; PostgreSQL
prices PostGIS's distances and the wave's JSON so high that it JIT-compiled some of them (20-80
ms each, for 1-20 ms of work: the jobs board at 10 km; the first offer's p50 went from ~12 to
~50 ms in bench.dispatch) and handed others to parallel workers (20-50 ms more, each loading
PostGIS)."""


def make_engine(url: str, pool_size: int = 10, pool_timeout_s: float = 30.0) -> AsyncEngine:
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_timeout=pool_timeout_s,
        pool_pre_ping=False,
        pool_recycle=1800,
        connect_args={"server_settings": SERVER_SETTINGS},
    )


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def alembic_config(url: str):  # -> alembic.config.Config
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def include_in_migrations(obj, name, type_, reflected, compare_to) -> bool:
    """Alembic's filter: PostGIS's own tables (spatial_ref_sys, topology…) are not ours."""
    from geoalchemy2 import alembic_helpers

    if type_ == "table" and reflected and compare_to is None:
        return False
    return bool(alembic_helpers.include_object(obj, name, type_, reflected, compare_to))


def migrate(url: str, revision: str = "head") -> None:
    """Apply migrations up to `revision`; blocks, and works whether or not a loop is running."""
    from alembic import command

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        command.upgrade(alembic_config(url), revision)
        return
    # Alembic's env.py runs its own event loop, which cannot nest in a running one.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(command.upgrade, alembic_config(url), revision).result()


async def migrate_async(url: str, revision: str = "head") -> None:
    await asyncio.to_thread(migrate, url, revision)
