"""What the phone provider's webhooks do, once their signature is checked: a call to a proxy
number is bridged or refused, a text is relayed through the outbox or refused, a receipt moves a
message's or a call's status forward. Each is one transaction; a replayed webhook answers the
same and records nothing twice."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy import update
from sqlalchemy.dialects.postgresql import insert

from dispatch.core.errors import DomainError, ValidationFailed
from dispatch.infra import outbox, ratelimit
from dispatch.infra.logs import log
from dispatch.models import OutboxMessage
from dispatch.trust.screening import screen
from notifications.models import CallRecord
from notifications.provider import CALL_RANK, MESSAGE_RANK

if TYPE_CHECKING:
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
_OUTBOX_STATUS = {
    "sent": "sent",
    "delivered": "delivered",
    "read": "delivered",
    "undelivered": "undelivered",
    "failed": "undelivered",
    "canceled": "undelivered",
}


CHECKED_IN = "Thank you. You are checked in. Stay safe. Goodbye."
NOT_CHECKED_IN = (
    "We did not get a 1, so you are not checked in. Please open the app, "
    "or our operators will try to reach you. Goodbye."
)


class Webhooks:
    def __init__(self, notifications: Notifications) -> None:
        self.n = notifications

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
            return n.provider.refuse_call(REFUSAL_CALL)
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
        async with rt.sessions.begin() as session:
            route = await n.proxies.route(session, inbound.proxy, inbound.sender, now)
            if route is None or route.other_phone is None:
                return n.provider.reply_text(REFUSAL_TEXT)
            try:
                await ratelimit.hit(rt.redis, RELAY_LIMIT, f"{route.session_id}:{route.caller_id}")
                if n.provider.can_send:
                    await rt.sms_budget.check(now)
            except DomainError as exc:
                log.warning("relay_text_dropped", session_id=route.session_id, reason=exc.code)
                return n.provider.reply_text(None)
            # Texting through a masked number must not hand over a real one either.
            body = screen(inbound.text.strip()[:1200], rt.settings.phone_region).text
            await outbox.enqueue(
                session,
                outbox.Outgoing(
                    channel="sms",
                    kind="relay",
                    to_user_id=route.other_id,
                    phone=outbox.Recipient.of(rt.vault, route.other_phone),
                    from_number=route.proxy,
                    body=body or "(empty message)",
                    payload={"job_id": route.job_id, "session_id": route.session_id},
                    status="pending" if n.provider.can_send else "held",
                    dedupe_key=f"relay:{inbound.ref[:150]}",
                ),
                now,
            )
        n.relay.poke()
        return n.provider.reply_text(None)

    async def keypress(self, params: dict[str, str], job_id: int, assignment_version: int) -> str:
        """The safety call's answer (the job and assignment are in the signed URL): the digit 1
        checks the worker in and stops the ladder; anything else leaves it climbing."""
        pressed = self.n.provider.parse_keypress(params)
        if pressed is None:
            raise ValidationFailed("CallSid is required", code="invalid_webhook")
        counted = await self.n.rt.safety.checkin_by_call(job_id, assignment_version, pressed.digits)
        log.info("safety_call_answered", job_id=job_id, checked_in=counted)
        return self.n.provider.refuse_call(CHECKED_IN if counted else NOT_CHECKED_IN)

    async def receipt(self, params: dict[str, str]) -> None:
        """A delivery or call status. A status only moves forward: a late `sent` after
        `delivered` changes nothing, whatever order the callbacks come in."""
        receipt = self.n.provider.parse_receipt(params)
        if receipt is None:
            raise ValidationFailed(
                "no message or call status in the callback", code="invalid_webhook"
            )
        now = datetime.now(UTC)
        async with self.n.rt.sessions.begin() as session:
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
