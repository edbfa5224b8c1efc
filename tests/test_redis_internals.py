"""The parts of redis-py that are not its public API and that `dispatch/infra/wire.py` and
`dispatch/infra/redis_client.py` rely on. redis-py is pinned to the major version they were
written against (pyproject.toml); when an upgrade changes any of these, this fails first and says
which, before a fast path breaks in production."""

from __future__ import annotations

import asyncio
import inspect

import redis
from redis._parsers.base import BaseParser
from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import NoScriptError, ResponseError

WRITTEN_AGAINST = 8


def test_redis_py_is_the_major_version_the_fast_paths_were_written_against() -> None:
    major = int(redis.__version__.split(".")[0])
    assert major == WRITTEN_AGAINST, (
        f"redis-py {redis.__version__}: dispatch/infra/wire.py and redis_client.py read its "
        f"internals as of {WRITTEN_AGAINST}.x; check them (this file lists what they use), "
        "then raise WRITTEN_AGAINST and the pin in pyproject.toml"
    )


async def test_a_connection_keeps_its_asyncio_streams_where_we_read_them(server_urls) -> None:
    client = Redis.from_url(server_urls[1])
    try:
        conn = client.connection_pool.make_connection()
        await conn.connect()
        assert isinstance(conn._writer, asyncio.StreamWriter), (
            "AbstractConnection._writer is no longer the asyncio StreamWriter that "
            "Pipeliner._flush and _DirectWrite.send_packed_command write to"
        )
        assert isinstance(conn._reader, asyncio.StreamReader), (
            "AbstractConnection._reader is no longer the asyncio StreamReader Pipeliner._read "
            "reads replies from"
        )
        assert conn.is_connected and isinstance(conn.socket_timeout, float | int | None)
        await conn.disconnect()
    finally:
        await client.aclose()


def test_the_methods_we_override_or_call_keep_their_shape() -> None:
    params = list(inspect.signature(AbstractConnection.send_packed_command).parameters)
    assert params[:3] == ["self", "command", "check_health"], (
        "send_packed_command(command, check_health) changed: _DirectWrite overrides it"
    )
    assert "nowait" in inspect.signature(AbstractConnection.disconnect).parameters
    assert inspect.iscoroutinefunction(AbstractConnection.check_health)


def test_error_replies_are_parsed_into_redis_py_exceptions() -> None:
    """Pipeliner hands hiredis redis-py's own error-reply parser."""
    assert isinstance(BaseParser.parse_error("NOSCRIPT No matching script"), NoScriptError)
    assert isinstance(BaseParser.parse_error("ERR something"), ResponseError)
