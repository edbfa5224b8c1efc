"""The H3 cell arithmetic of the live index (geo/live/cells.py): code ranges, entries, reaches and
start cells, against the h3 library itself."""

from __future__ import annotations

import bisect
import itertools
import math
import random

import h3.api.basic_int as h3
from hypothesis import given, settings
from hypothesis import strategies as st

from geo.areas import destination
from geo.distance import haversine_m
from geo.live.cells import (
    ENTRY,
    FINE_RES,
    REACH,
    START,
    cell_code,
    chain,
    code_range,
    disc_code_ranges,
    entry,
    farthest_point,
    field,
    merge_code_ranges,
    reach_m,
    real_code_from,
    start_cells,
)

PENTAGONS = [h3.cell_to_latlng(p) for p in h3.get_pentagons(0)]

points = st.one_of(
    st.tuples(st.floats(-90, 90), st.floats(-180, 180)),
    st.tuples(st.sampled_from([90.0, -90.0, 89.999, -89.999]), st.floats(-180, 180)),
    st.tuples(st.floats(-60, 60), st.sampled_from([180.0, -180.0, 179.9999, -179.9999])),
    st.builds(
        lambda p, bearing, d: destination(*p, bearing, d),
        st.sampled_from(PENTAGONS), st.floats(0, 360), st.floats(0, 50_000),
    ),
)  # fmt: skip


