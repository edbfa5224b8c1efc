"""Who may call what, generated from the app's own route table (OWASP API Top 10 2023: API1
broken object-level and API5 broken function-level authorization).

Every route of `app.routes` is called by every kind of caller on an object of each of two sides,
and the outcome is checked against `POLICY`, which says once per route who is let through.

The world (built once for the module) has two communities, A and B, alike: each has an
operator, a resident and a worker, and the resident's jobs in every state a route needs, the
worker assigned to them (with the offers, change orders, claims, alerts, messages, check-ins
and the masked-number pool those routes name). A caller's *relation* to an object follows from
its side: on A's job, A's resident is the owner and B's resident "another resident", A's worker
the assigned worker and B's "another worker", A's operator the community's and B's another
community's; on B's objects the same callers swap roles. Routes without an object (`/v1/me`,
`/v1/workers/me/...`) are called once per caller, on the caller's own side.

For every cell:
- a refused caller gets 401 (anonymous) or 403 (signed in): never 2xx, and never a 404, 409
  or 422 that answers for the object's state. No route hides existence behind a 404: a
  refusal of an object that exists is always 401/403 (an id that exists nowhere is 404 for
  everyone; ids are sequential and not secret), so a stranger learns only that they may not;
- an allowed caller is not refused: 2xx, or 404/409/410/422/429 for the object's state; and for
  every object at least one allowed caller really succeeds (2xx), except on the routes in
  `NO_SUCCESS_HERE`, so the refusals above were tested where success was possible;
- no 5xx;
- no response carries a person's phone number (the masked-number pool's are the platform's);
- no response to one side's people carries the private text of the other side's objects (each
  side's job titles, descriptions, addresses, messages, materials, claims and SOS notes carry a
  marker word, and each side's masked numbers count as its private text too).

Routes that change an object (cancel, complete, confirm, accept, ...) each get an object of
their own per side, and their refused callers go first: the allowed caller who changes it
comes last. A route added to the app without an entry in `POLICY` and `REQUESTS` fails
`test_every_route_has_a_policy` (only `EXCLUDED`'s static files and schema are left out).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import json
import os
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from litestar import Litestar
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from app import create_app
from dispatch.infra.settings import Settings
from tests.conftest import (
    E164_ANYWHERE,
    PROXY_PREFIX,
    Principals,
    empty_state,
    started_app,
    with_auth,
)

# --- who: callers and their relation to an object ---------------------------------------------

ANON = "anonymous"
OWNER = "resident owner"
OTHER_RESIDENT = "another resident"
WORKER = "assigned worker"
"""The object's side's worker: assigned to its jobs, offered its offers, serving its community."""
OTHER_WORKER = "another worker"
"""A worker of the same community, not assigned: they had the same offers, and they held the
main job before the operator handed it to the assigned worker (a former holder)."""
OUTSIDE_WORKER = "worker of another community"
OPS = "operator of the community"
OTHER_OPS = "operator of another community"
ADMIN = "admin"
RELATIONS = (
    ANON, OWNER, OTHER_RESIDENT, WORKER, OTHER_WORKER, OUTSIDE_WORKER, OPS, OTHER_OPS, ADMIN
)  # fmt: skip


@dataclass(frozen=True)
class Policy:
    name: str
    allowed: frozenset[str]


def policy(name: str, *allowed: str) -> Policy:
    assert set(allowed) <= set(RELATIONS), allowed
    return Policy(name, frozenset(allowed))


PUBLIC = policy("PUBLIC", *RELATIONS)
ANY_SIGNED_IN = policy("ANY_SIGNED_IN", *(r for r in RELATIONS if r != ANON))
SIGNED_WEBHOOK = policy("SIGNED_WEBHOOK")
"""The phone provider's webhooks: only its signature lets a call in; no bearer token does (403
`invalid_signature` for every caller here)."""
ADMIN_ONLY = policy("ADMIN_ONLY", ADMIN)
RESIDENTS = policy("RESIDENTS", OWNER, OTHER_RESIDENT)
"""Any resident, whatever the object's side (posting a job in any community)."""
WORKER_SELF = policy("WORKER_SELF", WORKER, OTHER_WORKER, OUTSIDE_WORKER)
"""Any worker, on their own things (`/v1/workers/me/...`)."""
OWNER_ONLY = policy("OWNER_ONLY", OWNER)
ASSIGNED_WORKER = policy("ASSIGNED_WORKER", WORKER)
OFFERED_WORKER = policy("OFFERED_WORKER", WORKER)
"""The worker the offer was made to."""
COMMUNITY_WORKER = policy("COMMUNITY_WORKER", WORKER, OTHER_WORKER)
"""A verified worker serving the job's community (taking an open job from the board)."""
PARTICIPANTS = policy("PARTICIPANTS", OWNER, WORKER)
PARTICIPANTS_AND_OPS = policy("PARTICIPANTS_AND_OPS", OWNER, WORKER, OPS, ADMIN)
OPS_OF_COMMUNITY = policy("OPS_OF_COMMUNITY", OPS, ADMIN)
"""The object's community's operators, and admins (who operate everywhere)."""
RESIDENTS_AND_OPS_OF_COMMUNITY = policy(
    "RESIDENTS_AND_OPS_OF_COMMUNITY", OWNER, OTHER_RESIDENT, OPS, ADMIN
)
"""Residents anywhere (coarse positions), operators only of the community (exact positions)."""
RESIDENTS_AND_OPERATORS = policy(
    "RESIDENTS_AND_OPERATORS", OWNER, OTHER_RESIDENT, OPS, OTHER_OPS, ADMIN
)
"""Booking proposals: what a resident anywhere may see (names, ratings, rounded distances,
free starts), so any operator may see it too."""

