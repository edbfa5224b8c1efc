"""The H3 cells the live index files workers under.

A worker is filed under its FINE_RES H3 cell (resolution 10: hexagons about 66 m across an edge),
as a member of one sorted set per community (and one per skill) scored by that cell's *code*: the
cell's base cell and its ten digits, the bits of the H3 index below the mode and resolution
fields (37 bits: exact in a float score). The fine cells descending from any coarser cell P share
P's base cell and first digits, so their codes form one contiguous range:

    P at resolution r, fine codes under P = [lo(P), lo(P) + 8**(FINE_RES - r))

(digits run 0..6 and 7 marks "unused", so the range holds a few codes no cell has). A worker is
thereby listed in its fine cell and in every coarser parent at once, and a radius query reads a
compacted cover of coarse and fine cells, each one ZRANGEBYSCORE.

H3 children do not tile their parent exactly: the fine cells under P spill a little over P's
hexagon. The search bounds a cell by a disc: every point of every fine cell under P lies within
reach(P) = REACH * circumradius(P) of P's centre (measured: at most 1.062 times, over about
3,000 cells of resolutions 1-9, a third of them next to pentagons, with a branch-and-bound over
the fine descendants' vertices: `python -m geo.live.cells --measure 3000`). The search
(lua/search.lua) walks cells nearest first; to split a cell it reads its children's centres and
reaches from a hash kept per community, `entry(P)`, written for every cell from resolution 0 down
to FINE_RES - 1 the first time a worker lands in a fine cell under it (move.lua reports the fine
cell's parent missing; `RedisLiveIndex.move` then writes the chain). Python picks the start
cells (`start_cells`): rings of cells about the radius's size around the query point, with
their centres and reaches (cached per query cell and radius).

Jobs are filed the same way in PostgreSQL (`jobs.h3_code`, a B-tree): `disc_code_ranges` turns a
disc into ranges of codes from the same start cells, split where they cross its edge and merged.
"""

from __future__ import annotations

import math
import struct
from functools import lru_cache

import h3.api.basic_int as h3

from geo.distance import haversine_m

FINE_RES = 10
"""Resolution of the cell a worker is filed under. Must equal FINE_RES in lua/search.lua."""
_DIGIT_BITS = 3
_SHIFT = _DIGIT_BITS * (15 - FINE_RES)
"""Bits of the digits finer than FINE_RES (all 7 in a FINE_RES index)."""
_CODE_MASK = (1 << (7 + _DIGIT_BITS * FINE_RES)) - 1
REACH = 1.15
"""reach(P) / circumradius(P): the measured worst is 1.062 (module docstring)."""
REACH_SLACK_M = 0.01
"""Added to every reach: points an ulp outside their cell's hexagon, rounding of the centre."""
ENTRY = struct.Struct(">" + "d" * 21)
"""An entry: per child digit 0..6, the child's centre lat, lng and its reach (m); reach -1 where
the digit has no child (the deleted digit 1 of pentagons)."""
FIELD = struct.Struct(">Bd")
"""An entry's field in the hash: the cell's resolution and the first fine code under it."""


def span(res: int) -> int:
    """How many fine codes a cell of this resolution spans."""
    return 8 ** (FINE_RES - res)


def code_range(cell: int) -> tuple[int, int]:
    """(first fine code under the cell, how many codes it spans), for a cell of resolution <=
    FINE_RES."""
    res = h3.get_resolution(cell)
    last = (cell >> _SHIFT) & _CODE_MASK  # the digits below res are 7: the range's last code
    n = span(res)
    return last - n + 1, n


def cell_code(lat: float, lng: float) -> int:
    """The code of the FINE_RES cell holding the point: the worker's score."""
    return (h3.latlng_to_cell(lat, lng, FINE_RES) >> _SHIFT) & _CODE_MASK


def circumradius_m(cell: int) -> float:
    """Largest distance from the cell's centre to its boundary (a vertex: the edges are arcs of
    great circles, along which the distance from a point has no interior maximum)."""
    lat, lng = h3.cell_to_latlng(cell)
    return max(haversine_m(lat, lng, a, b) for a, b in h3.cell_to_boundary(cell))


def reach_m(cell: int) -> float:
    """Bound on the distance from the cell's centre to any point of a fine cell under it."""
    return REACH * circumradius_m(cell) + REACH_SLACK_M


def field(res: int, first: int) -> bytes:
    """The hash field of the entry of the cell (res, first fine code)."""
    return FIELD.pack(res, float(first))


