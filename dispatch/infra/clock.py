"""The clock scheduled work reads: bookings (notice, reminders, no-shows) and durable timers.

It is the system clock, shifted by `DISPATCH_CLOCK_OFFSET_S` (default 0). The shift exists for
tests that run the service as real processes and must make a booking's reminder fall due without
waiting an hour: they restart the service with the clock moved forward. Grab-order dispatch and
authentication keep the plain system clock (their timers are seconds long)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta


@dataclass(frozen=True)
class Clock:
    offset_s: float = 0.0

    def now(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self.offset_s)
