"""The live index contract, run against every backend, and the exactness law: Redis search equals
brute force over random worlds, on H3 cell vertices and far corners, next to pentagons, on the
antimeridian and at the poles."""

from __future__ import annotations

import asyncio
import itertools
import math
import os
import random
import struct
from collections.abc import AsyncIterator

import h3.api.basic_int as h3
import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from dispatch.infra.wire import Pipeliner
from geo.areas import destination
from geo.distance import haversine_m
from geo.live import Fix, LiveIndex, MoveResult, ProfileChanged, WorkerStatus
from geo.live.base import MAX_SPEED_MPS
from geo.live.cells import (
    FINE_RES,
    cell_code,
    code_range,
    entry,
    farthest_point,
    field,
    parent_field,
    start_cells,
)
from geo.live.memory import MemoryLiveIndex
from geo.live.redis import MOVE_MANY_CHUNK, STATUS_MANY_CHUNK, RedisLiveIndex, search_args
from tests.redis_mode import not_on_cluster, open_test_redis

C = 7  # community id
HOME = (31.2304, 121.4737)
_prefixes = itertools.count()


@pytest.fixture(params=["memory", "redis"])
async def index(request: pytest.FixtureRequest, redis: Redis) -> AsyncIterator[LiveIndex]:
    if request.param == "memory":
        yield MemoryLiveIndex()
    else:
        live = RedisLiveIndex(redis, pipe=Pipeliner.for_client(redis), prefix=f"t{next(_prefixes)}")
        yield live
        await live.on_shutdown()


@pytest.fixture
async def redis_index(redis: Redis) -> AsyncIterator[RedisLiveIndex]:
    live = RedisLiveIndex(redis, pipe=Pipeliner.for_client(redis), prefix=f"t{next(_prefixes)}")
    yield live
    await live.on_shutdown()


async def place(
    index: LiveIndex,
    wid: int,
    lat: float,
    lng: float,
    *,
    ts: float = 1000.0,
    skills: tuple[str, ...] = (),
    available: bool = True,
    in_area: bool = True,
) -> None:
    await index.set_status(C, wid, WorkerStatus(available, frozenset(skills)))
    assert await index.move(C, wid, [Fix(lat, lng, ts)], in_area=[in_area]) == [MoveResult.ACCEPTED]


async def test_nearest_first_within_radius(index: LiveIndex) -> None:
    for i, d in enumerate([300, 100, 200, 1500]):
        lat, lng = destination(*HOME, 90.0 * i, d)
        await place(index, i + 1, lat, lng)
    found = await index.search(C, *HOME, 1000)
    assert [n.worker_id for n in found] == [2, 3, 1]
    assert [round(n.distance_m) for n in found] == [100, 200, 300]
    assert [n.worker_id for n in await index.search(C, *HOME, 1000, limit=2)] == [2, 3]


async def test_only_available_in_area_fresh_and_skilled(index: LiveIndex) -> None:
    spot = destination(*HOME, 10.0, 100)
    await place(index, 1, *spot, skills=("plumbing", "moving"))
    await place(index, 2, *spot, available=False, skills=("plumbing",))
    await place(index, 3, *spot, in_area=False, skills=("plumbing",))
    await place(index, 4, *spot, ts=10.0, skills=("plumbing",))
    await place(index, 5, *spot, skills=("moving",))
    found = await index.search(C, *HOME, 500, skills=["plumbing"], min_recorded_at=500.0)
    assert [n.worker_id for n in found] == [1]
    both = await index.search(C, *HOME, 500, skills=["moving", "plumbing"], min_recorded_at=500.0)
    assert [n.worker_id for n in both] == [1]
    anyone = await index.search(C, *HOME, 500, min_recorded_at=500.0)
    assert sorted(n.worker_id for n in anyone) == [1, 5]


async def test_pings_delivered_together_are_not_taken_for_a_glitch(index: LiveIndex) -> None:
    """Two fixes a few metres and a millisecond apart (stamped by the server as a slow network
    delivers them together) are a walk, not 1,000 m/s; a jump of a kilometre in a second, or 30 m
    more than a phone's error in it, is still refused."""
    await place(index, 1, *HOME, ts=1000.0)
    step = destination(*HOME, 90.0, 1.0)
    assert await index.move(C, 1, [Fix(*step, 1000.001)], in_area=[True]) == [MoveResult.ACCEPTED]
    jitter = destination(*step, 0.0, 20.0)  # within a phone's error, at once
    assert await index.move(C, 1, [Fix(*jitter, 1000.002)], in_area=[True]) == [MoveResult.ACCEPTED]
    for d in (1000.0, 25.0 + 56.0):  # over 200 km/h once the slack is taken off, in a second
        far = destination(*jitter, 180.0, d)
        assert await index.move(C, 1, [Fix(*far, 1001.0)], in_area=[True]) == [MoveResult.TOO_FAST]


