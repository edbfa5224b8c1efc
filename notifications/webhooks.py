"""What the phone provider's webhooks do, once their signature is checked: a call to a proxy
number is bridged or refused, a text is relayed through the outbox or refused, a receipt moves a
message's or a call's status forward. Each is one transaction; a replayed webhook answers the
same and records nothing twice."""

from __future__ import annotations

import functools
import unicodedata
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from dispatch.core import texts
from dispatch.core.errors import DomainError, ValidationFailed
from dispatch.grab.dispatcher import AcceptAnswer
from dispatch.identity.locale import locale_for_phone, spoken_locale
from dispatch.identity.principal import Principal
from dispatch.infra import outbox, ratelimit
from dispatch.infra.logs import log
from dispatch.jobs.queries import JobView
from dispatch.models import SPOKEN_LOCALE, Job, Offer, OutboxMessage, User
from dispatch.trust.screening import screen
from geo.shapes import wkb_to_latlng
from notifications.models import CallRecord
from notifications.provider import CALL_RANK, MESSAGE_RANK

if TYPE_CHECKING:
    from notifications.service import Notifications

RELAY_LIMIT = ratelimit.Limit("relay-sms", 30, 3600)
"""Texts one participant may relay through proxy numbers per hour."""
_OUTBOX_STATUS = {
    "sent": "sent",
    "delivered": "delivered",
    "read": "delivered",
    "undelivered": "undelivered",
    "failed": "undelivered",
    "canceled": "undelivered",
}


TAKE_WORDS = frozenset({"1", "接", "接单", "take", "yes"})
"""Replies to an offer text that take it (after trimming, full-width folded, any case)."""
TAKE_REFUSED = frozenset(
    {"already_taken", "offer_expired", "offer_withdrawn", "too_many_open_assignments",
     "accept_too_fast"}
)  # fmt: skip
"""Refusals of a take by text answered in their own words (`take.<code>`; else `take.failed`)."""


class _Dropped(Exception):
    """A relayed text over the sender's or the service's limit: rolls its outbox row back."""

    def __init__(self, session_id: int, code: str) -> None:
        super().__init__(code)
        self.session_id = session_id
        self.code = code


def is_take_reply(text: str) -> bool:
    return unicodedata.normalize("NFKC", text or "").strip().rstrip(".!。").lower() in TAKE_WORDS


