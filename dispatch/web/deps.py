"""What handlers receive by Litestar's dependency injection: the services, built once per process
on the runtime (`dispatch.infra.runtime.Runtime`); and how a handler reads its caller.

A handler names the service it needs as a parameter, marked as injected by name
(`workers: NamedDependency[WorkerService]`: an unmarked one is inferred, which Litestar 2.23+
deprecates); `DEPENDENCIES` is given to the app once. Providers are plain synchronous
functions run on the event loop (`sync_to_thread=False`).

One injected service per handler, and the caller read from the request (`principal_of`), not
injected: Litestar resolves two or more dependencies of a handler in an anyio task group, which
cost 65-95 µs a request on this machine (a bare handler costs 35 µs; one dependency 41 µs, two
102-117 µs, three 118-134 µs: in-process ASGI calls under uvloop, 20,000 each), and that was the
accept loser's whole margin (bench/README.md, session 7). `tests/test_house.py` keeps it so."""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.datastructures import State
from litestar.di import Provide

from dispatch.booking.service import BookingService
from dispatch.communities.service import CommunityService
from dispatch.core.errors import Unauthorized
from dispatch.grab.board import Board
from dispatch.grab.dispatcher import Dispatcher
from dispatch.identity.me import Profiles
from dispatch.identity.otp import OtpService
from dispatch.identity.principal import Principal
from dispatch.infra.runtime import Runtime
from dispatch.jobs.service import JobService
from dispatch.money.service import MoneyService
from dispatch.ops.alerts import AlertService
from dispatch.ops.dispatchlog import DispatchLog
from dispatch.ops.events import OpsFeed
from dispatch.ops.snapshot import Snapshots
from dispatch.safety.service import Emergencies, SafetyService
from dispatch.trust.service import ReviewService
from dispatch.workers.service import WorkerService


def runtime_of(state: State) -> Runtime:
    return state.runtime  # type: ignore[no-any-return]


def principal_of(request: Request[Any, Any, Any]) -> Principal:
    user = request.scope.get("user")
    if not isinstance(user, Principal):
        raise Unauthorized("sign in first")
    return user


def client_of(request: Request[Any, Any, Any]) -> str:
    """The client address rate limits are keyed on (the peer, or what a trusted proxy says:
    `TRUSTED_PROXIES`)."""
    return request.client.host if request.client else "unknown"


def _workers(state: State) -> WorkerService:
    return runtime_of(state).workers


def _dispatcher(state: State) -> Dispatcher:
    return runtime_of(state).dispatcher


def _board(state: State) -> Board:
    return runtime_of(state).board


def _communities(state: State) -> CommunityService:
    return runtime_of(state).communities


def _jobs(state: State) -> JobService:
    return runtime_of(state).jobs


def _alerts(state: State) -> AlertService:
    return runtime_of(state).alerts


def _feed(state: State) -> OpsFeed:
    return runtime_of(state).feed


def _snapshots(state: State) -> Snapshots:
    return runtime_of(state).snapshots


def _dispatch_log(state: State) -> DispatchLog:
    return runtime_of(state).dispatch_log


def _booking(state: State) -> BookingService:
    return runtime_of(state).booking


def _safety(state: State) -> SafetyService:
    return runtime_of(state).safety


def _emergencies(state: State) -> Emergencies:
    return runtime_of(state).emergencies


def _money(state: State) -> MoneyService:
    return runtime_of(state).money


def _reviews(state: State) -> ReviewService:
    return runtime_of(state).reviews


def _otp(state: State) -> OtpService:
    return runtime_of(state).otp


def _profiles(state: State) -> Profiles:
    return runtime_of(state).profiles


DEPENDENCIES = {
    "rt": Provide(runtime_of, sync_to_thread=False),
    "workers": Provide(_workers, sync_to_thread=False),
    "dispatcher": Provide(_dispatcher, sync_to_thread=False),
    "board": Provide(_board, sync_to_thread=False),
    "communities": Provide(_communities, sync_to_thread=False),
    "jobs": Provide(_jobs, sync_to_thread=False),
    "otp": Provide(_otp, sync_to_thread=False),
    "profiles": Provide(_profiles, sync_to_thread=False),
    "alerts": Provide(_alerts, sync_to_thread=False),
    "feed": Provide(_feed, sync_to_thread=False),
    "snapshots": Provide(_snapshots, sync_to_thread=False),
    "dispatch_log": Provide(_dispatch_log, sync_to_thread=False),
    "booking": Provide(_booking, sync_to_thread=False),
    "safety": Provide(_safety, sync_to_thread=False),
    "emergencies": Provide(_emergencies, sync_to_thread=False),
    "money": Provide(_money, sync_to_thread=False),
    "reviews": Provide(_reviews, sync_to_thread=False),
}