async def test_a_status_read_earlier_never_overwrites_one_read_later(index: LiveIndex) -> None:
    """Stamps: a writer reads `stamp()` before the truth it writes; a status or removal stamped
    earlier than the worker's last one is refused, whatever order they arrive in. Unstamped
    writes always apply; `clear` forgets the stamps with the rest."""
    await place(index, 1, *destination(*HOME, 0.0, 50))
    early, late = await index.stamp(), await index.stamp()
    assert late > early
    assert await index.set_status(C, 1, WorkerStatus(True), as_of=late) is True
    assert await index.set_status(C, 1, WorkerStatus(False), as_of=early) is False
    assert [n.worker_id for n in await index.search(C, *HOME, 500)] == [1]
    await index.remove(C, 1, as_of=early)  # older than the status: ignored
    assert [n.worker_id for n in await index.search(C, *HOME, 500)] == [1]
    gone = await index.stamp()
    await index.remove(C, 1, as_of=gone)
    assert await index.position(C, 1) is None
    # An older status cannot bring the worker back; a newer one can.
    assert await index.set_status(C, 1, WorkerStatus(True), as_of=late) is False
    assert await index.position(C, 1) is None
    assert await index.set_status(C, 1, WorkerStatus(True), as_of=await index.stamp()) is True
    assert await index.set_status(C, 1, WorkerStatus(False)) is True  # unstamped: applies
    assert (await index.search(C, *HOME, 500)) == []
    await index.clear(C)
    assert await index.set_status(C, 1, WorkerStatus(True), as_of=early) is True


async def test_status_changes_take_effect_and_keep_position(index: LiveIndex) -> None:
    await place(index, 1, *destination(*HOME, 0.0, 50))
    await index.set_status(C, 1, WorkerStatus(False))
    assert await index.search(C, *HOME, 500) == []
    await index.set_status(C, 1, WorkerStatus(True, frozenset({"pet_care"})))
    assert [n.worker_id for n in await index.search(C, *HOME, 500, skills=["pet_care"])] == [1]
    pos = await index.position(C, 1)
    assert pos is not None and pos.available and pos.in_area


async def test_out_of_order_fix_is_ignored(index: LiveIndex) -> None:
    await place(index, 1, *HOME, ts=1000.0)
    later = destination(*HOME, 0.0, 10)
    results = await index.move(C, 1, [Fix(*later, 999.0), Fix(*later, 1000.0)], in_area=[True] * 2)
    assert results == [MoveResult.STALE, MoveResult.STALE]
    pos = await index.position(C, 1)
    assert pos is not None and (pos.lat, pos.lng, pos.recorded_at) == (*HOME, 1000.0)


async def test_impossible_speed_is_rejected_and_last_good_kept(index: LiveIndex) -> None:
    await place(index, 1, *HOME, ts=1000.0)
    far = destination(*HOME, 0.0, 10_000)  # 10 km in 10 s
    near = destination(*HOME, 0.0, 100)  # 100 m in 20 s
    results = await index.move(C, 1, [Fix(*far, 1010.0), Fix(*near, 1020.0)], in_area=[True] * 2)
    assert results == [MoveResult.TOO_FAST, MoveResult.ACCEPTED]
    pos = await index.position(C, 1)
    assert pos is not None and pos.recorded_at == 1020.0
    assert [n.worker_id for n in await index.search(C, *near, 10)] == [1]


async def test_moving_across_cells_leaves_no_trace(index: LiveIndex) -> None:
    await place(index, 1, *HOME, ts=0.0)
    away = destination(*HOME, 45.0, 3000)
    assert await index.move(C, 1, [Fix(*away, 1000.0)], in_area=[True]) == [MoveResult.ACCEPTED]
    assert await index.search(C, *HOME, 1000) == []
    assert [n.worker_id for n in await index.search(C, *away, 1000)] == [1]


async def test_ties_are_broken_by_worker_id(index: LiveIndex) -> None:
    for wid in (9, 3, 5):
        await place(index, wid, *HOME)
    assert [n.worker_id for n in await index.search(C, *HOME, 10)] == [3, 5, 9]


async def test_remove_and_clear(index: LiveIndex) -> None:
    await place(index, 1, *HOME)
    await place(index, 2, *HOME)
    await index.remove(C, 1)
    assert [n.worker_id for n in await index.search(C, *HOME, 10)] == [2]
    assert await index.position(C, 1) is None
    await index.clear(C)
    assert await index.search(C, *HOME, 10) == []


async def test_communities_are_separate(index: LiveIndex) -> None:
    await place(index, 1, *HOME)
    assert await index.search(C + 1, *HOME, 1000) == []


