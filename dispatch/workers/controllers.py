"""Workers: own profile, verification, presence and position; operators verify and search."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated, Any

from litestar import Controller, Request, get, post, put
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter

from dispatch.core.errors import DomainError, Unprocessable
from dispatch.identity.auth import operators, require_roles, workers_only
from dispatch.trust.ranking import shown_rating
from dispatch.web.deps import principal_of
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
from dispatch.workers.service import WorkerCard, WorkerService
from geo.live import MoveResult


def worker_out(card: WorkerCard) -> WorkerOut:
    worker, community_ids = card.worker, card.community_ids
    return WorkerOut(
        id=worker.user_id,
        name=worker.name,
        skills=list(worker.skills),
        community_ids=community_ids,
        verified=worker.verification == "verified",
        verification=worker.verification,
        rating=shown_rating(worker.rating_sum, worker.rating_count),
        rating_count=worker.rating_count,
        online=worker.online,
        bio=worker.bio,
        hourly_rate_cents=worker.hourly_rate_cents,
    )


class WorkerSelfController(Controller):
    path = "/v1/workers/me"
    tags = ["workers"]
    guards = [workers_only]

    @put("/")
    async def save(
        self,
        data: JSONBody[WorkerProfileIn],
        request: Request[Any, Any, Any],
        workers: NamedDependency[WorkerService],
    ) -> WorkerOut:
        """Create or update the worker profile: name, skills, communities served."""
        who = principal_of(request)
        card = await workers.save_profile(
            who,
            name=data.name,
            skills=data.skills,
            community_ids=data.community_ids,
            bio=data.bio,
            hourly_rate_cents=data.hourly_rate_cents,
        )
        return worker_out(card)

    @get("/")
    async def read(
        self, request: Request[Any, Any, Any], workers: NamedDependency[WorkerService]
    ) -> WorkerOut:
        who = principal_of(request)
        return worker_out(await workers.card(who.user_id))

    @post("/verification", status_code=202)
    async def verification(
        self,
        data: JSONBody[VerificationIn],
        request: Request[Any, Any, Any],
        workers: NamedDependency[WorkerService],
    ) -> dict[str, str]:
        """Submit real-name details; an operator checks them. Only verified workers get offers."""
        who = principal_of(request)
        status = await workers.request_verification(who, data.legal_name, data.id_number)
        return {"verification": status}

    @post("/presence", status_code=200)
    async def presence(
        self,
        data: JSONBody[PresenceIn],
        request: Request[Any, Any, Any],
        workers: NamedDependency[WorkerService],
    ) -> WorkerOut:
        who = principal_of(request)
        return worker_out(await workers.set_presence(who, data.status == "online"))

    @post("/location", status_code=204)
    async def location(
        self,
        data: JSONBody[LocationIn],
        request: Request[Any, Any, Any],
        workers: NamedDependency[WorkerService],
    ) -> None:
        """One position report. Out-of-order reports are ignored; impossible ones are 422."""
        who = principal_of(request)
        fix = check_ping(data, time.time())
        (result,) = await workers.report(who, [fix])
        if result is MoveResult.TOO_FAST:
            raise Unprocessable(
                "this position implies an impossible speed from the last one; kept the last one",
                code="impossible_speed",
            )

    @post("/locations", status_code=200)
    async def locations(
        self,
        data: JSONBody[LocationsIn],
        request: Request[Any, Any, Any],
        workers: NamedDependency[WorkerService],
    ) -> LocationsOut:
        """A batch of position reports (say, buffered while offline), applied in time order."""
        who = principal_of(request)
        now = time.time()
        rejected: list[dict[str, Any]] = []
        fixes, where = [], []
        for i, p in enumerate(data.points):
            try:
                fixes.append(check_ping(p, now))
                where.append(i)
            except DomainError as exc:
                rejected.append({"index": i, "code": exc.code})
        results = await workers.report(who, fixes)
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
async def verify_worker(
    worker_id: FromPath[int],
    request: Request[Any, Any, Any],
    workers: NamedDependency[WorkerService],
) -> WorkerOut:
    """Mark a worker verified (operators of a community the worker serves, or admins)."""
    who = principal_of(request)
    return worker_out(await workers.verify(who, worker_id))


@get(
    "/v1/workers/nearby",
    guards=[require_roles("operator", "admin", "resident")],
    tags=["workers"],
)
async def nearby(
    request: Request[Any, Any, Any],
    workers: NamedDependency[WorkerService],
    lat: Annotated[float, QueryParameter(ge=-90, le=90)],
    lng: Annotated[float, QueryParameter(ge=-180, le=180)],
    radius_m: Annotated[float, QueryParameter(gt=0, le=50_000)] = 2000,
    skill: Annotated[list[str] | None, QueryParameter(max_items=5)] = None,
    community_id: Annotated[int | None, QueryParameter(ge=1)] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=200)] = 50,
) -> list[NearbyOut]:
    """Eligible workers near a point, nearest first. Operators see positions; residents see
    each worker at the centre of a ~5 km² cell, with the distance rounded to 100 m."""
    who = principal_of(request)
    found = await workers.nearby(
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
async def rebuild_index(
    community_id: FromPath[int],
    request: Request[Any, Any, Any],
    workers: NamedDependency[WorkerService],
) -> dict[str, int]:
    """Refill the community's live index from the database (after Redis lost its data)."""
    who = principal_of(request)
    return {"workers": await workers.rebuild_for(who, community_id)}
