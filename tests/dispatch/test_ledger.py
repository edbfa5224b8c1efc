"""The ledger: transfers idempotent by id, two-phase holds, floors, the sum of balances zero after
every scenario, 200 concurrent releases into the one platform account with nothing lost, and
hypothesis sequences of holds, releases, refunds and voids compared with a model in Python."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dispatch.core.errors import Conflict, Unprocessable
from dispatch.infra.db import make_engine, make_sessionmaker
from dispatch.money import rules
from dispatch.money.ledger import Ledger, problems

CNY = "CNY"


@pytest.fixture
async def sessions(engine, clean_state):
    sm = make_sessionmaker(engine)
    yield sm
    async with sm() as session:
        assert await problems(session) == []  # the invariant, after every scenario


async def test_a_payment_held_then_released(sessions) -> None:
    ledger = Ledger()
    src, esc = rules.source(7, CNY), rules.escrow(42, CNY)
    async with sessions.begin() as s:
        hold = await ledger.transfer(s, "job:42:hold", src, esc, 10_000, kind="escrow", job_id=42,
                                     pending=True)  # fmt: skip
        assert hold.status == "pending" and not hold.replayed
        assert (await ledger.balance(s, esc)).available == 0  # held, not yet there
        await ledger.post(s, "job:42:hold")
        assert (await ledger.balance(s, esc)).posted == 10_000
        net, fee = rules.split(10_000, 1500)
        assert (net, fee) == (8_500, 1_500)
        await ledger.transfer(s, "job:42:pay", esc, rules.payable(9, CNY), net, kind="release",
                              job_id=42)  # fmt: skip
        await ledger.transfer(s, "job:42:fee", esc, rules.revenue(CNY), fee, kind="commission",
                              job_id=42)  # fmt: skip
    async with sessions() as s:
        assert (await ledger.balance(s, esc)).posted == 0
        assert (await ledger.balance(s, rules.payable(9, CNY))).posted == 8_500
        assert (await ledger.balance(s, rules.revenue(CNY))).posted == 1_500
        assert (await ledger.balance(s, src)).posted == -10_000  # what the resident paid in
        assert [t.kind for t in await ledger.of_job(s, 42)] == ["escrow", "release", "commission"]


async def test_accounts_made_in_a_savepoint_that_rolls_back_are_made_again(sessions) -> None:
    """A timer's handler runs in a savepoint: when it fails after its transfer made the job's
    accounts, the next transfer of the same accounts (same ledger, same process) makes them
    again instead of pointing at rows that were rolled back."""
    ledger = Ledger()
    src, esc = rules.source(7, CNY), rules.escrow(43, CNY)
    async with sessions.begin() as s:
        with pytest.raises(RuntimeError):
            async with s.begin_nested():
                await ledger.transfer(s, "job:43:hold", src, esc, 5_000, kind="escrow_hold",
                                      job_id=43, pending=True)  # fmt: skip
                await ledger.balance(s, esc)  # the accounts are read back inside the savepoint
                await ledger.transfer(s, "job:43:again", src, esc, 1, kind="escrow_hold",
                                      job_id=43)  # fmt: skip
                raise RuntimeError("the handler failed")
    async with sessions.begin() as s:
        made = await ledger.transfer(s, "job:43:hold", src, esc, 5_000, kind="escrow_hold",
                                     job_id=43, pending=True)  # fmt: skip
        assert made.status == "pending" and not made.replayed


async def test_a_replay_moves_nothing_and_an_id_is_for_one_movement(sessions) -> None:
    ledger = Ledger()
    src, esc = rules.source(1, CNY), rules.escrow(1, CNY)
    for _ in range(3):
        async with sessions.begin() as s:
            t = await ledger.transfer(s, "pay-1", src, esc, 500, kind="escrow", job_id=1)
    assert t.replayed
    async with sessions.begin() as s:
        assert (await ledger.balance(s, esc)).posted == 500
        with pytest.raises(Conflict) as e:
            await ledger.transfer(s, "pay-1", src, esc, 501, kind="escrow", job_id=1)
        assert e.value.code == "transfer_id_reused"
    # A replayed debit of an account since emptied is still the replay, not "insufficient".
    async with sessions.begin() as s:
        await ledger.transfer(s, "out-1", esc, rules.payable(2, CNY), 500, kind="release")
    async with sessions.begin() as s:
        again = await ledger.transfer(s, "out-1", esc, rules.payable(2, CNY), 500, kind="release")
        assert again.replayed
        assert (await ledger.balance(s, rules.payable(2, CNY))).posted == 500


async def test_floors_currencies_and_resolving_holds(sessions) -> None:
    ledger = Ledger()
    esc = rules.escrow(5, CNY)
    async with sessions.begin() as s:
        await ledger.transfer(s, "in", rules.source(1, CNY), esc, 1_000, kind="escrow")
        hold = await ledger.transfer(s, "refund-hold", esc, rules.source(1, CNY), 800,
                                     kind="refund", pending=True)  # fmt: skip
        assert hold.status == "pending"
    for bad, code in (
        (lambda s: ledger.transfer(s, "x1", esc, rules.revenue(CNY), 201, kind="commission"),
         "insufficient_funds"),  # 1,000 less the 800 held
        (lambda s: ledger.transfer(s, "x2", esc, rules.revenue("USD"), 1, kind="commission"),
         "currency_mismatch"),
        (lambda s: ledger.transfer(s, "x3", esc, esc, 1, kind="commission"), "same_account"),
        (lambda s: ledger.transfer(s, "x4", esc, rules.revenue(CNY), 0, kind="commission"),
         "invalid_amount"),
    ):  # fmt: skip
        async with sessions.begin() as s:
            with pytest.raises(Unprocessable) as e:
                await bad(s)
            assert e.value.code == code
    async with sessions.begin() as s:
        assert (await ledger.void(s, "refund-hold")).status == "voided"
        assert (await ledger.void(s, "refund-hold")).replayed
        with pytest.raises(Conflict) as e:
            await ledger.post(s, "refund-hold")
        assert e.value.code == "transfer_voided"
        assert (await ledger.balance(s, esc)).available == 1_000  # free again


async def test_200_concurrent_releases_into_the_platform_account(server_urls, clean_state) -> None:
    engine = make_engine(server_urls[0], pool_size=20)
    sessions = make_sessionmaker(engine)
    ledger = Ledger()
    n = 200
    async with sessions.begin() as s:
        for j in range(n):
            await ledger.transfer(s, f"in-{j}", rules.source(j, CNY), rules.escrow(j, CNY),
                                  1_000 + j, kind="escrow", job_id=j)  # fmt: skip

    async def release(j: int) -> None:
        async with sessions.begin() as s:
            net, fee = rules.split(1_000 + j, 1500)
            await ledger.transfer(s, f"pay-{j}", rules.escrow(j, CNY), rules.payable(j, CNY),
                                  net, kind="release", job_id=j)  # fmt: skip
            await ledger.transfer(s, f"fee-{j}", rules.escrow(j, CNY), rules.revenue(CNY), fee,
                                  kind="commission", job_id=j)  # fmt: skip

    # Every release twice at once: the second of each pair is a replay, whichever it is.
    await asyncio.gather(*(release(j) for j in range(n) for _ in range(2)))
    async with sessions() as s:
        revenue = (await ledger.balance(s, rules.revenue(CNY))).posted
        assert revenue == sum(rules.split(1_000 + j, 1500)[1] for j in range(n))
        for j in range(0, n, 17):
            assert (await ledger.balance(s, rules.escrow(j, CNY))).posted == 0
        assert await problems(s) == []

    # Two different spends of one escrow at once: the floor lets exactly one through.
    async with sessions.begin() as s:
        for j in range(n):
            await ledger.transfer(s, f"again-{j}", rules.source(j, CNY), rules.escrow(j, CNY),
                                  1_000, kind="escrow", job_id=j)  # fmt: skip

    async def spend(j: int, who: int) -> bool:
        try:
            async with sessions.begin() as s:
                await ledger.transfer(s, f"spend-{j}-{who}", rules.escrow(j, CNY),
                                      rules.payable(who, CNY), 700, kind="release")  # fmt: skip
            return True
        except Unprocessable:
            return False

    won = await asyncio.gather(*(spend(j, w) for j in range(n) for w in (1, 2)))
    assert sum(won) == n and all(a != b for a, b in zip(won[::2], won[1::2], strict=True))
    await engine.dispose()


RUNS = itertools.count()
OPS = st.lists(
    st.tuples(
        st.sampled_from(["fund", "hold", "post", "void", "release", "refund"]),
        st.integers(0, 2),  # which job
        st.integers(1, 3_000),  # amount
    ),
    max_size=25,
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=OPS)
async def test_random_sequences_keep_the_books(sessions, ops) -> None:
    """A model in Python (dicts of balances) beside the ledger: every operation either happens
    in both or is refused by the ledger exactly when the model says the money is not there."""
    ledger = Ledger()
    run = next(RUNS)  # one example's accounts and ids are its own (the fixture spans them all)
    escrow = {j: 0 for j in range(3)}
    held = {j: 0 for j in range(3)}
    holds: dict[int, list[tuple[str, int]]] = {j: [] for j in range(3)}
    payable = revenue = 0
    for k, (op, j, amount) in enumerate(ops):
        esc = rules.escrow(10_000 + 3 * run + j, CNY)
        tid = f"r{run}-{k}"
        async with sessions.begin() as s:
            if op == "fund":
                await ledger.transfer(s, tid, rules.source(j, CNY), esc, amount, kind="escrow")
                escrow[j] += amount
            elif op == "hold":
                enough = escrow[j] - held[j] >= amount
                try:
                    await ledger.transfer(s, tid, esc, rules.source(j, CNY), amount,
                                          kind="refund", pending=True)  # fmt: skip
                    assert enough
                    held[j] += amount
                    holds[j].append((tid, amount))
                except Unprocessable:
                    assert not enough
            elif op in ("post", "void") and holds[j]:
                hid, amt = holds[j].pop(0)
                await (ledger.post if op == "post" else ledger.void)(s, hid)
                held[j] -= amt
                if op == "post":
                    escrow[j] -= amt
            elif op in ("release", "refund"):
                enough = escrow[j] - held[j] >= amount
                net, fee = rules.split(amount, 1200)
                try:
                    if op == "release":
                        await ledger.transfer(s, tid + "n", esc, rules.payable(1, CNY), net,
                                              kind="release")  # fmt: skip
                        if fee:
                            await ledger.transfer(s, tid + "f", esc, rules.revenue(CNY), fee,
                                                  kind="commission")  # fmt: skip
                    else:
                        await ledger.transfer(s, tid, esc, rules.source(j, CNY), amount,
                                              kind="refund")  # fmt: skip
                    assert enough
                    escrow[j] -= amount
                    if op == "release":
                        payable += net
                        revenue += fee
                except Unprocessable:
                    assert not enough
                    await s.rollback()
                    break
    async with sessions() as s:
        for j in range(3):
            got = await ledger.balance(s, rules.escrow(10_000 + 3 * run + j, CNY))
            assert (got.posted, got.pending_debits) == (escrow[j], held[j])
        assert await problems(s) == []
    assert payable >= 0 and revenue >= 0


async def test_first_transfers_of_a_currency_in_any_order_do_not_deadlock(sessions) -> None:
    """Twenty transactions at once, each the first to move money in a currency: half credit the
    platform from the provider and then the insurance pool from compensation, half the other way
    round. Each made its new accounts as it met them, so two of them could each hold a key the
    other waited for (PostgreSQL then kills one: 'deadlock detected', a 500 in CI). The shared
    accounts of a currency are made together, in one order."""
    ledger = Ledger()
    eur = "EUR"
    pairs = [
        (rules.external(eur), rules.revenue(eur)),
        (rules.compensation(eur), rules.insurance_pool(eur)),
    ]

    async def one(n: int) -> None:
        async with sessions.begin() as s:
            order = pairs if n % 2 else pairs[::-1]
            for k, (debit, credit) in enumerate(order):
                if debit.floor:  # fund a floored account from outside first
                    await ledger.transfer(s, f"fund-{n}-{k}", rules.external(eur), debit, 100,
                                          kind="adjustment")  # fmt: skip
                await ledger.transfer(s, f"t-{n}-{k}", debit, credit, 100, kind="adjustment")
            await asyncio.sleep(0.01)  # hold the new keys a moment, as a longer request would

    await asyncio.gather(*(one(n) for n in range(20)))
    async with sessions() as s:
        assert (await ledger.balance(s, rules.revenue(eur))).posted == 2_000
        assert (await ledger.balance(s, rules.insurance_pool(eur))).posted == 2_000