@lru_cache(maxsize=1 << 13)
def entry(cell: int) -> bytes:
    """The cell's children (centre, reach) by digit, for the search to split it."""
    res = h3.get_resolution(cell)
    values = [0.0, 0.0, -1.0] * 7
    shift = _DIGIT_BITS * (15 - res - 1)
    for child in h3.cell_to_children(cell, res + 1):
        digit = (child >> shift) & 7
        lat, lng = h3.cell_to_latlng(child)
        values[3 * digit : 3 * digit + 3] = (lat, lng, reach_m(child))
    return ENTRY.pack(*values)


def chain(fine_cell: int) -> dict[bytes, bytes]:
    """The entries of every cell above a FINE_RES cell (resolutions 0..FINE_RES - 1), by field."""
    out = {}
    for res in range(FINE_RES):
        parent = h3.cell_to_parent(fine_cell, res)
        out[field(res, code_range(parent)[0])] = entry(parent)
    return out


def parent_field(code: int) -> bytes:
    """The field of the entry of the fine cell's parent (what move.lua checks)."""
    return field(FINE_RES - 1, code - code % 8)


# Start cells. Around a cell of circumradius e, the centres of the cells m rings out are at least
# 1.5 m e away on a regular hexagonal lattice; allowing 15% for the lattice's distortion near
# pentagons and between neighbours, and 10% for a neighbour's larger size, no point under a cell
# k + 1 or more rings out is within 1.275 (k + 1) e - e - 1.1 REACH e of the query point (which is
# within e of its own cell's centre). tests/geo/test_live_cells.py checks the rings against the
# bounds of the cells around them.
_RING_STEP = 1.5 * 0.85
_RING_LOSS = 1.0 + 1.1 * REACH
_AVG_EDGE_M = [h3.average_hexagon_edge_length(res, "m") for res in range(16)]
MAX_START_RING = 3


def start_ring(radius_m: float, circumradius: float) -> int:
    """Rings around the query's cell (of this circumradius) that hold every cell within
    `radius_m` of the query point."""
    need = (radius_m / circumradius + _RING_LOSS) / _RING_STEP - 1.0
    return max(1, math.floor(need) + 1)


def start_cells(lat: float, lng: float, radius_m: float) -> tuple[int, bytes]:
    """(resolution, cells) to start a search from: every cell of that resolution that may hold a
    point within `radius_m` of (lat, lng), and a few more; per cell its first fine code, centre
    and reach, packed as float64s (START)."""
    res = _start_res(radius_m)
    while True:
        start = _start(h3.latlng_to_cell(lat, lng, res), radius_m)
        if start is not None:
            return res, start
        res -= 1


def start_disk(lat: float, lng: float, radius_m: float) -> tuple[int, ...]:
    """The cells `start_cells` packs, as H3 indexes."""
    res = _start_res(radius_m)
    while True:
        cells = _start_disk(h3.latlng_to_cell(lat, lng, res), radius_m)
        if cells is not None:
            return cells
        res -= 1


def _start_res(radius_m: float) -> int:
    """The finest resolution whose cells are about the radius's size or larger (two rings)."""
    res = FINE_RES
    while res > 1 and _AVG_EDGE_M[res] * 1.5 < radius_m:
        res -= 1
    return res


START = struct.Struct(">dddd")
"""A start cell: first fine code, centre lat, lng, reach (m)."""


@lru_cache(maxsize=1 << 11)
def _start(cell: int, radius_m: float) -> bytes | None:
    """START of the start cells around a query point in `cell`, or None (`_start_disk`)."""
    cells = _start_disk(cell, radius_m)
    return None if cells is None else b"".join(map(_start_record, cells))


@lru_cache(maxsize=1 << 11)
def _start_disk(cell: int, radius_m: float) -> tuple[int, ...] | None:
    """The start cells around a query point in `cell` (they depend on nothing else), or None if
    there would be more than MAX_START_RING rings of them (start coarser)."""
    res = h3.get_resolution(cell)
    ring = start_ring(radius_m, circumradius_m(cell))
    if ring > MAX_START_RING and res > 1:
        return None
    cells = h3.grid_disk(cell, ring)
    if any(h3.is_pentagon(c) for c in cells):
        cells = h3.grid_disk(cell, ring + 1)  # the lattice bends around a pentagon
    return tuple(cells)


@lru_cache(maxsize=1 << 14)
def _start_record(cell: int) -> bytes:
    """START of one cell (each is in the rings of 19 or more query cells)."""
    return START.pack(code_range(cell)[0], *h3.cell_to_latlng(cell), reach_m(cell))


# Covers: a disc as ranges of fine codes, for stores that read a range of codes at once (the jobs
# board's B-tree on `jobs.h3_code`). The same start cells and reaches as the search, so nothing
# within the radius is left out; the spill beyond it is the reader's to trim by distance.
COVER_SPLITS = 2
"""Times a start cell crossing the disc's edge is split into the children that reach the disc:
each split cuts the spill (the cover's area is about 5x, 2.3x, 1.4x the disc's after 0, 1, 2
splits at 3,000 m) and multiplies the ranges (about 4, 9, 22)."""