async def test_move_checks_the_profile_version(index: LiveIndex) -> None:
    """With expect_version, a move applies only where the worker's status carries that version."""
    with pytest.raises(ProfileChanged) as no_status:
        await index.move(C, 1, [Fix(*HOME, 1000.0)], in_area=[True], expect_version=3)
    assert no_status.value.version is None
    assert await index.position(C, 1) is None, "nothing was applied"
    await index.set_status(C, 1, WorkerStatus(True, frozenset({"moving"}), version=3))
    assert await index.move(C, 1, [Fix(*HOME, 1000.0)], in_area=[True], expect_version=3) == [
        MoveResult.ACCEPTED
    ]
    await index.set_status(C, 1, WorkerStatus(True, frozenset({"moving"}), version=4))
    later = destination(*HOME, 0.0, 30)
    with pytest.raises(ProfileChanged) as changed:
        await index.move(C, 1, [Fix(*later, 1010.0)], in_area=[True], expect_version=3)
    assert changed.value.version == 4
    pos = await index.position(C, 1)
    assert pos is not None and pos.recorded_at == 1000.0, "nothing was applied"
    # Without a version the move applies whatever the status holds, and keeps it.
    assert await index.move(C, 1, [Fix(*later, 1010.0)], in_area=[True]) == [MoveResult.ACCEPTED]
    assert await index.move(C, 1, [Fix(*HOME, 1020.0)], in_area=[True], expect_version=4) == [
        MoveResult.ACCEPTED
    ]
    assert [n.worker_id for n in await index.search(C, *HOME, 10, skills=["moving"])] == [1]


# --- batches: move_many and set_status_many equal the same writes one by one ------------------
ONE, MANY = C, C + 1
"""The same writes go one by one into community ONE and batched into MANY: both must end alike."""
MANY_SKILLS = ("a", "b", "c")


async def _same_state(index: LiveIndex, wids: range, points: list[tuple[float, float]]) -> None:
    """ONE and MANY hold the same workers: positions, flags and searches; in Redis, the same
    records, sorted sets, cell entries and stamps, byte for byte."""
    for wid in wids:
        assert await index.position(ONE, wid) == await index.position(MANY, wid), wid
    for (lat, lng), skills in itertools.product(points, [(), ("a",), ("b", "c")]):
        one = await index.search(ONE, lat, lng, 3000, skills=skills, limit=500)
        assert await index.search(MANY, lat, lng, 3000, skills=skills, limit=500) == one
    if isinstance(index, RedisLiveIndex):
        r = index.client
        tags = [index._tag(ONE), index._tag(MANY)]
        for suffix in (":w", "/h3cells", ":st"):
            one, many = [await r.hgetall(t + suffix) for t in tags]
            assert one == many, suffix
        for suffix in ("/h3", *(f"/h3:{s}" for s in MANY_SKILLS)):
            one, many = [await r.zrange(t + suffix, 0, -1, withscores=True) for t in tags]
            assert one == many, suffix


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_move_many_equals_the_same_moves_one_by_one(index: LiveIndex, seed: int) -> None:
    """Random batches over a few workers (so most batches name a worker several times, and
    chunks cut between a worker's items): steps across fine cells and far into new ground,
    stale and repeated fixes, jumps at impossible speeds, fixes outside the area, workers with
    and without a status, a lower speed limit, batches of 1 to over twice the chunk size. Each
    result, and everything the index holds afterwards, equals `move` called item by item."""
    rng = random.Random(seed)
    wids = range(1, 41)
    for wid in wids:
        if rng.random() < 0.9:  # the rest have no status: moved all the same, never searchable
            skills = frozenset(rng.sample(MANY_SKILLS, rng.randint(0, 2)))
            status = WorkerStatus(rng.random() < 0.8, skills, version=rng.randint(0, 3))
            for cid in (ONE, MANY):
                await index.set_status(cid, wid, status)
    last = {wid: (*HOME, 1000.0) for wid in wids}  # what the next fix of each is made from
    seen: set[MoveResult] = set()
    repeated = False
    sizes = [1, 7, MOVE_MANY_CHUNK, 2 * MOVE_MANY_CHUNK + 37, 90]
    for n, max_speed in zip(sizes, [MAX_SPEED_MPS] * 4 + [5.0], strict=True):
        moves = []
        for _ in range(n):
            wid = rng.choice(wids)
            lat, lng, ts = last[wid]
            kind = rng.random()
            if kind < 0.15:  # stale: older than the last, or the same instant again
                fix = Fix(*destination(lat, lng, rng.uniform(0, 360), 5), ts - rng.choice([0, 3]))
            elif kind < 0.3:  # 5-50 km in a second or two
                far = destination(lat, lng, rng.uniform(0, 360), rng.uniform(5_000, 50_000))
                fix = Fix(*far, ts + rng.uniform(0.001, 2))
            elif kind < 0.45:  # a few km at a plausible speed: into cells no one entered yet
                to = destination(lat, lng, rng.uniform(0, 360), rng.uniform(1_000, 4_000))
                fix = Fix(*to, ts + 200)
            else:  # a step, often across a fine cell's edge (~66 m)
                fix = Fix(*destination(lat, lng, rng.uniform(0, 360), rng.uniform(0, 300)),
                          ts + rng.uniform(0.001, 30))  # fmt: skip
            last[wid] = (fix.lat, fix.lng, max(ts, fix.recorded_at))
            moves.append((wid, fix, rng.random() < 0.8))
        repeated |= len({w for w, _, _ in moves}) < len(moves)
        one = [
            (await index.move(ONE, w, [f], in_area=[inside], max_speed_mps=max_speed))[0]
            for w, f, inside in moves
        ]
        assert await index.move_many(MANY, moves, max_speed_mps=max_speed) == one
        seen.update(one)
        points = [HOME, *(last[w][:2] for w in rng.sample(wids, 4))]
        await _same_state(index, wids, points)
    assert seen == set(MoveResult) and repeated, "the batches tried every outcome and repeats"
    assert await index.move_many(MANY, []) == []
    if isinstance(index, RedisLiveIndex):  # entries written by move_many's path alone
        assert await index.client.hlen(index._tag(MANY) + "/h3cells") > 3 * FINE_RES


