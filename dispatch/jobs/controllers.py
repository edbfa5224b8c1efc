"""Jobs: post (resident, idempotent), read (participants and operators), list one's own."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, HeaderParameter, JSONBody, QueryParameter

from dispatch.grab.dispatcher import Dispatcher
from dispatch.identity.auth import residents_only, workers_only
from dispatch.infra import idempotency
from dispatch.jobs.service import JobService, NewJob
from dispatch.jobs.views import job_out, job_view_out
from dispatch.models import Job
from dispatch.web.deps import principal_of
from dispatch.web.schemas import CancelIn, CompleteIn, JobCreate, JobOut, OffersSummary


class JobController(Controller):
    path = "/v1/jobs"
    tags = ["jobs"]

    @post("/", guards=[residents_only], status_code=201)
    async def create(
        self,
        data: JSONBody[JobCreate],
        request: Request[Any, Any, Any],
        jobs: NamedDependency[JobService],
        idempotency_key: Annotated[
            str | None, HeaderParameter(name="Idempotency-Key", required=False)
        ] = None,
    ) -> Response[JobOut]:
        """Post a job. A retry with the same Idempotency-Key and body replays the first answer."""
        who = principal_of(request)
        key = idempotency.check_key(idempotency_key)
        print_ = idempotency.fingerprint("POST", request.url.path, await request.body())
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
            duration_min=data.duration_min,
            worker_id=data.worker_id,
        )
        status, body = await jobs.post(who, new, key, print_, _posted)
        return Response(content=body, status_code=status, media_type="application/json")

    @get("/{job_id:int}")
    async def read(
        self,
        job_id: FromPath[int],
        request: Request[Any, Any, Any],
        jobs: NamedDependency[JobService],
    ) -> JobOut:
        who = principal_of(request)
        return job_view_out(await jobs.read(who, job_id))

    @get("/")
    async def mine(
        self,
        request: Request[Any, Any, Any],
        jobs: NamedDependency[JobService],
        limit: Annotated[int, QueryParameter(ge=1, le=200)] = 50,
    ) -> list[JobOut]:
        """The caller's jobs: posted (resident), taken (worker), or in their communities (ops)."""
        who = principal_of(request)
        return [job_view_out(v) for v in await jobs.mine(who, limit)]

    @post("/{job_id:int}/cancel", status_code=200)
    async def cancel(
        self,
        job_id: FromPath[int],
        data: JSONBody[CancelIn],
        request: Request[Any, Any, Any],
        dispatcher: NamedDependency[Dispatcher],
    ) -> JobOut:
        """Cancel: the resident (a fee applies once a worker has been on it a while) or the
        assigned worker with its `assignment_version` (the job goes back out to others)."""
        who = principal_of(request)
        view = await dispatcher.cancel(who, job_id, data.reason, data.assignment_version)
        return job_view_out(view)

    @post("/{job_id:int}/complete", guards=[workers_only], status_code=200)
    async def complete(
        self,
        job_id: FromPath[int],
        data: JSONBody[CompleteIn],
        request: Request[Any, Any, Any],
        dispatcher: NamedDependency[Dispatcher],
    ) -> JobOut:
        """The assigned worker marks the job done (fenced by `assignment_version`)."""
        who = principal_of(request)
        materials = msgspec.to_builtins(data.materials) if data.materials else None
        return job_view_out(
            await dispatcher.complete(who, job_id, data.assignment_version, materials)
        )


def _posted(job: Job, offered: int) -> bytes:
    """The answer to a job just posted (stored with its Idempotency-Key): it has no offers but
    its first wave's."""
    return msgspec.json.encode(job_out(job, OffersSummary(wave=job.wave, pending=offered)))
