"""HTTP surface of notifications: the telephony webhooks (signed by the provider, no bearer
token), Web Push subscriptions, the masked-number pool and in-app job messages."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from litestar import Request, Response, delete, get, post
from litestar.datastructures import State
from litestar.params import FromPath, JSONBody, QueryParameter
from msgspec import Meta, Struct
from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert

from dispatch.core.errors import Conflict, DomainError, Forbidden, NotFound, ValidationFailed
from dispatch.identity.auth import admin_only, workers_only
from dispatch.identity.phones import hide_phones, normalize_phone
from dispatch.infra import outbox, ratelimit
from dispatch.infra.logs import log
from dispatch.models import (
    CallRecord,
    Community,
    Job,
    JobMessage,
    OutboxMessage,
    ProxyHold,
    ProxyNumber,
    PushSubscription,
    User,
)
from dispatch.web.deps import principal_of, runtime_of
from dispatch.web.schemas import VISIBLE_TEXT, Id, Phone
from notifications.provider import CALL_RANK, MESSAGE_RANK
from notifications.push import check_subscription
from notifications.service import Notifications

REFUSAL_CALL = (
    "Sorry, this number is not connected to an active job. "
    "Please open the app to reach your helper or our support team. Goodbye."
)
REFUSAL_TEXT = (
    "This number is not connected to an active job, so your message was not passed on. "
    "Please use the app to reach your helper or support."
)
RELAY_LIMIT = ratelimit.Limit("relay-sms", 30, 3600)
"""Texts one participant may relay through proxy numbers per hour."""


def notifications_of(state: State) -> Notifications:
    return state.notifications  # type: ignore[no-any-return]


# --- telephony webhooks -----------------------------------------------------------------------


async def _signed_params(request: Request[Any, Any, Any], n: Notifications) -> dict[str, str]:
    """The webhook's form parameters, if the provider signed this exact URL and body; else 403
    before anything is read or written."""
    form = await request.form()
    params = {k: v for k, v in form.multi_items() if isinstance(v, str)}
    url = n.rt.settings.public_base_url.rstrip("/") + request.url.path
    if request.url.query:
        url += "?" + request.url.query
    if not n.provider.verify_webhook(url, params, request.headers):
        log.warning("webhook_signature_rejected", path=request.url.path)
        raise Forbidden("the webhook signature does not match", code="invalid_signature")
    return params


def _markup(n: Notifications, body: str) -> Response[str]:
    return Response(content=body, media_type=n.provider.webhook_media_type, status_code=200)


@post(
    "/v1/telephony/voice",
    exclude_from_auth=True,
    status_code=200,
    media_type="application/xml",
    tags=["telephony"],
)
async def telephony_voice(request: Request[Any, Any, Any], state: State) -> Response[str]:
    """A call to a proxy number: bridge it to the other participant of the caller's session
    (showing the proxy number), or refuse politely. A replayed webhook answers the same and
    records nothing twice."""
    n = notifications_of(state)
    params = await _signed_params(request, n)
    call = n.provider.parse_call(params)
    if call is None:
        raise ValidationFailed("From, To and CallSid are required", code="invalid_webhook")
    now = datetime.now(UTC)
    status = (params.get("CallStatus") or "ringing").lower()
    async with n.rt.sessions.begin() as session:
        route = await n.proxies.route(session, call.proxy, call.caller, now)
        dialed = route is not None and route.other_phone is not None
        await session.execute(
            insert(CallRecord)
            .values(
                call_sid=call.ref[:64],
                session_id=route.session_id if route else None,
                caller_id=route.caller_id if route else None,
                outcome="dialed" if dialed else "refused",
                status=status[:20],
                status_rank=CALL_RANK.get(status, 0),
                created_at=now,
                updated_at=now,
            )
            .on_conflict_do_nothing(index_elements=[CallRecord.call_sid])
        )
    if route is None or route.other_phone is None:
        return _markup(n, n.provider.refuse_call(REFUSAL_CALL))
    log.info("call_relayed", session_id=route.session_id, job_id=route.job_id)
    return _markup(n, n.provider.connect_call(route.proxy, route.other_phone))


@post(
    "/v1/telephony/sms",
    exclude_from_auth=True,
    status_code=200,
    media_type="application/xml",
    tags=["telephony"],
)
async def telephony_sms(request: Request[Any, Any, Any], state: State) -> Response[str]:
    """A text to a proxy number: relayed to the other participant from the same proxy number
    (through the outbox, once per provider message id), or a polite refusal to the sender."""
    n = notifications_of(state)
    params = await _signed_params(request, n)
    inbound = n.provider.parse_text(params)
    if inbound is None:
        raise ValidationFailed("From, To and MessageSid are required", code="invalid_webhook")
    rt = n.rt
    now = datetime.now(UTC)
    async with rt.sessions.begin() as session:
        route = await n.proxies.route(session, inbound.proxy, inbound.sender, now)
        if route is None or route.other_phone is None:
            return _markup(n, n.provider.reply_text(REFUSAL_TEXT))
        try:
            await ratelimit.hit(rt.redis, RELAY_LIMIT, f"{route.session_id}:{route.caller_id}")
            if n.provider.can_send:
                await rt.sms_budget.check(now)
        except DomainError as exc:
            log.warning("relay_text_dropped", session_id=route.session_id, reason=exc.code)
            return _markup(n, n.provider.reply_text(None))
        # Texting through a masked number must not hand over a real one either.
        body = hide_phones(inbound.text.strip()[:1200], rt.settings.phone_region)
        body = body or "(empty message)"
        await outbox.enqueue(
            session,
            outbox.Outgoing(
                channel="sms",
                kind="relay",
                to_user_id=route.other_id,
                phone=outbox.Recipient.of(rt.vault, route.other_phone),
                from_number=route.proxy,
                body=body,
                payload={"job_id": route.job_id, "session_id": route.session_id},
                status="pending" if n.provider.can_send else "held",
                dedupe_key=f"relay:{inbound.ref[:150]}",
            ),
            now,
        )
    n.relay.poke()
    return _markup(n, n.provider.reply_text(None))


@post("/v1/telephony/status", exclude_from_auth=True, status_code=204, tags=["telephony"])
async def telephony_status(request: Request[Any, Any, Any], state: State) -> None:
    """Delivery and call status callbacks. A status only moves forward: a late `sent` after
    `delivered` changes nothing, whatever order the callbacks come in."""
    n = notifications_of(state)
    params = await _signed_params(request, n)
    receipt = n.provider.parse_receipt(params)
    if receipt is None:
        raise ValidationFailed("no message or call status in the callback", code="invalid_webhook")
    now = datetime.now(UTC)
    async with n.rt.sessions.begin() as session:
        if receipt.kind == "message":
            rank = MESSAGE_RANK.get(receipt.status)
            if rank is None:
                return
            mapped = _OUTBOX_STATUS.get(receipt.status)
            await session.execute(
                update(OutboxMessage)
                .where(
                    OutboxMessage.provider_ref == receipt.ref,
                    OutboxMessage.provider_rank < rank,
                )
                .values(
                    provider_status=receipt.status,
                    provider_rank=rank,
                    status=OutboxMessage.status if mapped is None else mapped,
                    last_error=f"provider error {receipt.error_code}"
                    if receipt.error_code
                    else OutboxMessage.last_error,
                    updated_at=now,
                )
            )
        else:
            rank = CALL_RANK.get(receipt.status)
            if rank is None:
                return
            await session.execute(
                update(CallRecord)
                .where(CallRecord.call_sid == receipt.ref, CallRecord.status_rank < rank)
                .values(
                    status=receipt.status,
                    status_rank=rank,
                    duration_s=receipt.duration_s,
                    updated_at=now,
                )
            )


_OUTBOX_STATUS = {
    "sent": "sent",
    "delivered": "delivered",
    "read": "delivered",
    "undelivered": "undelivered",
    "failed": "undelivered",
    "canceled": "undelivered",
}


# --- Web Push subscriptions ----------------------------------------------------------------------


class PushKeys(Struct, forbid_unknown_fields=True):
    p256dh: Annotated[str, Meta(min_length=80, max_length=100, pattern=r"^[A-Za-z0-9_\-=]+$")]
    auth: Annotated[str, Meta(min_length=16, max_length=40, pattern=r"^[A-Za-z0-9_\-=]+$")]


class PushSubscriptionIn(Struct, forbid_unknown_fields=True):
    endpoint: Annotated[str, Meta(min_length=10, max_length=2048, pattern=r"^https?://\S+$")]
    keys: PushKeys
    expirationTime: int | None = None


class PushSubscriptionOut(Struct):
    id: int
    endpoint: str
    created_at: datetime
    last_ok_at: datetime | None


@post("/v1/workers/me/push-subscriptions", guards=[workers_only], status_code=201, tags=["workers"])
async def add_push_subscription(
    data: JSONBody[PushSubscriptionIn], request: Request[Any, Any, Any], state: State
) -> PushSubscriptionOut:
    """Register this device's Web Push subscription (the browser's `PushSubscription.toJSON()`).
    Registering an endpoint again refreshes its keys; an endpoint moves to whoever registers it."""
    rt = runtime_of(state)
    who = principal_of(request)
    check_subscription(
        data.endpoint,
        data.keys.p256dh,
        data.keys.auth,
        allow_http=rt.settings.push_allow_http,
        allowed_hosts=rt.settings.egress_allowed_hosts,
    )
    now = datetime.now(UTC)
    stmt = insert(PushSubscription).values(
        user_id=who.user_id,
        endpoint=data.endpoint,
        p256dh=data.keys.p256dh.rstrip("="),
        auth=data.keys.auth.rstrip("="),
        created_at=now,
        failures=0,
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=[PushSubscription.endpoint],
        set_={
            "user_id": stmt.excluded.user_id,
            "p256dh": stmt.excluded.p256dh,
            "auth": stmt.excluded.auth,
            "failures": 0,
        },
    ).returning(PushSubscription)
    async with rt.sessions.begin() as session:
        sub = (await session.execute(stmt)).scalar_one()
        return PushSubscriptionOut(sub.id, sub.endpoint, sub.created_at, sub.last_ok_at)


@get("/v1/workers/me/push-subscriptions", guards=[workers_only], tags=["workers"])
async def list_push_subscriptions(
    request: Request[Any, Any, Any], state: State
) -> list[PushSubscriptionOut]:
    rt = runtime_of(state)
    who = principal_of(request)
    async with rt.sessions() as session:
        rows = await session.scalars(
            select(PushSubscription)
            .where(PushSubscription.user_id == who.user_id)
            .order_by(PushSubscription.id)
        )
        return [PushSubscriptionOut(s.id, s.endpoint, s.created_at, s.last_ok_at) for s in rows]


@delete("/v1/workers/me/push-subscriptions", guards=[workers_only], tags=["workers"])
async def remove_push_subscription(
    request: Request[Any, Any, Any],
    state: State,
    endpoint: Annotated[str, QueryParameter(min_length=10, max_length=2048)],
) -> None:
    """Forget one of the caller's subscriptions (say, on sign-out)."""
    rt = runtime_of(state)
    who = principal_of(request)
    async with rt.sessions.begin() as session:
        gone = await session.execute(
            PushSubscription.__table__.delete().where(
                PushSubscription.user_id == who.user_id, PushSubscription.endpoint == endpoint
            )
        )
    if not gone.rowcount:
        raise NotFound("no such subscription of yours", code="subscription_not_found")