async def test_set_status_many_keeps_the_stamp_rule(index: LiveIndex) -> None:
    """Items are stamped with the batch's `as_of`: a worker whose status or removal was stamped
    later is refused (False) and keeps what it had, or stays removed; the others are written
    and stamped, so an older batch is then refused too; a worker named twice has both items
    written (the second passes the stamp the first set); unstamped batches always apply. Across
    chunks, each result and the whole state equal `set_status` item by item."""
    rng = random.Random(5)
    wids = range(1, 41)
    for wid in wids:
        spot = destination(*HOME, rng.uniform(0, 360), rng.uniform(0, 2000))
        for cid in (ONE, MANY):
            await index.set_status(cid, wid, WorkerStatus(True, frozenset({"a"})))
            await index.move(cid, wid, [Fix(*spot, 1000.0)], in_area=[True])
    early = await index.stamp()
    late = await index.stamp()
    for cid in (ONE, MANY):
        for wid in range(1, 11):  # a newer status: kept
            await index.set_status(cid, wid, WorkerStatus(False, frozenset({"b"})), as_of=late)
        for wid in range(11, 16):  # removed since: stay removed
            await index.remove(cid, wid, as_of=late)

    def batch(n: int, among: range = wids) -> list[tuple[int, WorkerStatus]]:
        out = []
        for _ in range(n):
            skills = frozenset(rng.sample(MANY_SKILLS, rng.randint(0, 3)))
            status = WorkerStatus(rng.random() < 0.7, skills, version=rng.randint(0, 9))
            out.append((rng.choice(among), status))
        return out

    async def both(items: list[tuple[int, WorkerStatus]], as_of: int | None) -> list[bool]:
        one = [await index.set_status(ONE, w, s, as_of=as_of) for w, s in items]
        assert await index.set_status_many(MANY, items, as_of=as_of) == one
        await _same_state(index, wids, [HOME, destination(*HOME, 45.0, 1500)])
        return one

    items = batch(2 * STATUS_MANY_CHUNK + 50, range(1, 36))  # 36-40 not named: never stamped
    named = {w for w, _ in items}
    assert len(named) < len(items) and len(named) < len(wids)
    assert await both(items, early) == [w > 15 for w, _ in items]
    # Stamped now: those named above (early) refuse anything older; the unnamed have no stamp.
    older = batch(60)
    assert await both(older, early - 1) == [w > 15 and w not in named for w, _ in older]
    assert await both(batch(50), None) == [True] * 50
    newest = await index.stamp()
    everyone = [(w, WorkerStatus(True, frozenset({"c"}))) for w in wids] + batch(20)
    assert await both(everyone, newest) == [True] * len(everyone)  # the removed come back too
    assert await both(batch(25), late) == [False] * 25
    assert await index.set_status_many(MANY, [], as_of=newest) == []


