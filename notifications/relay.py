"""The outbox relay: delivers what the outbox holds, by the recipient's channels in order of
preference, with retries, de-duplication and a dead-letter state.

Claiming is a lease: a batch of due rows becomes `sending` with `next_attempt_at` = now + lease,
under `FOR UPDATE SKIP LOCKED`, so relays in several processes never take the same row. A relay
killed mid-batch leaves its rows `sending`; once the lease lapses another relay (or the restarted
one) takes them again. A row is marked done right after its own send, so a crash repeats at most
the sends of the batch in flight, each at most once more.

Channels for a message to a user (`app`, or `ws` when the writer already published the live event
after its commit):
1. in-app: the worker's stream is connected (its channel has a subscriber) → done; for `app` rows
   the relay publishes the event itself.
2. Web Push to each subscription, if VAPID is configured; dead subscriptions (404/410) are removed.
Rows addressed to a phone go straight to it: `sms` as a text, `call` as an automated voice call
(the check-in ladder's: its `body` is spoken in `payload["locale"]` and the key pressed goes to
the signed `payload["gather_url"]`); with no provider configured both are `held`.

3. SMS, only for urgent kinds (offers, sign-in codes, relayed texts, safety): through the phone
   provider, within the daily budget; with no provider configured the message is `held`, which
   is the local default's delivery (admins and the console read it).
Otherwise the row is `skipped`: nobody could be reached without spending a text on something that
can wait (an offer already taken, say). An offer that expired before it could be delivered is
`skipped` too: waking a worker for it would only disappoint them.

A little over 400 lines: the lease, the channel order and the retry schedule are one loop whose
invariants (a row is marked right after its own send) must be read together.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from redis.asyncio import Redis
from sqlalchemy import delete, select, text, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dispatch.grab.events import listeners, publish, worker_channel
from dispatch.identity.phones import PhoneVault
from dispatch.infra.logs import log
from dispatch.infra.smsbudget import SmsBudget
from dispatch.models import OutboxMessage, User
from notifications.models import PushSubscription
from notifications.provider import MESSAGE_RANK, PhoneProvider, ProviderError
from notifications.push import Pusher

URGENT = frozenset(
    {"offer", "otp", "relay", "alert", "sos", "checkin", "checkin_contacts", "reminder"}
)
"""Kinds worth a text message when no in-app or push channel reaches the recipient."""

_CLAIM = text(
    """
    UPDATE outbox SET status = 'sending', attempts = attempts + 1,
           next_attempt_at = :lease_until, updated_at = now()
    WHERE id IN (
        SELECT id FROM outbox
        WHERE status IN ('pending', 'sending')
          AND (next_attempt_at IS NULL OR next_attempt_at <= :now)
        ORDER BY priority DESC, next_attempt_at NULLS FIRST, id
        LIMIT :limit
        FOR UPDATE SKIP LOCKED)
    RETURNING id, channel, kind, to_user_id, to_enc, body, payload, attempts, from_number
    """
)


@dataclass
class Claimed:
    id: int
    channel: str
    kind: str
    to_user_id: int | None
    to_enc: bytes | None
    body: str
    payload: dict[str, Any]
    attempts: int
    from_number: str | None


@dataclass
class Outcome:
    status: str
    via: str | None = None
    provider: str | None = None
    provider_ref: str | None = None
    provider_status: str | None = None
    error: str | None = None
    retry: bool = False


AlertSink = Callable[[str, dict[str, Any], int | None], Awaitable[None]]
"""(kind, detail, job_id) → raise an operator alert."""


def backoff_s(attempts: int, first_s: float = 5.0) -> float:
    """`first_s`, twice that, four times … capped at 10 min, with ±20% jitter."""
    base = min(first_s * 2 ** max(0, attempts - 1), 600.0)
    return base * random.uniform(0.8, 1.2)


class Relay:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        redis: Redis,
        vault: PhoneVault,
        provider: PhoneProvider,
        pusher: Pusher | None,
        budget: SmsBudget,
        alert: AlertSink,
        *,
        status_callback: str | None,
        batch: int = 100,
        lease_s: float = 60.0,
        max_attempts: int = 6,
        backoff_first_s: float = 5.0,
        idle_s: float = 0.5,
        concurrency: int = 16,
    ) -> None:
        self.sessions = sessions
        self.redis = redis
        self.vault = vault
        self.provider = provider
        self.pusher = pusher
        self.budget = budget
        self.alert = alert
        self.status_callback = status_callback
        self.batch = batch
        self.lease_s = lease_s
        self.max_attempts = max_attempts
        self.backoff_first_s = backoff_first_s
        self.idle_s = idle_s
        self._gate = asyncio.Semaphore(concurrency)
        self._wake = asyncio.Event()

    def poke(self) -> None:
        """Something was just written: look now instead of at the next idle tick."""
        self._wake.set()

    async def run(self) -> None:
        while True:
            try:
                done = await self.drain_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database blinked: keep relaying once it is back
                log.error("relay_batch_failed", error=repr(exc))
                done = 0
                await asyncio.sleep(1.0)
            if done < self.batch:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.idle_s)

    async def drain_once(self) -> int:
        """Claim one batch of due messages and deliver them; the number claimed."""
        now = datetime.now(UTC)
        async with self.sessions.begin() as session:
            rows = (
                await session.execute(
                    _CLAIM,
                    {
                        "now": now,
                        "lease_until": now + timedelta(seconds=self.lease_s),
                        "limit": self.batch,
                    },
                )
            ).all()
        if not rows:
            return 0
        claimed = [Claimed(*row) for row in rows]
        listeners = await self._listeners([m for m in claimed if m.channel in ("ws", "app")])
        subs, phones = await self._contacts(claimed)
        quiet: list[tuple[Claimed, Outcome]] = []
        await asyncio.gather(
            *(self._deliver_and_mark(m, listeners, subs, phones, quiet) for m in claimed)
        )
        await self._mark_many(quiet)
        return len(claimed)

    async def _listeners(self, messages: Sequence[Claimed]) -> dict[int, int]:
        users = sorted({m.to_user_id for m in messages if m.to_user_id is not None})
        if not users:
            return {}
        counts = await listeners(self.redis, [worker_channel(u) for u in users])
        return dict(zip(users, counts, strict=True))

    async def _contacts(
        self, messages: Sequence[Claimed]
    ) -> tuple[dict[int, list[PushSubscription]], dict[int, bytes]]:
        users = {
            m.to_user_id
            for m in messages
            if m.to_user_id is not None and m.channel in ("app", "ws")
        }
        if not users:
            return {}, {}
        async with self.sessions() as session:
            subs: dict[int, list[PushSubscription]] = {}
            if self.pusher is not None:
                for sub in await session.scalars(
                    select(PushSubscription).where(PushSubscription.user_id.in_(users))
                ):
                    subs.setdefault(sub.user_id, []).append(sub)
            phones = {
                uid: enc
                for uid, enc in await session.execute(
                    select(User.id, User.phone_enc).where(
                        User.id.in_(users), User.phone_enc.is_not(None)
                    )
                )
            }
        return subs, phones

    async def _deliver_and_mark(
        self,
        m: Claimed,
        listeners: dict[int, int],
        subs: dict[int, list[PushSubscription]],
        phones: dict[int, bytes],
        quiet: list[tuple[Claimed, Outcome]],
    ) -> None:
        async with self._gate:
            try:
                outcome = await self._deliver(m, listeners, subs, phones)
            except Exception as exc:  # a bug or an unexpected library error: retry, then dead
                log.error("relay_deliver_failed", outbox_id=m.id, error=repr(exc))
                outcome = Outcome("pending", error=f"relay error: {exc!r}"[:500], retry=True)
            if outcome.status in ("held", "skipped") or (
                outcome.status == "sent" and outcome.via == "ws"
            ):
                # Nothing left our hands that a repeat would duplicate outside the service:
                # record these together at the end of the batch, in one statement per kind.
                quiet.append((m, outcome))
            else:
                await self._mark(m, outcome)

    # --- channels ---------------------------------------------------------------------------------

    async def _deliver(
        self,
        m: Claimed,
        listeners: dict[int, int],
        subs: dict[int, list[PushSubscription]],
        phones: dict[int, bytes],
    ) -> Outcome:
        if m.channel in ("sms", "call"):
            if m.to_enc is None:
                return Outcome("dead", error="no phone number to send to")
            if m.channel == "call":
                return await self._call(m, m.to_enc)
            return await self._sms(m, m.to_enc)
        uid = m.to_user_id
        if uid is None:
            return Outcome("skipped", error="no recipient")
        if m.kind == "offer" and _expired(m.payload):
            return Outcome("skipped", error="the offer expired before it could be delivered")
        if m.channel == "ws" and listeners.get(uid, 0) > 0:
            return Outcome("sent", via="ws")
        if m.channel == "app":
            receivers = await publish(self.redis, worker_channel(uid), json.dumps(m.payload))
            if receivers:
                return Outcome("sent", via="ws")
        pushed = await self._push(m, uid, subs.get(uid, []))
        if pushed is not None:
            return pushed
        if m.kind in URGENT:
            enc = phones.get(uid)
            if enc is not None:
                return await self._sms(m, enc)
        return Outcome("skipped", error="not connected, no push subscription, not urgent")

    async def _push(self, m: Claimed, uid: int, subs: list[PushSubscription]) -> Outcome | None:
        """Push to every subscription; an Outcome if any took it or all failed for a reason
        worth retrying, None when push cannot reach the user (fall through to SMS)."""
        if self.pusher is None or not subs:
            return None
        data = json.dumps({"kind": m.kind, "body": m.body, "event": m.payload}).encode()
        ttl = _ttl_s(m)
        urgency = "high" if m.kind in URGENT else "normal"
        results = await asyncio.gather(
            *(
                self.pusher.send(s.endpoint, s.p256dh, s.auth, data, ttl_s=ttl, urgency=urgency)
                for s in subs
            )
        )
        now = datetime.now(UTC)
        ok = [s.id for s, r in zip(subs, results, strict=True) if r.outcome == "ok"]
        gone = [s.id for s, r in zip(subs, results, strict=True) if r.outcome == "gone"]
        async with self.sessions.begin() as session:
            if gone:
                await session.execute(delete(PushSubscription).where(PushSubscription.id.in_(gone)))
            if ok:
                await session.execute(
                    update(PushSubscription)
                    .where(PushSubscription.id.in_(ok))
                    .values(last_ok_at=now, failures=0)
                )
        if ok:
            return Outcome("sent", via="push")
        retryable = [r for r in results if r.outcome == "retry"]
        if retryable and m.kind not in URGENT:
            return Outcome("pending", via="push", error=retryable[0].detail, retry=True)
        return None

    async def _sms(self, m: Claimed, enc: bytes) -> Outcome:
        if not self.provider.can_send:
            return Outcome("held", via="held")
        allowed, crossed = await self.budget.spend()
        if crossed:
            await self.alert(
                "sms_budget_80",
                {"daily_budget": self.budget.daily, "message": "80% of today's SMS budget spent"},
                None,
            )
        if not allowed and m.kind != "otp":
            return Outcome("skipped", via="sms", error="today's SMS budget is spent")
        try:
            sent = await self.provider.send_sms(
                self.vault.decrypt(enc),
                m.body,
                from_=m.from_number,
                status_callback=self.status_callback,
            )
        except ProviderError as exc:
            await self.budget.refund()
            if exc.permanent:
                return Outcome("dead", via="sms", provider=self.provider.name, error=str(exc))
            return Outcome("pending", via="sms", error=str(exc), retry=True)
        return Outcome(
            "sent",
            via="sms",
            provider=self.provider.name,
            provider_ref=sent.ref,
            provider_status=sent.status,
        )

    async def _call(self, m: Claimed, enc: bytes) -> Outcome:
        gather_url = m.payload.get("gather_url") if isinstance(m.payload, dict) else None
        if not isinstance(gather_url, str):
            return Outcome("dead", error="a call needs the URL its answer goes to")
        if not self.provider.can_send:
            return Outcome("held", via="held")
        try:
            placed = await self.provider.place_call(
                self.vault.decrypt(enc), m.body, gather_url=gather_url,
                status_callback=self.status_callback, locale=m.payload.get("locale"),
            )  # fmt: skip
        except ProviderError as exc:
            if exc.permanent:
                return Outcome("dead", via="call", provider=self.provider.name, error=str(exc))
            return Outcome("pending", via="call", error=str(exc), retry=True)
        return Outcome(
            "sent", via="call", provider=self.provider.name, provider_ref=placed.ref,
            provider_status=placed.status,
        )  # fmt: skip

    # --- bookkeeping ------------------------------------------------------------------------------

    async def _mark_many(self, done: list[tuple[Claimed, Outcome]]) -> None:
        groups: dict[tuple[str, str | None, str | None], list[tuple[int, int]]] = {}
        for m, outcome in done:
            key = (outcome.status, outcome.via, outcome.error)
            groups.setdefault(key, []).append((m.id, m.attempts))
        if not groups:
            return
        now = datetime.now(UTC)
        async with self.sessions.begin() as session:
            for (status, via, error), rows in groups.items():
                await session.execute(
                    update(OutboxMessage)
                    .where(
                        tuple_(OutboxMessage.id, OutboxMessage.attempts).in_(rows),
                        OutboxMessage.status == "sending",
                    )
                    .values(
                        status=status,
                        via=via,
                        last_error=error,
                        next_attempt_at=None,
                        sent_at=now if status == "sent" else None,
                    )
                )

    async def _mark(self, m: Claimed, outcome: Outcome) -> None:
        now = datetime.now(UTC)
        values: dict[str, Any] = {"status": outcome.status, "last_error": outcome.error}
        if outcome.via is not None:
            values["via"] = outcome.via
        if outcome.status == "pending":
            if m.attempts >= self.max_attempts:
                values["status"] = "dead"
                values["next_attempt_at"] = None
            else:
                values["next_attempt_at"] = now + timedelta(
                    seconds=backoff_s(m.attempts, self.backoff_first_s)
                )
        else:
            values["next_attempt_at"] = None
        if outcome.status == "sent":
            values["sent_at"] = now
        if outcome.provider is not None:
            values["provider"] = outcome.provider
        if outcome.provider_ref is not None:
            values["provider_ref"] = outcome.provider_ref
            values["provider_status"] = outcome.provider_status
            values["provider_rank"] = MESSAGE_RANK.get(outcome.provider_status or "", 0)
        async with self.sessions.begin() as session:
            # Only the lease holder may finish the row (a stale relay must not overwrite a
            # newer attempt's result).
            await session.execute(
                update(OutboxMessage)
                .where(
                    OutboxMessage.id == m.id,
                    OutboxMessage.status == "sending",
                    OutboxMessage.attempts == m.attempts,
                )
                .values(**values)
            )
        if values["status"] == "dead":
            log.warning("outbox_dead", outbox_id=m.id, kind=m.kind, error=outcome.error)
            job_id = _job_of(m.payload)
            await self.alert(
                "delivery_failed",
                {"outbox_id": m.id, "kind": m.kind, "error": (outcome.error or "")[:200]},
                job_id,
            )


def _offer_expiry(payload: dict[str, Any]) -> datetime | None:
    """When the offer an `offer` message carries expires (None for other messages)."""
    offer = payload.get("offer") if isinstance(payload, dict) else None
    raw = offer.get("expires_at") if isinstance(offer, dict) else None
    if isinstance(raw, str):
        with contextlib.suppress(ValueError):
            return datetime.fromisoformat(raw)
    return None


def _expired(payload: dict[str, Any]) -> bool:
    expiry = _offer_expiry(payload)
    return expiry is not None and expiry <= datetime.now(UTC)


def _ttl_s(m: Claimed) -> int:
    expiry = _offer_expiry(m.payload)
    if expiry is not None:
        return max(0, int((expiry - datetime.now(UTC)).total_seconds()))
    return 3600 if m.kind in URGENT else 24 * 3600


def _job_of(payload: dict[str, Any]) -> int | None:
    if not isinstance(payload, dict):
        return None
    if isinstance(payload.get("job_id"), int):
        return payload["job_id"]
    offer = payload.get("offer")
    if isinstance(offer, dict) and isinstance(offer.get("job_id"), int):
        return offer["job_id"]
    return None
