"""Workers: profiles, verification, presence, location pings, nearby search, index rebuilds.

The live index holds, per community, who is available (online, verified, not busy) and where; the
database holds the same facts durably (positions written behind every few seconds), so the index
can be rebuilt after Redis loses everything.

Profiles and positions stay in one service (~540 lines): a profile change must reach the live
index in the same call that commits it (`publish`), and a ping is checked against the profile's
version (`listing`); the position write-behind is `positions.py`, what a ping may be `rules.py`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import partial
from typing import Protocol

import h3.api.basic_int as h3
from sqlalchemy import delete, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dispatch.communities.service import CommunityService, CommunityView
from dispatch.core.errors import Conflict, Forbidden, NotFound, Unprocessable
from dispatch.identity.phones import PhoneVault, hide_phones
from dispatch.identity.principal import Principal
from dispatch.infra import aftercommit
from dispatch.infra.logs import log
from dispatch.infra.rawread import RawRead
from dispatch.models import Community, Job, Worker, WorkerCommunity
from dispatch.models.base import get_row
from dispatch.ops import events as ops_events
from dispatch.trust.ranking import shown_rating
from dispatch.trust.screening import screen
from dispatch.workers.positions import PositionSink
from geo.distance import haversine_m
from geo.live import Fix, LiveIndex, MoveResult, ProfileChanged, WorkerStatus
from geo.shapes import wkb_to_latlng

RESIDENT_SNAP_RES = 7
BUSY_STATUSES = ("assigned", "in_progress")
# What `publish` pushes to the index, in one statement (it runs after every assignment and
# release; three ORM reads cost several times more CPU).
_PUBLISHED = text(f"""
SELECT w.online, w.verification, w.skills, w.version,
       EXISTS (SELECT FROM jobs j WHERE j.worker_id = w.user_id
               AND j.status IN ({", ".join(f"'{s}'" for s in BUSY_STATUSES)})),
       ARRAY(SELECT c.community_id FROM worker_communities c
             WHERE c.worker_id = w.user_id ORDER BY c.community_id)