async def test_redis_files_the_fine_h3_cell_and_writes_the_entries_above_it(
    redis: Redis, redis_index: RedisLiveIndex
) -> None:
    """A worker is scored by its fine H3 cell's code, in the record and the sorted set, on cell
    edges, the antimeridian and the poles too; its first move into a cell writes the entries of
    every cell above it, which the search splits cells with."""
    index = redis_index
    tag = f"{index.prefix}:{{c:{C}}}"
    points = [(90.0, 180.0), (-90.0, -180.0), (0.0, 0.0), (-0.0, -0.0), (89.9999, 179.99999),
              (31.2304, 121.4737), (-33.8688, 151.2093), (51.5, -0.0001)]  # fmt: skip
    points += [v for res in (2, 6, 10) for v in h3.cell_to_boundary(h3.latlng_to_cell(*HOME, res))]
    points += [h3.cell_to_latlng(p) for p in h3.get_pentagons(FINE_RES)]
    for wid, (lat, lng) in enumerate(points, start=1):
        await index.set_status(C, wid, WorkerStatus(True))
        await index.move(C, wid, [Fix(lat, lng, 1000.0)], in_area=[True])
        code = cell_code(lat, lng)
        assert msgpack.unpackb(await redis.hget(f"{tag}:w", str(wid)))[5] == code, (lat, lng)
        assert await redis.zscore(f"{tag}/h3", wid) == code
        fine = h3.latlng_to_cell(lat, lng, FINE_RES)
        assert code_range(fine) == (code, 1)
        for res in range(FINE_RES):  # every cell above holds the worker's code, with its entry
            parent = h3.cell_to_parent(fine, res)
            first, n = code_range(parent)
            assert first <= code < first + n
            assert await redis.hget(f"{tag}/h3cells", field(res, first)) == entry(parent)
        assert [n.worker_id for n in await index.search(C, lat, lng, 0)][-1:] == [wid]
    # A worker entering another fine cell under a parent that has its entry writes no entries
    # (the field move.lua checks is the one Python names): one deleted above stays deleted.
    fine = h3.latlng_to_cell(*HOME, FINE_RES)
    assert await redis.hexists(f"{tag}/h3cells", parent_field(cell_code(*HOME)))
    siblings = h3.cell_to_children(h3.cell_to_parent(fine, FINE_RES - 1), FINE_RES)
    sibling = next(c for c in siblings if c != fine)
    top = field(0, code_range(h3.cell_to_parent(fine, 0))[0])
    await redis.hdel(f"{tag}/h3cells", top)
    await index.set_status(C, 999, WorkerStatus(True))
    assert await index.move(C, 999, [Fix(*h3.cell_to_latlng(sibling), 1500.0)], in_area=[True]) == [
        MoveResult.ACCEPTED
    ]
    assert await redis.zscore(f"{tag}/h3", 999) == code_range(sibling)[0]
    assert not await redis.hexists(f"{tag}/h3cells", top)
    # Entries lost (not Redis as a whole): the search reads cells whole, and stays exact.
    await redis.delete(f"{tag}/h3cells")
    for wid, (lat, lng) in enumerate(points, start=1):
        assert wid in [n.worker_id for n in await index.search(C, lat, lng, 0)]
    # The next move into a new cell writes them again.
    away = destination(*HOME, 0.0, 500)
    await index.move(C, 6, [Fix(*away, 2000.0)], in_area=[True])
    assert await redis.hlen(f"{tag}/h3cells") == FINE_RES


async def test_redis_an_index_of_an_earlier_layout_is_claimed_for_rebuild_and_cleared(
    redis: Redis, redis_index: RedisLiveIndex
) -> None:
    """A Redis holding the quadtree layout (its "/built" marker and "/cells" sets) reads as an
    index that is missing: the rebuild claims it and clear removes the old keys."""
    index = redis_index
    tag = f"{index.prefix}:{{c:{C}}}"
    await redis.set(f"{tag}/built", 1)
    await redis.zadd(f"{tag}/cells", {"9": 123.0})
    await redis.zadd(f"{tag}/cells:moving", {"9": 123.0})
    assert await index.claim_rebuild(C) is True
    await index.clear(C)
    assert await redis.exists(f"{tag}/built", f"{tag}/cells", f"{tag}/cells:moving") == 0
    assert await index.claim_rebuild(C) is True
    assert await index.claim_rebuild(C) is False


async def test_a_rebuild_cut_short_is_claimed_again(index: LiveIndex) -> None:
    """The marker says the index is whole only once a rebuild finished: a claim is a lease, so a
    second caller waits while one runs, and one that failed (released, or its lease run out) is
    claimed again instead of leaving a half-built index marked whole."""
    assert await index.claim_rebuild(C) is True
    assert await index.claim_rebuild(C) is False  # under way elsewhere
    await index.release_rebuild(C)  # it failed
    assert await index.claim_rebuild(C) is True
    await index.mark_built(C)
    assert await index.claim_rebuild(C) is False
    await index.clear(C)  # Redis lost it
    assert await index.claim_rebuild(C) is True


async def test_redis_reads_records_written_before_versions(
    redis: Redis, redis_index: RedisLiveIndex
) -> None:
    """A record of the 7-element layout (no version) keeps working: read, moved, searched; a
    versioned move sees it as out of date."""
    index = redis_index
    skills = b",moving,"
    old = (
        bytes([0x97])
        + struct.pack(">BdBdBdBBBd", 0xCB, HOME[0], 0xCB, HOME[1], 0xCB, 1000.0, 1, 1, 0xCB,
                      float(cell_code(*HOME)))
        + b"\xdb" + len(skills).to_bytes(4, "big") + skills
    )  # fmt: skip
    await redis.hset(f"{index.prefix}:{{c:{C}}}:w", "1", old)
    for key in ("/h3", "/h3:moving"):
        await redis.zadd(f"{index.prefix}:{{c:{C}}}{key}", {"1": cell_code(*HOME)})
    pos = await index.position(C, 1)
    assert pos is not None and (pos.lat, pos.recorded_at, pos.available) == (HOME[0], 1000.0, True)
    later = destination(*HOME, 0.0, 30)
    with pytest.raises(ProfileChanged) as changed:
        await index.move(C, 1, [Fix(*later, 1010.0)], in_area=[True], expect_version=1)
    assert changed.value.version is None
    assert await index.move(C, 1, [Fix(*later, 1010.0)], in_area=[True]) == [MoveResult.ACCEPTED]
    assert [n.worker_id for n in await index.search(C, *later, 10, skills=["moving"])] == [1]
    await index.set_status(C, 1, WorkerStatus(True, frozenset({"moving"}), version=2))
    assert msgpack.unpackb(await redis.hget(f"{index.prefix}:{{c:{C}}}:w", "1"))[7] == "2"


