"""Safety on site: starting with the resident's PIN, and geofenced check-ins."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from litestar import Request, get, post, put
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody
from msgspec import Meta, Struct

from dispatch.identity.auth import workers_only
from dispatch.jobs.views import job_view_out
from dispatch.models import Timer
from dispatch.safety.rules import MAX_PIN_TRIES
from dispatch.safety.service import Emergencies, SafetyService
from dispatch.web.deps import principal_of
from dispatch.web.schemas import VISIBLE_TEXT, JobOut, Phone, Point, Timestamp


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
    safety: NamedDependency[SafetyService],
) -> JobOut:  # fmt: skip
    """Start with the PIN the resident gives at the door: `in_progress`; 422 `wrong_pin`; 409
    `pin_locked` after five wrong tries (operators are told); fenced by `assignment_version`."""
    view = await safety.start(principal_of(request), job_id, data.pin, data.assignment_version)
    return job_view_out(view)


@post("/v1/jobs/{job_id:int}/checkins", guards=[workers_only], status_code=201, tags=["safety"])
async def checkin(
    job_id: FromPath[int], data: JSONBody[CheckinIn], request: Request[Any, Any, Any],
    safety: NamedDependency[SafetyService],
) -> CheckinOut:  # fmt: skip
    """`arrival` (within the community's `arrival_geofence_m`: else 422 `outside_geofence` with
    `distance_m`, or `low_accuracy`; it tells the resident), `periodic`, `departure`."""
    made = await safety.checkin(
        principal_of(request), job_id, data.kind, data.location.lat, data.location.lng,
        data.accuracy_m,
    )  # fmt: skip
    return CheckinOut(made.id, made.kind, made.distance_m, made.created_at)


class ContactIn(Struct, forbid_unknown_fields=True):
    name: Annotated[str, Meta(min_length=1, max_length=120, pattern=VISIBLE_TEXT)]
    phone: Phone


class ContactsIn(Struct, forbid_unknown_fields=True):
    contacts: Annotated[list[ContactIn], Meta(max_length=3)]


class ContactOut(Struct):
    name: str
    phone_hint: str
    """`…5678`: the number itself is never shown again."""


class SosIn(Struct, forbid_unknown_fields=True):
    location: Point | None = None
    note: Annotated[str, Meta(max_length=500, pattern=r"^[^\x00]*$")] | None = None


class SosOut(Struct):
    alert_id: int


@put("/v1/me/emergency-contacts", tags=["safety"])
async def set_contacts(
    data: JSONBody[ContactsIn],
    request: Request[Any, Any, Any],
    emergencies: NamedDependency[Emergencies],
) -> list[ContactOut]:
    """Up to three people to text when you press SOS; shown back as hints only."""
    shown = await emergencies.set_contacts(
        principal_of(request), [(c.name, c.phone) for c in data.contacts]
    )
    return [ContactOut(c.name, c.phone_hint) for c in shown]


@get("/v1/me/emergency-contacts", tags=["safety"])
async def get_contacts(
    request: Request[Any, Any, Any], emergencies: NamedDependency[Emergencies]
) -> list[ContactOut]:
    return [
        ContactOut(c.name, c.phone_hint) for c in await emergencies.contacts(principal_of(request))
    ]


@post("/v1/jobs/{job_id:int}/sos", status_code=202, tags=["safety"])
async def sos(
    job_id: FromPath[int], data: JSONBody[SosIn], request: Request[Any, Any, Any],
    emergencies: NamedDependency[Emergencies],
) -> SosOut:  # fmt: skip
    """SOS by the job's resident or worker: a critical alert for operators at once, a text to
    your emergency contacts with the location; presses within a minute are one SOS."""
    where = (data.location.lat, data.location.lng) if data.location else None
    return SosOut(await emergencies.sos(principal_of(request), job_id, where, data.note))


class PinState(Struct):
    set: bool
    locked: bool
    wrong_tries: int


class CheckinShown(Struct):
    kind: str
    source: str
    distance_m: float | None
    at: Timestamp


class SosShown(Struct):
    alert_id: int
    role: str
    presses: int
    at: Timestamp


class LadderShown(Struct):
    step: str
    """The action: `remind`, `sms`, `call`, `alert`, `contacts`."""
    reason: str
    """`periodic` (a missed check-in) or `overrun` (the job went on long after its end)."""
    due_at: Timestamp
    done_at: Timestamp | None
    outcome: str
    """`pending`, `stopped` (a check-in came first), `moot` (the job had ended), or what was
    done: `reminded`, `texted`, `called`, `alerted`, `contacts_texted:N`, `no_phone`,
    `no_contacts`."""


class SafetyOut(Struct, kw_only=True):
    job_id: int
    status: str
    pin: PinState
    arrived_at: Timestamp | None
    started_at: Timestamp | None
    requires_checkins: bool
    """At night (the community's `night_hours`) or in one of its `safety_categories`."""
    next_checkin_due: Timestamp | None
    checkins: list[CheckinShown]
    ladder: list[LadderShown]
    sos: list[SosShown]


@get("/v1/jobs/{job_id:int}/safety", tags=["safety"])
async def safety_timeline(
    job_id: FromPath[int], request: Request[Any, Any, Any], safety: NamedDependency[SafetyService]
) -> SafetyOut:
    """The job's safety timeline: PIN state, check-ins with their distance from the job, the
    next check-in due, SOS (participants and the community's operators)."""
    t = await safety.timeline(principal_of(request), job_id)
    job = t.job
    return SafetyOut(
        job_id=job.id, status=job.status,
        pin=PinState(job.start_pin is not None, job.pin_failures >= MAX_PIN_TRIES,
                     job.pin_failures),
        arrived_at=job.arrived_at, started_at=job.started_at,
        requires_checkins=t.requires_checkins, next_checkin_due=t.next_checkin_due,
        checkins=[CheckinShown(c.kind, c.source, c.distance_m, c.created_at) for c in t.checkins],
        ladder=[_ladder_shown(s) for s in t.ladder],
        sos=[SosShown(s.alert_id, s.role, s.presses, s.created_at) for s in t.sos],
    )  # fmt: skip


def _ladder_shown(timer: Timer) -> LadderShown:
    if timer.cancelled_at is not None:
        outcome, done = "stopped", timer.cancelled_at
    elif timer.fired_at is not None:
        outcome, done = str(timer.payload.get("outcome", "done")), timer.fired_at
    else:
        outcome, done = "pending", None
    p = timer.payload
    return LadderShown(
        step=str(p.get("action", "")), reason=str(p.get("reason", "periodic")),
        due_at=timer.due_at, done_at=done, outcome=outcome,
    )  # fmt: skip


ROUTES = [start_job, checkin, set_contacts, get_contacts, sos, safety_timeline]
