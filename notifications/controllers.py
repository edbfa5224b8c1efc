"""HTTP surface of notifications: the telephony webhooks (signed by the provider, no bearer
token), Web Push subscriptions, the masked-number pool and in-app job messages. Each handler
translates HTTP to a call of `notifications.service.Notifications`' parts and back."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from litestar import Request, Response, delete, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, JSONBody, QueryParameter
from msgspec import Meta, Struct

from dispatch.core.errors import Forbidden, NotFound
from dispatch.identity.auth import admin_only, workers_only
from dispatch.infra.logs import log
from dispatch.web.deps import principal_of
from dispatch.web.schemas import VISIBLE_TEXT, Id, Phone, Timestamp
from notifications.models import JobMessage
from notifications.service import Notifications


def _notifications(state: State) -> Notifications:
    return state.notifications  # type: ignore[no-any-return]


DEPENDENCIES = {"notifications": Provide(_notifications, sync_to_thread=False)}
"""What the app gives these handlers by injection (merged into the app's own)."""


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
async def telephony_voice(
    request: Request[Any, Any, Any], notifications: NamedDependency[Notifications]
) -> Response[str]:
    """A call to a proxy number: bridge it to the other participant of the caller's session
    (showing the proxy number), or refuse politely. A replayed webhook answers the same and
    records nothing twice."""
    params = await _signed_params(request, notifications)
    return _markup(notifications, await notifications.webhooks.call(params))


@post(
    "/v1/telephony/sms",
    exclude_from_auth=True,
    status_code=200,
    media_type="application/xml",
    tags=["telephony"],
)
async def telephony_sms(
    request: Request[Any, Any, Any], notifications: NamedDependency[Notifications]
) -> Response[str]:
    """A text to a proxy number: relayed to the other participant from the same proxy number
    (through the outbox, once per provider message id), or a polite refusal to the sender."""
    params = await _signed_params(request, notifications)
    return _markup(notifications, await notifications.webhooks.text(params))


@post(
    "/v1/telephony/checkin",
    exclude_from_auth=True,
    status_code=200,
    media_type="application/xml",
    tags=["telephony"],
)
async def telephony_checkin(
    request: Request[Any, Any, Any],
    notifications: NamedDependency[Notifications],
    job_id: Annotated[int, QueryParameter(ge=1, le=2**63 - 1)],
    av: Annotated[int, QueryParameter(ge=1, le=2**31 - 1)],
) -> Response[str]:
    """The automated safety call's `<Gather>` answer (the job and its assignment version are in
    the URL the provider signed): the digit 1 is a check-in by the job's worker and stops the
    ladder. Forged or unsigned → 403 and nothing recorded."""
    params = await _signed_params(request, notifications)
    return _markup(notifications, await notifications.webhooks.keypress(params, job_id, av))


@post("/v1/telephony/status", exclude_from_auth=True, status_code=204, tags=["telephony"])
async def telephony_status(
    request: Request[Any, Any, Any], notifications: NamedDependency[Notifications]
) -> None:
    """Delivery and call status callbacks. A status only moves forward: a late `sent` after
    `delivered` changes nothing, whatever order the callbacks come in."""
    params = await _signed_params(request, notifications)
    await notifications.webhooks.receipt(params)


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
    created_at: Timestamp
    last_ok_at: Timestamp | None


def _subscription_out(s: Any) -> PushSubscriptionOut:
    return PushSubscriptionOut(s.id, s.endpoint, s.created_at, s.last_ok_at)


class VapidKeyOut(Struct):
    key: str
    """The VAPID public key, base64url (an uncompressed P-256 point), for
    `PushManager.subscribe({applicationServerKey})`."""


@get("/v1/push/vapid-public-key", exclude_from_auth=True, tags=["workers"])
async def vapid_public_key(notifications: NamedDependency[Notifications]) -> VapidKeyOut:
    """The key browsers subscribe to this service's Web Push with; 404 `push_disabled` when
    no VAPID key is configured (then offers come in the app and by SMS only)."""
    if notifications.pusher is None:
        raise NotFound("Web Push is not configured on this service", code="push_disabled")
    return VapidKeyOut(notifications.pusher.public_key)


@post("/v1/workers/me/push-subscriptions", guards=[workers_only], status_code=201, tags=["workers"])
async def add_push_subscription(
    data: JSONBody[PushSubscriptionIn],
    request: Request[Any, Any, Any],
    notifications: NamedDependency[Notifications],
) -> PushSubscriptionOut:
    """Register this device's Web Push subscription (the browser's `PushSubscription.toJSON()`).
    Registering an endpoint again refreshes its keys; an endpoint moves to whoever registers it."""
    who = principal_of(request)
    sub = await notifications.subscriptions.register(
        who.user_id, data.endpoint, data.keys.p256dh, data.keys.auth
    )
    return _subscription_out(sub)


@get("/v1/workers/me/push-subscriptions", guards=[workers_only], tags=["workers"])
async def list_push_subscriptions(
    request: Request[Any, Any, Any], notifications: NamedDependency[Notifications]
) -> list[PushSubscriptionOut]:
    who = principal_of(request)
    return [_subscription_out(s) for s in await notifications.subscriptions.of(who.user_id)]


@delete("/v1/workers/me/push-subscriptions", guards=[workers_only], tags=["workers"])
async def remove_push_subscription(
    request: Request[Any, Any, Any],
    notifications: NamedDependency[Notifications],
    endpoint: Annotated[str, QueryParameter(min_length=10, max_length=2048)],
) -> None:
    """Forget one of the caller's subscriptions (say, on sign-out)."""
    who = principal_of(request)
    await notifications.subscriptions.forget(who.user_id, endpoint)


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


@post(
    "/v1/communities/{community_id:int}/proxy-numbers",
    guards=[admin_only],
    status_code=201,
    tags=["communities"],
)
async def add_proxy_numbers(
    community_id: FromPath[Id],
    data: JSONBody[ProxyNumbersIn],
    notifications: NamedDependency[Notifications],
) -> ProxyPoolOut:
    """Add the provider numbers to the community's masked-number pool (idempotent per number).
    A number already in another community's pool → 409 `proxy_number_taken`; a registered
    user's own number → 409 `proxy_number_is_a_user`. National numbers are read in the
    community's country."""
    added, total = await notifications.pool.add(community_id, list(data.numbers))
    return ProxyPoolOut(community_id=community_id, added=added, total=total)


@get("/v1/communities/{community_id:int}/proxy-numbers", guards=[admin_only], tags=["communities"])
async def list_proxy_numbers(
    community_id: FromPath[Id], notifications: NamedDependency[Notifications]
) -> list[ProxyNumberOut]:
    """The pool with how many participants hold each number now."""
    return [
        ProxyNumberOut(number=n, active=a, holders=h)
        for n, a, h in await notifications.pool.numbers(community_id)
    ]


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


@post("/v1/jobs/{job_id:int}/messages", status_code=201, tags=["jobs"])
async def post_job_message(
    job_id: FromPath[int],
    data: JSONBody[JobMessageIn],
    request: Request[Any, Any, Any],
    notifications: NamedDependency[Notifications],
) -> JobMessageOut:
    """Write to the other participant of a job in the app (works with or without a masked
    number). Phone numbers in the text are hidden: contact goes through the platform."""
    who = principal_of(request)
    return _message_out(await notifications.messages.write(who, job_id, data.text))


@get("/v1/jobs/{job_id:int}/messages", tags=["jobs"])
async def list_job_messages(
    job_id: FromPath[int],
    request: Request[Any, Any, Any],
    notifications: NamedDependency[Notifications],
    after_id: Annotated[int, QueryParameter(ge=0, le=2**63 - 1)] = 0,
    limit: Annotated[int, QueryParameter(ge=1, le=200)] = 100,
) -> list[JobMessageOut]:
    """The job's conversation, oldest first (participants and the community's operators)."""
    who = principal_of(request)
    found = await notifications.messages.conversation(who, job_id, after_id, limit)
    return [_message_out(m) for m in found]


ROUTES = [
    telephony_voice,
    telephony_sms,
    telephony_checkin,
    telephony_status,
    vapid_public_key,
    add_push_subscription,
    list_push_subscriptions,
    remove_push_subscription,
    add_proxy_numbers,
    list_proxy_numbers,
    post_job_message,
    list_job_messages,
]

__all__ = ["DEPENDENCIES", "ROUTES"]