async def test_redis_search_and_moves_reload_what_redis_lost_in_every_community(
    redis: Redis, redis_index: RedisLiveIndex
) -> None:
    """On one Redis or on every primary of a cluster (communities spread over its shards): the
    search function and the move scripts come back after FUNCTION FLUSH / SCRIPT FLUSH."""
    index = redis_index
    communities = range(1, 13)  # {c:1} … {c:12}: all three shards of a 3-primary cluster
    for cid in communities:
        await _place_in(index, cid, 1)
    await redis.function_flush()
    for cid in communities:
        assert [n.worker_id for n in await index.search(cid, *HOME, 10)] == [1], cid
    await redis.script_flush()
    for cid in communities:
        assert await index.move(cid, 1, [Fix(*HOME, 5000.0)], in_area=[True]) == [
            MoveResult.ACCEPTED
        ], cid


async def _place_in(index: RedisLiveIndex, cid: int, wid: int) -> None:
    await index.set_status(cid, wid, WorkerStatus(True, frozenset()))
    assert await index.move(cid, wid, [Fix(*HOME, 1000.0)], in_area=[True]) == [MoveResult.ACCEPTED]


@not_on_cluster
async def test_redis_search_survives_function_flush_and_lost_connections(
    redis: Redis, redis_index: RedisLiveIndex
) -> None:
    """The pipelined path of searches and moves falls back to the client (reloading the function
    library or script Redis lost) and reconnects after its connection was killed."""
    index = redis_index
    await place(index, 1, *HOME)
    want = [1]
    assert [n.worker_id for n in await index.search(C, *HOME, 10)] == want
    pipeliner = index._pipeliner
    assert pipeliner is not None and pipeliner._conn is not None, "the fast path is connected"
    await redis.function_flush()
    assert [n.worker_id for n in await index.search(C, *HOME, 10)] == want
    await redis.function_flush()  # and once more, found missing by the client's own path
    reply = await index._call_search(index._keys(C), search_args(*HOME, 10.0, 5, 0.0, ()))
    assert reply[1:] == [b"1"]
    await redis.script_flush()  # the other scripts: reloaded by the client
    await place(index, 2, *HOME)
    want = [1, 2]
    assert [n.worker_id for n in await index.search(C, *HOME, 10)] == want
    await redis.client_kill_filter(_id=await pipeliner.call("CLIENT", "ID"))
    assert [n.worker_id for n in await index.search(C, *HOME, 10)] == want
    assert [n.worker_id for n in await index.search(C, *HOME, 10)] == want
    searches = [index.search(C, *HOME, 10) for _ in range(20)]  # on one connection, together
    assert all([n.worker_id for n in found] == want for found in await asyncio.gather(*searches))
    # Moves take the same path: after a script flush and with its connections killed too.
    await redis.script_flush()
    await redis.client_kill_filter(_id=await pipeliner.call("CLIENT", "ID"))
    for ts in (2000.0, 2001.0):
        assert await index.move(C, 1, [Fix(*HOME, ts)], in_area=[True]) == [MoveResult.ACCEPTED]
    moves = [index.move(C, 1, [Fix(*HOME, 3000.0 + k)], in_area=[True]) for k in range(20)]
    assert sum(r == [MoveResult.ACCEPTED] for r in await asyncio.gather(*moves)) >= 1


# --- exactness: Redis search == brute force --------------------------------------------------
# The index files workers under H3 cells (geo/live/cells.py) and its search bounds each cell by
# a disc around its centre; the worlds below put workers and query points on H3 cell vertices
# and centres at every resolution the search uses (and an ulp either side), at the points of
# cells farthest from their centres, next to pentagons, on the antimeridian and at the poles,
# and crowd them so cells get split.

SKILLS = ("a", "b", "c")
EXAMPLES = int(os.environ.get("LIVE_INDEX_EXAMPLES", "250"))
"""Raise for a longer hunt, e.g. LIVE_INDEX_EXAMPLES=5000."""
PENTAGONS = [h3.cell_to_latlng(p) for p in h3.get_pentagons(0)]


def _h3_point(draw, near: tuple[float, float]) -> tuple[float, float]:
    """A vertex or the centre of the H3 cell holding `near` at some resolution, maybe an ulp off,
    or the point of its fine cells farthest from its centre."""
    res = draw(st.integers(4, FINE_RES))
    cell = h3.latlng_to_cell(*near, res)
    how = draw(st.sampled_from(["vertex", "vertex", "centre", "farthest"]))
    if how == "vertex":
        lat, lng = draw(st.sampled_from(h3.cell_to_boundary(cell)))
    elif how == "farthest" and res >= 6:
        lat, lng, _ = farthest_point(cell)
    else:
        lat, lng = h3.cell_to_latlng(cell)
    nudge = draw(st.sampled_from([0, 0, 1, -1]))
    lat = math.nextafter(lat, lat + nudge) if nudge else lat
    lng = math.nextafter(lng, lng + nudge) if nudge else lng
    return max(-90.0, min(90.0, lat)), lng


