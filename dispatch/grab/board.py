"""The jobs board ("jobs near me"): the open jobs a worker may take, nearest first, and taking
one through the same claim as accepting an offer.

Finding them: by H3 cell, as the live index finds workers. A job carries `h3_code`, the code of
its location's FINE_RES (10) cell (`geo.live.cells.cell_code`, computed by the model as the row
is written; migration 0014 gave older jobs theirs), and any coarser cell is one range of codes.
The worker's disc becomes a few dozen ranges (`disc_code_ranges`: the live search's start cells
that reach the disc, those crossing its edge split twice, ranges merged), OR'd as `h3_code
BETWEEN lo AND hi` on the partial B-tree (community_id, h3_code) of open jobs; the rows found
are kept by their distance (`within`). None within the radius is missed: every fine cell under
a cell lies within that cell's reach, the bound the live search stands on (tests/geo), and
tests/dispatch/test_jobs_nearby.py checks the board against brute force at the radius's edge
and at cells' corners. Distances are on the sphere (PostGIS's, within 2e-5 m of haversine), as
the take, the offers and the waves measure them; the spheroid used before differs by up to
0.6 %. The worker's side comes from the live index, as a wave finds them: their last fix, no
older than the community's `location_max_age_s` and inside its area.

Measured (bench/board.py; 2,000 open jobs over a 5 km disc, "busy" adding 20,000 finished jobs
there and a neighbour's 22,000; 500 listings a row on 2 shared cores): PostgreSQL's CPU, then
the median call, per listing.

    radius                                   1 km           3 km           10 km
    open only, H3 (now)                      3.9 / 13.7 ms  6.6 / 17.1 ms  18.3 / 28.1 ms
    open only, ST_DWithin on GiST (before)   3.5 / 11.8     15.5 / 24.6    35.8 / 45.4
    busy, H3 (now)                           3.5 / 13.4     6.8 / 17.1     13.6 / 26.0
    busy, ST_DWithin on GiST (before)        6.5 / 14.0     30.0 / 36.9    83.0 / 92.6

The partial index holds open jobs only, so finished ones cost nothing; the GiST index holds every
job ever posted. The ranges cost the client 2-3 ms (the cover, and building some 20 BETWEENs
twice): at 1 km H3 is no faster, 2 ms slower over open jobs alone. JIT and parallel workers are
off on the service's connections (`dispatch.infra.db.SERVER_SETTINGS`): with PostgreSQL's
defaults the 10 km H3 listing took 130-140 ms.

Who sees a job: a verified worker, online, serving its community, with every skill it needs,
not its resident, and not one who held it before and let it go. A busy worker sees the board
too: `max_open_assignments` decides at the take, as for offers. Booking jobs are listed with the
slot now on offer, to workers who take bookings; taking one books that slot (the booking hook
checks the calendar: 409 `worker_unavailable` when it does not fit).

What a job shows before it is taken is what an offer shows (`job_summary`): the neighbourhood
(the centre of its H3 res-8 cell, and the cell), never the point or the address; the distance to
100 m; the pay itemized as offers show it. Order: by that rounded distance, then the better fit
within the same 100 m: jobs needing more of the worker's skills (a specialist's job before one
anyone could do), the higher net pay, the job waiting longest, the lower id.

Taking is accepting an offer (`Dispatcher.accept`: the claim script, the database's fenced
claim, the anti-bot rules, then everything an assignment does, the other offers retired as
taken with their notices). A worker with a live offer of the job takes through it; anyone else
eligible first gets an offer made for them (or their old one re-armed) in a short transaction
holding the job row FOR SHARE: a claim's UPDATE waits for it, so a board offer is never left
pending on a job just taken, and the winner's claim retires it with the wave's. Whoever claims
first wins; the others, wave offerees included, get 409 `already_taken`.

`min_accept_ms` on the board runs from when the job was first listed to the worker (kept in
Redis per worker and job, when the community sets a minimum): the board offer is dated then, so
the claim script and the database's check apply unchanged. A take of a job never listed to the
worker counts as listed at that moment.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import h3.api.basic_int as h3
import msgspec
from redis.asyncio import Redis
from sqlalchemy import ARRAY, Select, Text, and_, any_, cast, exists, func, or_, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dispatch.communities.service import CommunityService, CommunityView
from dispatch.core.errors import Conflict, Forbidden, Gone, NotFound
from dispatch.grab.dispatcher import (
    APPROX_RES,
    AcceptAnswer,
    AfterCommit,
    Dispatcher,
    booking_slot,
    job_summary,
)
from dispatch.grab.events import JobSummary
from dispatch.identity.principal import Principal
from dispatch.infra import idempotency
from dispatch.jobs.queries import job_view
from dispatch.models import Availability, Job, Offer, Worker
from dispatch.models.base import is_db_id
from dispatch.money.schemas import PayOut
from dispatch.workers.service import WorkerService
from geo.distance import haversine_m
from geo.live import LiveIndex
from geo.live.cells import REACH_SLACK_M, disc_code_ranges
from geo.shapes import wkb_to_latlng

DEFAULT_RADIUS_M = 3000
MIN_RADIUS_M = 100
MAX_RADIUS_M = 20_000
"""The board's reach; a take is refused beyond it too."""
DISTANCE_STEP_M = 100
LISTED_TTL_S = 3600
"""How long the first listing of a job to a worker is remembered (for `min_accept_ms`)."""


