"""Scheduled booking: workers' availability and calendars, and the proposals residents choose a
worker from. Each public call is one transaction; the calendar arithmetic is `rules.py`.

Proposals walk the community's workers nearest first (a GiST index on each availability's base
point) and stop once the list is full and no farther worker could rank above its last entry
(a worker's rank score is at least their distance in km): so the cost follows the list's length,
not the community's size. The excluded are counted among the workers examined that way.
"""

from __future__ import annotations

import json
import math
from bisect import insort
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import select, text, update
from sqlalchemy.dialects.postgresql import Range, insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dispatch.booking import rules
from dispatch.booking.rules import Booked, Span
from dispatch.communities.service import CommunityService, CommunityView
from dispatch.core import texts
from dispatch.core.errors import Conflict, Forbidden, Unprocessable, WorkerUnavailable
from dispatch.identity.principal import Principal
from dispatch.infra.clock import Clock
from dispatch.infra.outbox import tell
from dispatch.infra.timers import arm, disarm, lock_row
from dispatch.jobs.queries import JobView, job_view
from dispatch.models import Availability, Booking, Job, Timer, Worker
from dispatch.models.base import get_row
from dispatch.trust.ranking import shown_rating
from dispatch.workers.service import WorkerService
from geo.distance import EARTH_RADIUS_M
from geo.shapes import point_to_wkb, wkb_to_latlng

MAX_CALENDAR = timedelta(days=62)
MAX_WINDOW = timedelta(days=14)
DISTANCE_ROUNDING_M = 100
MAX_EXAMINED = 200
"""A proposal looks at no more than this many of the nearest workers (`complete` says whether
that was all of them): past it, a longer walk costs every resident time for workers farther
than they would choose."""


def as_utc(t: datetime) -> datetime:
    """An instant as aware UTC (a time sent without an offset is taken as UTC)."""
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def check_span(start: datetime, end: datetime, longest: timedelta, what: str) -> Span:
    span = Span(as_utc(start), as_utc(end))
    if span.end <= span.start:
        raise Unprocessable(f"the {what} ends before it starts", code="invalid_window")
    if span.end - span.start > longest:
        raise Unprocessable(
            f"the {what} is longer than {longest.days} days", code="window_too_long"
        )
    return span


@dataclass(frozen=True)
class Schedule:
    """A worker's stored availability with its rules object (parsed once per version)."""

    row: Availability
    rules: rules.Availability


@dataclass(frozen=True)
class Calendar:
    timezone: str
    bookings: list[tuple[Booking, Job]]
    free: list[Span]


@dataclass(frozen=True)
class Candidate:
    worker_id: int
    name: str
    rating: float | None
    rating_count: int
    distance_m: float
    starts: list[datetime]
    score: float
    exact_distance_m: float
    """For dispatch's own use (offers show workers their distance to the job); never shown
    to residents."""


@dataclass(frozen=True)
class Proposals:
    candidates: list[Candidate]
    excluded: dict[str, int]
    examined: int
    complete: bool


def stored_rules(row: Any, home: tuple[float, float] | None = None) -> rules.Availability:
    """A stored availability (an ORM row, or a plain row with its home as `home`) as rules."""
    if home is None and getattr(row, "home", None) is not None:
        home = wkb_to_latlng(row.home)
    return rules.availability(
        timezone=row.timezone,
        weekly=[(w["day"], w["start"], w["end"]) for w in row.weekly],
        overrides=[
            (o["date"], [(s["start"], s["end"]) for s in o["slots"]]) for o in row.overrides
        ],
        extra=[
            (datetime.fromisoformat(e["start"]), datetime.fromisoformat(e["end"]))
            for e in row.extra
        ],
        buffer_min=row.buffer_min,
        min_notice_min=row.min_notice_min,
        max_jobs_per_day=row.max_jobs_per_day,
        home=home,
        travel_radius_m=row.travel_radius_m,
    )


