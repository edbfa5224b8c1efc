"""Booking's wire types. Days, clock times and timezones are strings here and read by the rules,
so a schedule that cannot be meant is a 422 with its own code, not a generic 400."""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta, Struct

from dispatch.web.schemas import Id, Point, Timestamp, Timezone

ClockTime = Annotated[str, Meta(min_length=1, max_length=5, examples=["09:00"])]
DayName = Annotated[str, Meta(min_length=1, max_length=9, examples=["mon"])]
IsoDate = Annotated[str, Meta(min_length=1, max_length=10, examples=["2026-12-24"])]


class WeeklyRange(Struct, forbid_unknown_fields=True):
    day: DayName
    """`mon` … `sun`."""
    start: ClockTime
    end: ClockTime
    """`HH:MM`, local; `24:00` ends at midnight."""


class ClockRange(Struct, forbid_unknown_fields=True):
    start: ClockTime
    end: ClockTime


class DateOverride(Struct, forbid_unknown_fields=True):
    date: IsoDate
    slots: Annotated[list[ClockRange], Meta(max_length=12)] = []
    """This date's hours instead of its weekday's; none: a day off."""


class ExtraSlot(Struct, forbid_unknown_fields=True):
    start: Timestamp
    end: Timestamp


class AvailabilityIn(Struct, forbid_unknown_fields=True, kw_only=True):
    timezone: Timezone | None = None
    """IANA name; default: the worker's first community's."""
    weekly: Annotated[list[WeeklyRange], Meta(max_length=70)] = []
    overrides: Annotated[list[DateOverride], Meta(max_length=366)] = []
    slots: Annotated[list[ExtraSlot], Meta(max_length=200)] = []
    """One-off extra hours as instants (the older form)."""
    buffer_min: Annotated[int, Meta(ge=0, le=240)] | None = None
    min_notice_min: Annotated[int, Meta(ge=0, le=20_160)] | None = None
    max_jobs_per_day: Annotated[int, Meta(ge=1, le=50)] | None = None
    home: Point | None = None
    """Where `travel_radius_m` is measured from; default: the last position, else the first
    community's centre."""
    travel_radius_m: Annotated[int, Meta(ge=100, le=100_000)] | None = None


class AvailabilityOut(Struct, kw_only=True):
    worker_id: int
    timezone: str
    weekly: list[WeeklyRange]
    overrides: list[DateOverride]
    slots: list[ExtraSlot]
    buffer_min: int
    min_notice_min: int
    max_jobs_per_day: int | None
    home: Point | None
    travel_radius_m: int | None
    updated_at: Timestamp | None


class BookingOut(Struct, kw_only=True):
    id: int
    job_id: int
    start: Timestamp
    end: Timestamp
    title: str
    address: str | None


class FreeSpan(Struct):
    start: Timestamp
    end: Timestamp


class CalendarOut(Struct, kw_only=True):
    timezone: str
    bookings: list[BookingOut]
    free: list[FreeSpan]


class CandidateOut(Struct, kw_only=True):
    worker_id: Id
    name: str
    rating: float | None
    rating_count: int
    distance_m: float
    """Rounded to 100 m: residents never see where a worker is."""
    starts: list[Timestamp]


class CandidatesOut(Struct, kw_only=True):
    candidates: list[CandidateOut]
    excluded: dict[str, int]
    """Workers left out, by reason: `unverified`, `unskilled`, `too_far`, `no_hours`, `notice`,
    `busy`; counted among the `examined` (nearest first, until the list was full)."""
    examined: int
    complete: bool
    """Whether every worker of the community was examined."""
