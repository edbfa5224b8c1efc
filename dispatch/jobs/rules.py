"""What a new job must meet, and which jobs wait for an operator (plain: no framework)."""

from __future__ import annotations

from datetime import datetime, timedelta

from dispatch.core.errors import Unprocessable
from dispatch.trust.screening import asks_worker_to_pay

MAX_BOOKING_AHEAD = timedelta(days=90)
MAX_BOOKING_LENGTH = timedelta(hours=24)


def review_reason(title: str, description: str) -> str | None:
    """Why a job must be reviewed before it goes out, or None: jobs asking the worker to pay
    (deposits, "registration" or "training" fees) are a classic scam on odd-job boards
    (`dispatch.trust.screening.asks_worker_to_pay`)."""
    return asks_worker_to_pay(f"{title}\n{description}")


def check_booking(
    mode: str, window: tuple[datetime, datetime] | None, duration_min: int | None,
    worker_id: int | None,
) -> None:  # fmt: skip
    """A booking's duration fits in its window (none given: the whole window, up to 12 hours);
    a grab job has neither a duration nor a chosen worker."""
    if mode != "booking":
        if duration_min is not None or worker_id is not None:
            raise Unprocessable(
                "duration_min and worker_id are for bookings", code="booking_fields_on_grab"
            )
        return
    if (
        duration_min is not None
        and window is not None
        and window[1] - window[0] < timedelta(minutes=duration_min)
    ):
        raise Unprocessable("the window is shorter than the job", code="window_too_short")


def check_window(mode: str, window: tuple[datetime, datetime] | None, now: datetime) -> None:
    if mode == "booking" and window is None:
        raise Unprocessable("a booking needs a window {start, end}", code="window_required")
    if window is None:
        return
    start, end = window
    if start.tzinfo is None or end.tzinfo is None:
        raise Unprocessable("window times need a UTC offset", code="invalid_window")
    if end <= start:
        raise Unprocessable("the window must end after it starts", code="invalid_window")
    if end <= now:
        raise Unprocessable("the window is already over", code="invalid_window")
    if start - now > MAX_BOOKING_AHEAD:
        raise Unprocessable("bookings open at most 90 days ahead", code="invalid_window")
    if end - start > MAX_BOOKING_LENGTH:
        raise Unprocessable("a window may last at most 24 hours", code="invalid_window")


def booking_duration_min(window: tuple[datetime, datetime], duration_min: int | None) -> int:
    """How long a booking takes: as given, else its whole window (at most 12 hours)."""
    if duration_min is not None:
        return duration_min
    return min(720, max(15, int((window[1] - window[0]).total_seconds() // 60)))
