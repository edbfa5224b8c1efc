"""Safety on site, in plain Python: the start PIN and how many wrong tries lock it, whether a
position is an arrival (inside the community's geofence around the job, with a fix precise
enough to tell), which jobs must check in, and when each step of the escalation ladder is due."""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from dispatch.core.errors import Conflict, Unprocessable

PIN_DIGITS = 4
MAX_PIN_TRIES = 5
CHECKIN_KINDS = ("arrival", "periodic", "departure")


def new_pin() -> str:
    """Four random digits (the resident gives them to the worker at the door)."""
    return f"{secrets.randbelow(10**PIN_DIGITS):0{PIN_DIGITS}d}"


def check_pin(expected: str | None, given: str, failures: int) -> bool:
    """True for the right PIN; 409 `pin_locked` once `MAX_PIN_TRIES` wrong ones were made."""
    if failures >= MAX_PIN_TRIES:
        raise Conflict("too many wrong PINs: an operator has been told", code="pin_locked")
    return expected is not None and secrets.compare_digest(expected, given)


def check_arrival(distance_m: float, accuracy_m: float | None, geofence_m: int) -> None:
    """An arrival is within `geofence_m` of the job (the boundary counts as inside) by a fix at
    least that precise; else 422 `low_accuracy` or `outside_geofence` (with the distance)."""
    if accuracy_m is not None and accuracy_m > geofence_m:
        raise Unprocessable(
            f"the position is only accurate to {accuracy_m:.0f} m; {geofence_m} m is needed",
            code="low_accuracy",
        )
    if distance_m > geofence_m:
        raise Unprocessable(
            f"{distance_m:.0f} m from the job; arrival counts within {geofence_m} m",
            code="outside_geofence",
            distance_m=round(distance_m, 1),
        )


def at_night(when: datetime, timezone: str, night_hours: Sequence[int]) -> bool:
    """Is `when` inside the community's night (local hours [start, end), wrapping midnight)?"""
    start, end = night_hours[0], night_hours[1]
    hour = when.astimezone(ZoneInfo(timezone)).hour
    return start <= hour < end if start <= end else hour >= start or hour < end


def needs_checkins(
    *, category: str, started: datetime, timezone: str, night_hours: Sequence[int],
    safety_categories: Sequence[str],
) -> bool:  # fmt: skip
    """Jobs at night or in a safety category are checked on every `checkin_interval_min`."""
    return category in safety_categories or at_night(started, timezone, night_hours)


def next_checkin_due(last: datetime, interval_min: int) -> datetime:
    """When the next periodic check-in is due after the last one (or the start)."""
    return last + timedelta(minutes=interval_min)


def missed_at(due: datetime, grace_min: int) -> datetime:
    """When a check-in due at `due` counts as missed: the ladder's steps count from here."""
    return due + timedelta(minutes=grace_min)


def step_due(base: datetime, after_min: int) -> datetime:
    return base + timedelta(minutes=after_min)


def expected_end(
    started: datetime,
    *,
    booked_min: int | None,
    category: str,
    typical_min: Mapping[str, int],
    default_min: int,
) -> datetime:
    """When a job should be over: its booked duration, else its category's typical one."""
    minutes = booked_min or typical_min.get(category) or default_min
    return started + timedelta(minutes=minutes)


def overrun_due(end: datetime, overrun_min: int) -> datetime:
    """When a job still in progress asks the worker whether all is well."""
    return end + timedelta(minutes=overrun_min)


def coarse_area(lat: float, lng: float) -> str:
    """A place to within about a kilometre (two decimals), for people outside the job."""
    return f"{lat:.2f},{lng:.2f}"
