"""Offers: a worker's pending offers, accepting (exactly one winner) and declining; the jobs
board: open jobs near the worker, and taking one (the same claim as an accept)."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, HeaderParameter, QueryParameter

from dispatch.core.errors import DomainError
from dispatch.grab.board import (
    DEFAULT_RADIUS_M,
    MAX_RADIUS_M,
    MIN_RADIUS_M,
    Board,
    BoardJobOut,
    board_out,
)
from dispatch.grab.dispatcher import AcceptAnswer, Dispatcher
from dispatch.grab.events import OfferOut
from dispatch.identity.auth import workers_only
from dispatch.infra import idempotency
from dispatch.jobs.queries import JobView
from dispatch.jobs.views import job_view_out
from dispatch.web.deps import principal_of
from dispatch.web.errors import domain_error
from dispatch.web.schemas import JobOut


@get("/v1/workers/me/offers", guards=[workers_only], tags=["offers"])
async def my_offers(
    request: Request[Any, Any, Any], dispatcher: NamedDependency[Dispatcher]
) -> list[OfferOut]:
    """Offers waiting for this worker's answer, soonest to expire first."""
    who = principal_of(request)
    return await dispatcher.offers_for(who.user_id)


@post("/v1/offers/{offer_id:int}/accept", guards=[workers_only], status_code=200, tags=["offers"])
async def accept_offer(
    offer_id: FromPath[int],
    request: Request[Any, Any, Any],
    dispatcher: NamedDependency[Dispatcher],
    idempotency_key: Annotated[
        str | None, HeaderParameter(name="Idempotency-Key", required=False)
    ] = None,
) -> Response[JobOut]:
    """Take the job. 200 with the job (now `assigned`) for the one winner; 409 `already_taken`
    for everyone else; 410 `offer_expired` when too late; 403 `not_your_offer`."""
    answer = _answer(request, idempotency_key)
    try:
        status, body = await dispatcher.accept(principal_of(request), offer_id, answer)
    except DomainError as exc:
        # The losers of a race are most of its requests: answer them here, as the app's
        # handler would, rather than unwinding through the exception middleware.
        return domain_error(request, exc)
    return Response(content=body, status_code=status, media_type="application/json")


def _taken(view: JobView) -> bytes:
    return msgspec.json.encode(job_view_out(view))


def _answer(request: Request[Any, Any, Any], idempotency_key: str | None) -> AcceptAnswer:
    if idempotency_key is None:
        return AcceptAnswer(render=_taken)
    # The claim itself is idempotent (a winner's retry gets the job again); the key makes a
    # retried request replay byte-for-byte and refuses the key's reuse for another call.
    print_ = idempotency.fingerprint("POST", request.url.path, b"")
    return AcceptAnswer(_taken, idempotency.check_key(idempotency_key), print_)


@get("/v1/workers/me/jobs-nearby", guards=[workers_only], tags=["offers"])
async def jobs_nearby(
    request: Request[Any, Any, Any],
    board: NamedDependency[Board],
    radius_m: Annotated[int, QueryParameter(ge=MIN_RADIUS_M, le=MAX_RADIUS_M)] = DEFAULT_RADIUS_M,
    skill: Annotated[
        str | None, QueryParameter(min_length=1, max_length=40, pattern=r"^[\w\-]+$")
    ] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=100)] = 50,
) -> list[BoardJobOut]:
    """Open jobs within `radius_m` of this worker's last position that they may take (verified,
    online, a fresh position, the community's, every skill the job needs; `skill`: only jobs
    needing it), nearest first (to 100 m), then the better fit. Each at its neighbourhood (an
    H3 res-8 cell's centre), never the address; the pay itemized. Take one with
    `POST /v1/jobs/{id}/take`."""
    found = await board.nearby(principal_of(request), radius_m=radius_m, skill=skill, limit=limit)
    return [board_out(b) for b in found]


@post("/v1/jobs/{job_id:int}/take", guards=[workers_only], status_code=200, tags=["offers"])
async def take_job(
    job_id: FromPath[int],
    request: Request[Any, Any, Any],
    board: NamedDependency[Board],
    idempotency_key: Annotated[
        str | None, HeaderParameter(name="Idempotency-Key", required=False)
    ] = None,
) -> Response[JobOut]:
    """Take an open job from the board: the same claim as accepting an offer. 200 with the job
    (now `assigned`) for the one winner, its address and the masked number with it; 409
    `already_taken` for everyone else (wave offerees too), `job_not_open`, or an anti-bot
    refusal; 403 `not_eligible` saying why; 404 `job_not_found`."""
    try:
        status, body = await board.take(
            principal_of(request), job_id, _answer(request, idempotency_key)
        )
    except DomainError as exc:
        return domain_error(request, exc)
    return Response(content=body, status_code=status, media_type="application/json")


@post("/v1/offers/{offer_id:int}/decline", guards=[workers_only], status_code=204, tags=["offers"])
async def decline_offer(
    offer_id: FromPath[int],
    request: Request[Any, Any, Any],
    dispatcher: NamedDependency[Dispatcher],
) -> None:
    """Say no. When everyone in a wave has said no, the next wave goes out at once."""
    who = principal_of(request)
    await dispatcher.decline(who, offer_id)
