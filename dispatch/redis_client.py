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
import contextlib
from collections import deque
from collections.abc import Iterable
from typing import Any

from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.connection import AbstractConnection, Connection, UnixDomainSocketConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
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
    return Redis(connection_pool=pool, auto_close_connection_pool=True)


class Pipeliner:
    """Commands from concurrent callers sent together on one connection of its own.

    Each call queues its packed command; the first call of a loop iteration schedules a flush,
    which writes everything queued by then in one socket write, and one reader takes the replies
    in order. A burst of requests (a 100-way race for a job: 99 of them only ask Redis whether
    the job is taken) then costs a few system calls instead of two per request; a lone call
    costs what it would on a kept connection.

    For short commands whose reply the caller awaits at once (no blocking commands, no pub/sub).
    A connection error fails every command in flight with it; the next call reconnects.
    """

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool
        self._conn: AbstractConnection | None = None
        self._connecting: asyncio.Lock = asyncio.Lock()
        self._queued: list[bytes] = []
        self._waiting: deque[asyncio.Future[Any]] = deque()
        self._flush_scheduled = False
        self._reader: asyncio.Task[None] | None = None

    async def call(self, *args: Any) -> Any:
        """Send one command (as `execute_command` would) and return its raw reply. Error replies
        raise as redis-py raises them (ResponseError, NoScriptError …)."""
        conn = self._conn
        if conn is None or not conn.is_connected:
            conn = await self._connect()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queued.extend(conn.pack_command(*args))
        self._waiting.append(future)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush, conn)
        return await future

    async def _connect(self) -> AbstractConnection:
        async with self._connecting:
            conn = self._conn
            if conn is not None and conn.is_connected:
                return conn
            if conn is not None:
                self._fail(RedisConnectionError("connection to Redis lost"))
                await conn.disconnect()
            conn = self._pool.make_connection()
            await conn.connect()
            self._conn = conn
            return conn

    def _flush(self, conn: AbstractConnection) -> None:
        self._flush_scheduled = False
        data, self._queued = self._queued, []
        if not data:
            return
        writer = conn._writer  # redis-py's stream writer
        if conn is not self._conn or writer is None or writer.is_closing():
            self._fail(RedisConnectionError("connection to Redis lost"))
            return
        # Buffered by the transport if the socket is full; a Redis that stops reading is caught
        # by the reader's timeout on the replies.
        writer.writelines(data)
        if self._reader is None or self._reader.done():
            self._reader = asyncio.get_running_loop().create_task(self._read(conn))

    async def _read(self, conn: AbstractConnection) -> None:
        while self._waiting:
            try:
                reply = await conn.read_response()
            except ResponseError as exc:  # an error reply: the connection is fine
                reply = exc
            except BaseException as exc:
                self._fail(exc if isinstance(exc, Exception) else RedisConnectionError(str(exc)))
                with contextlib.suppress(Exception):
                    await conn.disconnect()
                if not isinstance(exc, Exception):
                    raise
                return
            future = self._waiting.popleft()
            if future.done():
                continue  # its caller was cancelled; the reply is dropped
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    def _fail(self, exc: BaseException) -> None:
        self._queued.clear()
        waiting, self._waiting = self._waiting, deque()
        for future in waiting:
            if not future.done():
                future.set_exception(exc)

    async def aclose(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(BaseException):
                await self._reader
        self._fail(RedisConnectionError("closed"))
        if self._conn is not None:
            await self._conn.disconnect()
            self._conn = None
