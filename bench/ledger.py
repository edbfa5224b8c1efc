"""Ledger benchmark: transfers posted by 50 concurrent clients, half of them crediting the one
platform revenue account, beside a plain single-row `UPDATE` of one balance row in the same run.

    .venv/bin/python -m bench.ledger [--quick]

One run starts a private PostgreSQL+PostGIS (fsync off, as every benchmark here), migrates it and
funds 1,000 jobs' escrow accounts. Then, alternately, `--rounds` times each, for `--seconds`:

- **ledger**: 50 clients, each transfer its own transaction through the one writer
  (`dispatch.money.ledger.Ledger.transfer`, as the service calls it): every other transfer
  funds a job's escrow from its resident's payment source, the others move a commission from a
  job's escrow to the platform's revenue account (the hot account; the escrow, floored, is
  locked by its debit).
- **peer**: 50 clients, each `UPDATE ledger_peer SET balance_cents = balance_cents + 1 WHERE
  id = 1` in its own transaction: what a ledger that kept balances in an account row would do
  to its platform account at the least.

Measured: committed transfers (updates) a second; target ledger ÷ peer at least 0.5x. Checked:
the ledger's `problems` is empty (balances sum to zero, no floor crossed), no transfer lost
(rows in the table = transfers the clients saw succeed), the revenue balance equals the sum of
the commissions that succeeded.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bench.lib.machine import log, machine_lines, wait_for_quiet
from bench.lib.report import run_and_report
from bench.lib.servers import private_servers
from bench.lib.stats import verdict
from dispatch.core.errors import Unprocessable
from dispatch.infra.db import make_engine, make_sessionmaker
from dispatch.money import rules
from dispatch.money.ledger import Ledger, problems

CLIENTS = 50
JOBS = 1000
FUND_CENTS = 1_000_000
FEE_CENTS = 150
CNY = "CNY"
TARGET = 0.5


@dataclass
class Config:
    seconds: float
    rounds: int
    wait_quiet_s: int
    write: bool
    command: str


@dataclass
class Tally:
    done: int = 0
    fees: int = 0
    refused: int = 0
    errors: list[str] = field(default_factory=list)


async def ledger_round(sessions: Any, ledger: Ledger, seconds: float, tag: str) -> Tally:
    tally = Tally()
    end = time.perf_counter() + seconds

    async def client(c: int) -> None:
        k = 0
        while time.perf_counter() < end:
            job = (c * 7919 + k * 104_729) % JOBS
            tid = f"{tag}-{c}-{k}"
            try:
                async with sessions.begin() as s:
                    if k % 2 == 0:
                        await ledger.transfer(
                            s, tid, rules.source(job, CNY), rules.escrow(job, CNY), FEE_CENTS,
                            kind="escrow", job_id=job,
                        )  # fmt: skip
                    else:
                        await ledger.transfer(
                            s, tid, rules.escrow(job, CNY), rules.revenue(CNY), FEE_CENTS,
                            kind="commission", job_id=job,
                        )  # fmt: skip
                        tally.fees += FEE_CENTS
                tally.done += 1
            except Unprocessable:
                tally.refused += 1
            except Exception as exc:
                tally.errors.append(repr(exc)[:200])
            k += 1

    await asyncio.gather(*(client(c) for c in range(CLIENTS)))
    return tally


async def peer_round(engine: Any, seconds: float) -> Tally:
    from sqlalchemy import text

    tally = Tally()
    end = time.perf_counter() + seconds
    bump = text("UPDATE ledger_peer SET balance_cents = balance_cents + 1 WHERE id = 1")

    async def client() -> None:
        while time.perf_counter() < end:
            async with engine.begin() as conn:
                await conn.execute(bump)
            tally.done += 1

    await asyncio.gather(*(client() for _ in range(CLIENTS)))
    return tally


async def run(cfg: Config, db_url: str) -> dict[str, Any]:
    from sqlalchemy import text

    engine = make_engine(db_url, pool_size=CLIENTS)
    sessions = make_sessionmaker(engine)
    ledger = Ledger()
    async with engine.begin() as conn:
        await conn.execute(
            text("CREATE TABLE ledger_peer (id int PRIMARY KEY, balance_cents bigint NOT NULL)")
        )
        await conn.execute(text("INSERT INTO ledger_peer VALUES (1, 0)"))
    async with sessions.begin() as s:
        for job in range(JOBS):
            await ledger.transfer(s, f"fund-{job}", rules.source(job, CNY),
                                  rules.escrow(job, CNY), FUND_CENTS, kind="escrow")  # fmt: skip
        await ledger.account_id(s, rules.revenue(CNY))
    async with engine.begin() as conn:
        await conn.execute(text("ANALYZE"))
    if cfg.wait_quiet_s:
        wait_for_quiet(cfg.wait_quiet_s)
    await ledger_round(sessions, ledger, 2.0, "warm")
    await peer_round(engine, 2.0)
    rounds: list[tuple[str, float, Tally]] = []
    for r in range(cfg.rounds):
        for name in ("ledger", "peer"):
            t0 = time.perf_counter()
            if name == "ledger":
                tally = await ledger_round(sessions, ledger, cfg.seconds, f"r{r}")
            else:
                tally = await peer_round(engine, cfg.seconds)
            rate = tally.done / (time.perf_counter() - t0)
            log(f"round {r + 1} {name}: {rate:,.0f} commits/s")
            rounds.append((name, rate, tally))
    async with sessions() as s:
        found = await problems(s)
        rows = await s.scalar(text("SELECT count(*) FROM ledger_transfers"))
        revenue = (await ledger.balance(s, rules.revenue(CNY))).posted
    await engine.dispose()
    return {"rounds": rounds, "problems": found, "rows": rows, "revenue": revenue}


def report(cfg: Config, out: dict[str, Any], started: datetime) -> str:
    ledger = [(rate, t) for name, rate, t in out["rounds"] if name == "ledger"]
    peer = [rate for name, rate, _ in out["rounds"] if name == "peer"]
    mean_l = sum(r for r, _ in ledger) / len(ledger)
    mean_p = sum(peer) / len(peer)
    ratio = mean_l / mean_p
    succeeded = sum(t.done for _, t in ledger)
    warm_and_fund = JOBS  # the funding transfers; the warm-up's are counted below
    fees = sum(t.fees for _, t in ledger)
    errors = [e for _, t in ledger for e in t.errors]
    lines = [
        f"# Ledger benchmark, {started:%Y-%m-%d %H:%M} UTC",
        "",
        f"Command: `{cfg.command}`",
        "",
        "## Target",
        "",
        "| Target | Measured | Verdict |",
        "|---|---|---|",
        f"| ledger transfers/s >= {TARGET:g}x a single-row UPDATE's, {CLIENTS} clients | "
        f"{mean_l:,.0f} / {mean_p:,.0f} = **{ratio:.2f}x** | {verdict(ratio >= TARGET)} |",
        "",
        "## Rounds",
        "",
        "| round | what | commits/s |",
        "|---:|---|---:|",
    ]
    for i, (name, rate, _) in enumerate(out["rounds"]):
        lines.append(f"| {i // 2 + 1} | {name} | {rate:,.0f} |")
    lines += [
        "",
        "## Checks",
        "",
        f"- {'OK' if not out['problems'] else 'FAILED'}: ledger problems "
        f"{out['problems'] or 'none'} (every currency sums to zero, no floored account below "
        "zero, no transfer between currencies)",
        f"- {'OK' if not errors else 'FAILED'}: {succeeded:,} transfers succeeded in the "
        f"measured rounds, {len(errors)} errors {errors[:3] if errors else ''}; "
        f"{out['rows']:,} rows in all (with {warm_and_fund:,} funding transfers and the "
        "warm-up's)",
        f"- revenue balance {out['revenue']:,} (measured rounds' commissions {fees:,}, plus the "
        "warm-up's)",
        "",
        "## Machine",
        "",
        *machine_lines(
            "the clients and PostgreSQL share them",
            f"{CLIENTS} clients on one event loop, asyncpg through SQLAlchemy",
        ),
    ]
    return "\n".join(lines) + "\n"


def run_all(cfg: Config, started: datetime) -> str:
    async def main() -> str:
        with private_servers("ledger") as (_root, _servers, db_url, _redis_url):
            out = await run(cfg, db_url)
        return report(cfg, out, started)

    import uvloop

    return uvloop.run(main())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.ledger", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 s rounds, one each")
    parser.add_argument("--seconds", type=float, default=None, help="per round (15)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--wait-quiet", type=int, default=0)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    cfg = Config(
        seconds=args.seconds or (3.0 if args.quick else 15.0),
        rounds=1 if args.quick else args.rounds,
        wait_quiet_s=args.wait_quiet,
        write=not args.no_write,
        command=" ".join(
            [".venv/bin/python -m bench.ledger", *(sys.argv[1:] if argv is None else argv)]
        ),
    )
    return run_and_report("ledger", lambda started: run_all(cfg, started), cfg.write)


if __name__ == "__main__":
    raise SystemExit(main())
