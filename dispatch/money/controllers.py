"""Money over HTTP: confirming and disputing jobs, change orders, insurance claims, a job's
ledger, a worker's earnings and payouts; operators resolve disputes and decide claims.

Every call here may be repeated: confirming a confirmed job, disputing a disputed one, resolving
a resolved one the same way, approving an approved change order or claim answer as the first
time and move nothing; the calls that create something (a change order, a claim, a payout) take
an `Idempotency-Key` and replay their first answer under it."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, HeaderParameter, JSONBody, QueryParameter

from dispatch.identity.auth import operators, residents_only, workers_only
from dispatch.infra import idempotency
from dispatch.jobs.queries import JobView
from dispatch.jobs.views import job_view_out
from dispatch.models import ChangeOrder, Claim, Payout
from dispatch.money.escrow import job_pay
from dispatch.money.schemas import (
    ChangeOrderIn,
    ChangeOrderOut,
    ClaimDecisionIn,
    ClaimIn,
    ClaimOut,
    DisputeIn,
    EarningItem,
    EarningsOut,
    EntryOut,
    JobLedgerOut,
    PayoutIn,
    PayoutOut,
    ResolveIn,
    pay_out,
)
from dispatch.money.service import Keyed, MoneyService
from dispatch.web.deps import principal_of
from dispatch.web.schemas import JobOut

IdempotencyKey = Annotated[str | None, HeaderParameter(name="Idempotency-Key", required=False)]


def _keyed(request: Request[Any, Any, Any], key: str | None, body: bytes) -> Keyed | None:
    if key is None:
        return None
    return Keyed(
        idempotency.check_key(key),
        idempotency.fingerprint(request.method, request.url.path, body),
    )


def change_out(c: ChangeOrder) -> ChangeOrderOut:
    return ChangeOrderOut(
        id=c.id, job_id=c.job_id, status=c.status, items=list(c.items),
        amount_cents=c.amount_cents, created_at=c.created_at, answered_at=c.answered_at,
    )  # fmt: skip


def claim_out(c: Claim) -> ClaimOut:
    return ClaimOut(
        id=c.id, job_id=c.job_id, status=c.status, description=c.description,
        amount_cents=c.amount_cents, currency=c.currency, created_at=c.created_at,
        decided_at=c.decided_at, note=c.note,
    )  # fmt: skip


def payout_out(p: Payout) -> PayoutOut:
    return PayoutOut(
        id=p.id, amount_cents=p.amount_cents, currency=p.currency, status=p.status,
        created_at=p.created_at, settled_at=p.settled_at, failure=p.failure,
    )  # fmt: skip


def _json(status: int, body: bytes) -> Response[Any]:
    return Response(content=body, status_code=status, media_type="application/json")


def _out(view: JobView) -> JobOut:
    return job_view_out(view)


@post("/v1/jobs/{job_id:int}/confirm", guards=[residents_only], status_code=200, tags=["money"])
async def confirm(
    job_id: FromPath[int], request: Request[Any, Any, Any], money: NamedDependency[MoneyService]
) -> JobOut:
    """The resident confirms the work: `confirmed`, the escrow released (the worker's net to
    their payable, the commission to the platform, an insured job's premium to the pool).
    Unconfirmed and undisputed, a completed job is released by itself after `auto_confirm_h`."""
    return _out(await money.confirm(principal_of(request), job_id))


@post("/v1/jobs/{job_id:int}/dispute", status_code=200, tags=["money"])
async def dispute(
    job_id: FromPath[int], data: JSONBody[DisputeIn], request: Request[Any, Any, Any],
    money: NamedDependency[MoneyService],
) -> JobOut:  # fmt: skip
    """A participant raises a problem before release: `disputed`, the escrow frozen, operators
    alerted (409 `not_disputable` once released or before the work has started)."""
    return _out(await money.dispute(principal_of(request), job_id, data.reason))


@post("/v1/ops/jobs/{job_id:int}/resolve", guards=[operators], status_code=200, tags=["ops"])
async def resolve(
    job_id: FromPath[int], data: JSONBody[ResolveIn], request: Request[Any, Any, Any],
    money: NamedDependency[MoneyService],
) -> JobOut:  # fmt: skip
    """Settle a dispute: `worker_share_bps` of the escrow to the worker (less commission), the
    rest back to the resident; the job becomes `confirmed` (or `cancelled` at 0)."""
    who = principal_of(request)
    return _out(await money.resolve(who, job_id, data.worker_share_bps, data.note))


@post("/v1/jobs/{job_id:int}/materials", guards=[workers_only], status_code=201, tags=["money"])
async def propose_materials(
    job_id: FromPath[int], data: JSONBody[ChangeOrderIn], request: Request[Any, Any, Any],
    money: NamedDependency[MoneyService], idempotency_key: IdempotencyKey = None,
) -> Response[ChangeOrderOut]:  # fmt: skip
    """The assigned worker proposes materials (a change order, `pending`); only approved ones
    count toward the total and top up the escrow."""
    keyed = _keyed(request, idempotency_key, await request.body())
    items = msgspec.to_builtins(data.items)
    status, body = await money.propose_materials(
        principal_of(request), job_id, items, keyed, lambda c: msgspec.json.encode(change_out(c))
    )
    return _json(status, body)


@get("/v1/jobs/{job_id:int}/materials", tags=["money"])
async def change_orders(
    job_id: FromPath[int], request: Request[Any, Any, Any], money: NamedDependency[MoneyService]
) -> list[ChangeOrderOut]:
    return [change_out(c) for c in await money.change_orders(principal_of(request), job_id)]


@post(
    "/v1/jobs/{job_id:int}/materials/{change_id:int}/approve", guards=[residents_only],
    status_code=200, tags=["money"],
)  # fmt: skip
async def approve_materials(
    job_id: FromPath[int], change_id: FromPath[int], request: Request[Any, Any, Any],
    money: NamedDependency[MoneyService],
) -> ChangeOrderOut:  # fmt: skip
    """Approve: the items join the job and the escrow is topped up by their amount."""
    return change_out(await money.answer_materials(principal_of(request), job_id, change_id, True))


@post(
    "/v1/jobs/{job_id:int}/materials/{change_id:int}/decline", guards=[residents_only],
    status_code=200, tags=["money"],
)  # fmt: skip
async def decline_materials(
    job_id: FromPath[int], change_id: FromPath[int], request: Request[Any, Any, Any],
    money: NamedDependency[MoneyService],
) -> ChangeOrderOut:  # fmt: skip
    return change_out(await money.answer_materials(principal_of(request), job_id, change_id, False))


@post("/v1/jobs/{job_id:int}/claims", guards=[residents_only], status_code=201, tags=["money"])
async def claim(
    job_id: FromPath[int], data: JSONBody[ClaimIn], request: Request[Any, Any, Any],
    money: NamedDependency[MoneyService], idempotency_key: IdempotencyKey = None,
) -> Response[ClaimOut]:  # fmt: skip
    """An insurance claim on an insured job, within `claim_window_d` (14) days of completion;
    operators approve (paid from the insurance pool) or reject."""
    keyed = _keyed(request, idempotency_key, await request.body())
    status, body = await money.claim(
        principal_of(request), job_id, data.description, data.amount_cents, keyed,
        lambda c: msgspec.json.encode(claim_out(c)),
    )  # fmt: skip
    return _json(status, body)


@get("/v1/jobs/{job_id:int}/claims", tags=["money"])
async def claims_of(
    job_id: FromPath[int], request: Request[Any, Any, Any], money: NamedDependency[MoneyService]
) -> list[ClaimOut]:
    return [claim_out(c) for c in await money.claims_of(principal_of(request), job_id)]


@post("/v1/ops/claims/{claim_id:int}/approve", guards=[operators], status_code=200, tags=["ops"])
async def approve_claim(
    claim_id: FromPath[int], data: JSONBody[ClaimDecisionIn], request: Request[Any, Any, Any],
    money: NamedDependency[MoneyService],
) -> ClaimOut:  # fmt: skip
    """Pay the claim from the insurance pool to the resident (422 `insurance_pool_short`)."""
    return claim_out(await money.decide_claim(principal_of(request), claim_id, True, data.note))


@post("/v1/ops/claims/{claim_id:int}/reject", guards=[operators], status_code=200, tags=["ops"])
async def reject_claim(
    claim_id: FromPath[int], data: JSONBody[ClaimDecisionIn], request: Request[Any, Any, Any],
    money: NamedDependency[MoneyService],
) -> ClaimOut:  # fmt: skip
    return claim_out(await money.decide_claim(principal_of(request), claim_id, False, data.note))


@get("/v1/jobs/{job_id:int}/ledger", tags=["money"])
async def job_ledger(
    job_id: FromPath[int], request: Request[Any, Any, Any], money: NamedDependency[MoneyService]
) -> JobLedgerOut:
    """Every transfer of the job's money, in order, and what its escrow holds now."""
    job, entries, balances = await money.job_ledger(principal_of(request), job_id)
    return JobLedgerOut(
        job_id=job.id,
        entries=[
            EntryOut(
                transfer_id=t.id,
                debit=t.debit,
                credit=t.credit,
                amount_cents=t.amount_cents,
                currency=t.currency,
                kind=t.kind,
                status=t.status,
                created_at=t.created_at,
                note=t.note,
            )
            for t in entries
        ],
        balances=balances,
    )


@get("/v1/workers/me/earnings", guards=[workers_only], tags=["money"])
async def earnings(
    request: Request[Any, Any, Any],
    money: NamedDependency[MoneyService],
    currency: Annotated[str, QueryParameter(pattern=r"^[A-Z]{3}$")] = "CNY",
) -> EarningsOut:
    """Released (and not paid out: `payable_cents`), pending, paid out; each job itemized with
    its price, deductions and net."""
    e = await money.earnings(principal_of(request), currency)
    return EarningsOut(
        currency=e.currency,
        payable_cents=e.payable,
        released_cents=e.released,
        pending_cents=e.pending,
        paid_out_cents=e.paid_out,
        in_payout_cents=e.in_payout,
        items=[
            EarningItem(
                job_id=i["job"].id,
                title=i["job"].title,
                status=i["status"],
                money=i["money"],
                pay=pay_out(job_pay(i["job"])),
                released_cents=i["released_cents"],
                currency=i["job"].currency,
                released_at=i["released_at"],
            )
            for i in e.items
        ],
    )


@post("/v1/workers/me/payouts", guards=[workers_only], status_code=201, tags=["money"])
async def request_payout(
    data: JSONBody[PayoutIn], request: Request[Any, Any, Any], money: NamedDependency[MoneyService],
    idempotency_key: IdempotencyKey = None,
) -> Response[PayoutOut]:  # fmt: skip
    """Withdraw released earnings (422 `insufficient_funds` above them): `pending`, then `paid`
    by the payment provider, or `failed` with the money back in the balance."""
    keyed = _keyed(request, idempotency_key, await request.body())
    status, body = await money.request_payout(
        principal_of(request), data.amount_cents, data.currency, keyed,
        lambda p: msgspec.json.encode(payout_out(p)),
    )  # fmt: skip
    return _json(status, body)


@get("/v1/workers/me/payouts", guards=[workers_only], tags=["money"])
async def payouts(
    request: Request[Any, Any, Any],
    money: NamedDependency[MoneyService],
    limit: Annotated[int, QueryParameter(ge=1, le=200)] = 50,
) -> list[PayoutOut]:
    return [payout_out(p) for p in await money.payouts(principal_of(request), limit)]


ROUTES = [
    confirm, dispute, resolve, propose_materials, change_orders, approve_materials,
    decline_materials, claim, claims_of, approve_claim, reject_claim, job_ledger, earnings,
    request_payout, payouts,
]  # fmt: skip
