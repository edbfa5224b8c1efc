"""Helpers for tests that run the service as real processes."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest

from tests.redis_mode import CLUSTER

ONE_AT_A_TIME = pytest.mark.xdist_group("processes")
"""The heavy multi-process tests (races over two app processes, chaos, SIGKILL series): `make
test` runs the suite on two pytest-xdist workers, and these all go to one of them, so two of them
never load the two cores at once and push each other's requests past the pool's wait."""


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


STARTED: list[ServiceProcess] = []
"""Processes started by the current test, stopped or not: a failing test's report shows each
one's exit status and the end of its log (`tests/conftest.py`), so a failure in CI says whether
a server died or what it logged."""


def kill_leftovers() -> None:
    for proc in list(LIVE):
        proc.kill()


def forget_started() -> list[str]:
    """The current test's processes, described (exit status, last lines of the log), and
    forgotten."""
    described = [proc.describe() for proc in STARTED]
    STARTED.clear()
    return described


SERVICE_WARNINGS = ",".join(
    [
        "default",  # every warning shown (once per place), DeprecationWarning included
        # The one third-party warning pyproject.toml's filterwarnings ignores, and why: there.
        "ignore:Call to deprecated setex.:DeprecationWarning:saq.queue.redis",
    ]
)
"""`PYTHONWARNINGS` for the service processes tests start: what they warn about lands in
their stderr, which `ServiceProcess.warnings()` reads."""

WARNING_LINE = re.compile(r"^.*\b\w*Warning\b.*$", re.MULTILINE)


class ServiceProcess:
    """`dispatch serve` as a child process on the given database and Redis (not yet waited for:
    call `wait_ready()`, or run it in a thread from async code). Its stderr (and its worker
    processes') goes to a temporary file: `warnings()`."""

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
            "PYTHONWARNINGS": SERVICE_WARNINGS,
            **env,
        }
        # Its stderr (its JSON log) is read for warnings when it stops; TEST_SERVICE_LOGS=<dir>
        # keeps it as <dir>/<port>.log as well.
        logs = os.environ.get("TEST_SERVICE_LOGS")
        self.stderr = (
            open(os.path.join(logs, f"{self.port}.log"), "w+b")
            if logs
            else tempfile.TemporaryFile()
        )
        self._stderr_text: str | None = None
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dispatch.cli", "serve", "--port", str(self.port), *args],
            env=full_env,
            stdout=subprocess.DEVNULL,
            stderr=self.stderr,
        )
        LIVE.add(self)
        STARTED.append(self)

    def describe(self, lines: int = 40) -> str:
        """Its port, its exit status (or that it still runs) and the last lines of its log."""
        code = self.proc.poll()
        state = "running" if code is None else f"exited with {code}"
        tail = self._read_stderr().splitlines()[-lines:]
        return "\n".join([f"service on port {self.port}: {state}", *tail])

    def warnings(self) -> list[str]:
        """The lines of its stderr so far that name a warning (`DeprecationWarning: ...`,
        `ResourceWarning: unclosed ...`)."""
        return WARNING_LINE.findall(self._read_stderr())

    def _read_stderr(self) -> str:
        if self._stderr_text is not None:
            return self._stderr_text
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace")

    def _close_stderr(self) -> None:
        if self._stderr_text is None:
            self._stderr_text = self._read_stderr()
            self.stderr.close()

    def wait_ready(self) -> None:
        wait_ready(self.base, self.proc)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self._close_stderr()
        LIVE.discard(self)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
        self._close_stderr()
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
