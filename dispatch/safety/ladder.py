"""The check-in ladder: what happens when a worker on a job that must check in goes quiet.

A job at night or in a safety category, once started, has a periodic check-in due every
`checkin_interval_min`. Missed by `checkin_grace_min`, it climbs the community's
`checkin_ladder` one step after another, each `after_min` after the miss: a reminder in the app
(and push) → an SMS → an automated call (`<Gather>`: press 1 if you are safe) → an operator alert
of high severity → an SMS to the worker's emergency contacts with the job's area and the
operators' line. Any check-in (in the app, or the digit 1 on the call) stops it, and the next
periodic check-in is due an interval later.

A job still in progress `overrun_min` after its expected end (its booked duration, or its
category's typical one) asks once whether all is well, on the same ladder.

Every step is a durable timer (`infra.timers.arm`): a step's effects (outbox rows, the alert)
commit with its `fired_at`, and the next step is armed in the same transaction, so the ladder
survives any process being killed between two steps and each step happens once. A step that
finds the job no longer in progress, or in another assignment, does nothing (`moot`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.communities.service import CommunityService, CommunityView
from dispatch.infra.outbox import SAFETY_PRIORITY, Outgoing, Recipient, enqueue, tell
from dispatch.infra.timers import arm, disarm
from dispatch.models import EmergencyContact, Job, Timer, User
from dispatch.ops import events
from dispatch.ops.alerts import raise_alert
from dispatch.safety import rules
from geo.shapes import wkb_to_latlng

STEP = "safety_step"
OVERRUN = "safety_overrun"
GATHER_PATH = "/v1/telephony/checkin"


async def emergency_contacts(session: AsyncSession, user_id: int) -> list[EmergencyContact]:
    """A person's emergency contacts, in the order they gave them."""
    return list(
        (
            await session.scalars(
                select(EmergencyContact)
                .where(EmergencyContact.user_id == user_id)
                .order_by(EmergencyContact.position)
            )
        ).all()
    )


