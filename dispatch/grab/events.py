"""Live events for workers' streams: tagged msgspec Structs, published per worker over Redis
pub/sub after the state change that caused them has committed, and fanned out to the streams of
this process over its one pub/sub connection."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime

import msgspec
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline, PubSub
from redis.exceptions import RedisError

from dispatch.grab.statements import CLAIM_TAG
from dispatch.infra.logs import log
from dispatch.infra.redis_client import is_cluster, node_client
from dispatch.money.schemas import PayOut


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
    scheduled_start: datetime | None = None
    scheduled_end: datetime | None = None
    """A booking's slot the worker is asked to confirm."""
    pay: PayOut | None = None
    """What the worker would receive: the price, each deduction, the net (before taking it)."""


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
    """The worker's channel. It carries the offer cache's hash tag (`CLAIM_TAG`): on a Redis
    Cluster, events and the offers they announce live on one shard, so the pipeline that caches
    offers and then publishes their events keeps that order (a cluster pipeline sends each
    node's share on its own), and the events are sharded pub/sub (SPUBLISH/SSUBSCRIBE), whose
    receiver counts are exact cluster-wide (a plain PUBLISH counts one node's subscribers)."""
    return f"ev:{CLAIM_TAG}:w:{worker_id}"


PUBLISH_MANY = """
local counts = {}
for i = 1, #ARGV, 2 do
    counts[#counts + 1] = redis.call('PUBLISH', ARGV[i], ARGV[i + 1])
end
return counts
"""
"""PUBLISH each (channel, message) pair of ARGV; the reply is each one's receiver count. Sent as
EVAL (Redis caches the compiled script by its digest), so no script needs loading first."""

SPUBLISH_MANY = """
local counts = {}
for i = 1, #KEYS do
    counts[i] = redis.call('SPUBLISH', KEYS[i], ARGV[i])
end
return counts
"""
"""The same on a Redis Cluster: SPUBLISH each channel of KEYS (declared, as a cluster script
must; they share one slot) with the message of ARGV at its index."""


async def publish(redis: Redis, channel: str, data: str | bytes) -> int:
    """Publish one message on a worker channel (SPUBLISH on a cluster); its receiver count."""
    if is_cluster(redis):
        return int(await redis.spublish(channel, data))
    return int(await redis.publish(channel, data))


async def listeners(redis: Redis, channels: list[str]) -> list[int]:
    """How many connections listen to each worker channel (on a cluster, the sharded count:
    the cluster client asks every node and adds them up)."""
    if is_cluster(redis):
        counts = await redis.pubsub_shardnumsub(*channels)
    else:
        counts = await redis.pubsub_numsub(*channels)
    return [int(n) for _, n in counts]


MAX_QUEUED = 1000
"""Events waiting for one slow socket before its subscription is dropped (its stream closes; the
client reconnects and gets its pending offers in the hello)."""


SUBSCRIBE_TIMEOUT_S = 10.0


class Overflow(Exception):
    """A subscriber fell too far behind."""


class Subscription:
    """One local stream's share of its worker's channel: the events published to the worker,
    in order, as the JSON text they were published as."""

    def __init__(self, worker_id: int) -> None:
        self.worker_id = worker_id
        self._queue: deque[bytes] = deque()
        self._ready = asyncio.Event()
        self.overflowed = False

    def _put(self, data: bytes) -> None:
        if len(self._queue) >= MAX_QUEUED:
            self.overflowed = True
        else:
            self._queue.append(data)
        self._ready.set()

    async def get(self) -> bytes:
        """The next event; raises `Overflow` once the subscriber has lost events."""
        while True:
            if self.overflowed:
                raise Overflow(f"worker {self.worker_id}: more than {MAX_QUEUED} events queued")
            if self._queue:
                return self._queue.popleft()
            self._ready.clear()
            await self._ready.wait()

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[bytes]:
        while True:
            yield await self.get()