# --- the masked-number pool ----------------------------------------------------------------------


class ProxyNumbersIn(Struct, forbid_unknown_fields=True):
    numbers: Annotated[list[Phone], Meta(min_length=1, max_length=500)]


class ProxyPoolOut(Struct):
    community_id: int
    added: int
    total: int


class ProxyNumberOut(Struct):
    number: str
    active: bool
    holders: int
    """Participants currently holding it (two per live session)."""


async def _community_exists(session: Any, community_id: int) -> None:
    if await session.get(Community, community_id) is None:
        raise NotFound(f"community {community_id} does not exist", code="community_not_found")


@post(
    "/v1/communities/{community_id:int}/proxy-numbers",
    guards=[admin_only],
    status_code=201,
    tags=["communities"],
)
async def add_proxy_numbers(
    community_id: FromPath[Id], data: JSONBody[ProxyNumbersIn], state: State
) -> ProxyPoolOut:
    """Add the provider numbers to the community's masked-number pool (idempotent per number).
    A number already in another community's pool → 409 `proxy_number_taken`; a registered
    user's own number → 409 `proxy_number_is_a_user`. National numbers are read in the
    community's country."""
    rt = runtime_of(state)
    now = datetime.now(UTC)
    async with rt.sessions.begin() as session:
        view = await rt.communities.get(session, community_id)
        numbers = sorted({normalize_phone(x, view.phone_region) for x in data.numbers})
        people = await session.scalar(
            select(func.count())
            .select_from(User)
            .where(User.phone_hash.in_([rt.vault.hash(x) for x in numbers]))
        )
        if people:
            raise Conflict(
                f"{people} of these numbers belong to registered users; a masked number must "
                "be the service's own",
                code="proxy_number_is_a_user",
            )
        elsewhere = (
            await session.scalars(
                select(ProxyNumber.number).where(
                    ProxyNumber.number.in_(numbers), ProxyNumber.community_id != community_id
                )
            )
        ).all()
        if elsewhere:
            raise Conflict(
                f"{len(elsewhere)} of these numbers serve another community",
                code="proxy_number_taken",
            )
        added = await session.execute(
            insert(ProxyNumber)
            .values(
                [
                    {"community_id": community_id, "number": x, "active": True, "created_at": now}
                    for x in numbers
                ]
            )
            .on_conflict_do_nothing(index_elements=[ProxyNumber.number])
            .returning(ProxyNumber.id)
        )
        count = len(added.all())
        total = await session.scalar(
            select(func.count()).where(ProxyNumber.community_id == community_id)
        )
    return ProxyPoolOut(community_id=community_id, added=count, total=int(total or 0))


