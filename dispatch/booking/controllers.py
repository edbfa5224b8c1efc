"""Booking: a worker's availability and calendar, and the proposals a resident books from."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from litestar import Request, get, post, put
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter
from msgspec import Struct

from dispatch.booking.schemas import (
    AvailabilityIn,
    AvailabilityOut,
    BookingOut,
    CalendarOut,
    CandidateOut,
    CandidatesOut,
    ClockRange,
    DateOverride,
    ExtraSlot,
    FreeSpan,
    WeeklyRange,
)
from dispatch.booking.service import BookingService, Schedule
from dispatch.core.errors import NotFound
from dispatch.identity.auth import require_roles, residents_only, workers_only
from dispatch.jobs.views import job_view_out
from dispatch.web.deps import principal_of
from dispatch.web.schemas import JobOut, Lat, Lng, Point, Skill, Window
from geo.shapes import wkb_to_latlng

residents_and_ops = require_roles("resident", "operator", "admin")


def availability_out(s: Schedule) -> AvailabilityOut:
    row = s.row
    home = wkb_to_latlng(row.home) if row.home is not None else None
    return AvailabilityOut(
        worker_id=row.worker_id,
        timezone=row.timezone,
        weekly=[WeeklyRange(w["day"], w["start"], w["end"]) for w in row.weekly],
        overrides=[
            DateOverride(o["date"], [ClockRange(x["start"], x["end"]) for x in o["slots"]])
            for o in row.overrides
        ],
        slots=[ExtraSlot(x.start, x.end) for x in s.rules.extra],
        buffer_min=row.buffer_min,
        min_notice_min=row.min_notice_min,
        max_jobs_per_day=row.max_jobs_per_day,
        home=Point(lat=home[0], lng=home[1]) if home else None,
        travel_radius_m=row.travel_radius_m,
        updated_at=row.updated_at,
    )


@put("/v1/workers/me/availability", guards=[workers_only], tags=["booking"])
async def put_availability(
    data: JSONBody[AvailabilityIn],
    request: Request[Any, Any, Any],
    booking: NamedDependency[BookingService],
) -> AvailabilityOut:
    """Set when you take bookings: weekly hours in your timezone, date overrides (no slots: a
    day off), one-off extra hours (`slots`), the buffer around each booking, the minimum
    notice, a daily limit, and how far from home you travel."""
    schedule = await booking.put_availability(
        principal_of(request),
        timezone=data.timezone,
        weekly=[(w.day, w.start, w.end) for w in data.weekly],
        overrides=[(o.date, [(x.start, x.end) for x in o.slots]) for o in data.overrides],
        extra=[(x.start, x.end) for x in data.slots],
        buffer_min=data.buffer_min,
        min_notice_min=data.min_notice_min,
        max_jobs_per_day=data.max_jobs_per_day,
        home=(data.home.lat, data.home.lng) if data.home else None,
        travel_radius_m=data.travel_radius_m,
    )
    return availability_out(schedule)


@get("/v1/workers/me/availability", guards=[workers_only], tags=["booking"])
async def get_availability(
    request: Request[Any, Any, Any], booking: NamedDependency[BookingService]
) -> AvailabilityOut:
    schedule = await booking.availability(principal_of(request))
    if schedule is None:
        raise NotFound("no availability set yet", code="availability_not_set")
    return availability_out(schedule)


@get("/v1/workers/me/calendar", guards=[workers_only], tags=["booking"])
async def calendar(
    request: Request[Any, Any, Any],
    booking: NamedDependency[BookingService],
    start: Annotated[datetime, QueryParameter(name="from")],
    end: Annotated[datetime, QueryParameter(name="to")],
) -> CalendarOut:
    """Your bookings and your free time (hours minus bookings and buffers) between `from` and
    `to` (at most 62 days)."""
    cal = await booking.calendar(principal_of(request), start, end)
    return CalendarOut(
        timezone=cal.timezone,
        bookings=[
            BookingOut(
                id=b.id,
                job_id=b.job_id,
                start=b.starts_at,
                end=b.ends_at,
                title=j.title,
                address=j.address,
            )
            for b, j in cal.bookings
        ],
        free=[FreeSpan(s.start, s.end) for s in cal.free],
    )


@get("/v1/bookings/candidates", guards=[residents_and_ops], tags=["booking"])
async def candidates(
    request: Request[Any, Any, Any],
    booking: NamedDependency[BookingService],
    lat: Annotated[Lat, QueryParameter()],
    lng: Annotated[Lng, QueryParameter()],
    start: Annotated[datetime, QueryParameter()],
    end: Annotated[datetime, QueryParameter()],
    duration_min: Annotated[int, QueryParameter(ge=15, le=720)],
    skill: Annotated[Skill | None, QueryParameter()] = None,
    community_id: Annotated[int | None, QueryParameter(ge=1, le=2**63 - 1)] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=50)] = 10,
) -> CandidatesOut:
    """Workers free for the whole `duration_min` somewhere in [`start`, `end`), verified,
    skilled and within their travel radius, best first, with their bookable start times; and
    how many were left out, by reason."""
    found = await booking.candidates(
        principal_of(request), lat=lat, lng=lng, skill=skill, start=start, end=end,
        duration_min=duration_min, community_id=community_id, limit=limit,
    )  # fmt: skip
    return CandidatesOut(
        candidates=[
            CandidateOut(
                worker_id=c.worker_id,
                name=c.name,
                rating=c.rating,
                rating_count=c.rating_count,
                distance_m=c.distance_m,
                starts=c.starts,
            )
            for c in found.candidates
        ],
        excluded=found.excluded,
        examined=found.examined,
        complete=found.complete,
    )


ROUTES = [put_availability, get_availability, calendar, candidates]


class RescheduleIn(Struct, forbid_unknown_fields=True):
    window: Window


@post(
    "/v1/jobs/{job_id:int}/reschedule", guards=[residents_only], status_code=200, tags=["booking"]
)
async def reschedule(
    job_id: FromPath[int],
    data: JSONBody[RescheduleIn],
    request: Request[Any, Any, Any],
    booking: NamedDependency[BookingService],
) -> JobOut:
    """Ask to move a confirmed booking into a new window: the worker's first free start there
    is proposed to them (`reschedule.status` `pending`) until they accept or decline."""
    view = await booking.propose_reschedule(
        principal_of(request), job_id, data.window.start, data.window.end
    )
    return job_view_out(view)


@post(
    "/v1/jobs/{job_id:int}/reschedule/accept", guards=[workers_only], status_code=200,
    tags=["booking"],
)  # fmt: skip
async def accept_reschedule(
    job_id: FromPath[int], request: Request[Any, Any, Any], booking: NamedDependency[BookingService]
) -> JobOut:
    """Take the proposed slot: the booking moves (the old slot is freed only if the new one is
    taken: else 409 `worker_unavailable` and it stays)."""
    return job_view_out(await booking.answer_reschedule(principal_of(request), job_id, True))


@post(
    "/v1/jobs/{job_id:int}/reschedule/decline", guards=[workers_only], status_code=200,
    tags=["booking"],
)  # fmt: skip
async def decline_reschedule(
    job_id: FromPath[int], request: Request[Any, Any, Any], booking: NamedDependency[BookingService]
) -> JobOut:
    """Turn the proposed slot down: the booking stays as it was."""
    return job_view_out(await booking.answer_reschedule(principal_of(request), job_id, False))


ROUTES += [reschedule, accept_reschedule, decline_reschedule]
