"""Communities: creating circles and polygons, finding the communities that contain a point, and
which community serves a new job."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

# Metres per degree of latitude on the sphere the service measures on (mean Earth radius).
M_PER_DEG_LAT = 111_195.08

CENTER = {"lat": 31.2304, "lng": 121.4737}  # People's Square, Shanghai
HANGZHOU = {"lat": 30.2741, "lng": 120.1551}

# A square around Xujiahui, and the same square with a square hole in its middle.
W, E, S, N = 121.40, 121.45, 31.20, 31.25
HW, HE, HS, HN = 121.42, 121.43, 31.22, 31.23
SQUARE = [[W, S], [E, S], [E, N], [W, N], [W, S]]
HOLE = [[HW, HS], [HW, HN], [HE, HN], [HE, HS], [HW, HS]]


def north_of(point: dict[str, float], metres: float) -> dict[str, float]:
    return {"lat": point["lat"] + metres / M_PER_DEG_LAT, "lng": point["lng"]}


def pt(lat: float, lng: float) -> dict[str, float]:
    return {"lat": lat, "lng": lng}


async def make_community(
    client: httpx.AsyncClient, admin: dict[str, str], **overrides: Any
) -> dict[str, Any]:
    body = {"name": "Renmin Square", "center": CENTER, **overrides}
    r = await client.post("/v1/communities", json=body, headers=admin)
    assert r.status_code == 201, r.text
    return r.json()


async def make_polygon(
    client: httpx.AsyncClient, admin: dict[str, str], *rings: list[list[float]]
) -> dict[str, Any]:
    return await make_community(
        client,
        admin,
        name="Xujiahui",
        center=pt((S + N) / 2, (W + E) / 2),
        boundary={"type": "Polygon", "coordinates": list(rings)},
    )


async def containing(
    client: httpx.AsyncClient, headers: dict[str, str], point: dict[str, float]
) -> list[int]:
    r = await client.get("/v1/communities", params=point, headers=headers)
    assert r.status_code == 200, r.text
    return [c["id"] for c in r.json()]


async def post_job(
    client: httpx.AsyncClient, resident: dict[str, str], where: dict[str, float], **extra: Any
) -> httpx.Response:
    body = {
        "title": "Assemble a wardrobe",
        "category": "furniture",
        "location": where,
        "mode": "grab",
        "price_cents": 12000,
        **extra,
    }
    return await client.post(
        "/v1/jobs", json=body, headers={**resident, "Idempotency-Key": uuid.uuid4().hex}
    )


def assert_problem(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == code, r.text


async def test_circle_community_defaults_to_a_5000_m_radius(
    client: httpx.AsyncClient, principals: Any
) -> None:
    created = await make_community(client, await principals.admin())
    assert created["radius_m"] == 5000
    assert created["cell_count"] > 0
    assert created["name"] == "Renmin Square"
    assert created["center"] == CENTER
    assert created["boundary"] is None
    assert created["timezone"] == "UTC"
    assert isinstance(created["id"], int)


async def test_community_keeps_its_timezone_and_dispatch_overrides(
    client: httpx.AsyncClient, principals: Any
) -> None:
    overrides = {"offer_ttl_s": 45, "waves": [{"radius_m": 800, "size": 5}]}
    created = await make_community(
        client, await principals.admin(), timezone="Asia/Shanghai", dispatch=overrides
    )
    assert created["timezone"] == "Asia/Shanghai"
    assert created["dispatch"] == overrides


async def test_community_reads_back_by_id_for_any_signed_in_user(
    client: httpx.AsyncClient, principals: Any
) -> None:
    created = await make_community(client, await principals.admin(), radius_m=1200)
    _, resident = await principals.user("resident")
    r = await client.get(f"/v1/communities/{created['id']}", headers=resident)
    assert r.status_code == 200
    assert r.json() == created


async def test_missing_community_is_404(client: httpx.AsyncClient, principals: Any) -> None:
    r = await client.get("/v1/communities/424242", headers=await principals.admin())
    assert_problem(r, 404, "community_not_found")


@pytest.mark.parametrize(
    ("metres_north", "inside"),
    [(0, True), (4900, True), (5100, False), (20_000, False)],
)
async def test_circle_contains_points_within_its_radius_only(
    client: httpx.AsyncClient, principals: Any, metres_north: float, inside: bool
) -> None:
    admin = await principals.admin()
    community = await make_community(client, admin)
    found = await containing(client, admin, north_of(CENTER, metres_north))
    assert found == ([community["id"]] if inside else [])


async def test_polygon_community_echoes_its_boundary(
    client: httpx.AsyncClient, principals: Any
) -> None:
    created = await make_polygon(client, await principals.admin(), SQUARE, HOLE)
    assert created["boundary"]["type"] == "Polygon"
    shell, hole = created["boundary"]["coordinates"]
    assert {tuple(p) for p in shell} == {tuple(p) for p in SQUARE}
    assert {tuple(p) for p in hole} == {tuple(p) for p in HOLE}
    assert created["radius_m"] is None
    assert created["cell_count"] > 0


@pytest.mark.parametrize(
    ("point", "inside"),
    [
        pytest.param(pt(31.225, 121.425), True, id="middle"),
        pytest.param(pt(31.201, 121.449), True, id="near-a-corner"),
        pytest.param(pt(31.225, 121.46), False, id="east-of-it"),
        pytest.param(pt(N + 0.00005, 121.425), False, id="five-metres-beyond-the-north-edge"),
        pytest.param(pt(S, 121.425), True, id="on-the-south-edge"),
        pytest.param(pt(31.225, E), True, id="on-the-east-edge"),
        pytest.param(pt(N, E), True, id="on-the-north-east-vertex"),
        pytest.param(pt(S, W), True, id="on-the-south-west-vertex"),
    ],
)
async def test_polygon_contains_points_inside_and_on_its_boundary(
    client: httpx.AsyncClient, principals: Any, point: dict[str, float], inside: bool
) -> None:
    admin = await principals.admin()
    community = await make_polygon(client, admin, SQUARE)
    assert await containing(client, admin, point) == ([community["id"]] if inside else [])


@pytest.mark.parametrize(
    ("point", "inside"),
    [
        pytest.param(pt(31.225, 121.425), False, id="inside-the-hole"),
        pytest.param(pt(HS, 121.425), True, id="on-the-holes-edge"),
        pytest.param(pt(31.21, 121.41), True, id="between-hole-and-outer-edge"),
    ],
)
async def test_polygon_with_a_hole_excludes_the_hole(
    client: httpx.AsyncClient, principals: Any, point: dict[str, float], inside: bool
) -> None:
    admin = await principals.admin()
    community = await make_polygon(client, admin, SQUARE, HOLE)
    assert await containing(client, admin, point) == ([community["id"]] if inside else [])


async def test_overlapping_communities_are_listed_nearest_centre_first(
    client: httpx.AsyncClient, principals: Any
) -> None:
    admin = await principals.admin()
    south = await make_community(client, admin, name="South")
    north = await make_community(client, admin, name="North", center=north_of(CENTER, 2000))
    assert await containing(client, admin, north_of(CENTER, 500)) == [south["id"], north["id"]]
    assert await containing(client, admin, north_of(CENTER, 1900)) == [north["id"], south["id"]]


async def test_job_outside_every_community_is_422_out_of_service_area(
    client: httpx.AsyncClient, principals: Any
) -> None:
    await make_community(client, await principals.admin())
    _, resident = await principals.user("resident")
    assert_problem(await post_job(client, resident, HANGZHOU), 422, "out_of_service_area")


async def test_job_naming_a_community_that_does_not_contain_it_is_422(
    client: httpx.AsyncClient, principals: Any
) -> None:
    admin = await principals.admin()
    await make_community(client, admin)
    hangzhou = await make_community(client, admin, name="Hangzhou", center=HANGZHOU)
    _, resident = await principals.user("resident")
    r = await post_job(client, resident, CENTER, community_id=hangzhou["id"])
    assert_problem(r, 422, "outside_community")


async def test_job_naming_a_missing_community_is_404(
    client: httpx.AsyncClient, principals: Any
) -> None:
    await make_community(client, await principals.admin())
    _, resident = await principals.user("resident")
    r = await post_job(client, resident, CENTER, community_id=424242)
    assert_problem(r, 404, "community_not_found")


@pytest.mark.parametrize(("metres_north", "nearest"), [(500, "south"), (1900, "north")])
async def test_job_is_served_by_the_containing_community_with_the_nearest_centre(
    client: httpx.AsyncClient, principals: Any, metres_north: float, nearest: str
) -> None:
    admin = await principals.admin()
    ids = {
        "south": (await make_community(client, admin, name="South"))["id"],
        "north": (await make_community(client, admin, name="N", center=north_of(CENTER, 2000)))[
            "id"
        ],
    }
    _, resident = await principals.user("resident")
    r = await post_job(client, resident, north_of(CENTER, metres_north))
    assert r.status_code == 201, r.text
    assert r.json()["community_id"] == ids[nearest]


async def test_job_naming_a_containing_community_is_served_by_it_even_if_not_nearest(
    client: httpx.AsyncClient, principals: Any
) -> None:
    admin = await principals.admin()
    south = await make_community(client, admin, name="South")
    await make_community(client, admin, name="North", center=north_of(CENTER, 2000))
    _, resident = await principals.user("resident")
    r = await post_job(client, resident, north_of(CENTER, 1900), community_id=south["id"])
    assert r.status_code == 201, r.text
    assert r.json()["community_id"] == south["id"]


async def test_job_on_a_polygon_vertex_is_served_by_that_polygon(
    client: httpx.AsyncClient, principals: Any
) -> None:
    community = await make_polygon(client, await principals.admin(), SQUARE)
    _, resident = await principals.user("resident")
    r = await post_job(client, resident, pt(N, E))
    assert r.status_code == 201, r.text
    assert r.json()["community_id"] == community["id"]
