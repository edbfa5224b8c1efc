"""The grid the live index files workers under.

A quadtree over latitude/longitude. At level L the world is cut into 2**L rows and 2**(L + 1)
columns of STEP(L) = 180 / 2**L degrees (so cells are about square at mid latitudes: at level 18,
76 m north-south by 65 m east-west at 31 degrees); the four children of a cell split it in half
both ways, so a cell is exactly the union of its children (no spill, unlike H3).

A cell's code interleaves its row and column bits, most significant first (the extra column bit,
east or west hemisphere, leads). A worker's code is that of its FINE_LEVEL cell, and the codes of
the fine cells under any coarser cell form one contiguous range:

    code(L + 1, 2i + a, 2j + b) = 4 * code(L, i, j) + 2a + b
    fine codes under (L, i, j) = [code * 4**(FINE_LEVEL - L), (code + 1) * 4**(FINE_LEVEL - L))

so one sorted set scored by the fine code serves every level: a cell at any level is one
ZRANGEBYSCORE. The search (lua/search.lua) walks the tree itself, nearest cell first, splitting
cells that hold many workers and reading small ones whole, with exact lower bounds on the distance
from the query point to each cell; the move script (lua/move.lua, `cell_code` in lua/common.lua)
computes the code of a worker's last accepted fix, with the same operations as `cell_code` here.

Row and column come from `floor((lat + 90) / STEP)` and `floor((lng + 180) / STEP)`, the same
IEEE operations in Python and Lua; every cell edge is exactly representable.
"""

from __future__ import annotations

import math

FINE_LEVEL = 18
"""Finest level: the worker's code. Must equal FINE_LEVEL in lua/common.lua."""
FINE_STEP = 180.0 / (1 << FINE_LEVEL)
_ROWS = 1 << FINE_LEVEL
_COLS = 1 << (FINE_LEVEL + 1)


def _spread8(x: int) -> int:
    out = 0
    for k in range(8):
        out |= ((x >> k) & 1) << (2 * k)
    return out


_SPREAD = [_spread8(x) for x in range(256)]


def _spread(x: int) -> int:
    """The bits of x (< 2**24) with a zero bit inserted above each."""
    return _SPREAD[x & 255] | _SPREAD[(x >> 8) & 255] << 16 | _SPREAD[x >> 16] << 32


def cell_code(lat: float, lng: float) -> int:
    """The code of the fine cell holding the point (longitude taken modulo 360)."""
    row = math.floor((lat + 90.0) / FINE_STEP)
    row = 0 if row < 0 else _ROWS - 1 if row >= _ROWS else row
    if not -180.0 <= lng < 180.0:
        lng = (lng + 180.0) % 360.0 - 180.0
    col = math.floor((lng + 180.0) / FINE_STEP) % _COLS
    return (col >> FINE_LEVEL) << (2 * FINE_LEVEL) | _spread(row) << 1 | _spread(col & (_ROWS - 1))


def cell_rect(level: int, code: int) -> tuple[float, float, float, float]:
    """(south, north, west, east) edges of a cell, degrees (for tests and diagnostics)."""
    row = col = 0
    for k in range(level):
        pair = (code >> (2 * k)) & 3
        row |= (pair >> 1) << k
        col |= (pair & 1) << k
    col |= (code >> (2 * level)) << level
    step = 180.0 / (1 << level)
    south, west = -90.0 + row * step, -180.0 + col * step
    return south, south + step, west, west + step
