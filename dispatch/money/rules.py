"""Money rules in plain Python: which account is which, and how an amount is split.

Accounts are named by key; the kinds that may never go below zero (`FLOORED`) are the ones that
hold someone's money for a while (a job's escrow, a worker's payable, the pools). The others are
where money comes from or goes to outside the platform's keeping: a resident's payment source
(debited as they pay in, so its balance is minus what they paid) and the payment provider's
external account, labelled as such, which the local default records instead of a real provider.
"""

from __future__ import annotations

from dataclasses import dataclass

BPS = 10_000

FLOORED = frozenset({"escrow", "payable", "revenue", "insurance_pool", "compensation"})
KINDS = FLOORED | {"source", "external"}


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