class Ladder:
    """Arms, stops and climbs the ladder, in the caller's transaction (a start, a check-in, a
    release, or the timer being fired)."""

    def __init__(self, communities: CommunityService, public_base_url: str) -> None:
        self.communities = communities
        self.base_url = public_base_url.rstrip("/")

    # --- arming and stopping -----------------------------------------------------------------

    async def started(self, session: AsyncSession, job: Job, now: datetime) -> None:
        """The job started: its first periodic check-in (if it needs them) and its overrun."""
        community = await self.communities.get(session, job.community_id)
        params = community.dispatch
        if self._needs_checkins(job, community):
            await self._arm_cycle(session, job, community, now)
        end = rules.expected_end(
            now, booked_min=job.duration_min if job.mode == "booking" else None,
            category=job.category, typical_min=params.typical_duration_min,
            default_min=params.default_duration_min,
        )  # fmt: skip
        await arm(
            session, kind=OVERRUN, ref_id=job.id, due=rules.overrun_due(end, params.overrun_min),
            key=f"{OVERRUN}:{job.id}:{job.assignment_version}",
            payload={"av": job.assignment_version},
        )  # fmt: skip

    async def checked_in(self, session: AsyncSession, job: Job, kind: str, now: datetime) -> None:
        """Any check-in stops the ladder; while the job goes on, the next periodic check-in is
        due an interval from now (a departure ends them)."""
        await disarm(session, kind=STEP, ref_id=job.id, now=now)
        if job.status != "in_progress" or kind == "departure":
            return
        community = await self.communities.get(session, job.community_id)
        if self._needs_checkins(job, community):
            await self._arm_cycle(session, job, community, now)

    async def stop(self, session: AsyncSession, job: Job, now: datetime) -> None:
        """The assignment ended (completed, cancelled, reassigned): nothing more to ask."""
        for kind in (STEP, OVERRUN):
            await disarm(session, kind=kind, ref_id=job.id, now=now)

    def _needs_checkins(self, job: Job, community: CommunityView) -> bool:
        params = community.dispatch
        return job.started_at is not None and rules.needs_checkins(
            category=job.category, started=job.started_at, timezone=community.timezone,
            night_hours=params.night_hours, safety_categories=params.safety_categories,
        )  # fmt: skip

    async def _arm_cycle(
        self, session: AsyncSession, job: Job, community: CommunityView, now: datetime
    ) -> None:
        params = community.dispatch
        due = rules.next_checkin_due(now, params.checkin_interval_min)
        base = rules.missed_at(due, params.checkin_grace_min)
        await self._arm_step(session, job, community, "periodic", base, 0, due=due)

    async def _arm_step(
        self,
        session: AsyncSession,
        job: Job,
        community: CommunityView,
        reason: str,
        base: datetime,
        step: int,
        *,
        due: datetime | None = None,
    ) -> None:
        ladder = community.dispatch.checkin_ladder
        payload: dict[str, Any] = {
            "av": job.assignment_version, "reason": reason, "base": base.isoformat(),
            "step": step, "action": ladder[step].action,
        }  # fmt: skip
        if due is not None:
            payload["checkin_due"] = due.isoformat()
        await arm(
            session, kind=STEP, ref_id=job.id,
            due=rules.step_due(base, ladder[step].after_min),
            key=f"{STEP}:{job.id}:{job.assignment_version}:{reason}:{base.timestamp():.6f}:{step}",
            payload=payload,
        )  # fmt: skip

    # --- the timers' handlers ----------------------------------------------------------------

    async def fire_overrun(self, session: AsyncSession, timer: Timer, now: datetime) -> None:
        """Still in progress well after its expected end: ask once, on the ladder."""
        job = await self._live(session, timer)
        if job is None:
            return
        community = await self.communities.get(session, job.community_id)
        await self._arm_step(session, job, community, "overrun", now, 0)

    async def fire_step(self, session: AsyncSession, timer: Timer, now: datetime) -> None:
        """One step of the ladder, and the next one armed; the outcome is kept on the timer."""
        job = await self._live(session, timer)
        step = int(timer.payload.get("step", 0))
        community = (
            await self.communities.get(session, job.community_id) if job is not None else None
        )
        if job is None or community is None or step >= len(community.dispatch.checkin_ladder):
            timer.payload = {**timer.payload, "outcome": "moot"}
            return
        ladder = community.dispatch.checkin_ladder
        action = ladder[step].action
        reason = str(timer.payload.get("reason", "periodic"))
        outcome = await self._act(session, job, community, action, reason, timer, now)
        timer.payload = {**timer.payload, "action": action, "outcome": outcome}
        events.emit(
            session, job.community_id, "ladder_step",
            {"job_id": job.id, "worker_id": job.worker_id, "step": action, "reason": reason,
             "outcome": outcome, "due_at": timer.due_at, "at": now},
        )  # fmt: skip
        if step + 1 < len(ladder):
            base = datetime.fromisoformat(timer.payload["base"])
            await self._arm_step(session, job, community, reason, base, step + 1)

    async def _live(self, session: AsyncSession, timer: Timer) -> Job | None:
        """The timer's job, locked, if it is still in progress in the timer's assignment."""
        job = await session.get(Job, timer.ref_id, with_for_update=True)
        if (
            job is None
            or job.status != "in_progress"
            or job.worker_id is None
            or job.assignment_version != timer.payload.get("av")
        ):
            return None
        return job

    # --- the steps -----------------------------------------------------------------------------

    async def _act(
        self,
        session: AsyncSession,
        job: Job,
        community: CommunityView,
        action: str,
        reason: str,
        timer: Timer,
        now: datetime,
    ) -> str:
        assert job.worker_id is not None
        key = f"ladder:{timer.id}"
        ask = (
            f"Are you all right? {job.title} has gone on longer than expected."
            if reason == "overrun"
            else f"Please check in: your safety check-in for {job.title} is overdue."
        )
        payload = {"type": "checkin_due", "job_id": job.id, "reason": reason, "step": action}
        if action == "remind":
            await tell(
                session, to_user_id=job.worker_id, kind="checkin_remind",
                body=f"{ask} Open the app and tap Check in.", payload=payload, dedupe_key=key,
                now=now,
            )  # fmt: skip
            return "reminded"
        if action in ("sms", "call"):
            worker = await session.get(User, job.worker_id)
            if worker is None or worker.phone_enc is None or worker.phone_hash is None:
                return "no_phone"
            to = Recipient(worker.phone_hash, worker.phone_enc, worker.phone_hint or "")
            if action == "sms":
                message = Outgoing(
                    channel="sms", kind="checkin", phone=to, to_user_id=job.worker_id,
                    body=f"{ask} Open the app to check in, or press SOS if you need help.",
                    payload=payload, dedupe_key=key, priority=SAFETY_PRIORITY,
                )  # fmt: skip
            else:
                query = urlencode({"job_id": job.id, "av": job.assignment_version})
                message = Outgoing(
                    channel="call", kind="checkin_call", phone=to, to_user_id=job.worker_id,
                    body=f"This is the safety line of your job service. {ask} "
                    "Press 1 if you are safe.",
                    payload={**payload, "gather_url": f"{self.base_url}{GATHER_PATH}?{query}"},
                    dedupe_key=key, priority=SAFETY_PRIORITY,
                )  # fmt: skip
            await enqueue(session, message, now)
            return "texted" if action == "sms" else "called"
        if action == "alert":
            await raise_alert(
                session, community_id=job.community_id, kind="missed_checkin", job_id=job.id,
                worker_id=job.worker_id, severity="high", now=now,
                detail={"reason": reason, "since": timer.payload.get("base")},
            )  # fmt: skip
            return "alerted"
        # contacts
        contacts = await emergency_contacts(session, job.worker_id)
        if not contacts:
            return "no_contacts"
        worker = await session.get(User, job.worker_id)
        name = (worker.name if worker is not None else None) or "Someone who listed you"
        lat, lng = wkb_to_latlng(job.location)
        line = community.dispatch.operators_phone
        body = (
            f"{name} has not answered a safety check-in during a job in {community.name} "
            f"(near {rules.coarse_area(lat, lng)}). Our operators are trying to reach them."
            + (f" Operators: {line}." if line else "")
        )
        for contact in contacts:
            await enqueue(
                session,
                Outgoing(
                    channel="sms", kind="checkin_contacts", body=body,
                    phone=Recipient(contact.phone_hash, contact.phone_enc, contact.phone_hint),
                    payload={"type": "checkin_contacts", "job_id": job.id},
                    dedupe_key=f"{key}:{contact.id}", priority=SAFETY_PRIORITY,
                ),
                now,
            )  # fmt: skip
        return f"contacts_texted:{len(contacts)}"
