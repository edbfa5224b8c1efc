"""`dispatch serve --demo`: a demo community with verified workers, and tokens to try it with."""

from __future__ import annotations

import random
import sys

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert

from dispatch.auth import issue_token
from dispatch.models import Community, Worker, WorkerCommunity
from dispatch.principals import handle_user, upsert_phone_user
from dispatch.runtime import Runtime

DEMO_NAME = "Demo community (Jing'an, Shanghai)"
DEMO_CENTER = (31.2286, 121.4452)
DEMO_SKILLS = ["moving", "delivery", "pet_care", "plumbing", "electrical", "cleaning"]
DEMO_WORKERS = 40


async def seed_demo(rt: Runtime) -> None:
    """Create the demo community and workers once; print an admin and a resident token."""
    rng = random.Random(7)
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
                )
                .on_conflict_do_nothing()
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
