"""Safety on site: starting with the resident's PIN, and geofenced check-ins."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from litestar import Request, post
from litestar.params import FromPath, JSONBody
from msgspec import Meta, Struct

from dispatch.identity.auth import workers_only
from dispatch.jobs.views import job_view_out
from dispatch.safety.service import SafetyService
from dispatch.web.deps import principal_of
from dispatch.web.schemas import JobOut, Point, Timestamp


class StartIn(Struct, forbid_unknown_fields=True):
    pin: Annotated[str, Meta(min_length=1, max_length=8, pattern=r"^[0-9]+$")]
    location: Point
    assignment_version: Annotated[int, Meta(ge=1, le=2**31 - 1)]


class CheckinIn(Struct, forbid_unknown_fields=True):
    kind: Literal["arrival", "periodic", "departure"]
    location: Point
    accuracy_m: Annotated[float, Meta(ge=0, le=100_000)] | None = None


class CheckinOut(Struct):
    id: int
    kind: str
    distance_m: float
    """From the job's place."""
    created_at: Timestamp


@post("/v1/jobs/{job_id:int}/start", guards=[workers_only], status_code=200, tags=["safety"])
async def start_job(
    job_id: FromPath[int], data: JSONBody[StartIn], request: Request[Any, Any, Any],
    safety: SafetyService,
) -> JobOut:  # fmt: skip
    """Start with the PIN the resident gives at the door: `in_progress`; 422 `wrong_pin`; 409
    `pin_locked` after five wrong tries (operators are told); fenced by `assignment_version`."""
    view = await safety.start(principal_of(request), job_id, data.pin, data.assignment_version)
    return job_view_out(view)


@post("/v1/jobs/{job_id:int}/checkins", guards=[workers_only], status_code=201, tags=["safety"])
async def checkin(
    job_id: FromPath[int], data: JSONBody[CheckinIn], request: Request[Any, Any, Any],
    safety: SafetyService,
) -> CheckinOut:  # fmt: skip
    """`arrival` (within the community's `arrival_geofence_m`: else 422 `outside_geofence` with
    `distance_m`, or `low_accuracy`; it tells the resident), `periodic`, `departure`."""
    made = await safety.checkin(
        principal_of(request), job_id, data.kind, data.location.lat, data.location.lng,
        data.accuracy_m,
    )  # fmt: skip
    return CheckinOut(made.id, made.kind, made.distance_m, made.created_at)


ROUTES = [start_job, checkin]
