"""Why this worker: the dispatch log of grab jobs, its one writer, and replay.

Each wave is recorded when it goes out (`DispatchLog.wave`, called by the dispatcher in the
wave's transaction): its reach, size and time, and every candidate the live index returned (the
available, skilled, fresh workers within reach, nearest first) with its distance, its rank and
whether it was picked (or why not: `already_offered`, `resident`, `beyond_size`). Right after the
wave commits, the workers of the community within reach that the index did not return are
counted by reason (`offline`, `busy`, `unverified`, `unskilled`, `stale_location`,
`outside_community`, `already_offered`; `beyond_size`: eligible, but farther than the wave's
nearest) and the row is written (one statement, after the commit,
off the request's path: the wave's own transaction is the grab benchmark's first-offer budget).
Reading it adds each offer's fate from the offers table. `replay` runs today's picking rule on
the recorded candidates and says whether it picks the same workers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dispatch.communities.service import CommunityView
from dispatch.core.errors import Forbidden
from dispatch.identity.principal import Principal
from dispatch.infra import aftercommit
from dispatch.infra.logs import log
from dispatch.models import DispatchWave, Job, Offer
from dispatch.models.base import get_row
from dispatch.trust import ranking
from geo.live import Nearby
from geo.shapes import wkb_to_latlng

EXCLUSION_REASONS = (
    "offline", "busy", "unverified", "unskilled", "stale_location", "outside_community",
    "already_offered", "beyond_size",
)  # fmt: skip
# Driven by `ix_workers_location` (the wave's disc on a sphere, as the live index measures),
# then each worker's membership: 2-3 ms for 10,000 members where reading every member was 20-57.
_WITHIN_REACH = text(
    """
    SELECT w.user_id, w.online, w.verification, w.skills, w.location_at,
           ST_Y(w.location::geometry), ST_X(w.location::geometry),
           EXISTS (SELECT 1 FROM assignments a JOIN jobs j ON j.id = a.job_id
                   WHERE a.worker_id = w.user_id AND a.active
                     AND j.status IN ('assigned', 'in_progress'))
    FROM workers w
    WHERE w.location IS NOT NULL
      AND ST_DWithin(w.location, ST_SetSRID(ST_MakePoint(:lng, :lat), 4326)::geography, :reach,
                     false)
      AND EXISTS (SELECT 1 FROM worker_communities wc
                  WHERE wc.worker_id = w.user_id AND wc.community_id = :cid)
    """
)


def excluded_reason(
    row: Any, skills: list[str], offered: set[int], fresh_after: datetime, inside: bool
) -> str:
    """Why a worker within reach was not a candidate (the first reason that applies)."""
    _, online, verification, have, located_at, _, _, busy = row
    if not online:
        return "offline"
    if busy:
        return "busy"
    if verification != "verified":
        return "unverified"
    if any(s not in (have or []) for s in skills):
        return "unskilled"
    if located_at is None or located_at < fresh_after:
        return "stale_location"
    if not inside:
        return "outside_community"
    if row[0] in offered:
        return "already_offered"
    return "beyond_size"  # eligible, but the wave's nearest were enough


@dataclass(frozen=True)
class Replay:
    same: bool
    waves: list[dict[str, Any]]


class DispatchLog:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

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
        ranked: list[ranking.Ranked] | None = None,
    ) -> None:
        """Record a wave as it goes out (the row itself is written once the wave commits).
        `ranked`: the fair ranking of the candidates not offered the job before, in offer
        order; each candidate's entry then carries its score's parts."""
        picked = {n.worker_id for n in chosen}
        order = {x.record.worker_id: (i, x) for i, x in enumerate(ranked or [], 1)}
        candidates = []
        for near, n in enumerate(found, 1):
            why = None
            if n.worker_id not in picked:
                if n.worker_id == job.resident_id:
                    why = "resident"
                elif n.worker_id in offered:
                    why = "already_offered"
                elif n.worker_id in order and order[n.worker_id][1].capped:
                    why = "capped"
                else:
                    why = "beyond_size"
            entry: dict[str, Any] = {
                "worker_id": n.worker_id, "distance_m": round(n.distance_m, 1),
                "rank": order[n.worker_id][0] if n.worker_id in order else len(order) + near,
                "picked": n.worker_id in picked, "why_not": why,
            }  # fmt: skip
            if n.worker_id in order:
                x = order[n.worker_id][1]
                last = x.record.last_offer_at
                entry["score"] = {
                    **x.score.parts(),
                    "recent_offers": x.record.recent,
                    "last_offer_at": last.timestamp() if last else None,
                }
            candidates.append(entry)
        job_id, cid, skills, resident = job.id, view.id, list(job.skills), job.resident_id
        lat, lng = wkb_to_latlng(job.location)
        fresh_after = now - timedelta(seconds=view.dispatch.location_max_age_s)
        listed = {n.worker_id for n in found} | {resident}
        already = set(offered)

        async def write() -> None:
            async with self.sessions.begin() as s:
                rows = (
                    await s.execute(
                        _WITHIN_REACH, {"cid": cid, "lat": lat, "lng": lng, "reach": reach_m}
                    )
                ).all()
                excluded = dict.fromkeys(EXCLUSION_REASONS, 0)
                for row in rows:
                    if row[0] in listed:
                        continue
                    inside = view.area.contains(row[5], row[6])
                    excluded[excluded_reason(row, skills, already, fresh_after, inside)] += 1
                await s.execute(
                    insert(DispatchWave)
                    .values(
                        job_id=job_id, wave=wave, radius_m=round(reach_m, 1), size=size,
                        sent_at=now, candidates=candidates, excluded=excluded,
                    )
                    .on_conflict_do_nothing(index_elements=["job_id", "wave"])
                )  # fmt: skip
            log.debug("dispatch_wave_logged", job_id=job_id, wave=wave)

        aftercommit.promise(session, ("dispatch_wave", job_id, wave), write)

    async def read(self, who: Principal, job_id: int) -> tuple[Job, list[DispatchWave], dict]:
        """The job's waves with each offer's fate (`{(wave, worker): status}`)."""
        async with self.sessions() as session:
            job = await get_row(session, Job, job_id)
            if not who.can_operate(job.community_id):
                raise Forbidden("not an operator of this job's community", code="not_yours")
            waves = list(
                (
                    await session.scalars(
                        select(DispatchWave)
                        .where(DispatchWave.job_id == job_id)
                        .order_by(DispatchWave.wave)
                    )
                ).all()
            )
            fates = {
                (w, worker): status
                for w, worker, status in await session.execute(
                    select(Offer.wave, Offer.worker_id, Offer.status).where(Offer.job_id == job_id)
                )
            }
        return job, waves, fates

    async def replay(self, who: Principal, job_id: int) -> Replay:
        """Today's picking rule on each wave's recorded candidates and their recorded scores
        (offer order, rotation, the hourly cap): the same workers?"""
        job, waves, _ = await self.read(who, job_id)
        offered: set[int] = set()
        out, same = [], True
        for w in waves:
            picked = _replayed(w.candidates, offered, job.resident_id, w.size)
            recorded = [c["worker_id"] for c in w.candidates if c["picked"]]
            same = same and sorted(picked) == sorted(recorded)
            out.append({"wave": w.wave, "picked": picked, "recorded": recorded})
            offered |= set(recorded)
        return Replay(same, out)


def _replayed(candidates: list[dict], offered: set[int], resident_id: int, size: int) -> list[int]:
    """The offerees today's rule picks from a wave's recorded candidates. Waves recorded before
    fair ranking have no scores: nearest first, as the rule then was."""
    fresh = [c for c in candidates if c["worker_id"] not in offered | {resident_id}]

    def key(c: dict) -> tuple:
        s = c.get("score")
        if s is None:
            return (False, 0, 0, None, c["distance_m"], c["worker_id"])
        return ranking.order_key(
            s["total"], s["recent_offers"], s["last_offer_at"], c["worker_id"],
            c.get("why_not") == "capped",
        )  # fmt: skip

    ordered = sorted(fresh, key=key)
    return [c["worker_id"] for c in ordered if c.get("why_not") != "capped"][:size]
