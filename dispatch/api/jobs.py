"""Jobs: post (resident, idempotent), read (participants and operators), list one's own."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.datastructures import State
from litestar.params import FromPath, HeaderParameter, JSONBody, QueryParameter

from dispatch import idempotency
from dispatch.api.deps import principal_of, runtime_of
from dispatch.api.schemas import JobCreate, JobOut, Material, Point, Window
from dispatch.auth import residents_only
from dispatch.jobs import JobService, NewJob
from dispatch.models import Job
from geo.shapes import wkb_to_latlng


def job_out(job: Job) -> JobOut:
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
    ) -> Response[Any]:
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
        async with rt.sessions.begin() as session:

            async def produce() -> tuple[int, bytes]:
                job = await service.create(session, who, new)
                return 201, msgspec.json.encode(job_out(job))

            status, body = await idempotency.run_once(session, who.user_id, key, print_, produce)
        return Response(content=body, status_code=status, media_type="application/json")

    @get("/{job_id:int}")
    async def read(
        self, job_id: FromPath[int], request: Request[Any, Any, Any], state: State
    ) -> JobOut:
        rt = runtime_of(state)
        async with rt.sessions() as session:
            job = await JobService(rt.communities).get_visible(
                session, principal_of(request), job_id
            )
            return job_out(job)

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
            return [job_out(j) for j in jobs]
