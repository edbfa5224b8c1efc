"""The money room's wire forms: a job's pay (on offers and jobs), its ledger, earnings, payouts,
change orders, claims. msgspec structs, shared by the controllers and the offer events."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from msgspec import Meta, Struct

from dispatch.money import rules

Cents = Annotated[int, Meta(ge=1, le=100_000_000)]
Bps = Annotated[int, Meta(ge=0, le=10_000)]
ItemName = Annotated[str, Meta(min_length=1, max_length=120, pattern=r"\S")]
Text = Annotated[str, Meta(min_length=1, max_length=2000, pattern=r"\S")]


class DeductionOut(Struct):
    kind: str
    cents: int


class ItemOut(Struct):
    kind: str
    name: str
    quantity: int
    unit_cents: int
    cents: int


class PayOut(Struct):
    """What the resident pays (`total_cents`, `items`) and what the worker gets (`price_cents`,
    each deduction, `net_cents`), before anyone commits to the job."""

    price_cents: int
    materials_cents: int
    total_cents: int
    deductions: list[DeductionOut]
    net_cents: int
    items: list[ItemOut]


def pay_out(p: rules.Pay) -> PayOut:
    return PayOut(
        price_cents=p.price_cents,
        materials_cents=p.materials_cents,
        total_cents=p.total_cents,
        deductions=[DeductionOut(d.kind, d.cents) for d in p.deductions],
        net_cents=p.net_cents,
        items=[ItemOut(i.kind, i.name, i.quantity, i.unit_cents, i.cents) for i in p.items],
    )


class DisputeOut(Struct):
    status: str
    """`open` (the escrow frozen) or `resolved`."""
    reason: str
    by: str
    opened_at: datetime
    resolved_at: datetime | None = None
    worker_share_bps: int | None = None
    note: str | None = None


class EntryOut(Struct):
    transfer_id: str
    debit: str
    credit: str
    amount_cents: int
    currency: str
    kind: str
    status: str
    created_at: datetime
    note: str | None = None


class JobLedgerOut(Struct):
    job_id: int
    entries: list[EntryOut]
    balances: dict[str, int]
    """The job's escrow account: what it holds now (posted, and held by pending transfers)."""


class EarningItem(Struct):
    job_id: int
    title: str
    status: str
    money: str
    """`pending` (not released yet), `disputed`, `released`, or `none` (nothing owed)."""
    pay: PayOut
    released_cents: int
    currency: str
    released_at: datetime | None = None


class EarningsOut(Struct):
    currency: str
    payable_cents: int
    """Released and not paid out: what a payout may take now."""
    released_cents: int
    pending_cents: int
    """Expected from jobs not released yet (their net)."""
    paid_out_cents: int
    in_payout_cents: int
    items: list[EarningItem]


class PayoutIn(Struct, forbid_unknown_fields=True):
    amount_cents: Cents
    currency: Annotated[str, Meta(pattern=r"^[A-Z]{3}$")] = "CNY"


class PayoutOut(Struct):
    id: int
    amount_cents: int
    currency: str
    status: str
    created_at: datetime
    settled_at: datetime | None = None
    failure: str | None = None


class ChangeItemIn(Struct, forbid_unknown_fields=True):
    name: ItemName
    unit_cents: Cents
    quantity: Annotated[int, Meta(ge=1, le=10_000)] = 1


class ChangeOrderIn(Struct, forbid_unknown_fields=True):
    items: Annotated[list[ChangeItemIn], Meta(min_length=1, max_length=50)]


class ChangeOrderOut(Struct):
    id: int
    job_id: int
    status: str
    items: list[dict[str, Any]]
    amount_cents: int
    created_at: datetime
    answered_at: datetime | None = None


class DisputeIn(Struct, forbid_unknown_fields=True):
    reason: Text


class ResolveIn(Struct, forbid_unknown_fields=True):
    worker_share_bps: Bps
    note: Text


class ClaimIn(Struct, forbid_unknown_fields=True):
    description: Text
    amount_cents: Cents


class ClaimDecisionIn(Struct, forbid_unknown_fields=True):
    note: Annotated[str, Meta(max_length=2000)] = ""


class ClaimOut(Struct):
    id: int
    job_id: int
    status: str
    description: str
    amount_cents: int
    currency: str
    created_at: datetime
    decided_at: datetime | None = None
    note: str | None = None
