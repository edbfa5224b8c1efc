"""A minimal HTTP/1.1 client over raw keep-alive connections: a request's bytes are built once and
written whole, its response read whole, so bursts measure the server, not a client library."""

from __future__ import annotations

import asyncio
import json
import socket
import time

IDLE_MAX_S = 3.0
"""A pooled connection idle this long is not reused (uvicorn closes idle ones after 5 s)."""


def http_request(
    method: str,
    path: str,
    port: int,
    *,
    token: str | None = None,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> bytes:
    """The bytes of one request (built once, sent as is: no client work while measuring)."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    if token is not None:
        lines.append(f"Authorization: Bearer {token}")
    if body is not None:
        lines.append("Content-Type: application/json")
    if method != "GET":
        lines.append(f"Content-Length: {len(body or b'')}")
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")


def grab_job_request(
    port: int, token: str, place: tuple[float, float] | list[float], skill: str, key: str
) -> bytes:
    """POST /v1/jobs of the benchmarks' grab job ("Move a sofa", 50.00) at `place`, asking for
    `skill`, under Idempotency-Key `key`."""
    body = json.dumps({
        "title": "Move a sofa", "category": "moving", "skills": [skill],
        "location": {"lat": place[0], "lng": place[1]}, "mode": "grab", "price_cents": 5000,
    }).encode()  # fmt: skip
    return http_request(
        "POST", "/v1/jobs", port, token=token, body=body, headers={"Idempotency-Key": key}
    )


class Conn:
    """One keep-alive connection; a request is written whole and its response read whole."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.last_used = time.monotonic()

    @classmethod
    async def open(cls, port: int) -> Conn:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(reader, writer)

    def send(self, raw: bytes) -> float:
        sent = time.perf_counter()
        self.writer.write(raw)
        return sent

    async def receive(self) -> tuple[int, bytes, float]:
        """(status, body, perf_counter when the whole response had arrived)."""
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                raise RuntimeError(f"unexpected chunked response:\n{head.decode()}")
        body = await self.reader.readexactly(length) if length else b""
        self.last_used = time.monotonic()
        return status, body, time.perf_counter()

    async def call(self, raw: bytes, timeout_s: float = 30.0) -> tuple[int, bytes, float, float]:
        """(status, body, sent, done)."""
        sent = self.send(raw)
        status, body, done = await asyncio.wait_for(self.receive(), timeout_s)
        return status, body, sent, done

    def close(self) -> None:
        self.writer.close()


class Pool:
    """Idle keep-alive connections to one server, for open-loop requests."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.idle: list[Conn] = []
        self.opened = 0

    async def warm(self, n: int) -> None:
        conns = [await Conn.open(self.port) for _ in range(n)]
        self.opened += n
        for c in conns:
            status, *_ = await c.call(http_request("GET", "/bench/noop", self.port))
            assert status == 204, status
        self.idle.extend(conns)

    async def call(self, raw: bytes) -> tuple[int, bytes, float, float]:
        # The server closes a connection idle for its keep-alive timeout (75 s as served here,
        # uvicorn's default 5 s under bench/serve.py): drop one idle a while before it could be.
        stale = time.monotonic() - IDLE_MAX_S
        while self.idle and (self.idle[-1].reader.at_eof() or self.idle[-1].last_used < stale):
            self.idle.pop().close()
        if self.idle:
            conn = self.idle.pop()
        else:
            conn = await Conn.open(self.port)
            self.opened += 1
        result = await conn.call(raw)
        self.idle.append(conn)
        return result

    def close(self) -> None:
        for c in self.idle:
            c.close()
        self.idle.clear()
