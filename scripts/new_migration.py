"""Autogenerate an Alembic revision against a throwaway private server migrated to head.

uv run python scripts/new_migration.py "add offers"
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from alembic import command

from dispatch.devtools.local_servers import LocalServers
from dispatch.infra.db import alembic_config, migrate


def main(message: str) -> None:
    root = Path(tempfile.mkdtemp(prefix="dispatch-migration-"))
    root.chmod(0o755)
    servers = LocalServers(root, durable=False)
    try:
        db, _ = servers.start()
        migrate(db)
        command.revision(alembic_config(db), message=message, autogenerate=True)
    finally:
        servers.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main(" ".join(sys.argv[1:]) or "change")
