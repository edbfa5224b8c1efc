"""Which Redis the test session runs against: one server (the default) or, with
`TEST_REDIS_CLUSTER=1` (`make test-cluster`), a local 3-primary Redis Cluster started by the
service's own launcher (`DISPATCH_LOCAL_REDIS=cluster`) or given by `TEST_REDIS_URL`."""

from __future__ import annotations

import os

import pytest
from redis.asyncio import Redis

CLUSTER = os.environ.get("TEST_REDIS_CLUSTER", "0") in ("1", "true", "yes")

not_on_cluster = pytest.mark.skipif(
    CLUSTER,
    reason="about the single-server path (raw pipelined connections, the plain client's round "
    "trips), which a cluster client does not take",
)
"""For tests of the non-cluster fast path itself."""


def open_test_redis(url: str) -> Redis:
    """A plain redis-py client for tests: a cluster client when the session runs on one."""
    if CLUSTER:
        from redis.asyncio.cluster import RedisCluster

        return RedisCluster.from_url(url)  # type: ignore[return-value]
    return Redis.from_url(url)


async def flush_all(client: Redis) -> None:
    """FLUSHDB on the server, or on every primary of the cluster."""
    if CLUSTER:
        from redis.asyncio.cluster import RedisCluster

        await client.flushdb(target_nodes=RedisCluster.PRIMARIES)  # type: ignore[call-arg]
        return
    await client.flushdb()


class ChannelListener:
    """A subscriber to one worker channel, as a worker's open stream holds it (sharded pub/sub
    on a cluster, on a connection to the channel's shard)."""

    def __init__(self, redis: Redis, channel: str) -> None:
        from dispatch.infra.redis_client import node_client

        self.channel = channel
        self._node = node_client(redis, channel) if CLUSTER else None
        self.pubsub = (self._node or redis).pubsub()

    async def __aenter__(self) -> ChannelListener:
        if CLUSTER:
            await self.pubsub.ssubscribe(self.channel)
        else:
            await self.pubsub.subscribe(self.channel)
        return self

    async def get_message(self, timeout: float) -> dict | None:  # noqa: ASYNC109
        return await self.pubsub.get_message(ignore_subscribe_messages=True, timeout=timeout)

    async def __aexit__(self, *exc: object) -> None:
        await self.pubsub.aclose()
        if self._node is not None:
            await self._node.aclose()
