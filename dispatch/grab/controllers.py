"""Offers: a worker's pending offers, accepting (exactly one winner) and declining."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Request, Response, get, post
from litestar.params import FromPath, HeaderParameter

from dispatch.core.errors import DomainError
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
async def my_offers(request: Request[Any, Any, Any], dispatcher: Dispatcher) -> list[OfferOut]:
    """Offers waiting for this worker's answer, soonest to expire first."""
    who = principal_of(request)
    return await dispatcher.offers_for(who.user_id)


@post("/v1/offers/{offer_id:int}/accept", guards=[workers_only], status_code=200, tags=["offers"])
async def accept_offer(
    offer_id: FromPath[int],
    request: Request[Any, Any, Any],
    dispatcher: Dispatcher,
    idempotency_key: Annotated[
        str | None, HeaderParameter(name="Idempotency-Key", required=False)
    ] = None,
) -> Response[JobOut]:
    """Take the job. 200 with the job (now `assigned`) for the one winner; 409 `already_taken`
    for everyone else; 410 `offer_expired` when too late; 403 `not_your_offer`."""
    answer = AcceptAnswer(render=_taken)
    if idempotency_key is not None:
        # The claim itself is idempotent (a winner's retry gets the job again); the key makes a
        # retried request replay byte-for-byte and refuses the key's reuse for another offer.
        print_ = idempotency.fingerprint("POST", request.url.path, b"")
        answer = AcceptAnswer(_taken, idempotency.check_key(idempotency_key), print_)
    try:
        status, body = await dispatcher.accept(principal_of(request), offer_id, answer)
    except DomainError as exc:
        # The losers of a race are most of its requests: answer them here, as the app's
        # handler would, rather than unwinding through the exception middleware.
        return domain_error(request, exc)
    return Response(content=body, status_code=status, media_type="application/json")


def _taken(view: JobView) -> bytes:
    return msgspec.json.encode(job_view_out(view))


@post("/v1/offers/{offer_id:int}/decline", guards=[workers_only], status_code=204, tags=["offers"])
async def decline_offer(
    offer_id: FromPath[int], request: Request[Any, Any, Any], dispatcher: Dispatcher
) -> None:
    """Say no. When everyone in a wave has said no, the next wave goes out at once."""
    who = principal_of(request)
    await dispatcher.decline(who, offer_id)
