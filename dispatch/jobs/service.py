"""Jobs: the rules a new job must meet, and storing and reading jobs."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

import h3.api.basic_int as h3
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dispatch.communities.service import CommunityService, CommunityView
from dispatch.core.errors import Forbidden, Unprocessable
from dispatch.identity.phones import hide_phones
from dispatch.identity.principal import Principal
from dispatch.infra import idempotency
from dispatch.jobs.queries import Approach, JobView, approach_of, job_view, offer_counts
from dispatch.jobs.rules import booking_duration_min, check_booking, check_window, review_reason
from dispatch.models import Job
from dispatch.models.base import get_row
from dispatch.ops import events as ops_events
from dispatch.trust.screening import screen
from geo.distance import haversine_m
from geo.live import LiveIndex
from geo.shapes import point_to_wkb, wkb_to_latlng

JOB_CELL_RES = 9
_SERVES = text(
    "SELECT true FROM worker_communities wc JOIN workers w ON w.user_id = wc.worker_id "
    "WHERE wc.worker_id = :w AND wc.community_id = :c AND w.verification = 'verified'"
)


@dataclass
class NewJob:
    title: str
    category: str
    lat: float
    lng: float
    mode: str
    price_cents: int
    description: str = ""
    skills: list[str] = field(default_factory=list)
    address: str | None = None
    window: tuple[datetime, datetime] | None = None
    currency: str = "CNY"
    materials: list[dict[str, Any]] = field(default_factory=list)
    insured: bool = False
    community_id: int | None = None
    duration_min: int | None = None
    worker_id: int | None = None


class Dispatch(Protocol):
    """What posting needs from a dispatcher (the grab dispatcher): send the first wave in the
    posting's transaction, and its live events and timers after commit."""

    def after_commit(self) -> Any: ...

    def foresee(self, job: Job, community: CommunityView) -> Any: ...

    async def open_job(
        self,
        session: AsyncSession,
        job: Job,
        after: Any,
        community: CommunityView,
        foreseen: Any = None,
    ) -> int: ...

    async def run_after(self, after: Any) -> None: ...


