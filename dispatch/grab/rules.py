"""Grab-order rules as plain functions: the job state machine, wave sizes and reach, who may be
offered a job, and what cancelling costs. No I/O here; the dispatcher arranges I/O around these."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from dispatch.communities.params import Wave
from dispatch.core.errors import Conflict
from geo.areas import ServiceArea
from geo.distance import haversine_m

WHOLE_COMMUNITY_WAVE_LIMIT = 500
"""A wave of unlimited size still offers to at most this many workers at once."""

# Which statuses a job may move to from each status.
TRANSITIONS: dict[str, frozenset[str]] = {
    "under_review": frozenset({"open", "cancelled"}),
    "open": frozenset({"assigned", "cancelled", "unfilled"}),
    "unfilled": frozenset({"open", "assigned", "cancelled"}),
    "assigned": frozenset({"open", "assigned", "in_progress", "completed", "cancelled"}),
    "in_progress": frozenset({"completed", "cancelled", "disputed"}),
    "completed": frozenset({"confirmed", "disputed"}),
    "confirmed": frozenset(),
    "cancelled": frozenset(),
    "disputed": frozenset({"confirmed", "cancelled"}),
}


def check_transition(current: str, target: str) -> None:
    if target not in TRANSITIONS.get(current, frozenset()):
        raise Conflict(f"a job that is {current} cannot become {target}", code="invalid_transition")


def wave_reach_m(wave: Wave, area: ServiceArea, lat: float, lng: float) -> float:
    """How far a wave looks: its radius, or for a whole-community wave, the farthest the area
    reaches from the job (so every worker inside the community is within it)."""
    if wave.radius_m is not None:
        return float(wave.radius_m)
    if area.polygon is not None:
        return max(haversine_m(lat, lng, y, x) for x, y in area.polygon.exterior.coords) + 1.0
    assert area.radius_m is not None
    return haversine_m(lat, lng, area.center_lat, area.center_lng) + area.radius_m + 1.0


def wave_size(wave: Wave) -> int:
    return wave.size if wave.size is not None else WHOLE_COMMUNITY_WAVE_LIMIT


RANKING_POOL = 3
"""A wave ranks the nearest `RANKING_POOL` times its size of the candidates within its reach (at
least 30, at most the whole-community limit): enough for rating, reliability and exposure to
matter, few enough that the live index's answer stays small."""


def ranking_pool(size: int) -> int:
    return min(max(RANKING_POOL * size, 30), WHOLE_COMMUNITY_WAVE_LIMIT)


class AcceptRefused(Conflict):
    """An accept the anti-bot rules refuse; `counter` names the worker's column that counts
    these refusals for operators (`workers.fast_accepts`, `workers.open_refusals`)."""

    def __init__(self, detail: str, *, code: str, counter: str) -> None:
        super().__init__(detail, code=code)
        self.counter = counter


def too_fast(min_accept_ms: int) -> AcceptRefused:
    return AcceptRefused(
        f"an offer can be taken {min_accept_ms} ms after it is sent, not sooner",
        code="accept_too_fast", counter="fast_accepts",
    )  # fmt: skip


def too_many_open(held: int, limit: int) -> AcceptRefused:
    return AcceptRefused(
        f"you hold {held} unfinished jobs; finish one first (at most {limit} at once)",
        code="too_many_open_assignments", counter="open_refusals",
    )  # fmt: skip


SUSPECT_AT = 3
"""Operators are alerted when a worker's too-fast accepts reach this, and each tenth after."""


def suspicious(fast_accepts: int) -> bool:
    return fast_accepts == SUSPECT_AT or (fast_accepts > 0 and fast_accepts % 10 == 0)


@dataclass(frozen=True)
class CancellationRule:
    free_before_assignment: bool = True
    grace_after_assignment: timedelta = timedelta(minutes=3)
    fee_bps: int = 1000
    min_fee_cents: int = 500


def cancellation_fee(
    *,
    status: str,
    cancelled_by: str,
    price_cents: int,
    assigned_at: datetime | None,
    now: datetime,
    rule: CancellationRule = CancellationRule(),
) -> int:
    """What a resident owes for cancelling: nothing before a worker is on the way or within a
    short grace after assignment; after that a share of the price (at least a minimum, never
    more than the price) for the worker's wasted trip. Workers cancelling owe no money."""
    if cancelled_by != "resident" or status in ("under_review", "open", "unfilled"):
        return 0
    if assigned_at is not None and now - assigned_at <= rule.grace_after_assignment:
        return 0
    fee = max(rule.min_fee_cents, price_cents * rule.fee_bps // 10_000)
    return min(fee, price_cents)
