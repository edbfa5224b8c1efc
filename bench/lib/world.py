"""Worlds the benchmarks build straight in the database (what the API would leave there, at a
speed the API cannot): workers spread over a disc, verified and online in one community."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any

from geo.areas import destination


def spread(n: int, center: tuple[float, float], radius_m: float, seed: int) -> list[Any]:
    rng = random.Random(seed)
    return [
        destination(*center, rng.uniform(0, 360), radius_m * math.sqrt(rng.random()))
        for _ in range(n)
    ]


async def bulk_workers(
    sessions: Any,
    prefix: str,
    community_id: int,
    places: Sequence[tuple[float, float]],
    skills: Sequence[tuple[str, ...]],
) -> list[int]:
    """Users with the worker role, verified and online profiles serving the community, each with
    a last position stamped now (what profile + verify + presence + a ping leave in the
    database); the live index is filled from this by the service's rebuild."""
    from sqlalchemy import text

    handles = [f"{prefix}-{i}" for i in range(len(places))]
    async with sessions.begin() as session:
        rows = (
            await session.execute(
                text(
                    "INSERT INTO users (handle, roles, operator_community_ids, name) "
                    "SELECT h, ARRAY['worker'], '{}'::bigint[], h "
                    "FROM unnest(CAST(:handles AS text[])) AS h RETURNING id, handle"
                ),
                {"handles": handles},
            )
        ).all()
        by_handle = {h: int(i) for i, h in rows}
        ids = [by_handle[h] for h in handles]
        await session.execute(
            text(
                "INSERT INTO workers (user_id, name, skills, verification, rating_sum, "
                "rating_count, version, online, presence_at, location, location_at) "
                "SELECT u.id, u.name, string_to_array(u.skills, ','), 'verified', 0, 0, 1, true, "
                "now(), ST_SetSRID(ST_MakePoint(u.lng, u.lat), 4326)::geography, now() "
                "FROM unnest(CAST(:ids AS bigint[]), CAST(:names AS text[]), "
                "CAST(:skills AS text[]), CAST(:lats AS float8[]), CAST(:lngs AS float8[])) "
                "AS u(id, name, skills, lat, lng)"
            ),
            {
                "ids": ids,
                "names": [f"Bench worker {h}" for h in handles],
                "skills": [",".join(sorted(s)) for s in skills],
                "lats": [p[0] for p in places],
                "lngs": [p[1] for p in places],
            },
        )
        await session.execute(
            text(
                "INSERT INTO worker_communities (worker_id, community_id) "
                "SELECT unnest(CAST(:ids AS bigint[])), :cid"
            ),
            {"ids": ids, "cid": community_id},
        )
    return ids
