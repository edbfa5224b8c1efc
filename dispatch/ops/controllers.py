"""Operators: the alert queue and manual dispatch."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from litestar import Controller, Request, get, post
from litestar.datastructures import State
from litestar.params import FromPath, JSONBody, QueryParameter
from sqlalchemy import select

from dispatch.core.errors import Forbidden, NotFound
from dispatch.grab.dispatcher import Dispatcher
from dispatch.identity.auth import operators
from dispatch.identity.principal import Principal
from dispatch.jobs.service import JobService
from dispatch.jobs.views import job_view_out
from dispatch.models import Alert
from dispatch.models.base import is_db_id
from dispatch.web.deps import principal_of, runtime_of
from dispatch.web.schemas import AlertOut, AssignIn, JobOut


def alert_out(a: Alert) -> AlertOut:
    return AlertOut(
        id=a.id,
        community_id=a.community_id,
        kind=a.kind,
        job_id=a.job_id,
        worker_id=a.worker_id,
        detail=a.detail,
        created_at=a.created_at,
        acked_at=a.acked_at,
    )


def _check_scope(who: Principal, community_id: int) -> None:
    if not who.can_operate(community_id):
        raise Forbidden("not an operator of this community", code="not_yours")


class OpsController(Controller):
    path = "/v1/ops"
    tags = ["ops"]
    guards = [operators]

    @get("/communities/{community_id:int}/alerts")
    async def alerts(
        self,
        community_id: FromPath[int],
        request: Request[Any, Any, Any],
        state: State,
        include_acked: Annotated[bool, QueryParameter()] = False,
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = 100,
    ) -> list[AlertOut]:
        """The community's alerts, newest first; unacknowledged only unless asked."""
        _check_scope(principal_of(request), community_id)
        stmt = (
            select(Alert)
            .where(Alert.community_id == community_id)
            .order_by(Alert.created_at.desc(), Alert.id.desc())
            .limit(limit)
        )
        if not include_acked:
            stmt = stmt.where(Alert.acked_at.is_(None))
        rt = runtime_of(state)
        async with rt.sessions() as session:
            await rt.communities.get(session, community_id)  # 404 for a community that is not
            return [alert_out(a) for a in (await session.scalars(stmt)).all()]

    @post("/alerts/{alert_id:int}/ack", status_code=200)
    async def ack(
        self, alert_id: FromPath[int], request: Request[Any, Any, Any], state: State
    ) -> AlertOut:
        who = principal_of(request)
        async with runtime_of(state).sessions.begin() as session:
            alert = (
                await session.get(Alert, alert_id, with_for_update=True)
                if is_db_id(alert_id)
                else None
            )
            if alert is None:
                raise NotFound(f"alert {alert_id} does not exist", code="alert_not_found")
            _check_scope(who, alert.community_id)
            if alert.acked_at is None:
                alert.acked_at, alert.acked_by = datetime.now(UTC), who.user_id
            return alert_out(alert)

    @post("/jobs/{job_id:int}/assign", status_code=200)
    async def assign(
        self,
        job_id: FromPath[int],
        data: JSONBody[AssignIn],
        who: Principal,
        dispatcher: Dispatcher,
        jobs: JobService,
    ) -> JobOut:
        """Manual dispatch: hand the job to a verified worker of its community. Any earlier
        holder's `assignment_version` stops working."""
        job = await dispatcher.assign(who, job_id, data.worker_id)
        return job_view_out(await jobs.view(job))
