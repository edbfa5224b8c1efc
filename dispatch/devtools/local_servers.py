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
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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


CLUSTER_PRIMARIES = 3


def _free_ports(count: int) -> list[int]:
    """`count` distinct loopback ports free right now (held open together while chosen)."""
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for sock in socks:
            sock.close()


@dataclass
class LocalRedisCluster:
    """A Redis Cluster of `primaries` primaries (no replicas) under `root`, for trying the
    service's cluster path on one machine (`DISPATCH_LOCAL_REDIS=cluster`).

    Cluster nodes announce TCP addresses to clients and talk to each other over a TCP bus, so
    unlike `LocalRedis` they cannot live on unix sockets only: each node listens on a free
    loopback port (its bus on another), and all require a password generated into
    `root/cluster.json` (0600), so other users of the machine cannot use them. `url` is the
    seed node's URL, password included. Not durable: a fresh cluster at every start; durable:
    the nodes restart on the ports and node files of the first start."""

    root: Path
    durable: bool = True
    primaries: int = CLUSTER_PRIMARIES
    owned: bool = field(default=False, init=False)
    ports: list[int] = field(default_factory=list, init=False)
    password: str = field(default="", init=False, repr=False)
    _procs: list[subprocess.Popen[bytes]] = field(default_factory=list, init=False, repr=False)

    @property
    def config_path(self) -> Path:
        return self.root.resolve() / "cluster.json"

    @property
    def url(self) -> str:
        return f"redis://default:{self.password}@127.0.0.1:{self.ports[0]}"

    @property
    def node_urls(self) -> list[str]:
        return [f"redis://default:{self.password}@127.0.0.1:{p}" for p in self.ports]

    def start(self, timeout_s: float = 60.0) -> str:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        cli = shutil.which("redis-cli") or "/usr/bin/redis-cli"
        if not Path(binary).exists() or not Path(cli).exists():
            raise LocalServerError(
                "redis-server / redis-cli not found; run `make deps` or set REDIS_URL"
            )
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o700)
        if self._load() and self._healthy():
            return self.url  # a cluster another process started: reused, left running
        fresh = not (self.durable and self.ports)
        if fresh:
            for child in self.root.iterdir():
                if child.name.startswith("node-"):
                    shutil.rmtree(child, ignore_errors=True)
            ports = _free_ports(2 * self.primaries)
            self.ports = ports[: self.primaries]
            bus = ports[self.primaries :]
            self.password = secrets.token_urlsafe(24)
            fd = os.open(self.config_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                json.dump({"ports": self.ports, "bus": bus, "password": self.password}, fh)
        else:
            bus = json.loads(self.config_path.read_text())["bus"]
        self.owned = True
        try:
            for port, bus_port in zip(self.ports, bus, strict=True):
                self._procs.append(self._spawn(binary, port, bus_port))
            deadline = time.monotonic() + timeout_s
            for port in self.ports:
                while not self._ping(port):
                    self._check_alive()
                    if time.monotonic() > deadline:
                        raise LocalServerError("a cluster node did not answer PING in time")
                    time.sleep(0.02)
            if fresh:
                created = subprocess.run(
                    [cli, "--no-auth-warning", "-a", self.password, "--cluster", "create",
                     *(f"127.0.0.1:{p}" for p in self.ports),
                     "--cluster-replicas", "0", "--cluster-yes"],
                    capture_output=True, check=False, timeout=timeout_s,
                )  # fmt: skip
                if created.returncode != 0:
                    raise LocalServerError(
                        "redis-cli --cluster create failed: "
                        + created.stdout.decode(errors="replace")[-2000:]
                    )
            while not self._healthy():
                self._check_alive()
                if time.monotonic() > deadline:
                    raise LocalServerError("the local Redis Cluster did not reach state ok")
                time.sleep(0.05)
        except BaseException:
            self.stop()
            raise
        return self.url

    def _spawn(self, binary: str, port: int, bus_port: int) -> subprocess.Popen[bytes]:
        node = self.root.resolve() / f"node-{port}"
        node.mkdir(mode=0o700, exist_ok=True)
        args = [binary, "--port", str(port), "--bind", "127.0.0.1",
                "--cluster-enabled", "yes", "--cluster-port", str(bus_port),
                "--cluster-config-file", str(node / "nodes.conf"),
                "--cluster-node-timeout", "5000", "--requirepass", self.password,
                "--masterauth", self.password, "--dir", str(node), "--daemonize", "no",
                "--logfile", str(node / "redis.log"), "--save", "",
                "--appendonly", "yes" if self.durable else "no"]  # fmt: skip
        return subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=lambda: _die_with_parent(signal.SIGTERM),
        )

    def _check_alive(self) -> None:
        for proc in self._procs:
            if proc.poll() is not None:
                raise LocalServerError(f"a cluster node exited; see {self.root}/node-*/redis.log")

    def stop(self, timeout_s: float = 15.0) -> None:
        if not self.owned:
            return
        for proc in self._procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self._procs:
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._procs = []
        self.owned = False

    def _load(self) -> bool:
        try:
            config = json.loads(self.config_path.read_text())
        except (FileNotFoundError, ValueError):
            return False
        self.ports, self.password = list(config["ports"]), str(config["password"])
        return True

    def _command(self, port: int, *command: str) -> object:
        """One command on node `port`, its reply; None when the node does not answer."""
        import redis  # the sync client: a blocking helper for start-up only

        client = redis.Redis(
            host="127.0.0.1", port=port, password=self.password, socket_timeout=1.0,
            socket_connect_timeout=1.0,
        )  # fmt: skip
        try:
            return client.execute_command(*command)
        except redis.RedisError:
            return None
        finally:
            client.close()

    def _ping(self, port: int) -> bool:
        return self._command(port, "PING") is True

    def _healthy(self) -> bool:
        return bool(self.ports) and all(
            b"cluster_state:ok" in bytes(self._command(port, "CLUSTER", "INFO") or b"")  # type: ignore[arg-type]
            for port in self.ports
        )


