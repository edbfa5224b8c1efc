"""The migrated schema is exactly what the models declare."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import AsyncEngine

from dispatch.infra.db import alembic_config, include_in_migrations
from dispatch.models import all_tables


async def test_migrated_schema_matches_models(engine: AsyncEngine, server_urls) -> None:
    def diff(sync_conn):
        ctx = MigrationContext.configure(
            sync_conn, opts={"compare_type": True, "include_object": include_in_migrations}
        )
        return compare_metadata(ctx, all_tables().metadata)

    async with engine.connect() as conn:
        changes = await conn.run_sync(diff)
    assert changes == [], changes


async def test_database_is_at_head(engine: AsyncEngine, server_urls) -> None:
    head = ScriptDirectory.from_config(alembic_config(server_urls[0])).get_current_head()
    async with engine.connect() as conn:
        current = await conn.run_sync(
            lambda c: MigrationContext.configure(c).get_current_revision()
        )
    assert current == head
