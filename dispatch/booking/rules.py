"""Scheduled booking's rules, in plain Python: a worker's availability (weekly hours in their own
timezone, date overrides, one-off extra hours), what stays free around their bookings (buffers,
and the travel from each booking's place to the new job's), the start times a job can be booked
at, why a worker cannot take it, who is asked first, and what a late cancellation costs.

Times: schedules are local wall-clock times in the availability's timezone; every instant here is
an aware UTC `datetime`. A local range is turned into instants date by date, so a weekly
09:00-18:00 stays 09:00-18:00 local on both sides of a daylight-saving change (that day simply
has an hour more or less of UTC). A local time that does not exist (inside a spring-forward gap)
takes the offset from before the change, as `zoneinfo` does with fold 0.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from typing import NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from dispatch.core.errors import Unprocessable
from dispatch.trust.ranking import RATING_PRIOR_MEAN
from geo.distance import EARTH_RADIUS_M, haversine_m

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
STEP = timedelta(minutes=15)
"""Bookable start times lie on the quarter hours (every timezone's offset is a multiple of 15
minutes, so these are local quarter hours too)."""
MAX_STARTS = 48
"""Start times listed per candidate."""
FREE_CANCEL_GRACE = timedelta(minutes=5)
"""A resident who changes their mind within this long of booking cancels for free."""
EXCLUSION_REASONS = ("unverified", "unskilled", "too_far", "no_hours", "notice", "busy")
DEFAULT_BUFFER_MIN = 15
DEFAULT_MIN_NOTICE_MIN = 120


class Span(NamedTuple):
    """A half-open UTC interval [start, end). A tuple, not a frozen dataclass: proposals make
    thousands per request and a frozen dataclass's `__init__` costs several times more."""

    start: datetime
    end: datetime

    @property
    def minutes(self) -> float:
        return (self.end - self.start).total_seconds() / 60


@dataclass(frozen=True, slots=True)
class LocalRange:
    """Minutes after local midnight, [start, end); end may be 1440 (midnight after)."""

    start: int
    end: int


@dataclass(frozen=True)
class Availability:
    timezone: str
    weekly: dict[int, tuple[LocalRange, ...]] = field(default_factory=dict)
    """Weekday (0 = Monday) to its ranges, sorted."""
    overrides: dict[date, tuple[LocalRange, ...]] = field(default_factory=dict)
    """A date's ranges instead of its weekday's; an empty tuple is a day off."""
    extra: tuple[Span, ...] = ()
    """One-off extra hours (the older `{slots: [{start, end}]}` form)."""
    buffer_min: int = DEFAULT_BUFFER_MIN
    min_notice_min: int = DEFAULT_MIN_NOTICE_MIN
    max_jobs_per_day: int | None = None
    home: tuple[float, float] | None = None
    travel_radius_m: int | None = None
    day_spans: dict[date, tuple[Span, ...]] = field(default_factory=dict, compare=False, repr=False)
    """Memo of each local date's hours as instants (a schedule is immutable; proposals read the
    same few days of the same schedules over and over)."""


class Booked(NamedTuple):
    """One of the worker's bookings: its time and its place."""

    span: Span
    lat: float
    lng: float


class AvailabilityError(Unprocessable):
    """A schedule that cannot be meant: 422 with the code saying what."""


# --- reading a schedule ---------------------------------------------------------------------------


def check_timezone(name: str) -> ZoneInfo:
    if name not in _zones():
        raise AvailabilityError(f"unknown timezone {name!r}", code="invalid_timezone")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise AvailabilityError(f"unknown timezone {name!r}", code="invalid_timezone") from exc


_ZONES: frozenset[str] | None = None


def _zones() -> frozenset[str]:
    global _ZONES
    if _ZONES is None:
        _ZONES = frozenset(available_timezones()) | {"UTC"}
    return _ZONES


def parse_clock(text: str, *, end: bool = False) -> int:
    """'HH:MM' as minutes after midnight; '24:00' only as an end."""
    hh, sep, mm = text.partition(":")
    if not (sep and len(hh) == 2 and len(mm) == 2 and hh.isdigit() and mm.isdigit()):
        raise AvailabilityError(f"{text!r} is not a time of day HH:MM", code="invalid_time")
    minutes = int(hh) * 60 + int(mm)
    if int(mm) > 59 or minutes > 1440 or (minutes == 1440 and not end):
        raise AvailabilityError(f"{text!r} is not a time of day HH:MM", code="invalid_time")
    return minutes