@given(points, st.integers(0, FINE_RES))
def test_a_cell_is_the_range_of_the_codes_of_the_fine_cells_under_it(point, res) -> None:
    fine = h3.latlng_to_cell(*point, FINE_RES)
    code = cell_code(*point)
    assert code_range(fine) == (code, 1)
    parent = h3.cell_to_parent(fine, res)
    first, n = code_range(parent)
    assert first <= code < first + n and n == 8 ** (FINE_RES - res)
    # Its children's ranges are consecutive slices of it, by digit.
    if res < FINE_RES:
        for child in h3.cell_to_children(parent, res + 1):
            digit = (child >> 3 * (15 - res - 1)) & 7
            assert code_range(child) == (first + digit * n // 8, n // 8)


@given(points, st.integers(0, FINE_RES - 1))
def test_an_entry_holds_each_childs_centre_and_reach(point, res) -> None:
    fine = h3.latlng_to_cell(*point, FINE_RES)
    cell = h3.cell_to_parent(fine, res)  # not always the point's own cell at res: H3 spills
    values = ENTRY.unpack(entry(cell))
    children = {(c >> 3 * (15 - res - 1)) & 7: c for c in h3.cell_to_children(cell, res + 1)}
    for digit in range(7):
        lat, lng, reach = values[3 * digit : 3 * digit + 3]
        if digit not in children:
            assert reach == -1 and h3.is_pentagon(cell) and digit == 1
            continue
        assert (lat, lng) == h3.cell_to_latlng(children[digit])
        assert reach == reach_m(children[digit])
    assert chain(fine)[field(res, code_range(cell)[0])] == entry(cell)


@settings(max_examples=60, deadline=None)
@given(points, st.integers(2, FINE_RES - 1))
def test_every_fine_cell_under_a_cell_is_within_its_reach(point, res) -> None:
    cell = h3.latlng_to_cell(*point, res)
    _, _, far = farthest_point(cell)
    assert far <= reach_m(cell) / REACH * 1.08, "the measured margin holds here too"
    assert far < reach_m(cell)


@settings(max_examples=300, deadline=None)
@given(points, st.sampled_from([0.0, 1.0, 50.0, 300.0, 999.0, 2500.0, 5000.0, 20_000.0, 50_000.0]))
def test_start_cells_hold_every_cell_within_the_radius(point, radius) -> None:
    """Every cell of the start resolution whose reach comes within the radius is a start cell:
    checked over the rings around them."""
    res, packed = start_cells(*point, radius)
    assert 1 <= res <= FINE_RES
    cells = [START.unpack_from(packed, at) for at in range(0, len(packed), START.size)]
    chosen = {int(first) for first, *_ in cells}
    assert len(chosen) == len(cells) <= 61
    for first, lat, lng, reach in cells:  # each with its centre and reach
        cell = h3.cell_to_parent(h3.latlng_to_cell(lat, lng, FINE_RES), res)
        assert code_range(cell)[0] == first
        assert (lat, lng, reach) == (*h3.cell_to_latlng(cell), reach_m(cell))
    own = h3.latlng_to_cell(*point, res)
    for cell in h3.grid_disk(own, 7 if radius <= 5000 else 4):
        if code_range(cell)[0] in chosen:
            continue
        lat, lng = h3.cell_to_latlng(cell)
        assert haversine_m(*point, lat, lng) - reach_m(cell) > radius, cell


def test_codes_are_exact_in_a_float_score() -> None:
    last = max(sum(code_range(base)) for base in h3.get_res0_cells())  # past every code
    assert last < 2**53
    assert math.ulp(float(last)) <= 1.0


# --- disc covers (the jobs board's ranges of codes) ------------------------------------------


def covered(ranges: list[tuple[int, int]], code: int) -> bool:
    at = bisect.bisect_right(ranges, (code, math.inf)) - 1
    return at >= 0 and ranges[at][0] <= code <= ranges[at][1]


@settings(max_examples=400, deadline=None)
@given(
    points,
    st.sampled_from([1.0, 100.0, 350.0, 999.0, 3000.0, 7500.0, 20_000.0]),
    st.floats(0, 360),
    st.floats(0, 1),
    st.integers(3, FINE_RES),
)
def test_a_disc_cover_holds_the_code_of_every_point_within_the_radius(
    point, radius, bearing, share, res
) -> None:
    """Random points of the disc, and the corners of their H3 cells of some resolution (where a
    fine cell may lie outside the coarse cell whose codes hold it) that are within the radius."""
    ranges = disc_code_ranges(*point, radius)
    assert ranges and all(lo <= hi for lo, hi in ranges)
    assert all(a[1] + 1 < b[0] for a, b in itertools.pairwise(ranges)), "merged"
    target = destination(*point, bearing, radius * share)
    near_edge = destination(*point, bearing, radius - 0.02)
    corners = [
        c
        for at in (target, near_edge)
        for c in h3.cell_to_boundary(h3.latlng_to_cell(*at, res))
        if haversine_m(*point, *c) <= radius
    ]
    for lat, lng in [target, near_edge, *corners]:
        assert covered(ranges, cell_code(lat, lng)), (lat, lng)


@settings(max_examples=60, deadline=None)
@given(points, st.sampled_from([300.0, 3000.0, 20_000.0]))
def test_a_disc_cover_spills_little_past_the_radius(point, radius) -> None:
    """The fine cells read: about 1.4 times the disc's area (at most 3 times here, near pentagons
    included), in a few dozen ranges."""
    ranges = disc_code_ranges(*point, radius)
    assert len(ranges) <= 120
    cells = sum(_real_below(hi + 1) - _real_below(lo) for lo, hi in ranges)
    assert cells * h3.average_hexagon_area(FINE_RES, "m^2") <= 3.0 * math.pi * radius**2


def _real_below(n: int) -> int:
    """How many codes below n have no digit 7."""
    count = (n >> 3 * FINE_RES) * 7**FINE_RES
    for pos in range(FINE_RES - 1, -1, -1):
        digit = (n >> 3 * pos) & 7
        count += digit * 7**pos
        if digit == 7:
            break
    return count


def _is_real(code: int) -> bool:
    return all((code >> 3 * pos) & 7 != 7 for pos in range(FINE_RES))


def test_real_codes_skip_only_the_codes_with_a_digit_7() -> None:
    rnd = random.Random(5)
    samples = [0, 6, 7, 0o67, 0o77, 0o677, 0o7000, 0o1777]
    for code in samples + [rnd.randrange(8**6) for _ in range(300)]:
        nxt = code
        while not _is_real(nxt):
            nxt += 1
        assert real_code_from(code) == nxt, oct(code)
    assert all(_real_below(n + 1) - _real_below(n) == _is_real(n) for n in range(8**4))


def test_merged_ranges_hold_the_same_real_codes_and_cannot_merge_further() -> None:
    rnd = random.Random(6)
    for _ in range(100):
        ranges = []
        for _ in range(rnd.randint(1, 8)):
            lo = rnd.randrange(8**4)
            ranges.append((lo, lo + rnd.choice([0, 1, 6, 7, 8, 63, 64, 500])))
        merged = merge_code_ranges(ranges)
        for a, b in itertools.pairwise(merged):
            assert a[1] + 1 < b[0] and _real_below(b[0]) > _real_below(a[1] + 1), "merge more"
        for code in filter(_is_real, range(8**4 + 600)):
            assert covered(merged, code) == any(lo <= code <= hi for lo, hi in ranges), oct(code)
