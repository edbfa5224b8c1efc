"""Communities: creation (with the H3 cover computed once), look-up, and point-in-community."""

from __future__ import annotations

import asyncio
import zoneinfo
from dataclasses import dataclass
from typing import Any

from shapely.geometry import Polygon
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dispatch.communities import params
from dispatch.core.errors import Unprocessable
from dispatch.identity.phones import DEFAULT_REGION, region_of_timezone
from dispatch.models import Community, CommunityCell
from dispatch.models.base import get_row
from geo.areas import ServiceArea, point_cells
from geo.distance import haversine_m
from geo.errors import GeoError
from geo.live import LiveIndex
from geo.shapes import (
    geojson_to_polygon,
    point_to_wkb,
    polygon_to_wkb,
    wkb_to_latlng,
    wkb_to_polygon,
)

DEFAULT_RADIUS_M = 5000


@dataclass(frozen=True)
class CommunityView:
    """A community with its area ready for exact tests; what services pass around."""

    id: int
    name: str
    center: tuple[float, float]
    radius_m: int | None
    boundary: Polygon | None
    timezone: str
    overrides: dict[str, Any]
    cell_count: int
    area: ServiceArea
    phone_region: str = DEFAULT_REGION
    """The country national phone numbers typed here are read in (from the timezone, else the
    service's default): pool numbers and numbers hidden in people's text."""

    @property
    def dispatch(self) -> params.DispatchParams:
        return params.effective(self.overrides)


class AreaCache:
    """ServiceAreas built from rows, kept per (id, updated_at) so shapes are parsed once."""

    def __init__(self, default_region: str = DEFAULT_REGION) -> None:
        self._views: dict[int, tuple[Any, CommunityView]] = {}
        self.default_region = default_region

    def fresh(self, community_id: int, updated_at: Any) -> CommunityView | None:
        """The cached view if it is of this version of the row."""
        cached = self._views.get(community_id)
        return cached[1] if cached is not None and cached[0] == updated_at else None

    def view(self, row: Community) -> CommunityView:
        cached = self._views.get(row.id)
        if cached is not None and cached[0] == row.updated_at:
            return cached[1]
        lat, lng = wkb_to_latlng(row.center)
        polygon = wkb_to_polygon(row.boundary) if row.boundary is not None else None
        area = ServiceArea(lat, lng, radius_m=None if polygon else row.radius_m, polygon=polygon)
        view = CommunityView(
            id=row.id,
            name=row.name,
            center=(lat, lng),
            radius_m=row.radius_m,
            boundary=polygon,
            timezone=row.timezone,
            overrides=dict(row.dispatch or {}),
            cell_count=row.cell_count,
            area=area,
            phone_region=region_of_timezone(row.timezone, self.default_region),
        )
        self._views[row.id] = (row.updated_at, view)
        return view


