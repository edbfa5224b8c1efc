"""Jobs: post (resident, idempotent), read (participants and operators), list one's own."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.datastructures import State
from litestar.params import FromPath, HeaderParameter, JSONBody, QueryParameter
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dispatch.grab.dispatcher import AfterCommit
from dispatch.identity.auth import residents_only, workers_only
from dispatch.infra import idempotency
from dispatch.jobs.proxies import proxy_number_for
from dispatch.jobs.service import JobService, NewJob
from dispatch.models import Job
from dispatch.web.deps import principal_of, runtime_of
from dispatch.web.schemas import (
    CancelIn,
    Cancellation,
    CompleteIn,
    JobCreate,
    JobOut,
    Material,
    OffersSummary,
    Point,
    Window,
)
from geo.shapes import wkb_to_latlng

# A plain statement: building it with the expression language cost more CPU than running it.
_OFFER_COUNTS = text(
    "SELECT job_id, status, count(*) FROM offers "
    "WHERE job_id = ANY(CAST(:ids AS bigint[])) GROUP BY job_id, status"
)


async def offers_summaries(session: AsyncSession, jobs: list[Job]) -> dict[int, OffersSummary]:
    """Offer counts by status for each job, in one query."""
    counts: dict[int, dict[str, int]] = {j.id: {} for j in jobs}
    if jobs:
        rows = await session.execute(_OFFER_COUNTS, {"ids": list(counts)})
        for job_id, status, n in rows.all():
            counts[job_id][status] = n
    return {j.id: OffersSummary(wave=j.wave, **counts[j.id]) for j in jobs}


async def offers_summary(session: AsyncSession, job: Job) -> OffersSummary:
    return (await offers_summaries(session, [job]))[job.id]


async def job_response(
    sessions: async_sessionmaker[AsyncSession], job: Job, viewer: int | None = None
) -> JobOut:
    """The job as clients see it, with its offers summary, and the masked number `viewer`
    reaches the other participant on when they are one."""
    async with sessions() as session:
        out = job_out(job, await offers_summary(session, job))
        if viewer is not None:
            out.proxy_number = await proxy_number_for(session, job, viewer)
        return out


def job_out(job: Job, offers: OffersSummary | None = None) -> JobOut:
    lat, lng = wkb_to_latlng(job.location)
    window = None
    if job.window_start is not None and job.window_end is not None:
        window = Window(start=job.window_start, end=job.window_end)
    return JobOut(
        id=job.id,
        status=job.status,
        mode=job.mode,
        community_id=job.community_id,
        resident_id=job.resident_id,
        worker_id=job.worker_id,
        title=job.title,
        description=job.description,
        category=job.category,
        skills=list(job.skills),
        location=Point(lat=lat, lng=lng),
        address=job.address,
        window=window,
        price_cents=job.price_cents,
        currency=job.currency,
        materials=msgspec.convert(job.materials, list[Material]),
        insured=job.insured,
        created_at=job.created_at,
        review_reason=job.review_reason,
        offers=offers,
        assignment_version=job.assignment_version if job.worker_id is not None else None,
        cancellation=Cancellation(
            by=job.cancelled_by or "",
            reason=job.cancel_reason,
            fee_cents=job.cancellation_fee_cents or 0,
            at=job.cancelled_at,
        )
        if job.cancelled_at is not None
        else None,
    )


class JobController(Controller):
    path = "/v1/jobs"
    tags = ["jobs"]

    @post("/", guards=[residents_only], status_code=201)
    async def create(
        self,
        data: JSONBody[JobCreate],
        request: Request[Any, Any, Any],
        state: State,
        idempotency_key: Annotated[
            str | None, HeaderParameter(name="Idempotency-Key", required=False)
        ] = None,
    ) -> Response[JobOut]:
        """Post a job. A retry with the same Idempotency-Key and body replays the first answer."""
        rt = runtime_of(state)
        who = principal_of(request)
        key = idempotency.check_key(idempotency_key)
        print_ = idempotency.fingerprint("POST", request.url.path, await request.body())
        service = JobService(rt.communities)
        new = NewJob(
            title=data.title,
            category=data.category,
            lat=data.location.lat,
            lng=data.location.lng,
            mode=data.mode,
            price_cents=data.price_cents,
            description=data.description,
            skills=list(data.skills),
            address=data.address,
            window=(data.window.start, data.window.end) if data.window else None,
            currency=data.currency,
            materials=msgspec.to_builtins(data.materials),
            insured=data.insured,
            community_id=data.community_id,
        )
        after = AfterCommit()
        async with rt.sessions.begin() as session:

            async def produce() -> tuple[int, bytes]:
                job, community = await service.create(session, who, new)
                offered = 0
                if rt.settings.auto_dispatch:
                    offered = await rt.dispatcher.open_job(session, job, after, community)
                # A job posted a moment ago has no offers but its first wave's.
                out = job_out(job, OffersSummary(wave=job.wave, pending=offered))
                return 201, msgspec.json.encode(out)

            status, body = await idempotency.run_once(session, who.user_id, key, print_, produce)
        await rt.dispatcher.run_after(after)
        return Response(content=body, status_code=status, media_type="application/json")

    @get("/{job_id:int}")
    async def read(
        self, job_id: FromPath[int], request: Request[Any, Any, Any], state: State
    ) -> JobOut:
        rt = runtime_of(state)
        async with rt.sessions() as session:
            who = principal_of(request)
            job = await JobService(rt.communities).get_visible(session, who, job_id)
            out = job_out(job, await offers_summary(session, job))
            out.proxy_number = await proxy_number_for(session, job, who.user_id)
            return out

    @get("/")
    async def mine(
        self,
        request: Request[Any, Any, Any],
        state: State,
        limit: Annotated[int, QueryParameter(ge=1, le=200)] = 50,
    ) -> list[JobOut]:
        """The caller's jobs: posted (resident), taken (worker), or in their communities (ops)."""
        rt = runtime_of(state)
        async with rt.sessions() as session:
            jobs = await JobService(rt.communities).list_mine(session, principal_of(request), limit)
            summaries = await offers_summaries(session, jobs)
            return [job_out(j, summaries[j.id]) for j in jobs]

    @post("/{job_id:int}/cancel", status_code=200)
    async def cancel(
        self,
        job_id: FromPath[int],
        data: JSONBody[CancelIn],
        request: Request[Any, Any, Any],
        state: State,
    ) -> JobOut:
        """Cancel: the resident (a fee applies once a worker has been on it a while) or the
        assigned worker with its `assignment_version` (the job goes back out to others)."""
        rt = runtime_of(state)
        job = await rt.dispatcher.cancel(
            principal_of(request), job_id, data.reason, data.assignment_version
        )
        return await job_response(rt.sessions, job)

    @post("/{job_id:int}/complete", guards=[workers_only], status_code=200)
    async def complete(
        self,
        job_id: FromPath[int],
        data: JSONBody[CompleteIn],
        request: Request[Any, Any, Any],
        state: State,
    ) -> JobOut:
        """The assigned worker marks the job done (fenced by `assignment_version`)."""
        rt = runtime_of(state)
        job = await rt.dispatcher.complete(principal_of(request), job_id, data.assignment_version)
        return await job_response(rt.sessions, job)
