"""The service under measurement: `python -m bench.serve` (or another module taking `--port`) in
a child process on 127.0.0.1 and a free port, ready once `/readyz` answers 200."""

from __future__ import annotations

import contextlib
import ctypes
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

from bench.lib.machine import REPO


def die_with_parent() -> None:
    """In the server child between fork and exec: if the benchmark dies, so does its server."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(
    url: str, alive: Callable[[], bool], timeout_s: float, tail: Callable[[], str]
) -> None:
    """Poll `url` + `/readyz` until 200; RuntimeError with the log's tail if the process dies
    or the time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError(f"the server exited at start-up:\n{tail()}")
        with contextlib.suppress(OSError, urllib.error.URLError):
            with urllib.request.urlopen(url + "/readyz", timeout=2) as resp:  # noqa: S310
                if resp.status == 200:
                    return
        time.sleep(0.1)
    raise RuntimeError(f"the server did not become ready:\n{tail()}")


class Server:
    """A benchmark server process: `module` run with `--port` and `args`, its output in
    `root/log_name`."""

    def __init__(
        self,
        root: Path,
        env: dict[str, str],
        processes: int = 1,
        module: str = "bench.serve",
        args: Sequence[str] = (),
        log_name: str = "server.log",
        subcommand: Sequence[str] = (),
    ) -> None:
        self.processes = processes
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = root / log_name
        self.env = env
        self.module = module
        self.args = list(args)
        self.subcommand = list(subcommand)
        """Words between the module and `--port` (`dispatch.cli` takes `serve`)."""
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        more = ["--processes", str(self.processes)] if self.processes != 1 else []
        return [sys.executable, "-m", self.module, *self.subcommand, "--port", str(self.port),
                *more, *self.args]  # fmt: skip

    def start(self, timeout_s: float = 90.0) -> None:
        with open(self.log_path, "ab") as log_file:
            self.proc = subprocess.Popen(
                self.command(),
                cwd=REPO,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
                preexec_fn=die_with_parent,
            )
        wait_ready(self.url, self.alive, timeout_s, self.log_tail)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            # SIGTERM: uvicorn shuts down gracefully, as on Ctrl-C (and SIGINT may be ignored
            # when the benchmark was started in the background).
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