def _point(draw, center: tuple[float, float], radius: float, edges) -> tuple[float, float]:
    how = draw(st.sampled_from(["disc", "disc", "cell", "h3", "hotspot"]))
    if how == "cell":
        return _h3_point(draw, center if draw(st.booleans()) else _point(draw, center, radius, ()))
    if how == "h3" and edges:
        base = draw(st.sampled_from(edges))  # on an H3 cell vertex, give or take
        return destination(*base, draw(st.floats(0, 360)), draw(st.floats(0, 3)))
    if how == "hotspot":  # many workers in a few fine cells: cells get split
        return destination(*center, draw(st.floats(0, 360)), draw(st.floats(0, 40)))
    return destination(*center, draw(st.floats(0, 360)), draw(st.floats(0, max(radius, 100) * 1.3)))


@st.composite
def worlds(draw):
    kind = draw(
        st.sampled_from(
            ["city", "antimeridian", "north_pole", "south_pole", "anywhere", "pentagon"]
        )
    )
    if kind == "city":
        center = (draw(st.floats(-60, 60)), draw(st.floats(-179, 179)))
    elif kind == "antimeridian":
        center = (draw(st.floats(-60, 60)), draw(st.sampled_from([179.99, -179.99, 180.0, -180.0])))
    elif kind == "north_pole":
        center = (
            draw(st.sampled_from([90.0, draw(st.floats(89.9, 90.0))])),
            draw(st.floats(-180, 180)),
        )
    elif kind == "south_pole":
        center = (
            draw(st.sampled_from([-90.0, draw(st.floats(-90.0, -89.9))])),
            draw(st.floats(-180, 180)),
        )
    elif kind == "pentagon":  # where the H3 lattice bends: a pentagon at every resolution
        center = destination(*draw(st.sampled_from(PENTAGONS)), draw(st.floats(0, 360)),
                             draw(st.floats(0, 20_000)))  # fmt: skip
    else:
        center = (draw(st.floats(-90, 90)), draw(st.floats(-180, 180)))
    radius = draw(st.sampled_from([0.0, 50.0, 300.0, 1000.0, 2500.0, 5000.0]))
    n = draw(st.integers(0, draw(st.sampled_from([60, 60, 250]))))
    edges = [
        v
        for res in (7, 8, 9)
        for v in h3.cell_to_boundary(h3.latlng_to_cell(center[0], center[1], res))
    ]
    workers = []
    for wid in range(1, n + 1):
        lat, lng = _point(draw, center, radius, edges)
        workers.append(
            (
                wid,
                lat,
                lng,
                draw(st.floats(0, 1000)),  # recorded_at
                frozenset(draw(st.sets(st.sampled_from(SKILLS)))),
                draw(st.booleans()) or draw(st.booleans()),  # available (mostly)
                draw(st.booleans()) or draw(st.booleans()),  # in area (mostly)
            )
        )
    aim = draw(st.sampled_from(["near", "cell", "rim"]))
    if aim == "rim" and workers:
        # A worker (often on a cell vertex) right on the rim of the disc: a cell bound that is
        # too large by a hair drops it.
        _, lat, lng, *_ = draw(st.sampled_from(workers))
        query = destination(lat, lng, draw(st.floats(0, 360)), radius)
    elif aim == "cell":
        query = _h3_point(draw, center)
    else:
        query = destination(*center, draw(st.floats(0, 360)), draw(st.floats(0, radius / 2 + 1)))
    need = sorted(draw(st.sets(st.sampled_from(SKILLS), max_size=2)))
    limit = draw(st.integers(1, 70))
    min_ts = draw(st.sampled_from([0.0, 300.0, 800.0]))
    return workers, query, radius, need, limit, min_ts


def brute_force(workers, query, radius, need, limit, min_ts):
    hits = [
        (haversine_m(query[0], query[1], lat, lng), wid)
        for wid, lat, lng, ts, skills, available, inside in workers
        if available and inside and ts >= min_ts and set(need) <= skills
        and haversine_m(query[0], query[1], lat, lng) <= radius
    ]  # fmt: skip
    return sorted(hits)[:limit]