# The table: who may call each route. The contract is /work/shared/API.md's "who" column.
POLICY: dict[str, Policy] = {
    # the service's own surface
    "GET /healthz": PUBLIC,
    "GET /readyz": PUBLIC,
    "GET /metrics": PUBLIC,
    "GET /v1/push/vapid-public-key": PUBLIC,
    # identity
    "POST /v1/auth/otp": PUBLIC,
    "POST /v1/auth/token": PUBLIC,
    "GET /v1/me": ANY_SIGNED_IN,
    "PUT /v1/me": ANY_SIGNED_IN,
    "GET /v1/me/emergency-contacts": ANY_SIGNED_IN,
    "PUT /v1/me/emergency-contacts": ANY_SIGNED_IN,
    # communities
    "POST /v1/communities": ADMIN_ONLY,
    "GET /v1/communities": ANY_SIGNED_IN,
    "GET /v1/communities/{community_id}": ANY_SIGNED_IN,
    "GET /v1/communities/{community_id}/proxy-numbers": ADMIN_ONLY,
    "POST /v1/communities/{community_id}/proxy-numbers": ADMIN_ONLY,
    # admin
    "GET /v1/admin/outbox": ADMIN_ONLY,
    "POST /v1/admin/operators": ADMIN_ONLY,
    # jobs
    "GET /v1/jobs": ANY_SIGNED_IN,  # each their own: posted, taken, or their communities'
    "POST /v1/jobs": RESIDENTS,
    "GET /v1/jobs/{job_id}": PARTICIPANTS_AND_OPS,
    "POST /v1/jobs/{job_id}/cancel": PARTICIPANTS,
    "POST /v1/jobs/{job_id}/complete": ASSIGNED_WORKER,
    "POST /v1/jobs/{job_id}/start": ASSIGNED_WORKER,
    "POST /v1/jobs/{job_id}/checkins": ASSIGNED_WORKER,
    "POST /v1/jobs/{job_id}/sos": PARTICIPANTS,
    "GET /v1/jobs/{job_id}/safety": PARTICIPANTS_AND_OPS,
    "GET /v1/jobs/{job_id}/messages": PARTICIPANTS_AND_OPS,
    "POST /v1/jobs/{job_id}/messages": PARTICIPANTS,
    "POST /v1/jobs/{job_id}/reschedule": OWNER_ONLY,
    "POST /v1/jobs/{job_id}/reschedule/accept": ASSIGNED_WORKER,
    "POST /v1/jobs/{job_id}/reschedule/decline": ASSIGNED_WORKER,
    # offers and the board
    "GET /v1/workers/me/offers": WORKER_SELF,
    "POST /v1/offers/{offer_id}/accept": OFFERED_WORKER,
    "POST /v1/offers/{offer_id}/decline": OFFERED_WORKER,
    "GET /v1/workers/me/jobs-nearby": WORKER_SELF,
    "POST /v1/jobs/{job_id}/take": COMMUNITY_WORKER,
    "WS /v1/workers/me/stream": WORKER_SELF,
    # money
    "POST /v1/jobs/{job_id}/confirm": OWNER_ONLY,
    "POST /v1/jobs/{job_id}/dispute": PARTICIPANTS,
    "POST /v1/ops/jobs/{job_id}/resolve": OPS_OF_COMMUNITY,
    "GET /v1/jobs/{job_id}/materials": PARTICIPANTS_AND_OPS,
    "POST /v1/jobs/{job_id}/materials": ASSIGNED_WORKER,
    "POST /v1/jobs/{job_id}/materials/{change_id}/approve": OWNER_ONLY,
    "POST /v1/jobs/{job_id}/materials/{change_id}/decline": OWNER_ONLY,
    "GET /v1/jobs/{job_id}/claims": PARTICIPANTS_AND_OPS,
    "POST /v1/jobs/{job_id}/claims": OWNER_ONLY,
    "POST /v1/ops/claims/{claim_id}/approve": OPS_OF_COMMUNITY,
    "POST /v1/ops/claims/{claim_id}/reject": OPS_OF_COMMUNITY,
    "GET /v1/jobs/{job_id}/ledger": PARTICIPANTS_AND_OPS,
    "GET /v1/workers/me/earnings": WORKER_SELF,
    "GET /v1/workers/me/payouts": WORKER_SELF,
    "POST /v1/workers/me/payouts": WORKER_SELF,
    # trust
    "POST /v1/jobs/{job_id}/reviews": PARTICIPANTS,
    "GET /v1/jobs/{job_id}/reviews": PARTICIPANTS_AND_OPS,
    "GET /v1/workers/{worker_id}/reviews": ANY_SIGNED_IN,  # a worker's public rating
    "GET /v1/ops/communities/{community_id}/worker-trust": OPS_OF_COMMUNITY,
    # workers
    "GET /v1/workers/me": WORKER_SELF,
    "PUT /v1/workers/me": WORKER_SELF,
    "POST /v1/workers/me/verification": WORKER_SELF,
    "POST /v1/workers/me/presence": WORKER_SELF,
    "POST /v1/workers/me/location": WORKER_SELF,
    "POST /v1/workers/me/locations": WORKER_SELF,
    "GET /v1/workers/me/push-subscriptions": WORKER_SELF,
    "POST /v1/workers/me/push-subscriptions": WORKER_SELF,
    "DELETE /v1/workers/me/push-subscriptions": WORKER_SELF,
    "GET /v1/workers/nearby": RESIDENTS_AND_OPS_OF_COMMUNITY,
    "POST /v1/ops/workers/{worker_id}/verify": OPS_OF_COMMUNITY,  # of a community they serve
    "POST /v1/ops/communities/{community_id}/rebuild-index": OPS_OF_COMMUNITY,
    # booking
    "GET /v1/workers/me/availability": WORKER_SELF,
    "PUT /v1/workers/me/availability": WORKER_SELF,
    "GET /v1/workers/me/calendar": WORKER_SELF,
    "GET /v1/bookings/candidates": RESIDENTS_AND_OPERATORS,
    # operators
    "GET /v1/ops/communities/{community_id}/alerts": OPS_OF_COMMUNITY,
    "POST /v1/ops/alerts/{alert_id}/ack": OPS_OF_COMMUNITY,
    "GET /v1/ops/communities/{community_id}/snapshot": OPS_OF_COMMUNITY,
    "GET /v1/ops/communities/{community_id}/verifications": OPS_OF_COMMUNITY,
    "GET /v1/ops/communities/{community_id}/outbox": OPS_OF_COMMUNITY,
    "POST /v1/ops/communities/{community_id}/stream-token": OPS_OF_COMMUNITY,
    "GET /v1/ops/communities/{community_id}/events": OPS_OF_COMMUNITY,
    "POST /v1/ops/jobs/{job_id}/assign": OPS_OF_COMMUNITY,
    "GET /v1/ops/jobs/{job_id}/dispatch-log": OPS_OF_COMMUNITY,
    "POST /v1/ops/jobs/{job_id}/replay": OPS_OF_COMMUNITY,
    # telephony webhooks
    "POST /v1/telephony/voice": SIGNED_WEBHOOK,
    "POST /v1/telephony/sms": SIGNED_WEBHOOK,
    "POST /v1/telephony/status": SIGNED_WEBHOOK,
    "POST /v1/telephony/checkin": SIGNED_WEBHOOK,
}

