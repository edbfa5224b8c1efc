"""Service areas: a circle or a polygon, its H3 cover, and the exact point-in-area test.

A point belongs to an area when one of its H3 ancestors is in the area's compacted cover (a fast,
indexable pre-filter) and the exact shape contains it. Points on the boundary belong to the area.
Polygons follow GeoJSON: edges are straight lines in lng/lat, the same rule H3 and PostGIS
geometry use, so the cover and the exact test agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import h3.api.basic_int as h3
from shapely import prepared
from shapely.geometry import Point, Polygon

from geo.distance import EARTH_RADIUS_M, haversine_m
from geo.errors import AreaTooLargeError, InvalidShapeError

FINEST_COVER_RES = 9
COARSEST_COVER_RES = 5
MAX_COVER_CELLS = 60_000
MAX_AREA_KM2 = 10_000.0
"""A community is a neighbourhood or a district, not a province: larger areas are refused."""
MAX_RADIUS_M = 50_000
MIN_RADIUS_M = 50
MAX_ABS_LAT = 85.0
_CIRCLE_SIDES = 96
# Grow the shape a little before covering it, so cells that merely touch the boundary are kept.
_COVER_MARGIN_DEG = 1e-4


@dataclass(frozen=True)
class ServiceArea:
    """A community's area: `polygon` when it has a boundary, else a circle around the centre."""

    center_lat: float
    center_lng: float
    radius_m: float | None = None
    polygon: Polygon | None = None

    def __post_init__(self) -> None:
        if (self.radius_m is None) == (self.polygon is None):
            raise InvalidShapeError("an area is either a radius or a polygon")
        if not -MAX_ABS_LAT <= self.center_lat <= MAX_ABS_LAT:
            raise InvalidShapeError(f"communities must lie between {MAX_ABS_LAT}° S and N")
        if self.radius_m is not None and not MIN_RADIUS_M <= self.radius_m <= MAX_RADIUS_M:
            raise InvalidShapeError(f"radius_m must be within [{MIN_RADIUS_M}, {MAX_RADIUS_M}]")
        if self.polygon is not None:
            object.__setattr__(self, "_prepared", prepared.prep(self.polygon))

    def contains(self, lat: float, lng: float) -> bool:
        if self.polygon is not None:
            return bool(self._prepared.covers(Point(lng, lat)))  # type: ignore[attr-defined]
        assert self.radius_m is not None
        return haversine_m(self.center_lat, self.center_lng, lat, lng) <= self.radius_m

    def outline(self) -> Polygon:
        """The area as a lng/lat polygon; a circle becomes a circumscribed polygon."""
        if self.polygon is not None:
            return self.polygon
        assert self.radius_m is not None
        # Circumscribe so the outline holds the whole circle, then a metre more for rounding.
        r = self.radius_m / math.cos(math.pi / _CIRCLE_SIDES) + 1.0
        ring = [
            destination(self.center_lat, self.center_lng, 360.0 * i / _CIRCLE_SIDES, r)
            for i in range(_CIRCLE_SIDES)
        ]
        lngs = [p[1] for p in ring]
        if max(lngs) - min(lngs) > 180:
            raise InvalidShapeError("areas crossing the antimeridian are not supported")
        return Polygon([(lng, lat) for lat, lng in ring])

    def area_km2(self) -> float:
        """Approximate area (equal-area scaling of the lng/lat outline at its mean latitude)."""
        outline = self.outline()
        _, miny, _, maxy = outline.bounds
        metres_per_deg = math.pi / 180 * EARTH_RADIUS_M
        scale = metres_per_deg**2 * math.cos(math.radians((miny + maxy) / 2))
        return outline.area * scale / 1e6

    def cover(self) -> tuple[int, list[int]]:
        """(resolution, compacted cells) whose union holds the whole area."""
        area = self.area_km2()
        if area > MAX_AREA_KM2:
            raise AreaTooLargeError(
                f"the area is about {area:,.0f} km²; one community may cover at most "
                f"{MAX_AREA_KM2:,.0f} km², so split it"
            )
        shape = self._grown_shape()
        for res in range(FINEST_COVER_RES, COARSEST_COVER_RES - 1, -1):
            # Estimate first: filling a big shape with fine cells costs memory before any count.
            expected = area / h3.average_hexagon_area(res, "km^2")
            if expected > MAX_COVER_CELLS * 0.8:
                continue
            cells = h3.h3shape_to_cells_experimental(shape, res, "overlap")
            if len(cells) <= MAX_COVER_CELLS:
                return res, sorted(h3.compact_cells(cells))
        raise AreaTooLargeError("the area is too large for one community; split it")

    def cells_at(self, res: int, limit: int) -> list[int] | None:
        """Every cell of resolution `res` that overlaps the area, or None when there would be
        more than `limit` (estimated first, so a large area costs nothing)."""
        if self.area_km2() / h3.average_hexagon_area(res, "km^2") > limit * 0.8:
            return None
        cells = h3.h3shape_to_cells_experimental(self._grown_shape(), res, "overlap")
        return sorted(cells) if len(cells) <= limit else None

    def _grown_shape(self) -> h3.H3Shape:
        """The outline grown a little, as H3 takes it: cells that merely touch the boundary
        are kept."""
        grown = self.outline().buffer(_COVER_MARGIN_DEG, quad_segs=2)
        return h3.geo_to_h3shape(grown.__geo_interface__)


def point_cells(lat: float, lng: float, finest_res: int = FINEST_COVER_RES) -> list[int]:
    """The point's H3 cell at every resolution 0..finest_res: matches any compacted cover."""
    cell = h3.latlng_to_cell(lat, lng, finest_res)
    return [h3.cell_to_parent(cell, r) for r in range(finest_res)] + [cell]


def destination(
    lat: float, lng: float, bearing_deg: float, distance_m: float
) -> tuple[float, float]:
    """The point `distance_m` from (lat, lng) along the initial bearing, on the sphere."""
    d = distance_m / EARTH_RADIUS_M
    phi1, lmb1, theta = math.radians(lat), math.radians(lng), math.radians(bearing_deg)
    phi2 = math.asin(math.sin(phi1) * math.cos(d) + math.cos(phi1) * math.sin(d) * math.cos(theta))
    lmb2 = lmb1 + math.atan2(
        math.sin(theta) * math.sin(d) * math.cos(phi1),
        math.cos(d) - math.sin(phi1) * math.sin(phi2),
    )
    return math.degrees(phi2), (math.degrees(lmb2) + 540.0) % 360.0 - 180.0