def _ranges(pairs: Iterable[tuple[str, str]], where: str) -> tuple[LocalRange, ...]:
    ranges = []
    for start, end in pairs:
        r = LocalRange(parse_clock(start), parse_clock(end, end=True))
        if r.end <= r.start:
            raise AvailabilityError(
                f"{where}: {start}-{end} ends before it starts", code="invalid_range"
            )
        ranges.append(r)
    ranges.sort(key=lambda r: r.start)
    for a, b in pairwise(ranges):
        if b.start < a.end:
            raise AvailabilityError(f"{where}: ranges overlap", code="overlapping_ranges")
    return tuple(ranges)


def availability(
    *,
    timezone: str,
    weekly: Sequence[tuple[str, str, str]] = (),
    overrides: Sequence[tuple[str, Sequence[tuple[str, str]]]] = (),
    extra: Sequence[tuple[datetime, datetime]] = (),
    buffer_min: int = DEFAULT_BUFFER_MIN,
    min_notice_min: int = DEFAULT_MIN_NOTICE_MIN,
    max_jobs_per_day: int | None = None,
    home: tuple[float, float] | None = None,
    travel_radius_m: int | None = None,
) -> Availability:
    """A schedule from what a worker typed: weekly (day, start, end), overrides (date, ranges),
    one-off extra hours as instants. Raises AvailabilityError (422) with a stable code."""
    check_timezone(timezone)
    by_day: dict[int, list[tuple[str, str]]] = {}
    for day, start, end in weekly:
        if day not in DAYS:
            raise AvailabilityError(
                f"unknown day {day!r} (use {', '.join(DAYS)})", code="invalid_day"
            )
        by_day.setdefault(DAYS.index(day), []).append((start, end))
    week = {d: _ranges(pairs, DAYS[d]) for d, pairs in by_day.items()}
    days: dict[date, tuple[LocalRange, ...]] = {}
    for text, pairs in overrides:
        try:
            when = date.fromisoformat(text)
        except ValueError as exc:
            raise AvailabilityError(
                f"{text!r} is not a date YYYY-MM-DD", code="invalid_date"
            ) from exc
        if when in days:
            raise AvailabilityError(f"{text} is overridden twice", code="duplicate_date")
        days[when] = _ranges(pairs, text)
    spans = []
    for start, end in extra:
        if start.tzinfo is None or end.tzinfo is None:
            raise AvailabilityError("extra hours need a timezone offset", code="invalid_time")
        if end <= start:
            raise AvailabilityError("extra hours end before they start", code="invalid_range")
        spans.append(Span(start.astimezone(UTC), end.astimezone(UTC)))
    spans.sort()
    for a, b in pairwise(spans):
        if b.start < a.end:
            raise AvailabilityError("extra hours overlap", code="overlapping_ranges")
    return Availability(
        timezone=timezone,
        weekly=week,
        overrides=days,
        extra=tuple(spans),
        buffer_min=buffer_min,
        min_notice_min=min_notice_min,
        max_jobs_per_day=max_jobs_per_day,
        home=home,
        travel_radius_m=travel_radius_m,
    )


# --- interval arithmetic ----------------------------------------------------------------------


def merge(spans: Iterable[Span]) -> list[Span]:
    """Sorted, with overlapping and touching spans joined."""
    out: list[Span] = []
    for s in sorted(spans):
        if s.end <= s.start:
            continue
        if out and s.start <= out[-1].end:
            if s.end > out[-1].end:
                out[-1] = Span(out[-1].start, s.end)
        else:
            out.append(s)
    return out


def subtract(spans: Sequence[Span], holes: Iterable[Span]) -> list[Span]:
    """`spans` (merged) with every hole taken out."""
    out = list(spans)
    for hole in merge(holes):
        kept: list[Span] = []
        for s in out:
            if hole.end <= s.start or s.end <= hole.start:
                kept.append(s)
                continue
            if s.start < hole.start:
                kept.append(Span(s.start, hole.start))
            if hole.end < s.end:
                kept.append(Span(hole.end, s.end))
        out = kept
    return out


def clip(spans: Iterable[Span], to: Span) -> list[Span]:
    return [
        Span(max(s.start, to.start), min(s.end, to.end))
        for s in spans
        if s.end > to.start and s.start < to.end
    ]


# --- hours, free time, start times -----------------------------------------------------------