def disc_code_ranges(
    lat: float, lng: float, radius_m: float, splits: int = COVER_SPLITS
) -> list[tuple[int, int]]:
    """Inclusive ranges (lo, hi) of fine codes, ascending and apart, holding the code of every
    point within `radius_m` of (lat, lng) (haversine): the start cells whose reach comes within
    the radius, those crossing its edge split `splits` times into the children that do."""
    out: list[tuple[int, int]] = []
    for cell in start_disk(lat, lng, radius_m):
        _cover(cell, lat, lng, radius_m, splits, out)
    return merge_code_ranges(out)


def _cover(
    cell: int, lat: float, lng: float, radius_m: float, splits: int, out: list[tuple[int, int]]
) -> bool:
    """Append the ranges of the cell's part that may reach the disc; True if that was the whole
    cell (its children then fold back into it)."""
    clat, clng, reach = _centre_reach(cell)
    d = haversine_m(lat, lng, clat, clng)
    if d - reach > radius_m:
        return False
    res = h3.get_resolution(cell)
    if d + reach > radius_m and splits > 0 and res < FINE_RES:
        mark = len(out)
        parts = [_cover(c, lat, lng, radius_m, splits - 1, out) for c in _children(cell)]
        if not all(parts):
            return False
        del out[mark:]
    first, n = code_range(cell)
    out.append((first, first + n - 1))
    return True


@lru_cache(maxsize=1 << 15)
def _centre_reach(cell: int) -> tuple[float, float, float]:
    return (*h3.cell_to_latlng(cell), reach_m(cell))


@lru_cache(maxsize=1 << 13)
def _children(cell: int) -> tuple[int, ...]:
    return tuple(h3.cell_to_children(cell, h3.get_resolution(cell) + 1))


def merge_code_ranges(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Inclusive ranges sorted, with those that overlap, touch or are apart only by codes no cell
    has (a digit 7) made one."""
    merged: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if merged and lo <= real_code_from(merged[-1][1] + 1):
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return merged


def real_code_from(code: int) -> int:
    """The least code >= `code` with no digit 7 (the digit's "unused" mark: no cell has it)."""
    while True:
        for pos in range(FINE_RES - 1, -1, -1):  # the highest digit first
            if (code >> _DIGIT_BITS * pos) & 7 == 7:
                code = ((code >> _DIGIT_BITS * pos) + 1) << _DIGIT_BITS * pos
                break
        else:
            return code


def farthest_point(cell: int) -> tuple[float, float, float]:
    """(lat, lng, distance): the vertex of a FINE_RES cell under the cell farthest from the cell's
    centre, by branch-and-bound (children pruned when their centre's distance plus 1.6 times their
    circumradius cannot beat the best so far)."""
    clat, clng = h3.cell_to_latlng(cell)
    best, stack = (clat, clng, 0.0), [cell]
    while stack:
        c = stack.pop()
        r = h3.get_resolution(c)
        if r == FINE_RES:
            for a, b in h3.cell_to_boundary(c):
                d = haversine_m(clat, clng, a, b)
                if d > best[2]:
                    best = (a, b, d)
            continue
        for child in h3.cell_to_children(c, r + 1):
            a, b = h3.cell_to_latlng(child)
            if haversine_m(clat, clng, a, b) + 1.6 * circumradius_m(child) > best[2]:
                stack.append(child)
    return best


def measure(samples: int, seed: int = 1) -> dict[int, float]:
    """Worst reach / circumradius seen per resolution, over random cells (a third of them next
    to pentagons)."""
    import random

    rnd = random.Random(seed)
    pentagons = [p for res in range(FINE_RES) for p in h3.get_pentagons(res)]
    worst: dict[int, float] = {}
    for _ in range(samples):
        res = rnd.randint(0, FINE_RES - 1)
        if rnd.random() < 0.33:
            near = [p for p in pentagons if h3.get_resolution(p) == res]
            cell = rnd.choice(list(h3.grid_disk(rnd.choice(near), 2)))
        else:
            lat = math.degrees(math.asin(rnd.uniform(-1, 1)))
            cell = h3.latlng_to_cell(lat, rnd.uniform(-180, 180), res)
        worst[res] = max(worst.get(res, 0.0), farthest_point(cell)[2] / circumradius_m(cell))
    return worst


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--measure", type=int, default=300, help="cells to sample")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    for res, ratio in sorted(measure(args.measure, args.seed).items()):
        print(f"resolution {res}: reach / circumradius <= {ratio:.4f} (REACH = {REACH})")
