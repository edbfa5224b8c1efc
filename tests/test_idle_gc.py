"""Full collections wait for a moment with no HTTP request in flight (or collect anyway when the
service never goes quiet); the automatic full collection is off only while an app runs."""

from __future__ import annotations

import asyncio
import gc

from dispatch.infra.idle_gc import AUTOMATIC_FULL_OFF, IDLE_GC, IdleCollector


def blocking_app(release: asyncio.Event):
    async def app(scope, receive, send) -> None:
        await release.wait()

    return app


async def test_a_full_collection_waits_until_no_request_is_in_flight() -> None:
    collector = IdleCollector(every_s=3600, patience_s=30)
    release = asyncio.Event()
    app = collector.middleware(blocking_app(release))
    requests = [asyncio.create_task(app({"type": "http"}, None, None)) for _ in range(3)]
    stream = asyncio.create_task(app({"type": "websocket"}, None, None))
    await asyncio.sleep(0)
    assert collector.in_flight == 3  # WebSocket streams are not requests in flight
    collecting = asyncio.create_task(collector.collect_when_idle())
    await asyncio.sleep(0.05)
    assert not collecting.done() and collector.collections == 0
    release.set()
    assert await asyncio.wait_for(collecting, 5) is True
    await asyncio.gather(*requests, stream)
    assert (collector.in_flight, collector.collections, collector.forced) == (0, 1, 0)
    assert await collector.collect_when_idle() is True  # already quiet: at once
    assert collector.collections == 2


async def test_a_service_that_never_goes_quiet_is_collected_anyway() -> None:
    collector = IdleCollector(every_s=3600, patience_s=0.1)
    release = asyncio.Event()
    app = collector.middleware(blocking_app(release))
    stuck = asyncio.create_task(app({"type": "http"}, None, None))
    await asyncio.sleep(0)
    assert await asyncio.wait_for(collector.collect_when_idle(), 5) is False
    assert (collector.collections, collector.forced) == (1, 1)
    release.set()
    await stuck


async def test_start_turns_the_automatic_full_collection_off_and_stop_restores_it() -> None:
    before = gc.get_threshold()
    collector = IdleCollector(every_s=0.05, patience_s=1)
    collector.start()
    try:
        assert gc.get_threshold() == (*before[:2], AUTOMATIC_FULL_OFF)
        # Every `every_s`, the process being quiet; a full collection of the suite's grown heap
        # can take longer than `every_s` itself, so wait for the second one (up to 5 s).
        for _ in range(100):
            if collector.collections >= 2:
                break
            await asyncio.sleep(0.05)
        assert collector.collections >= 2
    finally:
        await collector.stop()
    assert gc.get_threshold() == before


async def test_the_app_counts_its_requests_and_runs_the_collector(client) -> None:
    assert gc.get_threshold()[2] == AUTOMATIC_FULL_OFF  # the app's lifespan started it
    assert (await client.get("/healthz")).status_code == 200
    assert IDLE_GC.in_flight == 0
    await IDLE_GC.collect_when_idle()
    metrics = (await client.get("/metrics")).text
    assert 'dispatch_gc_full_collections_total{moment="quiet"}' in metrics
    assert "dispatch_gc_full_pause_seconds_count" in metrics
