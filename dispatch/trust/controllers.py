"""Reviews over HTTP: each side of a completed job rates the other once; anyone signed in reads
a worker's rating and what residents wrote of them (no authors)."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter

from dispatch.identity.auth import operators
from dispatch.models import Review
from dispatch.trust.schemas import (
    PublicReview,
    ReviewIn,
    ReviewOut,
    WorkerReviewsOut,
    WorkerTrustOut,
)
from dispatch.trust.service import ReviewService
from dispatch.web.deps import principal_of


def review_out(r: Review) -> ReviewOut:
    return ReviewOut(
        id=r.id, job_id=r.job_id, role=r.role, rating=r.rating,  # type: ignore[arg-type]
        comment=r.comment, counted=r.counted, created_at=r.created_at,
    )  # fmt: skip


@post("/v1/jobs/{job_id:int}/reviews", status_code=201, tags=["trust"])
async def write_review(
    job_id: FromPath[int], data: JSONBody[ReviewIn], request: Request[Any, Any, Any],
    reviews: NamedDependency[ReviewService],
) -> ReviewOut:  # fmt: skip
    """The job's resident rates its worker, or its worker the resident: once each, after
    completion, within 14 days (409 `not_completed`, `review_window_closed`,
    `already_reviewed`). The comment is screened for off-platform contacts. A review between a
    pair with one counted in the last 30 days is kept with `counted: false` and does not move
    the rating."""
    who = principal_of(request)
    return review_out(await reviews.write(who, job_id, data.rating, data.comment))


@get("/v1/jobs/{job_id:int}/reviews", tags=["trust"])
async def job_reviews(
    job_id: FromPath[int], request: Request[Any, Any, Any], reviews: NamedDependency[ReviewService]
) -> list[ReviewOut]:
    """The job's reviews (its participants and operators)."""
    return [review_out(r) for r in await reviews.of_job(principal_of(request), job_id)]


@get("/v1/workers/{worker_id:int}/reviews", tags=["trust"])
async def worker_reviews(
    worker_id: FromPath[int],
    request: Request[Any, Any, Any],
    reviews: NamedDependency[ReviewService],
    limit: Annotated[int, QueryParameter(ge=1, le=100)] = 50,
) -> WorkerReviewsOut:
    """A worker's shown rating (a Bayesian average: five imaginary reviews at 4.5 beside the
    counted ones), how many reviews count, and the latest reviews residents wrote."""
    principal_of(request)
    rating, count, rows = await reviews.of_worker(worker_id, limit)
    return WorkerReviewsOut(
        worker_id=worker_id, rating=rating, rating_count=count,
        reviews=[PublicReview(r.rating, r.comment, r.created_at) for r in rows],
    )  # fmt: skip


@get("/v1/ops/communities/{community_id:int}/worker-trust", guards=[operators], tags=["ops"])
async def worker_trust(
    community_id: FromPath[int],
    request: Request[Any, Any, Any],
    reviews: NamedDependency[ReviewService],
    limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 200,
) -> list[WorkerTrustOut]:
    """The community's workers with what fair ranking and the anti-bot rules see: rating and
    count, jobs done, no-shows, late cancellations, refused accepts (too fast, too many open
    jobs) and offers in the last hour; the most refused first."""
    rows = await reviews.board(principal_of(request), community_id, limit)
    return [
        WorkerTrustOut(
            worker_id=w.user_id, name=w.name, rating=rating, rating_count=w.rating_count,
            jobs_done=w.jobs_done, no_shows=w.no_shows, late_cancels=w.late_cancels,
            fast_accepts=w.fast_accepts, open_refusals=w.open_refusals, offers_last_hour=recent,
        )
        for w, recent, rating in rows
    ]  # fmt: skip


ROUTES = [write_review, job_reviews, worker_reviews, worker_trust]