EXCLUDED: dict[str, str] = {
    "GET /ops": "the console's static files: public by design, no data",
    "GET /ops/{file_path}": "the console's static files",
    "HEAD /ops/{file_path}": "the console's static files",
    "GET /app": "the people's app's static files: public by design, no data",
    "GET /app/{file_path}": "the people's app's static files",
    "HEAD /app/{file_path}": "the people's app's static files",
    "GET /schema": "the OpenAPI document (tests/test_openapi.py)",
    "GET /schema/openapi.json": "the OpenAPI document",
    "GET /schema/redoc": "the OpenAPI document",
    "GET /schema/{path}": "the OpenAPI document (unknown renderers: 404)",
}
"""Left out of the matrix, each with its reason. OPTIONS is left out of it on every route: it is
answered from the route table before any guard (`options_middleware`), with no body, and
`test_options_answers_carry_nothing` checks that for every route."""

NO_SUCCESS_HERE: dict[str, str] = {
    "POST /v1/jobs/{job_id}/reschedule": "the world's jobs are grab jobs: 409 not_reschedulable",
    "POST /v1/jobs/{job_id}/reschedule/accept": "no reschedule is pending: 409 no_reschedule",
    "POST /v1/jobs/{job_id}/reschedule/decline": "no reschedule is pending: 409 no_reschedule",
    "GET /v1/push/vapid-public-key": "Web Push is not configured in tests: 404 push_disabled",
    "POST /v1/workers/me/verification": "the world's workers are verified: 409",
}
"""Routes whose allowed callers may all get a 4xx for the object's state in this world."""

DUMP = bool(os.environ.get("AUTHZ_MATRIX_DUMP"))
"""`AUTHZ_MATRIX_DUMP=1 pytest -s ...` prints every cell's outcome."""

STATE_ANSWERS = frozenset({404, 409, 410, 422, 429})
"""What an allowed caller may get instead of 2xx: the object's state or the body's values."""


# --- the world ----------------------------------------------------------------------------------

CENTERS = {"A": (31.2304, 121.4737), "B": (30.2741, 120.1551)}  # Shanghai, Hangzhou
MARKERS = {"A": "alphaprivate", "B": "bravoprivate"}
"""A word in every private text of a side's objects: the other side's people must never read
it."""
PROXIES = {"A": "+12025550101", "B": "+12025550201"}
DISPATCH = {
    "offer_ttl_s": 3600,
    "location_max_age_s": 86_400,
    "max_open_assignments": 100,
    "offers_per_worker_hour": 10_000,
    "min_accept_ms": 0,
}
"""Offers that stay open and positions that stay fresh for the module's length, and no cap on a
worker's open jobs (the world's worker holds many)."""
PUSH_KEYS = {
    "p256dh": "BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1Xbj"
    "hazAkj7I99e8QcYP7DkM",
    "auth": "tBHItJI5svbpez7KI4CCXg",
}
GRAB_JOBS = ("take", "accept", "decline", "assign")
"""Jobs left open, each with a pending offer to the side's worker."""
ASSIGNED_JOBS = ("main", "cancel", "complete", "start", "done", "confirm", "dispute", "resolve")
"""Jobs the side's operator assigns to the side's worker; the last four are then completed
(and `resolve`'s disputed)."""


@dataclass
class Side:
    name: str
    community: int
    center: tuple[float, float]
    marker: str
    proxy: str
    operator: dict[str, str]
    resident_id: int
    resident_phone: str
    resident: dict[str, str]
    worker_id: int
    worker: dict[str, str]
    coworker_id: int
    coworker: dict[str, str]
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    offers: dict[str, int] = field(default_factory=dict)
    changes: dict[str, int] = field(default_factory=dict)
    claims: dict[str, int] = field(default_factory=dict)
    alert: int = 0
    pin: str = ""

    def job(self, name: str) -> int:
        return int(self.jobs[name]["id"])

    def version(self, name: str) -> int:
        return int(self.jobs[name]["assignment_version"])

    @property
    def point(self) -> dict[str, float]:
        return {"lat": self.center[0], "lng": self.center[1]}


@dataclass(frozen=True)
class Caller:
    role: str  # anonymous, resident, worker, coworker, operator, admin
    side: str | None
    headers: dict[str, str]

    @property
    def name(self) -> str:
        return self.role if self.side is None else f"{self.role} of {self.side}"

    def relation(self, side: str) -> str:
        """This caller's relation to an object of `side`."""
        if self.role in (ANON, ADMIN):
            return self.role
        own = self.side == side
        return {
            "resident": (OWNER, OTHER_RESIDENT),
            "worker": (WORKER, OUTSIDE_WORKER),
            "coworker": (OTHER_WORKER, OUTSIDE_WORKER),
            "operator": (OPS, OTHER_OPS),
        }[self.role][0 if own else 1]


@dataclass
class World:
    app: Litestar
    client: httpx.AsyncClient
    admin: dict[str, str]
    sides: dict[str, Side]
    callers: list[Caller]
    counter: itertools.count = field(default_factory=lambda: itertools.count(1))

    def fresh_phone(self) -> str:
        return f"+86137{next(self.counter):08d}"

    def unique(self) -> int:
        return next(self.counter)


async def _ok(r: httpx.Response, *statuses: int) -> dict[str, Any]:
    assert r.status_code in (statuses or (200, 201)), (
        f"{r.request.method} {r.request.url}: {r.text}"
    )
    return r.json() if r.content else {}


async def _post_job(c: httpx.AsyncClient, s: Side, name: str) -> dict[str, Any]:
    body = {
        "title": f"Fix the {name} tap, {s.marker}",
        "description": f"Under the sink; {s.marker} note",
        "address": f"Room 5, {s.marker} lane",
        "category": "plumbing",
        "skills": ["plumbing"],
        "location": s.point,
        "mode": "grab",
        "price_cents": 8000,
        "insured": name == "done",
    }
    key = {"Idempotency-Key": f"world-{s.name}-{name}"}
    return await _ok(await c.post("/v1/jobs", json=body, headers={**s.resident, **key}), 201)


