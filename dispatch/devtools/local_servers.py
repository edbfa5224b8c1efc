"""Private PostgreSQL+PostGIS and Redis servers for the local default and the test suite.

With no `DATABASE_URL` / `REDIS_URL`, the service runs its own servers under the data dir,
listening on unix sockets only (no TCP port, so nothing collides with other servers on the
machine). A server already running there (say `make run` in one terminal, `dispatch token` in
another) is reused and left running; a server this process started is stopped when it exits.
PostgreSQL refuses to run as root, so as root the servers run as an unprivileged system user.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

PG_DATABASE = "dispatch"
PG_USER = "dispatch"
_PR_SET_PDEATHSIG = 1


class LocalServerError(RuntimeError):
    """A private server could not be prepared or started; the message says what to fix."""


def _die_with_parent(sig: int) -> None:
    # Runs in the child between fork and exec: if the service dies, so does its private server.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, sig)


def _service_user() -> pwd.struct_passwd | None:
    """The unprivileged account servers run as when we are root (None: run as ourselves)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise LocalServerError("running as root and no unprivileged 'postgres' or 'nobody' user exists")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def find_pg_bindir() -> Path:
    """The newest installed PostgreSQL (>= 15) server binaries, or `PG_BINDIR` when set."""
    explicit = os.environ.get("PG_BINDIR")
    if explicit:
        return Path(explicit)
    candidates = []
    for path in Path("/usr/lib/postgresql").glob("*/bin/postgres"):
        with contextlib.suppress(ValueError):
            candidates.append((int(path.parent.parent.name), path.parent))
    candidates = [c for c in candidates if c[0] >= 15]
    if not candidates:
        raise LocalServerError(
            "PostgreSQL >= 15 server binaries not found under /usr/lib/postgresql; "
            "run `make deps` (installs postgresql-15-postgis-3) or set DATABASE_URL"
        )
    return max(candidates)[1]


@dataclass
class LocalPostgres:
    """A PostgreSQL cluster under `root` reachable only through a unix socket in `root`."""

    root: Path
    durable: bool = True
    home: Path | None = None
    """The directory the service owns (its data dir): it and the directories between it and
    `root` are opened for the server user to pass through; None → `root`'s parent."""
    owned: bool = field(default=False, init=False)
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def pgdata(self) -> Path:
        return self.root / "data"

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://{PG_USER}@/{PG_DATABASE}?host={self.root.resolve()}"

    def start(self, timeout_s: float = 60.0) -> str:
        bindir = find_pg_bindir()
        user = _service_user()
        self.root.mkdir(parents=True, exist_ok=True)
        if user is not None:
            _make_reachable(self.root, user, self.home or self.root.parent)
        if self._running_pid() is not None:
            return self.url
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb(bindir, user)
        options = [
            "-c", "listen_addresses=",
            "-c", f"unix_socket_directories={self.root.resolve()}",
            "-c", "unix_socket_permissions=0700",
            "-c", "max_connections=200",
            "-c", "shared_buffers=128MB",
        ]  # fmt: skip
        if not self.durable:
            options += ["-c", "fsync=off", "-c", "synchronous_commit=off",
                        "-c", "full_page_writes=off"]  # fmt: skip
        log = open(self.root / "postgres.log", "ab")
        self._proc = subprocess.Popen(
            [str(bindir / "postgres"), "-D", str(self.pgdata.resolve()), *options],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            user=user.pw_uid if user else None,
            group=user.pw_gid if user else None,
            start_new_session=True,
            preexec_fn=lambda: _die_with_parent(signal.SIGINT),
        )
        log.close()
        self.owned = True
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise LocalServerError(f"postgres exited; see {self.root / 'postgres.log'}")
            if self._running_pid() is not None:
                self._ensure_database(bindir)
                return self.url
            time.sleep(0.05)
        self.stop()
        raise LocalServerError(f"postgres did not become ready; see {self.root / 'postgres.log'}")

    def stop(self, timeout_s: float = 30.0) -> None:
        if not self.owned or self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGINT)  # fast shutdown
            try:
                self._proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self.owned = False
        self._proc = None

    def _running_pid(self) -> int | None:
        """PID of a postmaster serving this cluster and ready for connections, else None."""
        try:
            lines = (self.pgdata / "postmaster.pid").read_text().splitlines()
        except (FileNotFoundError, PermissionError):
            return None
        if len(lines) < 8 or not lines[0].strip().isdigit():
            return None
        pid = int(lines[0])
        if not _pid_alive(pid) or lines[7].strip() != "ready":
            return None
        return pid if (self.root / ".s.PGSQL.5432").exists() else None

    def _initdb(self, bindir: Path, user: pwd.struct_passwd | None) -> None:
        if self.pgdata.exists():
            shutil.rmtree(self.pgdata)
        self.pgdata.mkdir(mode=0o700)
        if user is not None:
            os.chown(self.pgdata, user.pw_uid, user.pw_gid)
        cmd = [str(bindir / "initdb"), "-D", str(self.pgdata.resolve()), "-U", PG_USER,
               "-A", "trust", "-E", "UTF8", "--locale=C.UTF-8"]  # fmt: skip
        if not self.durable:
            cmd.append("--no-sync")
        result = subprocess.run(
            cmd,
            capture_output=True,
            user=user.pw_uid if user else None,
            group=user.pw_gid if user else None,
            cwd=self.root,
            check=False,
        )
        if result.returncode != 0:
            raise LocalServerError(
                "initdb failed: " + result.stderr.decode(errors="replace")[-2000:]
            )

    def _ensure_database(self, bindir: Path) -> None:
        psql = [str(bindir / "psql"), "-h", str(self.root.resolve()), "-U", PG_USER,
                "-d", "postgres", "-tAq", "-v", "ON_ERROR_STOP=1"]  # fmt: skip
        exists = subprocess.run(
            [*psql, "-c", f"SELECT 1 FROM pg_database WHERE datname = '{PG_DATABASE}'"],  # noqa: S608
            capture_output=True,
            check=True,
        )
        if exists.stdout.strip() != b"1":
            subprocess.run([*psql, "-c", f"CREATE DATABASE {PG_DATABASE}"],
                           capture_output=True, check=True)  # fmt: skip


