"""Random sequences of money operations on several jobs at once, through the HTTP API, beside a
model in Python of where every cent should be.

Each example starts from empty tables with a fresh app (truncating under a running app would
leave its ledger's cached account ids pointing at rows that no longer exist), posts 2-4 grab
jobs and then draws operations on random jobs: accept, start, complete (with materials or not),
either side cancelling, change orders and their answers, confirmation, disputes and their
resolution, insurance claims and their decision, payouts, firing due timers with the clock
jumped ahead (past `auto_confirm_h` or not), ageing an assignment past the cancellation grace,
posting again in a finished job's place, and replaying an earlier successful call as it was
sent (Idempotency-Key and all).

The model predicts every call's outcome (status code, and the error code where one is
documented) and its money from the rules (`dispatch.money.rules`: commission and premium on
the price only, materials passing through whole, a cancellation fee or a dispute's share less
commission and the rest refunded, claims from the pool while it holds enough). After every
step, with due timers fired: the ledger's own check (`dispatch.money.ledger.problems`) is
empty; every account's posted and pending balance equals the model's (escrows, residents'
sources, workers' payables, revenue, the insurance pool, the provider's external account);
each job's public view, ledger (GET /v1/jobs/{id}/ledger), change orders and claims, and each
worker's earnings and payouts agree with the model; and a replay moved nothing at all.

Clock control: timers are fired with `durable.fire_due(now + jump)`; the grace before a
cancellation costs a fee is measured by the dispatcher against the wall clock, so "ageing" an
assignment moves its `assigned_at` back ten minutes in the database (as test_money does).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, note
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sqlalchemy import text

from dispatch.money.ledger import problems
from tests.conftest import Principals, _scan, empty_state, started_app
from tests.dispatch.helpers import CENTER, community
from tests.dispatch.test_grab import crew, offers_of

pytestmark = pytest.mark.slow

CNY = "CNY"
AUTO_CONFIRM_H = 72
GRACE = timedelta(minutes=3)
WORKERS = 5
FINISHED = ("confirmed", "cancelled")
WORKING = ("assigned", "in_progress", "completed")
LEDGER_KINDS = {
    "funding", "escrow_hold", "worker_pay", "commission", "premium", "refund", "refund_out",
    "claim",
}  # fmt: skip


def share(amount: int, bps: int) -> int:
    """Basis points of an amount, half up to the cent (written out here, not imported)."""
    return (amount * bps + 5_000) // 10_000


def fee_for(price: int) -> int:
    """The resident's fee for cancelling after the grace: 10 % of the price, at least 5.00,
    at most the price (`dispatch.grab.rules.cancellation_fee` defaults)."""
    return min(max(500, price * 1000 // 10_000), price)


# --- the model ----------------------------------------------------------------------------


@dataclass
class Settled:
    worker: int
    commission: int
    premium: int
    refund: int

    @property
    def whole_refund(self) -> bool:
        return self.worker + self.commission + self.premium == 0


@dataclass
class Job:
    slot: int
    id: int
    resident: int
    price: int
    posted: int
    """Materials listed when posted (cents)."""
    insured: bool
    status: str = "open"
    worker: int | None = None
    """`job.worker_id`: set by an accept, cleared only by the worker handing the job back."""
    version: int = 0
    aged: bool = False
    held: int = 0
    approved: int = 0
    completed: bool = False
    changes: dict[int, list] = field(default_factory=dict)
    """Change order id → [amount, status]."""
    claims: dict[int, list] = field(default_factory=dict)
    """Claim id → [amount, status]."""
    settled: Settled | None = None
    paid_to: int | None = None
    resolved_bps: int | None = None
    fee: int | None = None

    @property
    def total(self) -> int:
        return self.price + self.posted + self.approved

    def commission(self, w: World) -> int:
        return share(self.price, w.commission_bps)

    def premium(self, w: World) -> int:
        return share(self.price, w.insurance_bps) if self.insured else 0

    def net(self, w: World) -> int:
        return self.total - self.commission(w) - self.premium(w)

    @property
    def refund_out(self) -> int:
        """What went back out to the resident's payment source for the job itself."""
        if self.settled is None:
            return 0
        return self.held if self.settled.whole_refund else self.settled.refund


@dataclass
class Call:
    method: str
    path: str
    body: Any
    headers: dict[str, str]
    status: int
    answer: Any


