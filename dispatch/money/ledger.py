"""The ledger: the one writer of money movements. Double entry in PostgreSQL, integer minor
units per currency, every transfer idempotent by its id, two-phase where money is held
(pending, then posted or voided).

A transfer is one row debiting one account and crediting another by the same amount, so the
sum of all balances is zero by construction; `problems` checks that and the rest (floors,
currencies) and the tests run it after every scenario. Balances are sums over transfers, not a
column: a credit to the platform's revenue account, which every release makes, is an insert
that waits for nothing. A debit from a floored account (escrow, a payable, a pool) locks that
account's row first, so two debits cannot both spend the same money; the lock is per job or per
worker, never the shared accounts in the normal flow.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.core.errors import Conflict, NotFound, Unprocessable
from dispatch.money.rules import (
    AccountRef,
    compensation,
    external,
    insurance_pool,
    revenue,
)

MAX_TRANSFER_CENTS = 10**12

_ACCOUNT_INSERT = text(
    "INSERT INTO ledger_accounts (key, kind, currency, floor, user_id, job_id) "
    "VALUES (:key, :kind, :currency, :floor, :user_id, :job_id) "
    "ON CONFLICT (key) DO NOTHING RETURNING id"
)
_ACCOUNT_INSERT_MANY = text(
    "INSERT INTO ledger_accounts (key, kind, currency, floor, user_id, job_id) "
    "VALUES (:key, :kind, :currency, :floor, :user_id, :job_id) ON CONFLICT (key) DO NOTHING"
)
_ACCOUNT_SELECT = text("SELECT id FROM ledger_accounts WHERE key = :key")
_LOCK = text("SELECT id FROM ledger_accounts WHERE id = :id FOR UPDATE")
_BALANCE = text(
    """
    SELECT
      coalesce(sum(amount_cents) FILTER (WHERE credit_account_id = :a AND status = 'posted'), 0)
      - coalesce(sum(amount_cents) FILTER (WHERE debit_account_id = :a AND status = 'posted'), 0),
      coalesce(sum(amount_cents) FILTER (WHERE debit_account_id = :a AND status = 'pending'), 0),
      coalesce(sum(amount_cents) FILTER (WHERE credit_account_id = :a AND status = 'pending'), 0)
    FROM ledger_transfers WHERE debit_account_id = :a OR credit_account_id = :a
    """
)
_TRANSFER_COLUMNS = (
    "t.id, d.key, c.key, t.amount_cents, t.currency, t.kind, t.status, t.job_id, t.note, "
    "t.created_at, t.resolved_at"
)
_TRANSFER_SELECT = text(
    f"SELECT {_TRANSFER_COLUMNS} FROM ledger_transfers t "  # noqa: S608 (constant columns)
    "JOIN ledger_accounts d ON d.id = t.debit_account_id "
    "JOIN ledger_accounts c ON c.id = t.credit_account_id WHERE t.id = :id"
)
_TRANSFER_INSERT = text(
    "INSERT INTO ledger_transfers (id, debit_account_id, credit_account_id, amount_cents, "
    "currency, kind, status, job_id, note) VALUES (:id, :d, :c, :amount, :currency, :kind, "
    ":status, :job_id, :note) ON CONFLICT (id) DO NOTHING RETURNING id"
)
_RESOLVE = text(
    "UPDATE ledger_transfers SET status = :status, resolved_at = now() "
    "WHERE id = :id AND status = 'pending' RETURNING id"
)
_JOB_TRANSFERS = text(
    f"SELECT {_TRANSFER_COLUMNS} FROM ledger_transfers t "  # noqa: S608 (constant columns)
    "JOIN ledger_accounts d ON d.id = t.debit_account_id "
    "JOIN ledger_accounts c ON c.id = t.credit_account_id "
    "WHERE t.job_id = :job_id ORDER BY t.seq"
)
_PROBLEMS = text(
    """
    WITH legs AS (
        SELECT debit_account_id AS account, -amount_cents AS amount, status FROM ledger_transfers
        UNION ALL
        SELECT credit_account_id, amount_cents, status FROM ledger_transfers),
    per AS (
        SELECT a.id, a.key, a.currency, a.floor,
               coalesce(sum(l.amount) FILTER (WHERE l.status = 'posted'), 0) AS posted,
               coalesce(sum(-l.amount) FILTER (WHERE l.status = 'pending' AND l.amount < 0), 0)
                 AS held
        FROM ledger_accounts a LEFT JOIN legs l ON l.account = a.id GROUP BY a.id)
    SELECT 'currency ' || currency || ' sums to ' || sum(posted) FROM per
      GROUP BY currency HAVING sum(posted) <> 0
    UNION ALL
    SELECT 'account ' || key || ' below zero: ' || (posted - held) FROM per
      WHERE floor AND posted - held < 0
    UNION ALL
    SELECT 'transfer ' || t.id || ' mixes currencies' FROM ledger_transfers t
      JOIN ledger_accounts d ON d.id = t.debit_account_id
      JOIN ledger_accounts c ON c.id = t.credit_account_id
      WHERE d.currency <> t.currency OR c.currency <> t.currency
    """
)


@dataclass(frozen=True)
class Transfer:
    id: str
    debit: str
    """The debited account's key."""
    credit: str
    amount_cents: int
    currency: str
    kind: str
    status: str
    job_id: int | None
    note: str | None
    created_at: datetime
    resolved_at: datetime | None
    replayed: bool = False
    """True when this id had been recorded already: nothing moved this time."""