class Webhooks:
    def __init__(self, notifications: Notifications) -> None:
        self.n = notifications

    async def _locale_of(self, session: AsyncSession, phone: str) -> str:
        """The language to answer a phone in: its account's, else its country's."""
        rt = self.n.rt
        chosen = await session.scalar(
            select(SPOKEN_LOCALE).where(User.phone_hash == rt.vault.hash(phone))
        )
        return chosen or locale_for_phone(phone, rt.settings.default_locale)

    async def call(self, params: dict[str, str]) -> str:
        """The markup that answers a call to a proxy number: bridge or spoken refusal."""
        n = self.n
        call = n.provider.parse_call(params)
        if call is None:
            raise ValidationFailed("From, To and CallSid are required", code="invalid_webhook")
        now = datetime.now(UTC)
        status = (params.get("CallStatus") or "ringing").lower()
        async with n.rt.sessions.begin() as session:
            route = await n.proxies.route(session, call.proxy, call.caller, now)
            dialed = route is not None and route.other_phone is not None
            locale = None if dialed else await self._locale_of(session, call.caller)
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
            return n.provider.refuse_call(texts.render("call.refused", locale), locale)
        log.info("call_relayed", session_id=route.session_id, job_id=route.job_id)
        return n.provider.connect_call(route.proxy, route.other_phone)

    async def text(self, params: dict[str, str]) -> str:
        """Relay a text to a proxy number (once per provider message id); the markup that
        answers the sender (a refusal when the number names no live session)."""
        n = self.n
        inbound = n.provider.parse_text(params)
        if inbound is None:
            raise ValidationFailed("From, To and MessageSid are required", code="invalid_webhook")
        rt = n.rt
        now = datetime.now(UTC)
        if is_take_reply(inbound.text):
            answer = await self.take_by_text(inbound.sender, inbound.proxy, now)
            if answer is not None:
                return n.provider.reply_text(answer)
        try:
            async with rt.sessions.begin() as session:
                route = await n.proxies.route(session, inbound.proxy, inbound.sender, now)
                if route is None or route.other_phone is None:
                    locale = await self._locale_of(session, inbound.sender)
                    return n.provider.reply_text(texts.render("text.refused", locale))
                # Texting through a masked number must not hand over a real one either.
                body = screen(inbound.text.strip()[:1200], rt.settings.phone_region).text
                added = await outbox.enqueue(
                    session,
                    outbox.Outgoing(
                        channel="sms",
                        kind="relay",
                        to_user_id=route.other_id,
                        phone=outbox.Recipient.of(rt.vault, route.other_phone),
                        from_number=route.proxy,
                        body=body or texts.every("text.empty"),
                        payload={"job_id": route.job_id, "session_id": route.session_id},
                        status="pending" if n.provider.can_send else "held",
                        dedupe_key=f"relay:{inbound.ref[:150]}",
                    ),
                    now,
                )
                if not added:
                    # A retry of a text relayed already (or by its twin at this moment, whose
                    # transaction this INSERT waited for at the dedupe key): it answers the
                    # same and does not count again against the sender's limit.
                    return n.provider.reply_text(None)
                # Counted only for a text seen for the first time; over a limit, the row goes
                # with the rolled-back transaction.
                try:
                    await ratelimit.hit(
                        rt.redis, RELAY_LIMIT, f"{route.session_id}:{route.caller_id}"
                    )
                    if n.provider.can_send:
                        await rt.sms_budget.check(now)
                except DomainError as exc:
                    raise _Dropped(route.session_id, exc.code) from exc
        except _Dropped as dropped:
            log.warning("relay_text_dropped", session_id=dropped.session_id, reason=dropped.code)
            return n.provider.reply_text(None)
        n.relay.poke()
        return n.provider.reply_text(None)

    async def take_by_text(self, sender: str, to: str, now: datetime) -> str | None:
        """A worker's "1" in reply to an offer text: their latest live grab offer is accepted
        through the same claim path as the app's (one winner; a replayed webhook wins or
        loses the same way again). The answer to text back; None when the sender is texting
        the other side of a job through this proxy number (then it is relayed as usual)."""
        rt = self.n.rt
        async with rt.sessions() as session:
            if await self.n.proxies.route(session, to, sender, now) is not None:
                return None
            user = await session.scalar(
                select(User).where(User.phone_hash == rt.vault.hash(sender))
            )
            locale = (
                spoken_locale(user.locale, user.default_locale)
                if user is not None
                else locale_for_phone(sender, rt.settings.default_locale)
            )
            if user is None or "worker" not in (user.roles or []):
                return texts.render("take.unknown", locale)
            offer_id = await session.scalar(
                select(Offer.id)
                .join(Job, Job.id == Offer.job_id)
                .where(
                    Offer.worker_id == user.id,
                    Offer.status == "pending",
                    Offer.expires_at > now,
                    Job.mode == "grab",
                )
                .order_by(Offer.created_at.desc(), Offer.id.desc())
                .limit(1)
            )
            if offer_id is None:
                return texts.render("take.nothing_open", locale)
        taken: list[JobView] = []

        def keep(view: JobView) -> bytes:
            taken.append(view)
            return b""

        who = Principal(user.id, "worker")
        try:
            await rt.dispatcher.accept(who, offer_id, AcceptAnswer(render=keep))
        except DomainError as exc:
            log.info("take_by_text_refused", offer_id=offer_id, code=exc.code)
            said = f"take.{exc.code}" if exc.code in TAKE_REFUSED else "take.failed"
            return texts.render(said, locale)
        (view,) = taken
        job = view.job
        lat, lng = wkb_to_latlng(job.location)
        where = job.address or texts.render("take.pin", locale, lat=f"{lat:.5f}", lng=f"{lng:.5f}")
        answer = texts.render("take.won", locale, title=job.title, where=where)
        if view.proxy_number:
            answer += texts.render("take.won_call", locale, number=view.proxy_number)
        log.info("taken_by_text", offer_id=offer_id, job_id=job.id)
        return answer

    async def keypress(self, params: dict[str, str], job_id: int, assignment_version: int) -> str:
        """The safety call's answer (the job and assignment are in the signed URL): the digit 1
        checks the worker in and stops the ladder; anything else leaves it climbing."""
        pressed = self.n.provider.parse_keypress(params)
        if pressed is None:
            raise ValidationFailed("CallSid is required", code="invalid_webhook")
        rt = self.n.rt
        counted = await rt.safety.checkin_by_call(job_id, assignment_version, pressed.digits)
        log.info("safety_call_answered", job_id=job_id, checked_in=counted)
        async with rt.sessions() as session:
            locale = await session.scalar(
                select(SPOKEN_LOCALE).join(Job, Job.worker_id == User.id).where(Job.id == job_id)
            )
        said = texts.render("checkin.call_safe" if counted else "checkin.call_not_safe", locale)
        return self.n.provider.refuse_call(said, locale)

    async def receipt(self, params: dict[str, str]) -> None:
        """A delivery or call status. A status only moves forward: a late `sent` after
        `delivered` changes nothing, whatever order the callbacks come in."""
        receipt = self.n.provider.parse_receipt(params)
        if receipt is None:
            raise ValidationFailed(
                "no message or call status in the callback", code="invalid_webhook"
            )
        now = datetime.now(UTC)
        if receipt.kind == "message":
            rank = MESSAGE_RANK.get(receipt.status)
            if rank is None:
                return
            mapped = _OUTBOX_STATUS.get(receipt.status)
            stmt = (
                update(OutboxMessage)
                .where(
                    OutboxMessage.provider_ref == receipt.ref, OutboxMessage.provider_rank < rank
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
            stmt = (
                update(CallRecord)
                .where(CallRecord.call_sid == receipt.ref, CallRecord.status_rank < rank)
                .values(
                    status=receipt.status,
                    status_rank=rank,
                    duration_s=receipt.duration_s,
                    updated_at=now,
                )
            )
        # One statement, atomic by itself: sent without BEGIN and COMMIT (two round trips and
        # most of the route's cost; status callbacks are most of the webhooks, bench/README.md).
        async with self._autocommit.connect() as conn:
            await conn.execute(stmt)

    @functools.cached_property
    def _autocommit(self) -> AsyncEngine:
        return self.n.rt.engine.execution_options(isolation_level="AUTOCOMMIT")
