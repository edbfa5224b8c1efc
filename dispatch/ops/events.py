"""Operators' live events: the one writer (`emit`, `append`) and the reader behind the event
stream (`OpsFeed`).

Each community has a Redis stream, capped at about `STREAM_MAXLEN` entries and, once positions
flow, at about `STREAM_MAX_AGE_S` of age (`PositionFeed`: a positions entry carries every
worker who pinged in that second, tens of kB in a busy city, so a cap by count alone let the
stream reach hundreds of MB; the soak measured Redis growing 3.3 MB a minute). An event is appended
once the transaction that caused it commits (`emit`, through `infra.aftercommit`), or by a writer
already past its commit, in its own pipeline (`append`). The stream entry's id is the SSE `id:`,
so a console that reconnects with `Last-Event-ID` receives what it missed while the stream still
holds it; the snapshot is the truth to start from, the events are news of changes. Redis Streams
rather than pub/sub for that resume; rather than a table for the write path's sake (an event is
one command after commit, never a row in the transaction of an accept).

Events (`type`, then `data`): `alert` (every raised alert, SOS first among them by severity),
`checkin`, `ladder_step` (each step of the check-in ladder as it happens), `job` (a job's
status as it changes, and each wave with its reach and who was offered), `positions` (workers'
latest accepted positions, at most one per worker a second: `PositionFeed`), `worker` (a worker
went on or off line or was verified). Positions, workers and jobs carry their H3 cell
(`CELL_RES`), so a console recounts supply and demand per cell between snapshots.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import h3
from redis.asyncio import Redis
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dispatch.communities.service import CommunityService
from dispatch.core.errors import Forbidden, Unauthorized
from dispatch.identity.auth import STREAM_SCOPE, issue_token, principal_of_token
from dispatch.identity.phones import PHONE_IN_TEXT
from dispatch.identity.principal import Principal
from dispatch.infra import aftercommit
from dispatch.infra.logs import log
from dispatch.infra.redis_client import community_tag
from dispatch.models import Job, Worker
from geo.shapes import wkb_to_latlng

CELL_RES = 8
"""The H3 resolution of the console's supply and demand cells: positions, workers and jobs in
the stream carry their cell at it."""
STREAM_MAXLEN = 10_000
STREAM_MAX_AGE_S = 300
"""How far back a console that reconnects can resume; one that was away longer resyncs."""
REDIS = "redis"
"""The name the Redis client is bound under on the sessionmaker (`aftercommit.bind`)."""
BLOCK_MS = 5_000
READ_BATCH = 500
"""How long a reader waits for news before the stream sends a keep-alive."""
STREAM_TOKEN_TTL_S = 60
_OUTBOX = text(
    """
    SELECT o.id, o.kind, o.channel, o.via, o.status, o.attempts, j.id, o.to_user_id,
           o.created_at, o.last_error
    FROM outbox o
    JOIN jobs j ON j.id = COALESCE(o.payload->>'job_id', o.payload->'offer'->>'job_id')::bigint
    WHERE j.community_id = :cid
    ORDER BY o.id DESC
    LIMIT :limit
    """
)


def _id(event_id: str) -> tuple[int, int]:
    ms, _, seq = event_id.partition("-")
    return int(ms), int(seq or 0)


def stream_key(community_id: int) -> str:
    """The community's event stream; it carries the community's hash tag `{c:ID}`, as its live
    index's keys do, so all of a community's keys share one Redis Cluster slot."""
    return f"ops:events:{community_tag(community_id)}"


def _fields(kind: str, data: dict[str, Any]) -> dict[str, str]:
    return {"type": kind, "data": json.dumps(data, default=_jsonable, separators=(",", ":"))}


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    raise TypeError(f"{type(value).__name__} is not JSON")


def append(
    pipe: Any, community_id: int, kind: str, data: dict[str, Any], *, min_id: str | None = None
) -> Any:
    """Add the event, for a writer already past its commit: queued on a pipeline, or (on a
    client) the command to await. The stream is trimmed to about `STREAM_MAXLEN` entries, or,
    given `min_id`, of the entries older than it (Redis allows one of the two per XADD)."""
    key, fields = stream_key(community_id), _fields(kind, data)
    if min_id is not None:
        return pipe.xadd(key, fields, minid=min_id, approximate=True)
    return pipe.xadd(key, fields, maxlen=STREAM_MAXLEN, approximate=True)


def emit(session: AsyncSession, community_id: int, kind: str, data: dict[str, Any]) -> None:
    """Publish the event once the session's transaction commits (nothing if it rolls back)."""
    redis: Redis | None = aftercommit.resource(session, REDIS)
    if redis is None:
        return

    async def publish(events: list[tuple[int, str, dict[str, Any]]]) -> None:
        # All of a transaction's events in one round trip, in the order they were emitted.
        async with redis.pipeline(transaction=False) as pipe:
            for cid, k, d in events:
                append(pipe, cid, k, d)
            await pipe.execute()

    aftercommit.collect(session, "ops_events", (community_id, kind, data), publish)


