"""`dispatch serve --demo`: a demo community with verified workers who are online, move about
and take some of the offers they get, so a newcomer posting a job sees dispatch happen."""

from __future__ import annotations

import asyncio
import contextlib
import random
import sys
import time

import msgspec
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert

from dispatch.core.errors import DomainError
from dispatch.grab.dispatcher import AcceptAnswer
from dispatch.identity.auth import issue_token
from dispatch.identity.principal import Principal
from dispatch.identity.principals import handle_user, upsert_phone_user
from dispatch.infra.logs import log
from dispatch.infra.runtime import Runtime
from dispatch.jobs.queries import JobView
from dispatch.models import Community, Worker, WorkerCommunity
from geo.areas import destination
from geo.live import Fix

DEMO_NAME = "Demo community (Jing'an, Shanghai)"
DEMO_CENTER = (31.2286, 121.4452)
DEMO_SKILLS = ["moving", "delivery", "pet_care", "plumbing", "electrical", "cleaning"]
DEMO_WORKERS = 40


async def seed_demo(rt: Runtime) -> None:
    """Create the demo community and workers once; print an admin and a resident token; then
    keep the workers online (fresh positions every 30 s) and let them answer offers."""
    rng = random.Random(7)
    worker_ids: list[int] = []
    async with rt.sessions.begin() as session:
        community_id = await session.scalar(select(Community.id).where(Community.name == DEMO_NAME))
        if community_id is None:
            view = await rt.communities.create(
                session,
                name=DEMO_NAME,
                center=DEMO_CENTER,
                radius_m=3000,
                boundary=None,
                timezone="Asia/Shanghai",
                dispatch={"offer_ttl_s": 30},
            )
            community_id = view.id
        for i in range(DEMO_WORKERS):
            phone = f"+8613900{i:06d}"
            uid = await upsert_phone_user(session, rt.vault, phone, rt.vault.hash(phone), "worker")
            worker_ids.append(uid)
            skills = sorted(rng.sample(DEMO_SKILLS, k=rng.randint(1, 3)))
            await session.execute(
                insert(Worker)
                .values(
                    user_id=uid,
                    name=f"Demo worker {i + 1}",
                    skills=skills,
                    verification="verified",
                    rating_sum=0,
                    rating_count=0,
                    version=1,
                    online=True,
                )
                .on_conflict_do_update(index_elements=[Worker.user_id], set_={"online": True})
            )
            await session.execute(
                insert(WorkerCommunity)
                .values(worker_id=uid, community_id=community_id)
                .on_conflict_do_nothing()
            )
        admin = await handle_user(session, "cli-admin", "admin", [])
        resident_phone = "+8613800000001"
        resident = await upsert_phone_user(
            session, rt.vault, resident_phone, rt.vault.hash(resident_phone), "resident"
        )
    secret, ttl = rt.settings.auth.secret_key, rt.settings.auth.token_ttl_s
    print(
        f"demo community {community_id} with {DEMO_WORKERS} verified workers\n"
        f"admin token:    {issue_token(secret, admin, 'admin', None, ttl)}\n"
        f"resident token: {issue_token(secret, resident, 'resident', None, ttl)}",
        file=sys.stderr,
        flush=True,
    )

    for uid in worker_ids:
        async with rt.sessions() as session:
            await rt.workers.publish(session, uid)
    homes = {uid: destination(*DEMO_CENTER, rng.uniform(0, 360), rng.uniform(0, 2500))
             for uid in worker_ids}  # fmt: skip
    rt.add_task(_keep_moving(rt, homes, rng))
    rt.add_task(_answer_offers(rt, worker_ids, rng))


async def _keep_moving(
    rt: Runtime, homes: dict[int, tuple[float, float]], rng: random.Random
) -> None:
    """Each demo worker strolls around home, reporting a fix every 30 s."""
    while True:
        now = time.time()
        for uid, (lat, lng) in homes.items():
            here = destination(lat, lng, rng.uniform(0, 360), rng.uniform(0, 150))
            await rt.workers.report(Principal(uid, "worker"), [Fix(here[0], here[1], now)])
        await asyncio.sleep(30)


async def _answer_offers(rt: Runtime, worker_ids: list[int], rng: random.Random) -> None:
    """Every few seconds, some demo worker with a pending offer takes it (or says no)."""
    while True:
        await asyncio.sleep(3)
        async with rt.sessions() as session:
            pending = [
                (uid, o)
                for uid in worker_ids
                for o in await rt.dispatcher.pending_offers(session, uid)
            ]
        if not pending:
            continue
        uid, offer = rng.choice(pending)
        who = Principal(uid, "worker")
        with contextlib.suppress(DomainError):
            if rng.random() < 0.8:
                _, body = await rt.dispatcher.accept(who, offer.id, AcceptAnswer(_taken))
                job_id, version = msgspec.json.decode(body)
                log.info("demo_worker_took_job", worker_id=uid, job_id=job_id)
                await asyncio.sleep(20)
                await rt.dispatcher.complete(who, job_id, version)
            else:
                await rt.dispatcher.decline(who, offer.id)


def _taken(view: JobView) -> bytes:
    """What the demo keeps of a job it took: its id and assignment version."""
    return msgspec.json.encode([view.job.id, view.job.assignment_version])