def shown_distance_m(distance_m: float) -> int:
    """A job's distance as the board shows it: to 100 m (halves up), at least 100 (never the
    exact gap). The listing's SQL rounds the same way (`_shown_sql`)."""
    return max(DISTANCE_STEP_M, math.floor(distance_m / DISTANCE_STEP_M + 0.5) * DISTANCE_STEP_M)


def _shown_sql(distance: Any) -> Any:
    step = DISTANCE_STEP_M
    return func.greatest(step, func.floor(distance / step + 0.5) * step)


def _point_sql(lat: float, lng: float) -> Any:
    return func.ST_GeogFromText(f"SRID=4326;POINT({lng!r} {lat!r})")


_SPHERES_APART = 1e-8
"""PostGIS's sphere (radius 6371008.7714 m) is 4.5e-9 smaller than haversine's: its distances
are shorter by that share, so the cover is drawn that much wider (and a centimetre more)."""


def within(lat: float, lng: float, radius_m: float) -> list[Any]:
    """The conditions of a job within `radius_m` of (lat, lng) on the sphere: its fine cell code
    in a range of the disc's cover (what the index on (community_id, h3_code) reads), then the
    distance on the rows found. Not `ST_DWithin`: the planner ANDs it with the GiST index on
    `location`, and at 3 km over a busy table PostgreSQL then spent 25 ms of CPU, not 6."""
    cover = disc_code_ranges(lat, lng, radius_m * (1 + _SPHERES_APART) + REACH_SLACK_M)
    return [
        or_(*(Job.h3_code.between(lo, hi) for lo, hi in cover)),
        func.ST_Distance(Job.location, _point_sql(lat, lng), False) <= float(radius_m),
    ]


def listing(may_take: list[Any], shown: Any, limit: int) -> Select[tuple[Job, Any]]:
    """(job, shown distance) of the `limit` jobs nearest by shown distance that `may_take` lets
    through, and of all the others as near: the fit decides among them (`board_order`)."""
    nearest = select(shown.label("m")).where(*may_take).order_by(shown).limit(limit)
    cut = select(func.max(nearest.subquery().c.m)).scalar_subquery()
    return select(Job, shown).where(*may_take, shown <= cut)


def board_order(
    shown_m: int, skills_needed: int, net_cents: int, created_at: datetime, job_id: int
) -> tuple[int, int, int, datetime, int]:
    """Nearest first (by the shown distance), then the better fit: more of the worker's skills
    needed, more net pay, waiting longer, lower id."""
    return (shown_m, -skills_needed, -net_cents, created_at, job_id)