class CommunityService:
    def __init__(
        self,
        cache: AreaCache | None = None,
        default_region: str = DEFAULT_REGION,
        *,
        sessions: async_sessionmaker[AsyncSession],
        live: LiveIndex | None = None,
    ) -> None:
        self.cache = cache or AreaCache(default_region)
        self.sessions = sessions
        self.live = live

    # --- each call one transaction ---------------------------------------------------------------

    async def add(
        self,
        *,
        name: str,
        center: tuple[float, float],
        radius_m: int | None,
        boundary: dict[str, Any] | None,
        timezone: str | None,
        dispatch: dict[str, Any] | None,
    ) -> CommunityView:
        """A new community from a centre and radius or a GeoJSON Polygon boundary (422 with
        the shape's fault when it is not a usable polygon), with its (empty) live index."""
        polygon = None
        if boundary is not None:
            try:
                polygon = geojson_to_polygon(boundary)
            except GeoError as exc:
                raise Unprocessable(str(exc), code=exc.code) from exc
        async with self.sessions.begin() as session:
            view = await self.create(
                session,
                name=name,
                center=center,
                radius_m=radius_m,
                boundary=polygon,
                timezone=timezone,
                dispatch=dispatch,
            )
        if self.live is not None:
            await self.live.mark_built(view.id)
        return view

    async def read(self, community_id: int) -> CommunityView:
        async with self.sessions() as session:
            return await self.get(session, community_id)

    async def around(self, lat: float, lng: float) -> list[CommunityView]:
        """Communities whose area holds the point, nearest centre first."""
        async with self.sessions() as session:
            return await self.containing(session, lat, lng)

    # --- inside a caller's transaction -----------------------------------------------------------

    async def create(
        self,
        session: AsyncSession,
        *,
        name: str,
        center: tuple[float, float],
        radius_m: int | None,
        boundary: Polygon | None,
        timezone: str | None,
        dispatch: dict[str, Any] | None,
    ) -> CommunityView:
        tz = timezone or "UTC"
        try:
            zoneinfo.ZoneInfo(tz)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise Unprocessable(f"unknown timezone {tz!r}", code="invalid_timezone") from exc
        overrides = params.validate_overrides(dispatch or {})
        if boundary is not None:
            radius_m = None
        elif radius_m is None:
            radius_m = DEFAULT_RADIUS_M
        try:
            area = ServiceArea(center[0], center[1], radius_m=radius_m, polygon=boundary)
            # Covering a large shape takes a while: keep the event loop serving others.
            res, cells = await asyncio.to_thread(area.cover)
        except GeoError as exc:
            raise Unprocessable(str(exc), code=exc.code) from exc
        row = Community(
            name=name,
            center=point_to_wkb(*center),
            radius_m=radius_m,
            boundary=polygon_to_wkb(boundary) if boundary is not None else None,
            timezone=tz,
            dispatch=overrides,
            cover_res=res,
            cell_count=len(cells),
        )
        session.add(row)
        await session.flush()
        await session.execute(
            insert(CommunityCell), [{"cell": c, "community_id": row.id} for c in cells]
        )
        await session.refresh(row)
        return self.cache.view(row)

    async def get(self, session: AsyncSession, community_id: int) -> CommunityView:
        row = await get_row(session, Community, community_id)
        return self.cache.view(row)

    async def containing(
        self, session: AsyncSession, lat: float, lng: float
    ) -> list[CommunityView]:
        """Communities whose area holds the point (boundary included), nearest centre first."""
        candidates = select(CommunityCell.community_id).where(
            CommunityCell.cell.in_(point_cells(lat, lng))
        )
        # Ids and versions first: a community's shapes are read and parsed only when it changed
        # (loading the rows each time cost ~2 ms a lookup).
        versions = (
            await session.execute(
                select(Community.id, Community.updated_at).where(Community.id.in_(candidates))
            )
        ).all()
        found = [(cid, self.cache.fresh(cid, at)) for cid, at in versions]
        known = [v for _, v in found if v is not None]
        missing = [cid for cid, v in found if v is None]
        if missing:
            rows = (await session.scalars(select(Community).where(Community.id.in_(missing)))).all()
            known += map(self.cache.view, rows)
        views = [v for v in known if v.area.contains(lat, lng)]
        views.sort(key=lambda v: (haversine_m(v.center[0], v.center[1], lat, lng), v.id))
        return views

    async def serving(
        self, session: AsyncSession, lat: float, lng: float, community_id: int | None
    ) -> CommunityView:
        """The community that serves a job at the point; 422 when none does."""
        if community_id is not None:
            view = await self.get(session, community_id)
            if not view.area.contains(lat, lng):
                raise Unprocessable(
                    f"the location is outside community {community_id}",
                    code="outside_community",
                )
            return view
        found = await self.containing(session, lat, lng)
        if not found:
            raise Unprocessable("no community serves this location yet", code="out_of_service_area")
        return found[0]
