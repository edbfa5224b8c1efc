"""Wire types shared by controllers: msgspec Structs, validated on the way in."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from msgspec import Meta, Struct

from dispatch.core.money import CURRENCY_CODES
from dispatch.money.schemas import DisputeOut, PayOut

# PostgreSQL text cannot hold NUL, and no person's text needs it: refuse it at the door.
_TEXT = r"^[^\x00]*$"
# Characters that show nothing: whitespace, controls, zero-width and joiner characters, direction
# marks, invisible separators, variation selectors, fillers. A name or title must have at least
# one character outside them.
INVISIBLE = (
    r"\s\x00-\x1f\x7f-\x9f\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f"
    r"\u200b-\u200f\u2028-\u202f\u205f-\u206f\u3000\u3164\ufe00-\ufe0f\ufeff\uffa0"
)
VISIBLE_TEXT = rf"^[^\x00]*[^{INVISIBLE}][^\x00]*$"
"""Text with something to read in it (and no NUL)."""
Lat = Annotated[float, Meta(ge=-90, le=90, description="WGS84 latitude")]
Lng = Annotated[float, Meta(ge=-180, le=180, description="WGS84 longitude")]
Phone = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=40,
        description="a phone number: E.164 (`+86…`, no spaces) or as typed (spaces, dashes, "
        "brackets, a leading 00, full-width digits; a national number is read in the "
        "community's country). Normalized to E.164; not a valid number → 422 `invalid_phone`",
        examples=["+86 138 1234 5678"],
    ),
]
Name = Annotated[str, Meta(min_length=1, max_length=200, pattern=VISIBLE_TEXT)]
MAX_ID = 2**63 - 1
RFC3339 = (
    r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[Tt ]([01][0-9]|2[0-3]):[0-5][0-9]"
    r":[0-5][0-9](\.[0-9]{1,9})?([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])?$"
)
Timestamp = Annotated[
    datetime,
    Meta(
        description="RFC 3339 date and time, with its UTC offset (`2026-12-24T09:00:00+08:00`)",
        extra_json_schema={"format": "date-time", "pattern": RFC3339},
    ),
]
"""A point in time on the wire (msgspec's own schema says only "string" for it)."""
Id = Annotated[int, Meta(ge=1, le=MAX_ID)]


Timezone = Annotated[str, Meta(min_length=1, max_length=64, pattern=_TEXT)]
Category = Annotated[str, Meta(min_length=1, max_length=64, pattern=VISIBLE_TEXT)]
PersonName = Annotated[str, Meta(min_length=1, max_length=120, pattern=VISIBLE_TEXT)]
Description = Annotated[str, Meta(max_length=5000, pattern=_TEXT)]
Address = Annotated[str, Meta(max_length=500, pattern=_TEXT)]
Bio = Annotated[str, Meta(max_length=2000, pattern=_TEXT)]

Skill = Annotated[str, Meta(min_length=1, max_length=40, pattern=r"^[\w\-]+$")]
Cents = Annotated[int, Meta(ge=0, le=100_000_000)]
Currency = Literal[CURRENCY_CODES]  # type: ignore[valid-type]
"""An ISO 4217 currency code of money people pay with (`CNY`, `HKD`, `USD`, …)."""


class Point(Struct, forbid_unknown_fields=True):
    lat: Lat
    lng: Lng


class Problem(Struct, omit_defaults=True):
    status: int
    title: str
    detail: str
    code: str
    type: str = "about:blank"
    errors: list[dict[str, Any]] | None = None
    distance_m: float | None = None
    """`outside_geofence`: how far from the job the position was."""


class OtpRequest(Struct, forbid_unknown_fields=True):
    phone: Phone


class OtpSent(Struct):
    status: Literal["sent"]
    expires_in_s: int


class TokenRequest(Struct, forbid_unknown_fields=True):
    phone: Phone
    code: Annotated[str, Meta(pattern=r"^\d{4,8}$")]
    role: Literal["resident", "worker", "operator"]
    """`operator` only for a phone an admin made one (`POST /v1/admin/operators`): else 403
    `not_an_operator`."""


class TokenResponse(Struct):
    access_token: str
    user_id: int
    role: str
    token_type: str = "bearer"  # noqa: S105 - the OAuth token type, not a secret


class CommunityCreate(Struct, forbid_unknown_fields=True):
    name: Name
    center: Point
    radius_m: Annotated[int, Meta(ge=50, le=50_000)] | None = None
    boundary: dict[str, Any] | None = None
    timezone: Timezone | None = None
    dispatch: dict[str, Any] | None = None


class CommunityOut(Struct):
    id: int
    name: str
    center: Point
    radius_m: int | None
    boundary: dict[str, Any] | None
    timezone: str
    dispatch: dict[str, Any]
    cell_count: int


class Material(Struct, forbid_unknown_fields=True):
    name: Name
    cost_cents: Cents
    """Per unit."""
    quantity: Annotated[int, Meta(ge=1, le=10_000)] = 1


class Window(Struct, forbid_unknown_fields=True):
    start: Timestamp
    end: Timestamp


class JobCreate(Struct, forbid_unknown_fields=True):
    title: Name
    category: Category
    location: Point
    mode: Literal["grab", "booking"]
    price_cents: Cents
    description: Description = ""
    skills: Annotated[list[Skill], Meta(max_length=20)] = []
    address: Address | None = None
    window: Window | None = None
    currency: Currency = "CNY"
    materials: Annotated[list[Material], Meta(max_length=50)] = []
    insured: bool = False
    community_id: Id | None = None
    duration_min: Annotated[int, Meta(ge=15, le=720)] | None = None
    """A booking's length; it must fit in the window."""
    worker_id: Id | None = None
    """A booking for this worker (chosen from the proposals), asked first."""


class OffersSummary(Struct):
    wave: int
    pending: int = 0
    accepted: int = 0
    declined: int = 0
    expired: int = 0
    taken: int = 0
    withdrawn: int = 0


class Cancellation(Struct):
    by: str
    reason: str | None
    fee_cents: int
    at: Timestamp


class RescheduleOut(Struct):
    status: str
    """`pending` (the worker has not answered), `accepted` or `declined`."""
    start: Timestamp
    end: Timestamp
    """The slot proposed (the worker's first free start in the window asked for)."""
    window: Window
    proposed_at: Timestamp
    answered_at: Timestamp | None = None


class MaterialOut(Struct, omit_defaults=True):
    name: str
    cost_cents: int
    """Per unit."""
    quantity: int
    change_id: int | None = None
    """Set when the item came by an approved change order."""


class WorkerCard(Struct):
    """Who took a job, as its resident sees them."""

    id: int
    name: str
    rating: float | None
    """Shown rating (Bayesian average); None before the first review."""
    rating_count: int


class WorkerApproach(Struct):
    distance_m: int
    """From the worker's last position to the job, rounded up to 100 m."""
    at: Timestamp
    """When that position was taken."""


class JobOut(Struct):
    id: int
    status: str
    mode: str
    community_id: int
    resident_id: int
    worker_id: int | None
    title: str
    description: str
    category: str
    skills: list[str]
    location: Point
    address: str | None
    window: Window | None
    price_cents: int
    currency: str
    materials: list[MaterialOut]
    insured: bool
    created_at: Timestamp
    proxy_number: str | None = None
    review_reason: str | None = None
    offers: OffersSummary | None = None
    assignment_version: int | None = None
    """The fencing token the assigned worker must send with later steps."""
    cancellation: Cancellation | None = None
    duration_min: int | None = None
    scheduled_start: Timestamp | None = None
    scheduled_end: Timestamp | None = None
    """A booking's slot: the one asked for while it is open, the confirmed one once assigned."""
    compensation_cents: int | None = None
    """What a worker's late cancellation owes the resident."""
    reschedule: RescheduleOut | None = None
    start_pin: str | None = None
    """Four digits, shown to the resident alone once the job is assigned: the worker needs them
    to start."""
    pay: PayOut | None = None
    """The money in plain sight: the resident's total item by item, the worker's deductions and
    net (`dispatch.money.rules.pay`)."""
    confirmed_at: Timestamp | None = None
    dispute: DisputeOut | None = None
    worker: WorkerCard | None = None
    """Who took it, with their rating (shown to the resident)."""
    worker_approach: WorkerApproach | None = None
    """How far away the worker is while the resident waits (`GET /v1/jobs/{id}`, resident, an
    assigned job, a position no older than the community's `location_max_age_s`)."""


class OutboxOut(Struct):
    id: int
    channel: str
    kind: str
    to_user_id: int | None
    to_hint: str | None
    status: str
    body: str | None
    created_at: Timestamp
    attempts: int
    provider: str | None
    via: str | None = None
    """The channel that carried it: ws, push, sms, or held (no provider configured)."""
    provider_status: str | None = None
    last_error: str | None = None


class WorkerProfileIn(Struct, forbid_unknown_fields=True):
    name: PersonName
    skills: Annotated[list[Skill], Meta(max_length=20)]
    community_ids: Annotated[list[Id], Meta(max_length=20)]
    bio: Bio | None = None
    hourly_rate_cents: Annotated[int, Meta(ge=0, le=10_000_000)] | None = None


class WorkerOut(Struct):
    id: int
    name: str
    skills: list[str]
    community_ids: list[int]
    verified: bool
    verification: str
    rating: float | None
    """The shown rating: a Bayesian average (five imaginary reviews at 4.5 beside the counted
    ones); None before the first review."""
    online: bool
    bio: str | None = None
    hourly_rate_cents: int | None = None
    rating_count: int = 0
    """How many reviews count toward the rating."""


class VerificationIn(Struct, forbid_unknown_fields=True):
    legal_name: PersonName
    id_number: Annotated[str, Meta(min_length=4, max_length=40, pattern=r"^[0-9A-Za-z\-]+$")]


class PresenceIn(Struct, forbid_unknown_fields=True):
    status: Literal["online", "offline"]


class LocationIn(Struct, forbid_unknown_fields=True):
    lat: Lat
    lng: Lng
    accuracy_m: Annotated[float, Meta(ge=0, le=100_000)] | None = None
    recorded_at: Timestamp | None = None


class LocationsIn(Struct, forbid_unknown_fields=True):
    points: Annotated[list[LocationIn], Meta(min_length=1, max_length=500)]


class LocationsOut(Struct):
    accepted: int
    ignored: int
    """Not newer than the last accepted fix (out of order or repeated)."""
    rejected: list[dict[str, Any]]
    """`{index, code}` for each point that cannot be true."""


class NearbyOut(Struct):
    worker_id: int
    distance_m: float
    location: Point
    recorded_at: Timestamp
    name: str
    skills: list[str]
    rating: float | None


class CancelIn(Struct, forbid_unknown_fields=True):
    reason: Annotated[str, Meta(min_length=1, max_length=500, pattern=VISIBLE_TEXT)]
    assignment_version: Annotated[int, Meta(ge=1)] | None = None


class CompleteIn(Struct, forbid_unknown_fields=True):
    assignment_version: Annotated[int, Meta(ge=1)]
    materials: Annotated[list[Material], Meta(max_length=50)] | None = None


class AssignIn(Struct, forbid_unknown_fields=True):
    worker_id: Id


class AlertOut(Struct):
    id: int
    community_id: int
    kind: str
    severity: str
    job_id: int | None
    worker_id: int | None
    detail: dict[str, Any]
    created_at: Timestamp
    acked_at: Timestamp | None