async def _ready_worker(
    c: httpx.AsyncClient, principals: Principals, operator: dict[str, str], cid: int, name: str
) -> tuple[int, dict[str, str]]:
    """A verified worker of the community, online at its centre."""
    wid, worker = await principals.user("worker")
    profile = {"name": name, "skills": ["plumbing"], "community_ids": [cid]}
    await _ok(await c.put("/v1/workers/me", json=profile, headers=worker))
    await _ok(await c.post(f"/v1/ops/workers/{wid}/verify", headers=operator))
    await _ok(await c.post("/v1/workers/me/presence", json={"status": "online"}, headers=worker))
    center = await _ok(await c.get(f"/v1/communities/{cid}", headers=operator))
    await _ok(await c.post("/v1/workers/me/location", json=center["center"], headers=worker), 204)
    return wid, worker


async def _build_side(
    c: httpx.AsyncClient, principals: Principals, admin: dict[str, str], name: str
) -> Side:
    lat, lng = CENTERS[name]
    body = {"name": f"Community {name}", "center": {"lat": lat, "lng": lng}, "radius_m": 3000,
            "dispatch": DISPATCH}  # fmt: skip
    cid = (await _ok(await c.post("/v1/communities", json=body, headers=admin), 201))["id"]
    pool = {"numbers": [PROXIES[name]]}
    await _ok(await c.post(f"/v1/communities/{cid}/proxy-numbers", json=pool, headers=admin), 201)
    operator = await principals.operator(cid)
    phone = principals.next_phone()
    rid, resident = await principals.user("resident", phone)
    wid, worker = await _ready_worker(c, principals, operator, cid, f"Worker {name}")
    xid, coworker = await _ready_worker(c, principals, operator, cid, f"Coworker {name}")
    side = Side(name, cid, (lat, lng), MARKERS[name], PROXIES[name], operator, rid, phone,
                resident, wid, worker, xid, coworker)  # fmt: skip
    contacts = {"contacts": [{"name": "Mum", "phone": f"+8613600000{ord(name):03d}"}]}
    await _ok(await c.put("/v1/me/emergency-contacts", json=contacts, headers=resident))
    for role, who in (("worker", worker), ("coworker", coworker)):
        sub = {"endpoint": f"https://8.8.8.8/push/{role}-{name}", "keys": PUSH_KEYS}
        await _ok(await c.post("/v1/workers/me/push-subscriptions", json=sub, headers=who), 201)
    week = {"weekly": [{"day": d, "start": "08:00", "end": "20:00"} for d in ("mon", "tue")]}
    await _ok(await c.put("/v1/workers/me/availability", json=week, headers=worker))
    # Every job is posted while both workers are free, so each sends both an offer.
    for job in GRAB_JOBS + ASSIGNED_JOBS:
        side.jobs[job] = await _post_job(c, side, job)
    offers = await _ok(await c.get("/v1/workers/me/offers", headers=worker))
    by_job = {o["job_id"]: o["id"] for o in offers}
    for job in ("accept", "decline", "take"):
        side.offers[job] = by_job[side.job(job)]
    # The main job goes to the coworker first, then the operator hands it to the worker.
    for job, to in [("main", xid), *((j, wid) for j in ASSIGNED_JOBS)]:
        r = await c.post(
            f"/v1/ops/jobs/{side.job(job)}/assign", json={"worker_id": to}, headers=operator
        )
        side.jobs[job] = await _ok(r)
    for job in ("done", "confirm", "dispute", "resolve"):
        done = {"assignment_version": side.version(job)}
        await _ok(await c.post(f"/v1/jobs/{side.job(job)}/complete", json=done, headers=worker))
    dispute = {"reason": f"a leak again, {side.marker}"}
    r = await c.post(f"/v1/jobs/{side.job('resolve')}/dispute", json=dispute, headers=resident)
    await _ok(r)
    # Confirmed, its premium (3% of 80.00) is in the insurance pool: a claim of 2.00 is paid.
    await _ok(await c.post(f"/v1/jobs/{side.job('done')}/confirm", headers=resident))
    for claim in ("approve", "reject"):
        body = {"description": f"a wet floor, {side.marker}", "amount_cents": 200}
        r = await c.post(f"/v1/jobs/{side.job('done')}/claims", json=body, headers=resident)
        side.claims[claim] = (await _ok(r, 201))["id"]
    main = side.job("main")
    for change in ("approve", "decline", "crossed"):
        items = {"items": [{"name": f"washer {side.marker}", "unit_cents": 300}]}
        r = await c.post(f"/v1/jobs/{main}/materials", json=items, headers=worker)
        side.changes[change] = (await _ok(r, 201))["id"]
    for who in (resident, worker):
        said = {"text": f"see you at ten, {side.marker}"}
        await _ok(await c.post(f"/v1/jobs/{main}/messages", json=said, headers=who), 201)
    arrival = {"kind": "arrival", "location": side.point}
    await _ok(await c.post(f"/v1/jobs/{main}/checkins", json=arrival, headers=worker), 201)
    sos = {"note": f"a stranger at the door, {side.marker}"}
    r = await c.post(f"/v1/jobs/{main}/sos", json=sos, headers=resident)
    side.alert = (await _ok(r, 202))["alert_id"]
    seen = await _ok(await c.get(f"/v1/jobs/{side.job('start')}", headers=resident))
    side.pin = seen["start_pin"]
    assert side.marker in json.dumps(seen), "the marker must survive screening to mean anything"
    for who in (resident, worker):
        seen = await _ok(await c.get(f"/v1/jobs/{main}", headers=who))
        assert seen["proxy_number"] == side.proxy, "the main job's participants hold the number"
    return side


