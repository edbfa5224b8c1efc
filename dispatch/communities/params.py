"""Community dispatch parameters: defaults, per-community overrides, validation."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

from dispatch.core.errors import Unprocessable

PositiveSeconds = Annotated[int, Meta(ge=1, le=86_400)]


class Wave(Struct, forbid_unknown_fields=True):
    radius_m: Annotated[int, Meta(ge=50, le=100_000)] | None = None
    """None: the whole community."""
    size: Annotated[int, Meta(ge=1, le=10_000)] | None = None
    """None: everyone eligible."""


class LadderStep(Struct, forbid_unknown_fields=True):
    after_min: Annotated[int, Meta(ge=0, le=1440)]
    """Minutes after the missed check-in's grace ran out."""
    action: Literal["remind", "sms", "call", "alert", "contacts"]


class DispatchParams(Struct, forbid_unknown_fields=True, kw_only=True):
    offer_ttl_s: PositiveSeconds = 20
    waves: Annotated[list[Wave], Meta(min_length=1, max_length=10)] = msgspec.field(
        default_factory=lambda: [Wave(1000, 3), Wave(2500, 10), Wave(None, None)]
    )
    location_max_age_s: PositiveSeconds = 120
    arrival_geofence_m: Annotated[int, Meta(ge=10, le=5000)] = 150
    night_hours: Annotated[
        list[Annotated[int, Meta(ge=0, le=23)]], Meta(min_length=2, max_length=2)
    ] = msgspec.field(default_factory=lambda: [22, 6])
    checkin_interval_min: Annotated[int, Meta(ge=1, le=1440)] = 30
    checkin_grace_min: Annotated[int, Meta(ge=0, le=240)] = 5
    proxy_grace_h: Annotated[int, Meta(ge=0, le=720)] = 24
    commission_bps: Annotated[int, Meta(ge=0, le=10_000)] = 1500
    """The platform's fee, a share of a job's price (never of its materials)."""
    insurance_bps: Annotated[int, Meta(ge=0, le=2_000)] = 300
    """The premium of an insured job, a share of its price, into the insurance pool."""
    auto_confirm_h: Annotated[int, Meta(ge=1, le=720)] = 72
    """A completed job the resident neither confirms nor disputes is released after this."""
    claim_window_d: Annotated[int, Meta(ge=1, le=90)] = 14
    offers_per_worker_hour: Annotated[int, Meta(ge=1, le=10_000)] | None = 60
    """At most this many grab offers a worker gets per hour in the community (None: no cap)."""
    min_accept_ms: Annotated[int, Meta(ge=0, le=60_000)] = 0
    """An accept sooner than this after the offer went out is refused (anti-bot; 0: off). The
    time is the server's send time, so a person's network delay counts toward it."""
    max_open_assignments: Annotated[int, Meta(ge=1, le=100)] | None = 5
    """A worker holding this many unfinished jobs cannot take another (None: no limit)."""
    booking_confirm_ttl_s: PositiveSeconds = 900
    reminder_before_min: Annotated[
        list[Annotated[int, Meta(ge=1, le=20_160)]], Meta(max_length=5)
    ] = msgspec.field(default_factory=lambda: [1440, 60])
    no_show_grace_min: Annotated[int, Meta(ge=0, le=240)] = 15
    free_cancel_before_h: Annotated[int, Meta(ge=0, le=720)] = 24
    late_cancel_fee_bps: Annotated[int, Meta(ge=0, le=10_000)] = 5000
    travel_speed_kmh: Annotated[float, Meta(gt=0, le=200)] = 20.0
    safety_categories: Annotated[
        list[Annotated[str, Meta(min_length=1, max_length=64)]], Meta(max_length=50)
    ] = msgspec.field(default_factory=list)
    """Categories whose jobs need periodic check-ins at any hour."""
    overrun_min: Annotated[int, Meta(ge=1, le=1440)] = 30
    """A job still in progress this long after its expected end asks the worker once."""
    typical_duration_min: dict[
        Annotated[str, Meta(min_length=1, max_length=64)], Annotated[int, Meta(ge=1, le=1440)]
    ] = msgspec.field(default_factory=dict)
    """A grab job's expected length by category (a booking's is its booked duration)."""
    default_duration_min: Annotated[int, Meta(ge=1, le=1440)] = 120
    """The expected length of a grab job whose category has no typical duration."""
    operators_phone: Annotated[str, Meta(pattern=r"^\+[1-9][0-9]{6,14}$")] | None = None
    """The operators' line, given to a worker's emergency contacts when the ladder reaches them."""
    checkin_ladder: Annotated[list[LadderStep], Meta(min_length=1, max_length=10)] = msgspec.field(
        default_factory=lambda: [
            LadderStep(0, "remind"), LadderStep(5, "sms"), LadderStep(10, "call"),
            LadderStep(15, "alert"), LadderStep(20, "contacts"),
        ]
    )  # fmt: skip


DEFAULTS = msgspec.to_builtins(DispatchParams())


def validate_overrides(overrides: dict[str, Any]) -> dict[str, Any]:
    """Check overrides against the schema; return them as stored (only the keys given)."""
    try:
        msgspec.convert({**DEFAULTS, **overrides}, DispatchParams)
    except msgspec.ValidationError as exc:
        raise Unprocessable(f"dispatch: {exc}", code="invalid_dispatch_params") from exc
    return overrides


def effective(overrides: dict[str, Any]) -> DispatchParams:
    return msgspec.convert({**DEFAULTS, **overrides}, DispatchParams)