REDIS_MODES = ("single", "cluster")
"""`DISPATCH_LOCAL_REDIS`: what the private Redis is: one server on a unix socket (`single`, the
default) or a local 3-primary Redis Cluster on loopback ports (`cluster`)."""


def local_redis_mode(raw: str | None) -> str:
    mode = (raw or "single").strip().lower()
    if mode not in REDIS_MODES:
        raise LocalServerError(f"DISPATCH_LOCAL_REDIS must be one of {', '.join(REDIS_MODES)}")
    return mode


@dataclass
class LocalServers:
    """Both private servers, started together; `database_url` / `redis_url` once started.
    `redis_mode="cluster"` starts a local Redis Cluster instead of one Redis (`redis_cluster`
    then says the Redis URL is a cluster seed)."""

    root: Path
    durable: bool = True
    home: Path | None = None
    """The service's data dir, which `root` is inside (see LocalPostgres.home)."""
    redis_mode: str = "single"
    postgres: LocalPostgres = field(init=False)
    redis: Any = field(init=False)
    """A `LocalRedis` or a `LocalRedisCluster` (typed Any: the web framework inspects the
    runtime's fields, and refuses a union of two dataclasses)."""

    def __post_init__(self) -> None:
        self.redis_mode = local_redis_mode(self.redis_mode)
        self.postgres = LocalPostgres(self.root / "pg", durable=self.durable, home=self.home)
        if self.redis_mode == "cluster":
            self.redis = LocalRedisCluster(self.root / "redis-cluster", durable=self.durable)
        else:
            self.redis = LocalRedis(self.root / "redis", durable=self.durable)

    @property
    def redis_cluster(self) -> bool:
        return isinstance(self.redis, LocalRedisCluster)

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
