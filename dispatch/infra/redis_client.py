"""The Redis client the service uses: redis-py, with connections that write without a timer.

redis-py (8.x) guards every socket write with `asyncio.wait_for(..., socket_timeout)`, which on
Python 3.11 wraps the write in a new Task: about 55 us of CPU per command on the benchmark
machine, a third of a small command's client cost. A write into a socket whose buffer has room
completes at once and cannot hang, so these connections write directly and keep the timeout
only for the case where it can matter: the transport's buffer is over its high-water mark and
the write must wait for Redis to read. Reads keep redis-py's timeout unchanged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.connection import Connection, UnixDomainSocketConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError


class _DirectWrite:
    """Mixed into redis-py's connection classes ahead of them."""

    async def send_packed_command(
        self, command: bytes | str | Iterable[bytes], check_health: bool = True
    ) -> None:
        conn: Any = self
        writer = conn._writer
        if not conn.is_connected or writer is None:
            await super().send_packed_command(command, check_health)  # type: ignore[misc]
            return
        if check_health:
            await conn.check_health()
        if isinstance(command, str):
            command = command.encode()
        if isinstance(command, bytes):
            command = [command]
        try:
            writer.writelines(command)
            transport = writer.transport
            if transport.get_write_buffer_size() > transport.get_write_buffer_limits()[1]:
                # Redis is not reading fast enough: this is the wait the timeout is for.
                await asyncio.wait_for(writer.drain(), conn.socket_timeout)
            elif transport.is_closing():
                await writer.drain()  # raises the connection's error
        except TimeoutError:
            await conn.disconnect(nowait=True)
            raise RedisTimeoutError("Timeout writing to socket") from None
        except OSError as e:
            await conn.disconnect(nowait=True)
            raise RedisConnectionError(f"Error while writing to socket: {e}") from e
        except BaseException:
            # Part of the command may have been written: the connection is in an unknown state.
            await conn.disconnect(nowait=True)
            raise


class DirectWriteConnection(_DirectWrite, Connection):
    pass


class DirectWriteUnixConnection(_DirectWrite, UnixDomainSocketConnection):
    pass


def open_redis(url: str, *, cluster: bool = False, max_connections: int = 256) -> Redis:
    """A client for `url` (redis://, rediss:// or unix://) with direct-write connections; a
    cluster client (plain redis-py) when `cluster`."""
    if cluster:
        from redis.asyncio.cluster import RedisCluster

        return RedisCluster.from_url(url)  # type: ignore[return-value]
    pool = ConnectionPool.from_url(url, max_connections=max_connections)
    if pool.connection_class is Connection:
        pool.connection_class = DirectWriteConnection
    elif pool.connection_class is UnixDomainSocketConnection:
        pool.connection_class = DirectWriteUnixConnection
    # The client owns the pool: `aclose()` disconnects its connections (redis-py's way since
    # 5.0.1; `Redis(connection_pool=..., auto_close_connection_pool=True)` warned and left them
    # open).
    return Redis.from_pool(pool)


def community_tag(community_id: int) -> str:
    """The Redis Cluster hash tag of one community's keys (its live index, its ops stream):
    they share one slot, so a command or script over several of them never spans slots."""
    return f"{{c:{community_id}}}"


def is_cluster(client: object) -> bool:
    """Whether `client` is a Redis Cluster client (or one's pipeline)."""
    from redis.asyncio.cluster import ClusterPipeline, RedisCluster

    return isinstance(client, RedisCluster | ClusterPipeline)


def node_client(cluster: Any, key: str | bytes) -> Redis:
    """A plain client on the cluster primary that owns `key`'s slot, for what the cluster
    client does not do as the service needs (one sharded pub/sub connection of its own). It
    follows no redirections: if the slot moves, its commands fail with MOVED."""
    node = cluster.get_node_from_key(key)
    if node is None:
        raise RedisConnectionError(f"no cluster node serves the slot of {key!r}")
    kwargs = {k: v for k, v in node.connection_kwargs.items() if k != "event_dispatcher"}
    pool = ConnectionPool(connection_class=node.connection_class, **kwargs)
    return Redis.from_pool(pool)
