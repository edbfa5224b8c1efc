"""Grab-order dispatch: offer waves, claims with exactly one winner, expiry and escalation,
cancellation, completion and manual assignment.

The database decides every outcome. Locks are always taken job row first (then offers, then
assignments), so concurrent claims, declines, expiries and cancellations serialise on the job
row and cannot deadlock. A claim is a conditional UPDATE of the job on (status 'open', version);
a partial unique index allows one active assignment per job. Redis only pre-filters: a
provisional claim key lets racing losers get their 409 without touching the database.

Effects that must not happen unless the transaction commits (events to workers, wake-up timers,
Redis caches, live-index availability) are collected in `AfterCommit` and run after it.

One class of ~750 lines on purpose: every step here (waves, claims, declines, expiry,
cancellation, completion, manual assignment) takes the job row's lock first and ends through the
same `AfterCommit`, hooks and claim cache; split across files, that lock order and the claim
cache's invariants would have to be kept in several places. Its statements are in
`statements.py`, its rules in `rules.py`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import h3.api.basic_int as h3
import msgspec
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm.attributes import set_committed_value

from dispatch.communities.service import CommunityService, CommunityView
from dispatch.core import texts
from dispatch.core.errors import (
    Conflict,
    DomainError,
    Forbidden,
    Gone,
    NotFound,
    Unprocessable,
    WorkerUnavailable,
)
from dispatch.grab import events as ev
from dispatch.grab.rules import (
    AcceptRefused,
    cancellation_fee,
    check_transition,
    ranking_pool,
    suspicious,
    too_fast,
    too_many_open,
    wave_reach_m,
    wave_size,
)
from dispatch.grab.statements import (
    CLAIM_JOB,
    CLAIM_LUA,
    CLAIM_PREFIX,
    OFFER_AND_JOB,
    OPEN_ASSIGNMENTS,
    RANKING_RECORDS,
    RELEASE_LUA,
    RETIRE_OFFERS,
    SEND_WAVE,
    SLOT_PREFIX,
    TAKE_OFFER,
    TAKEN_BODY,
    WITHDRAWN_BODY,
    claim_key,
    offer_key,
)
from dispatch.identity.principal import Principal
from dispatch.infra import idempotency
from dispatch.infra.logs import log
from dispatch.infra.rawread import RawRead
from dispatch.infra.wire import Pipeliner
from dispatch.jobs.queries import JobView, job_view
from dispatch.models import Assignment, Job, Offer, Worker
from dispatch.models.base import get_row, is_db_id
from dispatch.money.escrow import job_pay
from dispatch.money.schemas import pay_out
from dispatch.ops import events as ops_events
from dispatch.ops.alerts import raise_alert
from dispatch.trust import ranking
from dispatch.trust.screening import screen
from dispatch.workers.service import WorkerService
from geo.live import LiveIndex, Nearby
from geo.shapes import wkb_to_latlng

CLAIM_TTL_MS = 10_000
"""A provisional claim lapses after this if its holder dies before the database decides."""
SETTLED_CLAIM_TTL_S = 7 * 24 * 3600
OFFER_CACHE_GRACE_S = 3600
"""An offer's cache entry outlives its expiry by this much (late accepts get their 410 from it;
later still, from the database). They all live in one slot (see CLAIM_TAG): keep them few."""
APPROX_RES = 8

Schedule = Callable[[int, int, datetime], Awaitable[None]]


class BookingPicker(Protocol):
    """Who is asked next for a booking job, and for which start (booking's room answers)."""

    async def pick(
        self,
        session: AsyncSession,
        job: Job,
        community: CommunityView,
        offered: set[int],
        now: datetime,
    ) -> tuple[int, float, datetime] | None: ...

    async def resident_fee(self, session: AsyncSession, job: Job, now: datetime) -> int:
        """What the resident owes for cancelling this confirmed booking now."""
        ...

    async def worker_cancelled(
        self, session: AsyncSession, job: Job, worker_id: int, now: datetime
    ) -> int:
        """The worker handed a confirmed booking back: what it owes the resident (recorded)."""
        ...


class WaveLog(Protocol):
    """Records each grab wave as it goes out, for "why this worker" (in the wave's
    transaction; `ops.dispatchlog.DispatchLog`)."""

    def wave(
        self,
        session: AsyncSession,
        job: Job,
        view: CommunityView,
        wave: int,
        reach_m: float,
        size: int,
        found: list[Nearby],
        chosen: list[Nearby],
        offered: set[int],
        now: datetime,
    ) -> None: ...


class AssignmentHook(Protocol):
    """Work that must commit or roll back with an assignment (masked-number sessions, say):
    called inside the assigning or releasing transaction, after the job row is locked."""

    async def assigned(
        self, session: AsyncSession, job: Job, worker_id: int, now: datetime
    ) -> None: ...

    async def released(
        self, session: AsyncSession, job: Job, worker_id: int, reason: str, now: datetime
    ) -> None: ...


class JobMoney(Protocol):
    """The job's money at each step (the money room's `MoneyService`), in the step's
    transaction with the job row locked."""

    async def assigned(
        self, session: AsyncSession, job: Job, worker_id: int, now: datetime
    ) -> None: ...

    async def resident_cancelled(
        self, session: AsyncSession, job: Job, holder: int | None, now: datetime
    ) -> None: ...

    async def handed_back(
        self, session: AsyncSession, job: Job, worker_id: int, reason: str, owed: int,
        now: datetime,
    ) -> None: ...  # fmt: skip

    async def completed(self, session: AsyncSession, job: Job, now: datetime) -> None: ...

    async def add_materials(
        self, session: AsyncSession, job: Job, worker_id: int, items: list[dict[str, Any]],
        now: datetime,
    ) -> Any: ...  # fmt: skip


Candidates = tuple[list[Nearby], list | None]
"""A wave's candidates from the live index, nearest first, and their ranking records' rows
(None: not read yet)."""
SIDE_READS = 4
"""Ranking reads that postings may have under way outside their transactions at once, in a
process (its pool holds 2 x `DISPATCH_DB_POOL_SIZE`); see `Dispatcher.foresee`."""
_RANKING = RawRead(RANKING_RECORDS)
GUESS_RES = 9
"""The H3 resolution (cells about 170 m across) at which a first wave's candidates are
remembered for the next posting there (`LastCandidates`)."""


class LastCandidates:
    """Who the last first-wave search found, per (community, H3 cell, skills), for a minute
    (`ttl_s`): the next posting in that cell starts its candidates' ranking read with them at the
    same time as its own search, instead of after it (`Dispatcher.foresee`).

    Only a guess of whom to read: the search still decides who is a candidate, and whoever it
    finds that the guess missed is read after it. On the grab benchmark the read after the
    search was 1.3 ms of a first offer's 15.6 ms at p50 (bench/README.md, "Session 18"), jobs
    there come again and again at the same corners, as on a busy street."""

    def __init__(self, ttl_s: float = 60.0, size: int = 4096) -> None:
        self.ttl_s = ttl_s
        self.size = size
        self._seen: dict[tuple[int, int, tuple[str, ...]], tuple[float, list[int]]] = {}

    @staticmethod
    def key(community_id: int, lat: float, lng: float, skills: Any) -> tuple:
        return community_id, h3.latlng_to_cell(lat, lng, GUESS_RES), tuple(sorted(skills))

    def get(self, key: tuple) -> list[int]:
        hit = self._seen.get(key)
        if hit is None or hit[0] < time.monotonic():
            return []
        return hit[1]

    def put(self, key: tuple, ids: list[int]) -> None:
        self._seen.pop(key, None)
        if len(self._seen) >= self.size:  # the oldest remembered goes first
            del self._seen[next(iter(self._seen))]
        self._seen[key] = (time.monotonic() + self.ttl_s, ids)


def _retrieve(task: asyncio.Task) -> None:
    """A foreseen search nobody awaited (the posting failed first) is not reported as lost."""
    if not task.cancelled():
        task.exception()


def utcnow() -> datetime:
    return datetime.now(UTC)


def _rounded_m(distance_m: float) -> int:
    """A distance as an offer's text gives it: to 50 m (never the exact gap)."""
    return max(50, round(distance_m / 50) * 50)


def _offer_text(job: Job, distance_m: float, ttl: timedelta, start: datetime | None) -> texts.Text:
    """An offer's text in every language (the wave's statement writes each worker's): a
    booking's with its local start and exact distance, a grab's with how long it stays open."""
    price = texts.Money(job.price_cents, job.currency)
    if job.mode != "booking":
        return texts.every(
            "offer.grab", distance_m=_rounded_m(distance_m), title=job.title, price=price,
            ttl=texts.Duration(int(ttl.total_seconds())),
        )  # fmt: skip
    if start is None:
        return texts.every(
            "offer.booking_unscheduled", title=job.title, price=price,
            distance_m=f"{distance_m:.0f}",
        )  # fmt: skip
    return texts.every(
        "offer.booking", title=job.title, start=texts.LocalTime(start), price=price,
        distance_m=f"{distance_m:.0f}",
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class AcceptAnswer:
    """How an accept answers its winner: `render` turns the taken job into the response body;
    with an Idempotency-Key the answer is stored under it, with the request's fingerprint."""

    render: Callable[[JobView], bytes]
    key: str | None = None
    fingerprint: bytes = b""


@dataclass
class AfterCommit:
    """What to do once the transaction has committed."""

    events: list[tuple[int, ev.Event]] = field(default_factory=list)
    timers: list[tuple[int, int, datetime]] = field(default_factory=list)
    offers: list[tuple[int, int, int, float, str | None, int]] = field(default_factory=list)
    """(offer id, worker id, job id, expiry as epoch seconds, a booking's slot `worker:start`,
    the community's `min_accept_ms`) to cache for the claim script."""
    availability: set[int] = field(default_factory=set)
    settled_claims: list[tuple[int, int]] = field(default_factory=list)
    reopened: list[int] = field(default_factory=list)
    """Jobs open again after being held: their settled claim must go."""
    delivered: list[int] = field(default_factory=list)
    """Set by `run_after`: per event, how many Redis connections (processes with a stream of
    that worker open) the PUBLISH reached."""


def job_summary(job: Job) -> ev.JobSummary:
    lat, lng = wkb_to_latlng(job.location)
    clat, clng = h3.cell_to_latlng(h3.latlng_to_cell(lat, lng, APPROX_RES))
    return ev.JobSummary(
        id=job.id,
        title=job.title,
        category=job.category,
        skills=list(job.skills),
        price_cents=job.price_cents,
        currency=job.currency,
        approx_location={"lat": clat, "lng": clng},
        mode=job.mode,
        scheduled_start=job.scheduled_start,
        scheduled_end=job.scheduled_end,
        pay=pay_out(job_pay(job)),
    )


def booking_slot(job: Job, worker_id: int) -> str | None:
    """The slot a booking's offer to this worker names for the claim script (`worker:start`,
    epoch s), or None for a grab job."""
    if job.mode != "booking" or job.scheduled_start is None:
        return None
    return f"{worker_id}:{int(job.scheduled_start.timestamp())}"


def offer_out(offer: Offer, job: Job | None = None) -> ev.OfferOut:
    return ev.OfferOut(
        id=offer.id,
        job_id=offer.job_id,
        worker_id=offer.worker_id,
        status=offer.status,
        wave=offer.wave,
        distance_m=round(offer.distance_m, 1),
        expires_at=offer.expires_at,
        job=job_summary(job) if job is not None else None,
    )


class Dispatcher:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        live: LiveIndex,
        communities: CommunityService,
        workers: WorkerService,
        bus: ev.EventBus,
        redis: Redis,
    ) -> None:
        self.sessions = sessions
        self.live = live
        self.communities = communities
        self.workers = workers
        self.bus = bus
        self.redis = redis
        self.schedule: Schedule | None = None
        """Arms a durable wake-up for (job, wave) at a time; set by the timer queue."""
        self.hooks: list[AssignmentHook] = []
        self.log: WaveLog | None = None
        """Where each grab wave is recorded for operators (`ops.dispatchlog`)."""
        self._background: set[asyncio.Task[None]] = set()
        self.booking: BookingPicker | None = None
        """Picks booking jobs' offerees one by one; set when the booking room is wired in."""
        self.money: JobMoney | None = None
        """Holds, releases and refunds the job's money; set when the money room is wired in."""
        self._claim = redis.register_script(CLAIM_LUA)
        self._release = redis.register_script(RELEASE_LUA)
        self._side_reads = asyncio.Semaphore(SIDE_READS)
        self._last = LastCandidates()
        self._pipeliner = Pipeliner.for_client(redis)
        """Claims of concurrent accepts share socket writes (None on a cluster client)."""

    def _later(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` after the current request, keeping a reference until it is done."""
        task = asyncio.get_running_loop().create_task(self._quietly(work))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _quietly(self, work: Coroutine[Any, Any, None]) -> None:
        try:
            await work
        except DomainError:
            pass  # the offer was answered or withdrawn meanwhile
        except Exception as exc:
            log.warning("background_step_failed", error=repr(exc))

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()
        if self._pipeliner is not None:
            await self._pipeliner.aclose()

    async def _claim_offer(self, keys: list[str], args: list[object]) -> list:
        """The claim script: pipelined with concurrent claims when it can be, else (cluster,
        script not loaded, connection trouble) through the client as usual."""
        if self._pipeliner is not None:
            sha = self._claim.sha
            try:
                return await self._pipeliner.call("EVALSHA", sha, len(keys), *keys, *args)
            except (NoScriptError, RedisConnectionError, RedisTimeoutError):
                pass
        return await self._claim(keys=keys, args=args)

    # --- waves -------------------------------------------------------------------------------

    async def offers_for(self, worker_id: int) -> list[ev.OfferOut]:
        """The worker's pending offers, soonest to expire first."""
        async with self.sessions() as session:
            return await self.pending_offers(session, worker_id)

    def after_commit(self) -> AfterCommit:
        """A fresh record of what to do once a transaction that dispatched has committed."""
        return AfterCommit()

    def foresee(self, job: Job, view: CommunityView) -> asyncio.Task[Candidates] | None:
        """Start a new grab job's first-wave search, and its candidates' ranking records, before
        its row is stored: they need only the body, so their round trips (Redis, then a pooled
        connection outside the posting's transaction) run while the posting's INSERT does (the
        grab benchmark's first offer waits for all of them). Give the task to `open_job`; a
        posting that fails before then leaves it to finish unread.

        The posting holds a pooled connection while its task wants a second: were every
        connection held by a posting waiting for its second, none would come back (until the
        pool's time-out). So at most `SIDE_READS` such reads are under way at once, and a
        posting that finds them all taken reads its records in its own transaction instead.

        Where a first wave went out in the same cell a moment ago (`LastCandidates`), the read
        of those candidates starts with the search rather than after it; only workers the
        search finds that it did not name are read afterwards."""
        if job.status != "open" or job.mode != "grab" or job.wave or not view.dispatch.waves:
            return None
        lat, lng = wkb_to_latlng(job.location)
        size, reach = self._wave_shape(view, 1, lat, lng)
        now = utcnow()

        key = LastCandidates.key(view.id, lat, lng, job.skills)

        async def candidates() -> Candidates:
            guess = [w for w in self._last.get(key) if w != job.resident_id]
            search = self._wave_search(view, job, size, reach, lat, lng, 0, now)
            if guess and not self._side_reads.locked():
                async with self._side_reads:  # whom the last search here found, read beside
                    found, early = await asyncio.gather(
                        search, self._ranking_rows(self.sessions, view.id, guess, now)
                    )
                    self._last.put(key, [n.worker_id for n in found])
                    wanted = {n.worker_id for n in found if n.worker_id != job.resident_id}
                    rows = [r for r in early if r[0] in wanted]
                    missed = list(wanted.difference(r[0] for r in rows))
                    if missed:  # found now, not by the last search here: read after it
                        rows += await self._ranking_rows(self.sessions, view.id, missed, now)
                    return found, rows
            found = await search
            self._last.put(key, [n.worker_id for n in found])
            fresh = [n.worker_id for n in found if n.worker_id != job.resident_id]
            if self._side_reads.locked():
                return found, None
            async with self._side_reads:
                return found, await self._ranking_rows(self.sessions, view.id, fresh, now)

        task = asyncio.ensure_future(candidates())
        task.add_done_callback(_retrieve)
        return task

    @staticmethod
    async def _ranking_rows(
        where: AsyncSession | async_sessionmaker[AsyncSession],
        community_id: int,
        ids: list[int],
        now: datetime,
    ) -> list:
        """`RANKING_RECORDS` of the candidates `ids`: in the wave's transaction (a session), or
        outside any (a sessionmaker: `infra.rawread`; the records are advice on whom to offer
        first, not a decision, so they need no lock or snapshot of the wave's)."""
        if not ids:
            return []
        params = {
            "ids": ids, "cid": community_id, "hour_ago": now - timedelta(hours=1),
            "recent_offers": ranking.RECENT_OFFERS,
        }  # fmt: skip
        if isinstance(where, AsyncSession):
            return list((await where.execute(RANKING_RECORDS, params)).all())
        return await _RANKING.rows(where, params)

    async def open_job(
        self,
        session: AsyncSession,
        job: Job,
        after: AfterCommit,
        view: CommunityView | None = None,
        foreseen: asyncio.Task[Candidates] | None = None,
    ) -> int:
        """Send the first wave of a just-posted job (in the posting transaction): grab jobs to
        the nearest, booking jobs to one worker at a time. `view` is its community as the
        posting found it; `foreseen`, its first wave's search if `foresee` started it. Returns
        how many offers went out."""
        if job.status != "open" or (job.mode == "booking" and self.booking is None):
            return 0
        if view is None or view.id != job.community_id:
            view = await self.communities.get(session, job.community_id)
            foreseen = None
        # Nobody has been offered a job that has sent no wave yet.
        offered: set[int] | None = set() if job.wave == 0 else None
        return await self._next_wave(session, job, view, utcnow(), after, offered, foreseen)

    @staticmethod
    def _wave_shape(view: CommunityView, wave: int, lat: float, lng: float) -> tuple[int, float]:
        """Wave `wave`'s size and reach (metres) for a job at (lat, lng)."""
        spec = view.dispatch.waves[wave - 1]
        return wave_size(spec), wave_reach_m(spec, view.area, lat, lng)

    def _wave_search(
        self,
        view: CommunityView,
        job: Job,
        size: int,
        reach: float,
        lat: float,
        lng: float,
        n_offered: int,
        now: datetime,
    ) -> Coroutine[Any, Any, list[Nearby]]:
        """A wave's live-index search: the nearest available, skilled, fresh workers within
        reach, enough of them to rank (`ranking_pool`) once the `n_offered` offered before and
        the resident are left out."""
        return self.live.search(
            view.id,
            lat,
            lng,
            reach,
            skills=list(job.skills),
            limit=ranking_pool(size) + n_offered + 1,
            min_recorded_at=now.timestamp() - view.dispatch.location_max_age_s,
        )

    async def _next_wave(
        self,
        session: AsyncSession,
        job: Job,
        view: CommunityView,
        now: datetime,
        after: AfterCommit,
        offered: set[int] | None = None,
        foreseen: asyncio.Task[Candidates] | None = None,
    ) -> int:
        """Send the job's next wave that finds someone not yet offered it; returns the number of
        offers sent. `offered`: the workers offered it before, if the caller knows; `foreseen`:
        the first wave's search and ranking records, already under way (`foresee`)."""
        params = view.dispatch
        lat, lng = wkb_to_latlng(job.location)
        if offered is None:
            offered = set(
                (await session.scalars(select(Offer.worker_id).where(Offer.job_id == job.id))).all()
            )
        if job.mode == "booking":
            return await self._next_booking_offer(session, job, view, now, after, offered)
        wave = job.wave
        while wave < len(params.waves):
            wave += 1
            size, reach = self._wave_shape(view, wave, lat, lng)
            rows = None
            if foreseen is not None and wave == 1:
                found, rows = await foreseen
            else:
                found = await self._wave_search(view, job, size, reach, lat, lng, len(offered), now)
            chosen, ranked = await self._rank(
                session, job, view, found, offered, size, reach, now, rows
            )
            expires = now + timedelta(seconds=params.offer_ttl_s)
            if self.log is not None:
                self.log.wave(
                    session, job, view, wave, reach, size, found, chosen, offered, now, ranked
                )
            if not chosen:
                if wave < len(params.waves):
                    continue  # nobody new this close: widen at once
                # The last wave found nobody: hold the job open for one offer lifetime (workers
                # come online) before declaring it unfilled.
                job.wave, job.wave_deadline = wave, expires
                after.timers.append((job.id, wave, expires))
                ops_events.job_changed(session, job, wave_radius_m=round(reach), offered=[])
                return 0
            await self._send_wave(
                session, job, wave, chosen, now, expires, after, view, reach_m=round(reach)
            )
            return len(chosen)
        job.wave = wave
        await self._unfilled(session, job, {"waves": wave}, now)
        return 0

    async def _rank(
        self,
        session: AsyncSession,
        job: Job,
        view: CommunityView,
        found: list[Nearby],
        offered: set[int],
        size: int,
        reach: float,
        now: datetime,
        rows: list | None = None,
    ) -> tuple[list[Nearby], list[ranking.Ranked]]:
        """The wave's offerees by fair ranking (`dispatch.trust.ranking`) among the candidates
        the live index found within reach, and every candidate ranked (for the dispatch log).
        `rows`: the candidates' ranking records, if already read (`foresee`)."""
        fresh = [n for n in found if n.worker_id not in offered and n.worker_id != job.resident_id]
        if not fresh:
            return [], []
        distance = {n.worker_id: n for n in fresh}
        if rows is None:
            rows = await self._ranking_rows(session, view.id, list(distance), now)
        records = [
            ranking.Record(
                worker_id=r[0], distance_m=distance[r[0]].distance_m, rating_sum=r[1],
                rating_count=r[2], jobs_done=r[3], no_shows=r[4], late_cancels=r[5],
                answered=r[6], accepted=r[7], recent=r[8], last_offer_at=r[9],
            )
            for r in rows
            if r[0] in distance
        ]  # fmt: skip
        picked, ranked = ranking.pick(
            records, offered, job.resident_id, size, reach, view.dispatch.offers_per_worker_hour
        )
        return [distance[x.record.worker_id] for x in picked], ranked

    async def _unfilled(self, session: AsyncSession, job: Job, detail: dict, now: datetime) -> None:
        """Nobody is left to ask: the job is unfilled and its community's operators are told."""
        check_transition(job.status, "unfilled")
        job.status, job.wave_deadline, job.version = "unfilled", None, job.version + 1
        await self._alert(session, job, "job_unfilled", detail, now)
        ops_events.job_changed(session, job)

    async def _next_booking_offer(
        self,
        session: AsyncSession,
        job: Job,
        view: CommunityView,
        now: datetime,
        after: AfterCommit,
        offered: set[int],
    ) -> int:
        """A booking job goes to one worker at a time, for one slot, for
        `booking_confirm_ttl_s`; when nobody is left, it is unfilled and operators are told."""
        picked = await self.booking.pick(session, job, view, offered, now) if self.booking else None
        if picked is None:
            await self._unfilled(session, job, {"asked": len(offered)}, now)
            return 0
        worker_id, distance_m, start = picked
        assert job.duration_min is not None
        job.scheduled_start = start
        job.scheduled_end = start + timedelta(minutes=job.duration_min)
        expires = now + timedelta(seconds=view.dispatch.booking_confirm_ttl_s)
        nearby = Nearby(worker_id, distance_m, 0.0, 0.0, 0.0)
        await self._send_wave(session, job, job.wave + 1, [nearby], now, expires, after, view)
        return 1

    async def _send_wave(
        self,
        session: AsyncSession,
        job: Job,
        wave: int,
        chosen: list[Nearby],
        now: datetime,
        expires: datetime,
        after: AfterCommit,
        view: CommunityView | None = None,
        reach_m: float | None = None,
    ) -> None:
        """The wave's offers, their outbox rows and the job's new wave and deadline: one
        statement. The offer events go out after commit (`reach_m`: how far the wave looked,
        for operators' map)."""
        start = None
        if job.mode == "booking" and job.scheduled_start is not None:
            start = job.scheduled_start.astimezone(ZoneInfo(view.timezone if view else "UTC"))
        summary = job_summary(job)
        outs: dict[int, ev.OfferOut] = {}
        rows = []
        for n in chosen:
            out = ev.OfferOut(
                id=0,  # the database gives it; the statement puts it into the payload
                job_id=job.id,
                worker_id=n.worker_id,
                status="pending",
                wave=wave,
                distance_m=round(n.distance_m, 1),
                expires_at=expires,
                job=summary,
            )
            outs[n.worker_id] = out
            rows.append(
                {
                    "w": n.worker_id,
                    "d": n.distance_m,
                    "b": _offer_text(job, out.distance_m, expires - now, start).by_locale,
                    "p": ev.OfferSent(out),
                }
            )
        made = (
            await session.execute(
                SEND_WAVE,
                {
                    "job_id": job.id,
                    "wave": wave,
                    "now": now,
                    "expires": expires,
                    "rows": msgspec.json.encode(rows).decode(),
                },
            )
        ).all()
        if len(made) != len(chosen):
            raise RuntimeError(f"job {job.id} wave {wave}: {len(made)} of {len(chosen)} offers")
        # The row already holds these; keep the loaded job in step without another UPDATE.
        set_committed_value(job, "wave", wave)
        set_committed_value(job, "wave_deadline", expires)
        expires_ts = expires.timestamp()
        min_accept_ms = view.dispatch.min_accept_ms if view is not None else 0
        ids = {worker_id: offer_id for offer_id, worker_id in made}
        for n in chosen:  # nearest first, as before
            out = outs[n.worker_id]
            out.id = ids[n.worker_id]
            after.events.append((n.worker_id, ev.OfferSent(out)))
            slot = booking_slot(job, n.worker_id)
            after.offers.append((out.id, n.worker_id, job.id, expires_ts, slot, min_accept_ms))
        after.timers.append((job.id, wave, expires))
        ops_events.job_changed(
            session, job, wave_radius_m=reach_m, offered=[n.worker_id for n in chosen]
        )

    async def _alert(
        self,
        session: AsyncSession,
        job: Job,
        kind: str,
        detail: dict,
        now: datetime,
        severity: str = "warning",
    ) -> None:
        await raise_alert(
            session, community_id=job.community_id, kind=kind, job_id=job.id, detail=detail,
            now=now, severity=severity,
        )  # fmt: skip

    async def advance(self, job_id: int, wave: int) -> bool:
        """The wave's timer fired: expire its offers and send the next wave. Safe to repeat:
        nothing happens unless the job is still open at that wave and the wave is due."""
        after = AfterCommit()
        async with self.sessions.begin() as session:
            job = await session.get(Job, job_id, with_for_update=True)
            if job is None or job.status != "open" or job.wave != wave:
                return False
            now = utcnow()
            if job.wave_deadline is not None and job.wave_deadline > now:
                if await self._wave_has_pending(session, job):
                    after.timers.append((job.id, job.wave, job.wave_deadline))  # woke early
                    await self.run_after(after)
                    return False
            await self._close_wave(session, job, now, after)
            view = await self.communities.get(session, job.community_id)
            await self._next_wave(session, job, view, now, after)
        await self.run_after(after)
        return True

    async def _wave_has_pending(self, session: AsyncSession, job: Job) -> bool:
        count = await session.scalar(
            select(func.count())
            .select_from(Offer)
            .where(Offer.job_id == job.id, Offer.wave == job.wave, Offer.status == "pending")
        )
        return bool(count)

    async def _close_wave(
        self, session: AsyncSession, job: Job, now: datetime, after: AfterCommit
    ) -> None:
        expired = (
            await session.execute(
                update(Offer)
                .where(Offer.job_id == job.id, Offer.wave == job.wave, Offer.status == "pending")
                .values(status="expired", responded_at=now)
                .returning(Offer.id, Offer.worker_id)
            )
        ).all()
        after.events.extend((w, ev.OfferExpired(offer_id=o, job_id=job.id)) for o, w in expired)

    async def sweep_overdue(self, grace_s: float = 1.0) -> int:
        """Advance every open job whose wave deadline has passed (timers lost or late)."""
        cutoff = utcnow() - timedelta(seconds=grace_s)
        async with self.sessions() as session:
            due = (
                await session.execute(
                    select(Job.id, Job.wave).where(Job.status == "open", Job.wave_deadline < cutoff)
                )
            ).all()
        advanced = 0
        for job_id, wave in due:
            advanced += await self.advance(job_id, wave)
        return advanced

    # --- claims ------------------------------------------------------------------------------

    async def accept(
        self, who: Principal, offer_id: int, answer: AcceptAnswer
    ) -> tuple[int, bytes]:
        """Take the offered job. Exactly one accept per job wins (200 and the job as `answer`
        renders it); the rest get 409."""
        if not is_db_id(offer_id):
            raise NotFound(f"offer {offer_id} does not exist", code="offer_not_found")
        # One round trip: the cached offer is checked and the job's provisional claim taken.
        reply = await self._claim_offer(
            keys=[offer_key(offer_id)],
            args=[who.user_id, time.time(), CLAIM_TTL_MS, CLAIM_PREFIX, SLOT_PREFIX],
        )
        outcome, job_ref = reply[0], reply[1]
        slot = reply[2] if len(reply) > 2 and reply[2] else None
        outcome = outcome.decode() if isinstance(outcome, bytes) else outcome
        if outcome == "not_yours":
            raise Forbidden("this offer was made to another worker", code="not_your_offer")
        if outcome == "expired":
            raise Gone("the offer has expired", code="offer_expired")
        if outcome == "taken":
            raise Conflict("another worker took this job first", code="already_taken")
        if outcome == "too_fast":
            refusal = too_fast(await self._min_accept_ms(int(job_ref)))
            await self._refused(who.user_id, int(job_ref), refusal)
            raise refusal
        if outcome == "slot_taken":
            # Another job is booking this worker's very slot right now: a clear 409 at once,
            # and this one moves on (as below).
            self._later(self.decline(who, offer_id))
            raise WorkerUnavailable("another booking is taking this slot")
        # "claimed" (ours now: the database decides) or "unknown" (not cached: it decides alone)
        job_id = int(job_ref) if outcome == "claimed" else None
        try:
            return await self._accept_in_db(who, offer_id, answer)
        except WorkerUnavailable:
            # A booking slot taken meanwhile: the claim rolled back. The offer counts as
            # declined and the job moves on to the next worker, after the 409 is answered (a
            # race's losers would otherwise each wait for the next pick); should this process
            # die first, the offer's own expiry moves the job on.
            await self._release_claims(job_id, slot, who.user_id)
            self._later(self.decline(who, offer_id))
            raise
        except AcceptRefused as refusal:
            await self._release_claims(job_id, slot, who.user_id)
            await self._refused(who.user_id, job_id, refusal)
            raise
        except BaseException:
            await self._release_claims(job_id, slot, who.user_id)
            raise

    async def _min_accept_ms(self, job_id: int) -> int:
        async with self.sessions() as session:
            job = await get_row(session, Job, job_id)
            return (await self.communities.get(session, job.community_id)).dispatch.min_accept_ms

    async def _refused(self, worker_id: int, job_id: int | None, refusal: AcceptRefused) -> None:
        """Count an accept the anti-bot rules refused, on the worker, for operators; too-fast
        accepts that look like a bot's raise an alert."""
        column = getattr(Worker, refusal.counter)
        async with self.sessions.begin() as session:
            count = await session.scalar(
                update(Worker)
                .where(Worker.user_id == worker_id)
                .values({refusal.counter: column + 1})
                .returning(column)
            )
            if refusal.counter == "fast_accepts" and count and suspicious(count) and job_id:
                job = await get_row(session, Job, job_id)
                await self._alert(
                    session, job, "suspected_bot",
                    {"worker_id": worker_id, "fast_accepts": count}, utcnow(),
                )  # fmt: skip
        log.info("accept_refused", worker_id=worker_id, job_id=job_id, code=refusal.code)

    async def _release_claims(
        self, job_id: int | None, slot: bytes | str | None, worker_id: int
    ) -> None:
        if job_id is not None:
            await self._release(keys=[claim_key(job_id)], args=[worker_id])
            if slot:
                key = slot.decode() if isinstance(slot, bytes) else slot
                await self._release(keys=[key], args=[job_id])

    async def _accept_in_db(
        self, who: Principal, offer_id: int, answer: AcceptAnswer
    ) -> tuple[int, bytes]:
        after = AfterCommit()
        async with self.sessions.begin() as session:

            async def produce() -> tuple[int, bytes]:
                job = await self._take(session, who, offer_id, after)
                return 200, answer.render(await job_view(session, job, who.user_id))

            if answer.key is None:
                result = await produce()
            else:
                # In the claim's own transaction: a retry replays it byte for byte, and the key
                # cannot be spent on another offer.
                result = await idempotency.run_once(
                    session, who.user_id, answer.key, answer.fingerprint, produce
                )
        await self.run_after(after)
        return result

    async def _take(
        self, session: AsyncSession, who: Principal, offer_id: int, after: AfterCommit
    ) -> Job:
        """The claim in the database: the offer's job goes to `who` unless someone was first."""
        found = (await session.execute(OFFER_AND_JOB, {"offer_id": offer_id})).first()
        if found is None:
            raise NotFound(f"offer {offer_id} does not exist", code="offer_not_found")
        offer, job = found
        if offer.worker_id != who.user_id:
            raise Forbidden("this offer was made to another worker", code="not_your_offer")
        if offer.status == "accepted" and job.worker_id == who.user_id:
            return job  # a retry of the winning accept
        now = utcnow()
        await self._check_taker(session, job, offer, who.user_id, now)
        # The claim: only the first conditional update of an open job succeeds; the rest
        # wait on its row lock, then find it no longer open.
        won = await session.scalar(
            CLAIM_JOB,
            {
                "claim_job": job.id,
                "claim_version": job.version,
                "claimant": who.user_id,
                "claimed_at": now,
            },
        )
        if won is None:
            await session.refresh(job)
            await session.refresh(offer)
            if job.status == "cancelled" or offer.status == "withdrawn":
                raise Gone("the job was cancelled", code="offer_withdrawn")
            if job.status == "open":
                raise Conflict("the job changed meanwhile; try again", code="retry")
            raise Conflict("another worker took this job first", code="already_taken")
        notice = ev.OfferTaken(offer_id=0, job_id=job.id)
        retired = (
            await session.execute(
                TAKE_OFFER,
                {
                    "offer_id": offer.id,
                    "job_id": job.id,
                    "worker_id": who.user_id,
                    "version": job.assignment_version,
                    "now": now,
                    "kind": "offer_taken",
                    "body": TAKEN_BODY,
                    "event": ev.encode(notice).decode(),
                },
            )
        ).all()
        if not retired:
            raise Gone("the offer has expired", code="offer_expired")
        for other_id, worker_id in retired:
            if other_id is not None:
                after.events.append((worker_id, msgspec.structs.replace(notice, offer_id=other_id)))
        for hook in self.hooks:
            await hook.assigned(session, job, who.user_id, now)
        if self.money is not None:
            await self.money.assigned(session, job, who.user_id, now)
        after.events.append(
            (
                who.user_id,
                ev.JobAssigned(
                    job_id=job.id,
                    worker_id=who.user_id,
                    assignment_version=job.assignment_version,
                ),
            )
        )
        after.availability.add(who.user_id)
        after.settled_claims.append((job.id, who.user_id))
        # The claim statement changed the row; the loaded one is from before it.
        ops_events.job_changed(
            session, job, status="assigned", worker_id=who.user_id, version=won.version
        )
        return job

    async def _check_taker(
        self, session: AsyncSession, job: Job, offer: Offer, worker_id: int, now: datetime
    ) -> None:
        """The anti-bot rules, in the database (the claim script checks the time first when
        the offer is cached): not sooner than `min_accept_ms` after the offer was made, and,
        for a grab job, not while holding `max_open_assignments` unfinished grab jobs (a
        booked slot next week does not count; one under way does)."""
        params = (await self.communities.get(session, job.community_id)).dispatch
        if params.min_accept_ms and now < offer.created_at + timedelta(
            milliseconds=params.min_accept_ms
        ):
            raise too_fast(params.min_accept_ms)
        if job.mode == "grab" and params.max_open_assignments is not None:
            held = await session.scalar(OPEN_ASSIGNMENTS, {"worker_id": worker_id}) or 0
            if held >= params.max_open_assignments:
                raise too_many_open(held, params.max_open_assignments)

    async def _retire_offers(
        self, session: AsyncSession, job_id: int, status: str, now: datetime, after: AfterCommit
    ) -> None:
        """Close every pending offer of the job (taken by someone, or withdrawn), each with its
        outbox notice, in one statement; the events go out after commit."""
        notice: ev.OfferTaken | ev.OfferWithdrawn = (
            ev.OfferTaken(offer_id=0, job_id=job_id)
            if status == "taken"
            else ev.OfferWithdrawn(offer_id=0, job_id=job_id, reason="cancelled")
        )
        rows = (
            await session.execute(
                RETIRE_OFFERS,
                {
                    "job_id": job_id,
                    "status": status,
                    "now": now,
                    "kind": f"offer_{status}",
                    "body": TAKEN_BODY if status == "taken" else WITHDRAWN_BODY,
                    "event": ev.encode(notice).decode(),
                },
            )
        ).all()
        for offer_id, worker_id in rows:
            after.events.append((worker_id, msgspec.structs.replace(notice, offer_id=offer_id)))

    async def decline(self, who: Principal, offer_id: int) -> None:
        after = AfterCommit()
        async with self.sessions.begin() as session:
            offer = await session.get(Offer, offer_id) if is_db_id(offer_id) else None
            if offer is None:
                raise NotFound(f"offer {offer_id} does not exist", code="offer_not_found")
            if offer.worker_id != who.user_id:
                raise Forbidden("this offer was made to another worker", code="not_your_offer")
            job = await session.get(Job, offer.job_id, with_for_update=True)
            assert job is not None
            await session.refresh(offer)
            if offer.status == "declined":
                return
            if offer.status != "pending":
                raise Gone(f"the offer is already {offer.status}", code="offer_closed")
            now = utcnow()
            offer.status, offer.responded_at = "declined", now
            await session.flush()
            if job.status == "open" and offer.wave == job.wave:
                if not await self._wave_has_pending(session, job):
                    # Everyone in this wave said no: do not wait for the timer.
                    view = await self.communities.get(session, job.community_id)
                    await self._next_wave(session, job, view, now, after)
        await self.run_after(after)

    async def pending_offers(self, session: AsyncSession, worker_id: int) -> list[ev.OfferOut]:
        rows = (
            await session.execute(
                select(Offer, Job)
                .join(Job, Job.id == Offer.job_id)
                .where(
                    Offer.worker_id == worker_id,
                    Offer.status == "pending",
                    Offer.expires_at > utcnow(),
                )
                .order_by(Offer.expires_at)
            )
        ).all()
        return [offer_out(o, j) for o, j in rows]

    # --- after the claim ---------------------------------------------------------------------

    async def _held_job(
        self, session: AsyncSession, who: Principal, job_id: int, version: int
    ) -> Job:
        """The job, locked, if `who` holds it under assignment `version` (the fencing check)."""
        job = await get_row(session, Job, job_id, lock=True)
        if job.worker_id != who.user_id:
            raise Forbidden("you do not hold this job", code="not_assigned")
        if job.assignment_version != version:
            raise Conflict(
                f"assignment {version} is no longer current (now {job.assignment_version})",
                code="stale_assignment",
            )
        return job

    async def complete(
        self,
        who: Principal,
        job_id: int,
        version: int,
        materials: list[dict[str, Any]] | None = None,
    ) -> JobView:
        """The holder marks the job done; `materials` bought for it join as a change order
        for the resident to approve before confirming."""
        after = AfterCommit()
        async with self.sessions.begin() as session:
            job = await self._held_job(session, who, job_id, version)
            check_transition(job.status, "completed")
            now = utcnow()
            if materials and self.money is not None:
                await self.money.add_materials(session, job, who.user_id, materials, now)
            job.status, job.completed_at, job.version = "completed", now, job.version + 1
            await self._end_assignment(session, job, "completed", now)
            await session.execute(
                update(Worker)
                .where(Worker.user_id == who.user_id)
                .values(jobs_done=Worker.jobs_done + 1)
            )
            if self.money is not None:
                await self.money.completed(session, job, now)
            ops_events.job_changed(session, job)
            after.availability.add(who.user_id)
            view = await job_view(session, job)
        await self.run_after(after)
        return view

    async def cancel(
        self, who: Principal, job_id: int, reason: str, version: int | None
    ) -> JobView:
        """Cancel by the resident (fee by the rules) or by the holding worker (fenced; the job
        goes back out to other workers)."""
        after = AfterCommit()
        async with self.sessions.begin() as session:
            job = await get_row(session, Job, job_id, lock=True)
            now = utcnow()
            if who.role == "resident" and job.resident_id == who.user_id:
                if job.status == "disputed":
                    raise Conflict("a disputed job is settled by an operator", code="disputed")
                check_transition(job.status, "cancelled")
                fee = cancellation_fee(
                    status=job.status,
                    cancelled_by="resident",
                    price_cents=job.price_cents,
                    assigned_at=job.assigned_at,
                    now=now,
                )
                holder = job.worker_id if job.status in ("assigned", "in_progress") else None
                if job.mode == "booking" and holder is not None and self.booking is not None:
                    fee = await self.booking.resident_fee(session, job, now)
                job.status, job.cancelled_at, job.cancelled_by = "cancelled", now, "resident"
                region = (await self.communities.get(session, job.community_id)).phone_region
                # The worker reads the reason: no phone number goes with it.
                job.cancel_reason = screen(reason, region).text
                job.cancellation_fee_cents = fee
                job.wave_deadline, job.version = None, job.version + 1
                ops_events.job_changed(session, job)
                await self._retire_offers(session, job.id, "withdrawn", now, after)
                if holder is not None:
                    await self._end_assignment(session, job, "cancelled", now)
                    after.events.append((holder, ev.JobReleased(job_id=job.id, reason="cancelled")))
                    after.availability.add(holder)
                if self.money is not None:
                    await self.money.resident_cancelled(session, job, holder, now)
            elif who.role == "worker":
                if version is None:
                    raise Unprocessable(
                        "a worker cancelling must give assignment_version", code="version_required"
                    )
                job = await self._held_job(session, who, job_id, version)
                if job.status != "assigned":
                    raise Conflict("only a job not yet started can be handed back", code="started")
                owed = 0
                if job.mode == "booking" and self.booking is not None:
                    owed = await self.booking.worker_cancelled(session, job, who.user_id, now)
                    job.compensation_cents = (job.compensation_cents or 0) + owed
                await self._end_assignment(session, job, "worker_cancelled", now)
                if self.money is not None:
                    await self.money.handed_back(
                        session, job, who.user_id, "worker_cancelled", owed, now
                    )
                job.status, job.worker_id, job.assigned_at = "open", None, None
                job.version += 1
                ops_events.job_changed(session, job)
                after.reopened.append(job.id)
                after.availability.add(who.user_id)
                await self._alert(session, job, "worker_cancelled", {"worker_id": who.user_id}, now)
                view = await self.communities.get(session, job.community_id)
                await self._next_wave(session, job, view, now, after)
            else:
                raise Forbidden(
                    "only the job's resident or its worker may cancel", code="not_yours"
                )
            view = await job_view(session, job)
        await self.run_after(after)
        return view

    async def assign(self, who: Principal, job_id: int, worker_id: int) -> JobView:
        """An operator hands the job to a worker (manual dispatch); any earlier holder's
        assignment version becomes stale."""
        after = AfterCommit()
        async with self.sessions.begin() as session:
            job = await get_row(session, Job, job_id, lock=True)
            if not who.can_operate(job.community_id):
                raise Forbidden("not an operator of this job's community", code="not_yours")
            worker = await session.get(Worker, worker_id) if is_db_id(worker_id) else None
            if worker is None or job.community_id not in await self.workers.communities_of(
                session, worker_id
            ):
                raise Unprocessable("that worker does not serve this community", code="bad_worker")
            if worker.verification != "verified":
                raise Unprocessable("that worker is not verified", code="worker_unverified")
            check_transition(job.status, "assigned")
            now = utcnow()
            previous = job.worker_id
            if previous is not None:
                await self._end_assignment(session, job, "reassigned", now)
                after.events.append((previous, ev.JobReleased(job_id=job.id, reason="reassigned")))
                after.availability.add(previous)
            await self._retire_offers(session, job.id, "taken", now, after)
            job.status, job.worker_id, job.assigned_at = "assigned", worker_id, now
            job.assignment_version += 1
            job.version += 1
            job.wave_deadline = None
            ops_events.job_changed(session, job)
            await session.flush()
            session.add(
                Assignment(
                    job_id=job.id,
                    worker_id=worker_id,
                    version=job.assignment_version,
                    active=True,
                    source="manual",
                    created_at=now,
                )
            )
            after.events.append(
                (
                    worker_id,
                    ev.JobAssigned(
                        job_id=job.id,
                        worker_id=worker_id,
                        assignment_version=job.assignment_version,
                    ),
                )
            )
            for hook in self.hooks:
                await hook.assigned(session, job, worker_id, now)
            if self.money is not None:
                await self.money.assigned(session, job, worker_id, now)
            after.availability.add(worker_id)
            after.settled_claims.append((job.id, worker_id))
            view = await job_view(session, job)
        await self.run_after(after)
        return view

    async def no_show(self, session: AsyncSession, job: Job, now: datetime) -> AfterCommit:
        """A booking's worker had not started by the grace after its start: the assignment ends
        (a no-show), and the job goes out again at once as a grab job for the same place, its
        window starting now; operators are alerted. In the caller's transaction (the no-show
        timer's); the returned `AfterCommit` is for after it commits."""
        after = AfterCommit()
        worker_id = job.worker_id
        assert worker_id is not None and job.duration_min is not None
        await self._end_assignment(session, job, "no_show", now)
        if self.money is not None:
            await self.money.handed_back(session, job, worker_id, "no_show", 0, now)
        after.events.append((worker_id, ev.JobReleased(job_id=job.id, reason="no_show")))
        after.availability.add(worker_id)
        after.reopened.append(job.id)
        job.mode, job.status, job.worker_id, job.assigned_at = "grab", "open", None, None
        job.no_show_at = now
        job.window_start, job.window_end = now, now + timedelta(minutes=job.duration_min)
        job.scheduled_start = job.scheduled_end = None
        job.wave, job.wave_deadline, job.version = 0, None, job.version + 1
        ops_events.job_changed(session, job)
        await session.execute(
            update(Worker).where(Worker.user_id == worker_id).values(no_shows=Worker.no_shows + 1)
        )
        await self._alert(
            session, job, "booking_no_show", {"worker_id": worker_id}, now, severity="high"
        )
        view = await self.communities.get(session, job.community_id)
        await self._next_wave(session, job, view, now, after)
        return after

    async def end_assignment(
        self, session: AsyncSession, job: Job, reason: str, now: datetime
    ) -> None:
        """End the job's active assignment, if any, with everything that goes with it (masked
        numbers, safety timers), in the caller's transaction."""
        await self._end_assignment(session, job, reason, now)

    async def _end_assignment(
        self, session: AsyncSession, job: Job, reason: str, now: datetime
    ) -> None:
        await session.execute(
            update(Assignment)
            .where(Assignment.job_id == job.id, Assignment.active.is_(True))
            .values(active=False, ended_at=now, end_reason=reason)
        )
        if job.worker_id is not None:
            for hook in self.hooks:
                await hook.released(session, job, job.worker_id, reason, now)

    # --- after commit ------------------------------------------------------------------------

    async def run_after(self, after: AfterCommit) -> None:
        """Carry out what a committed transaction promised. The transaction is done whatever
        happens here, so a failure (Redis or PostgreSQL down a moment) is logged, not raised:
        offers not cached are decided by the database, events not published reach the worker
        through the outbox, a wake-up not scheduled is found by the sweep, and availability not
        published is published again by the index check (`WorkerService.publish_later`)."""
        try:
            await self._cache_and_announce(after)
        except Exception as exc:
            log.warning("after_commit_failed", part="cache", error=repr(exc))
        if self.schedule is not None:
            try:
                for job_id, wave, due in after.timers:
                    await self.schedule(job_id, wave, due)
            except Exception as exc:
                log.warning("after_commit_failed", part="timers", error=repr(exc))
        if after.availability:
            try:
                async with self.sessions() as session:
                    for worker_id in after.availability:
                        await self.workers.publish(session, worker_id, again_after_commit=False)
            except Exception as exc:
                log.warning("after_commit_failed", part="availability", error=repr(exc))
                self.workers.publish_later(after.availability)

    async def _cache_and_announce(self, after: AfterCommit) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            # One round trip, in this order: offers are cached (for the claim script) before
            # their events can reach anyone who might accept them.
            sent = time.time()
            for offer_id, worker_id, job_id, expires_ts, slot, min_ms in after.offers:
                key = offer_key(offer_id)
                cached: dict[str, object] = {"w": worker_id, "j": job_id, "x": expires_ts}
                if slot:
                    cached["s"] = slot
                if min_ms:
                    # Anti-bot: no accept before this (the offer reaches the worker after it).
                    cached["e"] = sent + min_ms / 1000
                pipe.hset(key, mapping=cached)  # type: ignore[arg-type]
                pipe.expireat(key, int(expires_ts) + OFFER_CACHE_GRACE_S)
            for job_id in after.reopened:
                pipe.delete(claim_key(job_id))
            for job_id, worker_id in after.settled_claims:
                pipe.set(claim_key(job_id), worker_id, ex=SETTLED_CLAIM_TTL_S)
            self.bus.publish_in(pipe, after.events)
            if len(pipe):
                results = await pipe.execute()
                if after.events:
                    after.delivered = [int(n) for n in results[-1]]
