"""Notifications as one object the app holds: the phone provider, Web Push, the outbox relay and
the masked-number broker, wired to the dispatch runtime."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from dispatch.infra.logs import log
from dispatch.infra.runtime import Runtime
from dispatch.ops.alerts import alert_communities, raise_alert
from notifications.masking import ProxyBroker
from notifications.messages import Messages
from notifications.pool import Pool
from notifications.provider import PhoneProvider
from notifications.push import Pusher
from notifications.relay import Relay
from notifications.subscriptions import Subscriptions
from notifications.twilio import TwilioProvider
from notifications.webhooks import Webhooks

STATUS_PATH = "/v1/telephony/status"


class Notifications:
    def __init__(self, rt: Runtime, provider: PhoneProvider, pusher: Pusher | None) -> None:
        s = rt.settings
        self.rt = rt
        self.provider = provider
        self.pusher = pusher
        self.proxies = ProxyBroker(rt.communities, rt.vault)
        self.relay = Relay(
            rt.sessions,
            rt.redis,
            rt.vault,
            provider,
            pusher,
            rt.sms_budget,
            self.alert,
            status_callback=s.public_base_url.rstrip("/") + STATUS_PATH,
            lease_s=s.relay_lease_s,
            max_attempts=s.relay_max_attempts,
            backoff_first_s=s.relay_backoff_s,
        )
        self.webhooks = Webhooks(self)
        self.subscriptions = Subscriptions(rt.sessions, s)
        self.pool = Pool(rt.sessions, rt.communities, rt.vault)
        self.messages = Messages(self)

    @classmethod
    def open(cls, rt: Runtime) -> Notifications:
        s = rt.settings
        provider = TwilioProvider(
            s.twilio_account_sid, s.twilio_auth_token, s.twilio_from_number, s.twilio_api_base
        )
        pusher = (
            Pusher(s.vapid_private_key, s.vapid_subject, allowed_hosts=s.egress_allowed_hosts)
            if s.vapid_private_key and s.vapid_subject
            else None
        )
        notifications = cls(rt, provider, pusher)
        rt.dispatcher.hooks.append(notifications.proxies)
        return notifications

    def start(self) -> None:
        if self.rt.settings.relay:
            self.rt.add_task(self.relay.run())

    async def aclose(self) -> None:
        await self.provider.aclose()
        if self.pusher is not None:
            await self.pusher.aclose()

    async def alert(self, kind: str, detail: dict[str, Any], job_id: int | None) -> None:
        """Raise an operator alert: on the job's community, or on every community when the
        matter is service-wide (the SMS budget, a message that names no job)."""
        now = datetime.now(UTC)
        async with self.rt.sessions.begin() as session:
            targets = list(await alert_communities(session, job_id))
            for community_id in targets:
                await raise_alert(
                    session,
                    community_id=community_id,
                    kind=kind,
                    job_id=job_id,
                    detail=detail,
                    now=now,
                )
        log.warning("alert_raised", kind=kind, job_id=job_id, communities=len(targets))
