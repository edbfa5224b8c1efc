"""Reads about jobs that several calls share."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.jobs.proxies import proxy_number_for
from dispatch.models import Job
from dispatch.trust.ranking import shown_rating


@dataclass(frozen=True)
class JobView:
    """A job with what its viewer sees beside it: offer counts by status, and the masked number
    the viewer reaches the other participant on (participants only)."""

    job: Job
    offer_counts: dict[str, int]
    proxy_number: str | None = None
    start_pin: str | None = None
    """The resident's alone, while the job waits to be started."""
    worker: tuple[int, str, float | None, int] | None = None
    """Who took it, as its resident sees them: id, name, shown rating, reviews counted."""
    approach: Approach | None = None
    """How far the worker is, for the resident while the job waits for them."""


APPROACH_STEP_M = 100


@dataclass(frozen=True)
class Approach:
    distance_m: int
    """Rounded up to `APPROACH_STEP_M`: never 0, never the exact distance."""
    at: datetime
    """When the worker's position was taken."""


def approach_of(distance_m: float, recorded_at: float) -> Approach:
    steps = max(1, math.ceil(distance_m / APPROACH_STEP_M))
    return Approach(steps * APPROACH_STEP_M, datetime.fromtimestamp(recorded_at, UTC))


_WORKER_CARD = text("SELECT name, rating_sum, rating_count FROM workers WHERE user_id = :id")


# A plain statement: building it with the expression language cost more CPU than running it.
_OFFER_COUNTS = text(
    "SELECT job_id, status, count(*) FROM offers "
    "WHERE job_id = ANY(CAST(:ids AS bigint[])) GROUP BY job_id, status"
)


async def offer_counts(session: AsyncSession, job_ids: list[int]) -> dict[int, dict[str, int]]:
    """Each job's offers counted by status, in one query."""
    counts: dict[int, dict[str, int]] = {j: {} for j in job_ids}
    if job_ids:
        rows = await session.execute(_OFFER_COUNTS, {"ids": job_ids})
        for job_id, status, n in rows.all():
            counts[job_id][status] = n
    return counts


async def job_view(session: AsyncSession, job: Job, viewer: int | None = None) -> JobView:
    """How `job` looks to `viewer` now, read in the caller's transaction (a service that has just
    changed the job answers with it without a transaction of its own)."""
    counts = (await offer_counts(session, [job.id]))[job.id]
    number = await proxy_number_for(session, job, viewer) if viewer is not None else None
    pin = job.start_pin if viewer == job.resident_id and job.status == "assigned" else None
    card = None
    if viewer == job.resident_id and job.worker_id is not None:
        row = (await session.execute(_WORKER_CARD, {"id": job.worker_id})).first()
        if row is not None:
            card = (job.worker_id, row[0], shown_rating(row[1], row[2]), row[2])
    return JobView(job, counts, number, pin, card)
