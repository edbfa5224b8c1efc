"""The payment-provider seam: where a resident's money comes from and a worker's payout goes.

A real provider (a card acquirer, WeChat Pay, Alipay) authorizes a charge and pays out; the
ledger records what it did. Without one, `LocalProvider` stands in and says so on every
transfer it causes: the money is recorded as coming from (and going back to) the provider's
external account, so the whole flow (escrow, release, refunds, payouts) works and adds up
without a provider, and nothing pretends a card was charged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from dispatch.money import rules
from dispatch.money.rules import AccountRef

LOCAL_NOTE = "local payment provider: recorded from the external account, no real charge"


@dataclass(frozen=True)
class PayoutResult:
    status: str
    """`paid` or `failed`."""
    reference: str | None = None
    failure: str | None = None


class PaymentProvider(Protocol):
    name: str

    def funding(self, currency: str) -> tuple[AccountRef, str]:
        """The account a resident's payment comes from, and the note its transfers carry."""
        ...

    async def pay_out(
        self, payout_id: int, worker_id: int, amount_cents: int, currency: str
    ) -> PayoutResult:
        """Pay a worker (idempotent by `payout_id`: asking twice pays once)."""
        ...


class LocalProvider:
    """No provider configured: charges are recorded from the external account; payouts are
    paid at once up to `payout_limit_cents` each and fail above it, as a real provider's
    per-transfer limit would (`PAYOUT_LIMIT_CENTS`)."""

    name = "local"

    def __init__(self, payout_limit_cents: int) -> None:
        self.payout_limit_cents = payout_limit_cents
        self._paid: dict[int, PayoutResult] = {}

    def funding(self, currency: str) -> tuple[AccountRef, str]:
        return rules.external(currency), LOCAL_NOTE

    async def pay_out(
        self, payout_id: int, worker_id: int, amount_cents: int, currency: str
    ) -> PayoutResult:
        if payout_id in self._paid:
            return self._paid[payout_id]
        if amount_cents > self.payout_limit_cents:
            result = PayoutResult(
                "failed",
                failure=f"above the provider's limit of {self.payout_limit_cents} per payout",
            )
        else:
            result = PayoutResult("paid", reference=f"local-{payout_id}")
        self._paid[payout_id] = result
        return result
