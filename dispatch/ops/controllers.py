"""Operators: the alert queue, manual dispatch, and the live event stream."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Annotated, Any

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.response import Stream
from msgspec import Struct

from dispatch.grab.dispatcher import Dispatcher
from dispatch.identity.auth import operators
from dispatch.jobs.views import job_view_out
from dispatch.models import Alert
from dispatch.ops.alerts import AlertService
from dispatch.ops.dispatchlog import DispatchLog
from dispatch.ops.events import KEEP_ALIVE, OpsFeed, sse
from dispatch.ops.snapshot import JobPin, Snapshot, Snapshots, WorkerDot
from dispatch.web.deps import principal_of
from dispatch.web.schemas import AlertOut, AssignIn, JobOut, Timestamp
from dispatch.workers.service import WorkerService

EVENT_ID = re.compile(r"^[0-9]{1,20}-[0-9]{1,20}$")


class Where(Struct):
    lat: float
    lng: float


class CommunityShape(Struct):
    id: int
    name: str
    timezone: str
    center: Where
    radius_m: int | None
    boundary: list[Where] | None
    """The polygon's ring, when the community has one (else the circle of `radius_m`)."""


class JobPinOut(Struct, kw_only=True):
    id: int
    status: str
    mode: str
    title: str
    category: str
    location: Where
    wave: int
    wave_radius_m: float | None
    """How far the wave out now reaches (open jobs)."""
    wave_deadline: Timestamp | None
    worker_id: int | None
    pending_offers: int
    sos: bool
    scheduled_start: Timestamp | None
    version: int
    """Bumped by every change of the job's status or holder; with `wave`, the order of the
    job's `job` events (a late event with a lower (version, wave) is older news)."""
    created_at: Timestamp
    updated_at: Timestamp
    cell: str
    """The job's H3 cell (resolution 8)."""
    next_step: LadderStepOut | None = None
    """In progress: the check-in ladder's next step (`remind`: the check-in falls due then)."""
    last_step: LadderStepOut | None = None
    """In progress: the ladder's latest step and its outcome (a worker who has gone quiet)."""


class LadderStepOut(Struct, omit_defaults=True):
    step: str
    at: Timestamp
    outcome: str | None = None


class WorkerDotOut(Struct, kw_only=True):
    id: int
    name: str
    state: str
    """`idle`, `offered`, `assigned`, `on_site`, `offline`."""
    verification: str
    skills: list[str]
    location: Where | None
    location_at: Timestamp | None
    available: bool
    """Dispatch could offer this worker a job now (online, verified, in the area, a fresh
    fix): counted as supply in its cell while idle."""
    cell: str | None
    """The worker's H3 cell (resolution 8) where the position is known."""


class CellOut(Struct):
    cell: str
    """H3 resolution 8."""
    supply: int
    demand: int
    boundary: list[Where]


class SnapshotOut(Struct, kw_only=True):
    community: CommunityShape
    event_id: str
    """The event stream's position when this was taken: open it with `Last-Event-ID` set to
    this and no change is missed."""
    taken_at: Timestamp
    jobs: list[JobPinOut]
    workers: list[WorkerDotOut]
    alerts: list[AlertOut]
    cells: list[CellOut]
    """Every H3 cell over the area (up to 3,000; else the ones with supply or demand), with
    supply and demand now. The stream's `positions`, `worker` and `job` events carry cells,
    so a console keeps the counts live."""
    location_max_age_s: int
    """A fix older than this no longer counts as supply."""
    map_style_url: str | None
    """The base map (`MAP_STYLE_URL`): an XYZ raster tile template or a style JSON with a
    raster source; none, and the map is shapes on a plain background."""