FROM workers w WHERE w.user_id = :worker_id
""")  # noqa: S608 (constant statuses, no input)
LISTING_TTL_S = 300.0
"""How long a process keeps a worker's listing (communities served) without re-reading it. Every
move checks the listing's profile version against the one the worker's status carries in the
community (`LiveIndex.move(expect_version=)`), so a profile change is seen at the next ping; the
TTL bounds only how late a change to a community row itself (its area) reaches the ping path."""
UNCHECKED_LISTING_TTL_S = 2.0
"""A listing that cannot be checked that way (no profile, no community, or the index's version
disagrees with the database's) is re-read this often instead."""


_LISTING_SQL = text(
    "SELECT wc.community_id, c.updated_at, w.version FROM workers w "
    "LEFT JOIN worker_communities wc ON wc.worker_id = w.user_id "
    "LEFT JOIN communities c ON c.id = wc.community_id "
    "WHERE w.user_id = :worker_id ORDER BY wc.community_id"
)
"""A worker's communities and their last change, and the profile's version; no row when the
worker has no profile."""
_LISTING = RawRead(_LISTING_SQL)


@dataclass(frozen=True, slots=True)
class Listing:
    """What the live path needs to know about a worker, cached per process (see LISTING_TTL_S)."""

    communities: tuple[CommunityView, ...]
    has_profile: bool
    version: int
    """The profile version (workers.version) it was read at; every `publish` stamps the worker's
    status in each community it serves with the version it published."""
    expires: float


def _usable(listing: Listing) -> Listing:
    """The listing, if the worker can report positions at all; else the 409 saying why not."""
    if not listing.has_profile:
        raise Conflict("create a worker profile first (PUT /v1/workers/me)", code="no_profile")
    if not listing.communities:
        raise Conflict("the profile serves no community yet", code="no_community")
    return listing


_ACCEPTED = MoveResult.ACCEPTED


@dataclass(frozen=True, slots=True)
class NearbyWorker:
    worker_id: int
    distance_m: float
    lat: float
    lng: float
    recorded_at: float
    name: str
    skills: tuple[str, ...]
    rating: float | None


@dataclass(frozen=True)
class WorkerCard:
    """A worker's profile with the communities it serves: what the API shows of a worker."""

    worker: Worker
    community_ids: list[int]


@dataclass(frozen=True)
class PendingWorker:
    worker: Worker
    legal_name: str
    id_number_hint: str


class PositionWatcher(Protocol):
    """Who else hears of accepted positions (the operators' streams: `ops.events.PositionFeed`);
    called on the ping path, so it must only take note."""

    def record(
        self, community_ids: Sequence[int], worker_id: int, lat: float, lng: float, at: float
    ) -> None: ...


class WorkerService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        live: LiveIndex,
        communities: CommunityService,
        vault: PhoneVault,
        positions: PositionSink,
        watchers: PositionWatcher | None = None,
    ) -> None:
        self.sessions = sessions
        self.live = live
        self.communities = communities
        self.vault = vault
        self.positions = positions
        self.watchers = watchers
        self._listings: dict[int, Listing] = {}
        self._views: dict[int, tuple[datetime, CommunityView]] = {}
        """Community views the listings use, with the row's updated_at they were built from."""
        self._unpublished: set[int] = set()
        """Workers whose availability a committed change could not push to the live index
        (Redis or PostgreSQL down a moment): `republish` tries again."""

    # --- profile and verification ------------------------------------------------------------

    # --- the worker's own profile (each call one transaction) ----------------------------------

    async def save_profile(
        self,
        who: Principal,
        *,
        name: str,
        skills: Sequence[str],
        community_ids: Sequence[int],
        bio: str | None,
        hourly_rate_cents: int | None,
    ) -> WorkerCard:
        """Create or update the caller's profile and the communities it serves."""
        async with self.sessions.begin() as session:
            worker = await self._save_profile(
                session,
                who,
                name=name,
                skills=skills,
                community_ids=community_ids,
                bio=bio,
                hourly_rate_cents=hourly_rate_cents,
            )
            return WorkerCard(worker, await self.communities_of(session, worker.user_id))

    async def card(self, worker_id: int) -> WorkerCard:
        async with self.sessions() as session:
            worker = await self.profile(session, worker_id)
            return WorkerCard(worker, await self.communities_of(session, worker_id))

    async def request_verification(self, who: Principal, legal_name: str, id_number: str) -> str:
        """Submit real-name details (encrypted at rest) for an operator to check; the status."""
        async with self.sessions.begin() as session:
            worker = await self._request_verification(session, who, legal_name, id_number)
            return worker.verification

    async def verify(self, who: Principal, worker_id: int) -> WorkerCard:
        """An operator of a community the worker serves (or an admin) marks them verified."""
        async with self.sessions.begin() as session:
            worker = await self._verify(session, who, worker_id)
            return WorkerCard(worker, await self.communities_of(session, worker_id))

    async def verification_queue(
        self, who: Principal, community_id: int, limit: int = 200
    ) -> list[PendingWorker]:
        """The community's workers waiting to be verified, oldest request first, with the
        real-name details they gave (for its operators' eyes only; the ID number as its last
        four characters)."""
        who.require_operator_of(community_id)
        async with self.sessions() as session:
            await self.communities.get(session, community_id)  # 404 for none
            rows = (
                await session.scalars(
                    select(Worker)
                    .join(WorkerCommunity, WorkerCommunity.worker_id == Worker.user_id)
                    .where(
                        WorkerCommunity.community_id == community_id,
                        Worker.verification == "pending",
                    )
                    .order_by(Worker.updated_at, Worker.user_id)
                    .limit(limit)
                )
            ).all()
        return [
            PendingWorker(
                worker=w,
                legal_name=self.vault.decrypt(w.legal_name_enc) if w.legal_name_enc else "",
                id_number_hint=(
                    "…" + self.vault.decrypt(w.id_number_enc)[-4:] if w.id_number_enc else ""
                ),
            )
            for w in rows
        ]

    async def set_presence(self, who: Principal, online: bool) -> WorkerCard:
        async with self.sessions.begin() as session:
            worker = await self._set_presence(session, who, online)
            return WorkerCard(worker, await self.communities_of(session, who.user_id))

    async def rebuild_for(self, who: Principal, community_id: int) -> int:
        """An operator refills their community's live index from the database."""
        who.require_operator_of(community_id)
        async with self.sessions() as session:
            await self.positions.flush()
            return await self.rebuild(session, community_id)

    # --- inside a caller's transaction ----------------------------------------------------------

    async def _save_profile(
        self,
        session: AsyncSession,
        who: Principal,
        *,
        name: str,
        skills: Sequence[str],
        community_ids: Sequence[int],
        bio: str | None,
        hourly_rate_cents: int | None,
    ) -> Worker:
        wanted = sorted(set(community_ids))
        found = set(
            (await session.scalars(select(Community.id).where(Community.id.in_(wanted)))).all()
        )
        missing = [c for c in wanted if c not in found]
        if missing:
            raise Unprocessable(f"no community {missing}", code="community_not_found")
        # Residents read the name and bio: no phone number goes with them.
        region = self.communities.cache.default_region
        name = hide_phones(name, region)
        bio = screen(bio, region).text if bio else bio
        await session.execute(
            insert(Worker)
            .values(
                user_id=who.user_id,
                name=name,
                skills=sorted(set(skills)),
                bio=bio,
                hourly_rate_cents=hourly_rate_cents,
                verification="unverified",
                rating_sum=0,
                rating_count=0,
                version=1,
                online=False,
            )
            .on_conflict_do_update(
                index_elements=[Worker.user_id],
                set_={
                    "name": name,
                    "skills": sorted(set(skills)),
                    "bio": bio,
                    "hourly_rate_cents": hourly_rate_cents,
                    "version": Worker.version + 1,
                },
            )
        )
        left = (
            await session.scalars(
                delete(WorkerCommunity)
                .where(
                    WorkerCommunity.worker_id == who.user_id,
                    WorkerCommunity.community_id.not_in(wanted),
                )
                .returning(WorkerCommunity.community_id)
            )
        ).all()
        if wanted:
            await session.execute(
                insert(WorkerCommunity)
                .values([{"worker_id": who.user_id, "community_id": c} for c in wanted])
                .on_conflict_do_nothing()
            )
        worker = await session.get(Worker, who.user_id, populate_existing=True)
        assert worker is not None
        await session.flush()
        await self.publish(session, who.user_id, left=list(left))
        return worker

    async def communities_of(self, session: AsyncSession, worker_id: int) -> list[int]:
        return list(
            (
                await session.scalars(
                    select(WorkerCommunity.community_id)
                    .where(WorkerCommunity.worker_id == worker_id)
                    .order_by(WorkerCommunity.community_id)
                )
            ).all()
        )

    async def profile(self, session: AsyncSession, worker_id: int) -> Worker:
        worker = await session.get(Worker, worker_id)
        if worker is None:
            raise NotFound("no worker profile yet; PUT /v1/workers/me first", code="no_profile")
        return worker

    async def _request_verification(
        self, session: AsyncSession, who: Principal, legal_name: str, id_number: str
    ) -> Worker:
        worker = await self.profile(session, who.user_id)
        if worker.verification == "verified":
            raise Conflict("already verified", code="already_verified")
        worker.legal_name_enc = self.vault.encrypt(legal_name)
        worker.id_number_enc = self.vault.encrypt(id_number)
        worker.verification = "pending"
        return worker

    async def _verify(self, session: AsyncSession, who: Principal, worker_id: int) -> Worker:
        worker = await get_row(session, Worker, worker_id, lock=True)
        served = await self.communities_of(session, worker_id)
        if who.role != "admin" and not any(who.can_operate(c) for c in served):
            raise Forbidden("this worker serves none of your communities", code="not_yours")
        worker.verification = "verified"
        worker.version += 1
        await session.flush()
        await self.publish(session, worker_id, tell_ops=True)
        return worker

    # --- presence and the live index ---------------------------------------------------------

    async def _set_presence(self, session: AsyncSession, who: Principal, online: bool) -> Worker:
        worker = await self.profile(session, who.user_id)
        worker.online = online
        worker.presence_at = datetime.now(UTC)
        await session.flush()
        await self.publish(session, who.user_id, tell_ops=True)
        return worker

    async def publish(
        self,
        session: AsyncSession,
        worker_id: int,
        left: Sequence[int] = (),
        *,
        tell_ops: bool = False,
        again_after_commit: bool = True,
    ) -> None:
        """Push the worker's availability and skills to the index of every community served;
        with `tell_ops`, a `worker` event to their operators' consoles too (presence and
        verification; assignments reach them as `job` events). The event goes out after the
        commit, from the fresh read (`again_after_commit`; called outside a transaction, at
        once), stamped like the index's writes, so of two requests' events the console keeps
        the one that read the newer state, whichever arrives last.

        The writes are stamped with the index's clock read before the database is
        (`LiveIndex.set_status(as_of=)`), so a publish that read older truth never overwrites
        one that read newer (two after-commit publishes of one worker in either order, a
        rebuild's snapshot against a publish made during the rebuild). Called inside a
        transaction, the change is pushed at once (the caller sees it in the index when it
        answers) and, `again_after_commit`, once more after the commit from a fresh read:
        a publish stamped before the commit may have been overtaken by one that read the
        database before this transaction committed. A rollback leaves the worker to the index
        check (`publish_later`)."""
        as_of = await self.live.stamp()
        await session.flush()  # the read below must see this session's pending changes
        row = (await session.execute(_PUBLISHED, {"worker_id": worker_id})).first()
        self._listings.pop(worker_id, None)
        for community_id in left:
            await self.live.remove(community_id, worker_id, as_of=as_of)
        if again_after_commit:
            again = partial(self._publish, worker_id, tell_ops)
            aftercommit.promise(session, ("publish", worker_id, tell_ops), again)
            aftercommit.on_rollback(
                session, ("publish", worker_id), partial(self.publish_later, [worker_id])
            )
        if row is None:
            return
        online, verification, skills, version, busy, served = row
        available = online and verification == "verified" and not busy
        status = WorkerStatus(available, frozenset(skills or ()), version)
        for community_id in served:
            await self.live.set_status(community_id, worker_id, status, as_of=as_of)
        if tell_ops and not again_after_commit:
            worker = await session.get(Worker, worker_id)
            if worker is not None:
                await ops_events.tell_worker(
                    session, worker, served, available=available, stamp=as_of
                )

    async def _publish(self, worker_id: int, tell_ops: bool = False) -> None:
        """`publish` from a fresh read, outside any transaction (after a commit, the index
        check); with `tell_ops`, the operators' `worker` event from that read."""
        async with self.sessions() as session:
            await self.publish(session, worker_id, again_after_commit=False, tell_ops=tell_ops)

    async def listing(self, worker_id: int, *, fresh: bool = False) -> Listing:
        """The worker's listing: cached (unless `fresh`), else read from the database."""
        now = time.monotonic()
        cached = self._listings.get(worker_id)
        if not fresh and cached is not None and cached.expires > now:
            return cached
        # One light query (no ORM objects, no transaction): does the profile exist, which
        # communities does it serve, and have they changed since their views were built.
        # Community rows are loaded only for views not seen yet or out of date.
        rows = await self._listing_rows(worker_id)
        stale = {cid: at for cid, at, _ in rows if cid is not None and self._view_at(cid) != at}
        if stale:
            async with self.sessions() as session:
                found = await session.scalars(select(Community).where(Community.id.in_(stale)))
                for row in found.all():
                    self._views[row.id] = (stale[row.id], self.communities.cache.view(row))
        views = tuple(
            self._views[cid][1] for cid, _, _ in rows if cid is not None and cid in self._views
        )
        # A listing without communities is never checked against the index (no move is made),
        # so a profile or community added later must be seen by re-reading it.
        ttl = LISTING_TTL_S if views else UNCHECKED_LISTING_TTL_S
        listing = Listing(views, bool(rows), rows[0][2] if rows else 0, now + ttl)
        self._listings[worker_id] = listing
        return listing

    async def _listing_rows(self, worker_id: int) -> list[tuple[int | None, datetime | None, int]]:
        """_LISTING's rows, read outside any transaction (`infra.rawread`)."""
        return await _LISTING.rows(self.sessions, {"worker_id": worker_id})  # type: ignore[return-value]

    def _view_at(self, community_id: int) -> datetime | None:
        hit = self._views.get(community_id)
        return hit[0] if hit is not None else None

    async def report(self, who: Principal, fixes: Sequence[Fix]) -> list[MoveResult]:
        """Apply a worker's checked fixes (in time order, whatever order given); one result each.

        The cached listing says which communities to move the worker in; each move checks the
        listing's profile version against the worker's status there, so a listing that a profile
        change (in any process) made stale is re-read before anything is applied."""
        worker_id = who.user_id
        listing = _usable(await self.listing(worker_id))
        n = len(fixes)
        if not n:
            return []
        order = None
        if n > 1:
            times = [f.recorded_at for f in fixes]
            if any(times[i] > times[i + 1] for i in range(n - 1)):
                order = sorted(range(n), key=times.__getitem__)
        ordered = [fixes[i] for i in order] if order else list(fixes)
        try:
            results = await self._move(listing, worker_id, ordered, checked=True)
        except ProfileChanged as changed:
            if changed.version is None:
                # No status for the worker in the index (Redis lost it, a rebuild has not come
                # to them yet): publish it from the database first, so a worker who pings is
                # searchable again from this ping on, whatever became of the rebuild. (Before
                # the listing is read again: a publish drops the cached one.)
                await self._publish(worker_id)
            listing = _usable(await self.listing(worker_id, fresh=True))
            try:
                results = await self._move(listing, worker_id, ordered, checked=True)
            except ProfileChanged:
                # The index and the database disagree on the version (a profile change not yet
                # committed, or statuses published before versions were kept): apply by the
                # fresh listing, and read it again soon rather than trust it for long.
                self._listings[worker_id] = replace(
                    listing, expires=time.monotonic() + UNCHECKED_LISTING_TTL_S
                )
                results = await self._move(listing, worker_id, ordered, checked=False)
        for i in range(n - 1, -1, -1):
            if results[i] is _ACCEPTED:
                fix = ordered[i]
                self.positions.record(worker_id, fix)
                if self.watchers is not None:
                    ids = [c.id for c in listing.communities]
                    self.watchers.record(ids, worker_id, fix.lat, fix.lng, fix.recorded_at)
                break
        if order is None:
            return results
        by_input = list(results)
        for position, i in enumerate(order):
            by_input[i] = results[position]
        return by_input

    async def _move(
        self, listing: Listing, worker_id: int, ordered: list[Fix], *, checked: bool
    ) -> list[MoveResult]:
        """Move the worker in each community of the listing; the last community's results."""
        results: list[MoveResult] = []
        expect = listing.version if checked else None
        for view in listing.communities:
            contains = view.area.contains
            results = await self.live.move(
                view.id,
                worker_id,
                ordered,
                in_area=[contains(f.lat, f.lng) for f in ordered],
                expect_version=expect,
            )
        return results

    async def nearby(
        self,
        who: Principal,
        *,
        lat: float,
        lng: float,
        radius_m: float,
        skills: Sequence[str],
        community_id: int | None,
        limit: int,
    ) -> list[NearbyWorker]:
        """Eligible workers near a point, nearest first: exact for operators; for residents at
        the centre of a coarse cell with the distance rounded (and at most 20)."""
        if who.role == "resident":
            limit = min(limit, 20)
        async with self.sessions() as session:
            community = await self.communities.serving(session, lat, lng, community_id)
            if who.role in ("operator", "admin"):
                who.require_operator_of(community.id)
            fresh_after = time.time() - community.dispatch.location_max_age_s
            found = await self.live.search(
                community.id,
                lat,
                lng,
                radius_m,
                skills=skills,
                limit=limit,
                min_recorded_at=fresh_after,
            )
            if not found:
                return []
            rows = {
                w.user_id: w
                for w in (
                    await session.scalars(
                        select(Worker).where(Worker.user_id.in_([n.worker_id for n in found]))
                    )
                ).all()
            }
            out = []
            for n in found:
                w = rows.get(n.worker_id)
                if w is None:
                    continue
                rating = shown_rating(w.rating_sum, w.rating_count)
                item = NearbyWorker(
                    n.worker_id,
                    n.distance_m,
                    n.lat,
                    n.lng,
                    n.recorded_at,
                    w.name,
                    tuple(w.skills),
                    rating,
                )
                out.append(item if who.role in ("operator", "admin") else snapped(item, lat, lng))
            if who.role not in ("operator", "admin"):
                out.sort(key=lambda w: (w.distance_m, w.worker_id))
            return out

    def publish_later(self, worker_ids: Iterable[int]) -> None:
        """Have `republish` push these workers' availability (a publish after commit failed)."""
        self._unpublished.update(worker_ids)

    async def republish(self) -> int:
        """Push the availability of the workers `publish_later` was told of, from the
        database's truth; those that fail again stay for the next try. How many were done."""
        done = 0
        for worker_id in list(self._unpublished):
            self._unpublished.discard(worker_id)
            try:
                await self._publish(worker_id)
            except BaseException:
                self._unpublished.add(worker_id)
                raise
            done += 1
        return done

    async def rebuild_lost(self) -> list[int]:
        """Rebuild every community whose live index is gone (Redis restarted empty).

        A marker key per community says its index is whole; whichever process claims a missing
        one first (a lease) does the rebuild, so concurrent start-ups rebuild once; the marker is
        set when the rebuild has finished, so one cut short (PostgreSQL or Redis gone a moment)
        is claimed again at the next check, never left half done.
        """
        async with self.sessions() as session:
            ids = (await session.scalars(select(Community.id).order_by(Community.id))).all()
            rebuilt = []
            for community_id in ids:
                if await self.live.claim_rebuild(community_id):
                    try:
                        await self.rebuild(session, community_id)
                    except BaseException:
                        await asyncio.shield(self._release(community_id))
                        raise
                    rebuilt.append(community_id)
        return rebuilt

    async def _release(self, community_id: int) -> None:
        try:
            await self.live.release_rebuild(community_id)
        except Exception as exc:  # Redis gone too: the lease runs out by itself
            log.warning("rebuild_release_failed", community_id=community_id, error=repr(exc))

    async def rebuild(self, session: AsyncSession, community_id: int) -> int:
        """Refill a community's live index from the database; returns workers indexed.

        The statuses and then the positions go in batches (`LiveIndex.set_status_many`,
        `move_many`: a backend sends them in chunks, Redis `MOVE_MANY_CHUNK` workers a script
        call) instead of two round trips per worker: 10,000 workers (2 skills each, all placed)
        rebuilt in 0.90 s (median of 5) against 4.09 s one by one, the database read included,
        on this 2-core machine with private servers."""
        view = await self.communities.get(session, community_id)
        await self.live.clear(community_id)
        await self.live.claim_rebuild(community_id)  # the lease again (clear removed it)
        # Stamped before the snapshot is read: a publish made while this runs (stamped later,
        # from a read after a commit this snapshot may miss) keeps its status.
        as_of = await self.live.stamp()
        busy = select(Job.worker_id).where(
            Job.status.in_(BUSY_STATUSES), Job.worker_id.is_not(None)
        )
        rows = (
            await session.execute(
                select(Worker, Worker.user_id.in_(busy))
                .join(WorkerCommunity, WorkerCommunity.worker_id == Worker.user_id)
                .where(WorkerCommunity.community_id == community_id)
            )
        ).all()
        statuses: list[tuple[int, WorkerStatus]] = []
        moves: list[tuple[int, Fix, bool]] = []
        for worker, is_busy in rows:
            available = worker.online and worker.verification == "verified" and not is_busy
            status = WorkerStatus(available, frozenset(worker.skills), worker.version)
            statuses.append((worker.user_id, status))
            if worker.location is not None and worker.location_at is not None:
                lat, lng = wkb_to_latlng(worker.location)
                fix = Fix(lat, lng, worker.location_at.timestamp())
                moves.append((worker.user_id, fix, view.area.contains(lat, lng)))
        # Every status before any position (the one-by-one writes did so per worker).
        # move_many checks no profile version, as the moves here never did: the statuses were
        # just written from this snapshot, and where a publish stamped later kept its own, the
        # snapshot's position is filed under it all the same (a ping since then has a newer fix,
        # which makes the snapshot's stale).
        await self.live.set_status_many(community_id, statuses, as_of=as_of)
        await self.live.move_many(community_id, moves)
        await self.live.mark_built(community_id)
        return len(rows)


def snapped(item: NearbyWorker, lat: float, lng: float) -> NearbyWorker:
    """The worker as a resident may see them before assignment: at their res-7 cell's centre,
    with the distance to that centre rounded to 100 m (so no exact position can be recovered)."""
    clat, clng = h3.cell_to_latlng(h3.latlng_to_cell(item.lat, item.lng, RESIDENT_SNAP_RES))
    distance = round(haversine_m(lat, lng, clat, clng), -2)
    return NearbyWorker(
        item.worker_id, distance, clat, clng, round(item.recorded_at, -1), item.name, item.skills,
        item.rating,
    )  # fmt: skip
