"""The live index contract. Consumers depend on `LiveIndex` only; each backend is one module.

A worker has, per community, a status (available or not, skills, inside the area or not) and a
last good position. Only workers that are available, inside the area and fresh are found by
`search`, which returns them in exact haversine order.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol

MAX_SPEED_MPS = 200 / 3.6
"""Faster than this since the last accepted fix is taken for a GPS glitch (200 km/h)."""
SPEED_SLACK_M = 25.0
SPEED_MIN_DT_S = 1.0
"""The speed a fix implies is (distance - `SPEED_SLACK_M`) / max(time apart, `SPEED_MIN_DT_S`):
a phone's fix is good to some metres, and two pings stamped by the server on arrival can be
milliseconds apart when a slow network delivers them together (the soak saw a metre in a
millisecond refused as 1,000 m/s). A jump of kilometres is still refused. (lua/common.lua has
the same two numbers.)"""
REBUILD_LEASE_S = 30
"""How long a claimed rebuild may take before another caller may claim it again (a process that
died mid-rebuild leaves a lease, never a marker saying the index is whole)."""


@dataclass(frozen=True, slots=True)
class Fix:
    """One position report."""

    lat: float
    lng: float
    recorded_at: float
    """Unix seconds."""


@dataclass(frozen=True, slots=True)
class WorkerStatus:
    available: bool
    """Online, verified and not busy."""
    skills: frozenset[str] = field(default_factory=frozenset)
    version: int = 0
    """The worker's profile version this status was published from (the worker row's version):
    kept with the status, and checked by `move(..., expect_version=)`."""


class ProfileChanged(Exception):
    """`move` was given a profile version the worker's status in the community does not carry
    (or the community has no status for the worker): nothing was applied. The caller's idea of
    where the worker belongs is out of date; re-read it and move again."""

    def __init__(self, community_id: int, worker_id: int, version: int | None) -> None:
        super().__init__(f"worker {worker_id} in community {community_id}: version {version}")
        self.community_id = community_id
        self.worker_id = worker_id
        self.version = version
        """The version the status carries (None: no status, or one from before versions)."""


class MoveResult(Enum):
    ACCEPTED = "accepted"
    STALE = "stale"
    """Not newer than the last accepted fix (out of order or repeated): ignored."""
    TOO_FAST = "too_fast"
    """Implies an impossible speed from the last accepted fix: rejected, last position kept."""


@dataclass(frozen=True, slots=True)
class Nearby:
    worker_id: int
    distance_m: float
    lat: float
    lng: float
    recorded_at: float


@dataclass(frozen=True, slots=True)
class Position:
    lat: float
    lng: float
    recorded_at: float
    available: bool
    in_area: bool


class CommandPipe(Protocol):
    """What a Redis backend may send its hot commands through instead of its client: one
    command, its raw reply (the service's `Pipeliner`, which shares socket writes between
    concurrent callers). The backend does not build it: geo depends on no part of the service."""

    async def call(self, *words: object) -> Any:
        """Send one command; return its raw reply, or raise as redis-py raises."""

    async def aclose(self) -> None:
        """Close its connection."""


class LiveIndex(ABC):
    """Live positions and availability of workers, per community.

    Its lifecycle: `on_startup()` once before the first call (load scripts, warm caches),
    `on_shutdown()` once after the last (close what the index opened itself; a client it was
    given stays the caller's)."""

    async def on_startup(self) -> None:  # noqa: B027 - a backend with nothing to prepare
        """Make the first calls as fast as the rest."""

    async def on_shutdown(self) -> None:  # noqa: B027 - a backend with nothing to close
        """Release what the index holds itself."""

    @abstractmethod
    async def stamp(self) -> int:
        """The index's clock now, in microseconds: what a writer reads before it reads the
        truth it is about to write (`set_status(..., as_of=)`)."""

    @abstractmethod
    async def set_status(
        self, community_id: int, worker_id: int, status: WorkerStatus, *, as_of: int | None = None
    ) -> bool:
        """Record availability and skills; the last position (if any) is kept.

        With `as_of` (a `stamp()` taken before the status was read from the database), nothing
        is written if the worker has a status or removal stamped later here: a writer that read
        older truth (a rebuild's snapshot, a publish overtaken by a newer one) cannot overwrite a
        newer one. Since every committed change is followed by a write stamped after its commit,
        the status stamped last was read after the last change. False: refused as older."""

    @abstractmethod
    async def move(
        self,
        community_id: int,
        worker_id: int,
        fixes: Sequence[Fix],
        *,
        in_area: Sequence[bool],
        max_speed_mps: float = MAX_SPEED_MPS,
        expect_version: int | None = None,
    ) -> list[MoveResult]:
        """Apply fixes in order (one round trip); `in_area[i]` says if fix i is in the area.

        With `expect_version`, raise `ProfileChanged` (applying nothing) unless the worker's
        status here was set with that version."""

    async def set_status_many(
        self,
        community_id: int,
        items: Sequence[tuple[int, WorkerStatus]],
        *,
        as_of: int | None = None,
    ) -> list[bool]:
        """`set_status` for many workers of one community, in order, all with the same `as_of`:
        one result per item, each what `set_status` would have returned at that point (a worker
        named twice has both items applied, the second passing the stamp the first wrote).

        For writers of many statuses read at one instant, like the rebuild: a backend may send
        them in a few calls instead of one each. This default is that loop, one call per item."""
        return [
            await self.set_status(community_id, worker_id, status, as_of=as_of)
            for worker_id, status in items
        ]

    async def move_many(
        self,
        community_id: int,
        moves: Sequence[tuple[int, Fix, bool]],
        *,
        max_speed_mps: float = MAX_SPEED_MPS,
    ) -> list[MoveResult]:
        """Apply one fix per item, (worker id, fix, in the area), in order: one result per item,
        each what `move(community_id, worker_id, [fix], in_area=[inside])` would have returned at
        that point (a worker named twice has its first fix applied before its second is judged).

        No `expect_version`: the profile version is NOT checked. This is for writers that know
        the statuses they file positions under are current (the rebuild, which has just written
        them from the same snapshot; bulk feeders such as the benchmarks'); a ping, whose
        listing may be out of date, goes through `move`. A backend may send a batch in a few
        calls instead of one per item; this default is that loop, one call per item."""
        return [
            (await self.move(community_id, worker_id, [fix], in_area=[inside],
                             max_speed_mps=max_speed_mps))[0]
            for worker_id, fix, inside in moves
        ]  # fmt: skip

    @abstractmethod
    async def search(
        self,
        community_id: int,
        lat: float,
        lng: float,
        radius_m: float,
        *,
        skills: Sequence[str] = (),
        limit: int = 50,
        min_recorded_at: float = 0.0,
    ) -> list[Nearby]:
        """Available, in-area workers with every skill, fixed at or after `min_recorded_at`,
        within `radius_m` of the point: the nearest `limit`, nearest first (ties by id)."""

    @abstractmethod
    async def position(self, community_id: int, worker_id: int) -> Position | None:
        """The last accepted position and flags, or None."""

    @abstractmethod
    async def remove(self, community_id: int, worker_id: int, *, as_of: int | None = None) -> None:
        """Forget the worker in this community; with `as_of`, unless a later status was
        written, and keeping the stamp so that an older status cannot bring them back."""

    @abstractmethod
    async def clear(self, community_id: int) -> None:
        """Forget the whole community (before a rebuild)."""

    @abstractmethod
    async def claim_rebuild(self, community_id: int) -> bool:
        """True if the community's index is missing (no `mark_built` since it was lost or
        cleared) and this caller now holds the rebuild's lease (`REBUILD_LEASE_S`): concurrent
        start-ups rebuild once, and a rebuild that failed is claimed again once its lease is
        released or runs out."""

    @abstractmethod
    async def mark_built(self, community_id: int) -> None:
        """The community's index is whole (a rebuild finished, or the community is new)."""

    @abstractmethod
    async def release_rebuild(self, community_id: int) -> None:
        """Give up a claimed rebuild (it failed): the next claim may take it at once."""