def _job_pin(j: JobPin) -> JobPinOut:
    return JobPinOut(
        id=j.id, status=j.status, mode=j.mode, title=j.title, category=j.category,
        location=Where(j.lat, j.lng), wave=j.wave, wave_radius_m=j.wave_radius_m,
        wave_deadline=j.wave_deadline, worker_id=j.worker_id, pending_offers=j.pending_offers,
        sos=j.sos, scheduled_start=j.scheduled_start, created_at=j.created_at,
        updated_at=j.updated_at, cell=j.cell, version=j.version,
        next_step=LadderStepOut(j.next_step[0], j.next_step[1]) if j.next_step else None,
        last_step=(
            LadderStepOut(j.last_step[0], j.last_step[2], j.last_step[1]) if j.last_step else None
        ),
    )  # fmt: skip


def _worker_dot(w: WorkerDot) -> WorkerDotOut:
    where = Where(w.lat, w.lng) if w.lat is not None and w.lng is not None else None
    return WorkerDotOut(
        id=w.id, name=w.name, state=w.state, verification=w.verification, skills=w.skills,
        location=where, location_at=w.location_at, available=w.available, cell=w.cell,
    )  # fmt: skip


def snapshot_out(snap: Snapshot) -> SnapshotOut:
    c = snap.community
    ring = None
    if c.boundary is not None:
        ring = [Where(lat, lng) for lng, lat in c.boundary.exterior.coords]
    shape = CommunityShape(c.id, c.name, c.timezone, Where(*c.center), c.radius_m, ring)
    cells = [CellOut(x.cell, x.supply, x.demand, [Where(*p) for p in x.boundary])
             for x in snap.cells]  # fmt: skip
    return SnapshotOut(
        community=shape, event_id=snap.event_id, taken_at=snap.taken_at,
        jobs=[_job_pin(j) for j in snap.jobs], workers=[_worker_dot(w) for w in snap.workers],
        alerts=[alert_out(a) for a in snap.alerts], cells=cells,
        location_max_age_s=snap.location_max_age_s, map_style_url=snap.map_style_url,
    )  # fmt: skip


class PendingWorkerOut(Struct):
    worker_id: int
    name: str
    skills: list[str]
    legal_name: str
    """As the worker gave it, for the operator checking their papers (never shown to residents)."""
    id_number_hint: str
    """The ID number's last four characters."""
    requested_at: Timestamp


class OutboxRowOut(Struct, kw_only=True):
    id: int
    kind: str
    channel: str
    via: str | None
    status: str
    attempts: int
    job_id: int | None
    to_user_id: int | None
    created_at: Timestamp
    last_error: str | None


class ScoreOut(Struct):
    """A candidate's fair-ranking score, lower first (`dispatch.trust.ranking`), by part."""

    distance: float
    rating: float
    reliability: float
    exposure: float
    total: float
    recent_offers: int
    """Offers this worker had in the community in the hour before the wave."""
    last_offer_at: float | None
    """When they were last offered a job here (epoch seconds): rotation among similar scores."""


class CandidateOut(Struct):
    worker_id: int
    distance_m: float
    rank: int
    """The offer order of fair ranking (the candidates not offered the job before first);
    waves logged before it: nearest first."""
    picked: bool
    why_not: str | None
    """`already_offered`, `resident`, `capped` (the hourly offer cap reached), `beyond_size`
    (the wave's best were enough)."""
    fate: str | None
    """The offer's end for a picked worker: `pending`, `accepted`, `declined`, `expired`,
    `taken` (someone else took it), `withdrawn`."""
    score: ScoreOut | None = None


class WaveOut(Struct, kw_only=True):
    wave: int
    radius_m: float
    size: int
    sent_at: Timestamp
    offered: list[CandidateOut]
    """Every candidate within reach, picked or not."""
    excluded: dict[str, int]
    """The community's workers within reach left out, by reason: `offline`, `busy`,
    `unverified`, `unskilled`, `stale_location`, `outside_community`, `already_offered`,
    `beyond_size`."""


class DispatchLogOut(Struct):
    job_id: int
    status: str
    waves: list[WaveOut]


class ReplayWaveOut(Struct):
    wave: int
    picked: list[int]
    recorded: list[int]


class ReplayOut(Struct):
    same: bool
    """Today's ranking picks the workers that were picked then, wave by wave."""
    waves: list[ReplayWaveOut]


