"""The one place that converts between GeoJSON, shapely and PostGIS WKB (SRID 4326)."""

from __future__ import annotations

import math
from typing import Any

import shapely
from geoalchemy2.elements import WKBElement
from geoalchemy2.shape import from_shape, to_shape
from shapely.geometry import Point, Polygon, mapping, shape
from shapely.validation import explain_validity

from geo.errors import InvalidShapeError

SRID = 4326
MAX_RING_POINTS = 2000


def point_to_wkb(lat: float, lng: float) -> WKBElement:
    return from_shape(Point(lng, lat), srid=SRID)


def wkb_to_latlng(element: WKBElement) -> tuple[float, float]:
    pt = to_shape(element)
    return pt.y, pt.x


def polygon_to_wkb(polygon: Polygon) -> WKBElement:
    return from_shape(polygon, srid=SRID)


def wkb_to_polygon(element: WKBElement) -> Polygon:
    geom = to_shape(element)
    if not isinstance(geom, Polygon):
        raise InvalidShapeError(f"expected a polygon, found {geom.geom_type}")
    return geom


def polygon_to_geojson(polygon: Polygon) -> dict[str, Any]:
    return dict(mapping(polygon))


def geojson_to_polygon(data: dict[str, Any]) -> Polygon:
    """A valid shapely Polygon from a GeoJSON Polygon object, or InvalidShapeError saying why."""
    if not isinstance(data, dict) or data.get("type") != "Polygon":
        raise InvalidShapeError("boundary must be a GeoJSON Polygon")
    rings = data.get("coordinates")
    if not isinstance(rings, list) or not rings:
        raise InvalidShapeError("boundary.coordinates must be a non-empty list of rings")
    for ring in rings:
        if not isinstance(ring, list) or not 4 <= len(ring) <= MAX_RING_POINTS:
            raise InvalidShapeError(f"every ring needs between 4 and {MAX_RING_POINTS} positions")
        for pos in ring:
            if (
                not isinstance(pos, list | tuple)
                or len(pos) < 2
                or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in pos[:2])
            ):
                raise InvalidShapeError("every position must be [lng, lat]")
            try:
                lng, lat = float(pos[0]), float(pos[1])
            except OverflowError as exc:
                raise InvalidShapeError("coordinates must be finite numbers") from exc
            if not (math.isfinite(lng) and math.isfinite(lat)):
                raise InvalidShapeError("coordinates must be finite numbers")
            if not (-180 <= lng <= 180 and -90 <= lat <= 90):
                raise InvalidShapeError(f"position [{lng}, {lat}] is outside lng/lat ranges")
        if list(ring[0][:2]) != list(ring[-1][:2]):
            raise InvalidShapeError("every ring must be closed (first position == last)")
    try:
        coords = [[(float(p[0]), float(p[1])) for p in r] for r in rings]
        polygon = shape({"type": "Polygon", "coordinates": coords})
    except (ValueError, TypeError, shapely.errors.ShapelyError) as exc:
        raise InvalidShapeError(f"boundary is not a polygon: {exc}") from exc
    if not polygon.is_valid:
        raise InvalidShapeError(f"boundary is not a valid polygon: {explain_validity(polygon)}")
    if polygon.area <= 0:
        raise InvalidShapeError("boundary has no area")
    minx, _, maxx, _ = polygon.bounds
    if maxx - minx > 180:
        raise InvalidShapeError("boundaries crossing the antimeridian are not supported")
    # The caller's rings as sent: same orientation, same starting vertex (RFC 7946 recommends
    # counter-clockwise shells but readers must accept either, and so must we).
    return polygon
