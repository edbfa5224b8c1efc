"""Which index cells a radius search must read, nearest first.

Workers are filed under their resolution-9 cell and that cell's index parents at resolutions 8 and
7 (`cell_to_parent`), so the set of a coarse cell is exactly the union of its children's sets. A
search reads a mixed-resolution cover of the disc: coarse cells far from the point (few reads where
workers are sparse), fine cells near it (so a dense area stops after a handful of workers).

Each cover cell carries a lower bound on the distance from the query point to any worker filed
under it. The bound is taken from the centre of the point's resolution-9 cell, less that cell's own
extent, so one cover serves every point in that cell and can be cached. A cell's extent is the
farthest reach of its resolution-9 descendants from its centre: index children spill a little
outside a parent's hexagon, and the bound must hold for them too.
"""

from __future__ import annotations

import math
from functools import lru_cache

import h3.api.basic_int as h3

from geo.distance import haversine_m

FINE_RES = 9
LEVELS = (7, 8, 9)
COARSE_RES = LEVELS[0]
# Refine a cell into its children when it may hold workers this close (metres): near the point,
# reading fine cells lets the search stop early; far away, one coarse cell is one read.
REFINE_BELOW = {7: 1500.0, 8: 450.0}
RADIUS_STEP_M = 50.0
"""Covers are cached per radius rounded up to this step; the exact radius is applied per worker."""


def file_cells(lat: float, lng: float) -> tuple[int, ...]:
    """The cells (resolutions 7, 8, 9) a worker at the point is filed under."""
    fine = h3.latlng_to_cell(lat, lng, FINE_RES)
    return (*(h3.cell_to_parent(fine, r) for r in LEVELS[:-1]), fine)


@lru_cache(maxsize=400_000)
def cell_reach(cell: int) -> tuple[float, float, float]:
    """(lat, lng, extent_m): the cell's centre and the farthest reach of its fine descendants."""
    lat, lng = h3.cell_to_latlng(cell)
    res = h3.get_resolution(cell)
    if res >= FINE_RES:
        extent = max(haversine_m(lat, lng, vlat, vlng) for vlat, vlng in h3.cell_to_boundary(cell))
    else:
        extent = 0.0
        for child in h3.cell_to_children(cell, res + 1):
            clat, clng, cext = cell_reach(child)
            extent = max(extent, haversine_m(lat, lng, clat, clng) + cext)
    # A hair more, so float rounding never makes the bound exceed a true distance.
    return lat, lng, extent * (1 + 1e-9) + 1e-3


def cover_key(lat: float, lng: float, radius_m: float) -> tuple[int, float]:
    """(origin cell, rounded radius): every search with the same key reads the same cover."""
    return h3.latlng_to_cell(lat, lng, FINE_RES), math.ceil(
        radius_m / RADIUS_STEP_M
    ) * RADIUS_STEP_M


def cover(lat: float, lng: float, radius_m: float) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """(cells, lower bounds) to read for a search around the point, in ascending bound order."""
    return cover_of(*cover_key(lat, lng, radius_m))


@lru_cache(maxsize=16_384)
def cover_of(origin: int, radius_m: float) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """The cover for every point of the fine cell `origin` and radii up to `radius_m`."""
    olat, olng, oext = cell_reach(origin)

    def bound(cell: int) -> float:
        clat, clng, cext = cell_reach(cell)
        return max(0.0, haversine_m(olat, olng, clat, clng) - cext - oext)

    # Grow rings of coarse cells until two whole rings lie beyond the radius.
    start = h3.latlng_to_cell(olat, olng, COARSE_RES)
    coarse: list[tuple[float, int]] = []
    inner: set[int] = set()
    k, empty_rings = 0, 0
    while empty_rings < 2:
        disk = set(h3.grid_disk(start, k))
        ring = disk - inner
        inner = disk
        hits = [(b, c) for c in ring if (b := bound(c)) <= radius_m]
        coarse.extend(hits)
        empty_rings = 0 if hits else empty_rings + 1
        k += 1

    out: list[tuple[float, int]] = []

    def refine(b: float, cell: int) -> None:
        res = h3.get_resolution(cell)
        if res < FINE_RES and b < REFINE_BELOW[res]:
            for child in h3.cell_to_children(cell, res + 1):
                cb = bound(child)
                if cb <= radius_m:
                    refine(cb, child)
        else:
            out.append((b, cell))

    for b, cell in coarse:
        refine(b, cell)
    out.sort()
    return tuple(c for _, c in out), tuple(b for b, _ in out)