def job_changed(session: AsyncSession, job: Job, **changes: Any) -> None:
    """A `job` event for the job as it is now in this transaction (`changes`: what a
    statement changed that the loaded row does not show yet, and extras such as a wave's
    `wave_radius_m` and `offered`).

    Two transactions' events about one job may reach the stream in either order (each goes out
    from its own after-commit task, perhaps in another process). They changed the row one after
    the other, under its lock, and every change of status or holder bumps `version` while a
    wave bumps `wave`, so (version, wave) orders them: a console keeps the state of the highest
    it has seen."""
    lat, lng = wkb_to_latlng(job.location)
    data = {
        "id": job.id, "status": job.status, "mode": job.mode, "title": job.title,
        "category": job.category, "lat": lat, "lng": lng, "wave": job.wave,
        "wave_deadline": job.wave_deadline, "worker_id": job.worker_id, "version": job.version,
        "cell": h3.latlng_to_cell(lat, lng, CELL_RES), **changes,
    }  # fmt: skip
    emit(session, job.community_id, "job", data)


async def tell_worker(
    session: AsyncSession,
    worker: Worker,
    community_ids: Sequence[int],
    *,
    available: bool,
    stamp: int,
) -> None:
    """Send a `worker` event to each community the worker serves, now: went on or off line,
    verified. For a writer past its commit that has just read the worker afresh
    (`WorkerService.publish` after the commit); `available`: dispatch may offer them a job now
    (online, verified, free).

    Two requests' events about one worker may reach the stream in either order (each goes out
    from its own after-commit task, perhaps in another process), so each carries `stamp`, the
    live index's clock read before the worker was read (`LiveIndex.stamp`): a later stamp read
    a newer or equal state, and a console keeps the state of the latest stamp it has seen."""
    redis: Redis | None = aftercommit.resource(session, REDIS)
    if redis is None or not community_ids:
        return
    lat = lng = cell = None
    if worker.location is not None:
        lat, lng = wkb_to_latlng(worker.location)
        cell = h3.latlng_to_cell(lat, lng, CELL_RES)
    data = {
        "id": worker.user_id, "name": worker.name, "online": worker.online,
        "verification": worker.verification, "skills": list(worker.skills or []),
        "available": available, "lat": lat, "lng": lng, "cell": cell,
        "at": worker.location_at, "stamp": stamp,
    }  # fmt: skip
    async with redis.pipeline(transaction=False) as pipe:
        for cid in community_ids:
            append(pipe, cid, "worker", data)
        await pipe.execute()


class PositionFeed:
    """Workers' positions for the operators' streams, coalesced: each accepted ping leaves the
    worker's latest fix here (a dict write on the ping path), and once a second one `positions`
    event per community carries them all. Per process: each sends what its own pings brought.

    These entries are the stream's bulk, so their XADD trims it by age: to what is younger than
    `max_age_s` before the previous positions entry of the community, by the id Redis gave that
    entry (Redis's clock, so an app server's skewed clock trims nothing wrongly). The other
    events keep the cap by count."""

    def __init__(
        self, redis: Redis, interval_s: float = 1.0, max_age_s: float = STREAM_MAX_AGE_S
    ) -> None:
        self.redis = redis
        self.interval_s = interval_s
        self.max_age_ms = int(max_age_s * 1000)
        self._pending: dict[int, dict[int, tuple[float, float, float]]] = {}
        self._last_ms: dict[int, int] = {}

    def record(
        self, community_ids: Sequence[int], worker_id: int, lat: float, lng: float, at: float
    ) -> None:
        for cid in community_ids:
            self._pending.setdefault(cid, {})[worker_id] = (lat, lng, at)

    async def flush(self) -> int:
        """Send what came since the last flush; how many positions."""
        if not self._pending:
            return 0
        batch, self._pending = self._pending, {}
        async with self.redis.pipeline(transaction=False) as pipe:
            for cid, seen in batch.items():
                workers = [
                    {"id": w, "lat": round(lat, 6), "lng": round(lng, 6), "at": round(at, 3),
                     "cell": h3.latlng_to_cell(lat, lng, CELL_RES)}
                    for w, (lat, lng, at) in seen.items()
                ]  # fmt: skip
                last = self._last_ms.get(cid)
                min_id = None if last is None else f"{last - self.max_age_ms}-0"
                append(pipe, cid, "positions", {"workers": workers}, min_id=min_id)
            ids = await pipe.execute()
        for cid, entry_id in zip(batch, ids, strict=True):
            self._last_ms[cid] = _id(entry_id.decode())[0]
        return sum(len(seen) for seen in batch.values())

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.flush()
            except Exception as exc:  # Redis blinked: the next second sends newer ones
                log.warning("position_feed_failed", error=repr(exc))