class StreamTokenOut(Struct):
    token: str
    """For `GET /v1/ops/communities/{id}/events?token=…`: this community's stream alone."""
    expires_at: Timestamp


def alert_out(a: Alert) -> AlertOut:
    return AlertOut(
        id=a.id,
        community_id=a.community_id,
        kind=a.kind,
        severity=a.severity,
        job_id=a.job_id,
        worker_id=a.worker_id,
        detail=a.detail,
        created_at=a.created_at,
        acked_at=a.acked_at,
    )


class OpsController(Controller):
    path = "/v1/ops"
    tags = ["ops"]
    guards = [operators]

    @get("/communities/{community_id:int}/alerts")
    async def alerts(
        self,
        community_id: FromPath[int],
        request: Request[Any, Any, Any],
        alerts: NamedDependency[AlertService],
        include_acked: Annotated[bool, QueryParameter()] = False,
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = 100,
    ) -> list[AlertOut]:
        """The community's alerts, newest first; unacknowledged only unless asked."""
        who = principal_of(request)
        found = await alerts.queue(who, community_id, include_acked=include_acked, limit=limit)
        return [alert_out(a) for a in found]

    @get("/communities/{community_id:int}/snapshot")
    async def snapshot(
        self,
        community_id: FromPath[int],
        request: Request[Any, Any, Any],
        snapshots: NamedDependency[Snapshots],
    ) -> SnapshotOut:
        """The community now, for the console: its shape, the jobs to watch (live ones, and
        those ended in the last 12 hours), its workers with state and position, open alerts
        (most severe first), supply and demand per H3 cell; then follow the event stream from
        `event_id`."""
        return snapshot_out(await snapshots.of(principal_of(request), community_id))

    @get("/communities/{community_id:int}/verifications")
    async def verifications(
        self,
        community_id: FromPath[int],
        request: Request[Any, Any, Any],
        workers: NamedDependency[WorkerService],
    ) -> list[PendingWorkerOut]:
        """Workers of the community waiting to be verified, oldest first, with the real-name
        details they gave; approve with `POST /v1/ops/workers/{id}/verify`."""
        found = await workers.verification_queue(principal_of(request), community_id)
        return [
            PendingWorkerOut(
                p.worker.user_id, p.worker.name, list(p.worker.skills), p.legal_name,
                p.id_number_hint, p.worker.updated_at,
            )
            for p in found
        ]  # fmt: skip

    @get("/communities/{community_id:int}/outbox")
    async def outbox(
        self,
        community_id: FromPath[int],
        request: Request[Any, Any, Any],
        feed: NamedDependency[OpsFeed],
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = 100,
    ) -> list[OutboxRowOut]:
        """The community's messages (about its jobs), newest first: kind, channel, how it went;
        no number and no text."""
        rows = await feed.outbox(principal_of(request), community_id, limit)
        return [OutboxRowOut(**r) for r in rows]

    @post("/communities/{community_id:int}/stream-token", status_code=201)
    async def stream_token(
        self,
        community_id: FromPath[int],
        request: Request[Any, Any, Any],
        feed: NamedDependency[OpsFeed],
    ) -> StreamTokenOut:
        """A token good for one minute to open this community's event stream with `?token=`
        (a browser's `EventSource` cannot send the bearer header)."""
        token, expires = await feed.stream_token(principal_of(request), community_id)
        return StreamTokenOut(token, expires)

    @post("/alerts/{alert_id:int}/ack", status_code=200)
    async def ack(
        self,
        alert_id: FromPath[int],
        request: Request[Any, Any, Any],
        alerts: NamedDependency[AlertService],
    ) -> AlertOut:
        who = principal_of(request)
        return alert_out(await alerts.ack(who, alert_id))

    @get("/jobs/{job_id:int}/dispatch-log")
    async def dispatch_log(
        self,
        job_id: FromPath[int],
        request: Request[Any, Any, Any],
        dispatch_log: NamedDependency[DispatchLog],
    ) -> DispatchLogOut:
        """Why these workers: each wave's reach and time, every candidate with distance, rank,
        whether picked (or why not) and the offer's fate, and who was left out by reason."""
        job, waves, fates = await dispatch_log.read(principal_of(request), job_id)
        return DispatchLogOut(
            job.id, job.status,
            [
                WaveOut(
                    wave=w.wave, radius_m=w.radius_m, size=w.size, sent_at=w.sent_at,
                    excluded={k: v for k, v in w.excluded.items() if v},
                    offered=[
                        CandidateOut(
                            c["worker_id"], c["distance_m"], c["rank"], c["picked"],
                            c.get("why_not"), fates.get((w.wave, c["worker_id"])),
                            ScoreOut(**c["score"]) if c.get("score") else None,
                        )
                        for c in w.candidates
                    ],
                )
                for w in waves
            ],
        )  # fmt: skip

    @post("/jobs/{job_id:int}/replay", status_code=200)
    async def replay(
        self,
        job_id: FromPath[int],
        request: Request[Any, Any, Any],
        dispatch_log: NamedDependency[DispatchLog],
    ) -> ReplayOut:
        """Re-rank each wave's recorded candidates with today's rules: the same workers?"""
        done = await dispatch_log.replay(principal_of(request), job_id)
        return ReplayOut(done.same, [ReplayWaveOut(**w) for w in done.waves])

    @post("/jobs/{job_id:int}/assign", status_code=200)
    async def assign(
        self,
        job_id: FromPath[int],
        data: JSONBody[AssignIn],
        request: Request[Any, Any, Any],
        dispatcher: NamedDependency[Dispatcher],
    ) -> JobOut:
        """Manual dispatch: hand the job to a verified worker of its community. Any earlier
        holder's `assignment_version` stops working."""
        who = principal_of(request)
        return job_view_out(await dispatcher.assign(who, job_id, data.worker_id))


