"""Money around jobs: escrow on assignment, confirmation and auto-confirmation, disputes and
their resolution, change orders, insurance claims, earnings and payouts. Each public call is
one transaction; every movement goes through the ledger's one writer (via `Escrow` for a job's
own money), and every call may be repeated: a replay finds the step done and moves nothing.

Timers (durable rows, `dispatch.infra.timers`): `escrow_hold` right after an assignment (the hold
is placed beside the claim, not inside it: the accept path stays as fast as it was), and again
by any later step that needs it; `auto_confirm` at completion + `auto_confirm_h`; `payout`
right after a withdrawal is asked for (the provider is called outside the asking request).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dispatch.communities.service import CommunityService
from dispatch.core import texts
from dispatch.core.errors import Conflict, Forbidden, NotFound, Unprocessable
from dispatch.grab.rules import check_transition
from dispatch.identity.principal import Principal
from dispatch.infra import idempotency, outbox, timers
from dispatch.infra.clock import Clock
from dispatch.jobs.queries import JobView, job_view
from dispatch.models import ChangeOrder, Claim, Job, Payout, Timer
from dispatch.models.base import get_row, is_db_id
from dispatch.money import rules
from dispatch.money.escrow import Escrow, job_pay
from dispatch.money.ledger import Ledger
from dispatch.money.provider import PaymentProvider
from dispatch.ops import events as ops_events
from dispatch.ops.alerts import raise_alert
from dispatch.trust.screening import screen

ESCROW = "escrow_hold"
AUTO_CONFIRM = "auto_confirm"
PAYOUT = "payout"
SETTLED = ("confirmed", "cancelled")
DISPUTABLE = ("in_progress", "completed")


class Assignments(Protocol):
    """Ending a job's assignment with everything that goes with it (the dispatcher's)."""

    async def end_assignment(
        self, session: AsyncSession, job: Job, reason: str, now: datetime
    ) -> None: ...


@dataclass(frozen=True)
class Keyed:
    """A creating call's Idempotency-Key and the request's fingerprint."""

    key: str
    fingerprint: bytes


Render = Callable[[Any], bytes]


async def _once(
    session: AsyncSession, who: Principal, keyed: Keyed | None,
    produce: Callable[[], Awaitable[tuple[int, bytes]]],
) -> tuple[int, bytes]:  # fmt: skip
    """Produce the answer, stored under the key when one was given (a retry replays it)."""
    if keyed is None:
        return await produce()
    return await idempotency.run_once(session, who.user_id, keyed.key, keyed.fingerprint, produce)


@dataclass(frozen=True)
class Earnings:
    currency: str
    payable: int
    released: int
    pending: int
    paid_out: int
    in_payout: int
    items: list[dict[str, Any]]


_EARNED = text(
    """
    SELECT j.id, j.title, j.status, j.currency,
           coalesce(sum(t.amount_cents) FILTER (WHERE t.status = 'posted'), 0),
           max(t.created_at)
    FROM jobs j
    LEFT JOIN ledger_transfers t ON t.job_id = j.id AND t.kind = 'worker_pay'
         AND t.credit_account_id IN (
             SELECT id FROM ledger_accounts WHERE kind = 'payable' AND user_id = :w)
    WHERE j.worker_id = :w
    GROUP BY j.id ORDER BY j.created_at DESC, j.id DESC LIMIT :limit
    """
)
_PAYOUT_SUMS = text(
    "SELECT coalesce(sum(amount_cents) FILTER (WHERE status = 'paid'), 0), "
    "coalesce(sum(amount_cents) FILTER (WHERE status = 'pending'), 0) "
    "FROM payouts WHERE worker_id = :w AND currency = :c"
)
_RELEASED = text(
    "SELECT coalesce(sum(t.amount_cents), 0) FROM ledger_transfers t "
    "JOIN ledger_accounts a ON a.id = t.credit_account_id "
    "WHERE a.key = :key AND t.status = 'posted' AND t.kind = 'worker_pay'"
)


class MoneyService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        communities: CommunityService,
        ledger: Ledger,
        provider: PaymentProvider,
        clock: Clock | None = None,
    ) -> None:
        self.sessions = sessions
        self.communities = communities
        self.ledger = ledger
        self.provider = provider
        self.escrow = Escrow(ledger, provider)
        self.clock = clock or Clock()
        self.assignments: Assignments | None = None
        """Set when the dispatcher is wired in: a dispute resolved mid-work ends the work."""

    def now(self) -> datetime:
        return self.clock.now()

    # --- the dispatcher's calls (in its transactions) ----------------------------------------

    async def assigned(
        self, session: AsyncSession, job: Job, worker_id: int, now: datetime
    ) -> None:
        """A worker took the job: its escrow is held right after this commits (one per job)."""
        await timers.arm(session, kind=ESCROW, ref_id=job.id, due=now, key=f"{ESCROW}:{job.id}")

    async def resident_cancelled(
        self, session: AsyncSession, job: Job, holder: int | None, now: datetime
    ) -> None:
        """The resident cancelled (the fee already on the job): the worker's share of the fee
        and the commission on it, the rest back to the resident; no fee, all of it back."""
        await timers.disarm(session, kind=AUTO_CONFIRM, ref_id=job.id, now=now)
        if job.assignment_version == 0:
            return  # never assigned: nothing was held
        await self.escrow.hold(session, job)
        held = sum(t.amount_cents for t in await self.escrow.holds(session, job))
        # Nobody held it when it was cancelled (handed back meanwhile): nobody is paid for it.
        fee = (job.cancellation_fee_cents or 0) if holder is not None else 0
        worker = job.worker_id
        how = rules.partial(held, fee, job.commission_bps)
        await self.escrow.settle(session, job, how, "cancel")
        if fee and worker is not None:
            await outbox.tell(
                session, to_user_id=worker, kind="cancellation_fee",
                body=texts.every(
                    "money.cancellation_fee", share=texts.Money(how.worker_cents, job.currency),
                    fee=texts.Money(fee, job.currency),
                ),
                payload={"job_id": job.id, "net_cents": how.worker_cents},
                dedupe_key=f"cancellation_fee:{job.id}", now=now,
            )  # fmt: skip

    async def handed_back(
        self, session: AsyncSession, job: Job, worker_id: int, reason: str, owed: int,
        now: datetime,
    ) -> None:  # fmt: skip
        """The worker left the job (`worker_cancelled` late, or `no_show`): the platform
        compensates the resident what the worker's lateness owes them. The escrow stays: the
        job goes out again."""
        if reason == "no_show":
            params = (await self.communities.get(session, job.community_id)).dispatch
            owed = rules.share(job.price_cents, params.late_cancel_fee_bps)
            job.compensation_cents = (job.compensation_cents or 0) + owed
        if owed <= 0:
            return
        await self.escrow.compensate(
            session, job, owed, f"job:{job.id}:comp:{job.assignment_version}",
            note=f"{reason.replace('_', ' ')} by worker {worker_id}",
        )  # fmt: skip
        await outbox.tell(
            session, to_user_id=job.resident_id, kind="compensation",
            body=texts.every(
                "money.compensation_no_show" if reason == "no_show" else "money.compensation_late",
                amount=texts.Money(owed, job.currency),
            ),
            payload={"job_id": job.id, "compensation_cents": owed},
            dedupe_key=f"compensation:{job.id}:{job.assignment_version}", now=now,
        )  # fmt: skip

    async def completed(self, session: AsyncSession, job: Job, now: datetime) -> None:
        """The worker marked the job done: released by itself after `auto_confirm_h` unless the
        resident confirms or disputes first."""
        params = (await self.communities.get(session, job.community_id)).dispatch
        await self.escrow.hold(session, job)
        await timers.arm(
            session, kind=AUTO_CONFIRM, ref_id=job.id,
            due=now + timedelta(hours=params.auto_confirm_h), key=f"{AUTO_CONFIRM}:{job.id}",
        )  # fmt: skip
        pay = job_pay(job)
        await outbox.tell(
            session, to_user_id=job.resident_id, kind="job_completed",
            body=texts.every(
                "money.completed", title=job.title, hours=params.auto_confirm_h,
                total=texts.Money(pay.total_cents, job.currency),
            ),
            payload={"job_id": job.id, "total_cents": pay.total_cents},
            dedupe_key=f"job_completed:{job.id}", now=now,
        )  # fmt: skip

    # --- timers ---------------------------------------------------------------------------

    async def fire_escrow(self, session: AsyncSession, timer: Timer, now: datetime) -> None:
        job = await timers.lock_row(session, Job, timer.ref_id)
        if job is not None and job.status not in SETTLED:
            await self.escrow.hold(session, job)

    async def fire_auto_confirm(self, session: AsyncSession, timer: Timer, now: datetime) -> None:
        job = await timers.lock_row(session, Job, timer.ref_id)
        if job is not None and job.status == "completed":
            await self._release(session, job, now, by="auto")

    async def fire_payout(self, session: AsyncSession, timer: Timer, now: datetime) -> None:
        payout = await timers.lock_row(session, Payout, timer.ref_id)
        if payout is None or payout.status != "pending":
            return
        payout.attempts += 1
        result = await self.provider.pay_out(
            payout.id, payout.worker_id, payout.amount_cents, payout.currency
        )
        payout.settled_at, payout.provider_ref = now, result.reference
        if result.status == "paid":
            await self.ledger.post(session, payout.transfer_id)
            payout.status = "paid"
            body = texts.every(
                "money.payout_paid", amount=texts.Money(payout.amount_cents, payout.currency)
            )
        else:
            await self.ledger.void(session, payout.transfer_id)
            payout.status, payout.failure = "failed", result.failure
            body = texts.every(
                "money.payout_failed",
                amount=texts.Money(payout.amount_cents, payout.currency),
                reason=result.failure,
            )
        await outbox.tell(
            session, to_user_id=payout.worker_id, kind=f"payout_{payout.status}", body=body,
            payload={"payout_id": payout.id, "status": payout.status},
            dedupe_key=f"payout:{payout.id}", now=now,
        )  # fmt: skip

    # --- residents confirm ---------------------------------------------------------------

    async def confirm(self, who: Principal, job_id: int) -> JobView:
        """The resident confirms a completed job: its escrow is released (a confirmed job again:
        the same answer, nothing moves)."""
        async with self.sessions.begin() as session:
            job = await get_row(session, Job, job_id, lock=True)
            if job.resident_id != who.user_id:
                raise Forbidden("only the job's resident confirms it", code="not_yours")
            if job.status != "confirmed":
                check_transition(job.status, "confirmed")
                if job.status != "completed":
                    raise Conflict("a disputed job is settled by an operator", code="disputed")
                await self._release(session, job, self.now(), by="resident")
            return await job_view(session, job, who.user_id)

    async def _release(self, session: AsyncSession, job: Job, now: datetime, by: str) -> None:
        await session.execute(
            update(ChangeOrder)
            .where(ChangeOrder.job_id == job.id, ChangeOrder.status == "pending")
            .values(status="declined", answered_at=now)
        )
        await self.escrow.hold(session, job)
        pay = job_pay(job)
        await self.escrow.settle(session, job, rules.release(pay), "release")
        job.status, job.confirmed_at, job.version = "confirmed", now, job.version + 1
        await timers.disarm(session, kind=AUTO_CONFIRM, ref_id=job.id, now=now)
        ops_events.job_changed(session, job)
        if job.worker_id is not None:
            await outbox.tell(
                session, to_user_id=job.worker_id, kind="payment_released",
                body=texts.every(
                    "money.released_by_resident" if by == "resident" else "money.released_auto",
                    title=job.title, amount=texts.Money(pay.net_cents, job.currency),
                ),
                payload={"job_id": job.id, "net_cents": pay.net_cents},
                dedupe_key=f"payment_released:{job.id}", now=now,
            )  # fmt: skip

    # --- disputes ----------------------------------------------------------------------------

    async def dispute(self, who: Principal, job_id: int, reason: str) -> JobView:
        """A participant stops the release: the escrow stays held and operators are alerted."""
        async with self.sessions.begin() as session:
            job = await get_row(session, Job, job_id, lock=True)
            side = _side(job, who)
            if job.status == "disputed":
                return await job_view(session, job, who.user_id)
            if job.status not in DISPUTABLE:
                raise Conflict(
                    f"a job that is {job.status} cannot be disputed (before release only)",
                    code="not_disputable",
                )
            now = self.now()
            region = (await self.communities.get(session, job.community_id)).phone_region
            job.dispute = {
                "reason": screen(reason, region).text, "by": side,
                "opened_at": now.isoformat(), "status": "open",
            }  # fmt: skip
            job.status, job.version = "disputed", job.version + 1
            await self.escrow.hold(session, job)
            await timers.disarm(session, kind=AUTO_CONFIRM, ref_id=job.id, now=now)
            ops_events.job_changed(session, job)
            await raise_alert(
                session, community_id=job.community_id, kind="dispute", job_id=job.id,
                worker_id=job.worker_id, detail={"by": side}, now=now, severity="high",
            )  # fmt: skip
            other = job.worker_id if side == "resident" else job.resident_id
            if other is not None:
                await outbox.tell(
                    session, to_user_id=other, kind="dispute_opened",
                    body=texts.every("money.dispute_opened", title=job.title),
                    payload={"job_id": job.id}, dedupe_key=f"dispute:{job.id}", now=now,
                )  # fmt: skip
            return await job_view(session, job, who.user_id)

    async def resolve(
        self, who: Principal, job_id: int, worker_share_bps: int, note: str
    ) -> JobView:
        """An operator splits a disputed job's escrow: `worker_share_bps` of it to the worker
        (less commission), the rest back to the resident."""
        async with self.sessions.begin() as session:
            job = await get_row(session, Job, job_id, lock=True)
            if not who.can_operate(job.community_id):
                raise Forbidden("not an operator of this job's community", code="not_yours")
            if job.dispute and job.dispute.get("status") == "resolved":
                if job.dispute.get("worker_share_bps") != worker_share_bps:
                    raise Conflict("this dispute is resolved already", code="already_resolved")
                return await job_view(session, job, who.user_id)
            if job.status != "disputed":
                raise Conflict("the job is not disputed", code="not_disputed")
            now = self.now()
            await self.escrow.hold(session, job)
            held = sum(t.amount_cents for t in await self.escrow.holds(session, job))
            how = rules.partial(held, rules.share(held, worker_share_bps), job.commission_bps)
            await self.escrow.settle(session, job, how, "resolve")
            region = (await self.communities.get(session, job.community_id)).phone_region
            job.dispute = {
                **(job.dispute or {}), "status": "resolved", "resolved_at": now.isoformat(),
                "worker_share_bps": worker_share_bps, "note": screen(note, region).text,
                "resolved_by": who.user_id,
            }  # fmt: skip
            target = "confirmed" if worker_share_bps > 0 else "cancelled"
            if target == "cancelled":
                job.cancelled_at, job.cancelled_by = now, "operator"
                job.cancel_reason = "dispute resolved: refunded"
            else:
                job.confirmed_at = now
            job.status, job.version = target, job.version + 1
            if self.assignments is not None:
                await self.assignments.end_assignment(session, job, "dispute_resolved", now)
            ops_events.job_changed(session, job)
            for user in {job.resident_id, job.worker_id} - {None}:
                assert user is not None
                await outbox.tell(
                    session, to_user_id=user, kind="dispute_resolved",
                    body=texts.every(
                        "money.dispute_resolved", title=job.title,
                        share=texts.Money(how.worker_cents, job.currency),
                        refund=texts.Money(how.refund_cents, job.currency),
                    ),
                    payload={"job_id": job.id, "worker_share_bps": worker_share_bps},
                    dedupe_key=f"dispute_resolved:{job.id}:{user}", now=now,
                )  # fmt: skip
            return await job_view(session, job, who.user_id)

    # --- change orders -------------------------------------------------------------------

    async def propose_materials(
        self, who: Principal, job_id: int, items: list[dict[str, Any]], keyed: Keyed | None,
        render: Render,
    ) -> tuple[int, bytes]:  # fmt: skip
        """The assigned worker asks for materials during the work: a change order `pending`
        until the resident answers."""
        async with self.sessions.begin() as session:
            job = await get_row(session, Job, job_id, lock=True)
            if job.worker_id != who.user_id:
                raise Forbidden(
                    "only the job's assigned worker proposes materials", code="not_assigned"
                )
            if job.status not in ("assigned", "in_progress"):
                raise Conflict(
                    f"materials are agreed before the job is done (it is {job.status})",
                    code="not_in_progress",
                )

            async def produce() -> tuple[int, bytes]:
                order = await self.add_materials(session, job, who.user_id, items, self.now())
                await session.refresh(order)
                return 201, render(order)

            return await _once(session, who, keyed, produce)

    async def add_materials(
        self, session: AsyncSession, job: Job, worker_id: int, items: list[dict[str, Any]],
        now: datetime,
    ) -> ChangeOrder:  # fmt: skip
        """A change order for `items` (`unit_cents`, or `cost_cents` per unit as materials are
        posted), screened, and the resident told."""
        region = (await self.communities.get(session, job.community_id)).phone_region
        clean = [
            {"name": screen(i["name"], region).text, "quantity": int(i.get("quantity", 1)),
             "unit_cents": int(i["unit_cents"] if "unit_cents" in i else i["cost_cents"])}
            for i in items
        ]  # fmt: skip
        amount = sum(i["quantity"] * i["unit_cents"] for i in clean)
        if not 0 < amount <= 100_000_000:
            raise Unprocessable(
                "a change order adds between 0.01 and 1,000,000.00", code="invalid_amount"
            )
        order = ChangeOrder(
            job_id=job.id, worker_id=worker_id, items=clean, amount_cents=amount,
            status="pending",
        )  # fmt: skip
        session.add(order)
        await session.flush()
        await outbox.tell(
            session, to_user_id=job.resident_id, kind="change_order",
            body=texts.every(
                "money.change_order", title=job.title, amount=texts.Money(amount, job.currency)
            ),
            payload={"job_id": job.id, "change_id": order.id, "amount_cents": amount},
            dedupe_key=f"change_order:{order.id}", now=now,
        )  # fmt: skip
        return order

    async def answer_materials(
        self, who: Principal, job_id: int, change_id: int, approve: bool
    ) -> ChangeOrder:
        """The resident approves (the escrow is topped up, the items join the job) or declines;
        the same answer again changes nothing, the other answer is 409."""
        async with self.sessions.begin() as session:
            job = await get_row(session, Job, job_id, lock=True)
            if job.resident_id != who.user_id:
                raise Forbidden("only the job's resident answers a change order", code="not_yours")
            order = (
                await session.get(ChangeOrder, change_id, with_for_update=True)
                if is_db_id(change_id)
                else None
            )
            if order is None or order.job_id != job.id:
                raise NotFound(f"no change order {change_id} on this job", code="change_not_found")
            wanted = "approved" if approve else "declined"
            if order.status == wanted:
                return order
            if order.status != "pending":
                raise Conflict(f"the change order is {order.status}", code="change_answered")
            if approve and job.status not in ("assigned", "in_progress", "completed"):
                raise Conflict(f"the job is {job.status}", code="not_in_progress")
            now = self.now()
            order.status, order.answered_at = wanted, now
            if approve:
                job.materials = [
                    *job.materials,
                    *({"name": i["name"], "quantity": i["quantity"], "cost_cents": i["unit_cents"],
                       "change_id": order.id} for i in order.items),
                ]  # fmt: skip
                job.version += 1
                await self.escrow.top_up(session, job, order.id, order.amount_cents)
            await outbox.tell(
                session, to_user_id=order.worker_id, kind=f"change_order_{wanted}",
                body=texts.every(
                    f"money.change_order_{wanted}", title=job.title,
                    amount=texts.Money(order.amount_cents, job.currency),
                ),
                payload={"job_id": job.id, "change_id": order.id, "status": wanted},
                dedupe_key=f"change_order_answer:{order.id}", now=now,
            )  # fmt: skip
            return order

    async def change_orders(self, who: Principal, job_id: int) -> list[ChangeOrder]:
        async with self.sessions() as session:
            job = await get_row(session, Job, job_id)
            _side(job, who, operators=True)
            rows = await session.scalars(
                select(ChangeOrder).where(ChangeOrder.job_id == job.id).order_by(ChangeOrder.id)
            )
            return list(rows.all())

    # --- insurance claims ---------------------------------------------------------------

    async def claim(
        self, who: Principal, job_id: int, description: str, amount: int, keyed: Keyed | None,
        render: Render,
    ) -> tuple[int, bytes]:  # fmt: skip
        async with self.sessions.begin() as session:
            return await _once(
                session, who, keyed,
                lambda: self._claim(session, who, job_id, description, amount, render),
            )  # fmt: skip

    async def _claim(
        self, session: AsyncSession, who: Principal, job_id: int, description: str, amount: int,
        render: Render,
    ) -> tuple[int, bytes]:  # fmt: skip
        job = await get_row(session, Job, job_id, lock=True)
        if job.resident_id != who.user_id:
            raise Forbidden("only the job's resident claims on it", code="not_yours")
        if not job.insured:
            raise Unprocessable("the job was not insured", code="not_insured")
        view = await self.communities.get(session, job.community_id)
        now = self.now()
        if job.completed_at is None or job.status not in ("completed", "confirmed", "disputed"):
            raise Conflict("claims come after the work is done", code="not_completed")
        if now - job.completed_at > timedelta(days=view.dispatch.claim_window_d):
            raise Conflict(
                f"claims are taken within {view.dispatch.claim_window_d} days of completion",
                code="claim_window_closed",
            )
        claim = Claim(
            job_id=job.id, community_id=job.community_id, resident_id=who.user_id,
            description=screen(description, view.phone_region).text, amount_cents=amount,
            currency=job.currency, status="pending",
        )  # fmt: skip
        session.add(claim)
        await session.flush()
        await raise_alert(
            session, community_id=job.community_id, kind="insurance_claim", job_id=job.id,
            detail={"claim_id": claim.id, "amount_cents": amount}, now=now,
        )  # fmt: skip
        await session.refresh(claim)
        return 201, render(claim)

    async def decide_claim(self, who: Principal, claim_id: int, approve: bool, note: str) -> Claim:
        """An operator approves (paid from the insurance pool to the resident) or rejects."""
        async with self.sessions.begin() as session:
            claim = await get_row(session, Claim, claim_id, lock=True)
            if not who.can_operate(claim.community_id):
                raise Forbidden("not an operator of this claim's community", code="not_yours")
            wanted = "approved" if approve else "rejected"
            if claim.status == wanted:
                return claim
            if claim.status != "pending":
                raise Conflict(f"the claim is {claim.status}", code="claim_decided")
            job = await get_row(session, Job, claim.job_id)
            now = self.now()
            if approve:
                pool = rules.insurance_pool(claim.currency)
                source = rules.source(claim.resident_id, claim.currency)
                available = (await self.ledger.balance(session, pool)).available
                if available < claim.amount_cents:
                    raise Unprocessable(
                        f"the insurance pool holds {available}, not {claim.amount_cents}",
                        code="insurance_pool_short",
                    )
                await self.ledger.transfer(
                    session, f"claim:{claim.id}", pool, source, claim.amount_cents,
                    kind="claim", job_id=job.id, note=f"claim {claim.id}",
                )  # fmt: skip
                funding, fnote = self.provider.funding(claim.currency)
                await self.ledger.transfer(
                    session, f"claim:{claim.id}:out", source, funding, claim.amount_cents,
                    kind="refund_out", job_id=job.id, note=fnote,
                )  # fmt: skip
            claim.status, claim.decided_at, claim.decided_by = wanted, now, who.user_id
            claim.note = note or None
            await outbox.tell(
                session, to_user_id=claim.resident_id, kind=f"claim_{wanted}",
                body=texts.every(
                    f"money.claim_{wanted}", title=job.title,
                    amount=texts.Money(claim.amount_cents, claim.currency),
                ),
                payload={"claim_id": claim.id, "status": wanted},
                dedupe_key=f"claim:{claim.id}", now=now,
            )  # fmt: skip
            return claim

    async def claims_of(self, who: Principal, job_id: int) -> list[Claim]:
        async with self.sessions() as session:
            job = await get_row(session, Job, job_id)
            _side(job, who, operators=True)
            rows = await session.scalars(
                select(Claim).where(Claim.job_id == job.id).order_by(Claim.id)
            )
            return list(rows.all())

    # --- reading money ------------------------------------------------------------------

    async def job_ledger(self, who: Principal, job_id: int) -> tuple[Job, list, dict[str, int]]:
        async with self.sessions() as session:
            job = await get_row(session, Job, job_id)
            _side(job, who, operators=True)
            entries = await self.ledger.of_job(session, job.id)
            return job, entries, await self.escrow.escrow_balances(session, job)

    async def earnings(self, who: Principal, currency: str = "CNY", limit: int = 100) -> Earnings:
        async with self.sessions() as session:
            account = rules.payable(who.user_id, currency)
            balance = await self.ledger.balance(session, account)
            released = int(await session.scalar(_RELEASED, {"key": account.key}) or 0)
            paid, in_payout = (
                await session.execute(_PAYOUT_SUMS, {"w": who.user_id, "c": currency})
            ).one()
            rows = (await session.execute(_EARNED, {"w": who.user_id, "limit": limit})).all()
            jobs = {
                j.id: j
                for j in (
                    await session.scalars(select(Job).where(Job.id.in_([r[0] for r in rows])))
                ).all()
            }
            items, pending = [], 0
            for job_id, _title, status, cur, got, at in rows:
                job = jobs[job_id]
                pay = job_pay(job)
                if status in ("assigned", "in_progress", "completed"):
                    money, pending = "pending", pending + (pay.net_cents if cur == currency else 0)
                elif status == "disputed":
                    money = "disputed"
                elif got:
                    money = "released"
                else:
                    money = "none"
                items.append(
                    {"job": job, "status": status, "money": money, "pay": pay,
                     "released_cents": int(got), "released_at": at if got else None}
                )  # fmt: skip
            return Earnings(
                currency, balance.available, released, pending, int(paid), int(in_payout), items
            )

    # --- payouts ---------------------------------------------------------------------------

    async def request_payout(
        self, who: Principal, amount: int, currency: str, keyed: Keyed | None, render: Render
    ) -> tuple[int, bytes]:
        """A withdrawal of released earnings: held from the payable at once (at most what it
        has: 422 `insufficient_funds`), paid by the provider after this commits."""
        async with self.sessions.begin() as session:

            async def produce() -> tuple[int, bytes]:
                payout = Payout(
                    worker_id=who.user_id, amount_cents=amount, currency=currency,
                    status="pending", transfer_id="",
                )  # fmt: skip
                session.add(payout)
                await session.flush()
                payout.transfer_id = f"payout:{payout.id}"
                funding, note = self.provider.funding(currency)
                await self.ledger.transfer(
                    session, payout.transfer_id, rules.payable(who.user_id, currency), funding,
                    amount, kind="payout", pending=True, note=f"payout {payout.id}; {note}",
                )  # fmt: skip
                await timers.arm(
                    session, kind=PAYOUT, ref_id=payout.id, due=self.now(),
                    key=f"{PAYOUT}:{payout.id}",
                )  # fmt: skip
                await session.flush()
                await session.refresh(payout)
                return 201, render(payout)

            return await _once(session, who, keyed, produce)

    async def payouts(self, who: Principal, limit: int = 50) -> list[Payout]:
        async with self.sessions() as session:
            rows = await session.scalars(
                select(Payout)
                .where(Payout.worker_id == who.user_id)
                .order_by(Payout.created_at.desc(), Payout.id.desc())
                .limit(limit)
            )
            return list(rows.all())


def _side(job: Job, who: Principal, operators: bool = False) -> str:
    """Which side of the job the caller is on (else 403)."""
    if job.resident_id == who.user_id:
        return "resident"
    if job.worker_id is not None and job.worker_id == who.user_id:
        return "worker"
    if operators and who.can_operate(job.community_id):
        return "operator"
    raise Forbidden("only the job's participants (and its operators) may", code="not_yours")
