"""The global daily SMS budget: every text costs money, so all of them together (sign-in codes,
offer fallbacks, relayed texts) are capped per UTC day. Requests that would make the service send
an SMS check it up front (429 with Retry-After until midnight UTC); the relay spends it per text
actually handed to the provider. Held messages (no provider) cost nothing and are not counted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from redis.asyncio import Redis

from dispatch.core.errors import RateLimited

ALERT_SHARE = 0.8


def _day(now: datetime) -> str:
    return now.strftime("%Y%m%d")


def seconds_to_midnight(now: datetime) -> int:
    tomorrow = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return max(1, int((tomorrow - now).total_seconds()) + 1)


class SmsBudget:
    def __init__(self, redis: Redis, daily: int) -> None:
        self.redis = redis
        self.daily = daily

    def _key(self, now: datetime) -> str:
        return f"sms:budget:{_day(now)}"

    async def used(self, now: datetime | None = None) -> int:
        now = now or datetime.now(UTC)
        return int(await self.redis.get(self._key(now)) or 0)

    async def check(self, now: datetime | None = None) -> None:
        """Refuse (429) a request that would send an SMS when today's budget is spent."""
        now = now or datetime.now(UTC)
        if await self.used(now) >= self.daily:
            raise RateLimited(
                "the service has sent all the text messages it may send today",
                code="sms_budget_exhausted",
                retry_after_s=seconds_to_midnight(now),
            )

    async def spend(self, now: datetime | None = None) -> tuple[bool, bool]:
        """Take one SMS from today's budget: (allowed, crossed the alert share just now)."""
        now = now or datetime.now(UTC)
        key = self._key(now)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, 2 * 24 * 3600)
            used, _ = await pipe.execute()
        if used > self.daily:
            await self.redis.decr(key)
            return False, False
        threshold = max(1, int(self.daily * ALERT_SHARE))
        crossed = used >= threshold and bool(
            await self.redis.set(f"sms:budget:alerted:{_day(now)}", 1, nx=True, ex=2 * 24 * 3600)
        )
        return True, crossed

    async def refund(self, now: datetime | None = None) -> None:
        """Give back a unit spent on a text the provider did not take."""
        await self.redis.decr(self._key(now or datetime.now(UTC)))
