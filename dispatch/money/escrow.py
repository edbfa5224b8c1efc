"""A job's escrow, inside the caller's transaction: held when the job is assigned, topped up by
approved change orders, and shared out once (released on confirmation, split by a cancellation
fee or a dispute's resolution, or handed back whole). Every step is a ledger transfer with an id
derived from the job, so doing a step twice moves nothing the second time.

The money path of one job (ids `job:{id}:…`):
- `fund` external → the resident's source (the payment provider's charge; the local provider
  labels it) and `hold` source → escrow, pending; a change order adds `fund:co{n}`/`hold:co{n}`;
- released: the holds are posted, then escrow → the worker's payable (`…:worker`), → revenue
  (`…:commission`), → the insurance pool (`…:premium`), → back to the resident (`…:refund`,
  then `…:refund_out` source → external);
- nothing owed to anyone: the holds are voided and `…:refund_out` returns the funding.
Compensation for a worker's late cancellation or no-show comes from the platform's
`compensation` account (`job:{id}:comp:{version}`), not from the escrow.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.models import Job
from dispatch.money import rules
from dispatch.money.ledger import Ledger, Transfer
from dispatch.money.provider import PaymentProvider

HOLD = "escrow_hold"
FUNDING = "funding"


def job_pay(job: Job) -> rules.Pay:
    """The job's pay as it stands: price and the materials agreed so far."""
    return rules.pay(
        job.price_cents, job.materials, job.commission_bps, job.insurance_bps, job.insured
    )


def posted_materials(job: Job) -> list[dict]:
    """Materials listed when the job was posted (agreed by taking it), not change orders."""
    return [m for m in job.materials if "change_id" not in m]


class Escrow:
    def __init__(self, ledger: Ledger, provider: PaymentProvider) -> None:
        self.ledger = ledger
        self.provider = provider

    async def hold(self, session: AsyncSession, job: Job) -> None:
        """The job's price and listed materials into escrow, pending (again: nothing)."""
        amount = job.price_cents + sum(
            i.cents for i in rules.materials_items(posted_materials(job))
        )
        await self._hold(session, job, amount, f"job:{job.id}")

    async def top_up(self, session: AsyncSession, job: Job, change_id: int, amount: int) -> None:
        await self._hold(session, job, amount, f"job:{job.id}", suffix=f":co{change_id}")

    async def _hold(
        self, session: AsyncSession, job: Job, amount: int, base: str, suffix: str = ""
    ) -> None:
        if amount <= 0:
            return
        funding, note = self.provider.funding(job.currency)
        source = rules.source(job.resident_id, job.currency)
        await self.ledger.transfer(
            session, f"{base}:fund{suffix}", funding, source, amount, kind=FUNDING,
            job_id=job.id, note=note,
        )  # fmt: skip
        await self.ledger.transfer(
            session, f"{base}:hold{suffix}", source, rules.escrow(job.id, job.currency), amount,
            kind=HOLD, job_id=job.id, pending=True,
        )  # fmt: skip

    async def holds(self, session: AsyncSession, job: Job) -> list[Transfer]:
        return [
            t
            for t in await self.ledger.of_job(session, job.id)
            if t.kind == HOLD and t.status != "voided"
        ]

    async def settle(
        self, session: AsyncSession, job: Job, how: rules.Settlement, tag: str
    ) -> None:
        """Share the escrow out as `how` says (its parts add up to what is held)."""
        holds = await self.holds(session, job)
        held = sum(t.amount_cents for t in holds)
        parts = how.worker_cents + how.commission_cents + how.premium_cents + how.refund_cents
        if parts != held:
            raise RuntimeError(f"job {job.id}: settling {parts} of an escrow of {held}")
        base = f"job:{job.id}:{tag}"
        if how.refund_cents == held:
            # Nobody is owed anything: the holds are dropped and the funding goes back.
            for t in holds:
                if t.status == "pending":
                    await self.ledger.void(session, t.id)
            await self._refund_out(session, job, held, f"{base}:refund_out")
            return
        for t in holds:
            if t.status == "pending":
                await self.ledger.post(session, t.id)
        escrow = rules.escrow(job.id, job.currency)
        if how.worker_cents and job.worker_id is None:
            raise RuntimeError(f"job {job.id}: paying a worker the job does not have")
        worker = rules.payable(job.worker_id or 0, job.currency)
        moves = (
            ("worker", worker, how.worker_cents, "worker_pay"),
            ("commission", rules.revenue(job.currency), how.commission_cents, "commission"),
            ("premium", rules.insurance_pool(job.currency), how.premium_cents, "premium"),
            ("refund", rules.source(job.resident_id, job.currency), how.refund_cents, "refund"),
        )
        for name, account, cents, kind in moves:
            if cents > 0:
                await self.ledger.transfer(
                    session, f"{base}:{name}", escrow, account, cents, kind=kind, job_id=job.id
                )
        await self._refund_out(session, job, how.refund_cents, f"{base}:refund_out")

    async def compensate(
        self, session: AsyncSession, job: Job, cents: int, transfer_id: str, note: str
    ) -> None:
        """The platform pays the resident `cents` (a worker's late cancellation or no-show)."""
        if cents <= 0:
            return
        source = rules.source(job.resident_id, job.currency)
        await self.ledger.transfer(
            session, transfer_id, rules.compensation(job.currency), source, cents,
            kind="compensation", job_id=job.id, note=note,
        )  # fmt: skip
        await self._refund_out(session, job, cents, f"{transfer_id}:out")

    async def _refund_out(self, session: AsyncSession, job: Job, cents: int, tid: str) -> None:
        """Money the resident's source holds goes back out through the provider."""
        if cents <= 0:
            return
        funding, note = self.provider.funding(job.currency)
        await self.ledger.transfer(
            session, tid, rules.source(job.resident_id, job.currency), funding, cents,
            kind="refund_out", job_id=job.id, note=note,
        )  # fmt: skip

    async def escrow_balances(self, session: AsyncSession, job: Job) -> dict[str, int]:
        ref = rules.escrow(job.id, job.currency)
        balance = await self.ledger.balance(session, ref)
        return {ref.key: balance.posted, f"{ref.key}:held": balance.pending_credits}
