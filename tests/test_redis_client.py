"""The service's Redis connections write without a timer, yet a write Redis does not take still
times out, and large writes that must wait for Redis still arrive whole."""

from __future__ import annotations

import asyncio
import os

import pytest
from redis.exceptions import TimeoutError as RedisTimeoutError

from dispatch.redis_client import DirectWriteConnection, DirectWriteUnixConnection, open_redis


async def test_the_client_uses_direct_write_connections(server_urls) -> None:
    client = open_redis(server_urls[1])
    try:
        assert client.connection_pool.connection_class in (
            DirectWriteConnection,
            DirectWriteUnixConnection,
        )
        assert await client.ping()
    finally:
        await client.aclose()


async def test_a_large_value_that_waits_for_redis_arrives_whole(server_urls) -> None:
    client = open_redis(server_urls[1])
    value = os.urandom(8 * 1024 * 1024)  # far over the transport's high-water mark
    try:
        await client.set("test:big", value)
        assert await client.get("test:big") == value
        assert await client.delete("test:big") == 1
    finally:
        await client.aclose()


async def test_a_write_redis_never_reads_times_out(tmp_path) -> None:
    """A server that answers the connection handshake, then stops reading: the write of a large
    command fills the buffers and must fail with redis-py's TimeoutError, not hang."""
    path = str(tmp_path / "stuck.sock")
    reading = asyncio.Event()
    reading.set()
    stuck = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while reading.is_set():
            data = await reader.read(65536)
            if not data:
                return
            # One +OK per command in the chunk (each RESP command is an array: "*<n>\r\n").
            n = data.count(b"\r\n*") + data.startswith(b"*")
            writer.write(b"+OK\r\n" * n)
            await writer.drain()
        stuck.set()
        await asyncio.Event().wait()

    server = await asyncio.start_unix_server(serve, path=path)
    client = open_redis(f"unix://{path}?socket_timeout=0.5")
    try:
        assert await client.set("a", "b")
        reading.clear()
        await client.set("a", "c")  # read by the server, which then stops reading
        await asyncio.wait_for(stuck.wait(), 5)
        started = asyncio.get_running_loop().time()
        with pytest.raises(RedisTimeoutError, match="writing"):
            await client.set("big", os.urandom(16 * 1024 * 1024))
        assert asyncio.get_running_loop().time() - started < 5
    finally:
        await client.aclose()
        server.close()
