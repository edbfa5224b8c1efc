"""Percentiles and the cells of a report."""

from __future__ import annotations

import math
from collections.abc import Sequence


def pct(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), linear between closest ranks; nan when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def ms(v: float) -> str:
    """Milliseconds for a table cell: 2 decimals under 10 ms, 1 above, a dash for nan."""
    return "—" if math.isnan(v) else f"{v:.1f} ms" if v >= 10 else f"{v:.2f} ms"


def verdict(ok: bool) -> str:
    return "**met**" if ok else "**MISSED**"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