@dataclass
class World:
    commission_bps: int
    insurance_bps: int
    payout_limit: int
    jobs: list[Job] = field(default_factory=list)
    slots: dict[int, Job] = field(default_factory=dict)
    payouts: dict[int, list] = field(default_factory=dict)
    """Payout id → [worker, amount, status]."""
    history: list[Call] = field(default_factory=list)

    def released(self, worker: int) -> int:
        return sum(j.settled.worker for j in self.jobs if j.settled and j.paid_to == worker)

    def paid_out(self, worker: int, status: str) -> int:
        return sum(a for w, a, s in self.payouts.values() if w == worker and s == status)

    def available(self, worker: int) -> int:
        return (
            self.released(worker) - self.paid_out(worker, "paid") - self.paid_out(worker, "pending")
        )

    def pool(self) -> int:
        premiums = sum(j.settled.premium for j in self.jobs if j.settled)
        return premiums - self.claimed()

    def claimed(self) -> int:
        return sum(a for j in self.jobs for a, s in j.claims.values() if s == "approved")

    def balances(self, workers: list[int], residents: list[int]) -> dict[str, tuple[int, ...]]:
        """Every account's (posted, pending debits, pending credits) as the model has it."""
        out: dict[str, tuple[int, ...]] = {}
        for j in self.jobs:
            out[f"escrow:job:{j.id}:{CNY}"] = (0, 0, j.held if j.settled is None else 0)
        for r in residents:
            open_held = sum(j.held for j in self.jobs if j.resident == r and j.settled is None)
            out[f"source:resident:{r}:{CNY}"] = (open_held, open_held, 0)
        for w in workers:
            posted = self.released(w) - self.paid_out(w, "paid")
            out[f"payable:worker:{w}:{CNY}"] = (posted, self.paid_out(w, "pending"), 0)
        out[f"revenue:{CNY}"] = (sum(j.settled.commission for j in self.jobs if j.settled), 0, 0)
        out[f"insurance_pool:{CNY}"] = (self.pool(), 0, 0)
        external = (
            -sum(j.held for j in self.jobs)
            + sum(j.refund_out for j in self.jobs)
            + self.claimed()
            + sum(a for _, a, s in self.payouts.values() if s == "paid")
        )
        pending = sum(a for _, a, s in self.payouts.values() if s == "pending")
        out[f"external:provider:{CNY}"] = (external, 0, pending)
        out[f"compensation:{CNY}"] = (0, 0, 0)
        return {k: v for k, v in out.items() if any(v)}

    def release(self, j: Job) -> None:
        """Confirmed (by the resident or by itself): everything as the pay shows it."""
        assert j.held == j.total, "an escrow holds the job's whole total before release"
        for change in j.changes.values():
            if change[1] == "pending":
                change[1] = "declined"
        j.settled = Settled(j.net(self), j.commission(self), j.premium(self), 0)
        j.paid_to, j.status = j.worker, "confirmed"

    def partial(self, j: Job, gross: int) -> None:
        gross = min(max(0, gross), j.held)
        fee = share(gross, self.commission_bps)
        j.settled = Settled(gross - fee, fee, 0, j.held - gross)
        j.paid_to = j.worker if gross else None


_BALANCES = text(
    """
    SELECT a.key,
      coalesce(sum(t.amount_cents) FILTER (WHERE t.credit_account_id = a.id
                                           AND t.status = 'posted'), 0)
      - coalesce(sum(t.amount_cents) FILTER (WHERE t.debit_account_id = a.id
                                             AND t.status = 'posted'), 0),
      coalesce(sum(t.amount_cents) FILTER (WHERE t.debit_account_id = a.id
                                           AND t.status = 'pending'), 0),
      coalesce(sum(t.amount_cents) FILTER (WHERE t.credit_account_id = a.id
                                           AND t.status = 'pending'), 0)
    FROM ledger_accounts a
    LEFT JOIN ledger_transfers t ON a.id IN (t.debit_account_id, t.credit_account_id)
    GROUP BY a.key
    """
)
_TRANSFERS = text("SELECT id, status, amount_cents FROM ledger_transfers ORDER BY id")
_DUE = text(
    "SELECT count(*) FROM timers WHERE fired_at IS NULL AND cancelled_at IS NULL AND due_at <= :at"
)


# --- the app, fresh for each example ------------------------------------------------------


@contextlib.asynccontextmanager
async def fresh_app(base_settings, engine, redis) -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    """What the `clean_state` and `app` fixtures do, once per example: empty tables and Redis,
    a new app started, and after it has stopped the ledger still adds up."""
    await empty_state(engine, redis)
    async with started_app(base_settings, engine) as application:
        transport = httpx.ASGITransport(app=application, client=("10.0.0.1", 40000))
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver", event_hooks={"response": [_scan]}
        ) as client:
            yield application, client


async def drain(app, at: datetime | None = None) -> None:
    """Fire every timer due at `at` (default now) until none is left: escrow holds, payouts,
    auto-confirmations. A timer whose handler keeps failing never drains: that fails here."""
    runtime = app.state.runtime
    for _ in range(100):
        when = at or datetime.now(UTC)
        await runtime.durable.fire_due(when)
        async with runtime.sessions() as session:
            if not await session.scalar(_DUE, {"at": when}):
                return
        await asyncio.sleep(0.05)
    async with runtime.sessions() as session:
        stuck = (
            await session.execute(
                text(
                    "SELECT kind, ref_id, attempts FROM timers WHERE fired_at IS NULL "
                    "AND cancelled_at IS NULL AND due_at <= :at"
                ),
                {"at": at or datetime.now(UTC)},
            )
        ).all()
    raise AssertionError(f"timers do not fire: {stuck}")


