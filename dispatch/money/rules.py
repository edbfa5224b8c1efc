"""Money rules in plain Python: which account is which, and how an amount is split.

Accounts are named by key; the kinds that may never go below zero (`FLOORED`) are the ones that
hold someone's money for a while (a job's escrow, a worker's payable, the pools). The others are
where money comes from or goes to outside the platform's keeping: a resident's payment source
(debited as they pay in, so its balance is minus what they paid) and the payment provider's
external account, labelled as such, which the local default records instead of a real provider.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

BPS = 10_000

FLOORED = frozenset({"escrow", "payable", "revenue", "insurance_pool"})
KINDS = FLOORED | {"source", "external", "compensation"}
"""`compensation` is the platform's guarantee expense: what it pays residents for a worker's late
cancellation or no-show (its balance runs negative by what the guarantees have cost)."""


@dataclass(frozen=True)
class AccountRef:
    key: str
    kind: str
    currency: str
    user_id: int | None = None
    job_id: int | None = None

    @property
    def floor(self) -> bool:
        return self.kind in FLOORED


def escrow(job_id: int, currency: str) -> AccountRef:
    return AccountRef(f"escrow:job:{job_id}:{currency}", "escrow", currency, job_id=job_id)


def payable(worker_id: int, currency: str) -> AccountRef:
    return AccountRef(f"payable:worker:{worker_id}:{currency}", "payable", currency, worker_id)


def source(resident_id: int, currency: str) -> AccountRef:
    return AccountRef(f"source:resident:{resident_id}:{currency}", "source", currency, resident_id)


def revenue(currency: str) -> AccountRef:
    return AccountRef(f"revenue:{currency}", "revenue", currency)


def insurance_pool(currency: str) -> AccountRef:
    return AccountRef(f"insurance_pool:{currency}", "insurance_pool", currency)


def compensation(currency: str) -> AccountRef:
    return AccountRef(f"compensation:{currency}", "compensation", currency)


def external(currency: str) -> AccountRef:
    """The payment provider's side: money from outside (a card, a wallet) and payouts back out.
    Without a provider the service records transfers from and to this account itself."""
    return AccountRef(f"external:provider:{currency}", "external", currency)


def share(amount_cents: int, bps: int) -> int:
    """`bps` basis points of an amount, rounded half up to the cent: the platform's commission,
    an insurance premium, a dispute's worker share."""
    if amount_cents < 0 or not 0 <= bps <= BPS:
        raise ValueError("a share is of a non-negative amount, 0 to 10,000 basis points")
    return (amount_cents * bps + BPS // 2) // BPS


def split(amount_cents: int, commission_bps: int) -> tuple[int, int]:
    """(worker's net, platform's commission): the two always add up to the amount."""
    fee = share(amount_cents, commission_bps)
    return amount_cents - fee, fee


# --- what a job pays --------------------------------------------------------------------------


@dataclass(frozen=True)
class Deduction:
    kind: str
    """`commission` (the platform's fee on the price) or `insurance` (the premium, insured jobs)."""
    cents: int


@dataclass(frozen=True)
class Item:
    kind: str
    """`price` (the work) or `material`."""
    name: str
    quantity: int
    unit_cents: int

    @property
    def cents(self) -> int:
        return self.quantity * self.unit_cents


@dataclass(frozen=True)
class Pay:
    """A job's money in plain sight, the same for both sides: what the resident pays in total,
    item by item, and what the worker receives, every deduction named. Commission and premium
    are shares of the price only: materials are the worker's outlay and pass through whole."""

    price_cents: int
    materials_cents: int
    total_cents: int
    deductions: tuple[Deduction, ...]
    net_cents: int
    items: tuple[Item, ...] = field(default=())


def materials_items(materials: Iterable[dict[str, Any]]) -> tuple[Item, ...]:
    """Stored materials (`{name, quantity, cost_cents}`: `cost_cents` is per unit) as items."""
    return tuple(
        Item("material", str(m["name"]), int(m.get("quantity", 1)), int(m["cost_cents"]))
        for m in materials
    )


def pay(
    price_cents: int,
    materials: Iterable[dict[str, Any]],
    commission_bps: int,
    insurance_bps: int,
    insured: bool,
) -> Pay:
    items = (Item("price", "price", 1, price_cents), *materials_items(materials))
    materials_cents = sum(i.cents for i in items[1:])
    deductions = [Deduction("commission", share(price_cents, commission_bps))]
    if insured:
        deductions.append(Deduction("insurance", share(price_cents, insurance_bps)))
    total = price_cents + materials_cents
    net = total - sum(d.cents for d in deductions)
    return Pay(price_cents, materials_cents, total, tuple(deductions), net, items)


@dataclass(frozen=True)
class Settlement:
    """How a job's escrow is shared out when it is released, cancelled with a fee, or a dispute
    is resolved: to the worker (net), the platform (commission), the insurance pool (premium),
    and back to the resident. The four always add up to the escrow."""

    worker_cents: int
    commission_cents: int
    premium_cents: int
    refund_cents: int


def release(p: Pay) -> Settlement:
    """Confirmed: everything as the pay shows it."""
    by = {d.kind: d.cents for d in p.deductions}
    return Settlement(p.net_cents, by.get("commission", 0), by.get("insurance", 0), 0)


def partial(escrow_cents: int, worker_gross_cents: int, commission_bps: int) -> Settlement:
    """A cancellation fee or a dispute's worker share: the worker gets `worker_gross_cents`
    less commission, the resident the rest of the escrow back. No premium: the cover ends."""
    gross = min(max(0, worker_gross_cents), escrow_cents)
    net, fee = split(gross, commission_bps)
    return Settlement(net, fee, 0, escrow_cents - gross)