def why_not(
    *,
    own: bool,
    verified: bool,
    serves: bool,
    missing: Sequence[str],
    online: bool,
    located: bool,
    distance_m: float | None,
) -> str | None:
    """Why this worker may not take this job from the board, or None."""
    if own:
        return "this is your own job"
    if not verified:
        return "only verified workers take jobs: finish your verification first"
    if not serves:
        return "you do not serve this job's community"
    if missing:
        return f"this job needs skills your profile lacks: {', '.join(sorted(missing))}"
    if not online:
        return "go online first"
    if not located or distance_m is None:
        return "no recent position of yours in this community: report your location first"
    if distance_m > MAX_RADIUS_M:
        return f"the job is more than {MAX_RADIUS_M // 1000} km from you"
    return None


def _order(b: BoardJob) -> tuple[int, int, int, datetime, int]:
    net = b.summary.pay.net_cents if b.summary.pay is not None else 0
    return board_order(b.distance_m, len(b.job.skills), net, b.job.created_at, b.job.id)


def listed_key(worker_id: int, job_id: int) -> str:
    return f"board:listed:{worker_id}:{job_id}"


@dataclass(frozen=True, slots=True)
class BoardJob:
    job: Job
    distance_m: int
    """Rounded (`shown_distance_m`)."""
    summary: JobSummary
    """The job as an offer shows it (`job_summary`): neighbourhood and itemized pay."""


class BoardJobOut(msgspec.Struct):
    id: int
    title: str
    category: str
    skills: list[str]
    mode: str
    price_cents: int
    currency: str
    net_cents: int
    """What the worker receives once the deductions in `pay` are taken."""
    pay: PayOut
    distance_m: int
    """From the worker's last position, to 100 m."""
    approx_location: dict[str, float]
    """The centre of the job's H3 res-8 cell; the address and the point come with the job."""
    cell: str
    """That H3 cell (resolution 8)."""
    created_at: datetime
    window_start: datetime | None = None
    window_end: datetime | None = None
    duration_min: int | None = None
    scheduled_start: datetime | None = None
    scheduled_end: datetime | None = None
    """A booking's slot on offer: taking the job books it."""


def board_out(item: BoardJob) -> BoardJobOut:
    job, summary = item.job, item.summary
    approx, pay = summary.approx_location, summary.pay
    assert pay is not None
    return BoardJobOut(
        id=job.id, title=job.title, category=job.category, skills=list(job.skills),
        mode=job.mode, price_cents=job.price_cents, currency=job.currency,
        net_cents=pay.net_cents, pay=pay, distance_m=item.distance_m, approx_location=approx,
        cell=h3.int_to_str(h3.latlng_to_cell(approx["lat"], approx["lng"], APPROX_RES)),
        created_at=job.created_at, window_start=job.window_start, window_end=job.window_end,
        duration_min=job.duration_min, scheduled_start=job.scheduled_start,
        scheduled_end=job.scheduled_end,
    )  # fmt: skip