# --- one example ------------------------------------------------------------------------


class Run:
    def __init__(self, app, client: httpx.AsyncClient, world: World) -> None:
        self.app, self.client, self.w = app, client, world
        self.keys = itertools.count(1)

    async def setup(self, principals: Principals) -> None:
        admin = await principals.admin()
        dispatch = {
            "offer_ttl_s": 3600,  # no offer lapses during an example
            "waves": [{"size": 2}, {"size": 2}, {"size": 2}, {}],
            "commission_bps": self.w.commission_bps,
            "insurance_bps": self.w.insurance_bps,
            "auto_confirm_h": AUTO_CONFIRM_H,
        }
        self.cid = await community(self.client, admin, dispatch=dispatch)
        team = await crew(
            self.client, principals, self.cid, [100 * (i + 1) for i in range(WORKERS)]
        )
        self.workers = [wid for wid, _ in team]
        self.hw = dict(team)
        self.residents, self.hr = [], {}
        for _ in range(2):
            rid, h = await principals.user("resident")
            self.residents.append(rid)
            self.hr[rid] = h
        self.ops = await principals.operator(self.cid)
        self.admin = admin
        self.app.state.runtime.money.provider.payout_limit_cents = self.w.payout_limit

    # --- calling ------------------------------------------------------------------------

    async def call(
        self, method: str, path: str, headers: dict[str, str], body: Any = None,
        key: str | None = None,
    ) -> httpx.Response:  # fmt: skip
        sent = {**headers, **({"Idempotency-Key": key} if key else {})}
        r = await self.client.request(method, path, json=body, headers=sent)
        assert r.status_code < 500, f"{method} {path} {body}: {r.status_code} {r.text}"
        if r.status_code >= 400:
            assert isinstance(r.json().get("code"), str), r.text
        else:
            self.w.history.append(Call(method, path, body, sent, r.status_code, r.json()))
        note(f"  {method} {path} {body} -> {r.status_code} {r.text[:160]}")
        return r

    @staticmethod
    def expect(r: httpx.Response, status: int, code: str | None = None) -> dict:
        assert r.status_code == status, f"expected {status} {code or ''}, got {r.text}"
        if code is not None:
            assert r.json()["code"] == code, r.text
        return r.json()

    def holder(self, j: Job) -> tuple[int, dict[str, str]]:
        """The job's worker, or (there is none) a worker who does not hold it."""
        wid = j.worker if j.worker is not None else self.workers[0]
        return wid, self.hw[wid]

    # --- operations -------------------------------------------------------------------

    async def post(self, slot: int, price: int, mats: list, insured: bool) -> None:
        old = self.w.slots.get(slot)
        if old is not None and old.status not in FINISHED:
            return  # the slot's job is still in flight
        resident = self.residents[slot % 2]
        materials = [
            {"name": f"part {i}", "cost_cents": cost, "quantity": q}
            for i, (q, cost) in enumerate(mats)
        ]
        body = {
            "title": "Fix a leaking tap", "category": "moving", "skills": ["moving"],
            "location": {"lat": CENTER[0], "lng": CENTER[1]}, "mode": "grab",
            "price_cents": price, "materials": materials, "insured": insured,
        }  # fmt: skip
        r = await self.call("POST", "/v1/jobs", self.hr[resident], body, f"post-{next(self.keys)}")
        got = self.expect(r, 201)
        assert got["status"] == "open", got
        posted = sum(q * c for q, c in mats)
        job = Job(slot, got["id"], resident, price, posted, insured)
        assert got["pay"]["total_cents"] == job.total
        self.w.jobs.append(job)
        self.w.slots[slot] = job

    async def accept(self, j: Job, pick: int, keyed: bool, then: str | None) -> None:
        """A worker with an offer for the job takes it; `then`: the resident cancels or the
        worker completes at once, before the escrow's timer has necessarily fired (the step
        places the hold itself)."""
        pending = []
        for wid in self.workers:
            for offer in await offers_of(self.client, self.hw[wid]):
                if offer["job_id"] == j.id:
                    pending.append((wid, offer["id"]))
        if not pending:
            return
        assert j.status == "open", f"an offer is pending on a job that is {j.status}"
        wid, offer_id = pending[pick % len(pending)]
        key = f"accept-{next(self.keys)}" if keyed else None
        r = await self.call("POST", f"/v1/offers/{offer_id}/accept", self.hw[wid], key=key)
        got = self.expect(r, 200)
        assert (got["status"], got["worker_id"]) == ("assigned", wid), got
        assert got["assignment_version"] == j.version + 1, got
        j.status, j.worker, j.version, j.aged = "assigned", wid, j.version + 1, False
        if j.held == 0:
            j.held = j.price + j.posted  # held again on a later assignment: nothing more
        if then == "cancel":
            await self.resident_cancel(j, late=False)
        elif then == "complete":
            await self.complete(j, [])
        await drain(self.app)  # the escrow hold, right after the assignment

    async def start(self, j: Job) -> None:
        wid, h = self.holder(j)
        pin = (await self.client.get(f"/v1/jobs/{j.id}", headers=self.hr[j.resident])).json()[
            "start_pin"
        ]
        body = {"pin": pin or "0000", "location": {"lat": CENTER[0], "lng": CENTER[1]},
                "assignment_version": max(j.version, 1)}  # fmt: skip
        r = await self.call("POST", f"/v1/jobs/{j.id}/start", h, body)
        if j.worker != wid:
            self.expect(r, 403)
        elif j.status == "in_progress":
            self.expect(r, 200)
        elif j.status != "assigned":
            self.expect(r, 409, "invalid_transition")
        else:
            assert self.expect(r, 200)["status"] == "in_progress"
            j.status = "in_progress"

    async def complete(self, j: Job, mats: list) -> None:
        wid, h = self.holder(j)
        body: dict[str, Any] = {"assignment_version": max(j.version, 1)}
        if mats:
            body["materials"] = [
                {"name": f"bought {i}", "cost_cents": c, "quantity": q}
                for i, (q, c) in enumerate(mats)
            ]
        r = await self.call("POST", f"/v1/jobs/{j.id}/complete", h, body)
        if j.worker != wid:
            self.expect(r, 403, "not_assigned")
            return
        if j.status not in ("assigned", "in_progress"):
            self.expect(r, 409, "invalid_transition")
            return
        assert self.expect(r, 200)["status"] == "completed"
        j.status, j.completed = "completed", True
        if mats:
            new = [c for c in await self.changes_of(j) if c["id"] not in j.changes]
            assert len(new) == 1 and new[0]["status"] == "pending", new
            assert new[0]["amount_cents"] == sum(q * c for q, c in mats)
            j.changes[new[0]["id"]] = [new[0]["amount_cents"], "pending"]

    async def worker_cancel(self, j: Job) -> None:
        wid, h = self.holder(j)
        body = {"reason": "cannot make it", "assignment_version": max(j.version, 1)}
        r = await self.call("POST", f"/v1/jobs/{j.id}/cancel", h, body)
        if j.worker != wid:
            self.expect(r, 403, "not_assigned")
        elif j.status != "assigned":
            self.expect(r, 409, "started")
        else:
            got = self.expect(r, 200)
            # Back out to other workers: offered to new ones, or held open for them.
            assert got["status"] in ("open", "unfilled") and got["worker_id"] is None, got
            j.status, j.worker, j.aged = got["status"], None, False

    async def resident_cancel(self, j: Job, late: bool) -> None:
        """`late`: once the assignment (if any) has lasted past the grace."""
        if late:
            await self.age(j)
        r = await self.call(
            "POST", f"/v1/jobs/{j.id}/cancel", self.hr[j.resident], {"reason": "changed my mind"}
        )
        if j.status == "disputed":
            self.expect(r, 409, "disputed")
            return
        if j.status not in ("open", "unfilled", "assigned", "in_progress"):
            self.expect(r, 409, "invalid_transition")
            return
        got = self.expect(r, 200)
        fee = fee_for(j.price) if j.aged and j.status in ("assigned", "in_progress") else 0
        assert got["status"] == "cancelled" and got["cancellation"]["fee_cents"] == fee, got
        j.status, j.fee = "cancelled", fee
        if j.version > 0:  # held once assigned; never assigned, nothing was
            self.w.partial(j, fee)

    async def age(self, j: Job) -> None:
        """The assignment has lasted ten minutes: past the grace, a resident's cancellation
        costs the fee (the dispatcher reads the wall clock, so the row moves back)."""
        if j.status not in ("assigned", "in_progress"):
            return
        async with self.app.state.runtime.sessions.begin() as session:
            await session.execute(
                text("UPDATE jobs SET assigned_at = assigned_at - interval '10 minutes' "
                     "WHERE id = :j"), {"j": j.id},
            )  # fmt: skip
        j.aged = True

    async def propose(self, j: Job, items: list) -> None:
        wid, h = self.holder(j)
        body = {
            "items": [
                {"name": f"extra {i}", "quantity": q, "unit_cents": c}
                for i, (q, c) in enumerate(items)
            ]
        }
        r = await self.call("POST", f"/v1/jobs/{j.id}/materials", h, body, f"co-{next(self.keys)}")
        if j.worker != wid:
            self.expect(r, 403, "not_assigned")
        elif j.status not in ("assigned", "in_progress"):
            self.expect(r, 409, "not_in_progress")
        else:
            got = self.expect(r, 201)
            amount = sum(q * c for q, c in items)
            assert got["status"] == "pending" and got["amount_cents"] == amount, got
            assert got["id"] not in j.changes
            j.changes[got["id"]] = [amount, "pending"]

    async def answer(self, j: Job, pick: int, approve: bool, stray: bool = True) -> None:
        """The resident answers a pending change order (stray: any of the job's)."""
        ids = sorted(c for c, (_, s) in j.changes.items() if stray or s == "pending")
        if not ids:
            return
        cid = ids[pick % len(ids)]
        change = j.changes[cid]
        verb = "approve" if approve else "decline"
        r = await self.call("POST", f"/v1/jobs/{j.id}/materials/{cid}/{verb}", self.hr[j.resident])
        wanted = "approved" if approve else "declined"
        if change[1] == wanted:
            self.expect(r, 200)
        elif change[1] != "pending":
            self.expect(r, 409, "change_answered")
        elif approve and j.status not in WORKING:
            self.expect(r, 409, "not_in_progress")
        else:
            assert self.expect(r, 200)["status"] == wanted
            change[1] = wanted
            if approve:
                assert j.held > 0, "approved on a job whose escrow is not held"
                j.approved += change[0]
                j.held += change[0]  # the escrow topped up

    async def confirm(self, j: Job) -> None:
        r = await self.call("POST", f"/v1/jobs/{j.id}/confirm", self.hr[j.resident])
        if j.status == "confirmed":
            self.expect(r, 200)
        elif j.status == "disputed":
            self.expect(r, 409, "disputed")
        elif j.status != "completed":
            self.expect(r, 409, "invalid_transition")
        else:
            assert self.expect(r, 200)["status"] == "confirmed"
            self.w.release(j)

    async def dispute(self, j: Job, by_worker: bool) -> None:
        if by_worker:
            wid, h = self.holder(j)
            side = j.worker == wid
        else:
            h, side = self.hr[j.resident], True
        r = await self.call("POST", f"/v1/jobs/{j.id}/dispute", h, {"reason": "still leaks"})
        if not side:
            self.expect(r, 403, "not_yours")
        elif j.status == "disputed":
            self.expect(r, 200)
        elif j.status not in ("in_progress", "completed"):
            self.expect(r, 409, "not_disputable")
        else:
            assert self.expect(r, 200)["status"] == "disputed"
            j.status = "disputed"

    async def resolve(self, j: Job, bps: int, as_admin: bool) -> None:
        h = self.admin if as_admin else self.ops
        body = {"worker_share_bps": bps, "note": "split after review"}
        r = await self.call("POST", f"/v1/ops/jobs/{j.id}/resolve", h, body)
        if j.resolved_bps is not None:
            if j.resolved_bps == bps:
                self.expect(r, 200)
            else:
                self.expect(r, 409, "already_resolved")
        elif j.status != "disputed":
            self.expect(r, 409, "not_disputed")
        else:
            got = self.expect(r, 200)
            self.w.partial(j, share(j.held, bps))
            j.status = "confirmed" if bps > 0 else "cancelled"
            j.resolved_bps = bps
            assert got["status"] == j.status and got["dispute"]["worker_share_bps"] == bps, got

    async def claim(self, j: Job, bps: int, raw: int, use_raw: bool) -> None:
        """A claim of a share of what the pool will hold once this job's premium is in (or of
        `raw`, however much that is)."""
        amount = raw if use_raw else max(1, share(self.w.pool() + j.premium(self.w), bps))
        body = {"description": "a cracked tile", "amount_cents": amount}
        r = await self.call(
            "POST", f"/v1/jobs/{j.id}/claims", self.hr[j.resident], body, f"claim-{next(self.keys)}"
        )
        if not j.insured:
            self.expect(r, 422, "not_insured")
        elif not j.completed or j.status not in ("completed", "confirmed", "disputed"):
            self.expect(r, 409, "not_completed")
        else:
            got = self.expect(r, 201)
            assert got["status"] == "pending" and got["amount_cents"] == amount, got
            j.claims[got["id"]] = [amount, "pending"]

    async def decide(self, pick: int, approve: bool, stray: bool = True) -> None:
        """An operator decides a pending claim on any job, one the pool covers if approving and
        there is one (stray: any claim)."""
        claims = {c: v for j in self.w.jobs for c, v in j.claims.items()}
        ids = sorted(c for c, (_, s) in claims.items() if stray or s == "pending")
        if approve and not stray:
            ids = [c for c in ids if claims[c][0] <= self.w.pool()] or ids
        if not ids:
            return
        cid = ids[pick % len(ids)]
        claim = next(j.claims[cid] for j in self.w.jobs if cid in j.claims)
        verb = "approve" if approve else "reject"
        r = await self.call("POST", f"/v1/ops/claims/{cid}/{verb}", self.ops, {"note": "seen"})
        wanted = "approved" if approve else "rejected"
        if claim[1] == wanted:
            self.expect(r, 200)
        elif claim[1] != "pending":
            self.expect(r, 409, "claim_decided")
        elif approve and self.w.pool() < claim[0]:
            self.expect(r, 422, "insurance_pool_short")
        else:
            assert self.expect(r, 200)["status"] == wanted
            claim[1] = wanted

    async def payout(self, who: int, over: bool, bps: int) -> None:
        wid = self.workers[who % len(self.workers)]
        have = self.w.available(wid)
        amount = have + 1 if over else max(1, share(have, bps))
        r = await self.call(
            "POST", "/v1/workers/me/payouts", self.hw[wid], {"amount_cents": amount},
            f"payout-{next(self.keys)}",
        )  # fmt: skip
        if amount > have:
            self.expect(r, 422, "insufficient_funds")
            return
        got = self.expect(r, 201)
        assert got["status"] == "pending" and got["amount_cents"] == amount, got
        self.w.payouts[got["id"]] = [wid, amount, "pending"]
        await drain(self.app)  # the provider is called right after
        paid = amount <= self.w.payout_limit
        self.w.payouts[got["id"]][2] = "paid" if paid else "failed"

    async def jump(self, hours: int) -> None:
        """Fire what is due `hours` from now: past `auto_confirm_h`, every completed job
        (neither confirmed nor disputed) is released by itself."""
        await drain(self.app, datetime.now(UTC) + timedelta(hours=hours))
        if hours >= AUTO_CONFIRM_H:
            for j in self.w.jobs:
                if j.status == "completed":
                    self.w.release(j)

    async def replay(self, pick: int) -> None:
        """An earlier successful call again, byte for byte: it changes nothing, and a call
        made under an Idempotency-Key is answered as the first time."""
        if not self.w.history:
            return
        call = self.w.history[pick % len(self.w.history)]
        await drain(self.app)
        before = await self.transfers()
        r = await self.client.request(call.method, call.path, json=call.body, headers=call.headers)
        note(f"  replay {call.method} {call.path} {call.body} -> {r.status_code} {r.text[:160]}")
        assert r.status_code < 500, r.text
        if r.status_code >= 400:
            assert isinstance(r.json().get("code"), str), r.text
        if call.path in ("/v1/jobs", "/v1/workers/me/payouts") or call.path.endswith("/claims"):
            assert (r.status_code, r.json()) == (call.status, call.answer)
        await drain(self.app)
        assert await self.transfers() == before, "a replay moved money"

    async def step(self, name: str, stray: bool, slot: int, args: list) -> None:
        if name in ("jump", "replay"):
            await getattr(self, name)(*args)
        elif name == "payout":
            rich = [i for i, wid in enumerate(self.workers) if self.w.available(wid) > 0]
            await self.payout(rich[slot % len(rich)] if rich and not stray else slot, *args)
        elif name == "post":
            await self.post(slot, *args)
        elif name == "decide":
            await self.decide(*args, stray)
        elif name == "answer":
            await self.answer(self.w.slots[slot], *args, stray)
        else:
            await getattr(self, name)(self.w.slots[slot], *args)

    def possible(self, name: str) -> bool:
        """Whether one of the other operations would do anything but fail."""
        if name == "payout":
            return any(self.w.available(wid) > 0 for wid in self.workers)
        if name == "decide":
            return any(s == "pending" for j in self.w.jobs for _, s in j.claims.values())
        return name == "jump" or bool(self.w.history)

    @staticmethod
    def applies(name: str, j: Job) -> bool:
        """Whether the operation is allowed on the job as the model has it."""
        s = j.status
        return {
            "post": s in FINISHED,
            "accept": s == "open",
            "start": s == "assigned",
            "complete": s in ("assigned", "in_progress"),
            "worker_cancel": s == "assigned",
            "resident_cancel": s in ("open", "unfilled", "assigned", "in_progress"),
            "age": s in ("assigned", "in_progress") and not j.aged,
            "propose": s in ("assigned", "in_progress"),
            "answer": any(c[1] == "pending" for c in j.changes.values()),
            "confirm": s == "completed",
            "dispute": s in ("in_progress", "completed"),
            "resolve": s == "disputed",
            "claim": j.insured and j.completed and s in ("completed", "confirmed", "disputed"),
        }[name]

    # --- checks --------------------------------------------------------------------------

    async def transfers(self) -> list[tuple]:
        async with self.app.state.runtime.sessions() as session:
            return [tuple(row) for row in (await session.execute(_TRANSFERS)).all()]

    async def changes_of(self, j: Job) -> list[dict]:
        r = await self.client.get(f"/v1/jobs/{j.id}/materials", headers=self.hr[j.resident])
        return self.expect(r, 200)

    async def check(self) -> None:
        w = self.w
        async with self.app.state.runtime.sessions() as session:
            assert await problems(session) == []
            rows = (await session.execute(_BALANCES)).all()
        got = {key: tuple(map(int, v)) for key, *v in rows if any(v)}
        assert got == w.balances(self.workers, self.residents)
        for j in w.jobs:
            await self.check_job(j)
        for wid in self.workers:
            await self.check_worker(wid)

    async def check_job(self, j: Job) -> None:
        w, h = self.w, self.hr[j.resident]
        view = self.expect(await self.client.get(f"/v1/jobs/{j.id}", headers=h), 200)
        assert (view["status"], view["worker_id"]) == (j.status, j.worker), (view, j)
        pay = view["pay"]
        assert (pay["total_cents"], pay["net_cents"]) == (j.total, j.net(w)), (pay, j)
        deductions = [{"kind": "commission", "cents": j.commission(w)}]
        if j.insured:
            deductions.append({"kind": "insurance", "cents": j.premium(w)})
        assert pay["deductions"] == deductions
        if j.fee is not None:
            assert view["cancellation"]["fee_cents"] == j.fee

        book = self.expect(await self.client.get(f"/v1/jobs/{j.id}/ledger", headers=h), 200)
        entries = book["entries"]

        def moved(kind: str) -> int:
            return sum(e["amount_cents"] for e in entries if e["kind"] == kind)

        assert {e["kind"] for e in entries} <= LEDGER_KINDS, entries
        escrow = f"escrow:job:{j.id}:{CNY}"
        assert j.held in (0, j.total), "an escrow holds all of the job's total or nothing"
        s = j.settled or Settled(0, 0, 0, 0)
        holds = [e for e in entries if e["kind"] == "escrow_hold"]
        assert sum(e["amount_cents"] for e in holds) == moved("funding") == j.held
        if j.settled is None:
            hold_status = "pending"
        else:
            hold_status = "voided" if s.whole_refund else "posted"
        assert all(e["status"] == hold_status for e in holds), holds
        assert all(e["status"] == "posted" for e in entries if e["kind"] != "escrow_hold")
        assert moved("worker_pay") == s.worker
        assert moved("commission") == s.commission
        assert moved("premium") == s.premium
        assert moved("refund") == (0 if s.whole_refund else s.refund)
        claimed = sum(a for a, st_ in j.claims.values() if st_ == "approved")
        assert moved("claim") == claimed
        assert moved("refund_out") == j.refund_out + claimed
        for e in entries:
            if e["kind"] == "worker_pay":
                assert (e["debit"], e["credit"]) == (escrow, f"payable:worker:{j.paid_to}:{CNY}")
            elif e["kind"] in ("commission", "premium", "refund"):
                assert e["debit"] == escrow
        if j.settled is not None:
            assert s.worker + s.commission + s.premium + s.refund == j.held
        assert book["balances"] == {escrow: 0, f"{escrow}:held": j.held if j.settled is None else 0}
        # The resident pays at most the job's total, and exactly what the settlement kept.
        charged = moved("funding") - (moved("refund_out") - claimed)
        assert 0 <= charged <= j.total
        assert charged == j.held - j.refund_out

        if j.changes:
            listed = {c["id"]: [c["amount_cents"], c["status"]] for c in await self.changes_of(j)}
            assert listed == j.changes
        if j.claims:
            r = await self.client.get(f"/v1/jobs/{j.id}/claims", headers=h)
            listed = {c["id"]: [c["amount_cents"], c["status"]] for c in self.expect(r, 200)}
            assert listed == j.claims

    async def check_worker(self, wid: int) -> None:
        w, h = self.w, self.hw[wid]
        e = self.expect(await self.client.get("/v1/workers/me/earnings", headers=h), 200)
        mine = [j for j in w.jobs if j.worker == wid]
        pending = sum(j.net(w) for j in mine if j.status in WORKING)
        assert (e["payable_cents"], e["released_cents"], e["pending_cents"]) == (
            w.available(wid), w.released(wid), pending,
        ), (e, wid)  # fmt: skip
        assert (e["paid_out_cents"], e["in_payout_cents"]) == (
            w.paid_out(wid, "paid"), w.paid_out(wid, "pending"),
        )  # fmt: skip
        items = {i["job_id"]: i for i in e["items"]}
        assert set(items) == {j.id for j in mine}
        for j in mine:
            item = items[j.id]
            got = j.settled.worker if j.settled and j.paid_to == wid else 0
            if j.status in WORKING:
                money = "pending"
            elif j.status == "disputed":
                money = "disputed"
            else:
                money = "released" if got else "none"
            assert (item["status"], item["money"], item["released_cents"]) == (
                j.status, money, got,
            ), (item, j)  # fmt: skip
            assert item["pay"]["net_cents"] == j.net(w)
        if any(p[0] == wid for p in w.payouts.values()):
            r = await self.client.get("/v1/workers/me/payouts", headers=h)
            listed = {p["id"]: [wid, p["amount_cents"], p["status"]] for p in self.expect(r, 200)}
            assert listed == {k: v for k, v in w.payouts.items() if v[0] == wid}


