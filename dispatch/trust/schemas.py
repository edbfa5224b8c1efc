"""Reviews on the wire."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from msgspec import Meta, Struct

from dispatch.web.schemas import VISIBLE_TEXT


class ReviewIn(Struct, forbid_unknown_fields=True):
    rating: Annotated[int, Meta(ge=1, le=5)]
    comment: Annotated[str, Meta(min_length=1, max_length=2000, pattern=VISIBLE_TEXT)] | None = None


class ReviewOut(Struct):
    id: int
    job_id: int
    role: Literal["resident", "worker"]
    """The author's side: `resident` rated the worker, `worker` rated the resident."""
    rating: int
    comment: str | None
    counted: bool
    """False when the same pair already had a review counted in the last 30 days."""
    created_at: datetime


class PublicReview(Struct):
    """A review of a worker as anyone signed in sees it: no author."""

    rating: int
    comment: str | None
    created_at: datetime


class WorkerReviewsOut(Struct):
    worker_id: int
    rating: float | None
    """The shown (Bayesian) rating; None before the first counted review."""
    rating_count: int
    reviews: list[PublicReview]


class WorkerTrustOut(Struct):
    """A worker as the community's operators weigh them."""

    worker_id: int
    name: str
    rating: float | None
    rating_count: int
    jobs_done: int
    no_shows: int
    late_cancels: int
    fast_accepts: int
    """Accepts refused for coming sooner than `min_accept_ms` after the offer (anti-bot)."""
    open_refusals: int
    """Accepts refused for holding `max_open_assignments` unfinished jobs."""
    offers_last_hour: int
    """Offers in this community in the last hour (the cap: `offers_per_worker_hour`)."""
