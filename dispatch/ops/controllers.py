"""Operators: the alert queue and manual dispatch."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, get, post
from litestar.params import FromPath, JSONBody, QueryParameter

from dispatch.grab.dispatcher import Dispatcher
from dispatch.identity.auth import operators
from dispatch.jobs.views import job_view_out
from dispatch.models import Alert
from dispatch.ops.alerts import AlertService
from dispatch.web.deps import principal_of
from dispatch.web.schemas import AlertOut, AssignIn, JobOut


def alert_out(a: Alert) -> AlertOut:
    return AlertOut(
        id=a.id,
        community_id=a.community_id,
        kind=a.kind,
        severity=a.severity,
        job_id=a.job_id,
        worker_id=a.worker_id,
        detail=a.detail,
        created_at=a.created_at,
        acked_at=a.acked_at,
    )


class OpsController(Controller):
    path = "/v1/ops"
    tags = ["ops"]
    guards = [operators]

    @get("/communities/{community_id:int}/alerts")
    async def alerts(
        self,
        community_id: FromPath[int],
        request: Request[Any, Any, Any],
        alerts: AlertService,
        include_acked: Annotated[bool, QueryParameter()] = False,
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = 100,
    ) -> list[AlertOut]:
        """The community's alerts, newest first; unacknowledged only unless asked."""
        who = principal_of(request)
        found = await alerts.queue(who, community_id, include_acked=include_acked, limit=limit)
        return [alert_out(a) for a in found]

    @post("/alerts/{alert_id:int}/ack", status_code=200)
    async def ack(
        self, alert_id: FromPath[int], request: Request[Any, Any, Any], alerts: AlertService
    ) -> AlertOut:
        who = principal_of(request)
        return alert_out(await alerts.ack(who, alert_id))

    @post("/jobs/{job_id:int}/assign", status_code=200)
    async def assign(
        self,
        job_id: FromPath[int],
        data: JSONBody[AssignIn],
        request: Request[Any, Any, Any],
        dispatcher: Dispatcher,
    ) -> JobOut:
        """Manual dispatch: hand the job to a verified worker of its community. Any earlier
        holder's `assignment_version` stops working."""
        who = principal_of(request)
        return job_view_out(await dispatcher.assign(who, job_id, data.worker_id))
