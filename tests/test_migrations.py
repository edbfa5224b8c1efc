"""The migrated schema is exactly what the models declare; migrations that move data move it
right."""

from __future__ import annotations

import asyncio
import math
import random

import h3.api.basic_int as h3
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, make_url, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from dispatch.infra.db import alembic_config, include_in_migrations, make_engine, migrate_async
from dispatch.models import all_tables
from geo.areas import destination
from geo.live.cells import cell_code


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


async def test_job_cells_backfill_gives_every_job_its_cell_code(
    engine: AsyncEngine, server_urls
) -> None:
    """0014 gives the jobs already there their `h3_code` (in batches: more jobs than one holds)
    as `geo.live.cells.cell_code` computes it; down and up again, the same. On a scratch database
    migrated to 0013 and seeded there."""
    scratch = "dispatch_migration_0014"
    url = make_url(server_urls[0]).set(database=scratch).render_as_string(hide_password=False)
    admin = engine.execution_options(isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        try:
            await conn.execute(text(f"DROP DATABASE IF EXISTS {scratch} WITH (FORCE)"))
            await conn.execute(text(f"CREATE DATABASE {scratch}"))
        except DBAPIError as exc:  # a database given by TEST_DATABASE_URL may not allow it
            pytest.skip(f"cannot create a scratch database: {exc}")
    rnd = random.Random(14)
    pentagons = [h3.cell_to_latlng(p) for p in h3.get_pentagons(0)]
    places = [(31.2304, 121.4737), (89.9999, 10.0), (-90.0, 0.0), (0.0, 180.0), (0.0, -180.0)]
    places += [
        (math.degrees(math.asin(rnd.uniform(-1, 1))), rnd.uniform(-180, 180)) for _ in range(4000)
    ]
    places += [
        destination(*rnd.choice(pentagons), rnd.uniform(0, 360), rnd.uniform(0, 2000))
        for _ in range(2000)
    ]
    db = make_engine(url, pool_size=1)
    try:
        await migrate_async(url, "0013")
        async with db.begin() as conn:
            lats, lngs = zip(*places, strict=True)
            await conn.execute(_SEED_0013, {"lat": list(lats), "lng": list(lngs)})
        await migrate_async(url, "0014")
        assert await _job_codes(db) == [cell_code(lat, lng) for lat, lng in places]
        await asyncio.to_thread(command.downgrade, alembic_config(url), "0013")
        async with db.connect() as conn:
            columns = await conn.run_sync(lambda c: inspect(c).get_columns("jobs"))
        assert "h3_code" not in {c["name"] for c in columns}
        await migrate_async(url, "0014")
        assert await _job_codes(db) == [cell_code(lat, lng) for lat, lng in places]
    finally:
        await db.dispose()
        async with admin.connect() as conn:
            await conn.execute(text(f"DROP DATABASE IF EXISTS {scratch} WITH (FORCE)"))


async def _job_codes(db: AsyncEngine) -> list[int]:
    """Every job's h3_code by id, once the column is NOT NULL and the open jobs' index is there."""
    async with db.connect() as conn:
        columns = await conn.run_sync(lambda c: inspect(c).get_columns("jobs"))
        indexes = await conn.run_sync(lambda c: inspect(c).get_indexes("jobs"))
        codes = (await conn.scalars(text("SELECT h3_code FROM jobs ORDER BY id"))).all()
    assert [c["nullable"] for c in columns if c["name"] == "h3_code"] == [False]
    assert {"ix_jobs_open_h3_code"} <= {i["name"] for i in indexes}
    return list(codes)


_SEED_0013 = text(
    "WITH u AS (INSERT INTO users (handle, roles, operator_community_ids)"
    " VALUES ('resident', ARRAY['resident'], '{}') RETURNING id),"
    " c AS (INSERT INTO communities (name, center, timezone, dispatch, cover_res, cell_count)"
    " VALUES ('Everywhere', 'SRID=4326;POINT(0 0)', 'UTC', '{}', 0, 0) RETURNING id)"
    " INSERT INTO jobs (community_id, resident_id, title, description, category, skills,"
    " location, cell, mode, price_cents, currency, materials, insured, status, version)"
    " SELECT c.id, u.id, 'Job', '', 'moving', ARRAY['moving'],"
    " ST_SetSRID(ST_MakePoint(p.lng, p.lat), 4326)::geography, 0, 'grab', 8000, 'CNY',"
    " '[]'::jsonb, false, 'open', 1"
    " FROM c, u, unnest(CAST(:lat AS float8[]), CAST(:lng AS float8[]))"
    " WITH ORDINALITY AS p(lat, lng, n) ORDER BY p.n"
)