@pytest.fixture(scope="module")
async def world(base_settings: Settings, engine: AsyncEngine, redis: Redis) -> AsyncIterator[World]:
    """The module's world, on an app of its own (the suite's `app` fixture is per test)."""
    await empty_state(engine, redis)
    # Every caller asks for sign-in codes from one address: more than the default allows.
    settings = with_auth(base_settings, otp_per_client_limit=10_000)
    async with started_app(settings, engine) as application:
        transport = httpx.ASGITransport(app=application, client=("10.0.0.9", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            principals = Principals(settings, engine)
            admin = await principals.admin()
            sides = {n: await _build_side(c, principals, admin, n) for n in ("A", "B")}
            callers = [Caller(ANON, None, {}), Caller(ADMIN, None, admin)]
            for s in sides.values():
                callers += [
                    Caller("resident", s.name, s.resident),
                    Caller("worker", s.name, s.worker),
                    Caller("coworker", s.name, s.coworker),
                    Caller("operator", s.name, s.operator),
                ]
            yield World(application, c, admin, sides, callers)


# --- how to call each route ---------------------------------------------------------------------


@dataclass
class Req:
    method: str
    path: str
    json: Any = None
    params: dict[str, Any] | None = None
    data: dict[str, str] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    kind: str = "http"  # "http", "sse" (an endless event stream), "ws"


Build = Callable[["World", Side, Caller], "Req | Awaitable[Req]"]


def get(path: str, **params: Any) -> Callable[..., Req]:
    """`path` and `params` are formatted with the object's side (`s`) and the world (`w`)."""
    return lambda w, s, c: Req(
        "GET", path.format(s=s, w=w), params={k: _fmt(v, w, s) for k, v in params.items()} or None
    )


def _fmt(value: Any, w: World, s: Side) -> Any:
    return value.format(s=s, w=w) if isinstance(value, str) else value


def post(path: str, body: Any = None, method: str = "POST") -> Callable[..., Req]:
    def build(w: World, s: Side, c: Caller) -> Req:
        payload = body(w, s, c) if callable(body) else body
        return Req(method, path.format(s=s, w=w), json=payload)

    return build


def _later(days: int, hour: int) -> str:
    day = datetime.now(UTC).date() + timedelta(days=days)
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC).isoformat()


def _job_body(w: World, s: Side, c: Caller) -> dict[str, Any]:
    return {"title": "Hang a shelf", "category": "carpentry", "location": s.point,
            "mode": "grab", "price_cents": 5000}  # fmt: skip


def _posting(w: World, s: Side, c: Caller) -> Req:
    key = {"Idempotency-Key": f"matrix-{w.unique()}"}
    return Req("POST", "/v1/jobs", json=_job_body(w, s, c), headers=key)


async def _token_request(w: World, s: Side, c: Caller) -> Req:
    phone = w.fresh_phone()
    await _ok(await w.client.post("/v1/auth/otp", json={"phone": phone}), 202)
    sent = await _ok(await w.client.get("/v1/admin/outbox", params={"to": phone}, headers=w.admin))
    found = re.search(r"\b(\d{6})\b", sent[0]["body"])
    assert found, sent
    return Req("POST", "/v1/auth/token", json={"phone": phone, "code": found.group(1),
                                               "role": "resident"})  # fmt: skip


def _webhook(path: str, form: Callable[[Side], dict[str, str]], **params: Any) -> Build:
    return lambda w, s, c: Req(
        "POST", path, data=form(s), params={k: _fmt(v, w, s) for k, v in params.items()} or None
    )


REQUESTS: dict[str, Build] = {
    "GET /healthz": get("/healthz"),
    "GET /readyz": get("/readyz"),
    "GET /metrics": get("/metrics"),
    "GET /v1/push/vapid-public-key": get("/v1/push/vapid-public-key"),
    "POST /v1/auth/otp": lambda w, s, c: Req(
        "POST", "/v1/auth/otp", json={"phone": w.fresh_phone()}
    ),
    "POST /v1/auth/token": _token_request,
    "GET /v1/me": get("/v1/me"),
    "PUT /v1/me": post("/v1/me", {"locale": "en"}, "PUT"),
    "GET /v1/me/emergency-contacts": get("/v1/me/emergency-contacts"),
    "PUT /v1/me/emergency-contacts": post(
        "/v1/me/emergency-contacts",
        {"contacts": [{"name": "Mum", "phone": "+8613600000999"}]},
        "PUT",
    ),
    "POST /v1/communities": post(
        "/v1/communities",
        lambda w, s, c: {
            "name": f"Elsewhere {w.unique()}",
            "radius_m": 1000,
            "center": {"lat": 39.9, "lng": 116.4},
        },
    ),
    "GET /v1/communities": get("/v1/communities", lat="{s.center[0]}", lng="{s.center[1]}"),
    "GET /v1/communities/{community_id}": get("/v1/communities/{s.community}"),
    "GET /v1/communities/{community_id}/proxy-numbers": get(
        "/v1/communities/{s.community}/proxy-numbers"
    ),
    "POST /v1/communities/{community_id}/proxy-numbers": post(
        "/v1/communities/{s.community}/proxy-numbers",
        lambda w, s, c: {"numbers": [f"+1202555{w.unique() + 1000:04d}"]},
    ),
    "GET /v1/admin/outbox": get("/v1/admin/outbox"),
    "POST /v1/admin/operators": post(
        "/v1/admin/operators",
        lambda w, s, c: {"phone": w.fresh_phone(), "community_ids": [s.community]},
    ),
    "GET /v1/jobs": get("/v1/jobs"),
    "POST /v1/jobs": _posting,
    "GET /v1/jobs/{job_id}": get("/v1/jobs/{s.jobs[main][id]}"),
    "POST /v1/jobs/{job_id}/cancel": post(
        "/v1/jobs/{s.jobs[cancel][id]}/cancel",
        lambda w, s, c: {"reason": "plans changed", "assignment_version": s.version("cancel")},
    ),
    "POST /v1/jobs/{job_id}/complete": post(
        "/v1/jobs/{s.jobs[complete][id]}/complete",
        lambda w, s, c: {"assignment_version": s.version("complete")},
    ),
    "POST /v1/jobs/{job_id}/start": post(
        "/v1/jobs/{s.jobs[start][id]}/start",
        lambda w, s, c: {
            "pin": s.pin,
            "location": s.point,
            "assignment_version": s.version("start"),
        },
    ),
    "POST /v1/jobs/{job_id}/checkins": post(
        "/v1/jobs/{s.jobs[main][id]}/checkins",
        lambda w, s, c: {"kind": "arrival", "location": s.point},
    ),
    "POST /v1/jobs/{job_id}/sos": post("/v1/jobs/{s.jobs[main][id]}/sos", {}),
    "GET /v1/jobs/{job_id}/safety": get("/v1/jobs/{s.jobs[main][id]}/safety"),
    "GET /v1/jobs/{job_id}/messages": get("/v1/jobs/{s.jobs[main][id]}/messages"),
    "POST /v1/jobs/{job_id}/messages": post(
        "/v1/jobs/{s.jobs[main][id]}/messages", {"text": "on my way"}
    ),
    "POST /v1/jobs/{job_id}/reschedule": post(
        "/v1/jobs/{s.jobs[main][id]}/reschedule",
        lambda w, s, c: {"window": {"start": _later(3, 9), "end": _later(3, 12)}},
    ),
    "POST /v1/jobs/{job_id}/reschedule/accept": post(
        "/v1/jobs/{s.jobs[main][id]}/reschedule/accept"
    ),
    "POST /v1/jobs/{job_id}/reschedule/decline": post(
        "/v1/jobs/{s.jobs[main][id]}/reschedule/decline"
    ),
    "GET /v1/workers/me/offers": get("/v1/workers/me/offers"),
    "POST /v1/offers/{offer_id}/accept": post("/v1/offers/{s.offers[accept]}/accept"),
    "POST /v1/offers/{offer_id}/decline": post("/v1/offers/{s.offers[decline]}/decline"),
    "GET /v1/workers/me/jobs-nearby": get("/v1/workers/me/jobs-nearby"),
    "POST /v1/jobs/{job_id}/take": post("/v1/jobs/{s.jobs[take][id]}/take"),
    "WS /v1/workers/me/stream": lambda w, s, c: Req("GET", "/v1/workers/me/stream", kind="ws"),
    "POST /v1/jobs/{job_id}/confirm": post("/v1/jobs/{s.jobs[confirm][id]}/confirm"),
    "POST /v1/jobs/{job_id}/dispute": post(
        "/v1/jobs/{s.jobs[dispute][id]}/dispute", {"reason": "the tap still drips"}
    ),
    "POST /v1/ops/jobs/{job_id}/resolve": post(
        "/v1/ops/jobs/{s.jobs[resolve][id]}/resolve",
        {"worker_share_bps": 5000, "note": "half each"},
    ),
    "GET /v1/jobs/{job_id}/materials": get("/v1/jobs/{s.jobs[main][id]}/materials"),
    "POST /v1/jobs/{job_id}/materials": post(
        "/v1/jobs/{s.jobs[main][id]}/materials", {"items": [{"name": "tape", "unit_cents": 200}]}
    ),
    "POST /v1/jobs/{job_id}/materials/{change_id}/approve": post(
        "/v1/jobs/{s.jobs[main][id]}/materials/{s.changes[approve]}/approve"
    ),
    "POST /v1/jobs/{job_id}/materials/{change_id}/decline": post(
        "/v1/jobs/{s.jobs[main][id]}/materials/{s.changes[decline]}/decline"
    ),
    "GET /v1/jobs/{job_id}/claims": get("/v1/jobs/{s.jobs[done][id]}/claims"),
    "POST /v1/jobs/{job_id}/claims": post(
        "/v1/jobs/{s.jobs[done][id]}/claims",
        {"description": "a scratched floor", "amount_cents": 300},
    ),
    "POST /v1/ops/claims/{claim_id}/approve": post(
        "/v1/ops/claims/{s.claims[approve]}/approve", {"note": "paid"}
    ),
    "POST /v1/ops/claims/{claim_id}/reject": post(
        "/v1/ops/claims/{s.claims[reject]}/reject", {"note": "no evidence"}
    ),
    "GET /v1/jobs/{job_id}/ledger": get("/v1/jobs/{s.jobs[main][id]}/ledger"),
    "GET /v1/workers/me/earnings": get("/v1/workers/me/earnings"),
    "GET /v1/workers/me/payouts": get("/v1/workers/me/payouts"),
    "POST /v1/workers/me/payouts": post("/v1/workers/me/payouts", {"amount_cents": 100}),
    "POST /v1/jobs/{job_id}/reviews": post("/v1/jobs/{s.jobs[done][id]}/reviews", {"rating": 5}),
    "GET /v1/jobs/{job_id}/reviews": get("/v1/jobs/{s.jobs[done][id]}/reviews"),
    "GET /v1/workers/{worker_id}/reviews": get("/v1/workers/{s.worker_id}/reviews"),
    "GET /v1/ops/communities/{community_id}/worker-trust": get(
        "/v1/ops/communities/{s.community}/worker-trust"
    ),
    "GET /v1/workers/me": get("/v1/workers/me"),
    "PUT /v1/workers/me": post(
        "/v1/workers/me",
        lambda w, s, c: {
            "name": f"{c.role.title()} {s.name}",
            "skills": ["plumbing"],
            "community_ids": [s.community],
        },
        "PUT",
    ),
    "POST /v1/workers/me/verification": post(
        "/v1/workers/me/verification", {"legal_name": "Li Lei", "id_number": "1101-0542"}
    ),
    "POST /v1/workers/me/presence": post("/v1/workers/me/presence", {"status": "online"}),
    "POST /v1/workers/me/location": post("/v1/workers/me/location", lambda w, s, c: s.point),
    "POST /v1/workers/me/locations": post(
        "/v1/workers/me/locations", lambda w, s, c: {"points": [s.point]}
    ),
    "GET /v1/workers/me/push-subscriptions": get("/v1/workers/me/push-subscriptions"),
    "POST /v1/workers/me/push-subscriptions": post(
        "/v1/workers/me/push-subscriptions",
        lambda w, s, c: {"endpoint": f"https://8.8.8.8/push/{w.unique()}", "keys": PUSH_KEYS},
    ),
    "DELETE /v1/workers/me/push-subscriptions": lambda w, s, c: Req(
        "DELETE",
        "/v1/workers/me/push-subscriptions",
        params={"endpoint": f"https://8.8.8.8/push/{c.role}-{s.name}"},
    ),
    "GET /v1/workers/nearby": get(
        "/v1/workers/nearby", lat="{s.center[0]}", lng="{s.center[1]}", radius_m=2000
    ),
    "POST /v1/ops/workers/{worker_id}/verify": post("/v1/ops/workers/{s.worker_id}/verify"),
    "POST /v1/ops/communities/{community_id}/rebuild-index": post(
        "/v1/ops/communities/{s.community}/rebuild-index"
    ),
    "GET /v1/workers/me/availability": get("/v1/workers/me/availability"),
    "PUT /v1/workers/me/availability": post(
        "/v1/workers/me/availability",
        {"weekly": [{"day": "mon", "start": "08:00", "end": "20:00"}]},
        "PUT",
    ),
    "GET /v1/workers/me/calendar": lambda w, s, c: Req(
        "GET", "/v1/workers/me/calendar", params={"from": _later(0, 0), "to": _later(7, 0)}
    ),
    "GET /v1/bookings/candidates": lambda w, s, c: Req(
        "GET",
        "/v1/bookings/candidates",
        params={
            "lat": s.center[0],
            "lng": s.center[1],
            "start": _later(7, 9),
            "end": _later(7, 17),
            "duration_min": 60,
            "skill": "plumbing",
        },
    ),
    "GET /v1/ops/communities/{community_id}/alerts": get(
        "/v1/ops/communities/{s.community}/alerts", include_acked="true"
    ),
    "POST /v1/ops/alerts/{alert_id}/ack": post("/v1/ops/alerts/{s.alert}/ack"),
    "GET /v1/ops/communities/{community_id}/snapshot": get(
        "/v1/ops/communities/{s.community}/snapshot"
    ),
    "GET /v1/ops/communities/{community_id}/verifications": get(
        "/v1/ops/communities/{s.community}/verifications"
    ),
    "GET /v1/ops/communities/{community_id}/outbox": get(
        "/v1/ops/communities/{s.community}/outbox"
    ),
    "POST /v1/ops/communities/{community_id}/stream-token": post(
        "/v1/ops/communities/{s.community}/stream-token"
    ),
    "GET /v1/ops/communities/{community_id}/events": lambda w, s, c: Req(
        "GET", f"/v1/ops/communities/{s.community}/events", kind="sse"
    ),
    "POST /v1/ops/jobs/{job_id}/assign": post(
        "/v1/ops/jobs/{s.jobs[assign][id]}/assign", lambda w, s, c: {"worker_id": s.worker_id}
    ),
    "GET /v1/ops/jobs/{job_id}/dispatch-log": get("/v1/ops/jobs/{s.jobs[main][id]}/dispatch-log"),
    "POST /v1/ops/jobs/{job_id}/replay": post("/v1/ops/jobs/{s.jobs[main][id]}/replay"),
    "POST /v1/telephony/voice": _webhook(
        "/v1/telephony/voice",
        lambda s: {"From": s.resident_phone, "To": s.proxy, "CallSid": "CA0001"},
    ),
    "POST /v1/telephony/sms": _webhook(
        "/v1/telephony/sms",
        lambda s: {"From": s.resident_phone, "To": s.proxy, "Body": "hello", "MessageSid": "SM1"},
    ),
    "POST /v1/telephony/status": _webhook(
        "/v1/telephony/status", lambda s: {"MessageSid": "SM1", "MessageStatus": "delivered"}
    ),
    "POST /v1/telephony/checkin": _webhook(
        "/v1/telephony/checkin",
        lambda s: {"Digits": "1", "CallSid": "CA0002"},
        job_id="{s.jobs[main][id]}",
        av="{s.jobs[main][assignment_version]}",
    ),
}


# --- the route table ----------------------------------------------------------------------------


def route_keys(app: Litestar) -> set[str]:
    """Every "METHOD /path" the app serves, OPTIONS aside (see `EXCLUDED`)."""
    keys = set()
    for route in app.routes:
        if type(route).__name__ == "WebSocketRoute":
            keys.add(f"WS {route.path_format}")
            continue
        for method in getattr(route, "methods", ()):
            if method != "OPTIONS":
                keys.add(f"{method} {route.path_format}")
    return keys


def path_params(key: str) -> list[str]:
    return re.findall(r"\{(\w+)\}", key)


def test_every_route_has_a_policy() -> None:
    """A route added without a row in the table fails here, and so does a row for a route
    that is gone."""
    served = route_keys(create_app(Settings())) - set(EXCLUDED)
    assert not served - set(POLICY), f"routes without a policy: {sorted(served - set(POLICY))}"
    assert not set(POLICY) - served, f"policies for no route: {sorted(set(POLICY) - served)}"
    assert set(REQUESTS) == set(POLICY), sorted(set(REQUESTS) ^ set(POLICY))
    assert set(NO_SUCCESS_HERE) <= set(POLICY)


# --- calling ------------------------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    body: bytes
    code: str | None = None


async def _http(w: World, req: Req, headers: dict[str, str]) -> Answer:
    r = await w.client.request(
        req.method, req.path, json=req.json, params=req.params, data=req.data,
        headers={**headers, **req.headers},
    )  # fmt: skip
    code = None
    if r.headers.get("content-type", "").startswith("application/problem+json"):
        code = r.json().get("code")
    return Answer(r.status_code, r.content, code)


async def _asgi(app: Litestar, scope: dict[str, Any], first: dict[str, Any]) -> list[dict]:
    """Run one ASGI connection until the app has answered (an HTTP response's start and first
    body, or a WebSocket's accept and first message, or its close), then disconnect: for the
    endless streams the in-process HTTP transport would wait on forever."""
    sent: list[dict] = []
    done = asyncio.Event()
    incoming: asyncio.Queue[dict] = asyncio.Queue()
    await incoming.put(first)
    disconnect = (
        {"type": "http.disconnect"}
        if scope["type"] == "http"
        else {"type": "websocket.disconnect", "code": 1000}
    )

    async def receive() -> dict:
        if done.is_set():
            return disconnect
        got = asyncio.ensure_future(incoming.get())
        stop = asyncio.ensure_future(done.wait())
        await asyncio.wait([got, stop], return_when=asyncio.FIRST_COMPLETED)
        if got.done():
            stop.cancel()
            return got.result()
        got.cancel()
        return disconnect

    async def send(message: dict) -> None:
        sent.append(message)
        kind = message["type"]
        if (
            kind in ("websocket.close", "websocket.send")
            or (kind == "http.response.body" and message.get("body"))
            or (kind == "http.response.body" and not message.get("more_body"))
        ):
            done.set()

    task = asyncio.create_task(app(scope, receive, send))  # type: ignore[arg-type]
    try:
        await asyncio.wait_for(done.wait(), 15)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(task), 5)
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
    return sent