def _make_reachable(path: Path, user: pwd.struct_passwd, home: Path) -> None:
    """Let the unprivileged server user reach `path` (owned by it). The directories from `path`
    up to `home` (the service's data dir) are the service's own: they are opened for passing
    through (o+x: searching, not listing or reading), whatever mode `mktemp -d` gave them.
    Above `home`, a directory the user cannot pass is not ours to change: refused, with the
    command that fixes it."""
    os.chown(path, user.pw_uid, user.pw_gid)
    os.chmod(path, 0o700)
    home = home.resolve()
    for parent in path.resolve().parents:
        mode = parent.stat().st_mode
        if mode & 0o001:
            continue
        ours = (parent == home or home in parent.parents) and parent.stat().st_uid == os.geteuid()
        if ours:
            os.chmod(parent, (mode & 0o7777) | 0o001)
            continue
        raise LocalServerError(
            f"{parent} cannot be passed by user {user.pw_name!r}, which runs the private "
            f"PostgreSQL; allow it with `chmod o+x {parent}`, or choose a DISPATCH_DATA_DIR "
            "elsewhere"
        )


@dataclass
class LocalRedis:
    """A Redis server under `root` listening only on `root/redis.sock`."""

    root: Path
    durable: bool = True
    owned: bool = field(default=False, init=False)
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def socket_path(self) -> Path:
        return self.root.resolve() / "redis.sock"

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    def start(self, timeout_s: float = 30.0) -> str:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not Path(binary).exists():
            raise LocalServerError("redis-server not found; run `make deps` or set REDIS_URL")
        self.root.mkdir(parents=True, exist_ok=True)
        if self._ping():
            return self.url
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        args = [binary, "--port", "0", "--unixsocket", str(self.socket_path),
                "--unixsocketperm", "700", "--dir", str(self.root.resolve()),
                "--pidfile", str(self.root.resolve() / "redis.pid"), "--daemonize", "no",
                "--logfile", str(self.root.resolve() / "redis.log"), "--save", "",
                "--appendonly", "yes" if self.durable else "no"]  # fmt: skip
        self._proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=lambda: _die_with_parent(signal.SIGTERM),
        )
        self.owned = True
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise LocalServerError(f"redis-server exited; see {self.root / 'redis.log'}")
            if self._ping():
                return self.url
            time.sleep(0.02)
        self.stop()
        raise LocalServerError("redis-server did not answer PING in time")

    def stop(self, timeout_s: float = 15.0) -> None:
        if not self.owned or self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self.owned = False
        self._proc = None

    def _ping(self) -> bool:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(1.0)
                sock.connect(str(self.socket_path))
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False


@dataclass
class LocalServers:
    """Both private servers, started together; `database_url` / `redis_url` once started."""

    root: Path
    durable: bool = True
    home: Path | None = None
    """The service's data dir, which `root` is inside (see LocalPostgres.home)."""
    postgres: LocalPostgres = field(init=False)
    redis: LocalRedis = field(init=False)

    def __post_init__(self) -> None:
        self.postgres = LocalPostgres(self.root / "pg", durable=self.durable, home=self.home)
        self.redis = LocalRedis(self.root / "redis", durable=self.durable)

    def start(self) -> tuple[str, str]:
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            return self.postgres.start(), self.redis.start()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        self.redis.stop()
        self.postgres.stop()

    def __enter__(self) -> LocalServers:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def redact_url(url: str) -> str:
    """A URL safe to log: any password removed."""
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)
