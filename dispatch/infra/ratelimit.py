"""Fixed-window request limits in Redis: one round trip (INCR + EXPIRE in a pipeline) per check."""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from dispatch.core.errors import RateLimited


@dataclass(frozen=True)
class Limit:
    name: str
    max_hits: int
    window_s: int


async def hit(redis: Redis, limit: Limit, subject: str, *, detail: str = "") -> None:
    """Count one hit for `subject`; raise RateLimited (with Retry-After) when over the limit."""
    key = f"rl:{limit.name}:{subject}"
    async with redis.pipeline(transaction=True) as pipe:
        pipe.incr(key)
        pipe.expire(key, limit.window_s, nx=True)
        pipe.ttl(key)
        count, _, ttl = await pipe.execute()
    if count > limit.max_hits:
        raise RateLimited(
            detail or f"too many requests; limit is {limit.max_hits} per {limit.window_s} s",
            retry_after_s=ttl if ttl and ttl > 0 else limit.window_s,
        )
