"""Communities: create (admin), read and find by point (anyone signed in)."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter

from dispatch.communities.service import CommunityService, CommunityView
from dispatch.identity.auth import admin_only
from dispatch.web.schemas import CommunityCreate, CommunityOut, Point
from geo.shapes import polygon_to_geojson


def community_out(view: CommunityView) -> CommunityOut:
    return CommunityOut(
        id=view.id,
        name=view.name,
        center=Point(lat=view.center[0], lng=view.center[1]),
        radius_m=view.radius_m,
        boundary=polygon_to_geojson(view.boundary) if view.boundary is not None else None,
        timezone=view.timezone,
        dispatch=view.overrides,
        cell_count=view.cell_count,
    )


class CommunityController(Controller):
    path = "/v1/communities"
    tags = ["communities"]

    @post("/", guards=[admin_only], status_code=201)
    async def create(
        self, data: JSONBody[CommunityCreate], communities: NamedDependency[CommunityService]
    ) -> CommunityOut:
        """Create a community from a centre and radius, or a GeoJSON Polygon boundary."""
        view = await communities.add(
            name=data.name,
            center=(data.center.lat, data.center.lng),
            radius_m=data.radius_m,
            boundary=data.boundary,
            timezone=data.timezone,
            dispatch=data.dispatch,
        )
        return community_out(view)

    @get("/{community_id:int}")
    async def read(
        self, community_id: FromPath[int], communities: NamedDependency[CommunityService]
    ) -> CommunityOut:
        return community_out(await communities.read(community_id))

    @get("/")
    async def containing(
        self,
        communities: NamedDependency[CommunityService],
        lat: Annotated[float, QueryParameter(ge=-90, le=90)],
        lng: Annotated[float, QueryParameter(ge=-180, le=180)],
    ) -> list[CommunityOut]:
        """Communities whose area contains the point, nearest centre first."""
        return [community_out(v) for v in await communities.around(lat, lng)]