def local_day_span(day: date, r: LocalRange, tz: ZoneInfo) -> Span:
    """A local range of one date as instants (each end with its own moment's offset)."""
    start = datetime.combine(day, time(r.start // 60, r.start % 60), tzinfo=tz)
    if r.end == 1440:
        end = datetime.combine(day + timedelta(days=1), time(), tzinfo=tz)
    else:
        end = datetime.combine(day, time(r.end // 60, r.end % 60), tzinfo=tz)
    return Span(start.astimezone(UTC), end.astimezone(UTC))


_ZONE_CACHE: dict[str, ZoneInfo] = {}


def _zone(name: str) -> ZoneInfo:
    zone = _ZONE_CACHE.get(name)
    if zone is None:
        zone = _ZONE_CACHE[name] = ZoneInfo(name)
    return zone


def ranges_on(av: Availability, day: date) -> tuple[LocalRange, ...]:
    if day in av.overrides:
        return av.overrides[day]
    return av.weekly.get(day.weekday(), ())


def hours(av: Availability, within: Span) -> list[Span]:
    """The worker's working hours inside `within`, as merged UTC spans."""
    tz = _zone(av.timezone)
    # A date's ranges lie inside that local date (a range ends by 24:00), so the dates of the
    # span's own ends are all it takes.
    first = within.start.astimezone(tz).date()
    last = within.end.astimezone(tz).date()
    spans: list[Span] = list(av.extra)
    day = first
    while day <= last:
        known = av.day_spans.get(day)
        if known is None:
            known = av.day_spans[day] = tuple(
                local_day_span(day, r, tz) for r in ranges_on(av, day)
            )
        spans.extend(known)
        day += timedelta(days=1)
    return clip(merge(spans), within)


def travel_minutes(a: tuple[float, float], b: tuple[float, float], speed_kmh: float) -> int:
    """Whole minutes to go from a to b in a straight line at `speed_kmh`."""
    return math.ceil(haversine_m(a[0], a[1], b[0], b[1]) / 1000 / speed_kmh * 60)


def blocked(
    booked: Iterable[Booked],
    buffer_min: int,
    at: tuple[float, float] | None = None,
    speed_kmh: float = 20.0,
    within: Span | None = None,
) -> list[Span]:
    """The time each booking takes from the calendar: itself, the buffer on both sides and, for
    a job at `at`, the travel between the booking's place and `at` (before it and after it).
    With `within`, bookings that cannot reach it are left out: their gap to it is longer than
    the buffer plus an upper bound of the travel (R x (|dlat| + |dlng|) in radians is never
    shorter than the great circle), so no haversine is spent on them."""
    out = []
    for b in booked:
        if within is not None and at is not None:
            gap = max(within.start - b.span.end, b.span.start - within.end)
            if gap > timedelta(minutes=buffer_min):
                bound_m = EARTH_RADIUS_M * (
                    abs(math.radians(b.lat - at[0])) + abs(math.radians(b.lng - at[1]))
                )
                if gap > timedelta(minutes=buffer_min + bound_m / 1000 / speed_kmh * 60 + 1):
                    continue
        pad = buffer_min + (travel_minutes((b.lat, b.lng), at, speed_kmh) if at else 0)
        out.append(Span(b.span.start - timedelta(minutes=pad), b.span.end + timedelta(minutes=pad)))
    return out


def free(
    av: Availability,
    booked: Sequence[Booked],
    within: Span,
    at: tuple[float, float] | None = None,
    speed_kmh: float = 20.0,
) -> list[Span]:
    """Working hours minus what the bookings take (with travel to `at`, when given)."""
    return subtract(hours(av, within), blocked(booked, av.buffer_min, at, speed_kmh))


def grid_starts(
    spans: Sequence[Span],
    duration: timedelta,
    window: Span,
    earliest: datetime | None = None,
    limit: int | None = None,
) -> list[datetime]:
    """Quarter-hour starts s with [s, s + duration) inside one span and inside the window (and
    s >= `earliest`), the first `limit` of them."""
    out = []
    for s in clip(spans, window):
        t = _ceil_step(s.start if earliest is None or earliest <= s.start else earliest)
        last = s.end - duration
        while t <= last:
            out.append(t)
            if limit is not None and len(out) >= limit:
                return out
            t += STEP
    return out


def last_start(spans: Sequence[Span], duration: timedelta, window: Span) -> datetime | None:
    """The latest of `grid_starts`, without listing them."""
    best = None
    for s in clip(spans, window):
        last = _floor_step(s.end - duration)
        if last >= _ceil_step(s.start) and (best is None or last > best):
            best = last
    return best


_STEP_S = int(STEP.total_seconds())


def _ceil_step(t: datetime) -> datetime:
    # In float seconds: exact for whole seconds, and a microsecond past a step (2.4e-7 s is a
    # float's resolution here) still rounds up.
    return datetime.fromtimestamp(math.ceil(t.timestamp() / _STEP_S) * _STEP_S, UTC)


def _floor_step(t: datetime) -> datetime:
    return datetime.fromtimestamp(math.floor(t.timestamp() / _STEP_S) * _STEP_S, UTC)


@dataclass(frozen=True)
class Verdict:
    """Whether a worker can take the job: its bookable starts, or the reason it cannot."""

    starts: list[datetime]
    reason: str | None = None


def bookable(
    av: Availability,
    booked: Sequence[Booked],
    window: Span,
    duration: timedelta,
    now: datetime,
    at: tuple[float, float],
    speed_kmh: float = 20.0,
    limit: int | None = MAX_STARTS,
) -> Verdict:
    """The start times at which the worker can do a job of `duration` at `at` inside `window`:
    in their hours, clear of their bookings with buffers and travel, after their minimum notice,
    on a day that is not yet full. With none, why: `no_hours` (no hours long enough in the
    window), `notice` (only too soon), `busy` (bookings, travel or the day's limit)."""
    earliest = now + timedelta(minutes=av.min_notice_min)
    in_window = hours(av, window)
    clear = subtract(in_window, blocked(booked, av.buffer_min, at, speed_kmh, window))
    per_day_cap = av.max_jobs_per_day
    starts = grid_starts(clear, duration, window, earliest, limit if per_day_cap is None else None)
    if starts and per_day_cap is not None:
        tz = _zone(av.timezone)
        per_day: dict[date, int] = {}
        for b in booked:
            d = b.span.start.astimezone(tz).date()
            per_day[d] = per_day.get(d, 0) + 1
        starts = [s for s in starts if per_day.get(s.astimezone(tz).date(), 0) < per_day_cap]
    if starts:
        return Verdict(starts[:limit] if limit is not None else starts)
    # None: say why (only now, as most workers asked have time).
    latest = last_start(in_window, duration, window)
    if latest is None:
        return Verdict([], "no_hours")
    if latest < earliest:
        return Verdict([], "notice")
    return Verdict([], "busy")


def fits(
    av: Availability,
    booked: Sequence[Booked],
    span: Span,
    now: datetime,
    at: tuple[float, float],
    speed_kmh: float = 20.0,
) -> str | None:
    """None if the worker can take exactly `span` at `at` (the confirmation's check); else the
    reason as in `bookable`."""
    verdict = bookable(av, booked, span, span.end - span.start, now, at, speed_kmh, limit=1)
    if verdict.reason is not None:
        return verdict.reason
    return None if verdict.starts and verdict.starts[0] == span.start else "busy"


# --- who is asked first ------------------------------------------------------------------------


def rank_score(distance_m: float, rating: float | None, no_shows: int, jobs_done: int) -> float:
    """Lower is asked first: a kilometre counts 1, each star below 5 counts 1.5 (no reviews yet:
    the prior), and the share of bookings not shown up for counts up to 6."""
    stars = RATING_PRIOR_MEAN if rating is None else rating
    reliability = no_shows / max(1, no_shows + jobs_done)
    return distance_m / 1000 + 1.5 * (5 - stars) + 6 * reliability


# --- cancellations ----------------------------------------------------------------------------


def resident_cancel_fee(
    *,
    now: datetime,
    booked_at: datetime,
    start: datetime,
    price_cents: int,
    hourly_rate_cents: int | None,
    free_cancel_before_h: int,
    late_cancel_fee_bps: int,
) -> int:
    """Free within `FREE_CANCEL_GRACE` of booking, or until `free_cancel_before_h` before the
    start; after that one hour at the worker's rate (TaskRabbit's rule), or the community's
    share of the price where the worker has no rate; never more than the price."""
    if now - booked_at <= FREE_CANCEL_GRACE or start - now >= timedelta(hours=free_cancel_before_h):
        return 0
    fee = (
        hourly_rate_cents
        if hourly_rate_cents is not None
        else price_cents * late_cancel_fee_bps // 10_000
    )
    return min(fee, price_cents)


def worker_cancel_compensation(
    *, now: datetime, start: datetime, price_cents: int, free_cancel_before_h: int,
    late_cancel_fee_bps: int,
) -> int:  # fmt: skip
    """What a worker's late cancellation owes the resident: the same share of the price a late
    resident would pay, when it comes inside `free_cancel_before_h` of the start."""
    if start - now >= timedelta(hours=free_cancel_before_h):
        return 0
    return price_cents * late_cancel_fee_bps // 10_000