@get("/v1/communities/{community_id:int}/proxy-numbers", guards=[admin_only], tags=["communities"])
async def list_proxy_numbers(community_id: FromPath[Id], state: State) -> list[ProxyNumberOut]:
    """The pool with how many participants hold each number now."""
    rt = runtime_of(state)
    holders = (
        select(func.count())
        .where(ProxyHold.proxy_number_id == ProxyNumber.id, ProxyHold.active.is_(True))
        .scalar_subquery()
    )
    async with rt.sessions() as session:
        await _community_exists(session, community_id)
        rows = await session.execute(
            select(ProxyNumber.number, ProxyNumber.active, holders)
            .where(ProxyNumber.community_id == community_id)
            .order_by(ProxyNumber.number)
        )
        return [ProxyNumberOut(number=a, active=b, holders=int(c)) for a, b, c in rows]


# --- in-app job messages -------------------------------------------------------------------------


class JobMessageIn(Struct, forbid_unknown_fields=True):
    text: Annotated[str, Meta(min_length=1, max_length=1000, pattern=VISIBLE_TEXT)]


class JobMessageOut(Struct):
    id: int
    job_id: int
    sender_id: int
    recipient_id: int
    text: str
    created_at: datetime


def _message_out(m: JobMessage) -> JobMessageOut:
    return JobMessageOut(m.id, m.job_id, m.sender_id, m.recipient_id, m.text, m.created_at)


