"""The console's starting picture of one community: its shape, the jobs that need watching, its
workers with their state and position, open alerts, and supply and demand per H3 cell. The
event stream (`events.py`) carries the changes after it: the snapshot names the stream position
it was taken at, so a console subscribes from there and misses nothing between the two.

No phone number is in it: workers are shown by name and id, residents not at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import h3
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dispatch.communities.params import Wave
from dispatch.communities.service import CommunityService, CommunityView
from dispatch.grab.rules import wave_reach_m
from dispatch.identity.principal import Principal
from dispatch.models import Alert
from dispatch.ops.events import CELL_RES, OpsFeed
from geo.live import LiveIndex

LIVE_STATUSES = ("under_review", "open", "assigned", "in_progress")
RECENT = timedelta(hours=12)
"""Jobs that ended (unfilled, completed, cancelled) stay on the board this long."""
MAX_JOBS = 1000
MAX_ALERTS = 200
MAX_SUPPLY = 10_000
MAX_MAP_CELLS = 3_000
"""Up to this many cells the snapshot lists every cell over the area (so the console can count
supply and demand live in any of them); a larger area lists the cells with something in them."""
SEVERITY_ORDER = {"critical": 0, "high": 1, "warning": 2, "info": 3}

_JOBS = text(
    """
    SELECT j.id, j.status, j.mode, j.title, j.category, ST_Y(j.location::geometry),
           ST_X(j.location::geometry), j.wave, j.wave_deadline, j.worker_id, j.created_at,
           j.updated_at, j.scheduled_start, j.sos_at IS NOT NULL,
           (SELECT count(*) FROM offers o WHERE o.job_id = j.id AND o.status = 'pending'),
           nxt.payload->>'action', nxt.due_at, last.payload->>'action',
           last.payload->>'outcome', last.fired_at, j.version
    FROM jobs j
    LEFT JOIN LATERAL (
        SELECT t.payload, t.due_at FROM timers t
        WHERE t.kind = 'safety_step' AND t.ref_id = j.id AND t.fired_at IS NULL
          AND t.cancelled_at IS NULL AND j.status = 'in_progress'
        ORDER BY t.due_at LIMIT 1) nxt ON true
    LEFT JOIN LATERAL (
        SELECT t.payload, t.fired_at FROM timers t
        WHERE t.kind = 'safety_step' AND t.ref_id = j.id AND t.fired_at IS NOT NULL
          AND j.status = 'in_progress'
        ORDER BY t.fired_at DESC LIMIT 1) last ON true
    WHERE j.community_id = :cid
      AND (j.status = ANY(CAST(:live AS text[])) OR j.updated_at > :recent)
    ORDER BY j.created_at DESC
    LIMIT :limit
    """
)
_WORKERS = text(
    """
    WITH busy AS (
        SELECT a.worker_id, j.status FROM assignments a JOIN jobs j ON j.id = a.job_id
        WHERE a.active AND j.community_id = :cid AND j.status IN ('assigned', 'in_progress')),
    offered AS (
        SELECT DISTINCT o.worker_id FROM offers o JOIN jobs j ON j.id = o.job_id
        WHERE o.status = 'pending' AND o.expires_at > :now AND j.community_id = :cid)
    SELECT w.user_id, w.name, w.online, w.verification, w.skills, w.location_at,
           ST_Y(w.location::geometry), ST_X(w.location::geometry),
           (SELECT bool_or(b.status = 'in_progress') FROM busy b WHERE b.worker_id = w.user_id),
           EXISTS (SELECT 1 FROM offered f WHERE f.worker_id = w.user_id)
    FROM workers w JOIN worker_communities wc ON wc.worker_id = w.user_id
    WHERE wc.community_id = :cid
      AND (w.online OR w.user_id IN (SELECT worker_id FROM busy))
    """
)


@dataclass(frozen=True)
class JobPin:
    id: int
    status: str
    mode: str
    title: str
    category: str
    lat: float
    lng: float
    wave: int
    wave_radius_m: float | None
    """The reach of the wave out now (open jobs only)."""
    wave_deadline: datetime | None
    worker_id: int | None
    pending_offers: int
    sos: bool
    scheduled_start: datetime | None
    created_at: datetime
    updated_at: datetime
    version: int
    """The job's version, bumped by every change of its status or holder (a wave changes
    `wave` instead): the console orders the job's news by (version, wave)."""
    cell: str = ""
    """The job's H3 cell (resolution 8): where it counts as demand while open."""
    next_step: tuple[str, datetime] | None = None
    """In progress: the check-in ladder's next step and when (`remind` first: the check-in
    due)."""
    last_step: tuple[str, str, datetime] | None = None
    """In progress: the ladder's latest step, its outcome and when."""


@dataclass(frozen=True)
class WorkerDot:
    id: int
    name: str
    state: str
    """`idle`, `offered`, `assigned`, `on_site` or `offline` (off line but holding a job)."""
    verification: str
    skills: list[str]
    lat: float | None
    lng: float | None
    location_at: datetime | None
    available: bool = False
    """In the live index now (online, verified, in the area, a fresh fix): counts as supply
    where it stands while idle."""
    cell: str | None = None


