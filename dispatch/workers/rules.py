"""Which location pings can be true (plain: no framework, no storage)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import NoReturn, Protocol

from dispatch.core.errors import Unprocessable
from geo.live.base import Fix

FUTURE_SLACK_S = 30
"""A fix may claim a time this far ahead of our clock (phones drift)."""
MAX_FIX_AGE_S = 24 * 3600
MAX_ACCURACY_M = 500.0


class PingLike(Protocol):
    """What check_ping reads: a `Ping`, or the API's `LocationIn` as decoded."""

    @property
    def lat(self) -> float: ...
    @property
    def lng(self) -> float: ...
    @property
    def recorded_at(self) -> datetime | None: ...
    @property
    def accuracy_m(self) -> float | None: ...


@dataclass(frozen=True, slots=True)
class Ping:
    lat: float
    lng: float
    recorded_at: datetime | None = None
    accuracy_m: float | None = None


def check_ping(ping: PingLike, now: float) -> Fix:
    """The fix a ping stands for, or a 422 saying why it cannot be true. `now`: Unix seconds."""
    accuracy = ping.accuracy_m
    if accuracy is not None and accuracy > MAX_ACCURACY_M:
        _inaccurate()
    at = ping.recorded_at
    if at is None:
        return Fix(ping.lat, ping.lng, now)
    if at.tzinfo is None:
        raise Unprocessable("recorded_at needs a UTC offset", code="invalid_timestamp")
    ts = at.timestamp()
    age = now - ts
    if age < -FUTURE_SLACK_S:
        raise Unprocessable("recorded_at is in the future", code="timestamp_in_future")
    if age > MAX_FIX_AGE_S:
        raise Unprocessable("recorded_at is more than a day old", code="timestamp_too_old")
    return Fix(ping.lat, ping.lng, ts)


def _inaccurate() -> NoReturn:
    raise Unprocessable(
        f"a fix less accurate than {MAX_ACCURACY_M:.0f} m cannot place a worker",
        code="low_accuracy",
    )
