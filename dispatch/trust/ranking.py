"""Who is offered a grab job first, and how a worker's rating is shown: plain Python, no I/O.

A wave looks at every available, skilled worker inside its radius (the live index's nearest
first) and orders them by a score, lower first, of four parts:

- **distance**: `DISTANCE_WEIGHT` x the share of the wave's radius (0 at the job, 4 at its edge):
  near matters most, but inside one wave it is not everything;
- **rating**: `RATING_WEIGHT` x the stars below 5 of the shown rating (`shown_rating`, a Bayesian
  average; no reviews yet: the prior, 4.5): a 4.9 costs 0.15, a 4.5 costs 0.75, a 3.0 costs 3;
- **reliability**: `DECLINE_WEIGHT` x the share of the worker's last `RECENT_OFFERS` answered
  offers they did not take (declined or let expire; Laplace-smoothed, so a newcomer counts 0.5),
  plus `FAILURE_WEIGHT` x the share of their jobs that ended in a no-show or a late cancellation;
- **exposure**: `EXPOSURE_WEIGHT` x the share of the hourly cap (`offers_per_worker_hour`) the
  worker has received in this community in the last hour (with no cap: per
  `EXPOSURE_SCALE` offers).

A worker who has had `offers_per_worker_hour` offers in the community in the last hour gets no
more there until the hour rolls on (`capped`), so one top-rated worker near a busy corner does
not receive every offer. Among workers whose scores fall in the same `ROTATION_BAND` band the
one offered least in the last hour goes first, then the one offered least recently: similar
workers take turns.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

RATING_PRIOR_MEAN = 4.5
RATING_PRIOR_WEIGHT = 5
"""The prior of the shown rating: five imaginary reviews at 4.5 stand beside the real ones."""

DISTANCE_WEIGHT = 4.0
RATING_WEIGHT = 1.5
DECLINE_WEIGHT = 2.0
FAILURE_WEIGHT = 6.0
EXPOSURE_WEIGHT = 2.0
EXPOSURE_SCALE = 60
RECENT_OFFERS = 50
"""How many of a worker's latest answered offers their acceptance is read from."""
ROTATION_BAND = 0.5


def shown_rating(rating_sum: int, rating_count: int) -> float | None:
    """A Bayesian average: `RATING_PRIOR_WEIGHT` imaginary reviews at `RATING_PRIOR_MEAN` stand
    beside the real ones, so one 5-star review (4.58) does not outrank two hundred at 4.9
    (4.89). None before the first review."""
    if rating_count == 0:
        return None
    prior = RATING_PRIOR_MEAN * RATING_PRIOR_WEIGHT
    return round((prior + rating_sum) / (RATING_PRIOR_WEIGHT + rating_count), 2)


@dataclass(frozen=True, slots=True)
class Record:
    """What ranking knows of one candidate."""

    worker_id: int
    distance_m: float
    rating_sum: int = 0
    rating_count: int = 0
    answered: int = 0
    """Of the worker's last `RECENT_OFFERS` answered offers (accepted, declined, expired)..."""
    accepted: int = 0
    """... how many they took."""
    jobs_done: int = 0
    no_shows: int = 0
    late_cancels: int = 0
    recent: int = 0
    """Offers in this community in the last hour."""
    last_offer_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Score:
    distance: float
    rating: float
    reliability: float
    exposure: float

    @property
    def total(self) -> float:
        return round(self.distance + self.rating + self.reliability + self.exposure, 3)

    def parts(self) -> dict[str, float]:
        """The score as the dispatch log shows it."""
        return {
            "distance": round(self.distance, 3),
            "rating": round(self.rating, 3),
            "reliability": round(self.reliability, 3),
            "exposure": round(self.exposure, 3),
            "total": self.total,
        }


def score(r: Record, reach_m: float, cap: int | None) -> Score:
    stars = shown_rating(r.rating_sum, r.rating_count)
    stars = RATING_PRIOR_MEAN if stars is None else stars
    took = (r.accepted + 1) / (r.answered + 2)
    failures = r.no_shows + r.late_cancels
    failed = failures / (failures + r.jobs_done) if failures else 0.0
    return Score(
        distance=DISTANCE_WEIGHT * min(1.0, r.distance_m / reach_m) if reach_m > 0 else 0.0,
        rating=RATING_WEIGHT * (5 - stars),
        reliability=DECLINE_WEIGHT * (1 - took) + FAILURE_WEIGHT * failed,
        exposure=EXPOSURE_WEIGHT * min(1.0, r.recent / (cap or EXPOSURE_SCALE)),
    )


@dataclass(frozen=True, slots=True)
class Ranked:
    record: Record
    score: Score
    capped: bool


def order_key(
    total: float, recent: int, last_offer_ts: float | None, worker_id: int, capped: bool
) -> tuple:
    """The offer order: uncapped first; by score band; inside a band the worker offered least
    in the last hour, then least recently (rotation); then score and id."""
    last = -math.inf if last_offer_ts is None else last_offer_ts
    return (capped, math.floor(total / ROTATION_BAND), recent, last, total, worker_id)


def rank(records: Iterable[Record], reach_m: float, cap: int | None) -> list[Ranked]:
    """Every candidate in offer order (`order_key`), the capped ones (who get none) last."""

    def key(x: Ranked) -> tuple:
        last = x.record.last_offer_at.timestamp() if x.record.last_offer_at else None
        return order_key(x.score.total, x.record.recent, last, x.record.worker_id, x.capped)

    ranked = [
        Ranked(r, score(r, reach_m, cap), cap is not None and r.recent >= cap) for r in records
    ]
    return sorted(ranked, key=key)


def pick(
    records: Sequence[Record],
    already_offered: Iterable[int],
    resident_id: int,
    size: int,
    reach_m: float,
    cap: int | None,
) -> tuple[list[Ranked], list[Ranked]]:
    """The wave's offerees (at most `size`, none offered this job before, not the resident,
    none capped) and every candidate ranked (for the dispatch log)."""
    skip = set(already_offered) | {resident_id}
    ranked = rank((r for r in records if r.worker_id not in skip), reach_m, cap)
    return [x for x in ranked if not x.capped][:size], ranked
