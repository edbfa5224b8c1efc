"""Communities: create (admin), read and find by point (anyone signed in)."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get, post
from litestar.datastructures import State
from litestar.params import FromPath, JSONBody, QueryParameter

from dispatch.communities.service import CommunityView
from dispatch.core.errors import Unprocessable
from dispatch.identity.auth import admin_only
from dispatch.web.deps import runtime_of
from dispatch.web.schemas import CommunityCreate, CommunityOut, Point
from geo.errors import GeoError
from geo.shapes import geojson_to_polygon, polygon_to_geojson


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
    async def create(self, data: JSONBody[CommunityCreate], state: State) -> CommunityOut:
        """Create a community from a centre and radius, or a GeoJSON Polygon boundary."""
        rt = runtime_of(state)
        boundary = None
        if data.boundary is not None:
            try:
                boundary = geojson_to_polygon(data.boundary)
            except GeoError as exc:
                raise Unprocessable(str(exc), code=exc.code) from exc
        async with rt.sessions.begin() as session:
            view = await rt.communities.create(
                session,
                name=data.name,
                center=(data.center.lat, data.center.lng),
                radius_m=data.radius_m,
                boundary=boundary,
                timezone=data.timezone,
                dispatch=data.dispatch,
            )
        await rt.live.claim_rebuild(view.id)  # a new community's (empty) index exists
        return community_out(view)

    @get("/{community_id:int}")
    async def read(self, community_id: FromPath[int], state: State) -> CommunityOut:
        rt = runtime_of(state)
        async with rt.sessions() as session:
            return community_out(await rt.communities.get(session, community_id))

    @get("/")
    async def containing(
        self,
        state: State,
        lat: Annotated[float, QueryParameter(ge=-90, le=90)],
        lng: Annotated[float, QueryParameter(ge=-180, le=180)],
    ) -> list[CommunityOut]:
        """Communities whose area contains the point, nearest centre first."""
        rt = runtime_of(state)
        async with rt.sessions() as session:
            return [community_out(v) for v in await rt.communities.containing(session, lat, lng)]
