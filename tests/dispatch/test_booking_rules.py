"""Booking's rules against a brute force: every quarter-hour start of a window, checked minute by
minute against the schedule's definition (a local range of a date is [its start, its end) as
instants), the bookings with buffers and travel, the notice and the day's limit. Random
calendars in three timezones, around their daylight-saving changes; and the fixed cases a
reader checks by eye."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dispatch.booking import rules
from dispatch.booking.rules import Availability, Booked, LocalRange, Span
from dispatch.trust.ranking import shown_rating

ZONES = ("Asia/Shanghai", "Europe/Berlin", "America/New_York")
# Daylight-saving changes of 2026 (and an ordinary week for Shanghai, which has none).
AROUND = (date(2026, 3, 8), date(2026, 3, 29), date(2026, 10, 25), date(2026, 11, 1),
          date(2026, 6, 10))  # fmt: skip
HOME = (31.2304, 121.4737)
MINUTE = timedelta(minutes=1)


def brute_starts(
    av: Availability,
    booked: list[Booked],
    window: Span,
    duration: timedelta,
    now: datetime,
    at: tuple[float, float],
    speed: float,
) -> tuple[list[datetime], str | None]:
    tz = ZoneInfo(av.timezone)
    ranges: list[Span] = list(av.extra)
    day = window.start.astimezone(tz).date() - timedelta(days=2)
    while day <= window.end.astimezone(tz).date() + timedelta(days=2):
        for r in rules.ranges_on(av, day):
            ranges.append(rules.local_day_span(day, r, tz))
        day += timedelta(days=1)

    def in_hours(m: datetime) -> bool:
        return any(s.start <= m < s.end for s in ranges)

    pads = [
        (b, timedelta(minutes=av.buffer_min + rules.travel_minutes((b.lat, b.lng), at, speed)))
        for b in booked
    ]

    def clear(m: datetime) -> bool:
        return not any(b.span.start - pad <= m < b.span.end + pad for b, pad in pads)

    def day_ok(s: datetime) -> bool:
        if av.max_jobs_per_day is None:
            return True
        d = s.astimezone(tz).date()
        return sum(1 for b in booked if b.span.start.astimezone(tz).date() == d) < (
            av.max_jobs_per_day
        )

    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    first = epoch + -((epoch - window.start) // rules.STEP) * rules.STEP
    grid = []
    s = first
    while s + duration <= window.end:
        if s >= window.start:
            grid.append(s)
        s += rules.STEP
    minutes = int(duration / MINUTE)
    in_h = [s for s in grid if all(in_hours(s + i * MINUTE) for i in range(minutes))]
    if not in_h:
        return [], "no_hours"
    earliest = now + timedelta(minutes=av.min_notice_min)
    noticed = [s for s in in_h if s >= earliest]
    if not noticed:
        return [], "notice"
    ok = [s for s in noticed if day_ok(s) and all(clear(s + i * MINUTE) for i in range(minutes))]
    return ok, (None if ok else "busy")


@st.composite
def day_ranges(draw: st.DrawFn) -> list[tuple[int, int]]:
    # Midnight often: ranges that touch across it must join.
    point = st.one_of(st.integers(0, 288), st.sampled_from([0, 288]))
    points = sorted(set(draw(st.lists(point, min_size=0, max_size=4))))
    if len(points) % 2:
        points = points[:-1]
    return [(points[i] * 5, points[i + 1] * 5) for i in range(0, len(points), 2)]


@st.composite
def cases(draw: st.DrawFn):
    tz_name = draw(st.sampled_from(ZONES))
    tz = ZoneInfo(tz_name)
    around = draw(st.sampled_from(AROUND))
    weekly = {d: tuple(LocalRange(a, b) for a, b in draw(day_ranges())) for d in range(7)}
    over_days = draw(st.lists(st.integers(-1, 2), max_size=2, unique=True))
    overrides = {
        around + timedelta(days=k): tuple(LocalRange(a, b) for a, b in draw(day_ranges()))
        for k in over_days
    }
    start_local = datetime.combine(around - timedelta(days=1), datetime.min.time(), tzinfo=tz)
    window_start = (start_local + timedelta(minutes=5 * draw(st.integers(0, 576)))).astimezone(UTC)
    window = Span(window_start, window_start + timedelta(minutes=15 * draw(st.integers(1, 160))))
    duration = timedelta(minutes=5 * draw(st.integers(3, 48)))
    booked = []
    for _ in range(draw(st.integers(0, 5))):
        b0 = window.start + timedelta(minutes=5 * draw(st.integers(-72, 600)))
        booked.append(
            Booked(
                Span(b0, b0 + timedelta(minutes=15 * draw(st.integers(1, 16)))),
                HOME[0] + draw(st.floats(-0.05, 0.05)),
                HOME[1] + draw(st.floats(-0.05, 0.05)),
            )
        )
    extra = []
    if draw(st.booleans()):  # one-off extra hours, overlapping the weekly ones or not
        e0 = window.start + timedelta(minutes=5 * draw(st.integers(-48, 400)))
        extra.append(Span(e0, e0 + timedelta(minutes=5 * draw(st.integers(1, 96)))))
    av = Availability(
        timezone=tz_name,
        extra=tuple(extra),
        weekly={d: r for d, r in weekly.items() if r},
        overrides=overrides,
        buffer_min=draw(st.integers(0, 30)),
        min_notice_min=draw(st.integers(0, 600)),
        max_jobs_per_day=draw(st.one_of(st.none(), st.integers(1, 3))),
    )
    now = window.start - timedelta(minutes=5 * draw(st.integers(-24, 288)))
    at = (HOME[0] + draw(st.floats(-0.05, 0.05)), HOME[1] + draw(st.floats(-0.05, 0.05)))
    speed = draw(st.sampled_from([10.0, 20.0, 40.0]))
    return av, booked, window, duration, now, at, speed


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_bookable_starts_equal_the_brute_force(case) -> None:
    av, booked, window, duration, now, at, speed = case
    got = rules.bookable(av, booked, window, duration, now, at, speed, limit=None)
    want, reason = brute_starts(av, booked, window, duration, now, at, speed)
    assert (got.starts, got.reason) == (want, reason)
    first = rules.bookable(av, booked, window, duration, now, at, speed)  # what proposals show
    assert (first.starts, first.reason) == (want[: rules.MAX_STARTS], reason)


def berlin_weekdays_9_to_18() -> Availability:
    return rules.availability(
        timezone="Europe/Berlin",
        weekly=[(d, "09:00", "18:00") for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")],
        buffer_min=0,
        min_notice_min=0,
    )


DST_DAYS = [date(2026, 3, 28), date(2026, 3, 29), date(2026, 3, 30), date(2026, 10, 24),
            date(2026, 10, 25), date(2026, 10, 26)]  # fmt: skip


@pytest.mark.parametrize("day", DST_DAYS)
def test_local_hours_stay_local_across_daylight_saving(day: date) -> None:
    av = berlin_weekdays_9_to_18()
    tz = ZoneInfo("Europe/Berlin")
    midnight = datetime.combine(day, datetime.min.time(), tzinfo=tz).astimezone(UTC)
    (span,) = rules.hours(av, Span(midnight, midnight + timedelta(hours=23)))
    assert span.start.astimezone(tz).strftime("%H:%M") == "09:00"
    assert span.end.astimezone(tz).strftime("%H:%M") == "18:00"
    assert span.minutes == 9 * 60


def test_shanghai_override_day_off_and_extra_hours() -> None:
    av = rules.availability(
        timezone="Asia/Shanghai",
        weekly=[("thu", "09:00", "12:00")],
        overrides=[("2026-12-10", [])],
        extra=[(datetime(2026, 12, 10, 12, tzinfo=UTC), datetime(2026, 12, 10, 13, tzinfo=UTC))],
    )
    week = Span(datetime(2026, 12, 2, tzinfo=UTC), datetime(2026, 12, 12, tzinfo=UTC))
    got = rules.hours(av, week)
    # Thursday the 3rd 09:00-12:00 local is 01:00-04:00 UTC; the 10th is a day off, plus the
    # one-off hour (20:00-21:00 local).
    assert got == [
        Span(datetime(2026, 12, 3, 1, tzinfo=UTC), datetime(2026, 12, 3, 4, tzinfo=UTC)),
        Span(datetime(2026, 12, 10, 12, tzinfo=UTC), datetime(2026, 12, 10, 13, tzinfo=UTC)),
    ]


def test_travel_between_bookings_is_part_of_availability() -> None:
    av = rules.availability(
        timezone="Asia/Shanghai", weekly=[("thu", "08:00", "20:00")], buffer_min=10,
        min_notice_min=0,
    )  # fmt: skip
    t = datetime(2026, 12, 3, 2, tzinfo=UTC)  # 10:00 local
    far = (HOME[0] + 0.09, HOME[1])  # ~10 km north: 30 min at 20 km/h
    booked = [Booked(Span(t, t + timedelta(hours=1)), *far)]
    window = Span(t + timedelta(hours=1), t + timedelta(hours=3))
    verdict = rules.bookable(av, booked, window, timedelta(hours=1), t, HOME, 20.0)
    # 11:00 + 10 min buffer + 31 min travel = 11:41 -> first quarter hour 11:45 local.
    assert verdict.starts[0] == t + timedelta(hours=1, minutes=45)
    near = rules.bookable(av, booked, window, timedelta(hours=1), t, far, 20.0)
    assert near.starts[0] == t + timedelta(hours=1, minutes=15)  # only the buffer


@pytest.mark.parametrize(
    ("weekly", "overrides", "code"),
    [
        ([("mon", "18:00", "09:00")], [], "invalid_range"),
        ([("mon", "09:00", "12:00"), ("mon", "11:00", "13:00")], [], "overlapping_ranges"),
        ([("monday", "09:00", "12:00")], [], "invalid_day"),
        ([("mon", "9:00", "12:00")], [], "invalid_time"),
        ([("mon", "24:00", "24:00")], [], "invalid_time"),
        ([], [("2026-02-30", [])], "invalid_date"),
        ([], [("2026-12-24", []), ("2026-12-24", [("10:00", "11:00")])], "duplicate_date"),
    ],
)
def test_schedules_that_cannot_be_meant(weekly, overrides, code) -> None:
    with pytest.raises(rules.AvailabilityError) as err:
        rules.availability(timezone="Asia/Shanghai", weekly=weekly, overrides=overrides)
    assert err.value.code == code


def test_unknown_timezone() -> None:
    with pytest.raises(rules.AvailabilityError) as err:
        rules.availability(timezone="Mars/Olympus_Mons")
    assert err.value.code == "invalid_timezone"


def test_cancellation_fees_by_timing() -> None:
    start = datetime(2026, 12, 10, 2, tzinfo=UTC)
    booked_at = start - timedelta(days=3)

    def fee(now: datetime, rate: int | None = 6000) -> int:
        return rules.resident_cancel_fee(
            now=now, booked_at=booked_at, start=start, price_cents=20_000,
            hourly_rate_cents=rate, free_cancel_before_h=24, late_cancel_fee_bps=5000,
        )  # fmt: skip

    assert fee(start - timedelta(hours=25)) == 0  # early enough
    assert fee(start - timedelta(hours=2)) == 6000  # late: one hour at the worker's rate
    assert fee(start - timedelta(hours=2), rate=None) == 10_000  # no rate: half the price
    assert fee(booked_at + timedelta(minutes=4)) == 0  # changed their mind at once
    late_booked = start - timedelta(hours=3)
    assert rules.resident_cancel_fee(
        now=late_booked + timedelta(minutes=3), booked_at=late_booked, start=start,
        price_cents=20_000, hourly_rate_cents=6000, free_cancel_before_h=24,
        late_cancel_fee_bps=5000,
    ) == 0  # fmt: skip


def test_bayesian_rating_and_rank() -> None:
    assert shown_rating(0, 0) is None
    one_five = shown_rating(5, 1)
    many = shown_rating(980, 200)
    assert one_five is not None and many is not None and one_five < many
    assert rules.rank_score(500, 4.9, 0, 50) < rules.rank_score(500, 4.2, 0, 50)
    assert rules.rank_score(500, 4.9, 5, 5) > rules.rank_score(500, 4.9, 0, 10)
