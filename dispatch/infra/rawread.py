"""Reads that need no transaction, straight from an asyncpg connection of the pool.

A hot read that runs outside any transaction (a ping's listing, a wave's ranking records) costs
about a quarter of the CPU when asyncpg runs it on a pooled connection than when a session does
(no session, no BEGIN/ROLLBACK round trips, no SQLAlchemy result processing): measured for the
ping's listing read in `bench.ingest` (issue 9). SQLAlchemy offers no such path itself, hence
this. The statement is written once, as SQLAlchemy `text` with `:name` parameters; its asyncpg
form (`$1`...) is derived from it. Another driver, or a connection PostgreSQL dropped (asyncpg
then raises its own errors, which nothing maps: the chaos run's one 500), falls back to a
session in autocommit, where an outage is a DBAPIError and answers 503.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from asyncpg.exceptions import InterfaceError as PgInterfaceError
from asyncpg.exceptions import InternalClientError, PostgresError
from sqlalchemy import TextClause
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

_PARAM = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


class RawRead:
    def __init__(self, stmt: TextClause) -> None:
        self.stmt = stmt
        self.names: list[str] = []

        def numbered(m: re.Match[str]) -> str:
            if m.group(1) not in self.names:
                self.names.append(m.group(1))
            return f"${self.names.index(m.group(1)) + 1}"

        self.pg = _PARAM.sub(numbered, str(stmt))
        """The statement with asyncpg's numbered parameters, in `names`' order."""

    async def rows(
        self, sessions: async_sessionmaker[AsyncSession], params: Mapping[str, Any]
    ) -> list[tuple]:
        engine = sessions.kw.get("bind")
        if isinstance(engine, AsyncEngine) and engine.dialect.driver == "asyncpg":
            async with engine.connect() as conn:
                raw = await conn.get_raw_connection()
                try:
                    records = await raw.driver_connection.fetch(
                        self.pg, *(params[n] for n in self.names)
                    )
                    return [tuple(r) for r in records]
                except (PostgresError, PgInterfaceError, InternalClientError, OSError):
                    await conn.invalidate()  # off the pool with it; read once more below
        async with sessions() as session:
            conn = await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
            return [tuple(r) for r in await conn.execute(self.stmt, dict(params))]
