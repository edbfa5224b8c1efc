"""Why this worker: the dispatch log of grab jobs, its one writer, and replay.

Each wave is recorded when it goes out (`DispatchLog.wave`, called by the dispatcher in the
wave's transaction): its reach, size and time, and every candidate the live index returned (the
available, skilled, fresh workers within reach, nearest first) with its distance, its rank and
whether it was picked (or why not: `already_offered`, `resident`, `beyond_size`). Right after the
wave commits, the workers of the community within reach that the index did not return are
counted by reason (`offline`, `busy`, `unverified`, `unskilled`, `stale_location`,
`outside_community`, `already_offered`; `beyond_size`: eligible, but farther than the wave's
nearest) and the row is written, after the commit, off the request's path (the wave's own
transaction is the grab benchmark's first-offer budget): the committed waves of the last
`FLUSH_S` are written together, one statement each in one transaction, so the log costs the
event loop one transaction per flush, not one per wave, and never lands on the moment an offer
goes out (a read writes this process's pending rows first). A process that dies loses at most
that fraction of a second of log rows (the offers themselves are rows of the wave's
transaction, and `read` shows each one's fate).
Reading it adds each offer's fate from the offers table. `replay` runs today's picking rule on
the recorded candidates and says whether it picks the same workers.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, text
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
# The wave's row, with the community's workers within reach that the index did not return
# counted by the first reason that applies (`EXCLUSION_REASONS`' order), in one statement. Driven
# by `ix_workers_location` (the wave's disc on a sphere, as the live index measures), then each
# worker's membership; inside the community is judged as `geo.areas.ServiceArea.contains`
# judges it (a lng/lat polygon, or a circle on the sphere). At 10,000 members: 2-3 ms, where
# reading every member was 20-57 ms, and no row comes back to Python (counting ~450 rows there
# cost the event loop 3-5 ms a wave in `bench.dispatch`).
_WRITE_WAVE = text(
    """
    WITH reasons AS (
        SELECT CASE
            WHEN NOT w.online THEN 'offline'
            WHEN EXISTS (SELECT 1 FROM assignments a JOIN jobs j ON j.id = a.job_id
                         WHERE a.worker_id = w.user_id AND a.active
                           AND j.status IN ('assigned', 'in_progress')) THEN 'busy'
            WHEN w.verification <> 'verified' THEN 'unverified'
            WHEN NOT (coalesce(w.skills, '{}') @> CAST(:skills AS text[])) THEN 'unskilled'
            WHEN w.location_at IS NULL OR w.location_at < :fresh_after THEN 'stale_location'
            WHEN NOT (CASE WHEN c.boundary IS NOT NULL
                           THEN ST_Covers(c.boundary, w.location::geometry)
                           ELSE ST_DWithin(c.center, w.location, c.radius_m, false) END)
                THEN 'outside_community'
            WHEN w.user_id = ANY(CAST(:offered AS bigint[])) THEN 'already_offered'
            ELSE 'beyond_size'
        END AS reason
        FROM workers w JOIN communities c ON c.id = :cid
        WHERE w.location IS NOT NULL
          AND ST_DWithin(w.location, ST_SetSRID(ST_MakePoint(:lng, :lat), 4326)::geography,
                         :reach, false)
          AND EXISTS (SELECT 1 FROM worker_communities wc
                      WHERE wc.worker_id = w.user_id AND wc.community_id = :cid)
          AND NOT w.user_id = ANY(CAST(:listed AS bigint[]))
    )
    INSERT INTO dispatch_waves (job_id, wave, radius_m, size, sent_at, candidates, excluded)
    SELECT CAST(:job_id AS bigint), CAST(:wave AS integer), CAST(:radius_m AS float8),
           CAST(:size AS integer), CAST(:sent_at AS timestamptz), CAST(:candidates AS jsonb),
           CAST(:zeros AS jsonb)
           || coalesce((SELECT jsonb_object_agg(reason, n)
                        FROM (SELECT reason, count(*) AS n FROM reasons GROUP BY reason) r),
                       '{}'::jsonb)
    ON CONFLICT (job_id, wave) DO NOTHING
    """
)
_ZEROS = json.dumps(dict.fromkeys(EXCLUSION_REASONS, 0))
FLUSH_S = 0.2
"""How long a committed wave's row waits for others to be written with it."""