@get(
    "/v1/ops/communities/{community_id:int}/events",
    exclude_from_auth=True,
    tags=["ops"],
    media_type="text/event-stream",
)
async def ops_events(
    community_id: FromPath[int],
    request: Request[Any, Any, Any],
    feed: NamedDependency[OpsFeed],
    token: Annotated[str | None, QueryParameter(max_length=2000)] = None,
    after: Annotated[str | None, QueryParameter(pattern=EVENT_ID.pattern, max_length=41)] = None,
) -> Stream:
    """The community's live events (server-sent events): `alert`, `checkin`, `ladder_step`,
    `job`, `positions`, `worker` (on or off line, verified); positions, workers and jobs carry
    their H3 cell (resolution 8) for live supply and demand. Each has an `id:`; reconnecting
    with `Last-Event-ID` (or `?after=`, for a client that opens a new URL) resumes after it;
    a `resync` event says the stream no longer holds that point (take a new snapshot). The
    bearer may come as the header or as a stream token (`POST .../stream-token`) in
    `?token=`."""
    header = request.headers.get("authorization", "")
    bearer = header[7:].strip() if header.lower().startswith("bearer ") else None
    who = feed.caller(bearer, token)
    await feed.check(who, community_id)
    resume = request.headers.get("last-event-id", "") or after or ""
    if EVENT_ID.fullmatch(resume):
        start, lost = resume, await feed.lost(community_id, resume)
    else:
        start, lost = await feed.latest_id(community_id), False

    async def messages() -> AsyncIterator[bytes]:
        hello = json.dumps({"community_id": community_id, "after": start}).encode()
        yield sse(None, "hello", hello)
        if lost:
            yield sse(None, "resync", json.dumps({"after": start}).encode())
            start_from = await feed.latest_id(community_id)
        else:
            start_from = start
        async for batch in feed.follow(community_id, start_from):
            if batch is None:
                yield KEEP_ALIVE
            else:
                yield b"".join(sse(*event) for event in batch)

    return Stream(
        messages(), media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )  # fmt: skip