def _scope(kind: str, path: str, headers: dict[str, str]) -> dict[str, Any]:
    return {
        "type": kind, "asgi": {"version": "3.0"}, "http_version": "1.1", "scheme": "http",
        "method": "GET", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "client": ("10.0.0.9", 40001), "server": ("testserver", 80),
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        + [(b"host", b"testserver")],
    }  # fmt: skip


async def _sse(w: World, req: Req, headers: dict[str, str]) -> Answer:
    sent = await _asgi(
        w.app, _scope("http", req.path, headers),
        {"type": "http.request", "body": b"", "more_body": False},
    )  # fmt: skip
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    code = None
    if start["status"] >= 400:
        code = json.loads(body).get("code")
    return Answer(start["status"], body, code)


async def _ws(w: World, req: Req, headers: dict[str, str]) -> Answer:
    """A WebSocket's answer as an HTTP one: accepted → 200 with its first message; closed
    before accepting → 403 (policy violation, 1008) with the close reason."""
    scope = {**_scope("websocket", req.path, headers), "subprotocols": []}
    del scope["method"]
    sent = await _asgi(w.app, scope, {"type": "websocket.connect"})
    if any(m["type"] == "websocket.accept" for m in sent):
        first = next((m for m in sent if m["type"] == "websocket.send"), {})
        return Answer(200, first.get("bytes") or (first.get("text") or "").encode())
    close = next(m for m in sent if m["type"] == "websocket.close")
    assert close.get("code") == 1008, close
    return Answer(403, (close.get("reason") or "").encode(), "websocket_refused")