# The workers to judge, with everything judging them needs but their parsed schedule, in one
# statement: the cheap reasons (unverified, unskilled, too far: `cheap`) are decided here, and
# only the others' bookings come back, as arrays (a row a booking, through the ORM's result
# machinery, cost ~4 ms a proposal at 10,000 workers; three round trips became one).
# Nearest first by each availability's base point: the GiST index's KNN scan first, then the
# community's members among them (joining first made PostgreSQL sort the whole community before
# its statistics were fresh: 24 ms against 4 at 10,000 workers). `scan` is a few times `limit`
# because a worker may serve other communities. The bookings are those that can touch the
# window: within a day of it where the worker has a daily limit (the day's count needs them
# all), else only those whose gap to the window is within the buffer plus an upper bound of the
# travel (`rules.blocked` skips the rest anyway, and decides exactly).
_JUDGE = """
WITH walk AS (
  SELECT a.worker_id, w.name, w.verification, w.skills, w.rating_sum, w.rating_count,
         w.no_shows, w.jobs_done, a.travel_radius_m, a.updated_at, a.buffer_min,
         a.max_jobs_per_day, a.timezone, a.min_notice_min, a.weekly, a.overrides, a.extra,
         a.home, a.knn, ST_Distance(a.home, CAST(:pt AS geography), false) AS d
  FROM (SELECT worker_id, home, travel_radius_m, updated_at, buffer_min, max_jobs_per_day,
               timezone, min_notice_min, weekly, overrides, extra, {knn} AS knn
        FROM availabilities {pick}) a
  JOIN worker_communities wc ON wc.worker_id = a.worker_id AND wc.community_id = :community_id
  JOIN workers w ON w.user_id = a.worker_id
  ORDER BY a.knn LIMIT :limit
), judged AS (
  SELECT walk.*, CASE
    WHEN verification IS DISTINCT FROM 'verified' THEN 'unverified'
    WHEN NOT coalesce(skills, '{{}}') @> CAST(:skills AS text[]) THEN 'unskilled'
    WHEN travel_radius_m IS NOT NULL AND d > travel_radius_m THEN 'too_far'
  END AS cheap,
  (buffer_min + 2) * interval '1 minute' AS pad FROM walk
)
SELECT j.worker_id, j.name, j.rating_sum, j.rating_count, j.no_shows, j.jobs_done, j.d,
       j.cheap, j.updated_at, bk.starts, bk.ends, bk.lats, bk.lngs,
       CASE WHEN j.cheap IS NULL THEN json_build_array(
         j.timezone, j.weekly, j.overrides, j.extra, j.buffer_min, j.min_notice_min,
         j.max_jobs_per_day, j.travel_radius_m, ST_Y(j.home::geometry), ST_X(j.home::geometry)
       )::text END AS schedule
FROM judged j
LEFT JOIN LATERAL (
  SELECT array_agg(b.starts_at) AS starts, array_agg(b.ends_at) AS ends,
         array_agg(b.lat) AS lats, array_agg(b.lng) AS lngs
  FROM bookings b
  WHERE j.cheap IS NULL AND b.active AND b.worker_id = j.worker_id
    AND b.starts_at < CAST(:until AS timestamptz) AND b.ends_at > CAST(:since AS timestamptz)
    AND (j.max_jobs_per_day IS NOT NULL OR (
      b.starts_at <= CAST(:window_end AS timestamptz) + j.pad + CAST(:pad_per_deg AS interval)
                     * (abs(b.lat - CAST(:lat AS float8)) + abs(b.lng - CAST(:lng AS float8)))
      AND b.ends_at >= CAST(:window_start AS timestamptz) - j.pad - CAST(:pad_per_deg AS interval)
                       * (abs(b.lat - CAST(:lat AS float8)) + abs(b.lng - CAST(:lng AS float8)))))
) bk ON true
ORDER BY j.knn
"""
_NEAREST = text(
    _JUDGE.format(
        knn="home <-> CAST(:pt AS geography)",
        pick="ORDER BY home <-> CAST(:pt AS geography) LIMIT :scan",
    )
)
_ONE = text(_JUDGE.format(knn="0.0", pick="WHERE worker_id = :worker_id"))
_BOOKED = text("""
SELECT b.worker_id, b.starts_at, b.ends_at, b.lat, b.lng FROM bookings b
WHERE b.active AND b.worker_id = ANY(CAST(:ids AS bigint[]))
  AND b.starts_at < :until AND b.ends_at > :since AND b.id <> :exclude
""")


def judged_bookings(r: Any) -> list[Booked]:
    """The bookings of a row of `_NEAREST` or `_ONE`."""
    if r.starts is None:
        return []
    return [
        Booked(Span(s, e), la, ln)
        for s, e, la, ln in zip(r.starts, r.ends, r.lats, r.lngs, strict=True)
    ]