# --- strategies ---------------------------------------------------------------------------

SLOT = st.integers(0, 3)
STRAY = st.integers(0, 5).map(lambda x: x == 5)
"""Mostly an operation is drawn among those that apply to its job now (so that sequences get
somewhere); one time in six any operation, allowed or not."""
MATS = st.lists(st.tuples(st.integers(1, 3), st.integers(1, 5_000)), max_size=2)
ITEMS = st.lists(st.tuples(st.integers(1, 3), st.integers(1, 5_000)), min_size=1, max_size=2)
PRICE = st.integers(100, 40_000)
PICK = st.integers(0, 9)
MOSTLY = st.integers(0, 2).map(bool)
"""True two times in three (an approval rather than a refusal)."""
BPS = st.one_of(st.sampled_from([0, 1, 5_000, 10_000]), st.integers(0, 10_000))

OPS: dict[str, tuple[int, st.SearchStrategy]] = {
    "post": (2, st.tuples(PRICE, MATS, st.booleans())),
    "accept": (
        4,
        st.tuples(PICK, st.booleans(), st.sampled_from([None, None, "cancel", "complete"])),
    ),
    "start": (2, st.tuples()),
    "complete": (4, st.tuples(MATS)),
    "worker_cancel": (2, st.tuples()),
    "resident_cancel": (1, st.tuples(st.booleans())),
    "age": (1, st.tuples()),
    "propose": (3, st.tuples(ITEMS)),
    "answer": (6, st.tuples(PICK, MOSTLY)),
    "confirm": (3, st.tuples()),
    "dispute": (2, st.tuples(st.booleans())),
    "resolve": (3, st.tuples(BPS, st.booleans())),
    "claim": (3, st.tuples(st.integers(1, 10_000), st.integers(1, 1_000), st.booleans())),
}
"""The operations on one job: each one's weight, and its arguments."""
GLOBAL: dict[str, tuple[int, st.SearchStrategy]] = {
    "payout": (3, st.tuples(st.integers(0, 4).map(lambda x: x == 4), st.integers(1, 10_000))),
    "decide": (5, st.tuples(PICK, MOSTLY)),
    "jump": (2, st.tuples(st.sampled_from([73, 1, 71, 73, 24 * 15]))),
    "replay": (2, st.tuples(st.integers(0, 10_000))),
}
"""The others: a worker's payout, a claim's decision, timers fired ahead, a replay."""