class JobService:
    """Posting and reading jobs. Each public call is one transaction of its own."""

    def __init__(
        self,
        communities: CommunityService,
        sessions: async_sessionmaker[AsyncSession],
        dispatch: Dispatch | None = None,
        live: LiveIndex | None = None,
    ) -> None:
        self.communities = communities
        self.sessions = sessions
        self.dispatch = dispatch
        """None: jobs are stored and not sent out (`DISPATCH_AUTO=0`, for benchmarks)."""
        self.live = live
        """Where workers are: the resident's view of the worker's approach."""

    async def post(
        self,
        who: Principal,
        new: NewJob,
        key: str,
        fingerprint: bytes,
        render: Callable[[Job, int], bytes],
    ) -> tuple[int, bytes]:
        """Store the job and send its first wave, in one transaction keyed by the caller's
        Idempotency-Key: a retry with the same key and body gets the first answer (`render`ed
        from the job and the offers sent) again, and nothing is posted twice."""
        after = self.dispatch.after_commit() if self.dispatch else None
        async with self.sessions.begin() as session:

            async def produce() -> tuple[int, bytes]:
                job, community = await self.build(session, who, new)
                if self.dispatch is None:
                    await self.store(session, job)
                    return 201, render(job, 0)
                # The first wave's search starts now and runs while the row is stored.
                foreseen = self.dispatch.foresee(job, community)
                await self.store(session, job)
                offered = await self.dispatch.open_job(session, job, after, community, foreseen)
                return 201, render(job, offered)

            answer = await idempotency.run_once(session, who.user_id, key, fingerprint, produce)
        if self.dispatch is not None:
            await self.dispatch.run_after(after)
        return answer

    async def read(self, who: Principal, job_id: int) -> JobView:
        async with self.sessions() as session:
            job = await self.get_visible(session, who, job_id)
            view = await job_view(session, job, who.user_id)
            if who.user_id == job.resident_id and job.status == "assigned":
                approach = await self._approach(session, job)
                if approach is not None:
                    view = replace(view, approach=approach)
            return view

    async def _approach(self, session: AsyncSession, job: Job) -> Approach | None:
        """How far the assigned worker is from the job, as its resident may see it: from their
        last fix in the live index no older than the community's `location_max_age_s`, rounded
        up to `APPROACH_STEP_M` (a resident follows them coming nearer, never their position)."""
        if self.live is None or job.worker_id is None:
            return None
        pos = await self.live.position(job.community_id, job.worker_id)
        community = await self.communities.get(session, job.community_id)
        if pos is None or pos.recorded_at < time.time() - community.dispatch.location_max_age_s:
            return None
        lat, lng = wkb_to_latlng(job.location)
        return approach_of(haversine_m(pos.lat, pos.lng, lat, lng), pos.recorded_at)

    async def mine(self, who: Principal, limit: int = 50) -> list[JobView]:
        async with self.sessions() as session:
            jobs = await self.list_mine(session, who, limit)
            counts = await offer_counts(session, [j.id for j in jobs])
            return [JobView(j, counts[j.id]) for j in jobs]

    async def store(self, session: AsyncSession, job: Job) -> None:
        """INSERT the built job (it returns the server-set columns: id, created_at, updated_at)
        and tell operators."""
        session.add(job)
        await session.flush()
        ops_events.job_changed(session, job)

    async def build(
        self, session: AsyncSession, resident: Principal, new: NewJob
    ) -> tuple[Job, CommunityView]:
        """The job a body asks for, checked and screened but not stored, with the community
        that serves it."""
        now = datetime.now(UTC)
        check_window(new.mode, new.window, now)
        check_booking(new.mode, new.window, new.duration_min, new.worker_id)
        community = await self.communities.serving(session, new.lat, new.lng, new.community_id)
        if new.worker_id is not None:
            await self.check_requested(session, new.worker_id, community.id)
        reason = review_reason(new.title, new.description)
        # Workers read all of this: a phone number, a WeChat id or "pay me directly" in it would
        # take the contact or the money off the platform.
        region = community.phone_region
        job = Job(
            community_id=community.id,
            resident_id=resident.user_id,
            title=screen(new.title, region).text,
            description=screen(new.description, region).text,
            category=new.category,
            skills=sorted(set(new.skills)),
            location=point_to_wkb(new.lat, new.lng),
            cell=h3.latlng_to_cell(new.lat, new.lng, JOB_CELL_RES),
            address=hide_phones(new.address, region) if new.address else new.address,
            mode=new.mode,
            window_start=new.window[0].astimezone(UTC) if new.window else None,
            window_end=new.window[1].astimezone(UTC) if new.window else None,
            price_cents=new.price_cents,
            currency=new.currency,
            materials=[{**m, "name": screen(m["name"], region).text} for m in new.materials],
            insured=new.insured,
            status="under_review" if reason else "open",
            review_reason=reason,
            version=1,
            duration_min=(
                booking_duration_min(new.window, new.duration_min)
                if new.mode == "booking" and new.window
                else None
            ),
            requested_worker_id=new.worker_id,
            # The money terms the job is taken on, fixed now (a later change of the
            # community's rates does not reach a job already out).
            commission_bps=community.dispatch.commission_bps,
            insurance_bps=community.dispatch.insurance_bps if new.insured else 0,
        )
        return job, community

    async def check_requested(
        self, session: AsyncSession, worker_id: int, community_id: int
    ) -> None:
        """A chosen worker must be one the community has (and verified): else 422."""
        serves = await session.scalar(_SERVES, {"w": worker_id, "c": community_id})
        if not serves:
            raise Unprocessable(
                "that worker does not take bookings in this community", code="bad_worker"
            )

    async def get_visible(self, session: AsyncSession, who: Principal, job_id: int) -> Job:
        job = await get_row(session, Job, job_id)
        if not (
            job.resident_id == who.user_id
            or (job.worker_id is not None and job.worker_id == who.user_id)
            or who.can_operate(job.community_id)
        ):
            raise Forbidden(
                "only the job's participants and its operators see it", code="not_yours"
            )
        return job

    async def list_mine(self, session: AsyncSession, who: Principal, limit: int = 50) -> list[Job]:
        stmt = select(Job).order_by(Job.created_at.desc(), Job.id.desc()).limit(limit)
        if who.role == "resident":
            stmt = stmt.where(Job.resident_id == who.user_id)
        elif who.role == "worker":
            stmt = stmt.where(Job.worker_id == who.user_id)
        elif who.role == "operator":
            stmt = stmt.where(Job.community_id.in_(sorted(who.community_ids)))
        return list((await session.scalars(stmt)).all())