class Board:
    """The jobs board: listing (`nearby`) and taking (`take`)."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        live: LiveIndex,
        communities: CommunityService,
        workers: WorkerService,
        dispatcher: Dispatcher,
        redis: Redis,
    ) -> None:
        self.sessions = sessions
        self.live = live
        self.communities = communities
        self.workers = workers
        self.dispatcher = dispatcher
        self.redis = redis

    async def _whereabouts(
        self, session: AsyncSession, worker_id: int, community_ids: Sequence[int]
    ) -> dict[int, tuple[CommunityView, float, float]]:
        """Where the worker is, per community given, as a wave would find them: a fix no older
        than the community's `location_max_age_s`, inside its area."""
        now = time.time()
        out: dict[int, tuple[CommunityView, float, float]] = {}
        for cid in community_ids:
            view = await self.communities.get(session, cid)
            pos = await self.live.position(cid, worker_id)
            fresh_after = now - view.dispatch.location_max_age_s
            if pos is not None and pos.in_area and pos.recorded_at >= fresh_after:
                out[cid] = (view, pos.lat, pos.lng)
        return out

    async def _worker(self, session: AsyncSession, worker_id: int) -> Worker:
        worker = await session.get(Worker, worker_id)
        if worker is None:
            raise Conflict("create a worker profile first (PUT /v1/workers/me)", code="no_profile")
        return worker

    # --- listing -----------------------------------------------------------------------------

    async def nearby(
        self, who: Principal, *, radius_m: float, skill: str | None, limit: int
    ) -> list[BoardJob]:
        """The open jobs within `radius_m` of the worker that they may take (`skill`: only
        those needing it), nearest and best-fitting first."""
        async with self.sessions() as session:
            worker = await self._worker(session, who.user_id)
            if worker.verification != "verified" or not worker.online:
                return []
            served = await self.workers.communities_of(session, who.user_id)
            places = await self._whereabouts(session, who.user_id, served)
            if not places:
                return []
            # One fix, moved into every community the worker serves.
            _, lat, lng = next(iter(places.values()))
            shown = _shown_sql(func.ST_Distance(Job.location, _point_sql(lat, lng), False))
            may_take = [
                Job.community_id.in_(list(places)),
                Job.status == "open",
                *within(lat, lng, radius_m),
                Job.worker_id.is_(None),
                Job.skills.op("<@")(cast(list(worker.skills), ARRAY(Text))),
                Job.resident_id != who.user_id,
                or_(
                    Job.mode == "grab",
                    and_(
                        Job.scheduled_start.is_not(None),
                        exists().where(Availability.worker_id == who.user_id),
                    ),
                ),
                # Not a job they held and let go (handed back, or a no-show).
                ~exists().where(
                    Offer.job_id == Job.id,
                    Offer.worker_id == who.user_id,
                    Offer.status == "accepted",
                ),
            ]
            if skill is not None:
                may_take.append(skill == any_(Job.skills))
            rows = (await session.execute(listing(may_take, shown, limit))).all()
        found = [BoardJob(job, int(m), job_summary(job)) for job, m in rows]
        found.sort(key=_order)
        del found[limit:]
        await self._listed(who.user_id, [b.job for b in found], places)
        return found

    async def _listed(
        self,
        worker_id: int,
        jobs: list[Job],
        places: dict[int, tuple[CommunityView, float, float]],
    ) -> None:
        """Remember when each job was first listed to the worker, where the community sets a
        `min_accept_ms` (a take is measured from then)."""
        timed = [j.id for j in jobs if places[j.community_id][0].dispatch.min_accept_ms]
        if not timed:
            return
        now = time.time()
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id in timed:
                pipe.set(listed_key(worker_id, job_id), repr(now), nx=True, ex=LISTED_TTL_S)
            await pipe.execute()

    # --- taking ------------------------------------------------------------------------------

    async def take(self, who: Principal, job_id: int, answer: AcceptAnswer) -> tuple[int, bytes]:
        """Take an open job from the board: 200 and the job (now `assigned`) for the one
        winner, as `answer` renders it; 409 `already_taken` for the rest."""
        if not is_db_id(job_id):
            raise NotFound(f"job {job_id} does not exist", code="job_not_found")
        for attempt in (1, 2):
            offer_id = await self._prepare(who, job_id, answer)
            if isinstance(offer_id, tuple):
                return offer_id
            try:
                return await self.dispatcher.accept(who, offer_id, answer)
            except Gone as exc:
                # The wave the offer was made in closed (and expired it) before the claim: the
                # job moved on to its next wave, still open. Once more, in that wave.
                if exc.code != "offer_expired" or attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def _prepare(
        self, who: Principal, job_id: int, answer: AcceptAnswer
    ) -> int | tuple[int, bytes]:
        """The worker's offer of the open job to accept (made for them if need be), or the
        answer at once to the worker who holds it already."""
        after = self.dispatcher.after_commit()
        async with self.sessions.begin() as session:
            # FOR SHARE: takers make their offers side by side; a claim waits for them.
            job = await session.get(Job, job_id, with_for_update={"read": True})
            if job is None:
                raise NotFound(f"job {job_id} does not exist", code="job_not_found")
            if job.worker_id == who.user_id:
                # A retry of the winning take: the job again (replayed under its key).
                async def produce() -> tuple[int, bytes]:
                    return 200, answer.render(await job_view(session, job, who.user_id))

                if answer.key is None:
                    return await produce()
                return await idempotency.run_once(
                    session, who.user_id, answer.key, answer.fingerprint, produce
                )
            if job.worker_id is not None:
                raise Conflict("another worker took this job first", code="already_taken")
            if job.status != "open":
                raise Conflict(f"the job is {job.status}, not open", code="job_not_open")
            view, distance_m = await self._eligible(session, who, job)
            offer_id = await self._offer(session, job, who.user_id, view, distance_m, after)
        await self.dispatcher.run_after(after)
        return offer_id

    async def _eligible(
        self, session: AsyncSession, who: Principal, job: Job
    ) -> tuple[CommunityView, float]:
        """The job's community and the worker's distance from the job; 403 `not_eligible`
        saying why when they may not take it."""
        worker = await self._worker(session, who.user_id)
        serves = job.community_id in await self.workers.communities_of(session, who.user_id)
        place = (await self._whereabouts(session, who.user_id, [job.community_id])).get(
            job.community_id
        )
        distance_m = None
        if place is not None:
            lat, lng = wkb_to_latlng(job.location)
            distance_m = haversine_m(place[1], place[2], lat, lng)
        reason = why_not(
            own=job.resident_id == who.user_id,
            verified=worker.verification == "verified",
            serves=serves,
            missing=[s for s in job.skills if s not in worker.skills],
            online=worker.online,
            located=place is not None,
            distance_m=distance_m,
        )
        if reason is not None:
            raise Forbidden(reason, code="not_eligible")
        assert place is not None and distance_m is not None
        return place[0], distance_m

    async def _offer(
        self,
        session: AsyncSession,
        job: Job,
        worker_id: int,
        view: CommunityView,
        distance_m: float,
        after: AfterCommit,
    ) -> int:
        """The worker's offer of the job to accept: their live one (a wave's, or an earlier
        take's), else one made now (their old one re-armed, if any), dated when the job was
        first listed to them and cached for the claim script after commit."""
        now = datetime.now(UTC)
        offer = await session.scalar(
            select(Offer)
            .where(Offer.job_id == job.id, Offer.worker_id == worker_id)
            .with_for_update()
        )
        if offer is not None and offer.status == "pending" and offer.expires_at > now:
            return offer.id
        if offer is not None and offer.status == "accepted":
            raise Forbidden("you held this job and let it go", code="not_eligible")
        params = view.dispatch
        made = now
        if params.min_accept_ms:
            raw = await self.redis.get(listed_key(worker_id, job.id))
            if raw is not None:
                made = datetime.fromtimestamp(float(raw), UTC)
        made = min(max(made, job.created_at), now)
        expires = now + timedelta(seconds=params.offer_ttl_s)
        values = {
            "wave": job.wave, "status": "pending", "distance_m": distance_m,
            "created_at": made, "expires_at": expires, "responded_at": None,
        }  # fmt: skip
        if offer is None:
            offer_id = await session.scalar(
                insert(Offer)
                .values(job_id=job.id, worker_id=worker_id, **values)
                .on_conflict_do_nothing()
                .returning(Offer.id)
            )
            if offer_id is None:  # the same worker's other take, a moment before
                raise Conflict("the job changed meanwhile; try again", code="retry")
        else:
            for name, value in values.items():
                setattr(offer, name, value)
            await session.flush()
            offer_id = offer.id
        wait_ms = max(0, params.min_accept_ms - int((now - made).total_seconds() * 1000))
        slot = booking_slot(job, worker_id)
        after.offers.append((offer_id, worker_id, job.id, expires.timestamp(), slot, wait_ms))
        return offer_id