@dataclass(frozen=True)
class Scenario:
    commission_bps: int
    insurance_bps: int
    payout_limit: int
    posts: list
    steps: int


SCENARIOS = st.builds(
    Scenario,
    commission_bps=st.sampled_from([1500, 0, 1234, 2500]),
    insurance_bps=st.sampled_from([300, 0, 2000]),
    payout_limit=st.sampled_from([2_000_000, 3_000]),
    posts=st.lists(OPS["post"][1], min_size=2, max_size=4),
    steps=st.integers(20, 40),
)


@hsettings(
    max_examples=15,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(scenario=SCENARIOS, data=st.data())
async def test_money_sequences_keep_the_books(
    base_settings, engine, redis, scenario: Scenario, data: st.DataObject
) -> None:
    async with fresh_app(base_settings, engine, redis) as (app, client):
        world = World(scenario.commission_bps, scenario.insurance_bps, scenario.payout_limit)
        run = Run(app, client, world)
        await run.setup(Principals(base_settings, engine))
        for slot, (price, mats, insured) in enumerate(scenario.posts):
            await run.post(slot, price, mats, insured)
        await drain(app)
        await run.check()
        for _ in range(scenario.steps):
            # A job, then one of the operations that apply to it as the model has it (or,
            # stray, any); four times in ten one of the others.
            stray = data.draw(STRAY, label="stray")
            slot = data.draw(SLOT, label="slot")
            if data.draw(st.integers(0, 9), label="global") >= 6:
                ops = {n: v for n, v in GLOBAL.items() if stray or run.possible(n)}
            else:
                slot %= len(world.slots)
                job = world.slots[slot]
                ops = {n: v for n, v in OPS.items() if stray or run.applies(n, job)} or OPS
            name = data.draw(st.sampled_from([n for n, (k, _) in ops.items() for _ in range(k)]))
            args = data.draw(ops[name][1], label=name)
            await run.step(name, stray, slot, list(args))
            await drain(app)
            await run.check()
