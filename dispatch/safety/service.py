"""Safety on site: the start PIN (set at every assignment, shown to the resident alone) and
starting the job with it, the worker's geofenced check-ins (which stop the check-in ladder,
`ladder.py`), emergency contacts and SOS, and the timeline. Each public call is one
transaction; the rules are `rules.py`. Times come from the scheduled-work clock."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dispatch.communities.service import CommunityService
from dispatch.core import texts
from dispatch.core.errors import Conflict, DomainError, Forbidden, Unprocessable
from dispatch.grab.rules import check_transition
from dispatch.identity.locale import FALLBACK
from dispatch.identity.phones import PhoneVault, normalize_phone, phone_hint
from dispatch.identity.principal import Principal
from dispatch.infra.clock import Clock
from dispatch.infra.outbox import SOS_PRIORITY, Outgoing, Recipient, enqueue, tell
from dispatch.jobs.queries import JobView, job_view
from dispatch.models import SPOKEN_LOCALE, Checkin, EmergencyContact, Job, SosCall, Timer, User
from dispatch.models.base import get_row
from dispatch.ops import events
from dispatch.ops.alerts import raise_alert
from dispatch.safety import rules
from dispatch.safety.ladder import STEP, Ladder, emergency_contacts
from geo.distance import haversine_m
from geo.shapes import wkb_to_latlng


@dataclass(frozen=True)
class CheckinMade:
    id: int
    kind: str
    distance_m: float
    created_at: datetime


class SafetyHook:
    """An assignment hook: every assignment gets a fresh start PIN and a clean slate, and the
    end of one stops its check-in ladder."""

    def __init__(self, ladder: Ladder) -> None:
        self.ladder = ladder

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
        await self.ladder.stop(session, job, now)


class SafetyService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        communities: CommunityService,
        ladder: Ladder,
        clock: Clock | None = None,
    ) -> None:
        self.sessions = sessions
        self.communities = communities
        self.ladder = ladder
        self.clock = clock or Clock()

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
        now = self.clock.now()
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
                await self.ladder.started(session, job, now)
                events.job_changed(session, job)
                await tell(
                    session,
                    kind="job_started",
                    to_user_id=job.resident_id,
                    body=texts.every("job.started", title=job.title),
                    payload={"type": "job_started", "job_id": job.id},
                    dedupe_key=f"job_started:{job.id}:{job.assignment_version}",
                    now=now,
                )
                return await job_view(session, job, who.user_id)
            job.pin_failures += 1
            if job.pin_failures >= rules.MAX_PIN_TRIES:
                await raise_alert(
                    session, community_id=job.community_id, kind="pin_locked", job_id=job.id,
                    worker_id=who.user_id, detail={"tries": job.pin_failures}, now=now,
                    severity="high",
                )  # fmt: skip
                refusal = Conflict(
                    "too many wrong PINs: an operator has been told", code="pin_locked"
                )
            else:
                left = rules.MAX_PIN_TRIES - job.pin_failures
                refusal = Unprocessable(f"wrong PIN ({left} tries left)", code="wrong_pin")
        raise refusal

    async def timeline(self, who: Principal, job_id: int) -> Timeline:
        async with self.sessions() as session:
            return await safety_timeline(session, self.communities, who, job_id)

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
        `arrival_geofence_m` by a fix that precise; the first one tells the resident. Any
        check-in stops the check-in ladder."""
        now = self.clock.now()
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
                    await tell(
                        session,
                        kind="arrival",
                        to_user_id=job.resident_id,
                        body=texts.every("job.arrived", title=job.title),
                        payload={"type": "worker_arrived", "job_id": job.id},
                        dedupe_key=f"arrival:{job.id}:{job.assignment_version}",
                        now=now,
                    )
            made = Checkin(
                job_id=job.id, worker_id=who.user_id, kind=kind, source="app", lat=lat, lng=lng,
                accuracy_m=accuracy_m, distance_m=round(distance, 1), created_at=now,
            )  # fmt: skip
            session.add(made)
            await session.flush()
            await self.ladder.checked_in(session, job, kind, now)
            checkin_event(session, job, made)
            return CheckinMade(made.id, kind, round(distance, 1), now)

    async def checkin_by_call(self, job_id: int, assignment_version: int, digits: str) -> bool:
        """The safety call's answer: the digit 1 is a periodic check-in by the job's worker
        (stopping the ladder), for the assignment the call was about; True if it counted."""
        if digits.strip() != "1":
            return False
        now = self.clock.now()
        async with self.sessions.begin() as session:
            job = await session.get(Job, job_id, with_for_update=True)
            if (
                job is None
                or job.worker_id is None
                or job.status != "in_progress"
                or job.assignment_version != assignment_version
            ):
                return False
            made = Checkin(
                job_id=job.id, worker_id=job.worker_id, kind="periodic", source="call",
                created_at=now,
            )  # fmt: skip
            session.add(made)
            await self.ladder.checked_in(session, job, "periodic", now)
            checkin_event(session, job, made)
            return True