class BookingService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        communities: CommunityService,
        workers: WorkerService,
        clock: Clock | None = None,
    ) -> None:
        self.sessions = sessions
        self.communities = communities
        self.workers = workers
        self.clock = clock or Clock()
        self._parsed: dict[int, tuple[datetime, rules.Availability]] = {}

    def now(self) -> datetime:
        return self.clock.now()

    # --- availability ----------------------------------------------------------------------

    async def put_availability(
        self,
        who: Principal,
        *,
        timezone: str | None,
        weekly: Sequence[tuple[str, str, str]],
        overrides: Sequence[tuple[str, Sequence[tuple[str, str]]]],
        extra: Sequence[tuple[datetime, datetime]],
        buffer_min: int | None,
        min_notice_min: int | None,
        max_jobs_per_day: int | None,
        home: tuple[float, float] | None,
        travel_radius_m: int | None,
    ) -> Schedule:
        """Replace the caller's availability (422 with a code for a schedule that cannot be
        meant; 409 `no_profile` before a worker profile exists)."""
        async with self.sessions.begin() as session:
            worker = await session.get(Worker, who.user_id)
            if worker is None:
                raise Conflict(
                    "create a worker profile first (PUT /v1/workers/me)", code="no_profile"
                )
            served = await self.workers.communities_of(session, who.user_id)
            first = await self.communities.get(session, served[0]) if served else None
            zone = timezone or (first.timezone if first else "UTC")
            if home is None:
                home = await self._last_position(worker, served)
                if home is None and first is not None:
                    home = first.center
            checked = rules.availability(
                timezone=zone,
                weekly=weekly,
                overrides=overrides,
                extra=extra,
                buffer_min=rules.DEFAULT_BUFFER_MIN if buffer_min is None else buffer_min,
                min_notice_min=(
                    rules.DEFAULT_MIN_NOTICE_MIN if min_notice_min is None else min_notice_min
                ),
                max_jobs_per_day=max_jobs_per_day,
                home=home,
                travel_radius_m=travel_radius_m,
            )
            values: dict[str, Any] = {
                "timezone": zone,
                "weekly": [{"day": d, "start": s, "end": e} for d, s, e in weekly],
                "overrides": [
                    {"date": d, "slots": [{"start": s, "end": e} for s, e in slots]}
                    for d, slots in overrides
                ],
                "extra": [
                    {"start": s.start.isoformat(), "end": s.end.isoformat()} for s in checked.extra
                ],
                "buffer_min": checked.buffer_min,
                "min_notice_min": checked.min_notice_min,
                "max_jobs_per_day": max_jobs_per_day,
                "home": point_to_wkb(*home) if home is not None else None,
                "travel_radius_m": travel_radius_m,
                "updated_at": self.now(),
            }
            stmt = insert(Availability).values(worker_id=who.user_id, **values)
            await session.execute(
                stmt.on_conflict_do_update(index_elements=[Availability.worker_id], set_=values)
            )
            row = await session.get(Availability, who.user_id, populate_existing=True)
            assert row is not None
            return Schedule(row, checked)

    async def _last_position(self, worker: Worker, served: list[int]) -> tuple[float, float] | None:
        """Where the worker was last seen: the live index first (the database's copy is written
        behind, seconds later), then the database's."""
        for community_id in served:
            seen = await self.workers.live.position(community_id, worker.user_id)
            if seen is not None:
                return (seen.lat, seen.lng)
        return wkb_to_latlng(worker.location) if worker.location is not None else None

    async def availability(self, who: Principal) -> Schedule | None:
        async with self.sessions() as session:
            return await self.schedule_of(session, who.user_id)

    async def schedule_of(self, session: AsyncSession, worker_id: int) -> Schedule | None:
        row = await session.get(Availability, worker_id)
        return None if row is None else Schedule(row, self.rules_of(row))

    def rules_of(self, row: Availability) -> rules.Availability:
        return self._rules_cached(row.worker_id, row.updated_at, lambda: stored_rules(row))

    def _rules_cached(
        self, worker_id: int, version: datetime, parse: Callable[[], rules.Availability]
    ) -> rules.Availability:
        """A worker's parsed schedule from this process's cache while `version` (the row's
        `updated_at`) is current, else `parse()`d and cached."""
        cached = self._parsed.get(worker_id)
        if cached is not None and cached[0] == version:
            return cached[1]
        parsed = parse()
        self._parsed[worker_id] = (version, parsed)
        return parsed

    # --- the worker's calendar ---------------------------------------------------------------

    async def calendar(self, who: Principal, start: datetime, end: datetime) -> Calendar:
        span = check_span(start, end, MAX_CALENDAR, "range")
        async with self.sessions() as session:
            schedule = await self.schedule_of(session, who.user_id)
            found = (
                await session.execute(
                    select(Booking, Job)
                    .join(Job, Job.id == Booking.job_id)
                    .where(
                        Booking.worker_id == who.user_id,
                        Booking.active.is_(True),
                        Booking.starts_at < span.end,
                        Booking.ends_at > span.start,
                    )
                    .order_by(Booking.starts_at)
                )
            ).all()
            bookings = [(b, j) for b, j in found]
        if schedule is None:
            return Calendar("UTC", bookings, [])
        booked = [Booked(Span(b.starts_at, b.ends_at), b.lat, b.lng) for b, _ in bookings]
        return Calendar(schedule.row.timezone, bookings, rules.free(schedule.rules, booked, span))

    async def booked(
        self, session: AsyncSession, worker_id: int, around: Span, exclude: int | None = None
    ) -> list[Booked]:
        """The worker's active bookings that can touch `around`, but `exclude`."""
        found = await self.booked_many(session, [worker_id], around, exclude)
        return found.get(worker_id, [])

    # --- the calendar block and its timers ------------------------------------------------

    async def block(
        self,
        session: AsyncSession,
        job: Job,
        worker_id: int,
        span: Span,
        community: CommunityView,
        now: datetime,
        replacing: int | None = None,
    ) -> None:
        """Write the worker's calendar block for `span` (their availability row locked first:
        one confirmation at a time per worker, so travel and the daily limit see every booking
        committed before; the exclusion constraint decides any race), or raise
        WorkerUnavailable. `replacing`: a booking of theirs this one takes the place of (left
        out of the checks; the caller deactivates it first, in the same transaction)."""
        row = await session.get(Availability, worker_id, with_for_update=True)
        if row is None:
            raise WorkerUnavailable("this worker takes no bookings")
        schedule = self.rules_of(row)
        at = wkb_to_latlng(job.location)
        booked = await self.booked(session, worker_id, span, exclude=replacing)
        # The notice was met when the worker was asked; a confirmation is never too soon.
        asked = span.start - timedelta(minutes=schedule.min_notice_min)
        reason = rules.fits(schedule, booked, span, asked, at, community.dispatch.travel_speed_kmh)
        if reason is not None:
            raise WorkerUnavailable(f"the worker cannot take this slot ({reason})")
        try:
            async with session.begin_nested():
                session.add(
                    Booking(
                        job_id=job.id, worker_id=worker_id, starts_at=span.start,
                        ends_at=span.end,
                        block=Range(
                            span.start, span.end + timedelta(minutes=schedule.buffer_min),
                            bounds="[)",
                        ),
                        lat=at[0], lng=at[1], active=True, created_at=now,
                    )
                )  # fmt: skip
                await session.flush()
        except IntegrityError as exc:
            if "no_double_booking" not in str(exc.orig):
                raise
            raise WorkerUnavailable("another booking took this slot first") from exc

    async def arm_steps(
        self,
        session: AsyncSession,
        job: Job,
        worker_id: int,
        span: Span,
        community: CommunityView,
        now: datetime,
    ) -> None:
        """The booking's reminders and its no-show check, as durable timers."""
        params = community.dispatch
        start = span.start.isoformat()
        for before in params.reminder_before_min:
            due = span.start - timedelta(minutes=before)
            if due > now:
                await arm(
                    session, kind=REMINDER, ref_id=job.id, due=due,
                    key=f"{REMINDER}:{job.id}:{worker_id}:{start}:{before}",
                    payload={"worker_id": worker_id, "start": start, "before_min": before},
                )  # fmt: skip
        await arm(
            session, kind=NO_SHOW, ref_id=job.id,
            due=span.start + timedelta(minutes=params.no_show_grace_min),
            key=f"{NO_SHOW}:{job.id}:{worker_id}:{start}",
            payload={"worker_id": worker_id, "start": start},
        )  # fmt: skip

    async def disarm_steps(self, session: AsyncSession, job: Job, now: datetime) -> None:
        for kind in (REMINDER, NO_SHOW):
            await disarm(session, kind=kind, ref_id=job.id, now=now)

    # --- reschedule ----------------------------------------------------------------------------

    async def propose_reschedule(
        self, who: Principal, job_id: int, start: datetime, end: datetime
    ) -> JobView:
        """The resident asks to move a confirmed booking into a new window: the worker's first
        free start there is proposed to them (409 `worker_unavailable` when they have none)."""
        window = check_span(start, end, MAX_WINDOW, "window")
        async with self.sessions.begin() as session:
            job = await get_row(session, Job, job_id, lock=True)
            if job.resident_id != who.user_id:
                raise Forbidden("only the job's resident may move it", code="not_yours")
            if job.mode != "booking" or job.status != "assigned" or job.worker_id is None:
                raise Conflict(
                    "only a confirmed booking not yet started can be moved",
                    code="not_reschedulable",
                )
            assert job.duration_min is not None
            duration = timedelta(minutes=job.duration_min)
            if window.end - window.start < duration:
                raise Unprocessable("the window is shorter than the job", code="window_too_short")
            now = self.now()
            community = await self.communities.get(session, job.community_id)
            schedule = await self.schedule_of(session, job.worker_id)
            if schedule is None:
                raise WorkerUnavailable("the worker takes no bookings now")
            current = await self._current_booking(session, job)
            booked = await self.booked(
                session, job.worker_id, window, exclude=current.id if current else None
            )
            verdict = rules.bookable(
                schedule.rules, booked, window, duration, now, wkb_to_latlng(job.location),
                community.dispatch.travel_speed_kmh, limit=1,
            )  # fmt: skip
            if not verdict.starts:
                raise WorkerUnavailable(
                    f"the worker has no free time in that window ({verdict.reason})"
                )
            slot = verdict.starts[0]
            job.reschedule = {
                "status": "pending",
                "window": {"start": window.start.isoformat(), "end": window.end.isoformat()},
                "start": slot.isoformat(),
                "end": (slot + duration).isoformat(),
                "proposed_at": now.isoformat(),
            }
            job.version += 1
            local = slot.astimezone(ZoneInfo(community.timezone))
            await tell(
                session,
                kind="reschedule",
                to_user_id=job.worker_id,
                body=texts.every("reschedule.asked", title=job.title, start=texts.LocalTime(local)),
                payload={"type": "reschedule", "job_id": job.id, "start": slot.isoformat()},
                dedupe_key=f"reschedule:{job.id}:{job.version}",
                now=now,
            )
            return await job_view(session, job, who.user_id)

    async def answer_reschedule(self, who: Principal, job_id: int, accept: bool) -> JobView:
        """The worker takes or turns down the proposed slot. Taking it swaps the calendar block
        in one transaction: the old block is freed only if the new one is written (else 409
        `worker_unavailable` and nothing changes)."""
        async with self.sessions.begin() as session:
            job = await get_row(session, Job, job_id, lock=True)
            if job.worker_id != who.user_id:
                raise Forbidden("only the booked worker answers", code="not_yours")
            proposal = job.reschedule
            if not proposal or proposal.get("status") != "pending":
                raise Conflict("no reschedule is waiting for an answer", code="no_reschedule")
            now = self.now()
            community = await self.communities.get(session, job.community_id)
            status = "declined"
            if accept:
                if job.status != "assigned":
                    raise Conflict("the booking can no longer be moved", code="not_reschedulable")
                span = Span(
                    datetime.fromisoformat(proposal["start"]),
                    datetime.fromisoformat(proposal["end"]),
                )
                current = await self._current_booking(session, job)
                if current is not None:
                    current.active, current.ended_at = False, now
                    current.end_reason = "rescheduled"
                    await session.flush()
                await self.block(
                    session, job, who.user_id, span, community, now,
                    replacing=current.id if current else None,
                )  # fmt: skip
                job.scheduled_start, job.scheduled_end = span.start, span.end
                job.window_start = datetime.fromisoformat(proposal["window"]["start"])
                job.window_end = datetime.fromisoformat(proposal["window"]["end"])
                await self.disarm_steps(session, job, now)
                await self.arm_steps(session, job, who.user_id, span, community, now)
                status = "accepted"
            job.reschedule = {**proposal, "status": status, "answered_at": now.isoformat()}
            job.version += 1
            await tell(
                session,
                kind="reschedule",
                to_user_id=job.resident_id,
                body=texts.every(f"reschedule.{status}", title=job.title),
                payload={"type": "reschedule", "job_id": job.id, "status": status},
                dedupe_key=f"reschedule:{job.id}:{job.version}",
                now=now,
            )
            return await job_view(session, job, who.user_id)

    async def _current_booking(self, session: AsyncSession, job: Job) -> Booking | None:
        return await session.scalar(
            select(Booking)
            .where(Booking.job_id == job.id, Booking.worker_id == job.worker_id, Booking.active)
            .with_for_update()
        )

    # --- proposals ---------------------------------------------------------------------------

    async def candidates(
        self,
        who: Principal,
        *,
        lat: float,
        lng: float,
        skill: str | None,
        start: datetime,
        end: datetime,
        duration_min: int,
        community_id: int | None,
        limit: int,
    ) -> Proposals:
        if who.role not in ("resident", "operator", "admin"):
            raise Forbidden("proposals are for residents", code="forbidden_role")
        window = check_span(start, end, MAX_WINDOW, "window")
        duration = timedelta(minutes=duration_min)
        if duration > window.end - window.start:
            raise Unprocessable(
                "the window is shorter than the job's duration", code="window_too_short"
            )
        async with self.sessions() as session:
            # Reads only, each consistent by itself: no transaction (its BEGIN and ROLLBACK
            # were two of the proposal's five round trips).
            await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
            community = await self.communities.serving(session, lat, lng, community_id)
            return await self.propose(
                session, community, (lat, lng), [skill] if skill else [], window, duration,
                self.now(), limit,
            )  # fmt: skip

    async def propose(
        self,
        session: AsyncSession,
        community: CommunityView,
        at: tuple[float, float],
        skills: Sequence[str],
        window: Span,
        duration: timedelta,
        now: datetime,
        limit: int,
        skip: frozenset[int] = frozenset(),
    ) -> Proposals:
        """The best `limit` workers of the community for the job (nearest first until the list
        is full, or `MAX_EXAMINED` workers were looked at; module docstring), leaving out
        `skip` (those asked before). The walk's statement decides the cheap reasons
        (unverified, unskilled, too far) and brings the others' bookings; their schedules
        come from this process's cache."""
        speed = community.dispatch.travel_speed_kmh
        excluded = dict.fromkeys(rules.EXCLUSION_REASONS, 0)
        found: list[Candidate] = []
        examined = 0
        # One statement for the whole walk (each OFFSET would sort the community again).
        walk = (
            await session.execute(
                _NEAREST,
                self.judge_params(community, at, skills, window)
                | {"limit": MAX_EXAMINED + len(skip) + 1,
                   "scan": 4 * (MAX_EXAMINED + len(skip) + 1)},
            )
        ).all()  # fmt: skip
        complete = len(walk) <= MAX_EXAMINED + len(skip)
        walk = [r for r in walk if r.worker_id not in skip]
        complete = complete and len(walk) <= MAX_EXAMINED
        walk = walk[:MAX_EXAMINED]
        for r in walk:
            if len(found) >= limit and r.d / 1000 > found[limit - 1].score:
                complete = False
                break
            examined += 1
            if r.cheap is not None:
                excluded[r.cheap] += 1
                continue
            verdict = rules.bookable(
                self.judged_rules(r), judged_bookings(r), window, duration, now, at, speed
            )
            if verdict.reason is not None:
                excluded[verdict.reason] += 1
                continue
            rating = shown_rating(r.rating_sum, r.rating_count)
            insort(
                found,
                Candidate(
                    worker_id=r.worker_id,
                    name=r.name,
                    rating=rating,
                    rating_count=r.rating_count,
                    distance_m=round(r.d / DISTANCE_ROUNDING_M) * DISTANCE_ROUNDING_M,
                    starts=verdict.starts,
                    score=rules.rank_score(r.d, rating, r.no_shows, r.jobs_done),
                    exact_distance_m=r.d,
                ),
                key=lambda c: (c.score, c.worker_id),
            )
        return Proposals(found[:limit], excluded, examined, complete)

    def judge_params(
        self,
        community: CommunityView,
        at: tuple[float, float],
        skills: Sequence[str],
        window: Span,
    ) -> dict[str, Any]:
        """The parameters of `_NEAREST` and `_ONE` but the walk's own."""
        speed = community.dispatch.travel_speed_kmh
        return {
            "pt": f"SRID=4326;POINT({at[1]} {at[0]})",
            "lat": at[0],
            "lng": at[1],
            "community_id": community.id,
            "skills": list(skills),
            "since": window.start - timedelta(days=1),
            "until": window.end + timedelta(days=1),
            "window_start": window.start,
            "window_end": window.end,
            # `rules.blocked`'s bound of the travel, as time per degree of |dlat| + |dlng|.
            "pad_per_deg": timedelta(minutes=EARTH_RADIUS_M * math.pi / 180 / 1000 / speed * 60),
        }

    def judged_rules(self, r: Any) -> rules.Availability:
        """The parsed schedule of a row of `_NEAREST` or `_ONE`, the row's `schedule` (sent as
        JSON text) decoded only when the cache has no current one."""

        def parse() -> rules.Availability:
            tz, weekly, overrides, extra, buffer, notice, per_day, radius, lat, lng = json.loads(
                r.schedule
            )
            return stored_rules(
                SimpleNamespace(
                    timezone=tz, weekly=weekly, overrides=overrides, extra=extra,
                    buffer_min=buffer, min_notice_min=notice, max_jobs_per_day=per_day,
                    travel_radius_m=radius,
                ),
                None if lat is None else (lat, lng),
            )  # fmt: skip

        return self._rules_cached(r.worker_id, r.updated_at, parse)

    async def judge_one(
        self,
        session: AsyncSession,
        worker_id: int,
        community: CommunityView,
        at: tuple[float, float],
        skills: Sequence[str],
        window: Span,
        duration: timedelta,
        now: datetime,
    ) -> tuple[float, str | None, list[datetime]] | None:
        """(distance in m, reason, starts) of one worker for the job, as `propose` judges each
        (None when they do not serve the community)."""
        r = (
            await session.execute(
                _ONE,
                self.judge_params(community, at, skills, window)
                | {"limit": 1, "worker_id": worker_id},
            )
        ).first()
        if r is None:
            return None
        if r.cheap is not None:
            return r.d, r.cheap, []
        verdict = rules.bookable(
            self.judged_rules(r), judged_bookings(r), window, duration, now, at,
            community.dispatch.travel_speed_kmh,
        )  # fmt: skip
        return r.d, verdict.reason, verdict.starts

    async def booked_many(
        self, session: AsyncSession, ids: list[int], window: Span, exclude: int | None = None
    ) -> dict[int, list[Booked]]:
        """Each worker's active bookings that can touch `window` (a day either side, for
        buffers, travel and the day's limit), but the booking `exclude`."""
        rows = await session.execute(
            _BOOKED,
            {
                "ids": ids,
                "since": window.start - timedelta(days=1),
                "until": window.end + timedelta(days=1),
                "exclude": exclude or 0,
            },
        )
        out: dict[int, list[Booked]] = {}
        for worker_id, s, e, blat, blng in rows.all():
            out.setdefault(worker_id, []).append(Booked(Span(s, e), blat, blng))
        return out


