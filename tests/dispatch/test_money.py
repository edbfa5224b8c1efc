"""Money through the API: escrow held on assignment and released on confirmation (or by itself),
fees in plain sight on offers and jobs, cancellation fees and refunds, disputes, change orders,
insurance and claims, earnings and payouts. The ledger must add up after every test (the `app`
fixture checks), and every money call may be repeated without moving money twice."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from tests.dispatch.helpers import community
from tests.dispatch.test_grab import crew, offers_of, post_job, wait_for

PIPE = {"name": "PVC pipe", "cost_cents": 500, "quantity": 2}


async def taken(client, principals, admin, resident, *, dispatch=None, **job):
    """A job posted and accepted: (job, worker id, worker headers, offer as the worker saw it)."""
    cid = await community(client, admin, **({"dispatch": dispatch} if dispatch else {}))
    ((wid, hw),) = await crew(client, principals, cid, [100])
    posted = await post_job(client, resident, **job)
    (offer,) = await offers_of(client, hw)
    r = await client.post(f"/v1/offers/{offer['id']}/accept", headers=hw)
    assert r.status_code == 200, r.text
    return posted, wid, hw, offer


async def ledger(client, job_id, headers) -> dict:
    r = await client.get(f"/v1/jobs/{job_id}/ledger", headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


async def held(client, job_id, headers) -> dict:
    """The ledger once the escrow hold (placed right after the assignment commits) is in."""
    out: dict = {}

    async def hold_in() -> bool:
        out.update(await ledger(client, job_id, headers))
        return any(e["kind"] == "escrow_hold" for e in out["entries"])

    await wait_for(hold_in)
    return out


def moved(entries: list[dict], kind: str) -> int:
    return sum(e["amount_cents"] for e in entries if e["kind"] == kind and e["status"] != "voided")


async def complete(client, job, hw, **body):
    r = await client.post(
        f"/v1/jobs/{job['id']}/complete", json={"assignment_version": 1, **body}, headers=hw
    )
    assert r.status_code == 200, r.text
    return r.json()


async def test_pay_is_shown_then_escrow_is_held_and_released_on_confirmation(
    client, principals, admin, resident
) -> None:
    job, _wid, hw, offer = await taken(
        client, principals, admin, resident, price_cents=10000, materials=[PIPE]
    )
    # Before taking it, the worker saw the price, each deduction and the net.
    assert offer["job"]["pay"]["price_cents"] == 10000
    assert offer["job"]["pay"]["deductions"] == [{"kind": "commission", "cents": 1500}]
    assert offer["job"]["pay"]["net_cents"] == 10000 + 1000 - 1500
    # The resident sees the total, itemized.
    pay = job["pay"]
    assert pay["total_cents"] == 11000
    assert [(i["kind"], i["cents"]) for i in pay["items"]] == [("price", 10000), ("material", 1000)]

    book = await held(client, job["id"], resident)
    hold = next(e for e in book["entries"] if e["kind"] == "escrow_hold")
    assert hold["status"] == "pending" and hold["amount_cents"] == 11000
    funding = next(e for e in book["entries"] if e["kind"] == "funding")
    assert funding["debit"].startswith("external:") and "local payment provider" in funding["note"]
    assert book["balances"][f"escrow:job:{job['id']}:CNY:held"] == 11000

    # Not before the work is done.
    r = await client.post(f"/v1/jobs/{job['id']}/confirm", headers=resident)
    assert r.status_code == 409
    await complete(client, job, hw)
    r = await client.post(f"/v1/jobs/{job['id']}/confirm", headers=resident)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "confirmed" and r.json()["confirmed_at"]
    book = await ledger(client, job["id"], hw)
    assert moved(book["entries"], "worker_pay") == 9500
    assert moved(book["entries"], "commission") == 1500
    assert book["balances"][f"escrow:job:{job['id']}:CNY"] == 0
    assert all(e["status"] == "posted" for e in book["entries"])
    # A replay: the same answer, nothing moves.
    again = await client.post(f"/v1/jobs/{job['id']}/confirm", headers=resident)
    assert again.status_code == 200 and again.json()["status"] == "confirmed"
    assert len((await ledger(client, job["id"], hw))["entries"]) == len(book["entries"])

    r = await client.get("/v1/workers/me/earnings", headers=hw)
    assert r.status_code == 200, r.text
    e = r.json()
    assert (e["payable_cents"], e["released_cents"], e["pending_cents"]) == (9500, 9500, 0)
    (item,) = e["items"]
    assert item["money"] == "released" and item["released_cents"] == 9500
    assert item["pay"]["deductions"] == [{"kind": "commission", "cents": 1500}]

    # Only the resident confirms; another resident cannot read the job's money.
    _, other = await principals.user("resident")
    assert (await client.get(f"/v1/jobs/{job['id']}/ledger", headers=other)).status_code == 403


async def test_an_unconfirmed_job_is_released_by_itself(
    client, principals, admin, resident, app
) -> None:
    job, _wid, hw, _ = await taken(
        client, principals, admin, resident, dispatch={"auto_confirm_h": 72}
    )
    await complete(client, job, hw)
    r = await client.get("/v1/workers/me/earnings", headers=hw)
    assert r.json()["pending_cents"] == 8000 - 1200 and r.json()["payable_cents"] == 0
    durable = app.state.runtime.durable
    now = datetime.now(UTC)
    await durable.fire_due(now + timedelta(hours=71))
    assert (await client.get(f"/v1/jobs/{job['id']}", headers=resident)).json()["status"] == (
        "completed"
    )
    await durable.fire_due(now + timedelta(hours=72, minutes=1))
    got = (await client.get(f"/v1/jobs/{job['id']}", headers=resident)).json()
    assert got["status"] == "confirmed"
    r = await client.get("/v1/workers/me/earnings", headers=hw)
    assert r.json()["payable_cents"] == 6800


async def test_a_timer_whose_job_another_transaction_holds_fires_at_the_next_sweep(
    client, principals, admin, resident, app, engine
) -> None:
    """Due timers fire together in one transaction: a handler must not wait for a job row that
    another transaction holds (it would wait holding the timers fired before it, and the holder
    wanting one of those deadlocked with it: seen in CI, a completion's escrow hold against an
    escrow timer). It leaves the timer for the next sweep, with no attempt counted."""
    job, _wid, hw, _ = await taken(
        client, principals, admin, resident, dispatch={"auto_confirm_h": 72}
    )
    await complete(client, job, hw)
    durable = app.state.runtime.durable
    due = datetime.now(UTC) + timedelta(hours=72, minutes=1)
    async with engine.connect() as holder:
        await holder.begin()
        await holder.execute(text("SELECT 1 FROM jobs WHERE id = :j FOR UPDATE"), {"j": job["id"]})
        started = asyncio.get_running_loop().time()
        await asyncio.wait_for(durable.fire_due(due), timeout=5)  # no wait for the lock
        assert asyncio.get_running_loop().time() - started < 2
        await holder.rollback()
    async with engine.connect() as conn:
        timer = (
            await conn.execute(
                text(
                    "SELECT fired_at, attempts FROM timers WHERE kind = 'auto_confirm' "
                    "AND ref_id = :j"
                ),
                {"j": job["id"]},
            )
        ).one()
    assert timer == (None, 0)
    got = (await client.get(f"/v1/jobs/{job['id']}", headers=resident)).json()
    assert got["status"] == "completed"
    await durable.fire_due(due)  # the next sweep, the row free
    got = (await client.get(f"/v1/jobs/{job['id']}", headers=resident)).json()
    assert got["status"] == "confirmed"


async def test_cancellation_fee_and_refund_are_transfers(
    client, principals, admin, resident, engine
) -> None:
    job, _wid, hw, _ = await taken(client, principals, admin, resident, price_cents=10000)
    await held(client, job["id"], resident)
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE jobs SET assigned_at = now() - interval '10 minutes'"))
    r = await client.post(
        f"/v1/jobs/{job['id']}/cancel", json={"reason": "changed my mind"}, headers=resident
    )
    assert r.status_code == 200 and r.json()["cancellation"]["fee_cents"] == 1000
    book = await ledger(client, job["id"], resident)
    assert moved(book["entries"], "worker_pay") == 850  # the fee less 15 % commission
    assert moved(book["entries"], "commission") == 150
    assert moved(book["entries"], "refund") == 9000
    assert moved(book["entries"], "refund_out") == 9000
    assert book["balances"][f"escrow:job:{job['id']}:CNY"] == 0
    r = await client.get("/v1/workers/me/earnings", headers=hw)
    assert r.json()["payable_cents"] == 850 and r.json()["items"][0]["money"] == "released"


async def test_a_free_cancellation_voids_the_hold(client, principals, admin, resident) -> None:
    job, *_ = await taken(client, principals, admin, resident, price_cents=10000)
    await held(client, job["id"], resident)
    r = await client.post(f"/v1/jobs/{job['id']}/cancel", json={"reason": "oops"}, headers=resident)
    assert r.status_code == 200 and r.json()["cancellation"]["fee_cents"] == 0
    book = await ledger(client, job["id"], resident)
    hold = next(e for e in book["entries"] if e["kind"] == "escrow_hold")
    assert hold["status"] == "voided"
    assert moved(book["entries"], "refund_out") == 10000
    assert moved(book["entries"], "worker_pay") == 0


async def test_a_dispute_freezes_the_escrow_until_an_operator_splits_it(
    client, principals, admin, resident
) -> None:
    job, _wid, hw, _ = await taken(client, principals, admin, resident, price_cents=10000)
    await complete(client, job, hw)
    r = await client.post(
        f"/v1/jobs/{job['id']}/dispute", json={"reason": "the tap still leaks"}, headers=resident
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "disputed" and r.json()["dispute"]["by"] == "resident"
    again = await client.post(
        f"/v1/jobs/{job['id']}/dispute", json={"reason": "still"}, headers=resident
    )
    assert again.status_code == 200 and again.json()["dispute"]["reason"] == "the tap still leaks"
    # Frozen: neither confirmation nor cancellation releases it.
    assert (await client.post(f"/v1/jobs/{job['id']}/confirm", headers=resident)).status_code == 409
    r = await client.post(f"/v1/jobs/{job['id']}/cancel", json={"reason": "x"}, headers=resident)
    assert r.status_code == 409 and r.json()["code"] == "disputed"
    ops = await principals.operator(job["community_id"])
    alerts = await client.get(f"/v1/ops/communities/{job['community_id']}/alerts", headers=ops)
    assert any(a["kind"] == "dispute" and a["job_id"] == job["id"] for a in alerts.json())
    # Neither participant settles it.
    body = {"worker_share_bps": 6000, "note": "half the work was done well"}
    r = await client.post(f"/v1/ops/jobs/{job['id']}/resolve", json=body, headers=resident)
    assert r.status_code == 403
    r = await client.post(f"/v1/ops/jobs/{job['id']}/resolve", json=body, headers=ops)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "confirmed" and r.json()["dispute"]["worker_share_bps"] == 6000
    book = await ledger(client, job["id"], ops)
    assert moved(book["entries"], "worker_pay") == 6000 - 900
    assert moved(book["entries"], "commission") == 900
    assert moved(book["entries"], "refund") == 4000
    # The same resolution again: nothing moves; another one: 409.
    assert (
        await client.post(f"/v1/ops/jobs/{job['id']}/resolve", json=body, headers=ops)
    ).status_code == 200
    other = {**body, "worker_share_bps": 10000}
    r = await client.post(f"/v1/ops/jobs/{job['id']}/resolve", json=other, headers=ops)
    assert r.status_code == 409 and r.json()["code"] == "already_resolved"
    assert len((await ledger(client, job["id"], ops))["entries"]) == len(book["entries"])
    # After release there is nothing left to dispute.
    r = await client.post(f"/v1/jobs/{job['id']}/dispute", json={"reason": "x"}, headers=hw)
    assert r.status_code == 409 and r.json()["code"] == "not_disputable"


async def test_change_orders_count_only_once_approved(client, principals, admin, resident) -> None:
    job, _wid, hw, _ = await taken(client, principals, admin, resident, price_cents=10000)
    await held(client, job["id"], resident)
    items = {"items": [{"name": "Tap cartridge", "quantity": 1, "unit_cents": 2500}]}
    key = {**hw, "Idempotency-Key": "co-1"}
    r = await client.post(f"/v1/jobs/{job['id']}/materials", json=items, headers=key)
    assert r.status_code == 201, r.text
    first = r.json()
    assert first["status"] == "pending" and first["amount_cents"] == 2500
    replay = await client.post(f"/v1/jobs/{job['id']}/materials", json=items, headers=key)
    assert replay.json()["id"] == first["id"]
    extra = {"items": [{"name": "Gold-plated spout, add me on wx abc_123456", "unit_cents": 90000}]}
    second = (await client.post(f"/v1/jobs/{job['id']}/materials", json=extra, headers=hw)).json()
    assert "abc_123456" not in second["items"][0]["name"]
    # Only the resident answers; a pending order counts for nothing yet.
    r = await client.post(f"/v1/jobs/{job['id']}/materials/{first['id']}/approve", headers=hw)
    assert r.status_code == 403
    assert (await client.get(f"/v1/jobs/{job['id']}", headers=resident)).json()["pay"][
        "total_cents"
    ] == 10000
    r = await client.post(f"/v1/jobs/{job['id']}/materials/{first['id']}/approve", headers=resident)
    assert r.status_code == 200 and r.json()["status"] == "approved"
    again = await client.post(
        f"/v1/jobs/{job['id']}/materials/{first['id']}/approve", headers=resident
    )
    assert again.status_code == 200
    r = await client.post(
        f"/v1/jobs/{job['id']}/materials/{second['id']}/decline", headers=resident
    )
    assert r.json()["status"] == "declined"
    r = await client.post(
        f"/v1/jobs/{job['id']}/materials/{second['id']}/approve", headers=resident
    )
    assert r.status_code == 409 and r.json()["code"] == "change_answered"
    got = (await client.get(f"/v1/jobs/{job['id']}", headers=hw)).json()
    assert got["pay"]["total_cents"] == 12500 and got["pay"]["net_cents"] == 12500 - 1500
    assert got["materials"][-1]["change_id"] == first["id"]
    book = await ledger(client, job["id"], resident)
    assert moved(book["entries"], "escrow_hold") == 12500
    await complete(client, job, hw)
    await client.post(f"/v1/jobs/{job['id']}/confirm", headers=resident)
    book = await ledger(client, job["id"], resident)
    assert moved(book["entries"], "worker_pay") == 11000  # materials pass through whole
    listed = (await client.get(f"/v1/jobs/{job['id']}/materials", headers=resident)).json()
    assert [c["status"] for c in listed] == ["approved", "declined"]


async def test_insured_jobs_pay_a_premium_and_claims_come_from_the_pool(
    client, principals, admin, resident, engine
) -> None:
    job, _wid, hw, offer = await taken(
        client, principals, admin, resident, price_cents=10000, insured=True
    )
    assert offer["job"]["pay"]["deductions"] == [
        {"kind": "commission", "cents": 1500},
        {"kind": "insurance", "cents": 300},
    ]
    assert offer["job"]["pay"]["net_cents"] == 8200
    claim = {"description": "the worker cracked a tile", "amount_cents": 200}
    r = await client.post(f"/v1/jobs/{job['id']}/claims", json=claim, headers=resident)
    assert r.status_code == 409 and r.json()["code"] == "not_completed"
    await complete(client, job, hw)
    await client.post(f"/v1/jobs/{job['id']}/confirm", headers=resident)
    book = await ledger(client, job["id"], resident)
    assert moved(book["entries"], "premium") == 300
    keyed = {**resident, "Idempotency-Key": "claim-1"}
    r = await client.post(f"/v1/jobs/{job['id']}/claims", json=claim, headers=keyed)
    assert r.status_code == 201 and r.json()["status"] == "pending"
    small = r.json()
    assert (await client.post(f"/v1/jobs/{job['id']}/claims", json=claim, headers=keyed)).json()[
        "id"
    ] == small["id"]
    big = {"description": "the whole floor", "amount_cents": 5000}
    big_claim = (
        await client.post(f"/v1/jobs/{job['id']}/claims", json=big, headers=resident)
    ).json()
    ops = await principals.operator(job["community_id"])
    r = await client.post(f"/v1/ops/claims/{small['id']}/approve", json={}, headers=ops)
    assert r.status_code == 200 and r.json()["status"] == "approved"
    assert (
        await client.post(f"/v1/ops/claims/{small['id']}/approve", json={}, headers=ops)
    ).status_code == 200
    r = await client.post(f"/v1/ops/claims/{big_claim['id']}/approve", json={}, headers=ops)
    assert r.status_code == 422 and r.json()["code"] == "insurance_pool_short"
    r = await client.post(
        f"/v1/ops/claims/{big_claim['id']}/reject", json={"note": "not covered"}, headers=ops
    )
    assert r.json()["status"] == "rejected"
    book = await ledger(client, job["id"], resident)
    assert moved(book["entries"], "claim") == 200
    # A job not insured takes no claims; an insured one only within the window.
    async with engine.begin() as conn:
        await conn.execute(
            text("UPDATE jobs SET completed_at = now() - interval '15 days' WHERE id = :j"),
            {"j": job["id"]},
        )
    r = await client.post(f"/v1/jobs/{job['id']}/claims", json=claim, headers=resident)
    assert r.status_code == 409 and r.json()["code"] == "claim_window_closed"


async def test_payouts_paid_failed_and_bounded_by_the_balance(
    client, principals, admin, resident, app
) -> None:
    job, _wid, hw, _ = await taken(client, principals, admin, resident, price_cents=10000)
    await complete(client, job, hw)
    await client.post(f"/v1/jobs/{job['id']}/confirm", headers=resident)
    r = await client.post("/v1/workers/me/payouts", json={"amount_cents": 9000}, headers=hw)
    assert r.status_code == 422 and r.json()["code"] == "insufficient_funds"
    keyed = {**hw, "Idempotency-Key": "payout-1"}
    r = await client.post("/v1/workers/me/payouts", json={"amount_cents": 5000}, headers=keyed)
    assert r.status_code == 201 and r.json()["status"] == "pending", r.text
    first = r.json()
    replay = await client.post("/v1/workers/me/payouts", json={"amount_cents": 5000}, headers=keyed)
    assert replay.json()["id"] == first["id"]

    async def status_of(payout_id: int) -> str:
        listed = (await client.get("/v1/workers/me/payouts", headers=hw)).json()
        return next(p["status"] for p in listed if p["id"] == payout_id)

    await wait_for(lambda: _is(status_of(first["id"]), "paid"))
    e = (await client.get("/v1/workers/me/earnings", headers=hw)).json()
    assert (e["payable_cents"], e["paid_out_cents"]) == (3500, 5000)
    # The provider refuses one: the money is back.
    app.state.runtime.money.provider.payout_limit_cents = 1000
    r = await client.post("/v1/workers/me/payouts", json={"amount_cents": 3000}, headers=hw)
    assert r.status_code == 201
    failed = r.json()
    await wait_for(lambda: _is(status_of(failed["id"]), "failed"))
    listed = (await client.get("/v1/workers/me/payouts", headers=hw)).json()
    assert "limit" in next(p for p in listed if p["id"] == failed["id"])["failure"]
    e = (await client.get("/v1/workers/me/earnings", headers=hw)).json()
    assert (e["payable_cents"], e["paid_out_cents"], e["in_payout_cents"]) == (3500, 5000, 0)
    # Residents have no earnings.
    assert (await client.get("/v1/workers/me/earnings", headers=resident)).status_code == 403


async def _is(value, expected) -> bool:
    return (await value) == expected