@dataclass(frozen=True)
class CellCount:
    cell: str
    supply: int
    """Workers here dispatch could offer a job now: available in the live index (online,
    verified, in the area, a fresh fix) and neither offered nor holding one."""
    demand: int
    """Open jobs here."""
    boundary: list[tuple[float, float]]


@dataclass(frozen=True)
class Snapshot:
    community: CommunityView
    event_id: str
    jobs: list[JobPin]
    workers: list[WorkerDot]
    alerts: list[Alert]
    cells: list[CellCount]
    taken_at: datetime
    location_max_age_s: int = 0
    """How old a worker's fix may be and still count as supply (the console ages them out)."""
    map_style_url: str | None = None


def worker_state(online: bool, holding: bool | None, offered: bool) -> str:
    """A worker's state on the map: on site (their job is in progress), assigned, offered (an
    offer is out to them), idle (online, free), or offline (holding a job while off line)."""
    if holding:
        return "on_site"
    if holding is not None:
        return "assigned"
    if offered:
        return "offered"
    return "idle" if online else "offline"


class Snapshots:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        communities: CommunityService,
        live: LiveIndex,
        feed: OpsFeed,
        map_style_url: str | None = None,
    ) -> None:
        self.sessions = sessions
        self.communities = communities
        self.live = live
        self.feed = feed
        self.map_style_url = map_style_url

    async def of(self, who: Principal, community_id: int) -> Snapshot:
        """The community as it is now, for its operators (403 for anyone else)."""
        who.require_operator_of(community_id)
        # The stream position first: whatever happens after it arrives as an event.
        event_id = await self.feed.latest_id(community_id)
        now = datetime.now(UTC)
        async with self.sessions() as session:
            community = await self.communities.get(session, community_id)
            params = community.dispatch
            job_rows = (
                await session.execute(
                    _JOBS,
                    {
                        "cid": community_id,
                        "live": list(LIVE_STATUSES),
                        "recent": now - RECENT,
                        "limit": MAX_JOBS,
                    },
                )
            ).all()
            worker_rows = (await session.execute(_WORKERS, {"cid": community_id, "now": now})).all()
            alert_rows = (
                await session.scalars(
                    select(Alert)
                    .where(Alert.community_id == community_id, Alert.acked_at.is_(None))
                    .order_by(Alert.created_at.desc())
                    .limit(MAX_ALERTS)
                )
            ).all()
        jobs = []
        for r in job_rows:
            radius = None
            if r[1] == "open" and 1 <= r[7] <= len(params.waves):
                radius = round(wave_reach_m(params.waves[r[7] - 1], community.area, r[5], r[6]))
            jobs.append(
                JobPin(
                    id=r[0], status=r[1], mode=r[2], title=r[3], category=r[4], lat=r[5],
                    lng=r[6], wave=r[7], wave_radius_m=radius, wave_deadline=r[8],
                    worker_id=r[9], created_at=r[10], updated_at=r[11], scheduled_start=r[12],
                    sos=bool(r[13]), pending_offers=int(r[14]),
                    cell=h3.latlng_to_cell(r[5], r[6], CELL_RES), version=int(r[20]),
                    next_step=(r[15], r[16]) if r[15] else None,
                    last_step=(r[17], r[18], r[19]) if r[17] else None,
                )
            )  # fmt: skip
        # Who dispatch could offer a job to right now, where they are now: the live index
        # (available, in the area, a fresh fix); the database's positions lag by a flush.
        reach = wave_reach_m(Wave(None, None), community.area, *community.center)
        eligible = {
            n.worker_id: n
            for n in await self.live.search(
                community_id, *community.center, reach, limit=MAX_SUPPLY,
                min_recorded_at=now.timestamp() - params.location_max_age_s,
            )
        }  # fmt: skip
        workers = []
        supply: dict[str, int] = {}
        for r in worker_rows:
            state = worker_state(bool(r[2]), r[8], bool(r[9]))
            lat, lng, at = r[6], r[7], r[5]
            seen = eligible.get(r[0])
            if seen is not None:
                lat, lng, at = seen.lat, seen.lng, datetime.fromtimestamp(seen.recorded_at, UTC)
            cell = h3.latlng_to_cell(lat, lng, CELL_RES) if lat is not None else None
            if seen is not None and state == "idle" and cell is not None:
                supply[cell] = supply.get(cell, 0) + 1
            workers.append(
                WorkerDot(
                    id=r[0], name=r[1], state=state, verification=r[3], skills=list(r[4] or []),
                    lat=lat, lng=lng, location_at=at, available=seen is not None, cell=cell,
                )
            )  # fmt: skip
        demand: dict[str, int] = {}
        for job in jobs:
            if job.status == "open":
                demand[job.cell] = demand.get(job.cell, 0) + 1
        over = community.area.cells_at(CELL_RES, MAX_MAP_CELLS)
        listed = {h3.int_to_str(c) for c in over} if over is not None else set()
        cells = [
            CellCount(c, supply.get(c, 0), demand.get(c, 0), list(h3.cell_to_boundary(c)))
            for c in sorted(listed | supply.keys() | demand.keys())
        ]
        ordered = sorted(alert_rows, key=lambda a: (SEVERITY_ORDER.get(a.severity, 9), -a.id))
        return Snapshot(
            community, event_id, jobs, workers, ordered, cells, now,
            location_max_age_s=params.location_max_age_s, map_style_url=self.map_style_url,
        )  # fmt: skip
