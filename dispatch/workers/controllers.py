"""Workers: own profile, verification, presence and position; operators verify and search."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated, Any

from litestar import Controller, Request, get, post, put
from litestar.datastructures import State
from litestar.params import FromPath, JSONBody, QueryParameter

from dispatch.core.errors import DomainError, Forbidden, Unprocessable
from dispatch.identity.auth import operators, require_roles, workers_only
from dispatch.models import Worker
from dispatch.web.deps import principal_of, runtime_of
from dispatch.web.schemas import (
    LocationIn,
    LocationsIn,
    LocationsOut,
    NearbyOut,
    Point,
    PresenceIn,
    VerificationIn,
    WorkerOut,
    WorkerProfileIn,
)
from dispatch.workers.rules import check_ping
from geo.live import MoveResult


def worker_out(worker: Worker, community_ids: list[int]) -> WorkerOut:
    return WorkerOut(
        id=worker.user_id,
        name=worker.name,
        skills=list(worker.skills),
        community_ids=community_ids,
        verified=worker.verification == "verified",
        verification=worker.verification,
        rating=round(worker.rating_sum / worker.rating_count, 2) if worker.rating_count else None,
        online=worker.online,
        bio=worker.bio,
        hourly_rate_cents=worker.hourly_rate_cents,
    )


class WorkerSelfController(Controller):
    path = "/v1/workers/me"
    tags = ["workers"]
    guards = [workers_only]

    @put("/")
    async def save(self, data: JSONBody[WorkerProfileIn], request: Request[Any, Any, Any],
                   state: State) -> WorkerOut:  # fmt: skip
        """Create or update the worker profile: name, skills, communities served."""
        rt = runtime_of(state)
        async with rt.sessions.begin() as session:
            worker = await rt.workers.save_profile(
                session,
                principal_of(request),
                name=data.name,
                skills=data.skills,
                community_ids=data.community_ids,
                bio=data.bio,
                hourly_rate_cents=data.hourly_rate_cents,
            )
            return worker_out(worker, await rt.workers.communities_of(session, worker.user_id))

    @get("/")
    async def read(self, request: Request[Any, Any, Any], state: State) -> WorkerOut:
        rt = runtime_of(state)
        who = principal_of(request)
        async with rt.sessions() as session:
            worker = await rt.workers.profile(session, who.user_id)
            return worker_out(worker, await rt.workers.communities_of(session, who.user_id))

    @post("/verification", status_code=202)
    async def verification(self, data: JSONBody[VerificationIn], request: Request[Any, Any, Any],
                           state: State) -> dict[str, str]:  # fmt: skip
        """Submit real-name details; an operator checks them. Only verified workers get offers."""
        rt = runtime_of(state)
        async with rt.sessions.begin() as session:
            worker = await rt.workers.request_verification(
                session, principal_of(request), data.legal_name, data.id_number
            )
            return {"verification": worker.verification}

    @post("/presence", status_code=200)
    async def presence(self, data: JSONBody[PresenceIn], request: Request[Any, Any, Any],
                       state: State) -> WorkerOut:  # fmt: skip
        rt = runtime_of(state)
        who = principal_of(request)
        async with rt.sessions.begin() as session:
            worker = await rt.workers.set_presence(session, who, data.status == "online")
            return worker_out(worker, await rt.workers.communities_of(session, who.user_id))

    @post("/location", status_code=204)
    async def location(self, data: JSONBody[LocationIn], request: Request[Any, Any, Any],
                       state: State) -> None:  # fmt: skip
        """One position report. Out-of-order reports are ignored; impossible ones are 422."""
        rt = runtime_of(state)
        fix = check_ping(data, time.time())
        (result,) = await rt.workers.report(principal_of(request), [fix])
        if result is MoveResult.TOO_FAST:
            raise Unprocessable(
                "this position implies an impossible speed from the last one; kept the last one",
                code="impossible_speed",
            )

    @post("/locations", status_code=200)
    async def locations(self, data: JSONBody[LocationsIn], request: Request[Any, Any, Any],
                        state: State) -> LocationsOut:  # fmt: skip
        """A batch of position reports (say, buffered while offline), applied in time order."""
        rt = runtime_of(state)
        now = time.time()
        rejected: list[dict[str, Any]] = []
        fixes, where = [], []
        for i, p in enumerate(data.points):
            try:
                fixes.append(check_ping(p, now))
                where.append(i)
            except DomainError as exc:
                rejected.append({"index": i, "code": exc.code})
        results = await rt.workers.report(principal_of(request), fixes)
        accepted = results.count(MoveResult.ACCEPTED)
        ignored = 0
        if accepted < len(results):
            for i, result in zip(where, results, strict=True):
                if result is MoveResult.TOO_FAST:
                    rejected.append({"index": i, "code": "impossible_speed"})
                elif result is MoveResult.STALE:
                    ignored += 1
        if rejected:
            rejected.sort(key=lambda r: r["index"])
        return LocationsOut(accepted=accepted, ignored=ignored, rejected=rejected)


@post("/v1/ops/workers/{worker_id:int}/verify", guards=[operators], status_code=200, tags=["ops"])
async def verify_worker(worker_id: FromPath[int], request: Request[Any, Any, Any],
                        state: State) -> WorkerOut:  # fmt: skip
    """Mark a worker verified (operators of a community the worker serves, or admins)."""
    rt = runtime_of(state)
    async with rt.sessions.begin() as session:
        worker = await rt.workers.verify(session, principal_of(request), worker_id)
        return worker_out(worker, await rt.workers.communities_of(session, worker_id))


@get(
    "/v1/workers/nearby",
    guards=[require_roles("operator", "admin", "resident")],
    tags=["workers"],
)
async def nearby(
    request: Request[Any, Any, Any],
    state: State,
    lat: Annotated[float, QueryParameter(ge=-90, le=90)],
    lng: Annotated[float, QueryParameter(ge=-180, le=180)],
    radius_m: Annotated[float, QueryParameter(gt=0, le=50_000)] = 2000,
    skill: Annotated[list[str] | None, QueryParameter(max_items=5)] = None,
    community_id: Annotated[int | None, QueryParameter(ge=1)] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=200)] = 50,
) -> list[NearbyOut]:
    """Eligible workers near a point, nearest first. Operators see positions; residents see
    each worker at the centre of a ~5 km² cell, with the distance rounded to 100 m."""
    rt = runtime_of(state)
    who = principal_of(request)
    if who.role == "resident":
        limit = min(limit, 20)
    async with rt.sessions() as session:
        found = await rt.workers.nearby(
            session,
            who,
            lat=lat,
            lng=lng,
            radius_m=radius_m,
            skills=[s for s in skill or [] if s],
            community_id=community_id,
            limit=limit,
        )
    return [
        NearbyOut(
            worker_id=n.worker_id,
            distance_m=round(n.distance_m, 1),
            location=Point(lat=n.lat, lng=n.lng),
            recorded_at=datetime.fromtimestamp(n.recorded_at, UTC),
            name=n.name,
            skills=list(n.skills),
            rating=n.rating,
        )
        for n in found
    ]


@post(
    "/v1/ops/communities/{community_id:int}/rebuild-index",
    guards=[operators],
    status_code=200,
    tags=["ops"],
)
async def rebuild_index(community_id: FromPath[int], request: Request[Any, Any, Any],
                        state: State) -> dict[str, int]:  # fmt: skip
    """Refill the community's live index from the database (after Redis lost its data)."""
    rt = runtime_of(state)
    who = principal_of(request)
    if not who.can_operate(community_id):
        raise Forbidden("not an operator of this community", code="not_yours")
    async with rt.sessions() as session:
        await rt.workers.positions.flush()
        return {"workers": await rt.workers.rebuild(session, community_id)}