@dataclass(frozen=True)
class Balance:
    posted: int
    """Credits minus debits of posted transfers."""
    pending_debits: int
    pending_credits: int

    @property
    def available(self) -> int:
        """What a debit may still take: posted, less what pending debits hold."""
        return self.posted - self.pending_debits


def _values(ref: AccountRef) -> dict[str, Any]:
    return {"key": ref.key, "kind": ref.kind, "currency": ref.currency, "floor": ref.floor,
            "user_id": ref.user_id, "job_id": ref.job_id}  # fmt: skip


def shared_accounts(currency: str) -> tuple[AccountRef, ...]:
    """The accounts of a currency that belong to no job and no person."""
    return (revenue(currency), insurance_pool(currency), compensation(currency),
            external(currency))  # fmt: skip


def _transfer(row: Any, replayed: bool = False) -> Transfer:
    return Transfer(*row, replayed=replayed)


class Ledger:
    """The one writer of ledger rows; every call runs inside the caller's transaction."""

    async def account_id(self, session: AsyncSession, ref: AccountRef) -> int:
        # No cache of ids across transactions: a row this transaction (or a savepoint of it, as
        # a timer's handler runs in) made and then rolled back would stay cached, and every later
        # transfer of that account would fail its foreign key (seen in CI: a 500 on completion).
        found = await session.scalar(_ACCOUNT_SELECT, {"key": ref.key})
        if found is not None:
            return int(found)
        values = _values(ref)
        if ref.user_id is None and ref.job_id is None:
            # The shared accounts of a currency (revenue, the pools, the provider) are made
            # together, in key order, in one statement: every first transfer of a currency wants
            # some of them, and two transactions each holding a new key the other waited for
            # deadlocked (seen in CI: a completion's escrow hold beside an assignment's).
            shared = sorted(shared_accounts(ref.currency), key=lambda r: r.key)
            await session.execute(_ACCOUNT_INSERT_MANY, [_values(r) for r in shared])
            found = await session.scalar(_ACCOUNT_SELECT, {"key": ref.key})
            if found is not None:
                return int(found)
        made = await session.scalar(_ACCOUNT_INSERT, values)
        if made is None:  # another transaction made it meanwhile
            made = await session.scalar(_ACCOUNT_SELECT, {"key": ref.key})
        return int(made)

    async def balance(self, session: AsyncSession, ref: AccountRef) -> Balance:
        account = await session.scalar(_ACCOUNT_SELECT, {"key": ref.key})
        if account is None:
            return Balance(0, 0, 0)
        return await self._balance(session, int(account))

    async def _balance(self, session: AsyncSession, account: int) -> Balance:
        row = (await session.execute(_BALANCE, {"a": account})).one()
        return Balance(int(row[0]), int(row[1]), int(row[2]))

    async def transfer(
        self,
        session: AsyncSession,
        transfer_id: str,
        debit: AccountRef,
        credit: AccountRef,
        amount_cents: int,
        *,
        kind: str,
        job_id: int | None = None,
        pending: bool = False,
        note: str | None = None,
    ) -> Transfer:
        """Move `amount_cents` from `debit` to `credit` (held as pending when `pending`). The
        same `transfer_id` again returns the transfer as recorded and moves nothing; the same id
        for a different movement is 409 `transfer_id_reused`. A floored account cannot be
        debited beyond what it has available: 422 `insufficient_funds`."""
        if not 0 < amount_cents <= MAX_TRANSFER_CENTS:
            raise Unprocessable("a transfer moves a positive amount", code="invalid_amount")
        if debit.currency != credit.currency:
            raise Unprocessable("both accounts must hold one currency", code="currency_mismatch")
        if debit.key == credit.key:
            raise Unprocessable("a transfer needs two accounts", code="same_account")
        # New accounts are made in one order (by key) whichever side they are on, so two
        # transfers making the same two accounts cannot each wait for the other's.
        first, second = sorted((debit, credit), key=lambda ref: ref.key)
        ids = {first.key: await self.account_id(session, first)}
        ids[second.key] = await self.account_id(session, second)
        d, c = ids[debit.key], ids[credit.key]
        if debit.floor:
            await session.execute(_LOCK, {"id": d})  # debits of this account one at a time
        wanted = (debit.key, credit.key, amount_cents, debit.currency, kind)
        before = await self._existing(session, transfer_id, wanted)
        if before is not None:
            return before
        if debit.floor:
            have = (await self._balance(session, d)).available
            if have < amount_cents:
                raise Unprocessable(
                    f"{debit.kind} holds {have} {debit.currency} minor units, not {amount_cents}",
                    code="insufficient_funds",
                )
        made = await session.scalar(
            _TRANSFER_INSERT,
            {"id": transfer_id, "d": d, "c": c, "amount": amount_cents,
             "currency": debit.currency, "kind": kind,
             "status": "pending" if pending else "posted", "job_id": job_id, "note": note},
        )  # fmt: skip
        if made is None:  # the same id committed by another transaction meanwhile
            again = await self._existing(session, transfer_id, wanted)
            assert again is not None
            return again
        row = (await session.execute(_TRANSFER_SELECT, {"id": transfer_id})).one()
        return _transfer(row)

    async def _existing(
        self, session: AsyncSession, transfer_id: str, wanted: tuple[str, str, int, str, str]
    ) -> Transfer | None:
        row = (await session.execute(_TRANSFER_SELECT, {"id": transfer_id})).first()
        if row is None:
            return None
        found = _transfer(row, replayed=True)
        if (found.debit, found.credit, found.amount_cents, found.currency, found.kind) != wanted:
            raise Conflict(
                f"transfer {transfer_id} was recorded for another movement",
                code="transfer_id_reused",
            )
        return found

    async def post(self, session: AsyncSession, transfer_id: str) -> Transfer:
        """A pending transfer takes effect (again: nothing more; voided: 409)."""
        return await self._resolve(session, transfer_id, "posted")

    async def void(self, session: AsyncSession, transfer_id: str) -> Transfer:
        """A pending transfer is dropped and what it held is free again (posted: 409)."""
        return await self._resolve(session, transfer_id, "voided")

    async def _resolve(self, session: AsyncSession, transfer_id: str, status: str) -> Transfer:
        changed = await session.scalar(_RESOLVE, {"id": transfer_id, "status": status})
        row = (await session.execute(_TRANSFER_SELECT, {"id": transfer_id})).first()
        if row is None:
            raise NotFound(f"no transfer {transfer_id}", code="transfer_not_found")
        found = _transfer(row, replayed=changed is None)
        if found.status != status:
            raise Conflict(
                f"transfer {transfer_id} is {found.status}", code=f"transfer_{found.status}"
            )
        return found

    async def of_job(self, session: AsyncSession, job_id: int) -> list[Transfer]:
        rows = (await session.execute(_JOB_TRANSFERS, {"job_id": job_id})).all()
        return [_transfer(r) for r in rows]


async def problems(session: AsyncSession) -> list[str]:
    """What is wrong with the ledger as this session sees it: a currency whose balances do not
    sum to zero, a floored account below zero, a transfer between currencies. Empty: sound."""
    return [str(r[0]) for r in (await session.execute(_PROBLEMS)).all()]