class EventBus:
    """Publishes events to workers, and fans them out to this process's streams.

    A process holds ONE Redis pub/sub connection for all its streams: it subscribes to a
    worker's channel when the first local stream of that worker opens, unsubscribes when the
    last one closes, and hands each message to every local stream of the worker.
    """

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self.sharded = is_cluster(redis)
        """On a Redis Cluster: sharded pub/sub, on one connection to the shard of the channels'
        hash tag (all workers' channels share it)."""
        self._node: Redis | None = None
        self._pubsub: PubSub | None = None
        self._reader: asyncio.Task[None] | None = None
        self._local: dict[bytes, set[Subscription]] = {}
        """channel -> this process's open subscriptions to it."""
        self._confirmed: dict[bytes, asyncio.Future[None]] = {}
        """channel -> resolved once Redis has confirmed the channel's current subscription."""
        self._unconfirmed: dict[bytes, int] = {}
        """channel -> SUBSCRIBEs sent and not yet confirmed."""
        self._lock = asyncio.Lock()
        self._closed = False

    async def to_worker(self, worker_id: int, event: Event) -> int:
        """Publish; returns how many Redis connections got it (processes with a stream of the
        worker open: 0 means the worker is not connected anywhere)."""
        return await publish(self.redis, worker_channel(worker_id), encode(event))

    async def to_workers(self, items: list[tuple[int, Event]]) -> list[int]:
        """Publish each (worker, event) in one round trip; per item, as `to_worker` returns."""
        if not items:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            self.publish_in(pipe, items)
            (counts,) = await pipe.execute()
            return [int(n) for n in counts]

    @staticmethod
    def publish_in(pipe: Pipeline, items: list[tuple[int, Event]]) -> None:
        """Queue the PUBLISHes on a pipeline the caller executes, as ONE command (a script) whose
        reply, the pipeline's last result, is the list of counts `to_workers` returns. (A
        hundred PUBLISH commands cost the client far more to pack and parse than one.)"""
        if not items:
            return
        if is_cluster(pipe):
            channels = [worker_channel(worker_id) for worker_id, _ in items]
            pipe.eval(SPUBLISH_MANY, len(channels), *channels, *(encode(e) for _, e in items))
            return
        args: list[str | bytes] = []
        for worker_id, event in items:
            args.append(worker_channel(worker_id))
            args.append(encode(event))
        pipe.eval(PUBLISH_MANY, 0, *args)

    @asynccontextmanager
    async def subscription(self, worker_id: int) -> AsyncIterator[Subscription]:
        """Events for the worker from the moment this is entered (Redis has confirmed the
        subscription) until it is left."""
        sub = Subscription(worker_id)
        channel = worker_channel(worker_id).encode()
        try:
            async with self._lock:
                if self._closed:
                    raise RuntimeError("the event bus is closed")
                subs = self._local.get(channel)
                if subs is None:
                    subs = self._local[channel] = set()
                    try:
                        await self._subscribe(channel)
                    except BaseException:
                        del self._local[channel]
                        self._confirmed.pop(channel, None)
                        self._unconfirmed.pop(channel, None)
                        raise
                subs.add(sub)
                confirmed = self._confirmed[channel]
            await asyncio.wait_for(asyncio.shield(confirmed), SUBSCRIBE_TIMEOUT_S)
            yield sub
        finally:
            await self._leave(channel, sub)

    async def _subscribe(self, channel: bytes) -> None:
        if self._pubsub is None:
            if self.sharded:
                self._node = node_client(self.redis, channel)
                self._pubsub = self._node.pubsub()
            else:
                self._pubsub = self.redis.pubsub()
        self._confirmed[channel] = asyncio.get_running_loop().create_future()
        self._unconfirmed[channel] = self._unconfirmed.get(channel, 0) + 1
        if self.sharded:
            await self._pubsub.ssubscribe(channel)
        else:
            await self._pubsub.subscribe(channel)
        if self._reader is None or self._reader.done():
            self._reader = asyncio.create_task(self._read(self._pubsub))

    async def _leave(self, channel: bytes, sub: Subscription) -> None:
        async with self._lock:
            subs = self._local.get(channel)
            if subs is None or sub not in subs:
                return
            subs.discard(sub)
            if subs or self._closed:
                return
            del self._local[channel]
            confirmed = self._confirmed.pop(channel, None)
            if confirmed is not None and not confirmed.done():
                confirmed.cancel()
            if self._pubsub is not None:
                with contextlib.suppress(RedisError, OSError):
                    if self.sharded:
                        await self._pubsub.sunsubscribe(channel)
                    else:
                        await self._pubsub.unsubscribe(channel)

    async def _read(self, pubsub: PubSub) -> None:
        """The process's one reader: messages to local subscribers, confirmations to waiters."""
        while True:
            try:
                message = await pubsub.get_message(timeout=None)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the connection dropped: redis-py resubscribes on reconnect
                log.warning("event_bus_read_failed", error=repr(exc))
                await asyncio.sleep(0.5)
                continue
            if message is None:
                continue
            kind, channel = message["type"], message["channel"]
            if kind in ("message", "smessage"):
                for sub in self._local.get(channel, ()):
                    sub._put(message["data"])
            elif kind in ("subscribe", "ssubscribe"):
                left = self._unconfirmed.get(channel, 1) - 1
                if left > 0:
                    self._unconfirmed[channel] = left
                    continue
                self._unconfirmed.pop(channel, None)
                confirmed = self._confirmed.get(channel)
                if confirmed is not None and not confirmed.done() and channel in self._local:
                    confirmed.set_result(None)

    def subscribed_channels(self) -> int:
        """How many workers' channels this process listens to (for tests and metrics)."""
        return len(self._local)

    async def close(self) -> None:
        self._closed = True
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        if self._pubsub is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._pubsub.aclose()
        if self._node is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._node.aclose()
        for confirmed in self._confirmed.values():
            if not confirmed.done():
                confirmed.cancel()
