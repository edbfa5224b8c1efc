"""The launcher's local Redis Cluster (`DISPATCH_LOCAL_REDIS=cluster`): three primaries covering
every slot on loopback ports, behind a password; a second launcher on the same directory reuses
it and leaves it running; the one that started it stops it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisClusterException

from dispatch.devtools.local_servers import LocalRedisCluster, LocalServerError, local_redis_mode

pytestmark = pytest.mark.skipif(
    shutil.which("redis-cli") is None, reason="redis-cli (redis-tools) is not installed"
)


async def test_local_cluster_starts_is_reused_and_stops(tmp_path: Path) -> None:
    cluster = LocalRedisCluster(tmp_path / "rc", durable=False)
    url = cluster.start()
    try:
        assert url.startswith("redis://default:") and len(cluster.ports) == 3
        assert (tmp_path / "rc" / "cluster.json").stat().st_mode & 0o077 == 0
        client = RedisCluster.from_url(url)
        try:
            await client.initialize()
            assert len(client.get_primaries()) == 3
            assert len(client.nodes_manager.slots_cache) == 16384  # every slot served
            await client.set("{c:1}:probe", "1")
            assert await client.get("{c:1}:probe") == b"1"
        finally:
            await client.aclose()
        with pytest.raises(RedisClusterException, match="authenticated"):
            plain = RedisCluster(host="127.0.0.1", port=cluster.ports[0])
            try:
                await plain.initialize()
            finally:
                await plain.aclose()

        again = LocalRedisCluster(tmp_path / "rc", durable=False)
        assert again.start() == url and not again.owned
        again.stop()  # not its own: left running
        assert cluster._healthy()
    finally:
        cluster.stop()
    assert not cluster._ping(cluster.ports[0])
    with pytest.raises(RedisClusterException, match="reachable"):
        client = RedisCluster.from_url(url)
        try:
            await client.initialize()
        finally:
            await client.aclose()


def test_unknown_local_redis_mode_is_refused() -> None:
    assert local_redis_mode(None) == "single" and local_redis_mode("Cluster") == "cluster"
    with pytest.raises(LocalServerError):
        local_redis_mode("sentinel")
