"""Safety on site: the start PIN (set at every assignment, shown to the resident alone) and
starting the job with it, and the worker's geofenced check-ins. Each public call is one
transaction; the rules are `rules.py`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dispatch.communities.service import CommunityService
from dispatch.core.errors import Conflict, DomainError, Forbidden, Unprocessable
from dispatch.grab.rules import check_transition
from dispatch.identity.principal import Principal
from dispatch.infra.outbox import Outgoing, enqueue
from dispatch.jobs.queries import JobView, job_view
from dispatch.models import Checkin, Job
from dispatch.models.base import get_row
from dispatch.ops.alerts import raise_alert
from dispatch.safety import rules
from geo.distance import haversine_m
from geo.shapes import wkb_to_latlng


@dataclass(frozen=True)
class CheckinMade:
    id: int
    kind: str
    distance_m: float
    created_at: datetime


class SafetyHook:
    """An assignment hook: every assignment gets a fresh start PIN and a clean slate."""

    async def assigned(
        self, session: AsyncSession, job: Job, worker_id: int, now: datetime
    ) -> None:
        job.start_pin = rules.new_pin()
        job.pin_failures = 0
        job.arrived_at = None
        job.started_at = None

    async def released(
        self, session: AsyncSession, job: Job, worker_id: int, reason: str, now: datetime
    ) -> None:
        return None


class SafetyService:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], communities: CommunityService
    ) -> None:
        self.sessions = sessions
        self.communities = communities

    async def _held(self, session: AsyncSession, who: Principal, job_id: int) -> Job:
        job = await get_row(session, Job, job_id, lock=True)
        if job.worker_id is None or job.worker_id != who.user_id:
            raise Forbidden("only the job's assigned worker may do this", code="not_yours")
        return job

    async def start(self, who: Principal, job_id: int, pin: str, version: int) -> JobView:
        """Start the job with the resident's PIN (fenced by the assignment version): 422
        `wrong_pin`; after five wrong tries 409 `pin_locked` and an operator alert. A wrong try
        is counted even though the call fails."""
        refusal: DomainError | None = None
        now = datetime.now(UTC)
        async with self.sessions.begin() as session:
            job = await self._held(session, who, job_id)
            if job.assignment_version != version:
                raise Conflict(
                    f"assignment {version} is no longer current (now {job.assignment_version})",
                    code="stale_assignment",
                )
            if job.status == "in_progress":
                return await job_view(session, job, who.user_id)  # a retry
            check_transition(job.status, "in_progress")
            if rules.check_pin(job.start_pin, pin, job.pin_failures):
                job.status, job.started_at, job.version = "in_progress", now, job.version + 1
                job.arrived_at = job.arrived_at or now
                await enqueue(
                    session,
                    Outgoing(
                        channel="app", kind="job_started", to_user_id=job.resident_id,
                        body=f"Work has started: {job.title}.",
                        payload={"type": "job_started", "job_id": job.id},
                        dedupe_key=f"job_started:{job.id}:{job.assignment_version}",
                    ),
                    now,
                )  # fmt: skip
                return await job_view(session, job, who.user_id)
            job.pin_failures += 1
            if job.pin_failures >= rules.MAX_PIN_TRIES:
                await raise_alert(
                    session, community_id=job.community_id, kind="pin_locked", job_id=job.id,
                    worker_id=who.user_id, detail={"tries": job.pin_failures}, now=now,
                )  # fmt: skip
                refusal = Conflict(
                    "too many wrong PINs: an operator has been told", code="pin_locked"
                )
            else:
                left = rules.MAX_PIN_TRIES - job.pin_failures
                refusal = Unprocessable(f"wrong PIN ({left} tries left)", code="wrong_pin")
        raise refusal

    async def checkin(
        self,
        who: Principal,
        job_id: int,
        kind: str,
        lat: float,
        lng: float,
        accuracy_m: float | None,
    ) -> CheckinMade:
        """A check-in at the job. An arrival must be inside the community's
        `arrival_geofence_m` by a fix that precise; the first one tells the resident."""
        now = datetime.now(UTC)
        async with self.sessions.begin() as session:
            job = await self._held(session, who, job_id)
            if job.status not in ("assigned", "in_progress"):
                raise Conflict(f"the job is {job.status}", code="not_active")
            if kind == "periodic" and job.status != "in_progress":
                raise Conflict("periodic check-ins start with the job", code="not_started")
            params = (await self.communities.get(session, job.community_id)).dispatch
            jlat, jlng = wkb_to_latlng(job.location)
            distance = haversine_m(jlat, jlng, lat, lng)
            if kind == "arrival":
                rules.check_arrival(distance, accuracy_m, params.arrival_geofence_m)
                if job.arrived_at is None:
                    job.arrived_at = now
                    await enqueue(
                        session,
                        Outgoing(
                            channel="app", kind="arrival", to_user_id=job.resident_id,
                            body=f"Your worker has arrived for {job.title}.",
                            payload={"type": "worker_arrived", "job_id": job.id},
                            dedupe_key=f"arrival:{job.id}:{job.assignment_version}",
                        ),
                        now,
                    )  # fmt: skip
            made = Checkin(
                job_id=job.id, worker_id=who.user_id, kind=kind, source="app", lat=lat, lng=lng,
                accuracy_m=accuracy_m, distance_m=round(distance, 1), created_at=now,
            )  # fmt: skip
            session.add(made)
            await session.flush()
            return CheckinMade(made.id, kind, round(distance, 1), now)