def _redis_search(server_urls, workers, query, radius, **search) -> list[tuple[float, int]]:
    """Load a world's workers into a fresh Redis index, search it, and clear it again:
    (distance, worker id) per result."""

    async def run() -> list[tuple[float, int]]:
        client = open_test_redis(server_urls[1])
        index = RedisLiveIndex(
            client, pipe=Pipeliner.for_client(client), prefix=f"p{next(_prefixes)}"
        )
        try:
            for wid, lat, lng, ts, skills, available, inside in workers:
                await index.set_status(C, wid, WorkerStatus(available, skills))
                await index.move(C, wid, [Fix(lat, lng, ts)], in_area=[inside])
            found = await index.search(C, *query, radius, **search)
            await index.clear(C)
            return [(n.distance_m, n.worker_id) for n in found]
        finally:
            await index.on_shutdown()
            await client.aclose()

    return asyncio.run(run())


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(world=worlds())
def test_redis_search_equals_brute_force(server_urls, world) -> None:
    workers, query, radius, need, limit, min_ts = world

    got = _redis_search(
        server_urls, workers, query, radius, skills=need, limit=limit, min_recorded_at=min_ts
    )
    expected = brute_force(workers, query, radius, need, limit, min_ts)
    assert [w for _, w in got] == [w for _, w in expected]
    for (gd, _), (ed, _) in zip(got, expected, strict=True):
        assert gd == pytest.approx(ed, abs=1e-6)


def _bearing(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    """Initial bearing (degrees) of the great circle from point 1 to point 2."""
    phi1, phi2, dl = math.radians(lat1), math.radians(lat2), math.radians(lng2 - lng1)
    y = math.sin(dl) * math.cos(phi2)
    x = math.cos(phi1) * math.sin(phi2) - math.sin(phi1) * math.cos(phi2) * math.cos(dl)
    return math.degrees(math.atan2(y, x))


@st.composite
def rim_worlds(draw):
    """A worker at the point of a cell's fine cells farthest from the cell's centre (a hair inside
    its fine cell), and a query point just under the radius beyond it, on the great circle from
    the centre through the worker: the cell's bound (centre distance less reach) is then within
    `inside` of the worker's distance, so a reach too small by more than that loses the worker.
    The cell is of the resolution the search starts at, or finer with a crowd at its centre so
    that the cells above it are split."""
    kind = draw(st.sampled_from(["city", "pentagon", "pole", "antimeridian"]))
    if kind == "pentagon":
        near = destination(*draw(st.sampled_from(PENTAGONS)), draw(st.floats(0, 360)),
                           draw(st.floats(0, 5000)))  # fmt: skip
    elif kind == "pole":
        near = (draw(st.sampled_from([89.99, -89.99])), draw(st.floats(-180, 180)))
    elif kind == "antimeridian":
        near = (draw(st.floats(-60, 60)), draw(st.sampled_from([179.999, -179.999])))
    else:
        near = (draw(st.floats(-60, 60)), draw(st.floats(-180, 180)))
    radius = draw(st.sampled_from([50.0, 300.0, 1000.0, 2500.0, 5000.0]))
    res = min(FINE_RES - 1, start_cells(*near, radius)[0] + draw(st.sampled_from([0, 0, 1, 2])))
    cell = h3.latlng_to_cell(*near, res)
    far_lat, far_lng, _ = farthest_point(cell)
    clat, clng = h3.cell_to_latlng(cell)
    # Into the fine cell under `cell` that has this vertex: a millimetre towards its centre.
    fine = next(
        f for f in h3.grid_disk(h3.latlng_to_cell(far_lat, far_lng, FINE_RES), 1)
        if h3.cell_to_parent(f, res) == cell
        and any(haversine_m(far_lat, far_lng, *v) < 1e-6 for v in h3.cell_to_boundary(f))
    )  # fmt: skip
    w = destination(far_lat, far_lng, _bearing(far_lat, far_lng, *h3.cell_to_latlng(fine)), 1e-3)
    if h3.latlng_to_cell(*w, FINE_RES) != fine:
        w = h3.cell_to_latlng(fine)  # a vertex on a face edge: keep the world valid
    inside = draw(st.sampled_from([2e-3, 1e-2, 0.3]))
    query = destination(*w, _bearing(*w, clat, clng) + 180.0, radius - inside)
    others = [
        (wid, *destination(*query, draw(st.floats(0, 360)), draw(st.floats(0, radius * 1.2))))
        for wid in range(2, draw(st.integers(2, 30)))
    ]
    crowd = [] if res == start_cells(*query, radius)[0] else [(clat, clng)] * 60
    return w, query, radius, others, crowd


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(world=rim_worlds())
def test_redis_search_finds_the_worker_at_the_far_point_of_a_cell_at_the_rim(
    server_urls, world
) -> None:
    (wlat, wlng), query, radius, others, crowd = world
    workers = (
        [(1, wlat, wlng, 1000.0, frozenset(), True, True)]
        + [(wid, lat, lng, 1000.0, frozenset(), True, True) for wid, lat, lng in others]
        + [(100 + k, *at, 1000.0, frozenset(), True, True) for k, at in enumerate(crowd)]
    )  # fmt: skip
    expected = brute_force(workers, query, radius, [], 100, 0.0)
    assert 1 in [w for _, w in expected]  # the world is what it claims to be

    got = _redis_search(server_urls, workers, query, radius, limit=100)
    assert [w for _, w in got] == [w for _, w in expected]