MESSAGE_LIMIT = ratelimit.Limit("job-message", 60, 600)


@post("/v1/jobs/{job_id:int}/messages", status_code=201, tags=["jobs"])
async def post_job_message(
    job_id: FromPath[int],
    data: JSONBody[JobMessageIn],
    request: Request[Any, Any, Any],
    state: State,
) -> JobMessageOut:
    """Write to the other participant of a job in the app (works with or without a masked
    number). Phone numbers in the text are hidden: contact goes through the platform."""
    n = notifications_of(state)
    rt = n.rt
    who = principal_of(request)
    await ratelimit.hit(rt.redis, MESSAGE_LIMIT, str(who.user_id))
    now = datetime.now(UTC)
    async with rt.sessions.begin() as session:
        job = await rt.jobs.get_visible(session, who, job_id)
        if who.user_id == job.resident_id:
            recipient = job.worker_id
        elif who.user_id == job.worker_id:
            recipient = job.resident_id
        else:
            raise Forbidden("only the job's resident and worker write here", code="not_yours")
        if recipient is None:
            raise Conflict("nobody has taken this job yet", code="no_counterpart")
        region = (await rt.communities.get(session, job.community_id)).phone_region
        text = hide_phones(data.text.strip(), region)
        message = JobMessage(
            job_id=job.id, sender_id=who.user_id, recipient_id=recipient, text=text, created_at=now
        )
        session.add(message)
        await session.flush()
        out = _message_out(message)
        await outbox.enqueue(
            session,
            outbox.Outgoing(
                channel="app",
                kind="message",
                to_user_id=recipient,
                body=f"New message about “{job.title}”: {text}"[:1500],
                payload={
                    "type": "job_message",
                    "job_id": job.id,
                    "message_id": message.id,
                    "sender_id": who.user_id,
                    "text": text,
                },
                dedupe_key=f"message:{message.id}",
            ),
            now,
        )
    n.relay.poke()
    return out


@get("/v1/jobs/{job_id:int}/messages", tags=["jobs"])
async def list_job_messages(
    job_id: FromPath[int],
    request: Request[Any, Any, Any],
    state: State,
    after_id: Annotated[int, QueryParameter(ge=0, le=2**63 - 1)] = 0,
    limit: Annotated[int, QueryParameter(ge=1, le=200)] = 100,
) -> list[JobMessageOut]:
    """The job's conversation, oldest first (participants and the community's operators)."""
    rt = runtime_of(state)
    who = principal_of(request)
    async with rt.sessions() as session:
        job: Job = await rt.jobs.get_visible(session, who, job_id)
        rows = await session.scalars(
            select(JobMessage)
            .where(JobMessage.job_id == job.id, JobMessage.id > after_id)
            .order_by(JobMessage.id)
            .limit(limit)
        )
        return [_message_out(m) for m in rows]


ROUTES = [
    telephony_voice,
    telephony_sms,
    telephony_status,
    add_push_subscription,
    list_push_subscriptions,
    remove_push_subscription,
    add_proxy_numbers,
    list_proxy_numbers,
    post_job_message,
    list_job_messages,
]

__all__ = ["ROUTES"]