@dataclass(frozen=True)
class Replay:
    same: bool
    waves: list[dict[str, Any]]


class DispatchLog:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], flush_s: float = FLUSH_S
    ) -> None:
        self.sessions = sessions
        self.flush_s = flush_s
        self._pending: list[Callable[[], dict[str, Any]]] = []
        """Committed waves' rows not written yet (each builds its statement's parameters)."""
        self._flusher: asyncio.Task[None] | None = None

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
        order; each candidate's entry then carries its score's parts. The entries are built
        after the commit too, with the row: nothing of the log is on the offer's way out."""
        job_id, resident_id = job.id, job.resident_id
        lat, lng = wkb_to_latlng(job.location)
        skills, before = list(job.skills), frozenset(offered)
        picked = {n.worker_id for n in chosen}

        def row() -> dict[str, Any]:
            return {
                "job_id": job_id, "wave": wave, "radius_m": round(reach_m, 1), "size": size,
                "sent_at": now, "zeros": _ZEROS,
                "candidates": json.dumps(_entries(found, picked, before, resident_id, ranked)),
                "cid": view.id, "lat": lat, "lng": lng, "reach": reach_m, "skills": skills,
                "fresh_after": now - timedelta(seconds=view.dispatch.location_max_age_s),
                "offered": list(before),
                "listed": [n.worker_id for n in found] + [resident_id],
            }  # fmt: skip

        async def committed() -> None:
            self._pending.append(row)
            if self._flusher is None or self._flusher.done():
                self._flusher = asyncio.get_running_loop().create_task(self._flush_soon())

        aftercommit.promise(session, ("dispatch_wave", job_id, wave), committed)

    async def _flush_soon(self) -> None:
        await asyncio.sleep(self.flush_s)
        await self.flush()

    async def flush(self) -> int:
        """Write the committed waves' rows now; how many. A batch that fails is written row by
        row, so one bad row loses only itself (logged)."""
        rows, self._pending = self._pending, []
        if not rows:
            return 0
        params = [build() for build in rows]
        try:
            async with self.sessions.begin() as s:
                await s.execute(_WRITE_WAVE, params)
        except Exception as exc:
            if len(params) == 1:
                log.warning("dispatch_wave_not_logged", job_id=params[0]["job_id"], error=repr(exc))
                return 0
            written = 0
            for one in params:
                try:
                    async with self.sessions.begin() as s:
                        await s.execute(_WRITE_WAVE, one)
                    written += 1
                except Exception as exc:
                    log.warning("dispatch_wave_not_logged", job_id=one["job_id"], error=repr(exc))
            return written
        log.debug("dispatch_waves_logged", waves=len(params))
        return len(params)

    async def close(self) -> None:
        """Write what is pending (a process stopping)."""
        if self._flusher is not None:
            self._flusher.cancel()
        await self.flush()

    async def read(self, who: Principal, job_id: int) -> tuple[Job, list[DispatchWave], dict]:
        """The job's waves with each offer's fate (`{(wave, worker): status}`). Waves this
        process has not written yet are written first (an operator opening a job just posted
        sees its wave; another process's land within `FLUSH_S`)."""
        if self._pending:
            await self.flush()
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


def _entries(
    found: list[Nearby],
    picked: set[int],
    offered: frozenset[int],
    resident_id: int,
    ranked: list[ranking.Ranked] | None,
) -> list[dict[str, Any]]:
    """Each candidate's entry, nearest first: its distance, rank, whether it was picked (or why
    not) and, if it was ranked, its score's parts."""
    order = {x.record.worker_id: (i, x) for i, x in enumerate(ranked or [], 1)}
    candidates = []
    for near, n in enumerate(found, 1):
        why = None
        if n.worker_id not in picked:
            if n.worker_id == resident_id:
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
    return candidates


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
