"""`bench/serve.py`'s app served as `dispatch serve` serves it, with wall-clock probes around the
dispatch code paths for `bench/dispatch.py --probe` (investigation only; the measured runs use
`--no-probe`: the same app and server, no probes).

    DATABASE_URL=… REDIS_URL=… .venv/bin/python -m bench.dispatch_probe --port 8123 [--no-probe]

Before the app is built, selected service functions are wrapped (monkeypatched in this process;
no service code changes) so each request to `/v1/jobs…`, `/v1/offers…` and `/bench/noop-auth`
records, with `time.perf_counter()` (CLOCK_MONOTONIC: comparable with the load generator's
clock on the same machine):

- when the app got it and when its response started (an outer ASGI wrapper);
- the wall time spent inside each wrapped function (nested ones overlap their callers);
- PostgreSQL round trips (statements through asyncpg, and COMMIT/ROLLBACK) and Redis round
  trips (commands and pipelines), with the wall time spent waiting on them.

Outside requests: every run of the service's background work (the outbox relay's batches, the
position write-behind, SAQ's wake-ups and upkeep, the overdue sweep) with its start and wall
time, and every event-loop stall over 4 ms (a 1 ms ticker that woke late).

And, for the worker streams: when each job's first offer event was published, and when the
first offer message for it was written to a WebSocket; and every garbage collection's pause.

`GET /bench/probe` returns everything recorded since the last call, and forgets it.
"""

from __future__ import annotations

import contextvars
import functools
import json
import time
from collections.abc import Callable, Sequence
from typing import Any

from litestar import get

REQ: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "bench_probe_request", default=None
)
RECORDS: list[dict[str, Any]] = []
PUBLISHED: dict[int, float] = {}
"""job id -> when its first offer event's PUBLISH was sent (after the commit)."""
WS_SENT: dict[int, float] = {}
"""job id -> when its first offer message was written to a worker's WebSocket."""
GC_PAUSES: list[tuple[int, float, float, int]] = []
"""(generation, start, seconds, objects collected) of every garbage collection."""
BACKGROUND: list[tuple[str, float, float]] = []
"""(what, start, seconds) of background work run outside any probed request."""
STALLS: list[tuple[float, float]] = []
"""(when the loop got back, seconds it was late) for every tick of the 1 ms ticker late by more
than STALL_S."""
STALL_S = 0.004
PROBED_PREFIXES = ("/v1/jobs", "/v1/offers", "/bench/noop-auth")
_gc_started = 0.0


def record_gc(phase: str, info: dict[str, Any]) -> None:
    """A `gc.callbacks` entry: every collection's pause into GC_PAUSES (the servers' probes and
    the load generator both use it)."""
    global _gc_started
    now = time.perf_counter()
    if phase == "start":
        _gc_started = now
    else:
        GC_PAUSES.append(
            (
                int(info.get("generation", -1)),
                _gc_started,
                now - _gc_started,
                int(info.get("collected", 0)),
            )
        )


def _note(rec: dict[str, Any], name: str, seconds: float) -> None:
    total, count = rec["phases"].get(name, (0.0, 0))
    rec["phases"][name] = (total + seconds, count + 1)


def timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wall time inside fn, summed per request under `name`; "{name}@" puts the name of the
    innermost timed caller after the @ (a flush inside `_next_wave`, say)."""

    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        rec = REQ.get()
        if rec is None:
            return await fn(*args, **kwargs)
        label = name + rec["stack"][-1] if name.endswith("@") else name
        rec["stack"].append(label)
        t0 = time.perf_counter()
        try:
            return await fn(*args, **kwargs)
        finally:
            _note(rec, label, time.perf_counter() - t0)
            rec["stack"].pop()

    return wrapper


def counted(kind: str, fn: Callable[..., Any], what: Callable[..., str]) -> Callable[..., Any]:
    """A round trip to PostgreSQL or Redis: counted, its wall time summed, and what it was
    (the statement's or command's start) listed."""

    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        rec = REQ.get()
        if rec is None:
            return await fn(*args, **kwargs)
        label = what(*args)  # before the call: a pipeline forgets its commands once sent
        t0 = time.perf_counter()
        try:
            return await fn(*args, **kwargs)
        finally:
            dt = time.perf_counter() - t0
            n, s = rec[kind]
            rec[kind] = (n + 1, s + dt)
            rec["trips"].append((kind, label, round(1000 * dt, 3)))

    return wrapper


def _sql(_cursor: Any, operation: Any = "", *_: Any) -> str:
    return " ".join(str(operation).split())[:90]


def _end(_conn: Any, fn: Any = None, *_: Any) -> str:
    return getattr(fn, "__name__", "commit/rollback").upper()


def _command(_client: Any, *args: Any, **_: Any) -> str:
    return " ".join(str(a)[:30] for a in args[:2])


def _pipeline(pipe: Any, *_: Any) -> str:
    names = [str(c[0][0]) for c in getattr(pipe, "command_stack", [])]
    return f"pipeline of {len(names)}: " + ", ".join(
        f"{names.count(k)} {k}" for k in sorted(set(names))
    )


def note_published(items: list[tuple[int, Any]]) -> None:
    from dispatch.grab import events

    now = time.perf_counter()
    for _, event in items:
        if isinstance(event, events.OfferSent):
            PUBLISHED.setdefault(event.offer.job_id, now)


def background(name: str, fn: Callable[..., Any], detached: bool = False) -> Callable[..., Any]:
    """Start and wall time of each call made outside a probed request. `detached`: work that
    runs in a task a request started (so it inherits the request's context) but after it, such
    as the dispatch log's flush: always recorded as background, its round trips not counted as
    the request's."""

    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        if REQ.get() is not None and not detached:
            return await fn(*args, **kwargs)
        token = REQ.set(None)
        t0 = time.perf_counter()
        try:
            return await fn(*args, **kwargs)
        finally:
            BACKGROUND.append((name, t0, time.perf_counter() - t0))
            REQ.reset(token)

    return wrapper


_TICKER: list[Any] = []


async def start_stall_ticker() -> None:
    import asyncio

    _TICKER.append(asyncio.get_running_loop().create_task(stall_ticker()))


async def stall_ticker() -> None:
    """Sleeps 1 ms at a time; a wake-up more than STALL_S late means something held the loop
    (or the process was not scheduled)."""
    import asyncio

    loop = asyncio.get_running_loop()
    while True:
        before = loop.time()
        await asyncio.sleep(0.001)
        late = loop.time() - before - 0.001
        if late > STALL_S:
            STALLS.append((time.perf_counter(), late))


def patch(owner: Any, attr: str, make: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
    setattr(owner, attr, make(getattr(owner, attr)))


def install() -> None:
    import gc

    gc.callbacks.append(record_gc)
    from redis.asyncio.client import Pipeline, Redis
    from saq.queue.redis import RedisQueue
    from sqlalchemy.dialects.postgresql import asyncpg as sa_asyncpg
    from sqlalchemy.ext.asyncio.session import AsyncSession, AsyncSessionTransaction

    import dispatch.grab.dispatcher as grab_dispatcher
    import dispatch.jobs.queries as job_queries
    import dispatch.jobs.service as job_service
    from dispatch.grab import events
    from dispatch.grab.dispatcher import Dispatcher
    from dispatch.infra import idempotency
    from dispatch.infra.timers import Timers
    from dispatch.jobs.service import JobService
    from dispatch.ops.dispatchlog import DispatchLog
    from dispatch.workers.positions import PositionSink
    from dispatch.workers.service import WorkerService
    from geo.live.redis import RedisLiveIndex
    from notifications.relay import Relay

    for name in ("open_job", "_next_wave", "_rank", "_send_wave", "run_after", "accept",
                 "_accept_in_db", "_retire_offers", "complete"):  # fmt: skip
        if not hasattr(Dispatcher, name):
            continue
        patch(Dispatcher, name, lambda fn, n=name: timed(f"Dispatcher.{n}", fn))
    for owner, names in (
        (Relay, ("drain_once",)),
        (PositionSink, ("flush",)),
        (Dispatcher, ("advance", "sweep_overdue")),
        (RedisQueue, ("schedule", "sweep", "stats")),
    ):
        for name in names:
            if hasattr(owner, name):
                patch(owner, name, lambda fn, n=f"{owner.__name__}.{name}": background(n, fn))
    patch(JobService, "build", lambda fn: timed("JobService.build", fn))
    patch(JobService, "store", lambda fn: timed("JobService.store", fn))
    patch(Dispatcher, "_ranking_rows", lambda fn: staticmethod(timed("ranking records", fn)))
    patch(DispatchLog, "flush", lambda fn: background("DispatchLog.flush", fn, detached=True))
    patch(WorkerService, "publish", lambda fn: timed("WorkerService.publish", fn))
    patch(RedisLiveIndex, "search", lambda fn: timed("RedisLiveIndex.search", fn))
    # Bound into the dispatcher when the runtime opens: patched before the app is built.
    patch(Timers, "schedule", lambda fn: timed("Timers.schedule", fn))
    patch(job_queries, "offer_counts", lambda fn: timed("offer_counts", fn))
    patch(grab_dispatcher, "job_view", lambda fn: timed("job_view", fn))
    patch(job_service, "job_view", lambda fn: timed("job_view", fn))
    patch(AsyncSession, "flush", lambda fn: timed("flush@", fn))
    patch(
        AsyncSessionTransaction,
        "__aexit__",
        lambda fn: timed("transaction end (flush + COMMIT)", fn),
    )

    original_run_once = idempotency.run_once

    async def run_once(session: Any, user_id: int, key: str, print_: bytes, produce: Any) -> Any:
        return await timed("idempotency.run_once", original_run_once)(
            session, user_id, key, print_, timed("run_once.produce", produce)
        )

    idempotency.run_once = run_once

    original_to_workers = events.EventBus.to_workers

    async def to_workers(self: Any, items: list[tuple[int, Any]]) -> Any:
        # When the PUBLISH pipeline is sent (its reply may reach this task after a subscriber's
        # stream has already forwarded the message).
        note_published(items)
        return await timed("EventBus.to_workers", original_to_workers)(self, items)

    events.EventBus.to_workers = to_workers  # type: ignore[method-assign]
    original_publish_in = getattr(events.EventBus, "publish_in", None)
    if original_publish_in is not None:
        # Dispatcher.run_after queues the PUBLISHes on its one after-commit pipeline, sent
        # right after: the time they are queued stands for the time they are sent.
        def publish_in(pipe: Any, items: list[tuple[int, Any]]) -> None:
            note_published(items)
            original_publish_in(pipe, items)

        events.EventBus.publish_in = staticmethod(publish_in)  # type: ignore[method-assign]

    cursor = sa_asyncpg.AsyncAdapt_asyncpg_cursor
    patch(cursor, "_prepare_and_execute", lambda fn: counted("db", fn, _sql))
    patch(cursor, "_executemany", lambda fn: counted("db", fn, _sql))
    patch(sa_asyncpg.AsyncAdapt_asyncpg_connection, "_call_and_discard",
          lambda fn: counted("db", fn, _end))  # fmt: skip
    patch(Redis, "execute_command", lambda fn: counted("redis", fn, _command))
    patch(Pipeline, "execute", lambda fn: counted("redis", fn, _pipeline))

    from litestar.connection import WebSocket

    original_send_text = WebSocket.send_text

    async def send_text(self: Any, data: Any, *args: Any, **kwargs: Any) -> None:
        await original_send_text(self, data, *args, **kwargs)
        if '"type":"offer"' in data:
            now = time.perf_counter()
            WS_SENT.setdefault(int(json.loads(data)["offer"]["job_id"]), now)

    WebSocket.send_text = send_text  # type: ignore[method-assign]


def wrap_asgi(app: Any) -> Any:
    async def probed(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(PROBED_PREFIXES):
            await app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        rec: dict[str, Any] = {
            "method": scope["method"],
            "path": scope["path"],
            "key": headers.get(b"idempotency-key", b"").decode(),
            "tag": headers.get(b"x-bench", b"").decode(),
            "t0": time.perf_counter(),
            "t_resp": 0.0,
            "status": 0,
            "phases": {},
            "db": (0, 0.0),
            "redis": (0, 0.0),
            "trips": [],
            "stack": ["request"],
        }

        async def send_probed(message: Any) -> None:
            if message["type"] == "http.response.start":
                rec["t_resp"] = time.perf_counter()
                rec["status"] = message["status"]
            await send(message)

        token = REQ.set(rec)
        try:
            await app(scope, receive, send_probed)
        finally:
            REQ.reset(token)
            RECORDS.append(rec)

    return probed


def heap_census(top: int = 8) -> dict[str, Any]:
    """Objects the garbage collector tracks (what a full collection walks), by type."""
    import gc
    from collections import Counter

    objects = gc.get_objects()
    by_type = Counter(f"{type(o).__module__}.{type(o).__qualname__}" for o in objects)
    return {"tracked": len(objects), "top": by_type.most_common(top)}


@get("/bench/probe", opt={"exclude_from_auth": True}, include_in_schema=False)
async def probe_dump() -> dict[str, Any]:
    out = {
        "requests": list(RECORDS),
        "published": {str(k): v for k, v in PUBLISHED.items()},
        "ws_sent": {str(k): v for k, v in WS_SENT.items()},
        "gc": list(GC_PAUSES),
        "heap": heap_census(),
        "background": list(BACKGROUND),
        "stalls": list(STALLS),
    }
    BACKGROUND.clear()
    STALLS.clear()
    GC_PAUSES.clear()
    RECORDS.clear()
    PUBLISHED.clear()
    WS_SENT.clear()
    return out


def main(argv: Sequence[str] | None = None) -> int:
    import argparse
    from dataclasses import replace

    from bench.serve import build_app
    from dispatch.cli import run_server
    from dispatch.infra.settings import Settings

    parser = argparse.ArgumentParser(
        prog="bench.dispatch_probe", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log-level", default="WARNING")
    parser.add_argument(
        "--no-probe",
        action="store_true",
        help="serve bench.serve's app (with its no-op routes) without any probe",
    )
    args = parser.parse_args(argv)

    if not args.no_probe:
        install()
    settings = replace(Settings.from_env(), log_level=args.log_level.upper())
    app = build_app(settings)
    if not args.no_probe:
        app.register(probe_dump)
        app.on_startup.append(start_stall_ticker)
    # Served exactly as `dispatch serve` serves (dispatch.cli.run_server: websockets-sansio,
    # 75 s keep-alive), unlike bench/serve.py's own uvicorn.run.
    run_server(app if args.no_probe else wrap_asgi(app), args.host, args.port,
               log_level=args.log_level.lower())  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
