"""When a review may be written and whether it counts toward a rating (plain: no framework).

Reviews come after the work: a job completed (and then confirmed, or disputed) can be reviewed
by its resident and its worker, once each, within `REVIEW_WINDOW` of completion. A job that
never reached completion (cancelled, refunded) cannot: nobody was paid, nothing was done.
Reviews between the same author and subject count once per `PAIR_WINDOW` toward the subject's
rating (the seeds' users distrust padded reviews: a resident booking their cousin daily); the
others are kept and shown with `counted: false`."""

from __future__ import annotations

from datetime import datetime, timedelta

from dispatch.core.errors import Conflict

REVIEW_WINDOW = timedelta(days=14)
PAIR_WINDOW = timedelta(days=30)
REVIEWABLE = ("completed", "confirmed", "disputed")


def check_reviewable(status: str, completed_at: datetime | None, now: datetime) -> None:
    if completed_at is None or status not in REVIEWABLE:
        raise Conflict("reviews come after the work is done", code="not_completed")
    if now - completed_at > REVIEW_WINDOW:
        raise Conflict(
            f"reviews close {REVIEW_WINDOW.days} days after completion",
            code="review_window_closed",
        )


def counts(last_counted_at: datetime | None, now: datetime) -> bool:
    """Does a new review count, given when the pair's last counted review was written?"""
    return last_counted_at is None or now - last_counted_at >= PAIR_WINDOW