def checkin_event(session: AsyncSession, job: Job, made: Checkin) -> None:
    events.emit(
        session, job.community_id, "checkin",
        {"job_id": job.id, "worker_id": made.worker_id, "kind": made.kind,
         "source": made.source, "distance_m": made.distance_m, "at": made.created_at},
    )  # fmt: skip


MAX_CONTACTS = 3
SOS_MERGE = timedelta(minutes=1)


@dataclass(frozen=True)
class ContactShown:
    name: str
    phone_hint: str


class Emergencies:
    """Emergency contacts and SOS: one transaction each."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        communities: CommunityService,
        vault: PhoneVault,
        region: str,
    ) -> None:
        self.sessions = sessions
        self.communities = communities
        self.vault = vault
        self.region = region

    async def set_contacts(
        self, who: Principal, contacts: list[tuple[str, str]]
    ) -> list[ContactShown]:
        """Replace the caller's emergency contacts (up to three), phones normalized (422
        `invalid_phone`) and stored encrypted; shown back as hints only."""
        if len(contacts) > MAX_CONTACTS:
            raise Unprocessable(f"at most {MAX_CONTACTS} contacts", code="too_many_contacts")
        now = datetime.now(UTC)
        rows = []
        for i, (name, raw) in enumerate(contacts):
            phone = normalize_phone(raw, self.region)
            rows.append(
                EmergencyContact(
                    user_id=who.user_id, position=i, name=name, phone_hash=self.vault.hash(phone),
                    phone_enc=self.vault.encrypt(phone), phone_hint=phone_hint(phone),
                    created_at=now,
                )
            )  # fmt: skip
        async with self.sessions.begin() as session:
            await session.execute(
                delete(EmergencyContact).where(EmergencyContact.user_id == who.user_id)
            )
            session.add_all(rows)
        return [ContactShown(r.name, r.phone_hint) for r in rows]

    async def contacts(self, who: Principal) -> list[ContactShown]:
        async with self.sessions() as session:
            found = await emergency_contacts(session, who.user_id)
        return [ContactShown(c.name, c.phone_hint) for c in found]

    async def sos(
        self,
        who: Principal,
        job_id: int,
        location: tuple[float, float] | None,
        note: str | None,
    ) -> int:
        """SOS by a participant: a critical alert for the community's operators at once, a text
        to the caller's emergency contacts with where they are (ahead of everything else in
        the outbox), the job flagged. Presses by one person within a minute are one SOS: the
        same alert id."""
        now = datetime.now(UTC)
        async with self.sessions.begin() as session:
            job = await get_row(session, Job, job_id, lock=True)
            if who.user_id == job.resident_id:
                role = "resident"
            elif job.worker_id is not None and who.user_id == job.worker_id:
                role = "worker"
            else:
                raise Forbidden(
                    "only the job's resident or its worker may call SOS", code="not_yours"
                )
            recent = await session.scalar(
                select(SosCall)
                .where(
                    SosCall.job_id == job.id,
                    SosCall.user_id == who.user_id,
                    SosCall.last_press_at > now - SOS_MERGE,
                )
                .order_by(SosCall.id.desc())
                .limit(1)
            )
            if recent is not None:
                recent.presses += 1
                recent.last_press_at = now
                return recent.alert_id
            if location is None:
                location = wkb_to_latlng(job.location)
            detail = {"by": who.user_id, "role": role, "lat": location[0], "lng": location[1],
                      "note": note}  # fmt: skip
            alert_id = await raise_alert(
                session, community_id=job.community_id, kind="sos", job_id=job.id,
                worker_id=job.worker_id, detail=detail, now=now, severity="critical",
            )  # fmt: skip
            assert alert_id is not None
            session.add(
                SosCall(
                    job_id=job.id, user_id=who.user_id, role=role, lat=location[0],
                    lng=location[1], note=note, alert_id=alert_id, presses=1, created_at=now,
                    last_press_at=now,
                )
            )  # fmt: skip
            job.sos_at = now
            where = f"https://www.openstreetmap.org/?mlat={location[0]:.5f}&mlon={location[1]:.5f}"
            body = texts.every("sos.contacts", where=where)
            contacts = await emergency_contacts(session, who.user_id)
            # A contact without an account is texted in the language of the one who listed them.
            caller_locale = FALLBACK
            if contacts:
                spoken = select(SPOKEN_LOCALE)
                found = await session.scalar(spoken.where(User.id == who.user_id))
                caller_locale = found or FALLBACK
            for contact in contacts:
                await enqueue(
                    session,
                    Outgoing(
                        channel="sms", kind="sos", body=body,
                        phone=Recipient(contact.phone_hash, contact.phone_enc, contact.phone_hint),
                        payload={"type": "sos", "job_id": job.id, "alert_id": alert_id},
                        dedupe_key=f"sos:{alert_id}:{contact.id}", priority=SOS_PRIORITY,
                        locale=caller_locale,
                    ),
                    now,
                )  # fmt: skip
            return alert_id


@dataclass(frozen=True)
class Timeline:
    job: Job
    checkins: list[Checkin]
    sos: list[SosCall]
    ladder: list[Timer]
    next_checkin_due: datetime | None
    requires_checkins: bool


async def safety_timeline(
    session: AsyncSession, communities: CommunityService, who: Principal, job_id: int
) -> Timeline:
    """What happened for a job's safety, for its participants and its community's operators."""
    job = await get_row(session, Job, job_id)
    if who.user_id not in (job.resident_id, job.worker_id) and not who.can_operate(
        job.community_id
    ):
        raise Forbidden("only the job's participants and operators see this", code="not_yours")
    community = await communities.get(session, job.community_id)
    params = community.dispatch
    checkins = list(
        (
            await session.scalars(
                select(Checkin).where(Checkin.job_id == job.id).order_by(Checkin.created_at)
            )
        ).all()
    )
    sos = list(
        (
            await session.scalars(
                select(SosCall).where(SosCall.job_id == job.id).order_by(SosCall.created_at)
            )
        ).all()
    )
    ladder = list(
        (
            await session.scalars(
                select(Timer)
                .where(Timer.kind == STEP, Timer.ref_id == job.id)
                .order_by(Timer.due_at, Timer.id)
            )
        ).all()
    )
    required = job.started_at is not None and rules.needs_checkins(
        category=job.category, started=job.started_at, timezone=community.timezone,
        night_hours=params.night_hours, safety_categories=params.safety_categories,
    )  # fmt: skip
    due = None
    if required and job.status == "in_progress" and job.started_at is not None:
        seen = [c.created_at for c in checkins if c.kind in ("arrival", "periodic")]
        due = rules.next_checkin_due(max([job.started_at, *seen]), params.checkin_interval_min)
    return Timeline(job, checkins, sos, ladder, due, required)