async def call(w: World, req: Req, caller: Caller) -> Answer:
    how = {"http": _http, "sse": _sse, "ws": _ws}[req.kind]
    return await how(w, req, caller.headers)


# --- the matrix ---------------------------------------------------------------------------------


def leaks(body: bytes, caller: Caller) -> list[str]:
    """Phone numbers of people, and private text of a side the caller is not on."""
    found = [
        f"phone {m.group(0).decode()}"
        for m in E164_ANYWHERE.finditer(body)
        if not m.group(0).startswith(PROXY_PREFIX)
    ]
    if caller.role != ADMIN:
        for side in CENTERS:
            if side != caller.side:
                for secret in (MARKERS[side], PROXIES[side]):
                    if secret.encode() in body:
                        found.append(f"{side}'s private {secret!r}")
    return found


@dataclass
class Tally:
    cells: int = 0
    seconds: float = 0.0
    routes: set[str] = field(default_factory=set)


TALLY = Tally()


@pytest.mark.parametrize("key", list(POLICY))
async def test_route_authorization(world: World, key: str) -> None:
    rule, build = POLICY[key], REQUESTS[key]
    started = time.perf_counter()
    has_object = bool(path_params(key)) or key in OBJECT_IN_QUERY_OR_BODY
    problems: list[str] = []
    sides = list(world.sides.values()) if has_object else [None]
    for obj in sides:
        # Refused callers first: the allowed ones may change the object.
        cells = [(c, c.relation(obj.name if obj else (c.side or "A"))) for c in world.callers]
        cells.sort(key=lambda cell: cell[1] in rule.allowed)
        succeeded = False
        for caller, relation in cells:
            side = obj or world.sides[caller.side or "A"]
            req = build(world, side, caller)
            if inspect.isawaitable(req):
                req = await req
            answer = await call(world, req, caller)
            if DUMP:
                print(f"DUMP {key} | {side.name} | {caller.name} | {relation} | {answer.status}")
            TALLY.cells += 1
            where = f"{caller.name} ({relation}) on {side.name}'s object" if obj else caller.name
            said = f"{answer.status} {answer.code or answer.body[:120]!r}"
            if answer.status >= 500:
                problems.append(f"{where}: {said}")
            elif relation in rule.allowed:
                if answer.status in (401, 403) or (
                    answer.status >= 400 and answer.status not in STATE_ANSWERS
                ):
                    problems.append(f"{where} is allowed ({rule.name}) but got {said}")
                succeeded = succeeded or answer.status < 300
            else:
                expected = 401 if caller.role == ANON and key not in NO_BEARER else 403
                if answer.status != expected:
                    problems.append(
                        f"{where} is not allowed ({rule.name}) but got {said}, not {expected}"
                    )
            problems += [f"{where} got {leak}" for leak in leaks(answer.body, caller)]
        if rule.allowed and not succeeded and key not in NO_SUCCESS_HERE:
            what = f"{obj.name}'s object" if obj else "their own"
            problems.append(f"no allowed caller succeeded on {what}")
    TALLY.seconds += time.perf_counter() - started
    TALLY.routes.add(key)
    assert not problems, f"{key}:\n  " + "\n  ".join(problems)


