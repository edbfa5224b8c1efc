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

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.communities.service import CommunityService, CommunityView
from dispatch.core import texts
from dispatch.identity.locale import FALLBACK, spoken_locale
from dispatch.infra.outbox import SAFETY_PRIORITY, Outgoing, Recipient, enqueue_many
from dispatch.infra.timers import Arming, arm, arm_many, disarm, lock_row
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
    return (await _contacts(session, {user_id})).get(user_id, [])


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
        await arm_many(session, [self._step(job, community, "periodic", base, 0, due=due)])

    def _step(
        self,
        job: Job,
        community: CommunityView,
        reason: str,
        base: datetime,
        step: int,
        *,
        due: datetime | None = None,
    ) -> Arming:
        """Step `step` of a ladder counted from `base` (`due`: the check-in it is about)."""
        ladder = community.dispatch.checkin_ladder
        payload: dict[str, Any] = {
            "av": job.assignment_version, "reason": reason, "base": base.isoformat(),
            "step": step, "action": ladder[step].action,
        }  # fmt: skip
        if due is not None:
            payload["checkin_due"] = due.isoformat()
        return Arming(
            STEP,
            job.id,
            rules.step_due(base, ladder[step].after_min),
            f"{STEP}:{job.id}:{job.assignment_version}:{reason}:{base.timestamp():.6f}:{step}",
            payload,
        )

    # --- the timers' handlers ----------------------------------------------------------------

    async def fire_overrun(self, session: AsyncSession, timer: Timer, now: datetime) -> None:
        """Still in progress well after its expected end: ask once, on the ladder."""
        job = await lock_row(session, Job, timer.ref_id)
        if job is None or not _live(job, timer):
            return
        community = await self.communities.get(session, job.community_id)
        await arm_many(session, [self._step(job, community, "overrun", now, 0)])

    async def fire_steps(
        self, session: AsyncSession, timers: Sequence[Timer], now: datetime
    ) -> None:
        """Due steps of many jobs' ladders at once (ten thousand night jobs can fall due in one
        minute): the jobs locked and read in one statement, the workers' phones and contacts in
        one each, every text and call in one insert, the next steps armed in one; each outcome
        is kept on its timer."""
        jobs = {
            j.id: j
            for j in (
                await session.scalars(
                    select(Job)
                    .where(Job.id.in_({t.ref_id for t in timers}))
                    .order_by(Job.id)
                    .with_for_update()
                )
            ).all()
        }
        due: list[tuple[Timer, Job, CommunityView, str]] = []
        for timer in timers:
            job = jobs.get(timer.ref_id)
            community = None
            if job is not None and _live(job, timer):
                community = await self.communities.get(session, job.community_id)
            step = int(timer.payload.get("step", 0))
            if job is None or community is None or step >= len(community.dispatch.checkin_ladder):
                timer.payload = {**timer.payload, "outcome": "moot"}
                continue
            due.append((timer, job, community, community.dispatch.checkin_ladder[step].action))
        people = {j.worker_id for _, j, _, a in due if a in ("sms", "call", "contacts")}
        users = await _users(session, people)
        contacts = await _contacts(session, {j.worker_id for _, j, _, a in due if a == "contacts"})
        messages: list[Outgoing] = []
        armings: list[Arming] = []
        for timer, job, community, action in due:
            reason = str(timer.payload.get("reason", "periodic"))
            assert job.worker_id is not None
            if action == "alert":
                await raise_alert(
                    session, community_id=job.community_id, kind="missed_checkin", job_id=job.id,
                    worker_id=job.worker_id, severity="high", now=now,
                    detail={"reason": reason, "since": timer.payload.get("base")},
                )  # fmt: skip
                outcome = "alerted"
            else:
                made, outcome = self._messages(
                    job, community, action, reason, timer, users.get(job.worker_id),
                    contacts.get(job.worker_id, []),
                )  # fmt: skip
                messages += made
            timer.payload = {**timer.payload, "action": action, "outcome": outcome}
            events.emit(
                session, job.community_id, "ladder_step",
                {"job_id": job.id, "worker_id": job.worker_id, "step": action, "reason": reason,
                 "outcome": outcome, "due_at": timer.due_at, "at": now},
            )  # fmt: skip
            step = int(timer.payload["step"])
            if step + 1 < len(community.dispatch.checkin_ladder):
                base = datetime.fromisoformat(timer.payload["base"])
                armings.append(self._step(job, community, reason, base, step + 1))
        await enqueue_many(session, messages, now)
        await arm_many(session, armings)

    def _messages(
        self,
        job: Job,
        community: CommunityView,
        action: str,
        reason: str,
        timer: Timer,
        worker: User | None,
        contacts: list[EmergencyContact],
    ) -> tuple[list[Outgoing], str]:
        """The texts or call a step sends, and its outcome."""
        assert job.worker_id is not None
        key = f"ladder:{timer.id}"
        ask = texts.every(
            "checkin.ask_overrun" if reason == "overrun" else "checkin.ask_periodic",
            title=job.title,
        )
        # The worker's row is loaded for these steps: their texts are in their language here.
        locale = spoken_locale(worker.locale, worker.default_locale) if worker else None
        payload = {"type": "checkin_due", "job_id": job.id, "reason": reason, "step": action}
        if action == "remind":
            return [
                Outgoing(
                    channel="app", kind="checkin_remind", to_user_id=job.worker_id,
                    body=texts.every("checkin.remind", ask=ask), payload=payload,
                    dedupe_key=key,
                )
            ], "reminded"  # fmt: skip
        if action in ("sms", "call"):
            if worker is None or worker.phone_enc is None or worker.phone_hash is None:
                return [], "no_phone"
            to = Recipient(worker.phone_hash, worker.phone_enc, worker.phone_hint or "")
            if action == "sms":
                return [
                    Outgoing(
                        channel="sms", kind="checkin", phone=to, to_user_id=job.worker_id,
                        body=texts.render("checkin.sms", locale, ask=ask),
                        payload=payload, dedupe_key=key, priority=SAFETY_PRIORITY,
                    )
                ], "texted"  # fmt: skip
            query = urlencode({"job_id": job.id, "av": job.assignment_version})
            return [
                Outgoing(
                    channel="call", kind="checkin_call", phone=to, to_user_id=job.worker_id,
                    body=texts.render("checkin.call", locale, ask=ask),
                    payload={**payload, "gather_url": f"{self.base_url}{GATHER_PATH}?{query}",
                             "locale": locale},
                    dedupe_key=key, priority=SAFETY_PRIORITY,
                )
            ], "called"  # fmt: skip
        # contacts
        if not contacts:
            return [], "no_contacts"
        name = (worker.name if worker is not None else None) or texts.every(
            "checkin.contacts_someone"
        )
        lat, lng = wkb_to_latlng(job.location)
        line = community.dispatch.operators_phone
        body = texts.every(
            "checkin.contacts", name=name, community=community.name,
            area=rules.coarse_area(lat, lng),
        )  # fmt: skip
        if line:
            body += texts.every("checkin.contacts_line", line=line)
        return [
            Outgoing(
                channel="sms", kind="checkin_contacts", body=body,
                phone=Recipient(c.phone_hash, c.phone_enc, c.phone_hint),
                payload={"type": "checkin_contacts", "job_id": job.id},
                dedupe_key=f"{key}:{c.id}", priority=SAFETY_PRIORITY,
                locale=locale or FALLBACK,  # a contact without an account: the worker's language
            )
            for c in contacts
        ], f"contacts_texted:{len(contacts)}"  # fmt: skip


def _live(job: Job, timer: Timer) -> bool:
    """Is the job still in progress in the assignment the timer was armed for?"""
    return (
        job.status == "in_progress"
        and job.worker_id is not None
        and job.assignment_version == timer.payload.get("av")
    )


async def _users(session: AsyncSession, ids: set[int | None]) -> dict[int, User]:
    wanted = [i for i in ids if i is not None]
    if not wanted:
        return {}
    return {u.id: u for u in (await session.scalars(select(User).where(User.id.in_(wanted))))}


async def _contacts(
    session: AsyncSession, ids: set[int | None]
) -> dict[int, list[EmergencyContact]]:
    wanted = [i for i in ids if i is not None]
    found: dict[int, list[EmergencyContact]] = {}
    if wanted:
        for c in await session.scalars(
            select(EmergencyContact)
            .where(EmergencyContact.user_id.in_(wanted))
            .order_by(EmergencyContact.user_id, EmergencyContact.position)
        ):
            found.setdefault(c.user_id, []).append(c)
    return found
