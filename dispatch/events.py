"""Live events for workers' streams: tagged msgspec Structs, published per worker over Redis
pub/sub after the state change that caused them has committed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import msgspec
from redis.asyncio import Redis


class JobSummary(msgspec.Struct):
    id: int
    title: str
    category: str
    skills: list[str]
    price_cents: int
    currency: str
    approx_location: dict[str, float]
    """The job's neighbourhood (an H3 res-8 cell centre); the address comes with assignment."""
    mode: str


class OfferOut(msgspec.Struct):
    id: int
    job_id: int
    worker_id: int
    status: str
    wave: int
    distance_m: float
    expires_at: datetime
    job: JobSummary | None = None


class OfferSent(msgspec.Struct, tag="offer"):
    offer: OfferOut


class OfferTaken(msgspec.Struct, tag="offer_taken"):
    offer_id: int
    job_id: int


class OfferWithdrawn(msgspec.Struct, tag="offer_withdrawn"):
    offer_id: int
    job_id: int
    reason: str


class OfferExpired(msgspec.Struct, tag="offer_expired"):
    offer_id: int
    job_id: int


class JobAssigned(msgspec.Struct, tag="job_assigned"):
    job_id: int
    worker_id: int
    assignment_version: int


class JobReleased(msgspec.Struct, tag="job_released"):
    """The worker no longer holds the job (cancelled, reassigned by an operator)."""

    job_id: int
    reason: str


class Hello(msgspec.Struct, tag="hello"):
    """First message on a stream: the offers pending right now."""

    offers: list[OfferOut]


Event = OfferSent | OfferTaken | OfferWithdrawn | OfferExpired | JobAssigned | JobReleased | Hello

encode = msgspec.json.Encoder().encode
decode = msgspec.json.Decoder(Event).decode


def worker_channel(worker_id: int) -> str:
    return f"ev:w:{worker_id}"


class EventBus:
    """Publishes events to workers and opens per-connection subscriptions."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def to_worker(self, worker_id: int, event: Event) -> None:
        await self.redis.publish(worker_channel(worker_id), encode(event))

    async def to_workers(self, items: list[tuple[int, Event]]) -> None:
        if not items:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for worker_id, event in items:
                pipe.publish(worker_channel(worker_id), encode(event))
            await pipe.execute()

    @asynccontextmanager
    async def subscription(self, worker_id: int) -> AsyncIterator[Any]:
        pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(worker_channel(worker_id))
        try:
            yield pubsub
        finally:
            await pubsub.aclose()