class OpsFeed:
    """The operators' event stream: who may open it, the short-lived token `EventSource` uses,
    and the events from a point on."""

    def __init__(
        self,
        redis: Redis,
        sessions: async_sessionmaker[AsyncSession],
        communities: CommunityService,
        secret: str,
    ) -> None:
        self.redis = redis
        self.sessions = sessions
        self.communities = communities
        self.secret = secret

    def caller(self, bearer: str | None, query_token: str | None) -> Principal:
        """Who opens the stream: an operator's (or admin's) bearer, or a stream token from
        `stream_token` (`EventSource` cannot send headers). 401 without either."""
        who = principal_of_token(bearer, self.secret) or principal_of_token(
            query_token, self.secret, scope=STREAM_SCOPE
        )
        if who is None:
            raise Unauthorized("a bearer token or a stream token is required")
        if who.role not in ("operator", "admin"):
            raise Forbidden("this needs the role operator or admin", code="forbidden_role")
        return who

    async def check(self, who: Principal, community_id: int) -> None:
        """403 unless `who` operates the community; 404 if there is none."""
        who.require_operator_of(community_id)
        async with self.sessions() as session:
            await self.communities.get(session, community_id)

    async def outbox(self, who: Principal, community_id: int, limit: int) -> list[dict[str, Any]]:
        """The outbox rows about the community's jobs, newest first, without bodies or
        numbers (errors with numbers hidden)."""
        await self.check(who, community_id)
        async with self.sessions() as session:
            rows = (await session.execute(_OUTBOX, {"cid": community_id, "limit": limit})).all()
        return [
            {"id": r[0], "kind": r[1], "channel": r[2], "via": r[3], "status": r[4],
             "attempts": r[5], "job_id": r[6], "to_user_id": r[7], "created_at": r[8],
             "last_error": PHONE_IN_TEXT.sub("[number]", r[9]) if r[9] else None}
            for r in rows
        ]  # fmt: skip

    async def stream_token(self, who: Principal, community_id: int) -> tuple[str, datetime]:
        """A token good for a minute, for this community's stream alone."""
        await self.check(who, community_id)
        token = issue_token(
            self.secret, who.user_id, who.role, [community_id], ttl_s=STREAM_TOKEN_TTL_S,
            scope=STREAM_SCOPE,
        )  # fmt: skip
        return token, datetime.now(UTC) + timedelta(seconds=STREAM_TOKEN_TTL_S)

    async def latest_id(self, community_id: int) -> str:
        """Where a new reader starts: after the newest event there is now."""
        newest = await self.redis.xrevrange(stream_key(community_id), count=1)
        return newest[0][0].decode() if newest else "0-0"

    async def lost(self, community_id: int, after: str) -> bool:
        """Did the stream drop events that came after `after`? Yes when `after` is gone and
        older than what the stream still holds (trimmed by count and age), or when the stream
        is empty though `after` names an event (Redis lost it): the reader must resync."""
        key = stream_key(community_id)
        oldest = await self.redis.xrange(key, count=1)
        if not oldest:
            return _id(after) != (0, 0)
        if _id(oldest[0][0].decode()) <= _id(after):
            return False
        return not await self.redis.xrange(key, after, after)

    async def follow(
        self, community_id: int, after: str, *, block_ms: int = BLOCK_MS, batch: int = READ_BATCH
    ) -> AsyncIterator[list[tuple[str, str, bytes]] | None]:
        """The events after `after` as they come, a batch (what one read returned) at a time:
        (id, type, data as JSON bytes) each; None after each quiet `block_ms` (time for a
        keep-alive). A reader that falls so far behind that the stream dropped events it had
        not read yet (it holds about `STREAM_MAXLEN`, or `STREAM_MAX_AGE_S`) gets
        [(`resync` id, "resync", b"{}")] and goes on from the newest: the service keeps no
        buffer per reader, so a slow console costs it nothing but tells the console to start
        again."""
        key = stream_key(community_id)
        last = after
        while True:
            try:
                found = await self.redis.xread({key: last}, count=batch, block=block_ms)
            except RedisTimeoutError:  # a client with a socket timeout shorter than the block
                found = None
            if not found:
                yield None
                continue
            entries = found[0][1]
            # Only a reader with a full batch can be behind the trimming.
            if len(entries) >= batch and await self.lost(community_id, last):
                last = await self.latest_id(community_id)
                yield [(last, "resync", b"{}")]
                continue
            last = entries[-1][0].decode()
            yield [(i.decode(), f[b"type"].decode(), f[b"data"]) for i, f in entries]


def sse(event_id: str | None, kind: str, data: bytes) -> bytes:
    """One server-sent event. `data` is compact JSON (no line breaks), so it is one `data:`
    line as it is: an event's bytes are put together here once, not re-split and re-encoded
    per message by a framework (the events of one read go out as one write)."""
    head = f"id: {event_id}\r\nevent: {kind}\r\n" if event_id else f"event: {kind}\r\n"
    return head.encode() + b"data: " + data + b"\r\n\r\n"


KEEP_ALIVE = b": keep-alive\r\n\r\n"
"""A comment alone: no `data:` line, which would dispatch an empty message."""
