"""Helpers for tests that run the service as real processes."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

from tests.redis_mode import CLUSTER


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(base: str, proc: subprocess.Popen, within: float = 90.0) -> None:  # type: ignore[type-arg]
    """Wait for `/readyz` to answer 200; fail if the process exits or time runs out."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the server exited during start-up"
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError("the service did not become ready")


LIVE: set[ServiceProcess] = set()
"""Processes started and not yet stopped: the suite kills what a failing test left behind
(`tests/conftest.py`), which would otherwise outlive the session and its servers."""


def kill_leftovers() -> None:
    for proc in list(LIVE):
        proc.kill()


class ServiceProcess:
    """`dispatch serve` as a child process on the given database and Redis (not yet waited for:
    call `wait_ready()`, or run it in a thread from async code)."""

    def __init__(self, urls: tuple[str, str], secret: str, *args: str, **env: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        full_env = {
            **os.environ,
            "DATABASE_URL": urls[0],
            "REDIS_URL": urls[1],
            "DISPATCH_SECRET_KEY": secret,
            "DISPATCH_LOG_LEVEL": "WARNING",
            **({"REDIS_CLUSTER": "1"} if CLUSTER else {}),
            **env,
        }
        # TEST_SERVICE_LOGS=<dir>: each process's stderr (its JSON log) to <dir>/<port>.log.
        logs = os.environ.get("TEST_SERVICE_LOGS")
        err = open(os.path.join(logs, f"{self.port}.log"), "ab") if logs else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dispatch.cli", "serve", "--port", str(self.port), *args],
            env=full_env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
        if logs:
            err.close()  # type: ignore[union-attr]
        LIVE.add(self)

    def wait_ready(self) -> None:
        wait_ready(self.base, self.proc)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        LIVE.discard(self)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
        LIVE.discard(self)


@asynccontextmanager
async def serving(
    urls: tuple[str, str], secret: str, *args: str, **env: str
) -> AsyncIterator[httpx.AsyncClient]:
    """`dispatch serve` as a child process, ready, with an HTTP client on it; stopped after."""
    server = ServiceProcess(urls, secret, *args, **env)
    try:
        await asyncio.to_thread(server.wait_ready)
        async with httpx.AsyncClient(base_url=server.base, timeout=30) as http:
            yield http
    finally:
        server.stop()
