"""Worker streams share one Redis pub/sub connection per process (EventBus): hundreds of streams
in one process, a worker with two sockets, and PUBLISH counts that tell whether a worker is
connected. The app is served in this process by uvicorn on a real socket, against real Redis."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from litestar import Litestar
from redis.asyncio import Redis
from websockets.asyncio.client import ClientConnection, connect

from dispatch.grab import events as ev
from dispatch.identity.auth import issue_token
from tests.conftest import TEST_SECRET

STREAMS = 320
"""More than the Redis pool's 256 connections: one pub/sub connection each would not fit."""
FIRST_WORKER_ID = 10_000


@pytest.fixture
def served(served_base: str) -> str:
    return served_base.replace("http://", "ws://") + "/v1/workers/me/stream"


def worker_token(worker_id: int) -> str:
    return issue_token(TEST_SECRET, worker_id, "worker")


async def open_stream(url: str, worker_id: int) -> ClientConnection:
    ws = await connect(f"{url}?token={worker_token(worker_id)}", open_timeout=30)
    hello = json.loads(await asyncio.wait_for(ws.recv(), 30))
    assert hello == {"type": "hello", "offers": []}
    return ws


async def next_event(ws: ClientConnection, within: float = 15.0) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), within))


async def pubsub_connections(redis: Redis) -> int:
    return len(await redis.client_list(_type="pubsub"))


async def until(predicate, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not await predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def test_hundreds_of_streams_share_one_pubsub_connection(
    served: str, app: Litestar, redis: Redis
) -> None:
    bus: ev.EventBus = app.state.runtime.bus
    ids = list(range(FIRST_WORKER_ID, FIRST_WORKER_ID + STREAMS))
    sockets: list[ClientConnection] = []
    try:
        for start in range(0, STREAMS, 40):
            batch = ids[start : start + 40]
            sockets += await asyncio.gather(*(open_stream(served, w) for w in batch))
        assert bus.subscribed_channels() == STREAMS
        assert await pubsub_connections(redis) == 1

        delivered = await bus.to_workers([(w, ev.OfferTaken(offer_id=w, job_id=7)) for w in ids])
        assert delivered == [1] * STREAMS  # one subscribed connection per worker: this process
        got = await asyncio.gather(*(next_event(ws) for ws in sockets))
        assert got == [{"type": "offer_taken", "offer_id": w, "job_id": 7} for w in ids]

        # Each stream gets only its own worker's events.
        assert await bus.to_worker(ids[5], ev.JobReleased(job_id=3, reason="cancelled")) == 1
        assert await next_event(sockets[5]) == {
            "type": "job_released",
            "job_id": 3,
            "reason": "cancelled",
        }
        for ws in sockets[:5] + sockets[6:12]:
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(ws.recv(), 0.05)
    finally:
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)

    async def all_gone() -> bool:
        return bus.subscribed_channels() == 0

    await until(all_gone)

    async def nobody_listens() -> bool:
        counts = await bus.to_workers([(w, ev.OfferExpired(offer_id=1, job_id=7)) for w in ids])
        return counts == [0] * STREAMS

    await until(nobody_listens)


async def test_a_worker_with_two_sockets(served: str, app: Litestar) -> None:
    bus: ev.EventBus = app.state.runtime.bus
    phone, tablet = await open_stream(served, 42), await open_stream(served, 42)
    try:
        assert bus.subscribed_channels() == 1
        # One connection subscribed (this process), both sockets get the event.
        assert await bus.to_worker(42, ev.OfferExpired(offer_id=1, job_id=2)) == 1
        want = {"type": "offer_expired", "offer_id": 1, "job_id": 2}
        assert await next_event(phone) == want and await next_event(tablet) == want

        await phone.close()

        async def phone_gone() -> bool:
            return len(bus._local.get(ev.worker_channel(42).encode(), ())) == 1

        await until(phone_gone)
        # The other socket keeps the channel.
        assert await bus.to_worker(42, ev.OfferExpired(offer_id=3, job_id=2)) == 1
        assert (await next_event(tablet))["offer_id"] == 3

        # A socket opening again while one is open shares the subscription.
        again = await open_stream(served, 42)
        assert await bus.to_worker(42, ev.OfferExpired(offer_id=4, job_id=2)) == 1
        assert (await next_event(again))["offer_id"] == 4
        assert (await next_event(tablet))["offer_id"] == 4
        await again.close()
    finally:
        await tablet.close()

    async def unsubscribed() -> bool:
        return await bus.to_worker(42, ev.OfferExpired(offer_id=5, job_id=2)) == 0

    await until(unsubscribed)
    assert bus.subscribed_channels() == 0


async def test_a_stream_is_subscribed_before_its_hello(served: str, app: Litestar) -> None:
    """Anything published once the hello has arrived reaches the socket."""
    bus: ev.EventBus = app.state.runtime.bus
    for round_ in range(20):
        ws = await open_stream(served, 500 + round_)
        try:
            assert (
                await bus.to_worker(500 + round_, ev.OfferExpired(offer_id=round_, job_id=1)) == 1
            )
            assert (await next_event(ws))["offer_id"] == round_
        finally:
            await ws.close()


async def test_a_slow_subscriber_is_cut_loose_not_the_others(app: Litestar) -> None:
    """A subscription whose unread events pile up beyond MAX_QUEUED fails with Overflow (its
    stream closes and the client reconnects); another subscription goes on."""
    bus: ev.EventBus = app.state.runtime.bus
    async with bus.subscription(77) as slow:
        await bus.to_workers(
            [(77, ev.OfferExpired(offer_id=i, job_id=1)) for i in range(ev.MAX_QUEUED + 1)]
        )

        async def overflowed() -> bool:
            return slow.overflowed

        await until(overflowed)
        with pytest.raises(ev.Overflow):
            await slow.get()
        async with bus.subscription(77) as other:
            assert await bus.to_worker(77, ev.OfferExpired(offer_id=-1, job_id=1)) == 1
            assert json.loads(await asyncio.wait_for(other.get(), 10))["offer_id"] == -1
