"""Private PostgreSQL+PostGIS and Redis for one benchmark run, in a temporary directory."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

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