NO_BEARER = frozenset({
    "WS /v1/workers/me/stream",  # reads its own token: closes with 1008 (taken as 403)
    "POST /v1/telephony/voice",  # the provider's signature or 403
    "POST /v1/telephony/sms",
    "POST /v1/telephony/status",
    "POST /v1/telephony/checkin",
})  # fmt: skip
"""Routes outside the bearer scheme: refused anonymous callers get 403, not 401."""

OBJECT_IN_QUERY_OR_BODY = frozenset({
    "GET /v1/communities",  # a point: A's or B's
    "POST /v1/jobs",  # a job in A or in B
    "POST /v1/admin/operators",  # of A or of B
    "GET /v1/workers/nearby",  # around A's or B's centre
    "GET /v1/bookings/candidates",  # in A or in B
})  # fmt: skip
"""Routes without a path id whose object (a community) is in the query or the body."""


@pytest.mark.parametrize("answer", ["approve", "decline"])
async def test_a_change_order_is_answered_only_through_its_own_job(
    world: World, answer: str
) -> None:
    """The one route with two ids: A's resident, owner of A's job, naming B's change order
    under it finds no such change (404), and B's resident naming it under A's job is refused;
    B's change order stays pending."""
    a, b = world.sides["A"], world.sides["B"]
    path = f"/v1/jobs/{a.job('main')}/materials/{b.changes['crossed']}/{answer}"
    r = await world.client.post(path, headers=a.resident)
    assert r.status_code == 404 and r.json()["code"] == "change_not_found", r.text
    r = await world.client.post(path, headers=b.resident)
    assert r.status_code == 403 and r.json()["code"] == "not_yours", r.text
    listed = await _ok(await world.client.get(f"/v1/jobs/{b.job('main')}/materials",
                                              headers=b.resident))  # fmt: skip
    (crossed,) = [c for c in listed if c["id"] == b.changes["crossed"]]
    assert crossed["status"] == "pending"


async def test_options_answers_carry_nothing(world: World) -> None:
    """OPTIONS is answered before auth on every route: with the methods, never with data."""
    for key in sorted(POLICY):
        method, path = key.split(" ", 1)
        if method == "WS":
            continue
        concrete = re.sub(r"\{\w+\}", "1", path)
        r = await world.client.options(concrete)
        assert r.status_code == 204 and r.content == b"", (key, r.status_code, r.text)


def test_zz_report(request: pytest.FixtureRequest) -> None:
    """Not a check: how much the matrix covered (shown with `-s`)."""
    if TALLY.routes:
        print(
            f"\nauthorization matrix: {len(TALLY.routes)} routes, {TALLY.cells} calls "
            f"(callers x objects), {TALLY.seconds:.1f} s in the calls"
        )
