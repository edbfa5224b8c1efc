"""Private PostgreSQL+PostGIS and Redis for one benchmark run, in a temporary directory."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from bench.lib.machine import log
from bench.lib.server import Server
from dispatch.devtools.local_servers import LocalServers
from dispatch.infra.db import migrate


@contextlib.contextmanager
def private_servers(name: str) -> Iterator[tuple[Path, LocalServers, str, str]]:
    """(root, servers, database URL, Redis URL), migrated, fsync off; removed on exit."""
    root = Path(tempfile.mkdtemp(prefix=f"dispatch-bench-{name}-"))
    root.chmod(0o755)  # the unprivileged server user must reach its directory
    servers = LocalServers(root / "servers", durable=False)
    try:
        db_url, redis_url = servers.start()
        migrate(db_url)
        yield root, servers, db_url, redis_url
    finally:
        servers.stop()
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def one_server(name: str, secret: str) -> Iterator[tuple[Server, str]]:
    """(server, database URL): private servers and one `bench.serve` process on them, its last
    log lines printed if the benchmark fails, stopped on exit."""
    with private_servers(name) as (root, _servers, db_url, redis_url):
        env = {"DATABASE_URL": db_url, "REDIS_URL": redis_url, "DISPATCH_SECRET_KEY": secret,
               "DISPATCH_LOG_LEVEL": "WARNING"}  # fmt: skip
        server = Server(root, {**os.environ, **env})
        server.start()
        try:
            yield server, db_url
        except BaseException:
            log(f"the server's last words:\n{server.log_tail(80)}")
            raise
        finally:
            server.stop()
