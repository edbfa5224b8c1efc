"""Service areas: the H3 cover never misses a point the exact shape holds."""

from __future__ import annotations

import math

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from shapely.geometry import Point, Polygon

from geo.areas import ServiceArea, destination, point_cells
from geo.distance import haversine_m
from geo.errors import InvalidShapeError
from geo.shapes import geojson_to_polygon

SQUARE = Polygon([(121.40, 31.20), (121.45, 31.20), (121.45, 31.25), (121.40, 31.25)])


def covered(area: ServiceArea, lat: float, lng: float) -> bool:
    res, cells = area.cover()
    return bool(set(point_cells(lat, lng, res)) & set(cells))


def test_polygon_inside_outside_edge_vertex() -> None:
    area = ServiceArea(31.225, 121.425, polygon=SQUARE)
    assert area.contains(31.22, 121.42)
    assert not area.contains(31.26, 121.42)
    assert area.contains(31.20, 121.43)  # on the southern edge
    assert area.contains(31.25, 121.45)  # on a vertex
    assert not area.contains(31.2, 121.4500001)
    for lat, lng in [(31.20, 121.43), (31.25, 121.45), (31.22, 121.42)]:
        assert covered(area, lat, lng)


def test_polygon_hole_is_outside() -> None:
    hole = [(121.42, 31.22), (121.43, 31.22), (121.43, 31.23), (121.42, 31.23)]
    area = ServiceArea(31.225, 121.425, polygon=Polygon(SQUARE.exterior.coords, [hole]))
    assert not area.contains(31.225, 121.425)
    assert area.contains(31.22, 121.425)  # the hole's edge belongs to the area


def test_circle_boundary_is_inside() -> None:
    area = ServiceArea(39.9, 116.4, radius_m=2000)
    lat, lng = destination(39.9, 116.4, 45.0, 1999.99)
    assert area.contains(lat, lng) and covered(area, lat, lng)
    lat, lng = destination(39.9, 116.4, 45.0, 2000.5)
    assert not area.contains(lat, lng)


@settings(max_examples=60, deadline=None)
@given(
    lat=st.floats(-70, 70),
    lng=st.floats(-179, 179),
    radius=st.integers(50, 20_000),
    bearing=st.floats(0, 360),
    frac=st.floats(0, 1),
)
def test_circle_cover_holds_every_point_of_the_circle(lat, lng, radius, bearing, frac) -> None:
    try:
        area = ServiceArea(lat, lng, radius_m=radius)
        area.cover()
    except InvalidShapeError:
        return  # crosses the antimeridian: refused, not silently wrong
    plat, plng = destination(lat, lng, bearing, radius * frac)
    # At frac = 1 rounding may put the point a hair outside; contains() must agree with haversine.
    assert area.contains(plat, plng) == (haversine_m(lat, lng, plat, plng) <= radius)
    if area.contains(plat, plng):
        assert covered(area, plat, plng)


@st.composite
def polygons(draw):
    lat = draw(st.floats(-60, 60))
    lng = draw(st.floats(-170, 170))
    n = draw(st.integers(3, 12))
    angles = sorted(draw(st.lists(st.floats(0, 2 * math.pi), min_size=n, max_size=n, unique=True)))
    radii = draw(st.lists(st.floats(0.002, 0.05), min_size=n, max_size=n))
    ring = [
        (lng + r * math.cos(a), lat + r * math.sin(a)) for a, r in zip(angles, radii, strict=True)
    ]
    poly = Polygon(ring)
    if not poly.is_valid or poly.area == 0:
        poly = poly.convex_hull
    # Nearly collinear vertices can leave a hull that is a line or a point: not an area.
    assume(isinstance(poly, Polygon) and poly.area > 0)
    return poly


@settings(max_examples=80, deadline=None)
@given(poly=polygons(), u=st.floats(0, 1), v=st.floats(0, 1), where=st.sampled_from("ievo"))
def test_polygon_cover_holds_every_point_of_the_polygon(
    poly: Polygon, u: float, v: float, where: str
) -> None:
    """Inside, on (or a rounding away from) an edge, on a vertex, or outside: contains ⇒ covered."""
    area = ServiceArea(poly.centroid.y, poly.centroid.x, polygon=poly)
    minx, miny, maxx, maxy = poly.bounds
    if where == "e":
        pt = poly.exterior.interpolate(u, normalized=True)
    elif where == "v":
        coords = list(poly.exterior.coords)
        pt = Point(coords[int(u * (len(coords) - 1))])
        assert area.contains(pt.y, pt.x)
    elif where == "o":
        pt = Point(minx - 0.01 + u * (maxx - minx + 0.02), miny - 0.01 + v * (maxy - miny + 0.02))
    else:
        pt = Point(minx + u * (maxx - minx), miny + v * (maxy - miny))
    assert area.contains(pt.y, pt.x) == poly.covers(pt)
    if area.contains(pt.y, pt.x):
        assert covered(area, pt.y, pt.x)


@pytest.mark.parametrize(
    "bad",
    [
        {"type": "Point", "coordinates": [0, 0]},
        {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1]]]},
        {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1]]]},
        {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]},
        {"type": "Polygon", "coordinates": [[[0, 0], [200, 0], [1, 1], [0, 0]]]},
        {"type": "Polygon", "coordinates": [[[179, 0], [-179, 0], [-179, 1], [179, 1], [179, 0]]]},
        {"type": "Polygon", "coordinates": [[[0, 0], ["a", 0], [1, 1], [0, 0]]]},
    ],
)
def test_bad_boundaries_are_refused(bad) -> None:
    with pytest.raises(InvalidShapeError):
        geojson_to_polygon(bad)
