"""The service's Redis connections write without a timer, yet a write Redis does not take still
times out, and large writes that must wait for Redis still arrive whole; the pipeliner's
concurrent calls share writes, each gets its own reply, errors and cancellations stay contained,
and a killed connection is replaced."""

from __future__ import annotations

import asyncio
import os

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from dispatch.infra.redis_client import (
    DirectWriteConnection,
    DirectWriteUnixConnection,
    open_redis,
)
from dispatch.infra.wire import Pipeliner, pack


def test_pack_writes_what_redis_py_writes() -> None:
    from redis.asyncio.connection import Connection

    conn = Connection()
    for words in (
        ("PING",),
        ("EVALSHA", "a" * 40, 1, "offer:{grab}:7", 12, 1763942400.123456, 30000, "claim:{grab}:"),
        ("SET", b"k\r\n\x00", "väl ü", -3, 0.1),
        ("ECHO", ""),
    ):
        assert pack(*words) == b"".join(conn.pack_command(*words)), words


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
    done = asyncio.Event()
    handlers: list[asyncio.Task[None]] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handlers.append(asyncio.current_task())  # type: ignore[arg-type]
        try:
            while reading.is_set():
                data = await reader.read(65536)
                if not data:
                    return
                # One +OK per command in the chunk (each RESP command is an array: "*<n>\r\n").
                n = data.count(b"\r\n*") + data.startswith(b"*")
                writer.write(b"+OK\r\n" * n)
                await writer.drain()
            stuck.set()
            await done.wait()
        finally:
            writer.close()

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
        done.set()  # the handler closes its end (3.11's server.close() leaves connections open)
        await asyncio.gather(*handlers, return_exceptions=True)


@pytest.fixture
async def pipeliner(server_urls):
    client = open_redis(server_urls[1])
    p = Pipeliner(client.connection_pool)
    yield p, client
    await p.aclose()
    await client.aclose()


async def test_concurrent_calls_share_writes_and_get_their_own_replies(
    pipeliner, monkeypatch
) -> None:
    p, client = pipeliner
    flushes = []
    original = Pipeliner._flush

    def flush(self, conn):
        flushes.append(len(self._queued))
        original(self, conn)

    await client.delete("test:n")
    assert await p.call("PING") == b"PONG"  # connected
    monkeypatch.setattr(Pipeliner, "_flush", flush)
    replies = await asyncio.gather(*(p.call("ECHO", f"m{i}") for i in range(300)))
    assert replies == [f"m{i}".encode() for i in range(300)]
    assert flushes == [300]  # one socket write for all 300 commands
    counts = await asyncio.gather(*(p.call("INCR", "test:n") for _ in range(50)))
    assert sorted(counts) == list(range(1, 51)) and counts == sorted(counts)
    await client.delete("test:n")


async def test_an_error_reply_fails_only_its_own_command(pipeliner) -> None:
    p, client = pipeliner
    await client.delete("test:s")
    await client.set("test:s", "x")
    first, wrong, last = await asyncio.gather(
        p.call("GET", "test:s"),
        p.call("HGET", "test:s", "f"),  # WRONGTYPE
        p.call("GET", "test:s"),
        return_exceptions=True,
    )
    assert first == b"x" and last == b"x"
    assert isinstance(wrong, ResponseError) and "WRONGTYPE" in str(wrong)
    with pytest.raises(NoScriptError):
        await p.call("EVALSHA", "0" * 40, 0)
    assert await p.call("GET", "test:s") == b"x"
    await client.delete("test:s")


async def test_a_cancelled_caller_does_not_shift_the_replies(pipeliner) -> None:
    p, _ = pipeliner
    assert await p.call("PING") == b"PONG"  # connected
    first = asyncio.create_task(p.call("ECHO", "a"))
    second = asyncio.create_task(p.call("ECHO", "b"))
    await asyncio.sleep(0)  # both queued
    first.cancel()
    assert await second == b"b"
    assert await p.call("ECHO", "c") == b"c"


async def test_a_killed_connection_fails_its_calls_and_the_next_call_reconnects(pipeliner) -> None:
    p, client = pipeliner
    assert await p.call("CLIENT", "SETNAME", "pipeliner-test") == b"OK"
    assert await client.client_kill_filter(_type="normal", skipme=True) >= 1
    outcomes = await asyncio.gather(
        *(p.call("ECHO", "x") for _ in range(5)), return_exceptions=True
    )
    assert all(o == b"x" or isinstance(o, RedisConnectionError) for o in outcomes), outcomes
    assert await p.call("ECHO", "again") == b"again"


async def test_a_redis_that_stops_answering_times_out_and_the_next_call_reconnects(
    tmp_path,
) -> None:
    """Replies that never come fail every waiting call with redis-py's TimeoutError within the
    socket timeout; a reply split across reads arrives whole; the next call reconnects."""
    path = str(tmp_path / "mute.sock")
    answering = asyncio.Event()
    answering.set()
    connections = 0
    handlers: list[asyncio.Task[None]] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        handlers.append(asyncio.current_task())  # type: ignore[arg-type]
        try:
            while data := await reader.read(65536):
                if not answering.is_set():
                    continue
                n = data.count(b"\r\n*") + data.startswith(b"*")
                reply = b"$5\r\nhello\r\n" * n
                for i in range(len(reply)):  # one byte at a time: replies split across reads
                    writer.write(reply[i : i + 1])
                    await writer.drain()
        finally:
            writer.close()

    server = await asyncio.start_unix_server(serve, path=path)
    client = open_redis(f"unix://{path}?socket_timeout=0.5")
    p = Pipeliner(client.connection_pool)
    try:
        assert await asyncio.gather(p.call("GET", "a"), p.call("GET", "b")) == [b"hello"] * 2
        answering.clear()
        started = asyncio.get_running_loop().time()
        outcomes = await asyncio.gather(
            *(p.call("GET", "a") for _ in range(3)), return_exceptions=True
        )
        assert all(isinstance(o, RedisTimeoutError) for o in outcomes), outcomes
        assert asyncio.get_running_loop().time() - started < 5
        answering.set()
        assert await p.call("GET", "a") == b"hello"
        assert connections == 2
    finally:
        await p.aclose()
        await client.aclose()
        server.close()
        # Each handler ends when the client's side closes, and closes its own end.
        await asyncio.wait_for(asyncio.gather(*handlers, return_exceptions=True), 5)