REMINDER = "booking_reminder"
NO_SHOW = "booking_no_show"


class NoShowDispatch(Protocol):
    """What a no-show needs of dispatch (the grab dispatcher answers)."""

    async def no_show(self, session: AsyncSession, job: Job, now: datetime) -> Any: ...

    async def run_after(self, after: Any) -> None: ...


class BookingDispatch:
    """Booking's part in dispatch: who is asked next for a booking job and for which slot
    (`pick`), and the calendar block that commits or rolls back with the assignment (an
    assignment hook: `assigned`, `released`)."""

    def __init__(self, booking: BookingService, dispatcher: NoShowDispatch) -> None:
        self.booking = booking
        self.dispatcher = dispatcher

    async def pick(
        self,
        session: AsyncSession,
        job: Job,
        community: CommunityView,
        offered: set[int],
        now: datetime,
    ) -> tuple[int, float, datetime] | None:
        """(worker, distance in m, start) to ask next: the resident's chosen worker first, while
        they can take it, then the best candidate nobody asked yet (Tookan's one by one)."""
        assert job.window_start is not None and job.window_end is not None
        assert job.duration_min is not None
        window = Span(job.window_start, job.window_end)
        duration = timedelta(minutes=job.duration_min)
        at = wkb_to_latlng(job.location)
        skills = list(job.skills)
        chosen = job.requested_worker_id
        if chosen is not None and chosen not in offered:
            judged = await self.booking.judge_one(
                session, chosen, community, at, skills, window, duration, now
            )
            if judged is not None and judged[1] is None:
                return chosen, judged[0], judged[2][0]
        proposals = await self.booking.propose(
            session, community, at, skills, window, duration, now, 1,
            skip=frozenset(offered | {job.resident_id}),
        )  # fmt: skip
        if not proposals.candidates:
            return None
        best = proposals.candidates[0]
        return best.worker_id, best.exact_distance_m, best.starts[0]

    async def assigned(
        self, session: AsyncSession, job: Job, worker_id: int, now: datetime
    ) -> None:
        """Block the worker's calendar for the booking's slot, or refuse (409
        `worker_unavailable`, and the whole assignment rolls back)."""
        if job.mode != "booking":
            return
        if job.scheduled_start is None or job.scheduled_end is None:
            raise WorkerUnavailable("the booking has no slot yet")
        span = Span(job.scheduled_start, job.scheduled_end)
        community = await self.booking.communities.get(session, job.community_id)
        await self.booking.block(session, job, worker_id, span, community, now)
        job.booked_at = now
        await self.booking.arm_steps(session, job, worker_id, span, community, now)

    def still_booked(self, job: Job | None, timer: Timer) -> bool:
        """Is the booking the timer was armed for still the job's confirmed one?"""
        return (
            job is not None
            and job.mode == "booking"
            and job.status == "assigned"
            and job.worker_id == timer.payload.get("worker_id")
            and (timer.kind != NO_SHOW or job.arrived_at is None)
            and job.scheduled_start is not None
            and job.scheduled_start.isoformat() == timer.payload.get("start")
        )

    async def remind(self, session: AsyncSession, timer: Timer, now: datetime) -> None:
        """Both sides are told the booking is coming (once: the timer fires once, and the
        messages are deduplicated by it too)."""
        job = await lock_row(session, Job, timer.ref_id)
        if not self.still_booked(job, timer):
            return None
        assert job is not None and job.scheduled_start is not None and job.worker_id is not None
        community = await self.booking.communities.get(session, job.community_id)
        when = texts.LocalTime(job.scheduled_start.astimezone(ZoneInfo(community.timezone)))
        for user_id, text_ in (
            (job.resident_id, texts.every("reminder.resident", title=job.title, start=when)),
            (job.worker_id, texts.every("reminder.worker", title=job.title, start=when)),
        ):
            await tell(
                session,
                kind="reminder",
                body=text_,
                to_user_id=user_id,
                payload={
                    "type": "booking_reminder",
                    "job_id": job.id,
                    "before_min": timer.payload.get("before_min"),
                },
                dedupe_key=f"reminder:{timer.id}:{user_id}",
                now=now,
            )
        return None

    async def check_no_show(
        self, session: AsyncSession, timer: Timer, now: datetime
    ) -> Callable[[], Awaitable[None]] | None:
        """Not started by the grace after the start: re-dispatched as a grab job, the resident
        told, the worker marked."""
        job = await lock_row(session, Job, timer.ref_id)
        if not self.still_booked(job, timer):
            return None
        assert job is not None
        title = job.title
        after = await self.dispatcher.no_show(session, job, now)
        await tell(
            session,
            kind="alert",
            to_user_id=job.resident_id,
            body=texts.every("booking.no_show", title=title),
            payload={"type": "booking_no_show", "job_id": job.id},
            dedupe_key=f"no_show:{timer.id}",
            now=now,
        )

        async def then() -> None:
            await self.dispatcher.run_after(after)

        return then

    async def released(
        self, session: AsyncSession, job: Job, worker_id: int, reason: str, now: datetime
    ) -> None:
        """The assignment ended (done, cancelled, handed back, reassigned): its block frees the
        calendar."""
        if job.mode != "booking":
            return
        await session.execute(
            update(Booking)
            .where(Booking.job_id == job.id, Booking.worker_id == worker_id, Booking.active)
            .values(active=False, ended_at=now, end_reason=reason)
        )

    async def resident_fee(self, session: AsyncSession, job: Job, now: datetime) -> int:
        """Free within 5 minutes of booking or until `free_cancel_before_h` before the start;
        then one hour at the worker's rate, or `late_cancel_fee_bps` of the price."""
        if job.scheduled_start is None or job.booked_at is None or job.worker_id is None:
            return 0
        params = (await self.booking.communities.get(session, job.community_id)).dispatch
        worker = await session.get(Worker, job.worker_id)
        return rules.resident_cancel_fee(
            now=now, booked_at=job.booked_at, start=job.scheduled_start,
            price_cents=job.price_cents,
            hourly_rate_cents=worker.hourly_rate_cents if worker else None,
            free_cancel_before_h=params.free_cancel_before_h,
            late_cancel_fee_bps=params.late_cancel_fee_bps,
        )  # fmt: skip

    async def worker_cancelled(
        self, session: AsyncSession, job: Job, worker_id: int, now: datetime
    ) -> int:
        """A worker handing a booking back late owes the resident the late share of the price
        and gets a late-cancellation mark (ranking reads it)."""
        if job.scheduled_start is None:
            return 0
        params = (await self.booking.communities.get(session, job.community_id)).dispatch
        owed = rules.worker_cancel_compensation(
            now=now, start=job.scheduled_start, price_cents=job.price_cents,
            free_cancel_before_h=params.free_cancel_before_h,
            late_cancel_fee_bps=params.late_cancel_fee_bps,
        )  # fmt: skip
        if owed:
            await session.execute(
                update(Worker)
                .where(Worker.user_id == worker_id)
                .values(late_cancels=Worker.late_cancels + 1)
            )
        return owed
