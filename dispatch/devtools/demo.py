"""`dispatch serve --demo` (`make demo`): a community busy by itself, for a newcomer to watch in
the operators' console within seconds of opening it.

The simulator is a client of the public HTTP API, like the apps. Its people are signed in the way
`dispatch token` signs people in for seeding (a token minted for a phone); everything else goes
over HTTP to the service itself (`PUBLIC_BASE_URL`): the admin creates the community and makes an
operator; `DEMO_WORKERS` workers fill in profiles, ask to be verified (the admin approves), set
their hours, go online and walk about reporting positions, now and then go off line and back,
take about 60 % of the offers their WebSocket streams bring and finish the jobs; a few residents
post a grab job every few seconds and a booking now and then. It runs as a task of the service
and stops with it. Seeding shows a progress bar on stderr.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from websockets.asyncio.client import connect

from dispatch.identity.auth import issue_token
from dispatch.identity.principals import handle_user, upsert_phone_user
from dispatch.infra.logs import log
from dispatch.infra.runtime import Runtime
from geo.areas import destination

DEMO_NAME = "Demo community (Jing'an, Shanghai)"
DEMO_CENTER = (31.2286, 121.4452)
DEMO_SKILLS = ["moving", "delivery", "pet_care", "plumbing", "electrical", "cleaning"]
DEMO_WORKERS = 200
DEMO_RESIDENTS = 5
OPERATOR_PHONE = "+8613800000099"
GRAB_EVERY_S = 3.0
BOOKING_EVERY_S = 30.0
MOVE_EVERY_S = 4.0
TAKE_SHARE = 0.6
ALL_WEEK = [{"day": d, "start": "00:00", "end": "24:00"}
            for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")]  # fmt: skip


def progress(done: int, total: int, what: str) -> None:
    width = 30
    filled = round(width * done / max(1, total))
    bar = "#" * filled + "-" * (width - filled)
    end = "\n" if done >= total else ""
    print(f"\rseeding the demo: [{bar}] {done}/{total} {what}", end=end, file=sys.stderr,
          flush=True)  # fmt: skip


class Demo:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.base = rt.settings.public_base_url.rstrip("/")
        self.rng = random.Random(7)
        self.http = httpx.AsyncClient(base_url=self.base, timeout=30)
        self.tokens: dict[int, str] = {}
        self.homes: dict[int, tuple[float, float]] = {}
        self.skills: dict[int, list[str]] = {}
        self.online: dict[int, bool] = {}

    def _mint(self, user_id: int, role: str, communities: list[int] | None = None) -> str:
        s = self.rt.settings.auth
        return issue_token(s.secret_key, user_id, role, communities, s.token_ttl_s)

    def h(self, user_id: int) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[user_id]}"}

    async def people(self) -> tuple[int, list[int], list[int]]:
        """The admin, residents and workers, signed in as `dispatch token` does."""
        rt = self.rt
        async with rt.sessions.begin() as session:
            admin = await handle_user(session, "cli-admin", "admin", [])
            residents = []
            for i in range(DEMO_RESIDENTS):
                phone = f"+86138000000{i + 1:02d}"
                residents.append(await upsert_phone_user(
                    session, rt.vault, phone, rt.vault.hash(phone), "resident"))  # fmt: skip
            workers = []
            for i in range(DEMO_WORKERS):
                phone = f"+8613900{i:06d}"
                workers.append(await upsert_phone_user(
                    session, rt.vault, phone, rt.vault.hash(phone), "worker"))  # fmt: skip
        self.tokens[admin] = self._mint(admin, "admin")
        for uid in residents:
            self.tokens[uid] = self._mint(uid, "resident")
        for uid in workers:
            self.tokens[uid] = self._mint(uid, "worker")
        return admin, residents, workers

    async def community(self, admin: int) -> int:
        at = {"lat": DEMO_CENTER[0], "lng": DEMO_CENTER[1]}
        r = await self.http.get("/v1/communities", params=at, headers=self.h(admin))
        r.raise_for_status()
        for c in r.json():
            if c["name"] == DEMO_NAME:
                return int(c["id"])
        body = {"name": DEMO_NAME, "center": {"lat": DEMO_CENTER[0], "lng": DEMO_CENTER[1]},
                "radius_m": 3000, "timezone": "Asia/Shanghai",
                "dispatch": {"offer_ttl_s": 20}}  # fmt: skip
        r = await self.http.post("/v1/communities", json=body, headers=self.h(admin))
        r.raise_for_status()
        return int(r.json()["id"])

    async def seed_worker(self, admin: int, uid: int, i: int, cid: int) -> None:
        skills = sorted(self.rng.sample(DEMO_SKILLS, k=self.rng.randint(1, 3)))
        self.skills[uid] = skills
        h = self.h(uid)
        profile = {"name": f"Demo worker {i + 1}", "skills": skills, "community_ids": [cid]}
        await self.http.put("/v1/workers/me", json=profile, headers=h)
        await self.http.post(
            "/v1/workers/me/verification",
            json={"legal_name": f"Demo Worker {i + 1}", "id_number": f"31010119900101{i:04d}"},
            headers=h,
        )
        await self.http.post(f"/v1/ops/workers/{uid}/verify", headers=self.h(admin))
        await self.http.put(
            "/v1/workers/me/availability",
            json={"weekly": ALL_WEEK, "min_notice_min": 0, "buffer_min": 10}, headers=h,
        )  # fmt: skip
        await self.http.post("/v1/workers/me/presence", json={"status": "online"}, headers=h)
        home = destination(*DEMO_CENTER, self.rng.uniform(0, 360), self.rng.uniform(0, 2500))
        self.homes[uid] = home
        self.online[uid] = True
        await self.http.post(
            "/v1/workers/me/location", json={"lat": home[0], "lng": home[1]}, headers=h
        )

    async def seed(self) -> tuple[int, list[int], list[int]]:
        for _ in range(300):  # the service answers once it has started
            with contextlib.suppress(httpx.HTTPError):
                if (await self.http.get("/healthz")).status_code == 200:
                    break
            await asyncio.sleep(0.2)
        admin, residents, workers = await self.people()
        cid = await self.community(admin)
        r = await self.http.post(
            "/v1/admin/operators", json={"phone": OPERATOR_PHONE, "community_ids": [cid]},
            headers=self.h(admin),
        )  # fmt: skip
        operator = int(r.json()["user_id"])
        done = 0
        for start in range(0, len(workers), 20):
            batch = workers[start : start + 20]
            await asyncio.gather(
                *(self.seed_worker(admin, uid, start + k, cid) for k, uid in enumerate(batch))
            )
            done += len(batch)
            progress(done, len(workers), "workers")
        print(
            f"demo community {cid} with {len(workers)} simulated workers\n"
            f"console:        {self.base}/ops/  (sign in with {OPERATOR_PHONE}: the code is in "
            f"the admin outbox; or paste the operator token)\n"
            f"operator token: {self._mint(operator, 'operator', [cid])}\n"
            f"admin token:    {self.tokens[admin]}\n"
            f"resident token: {self.tokens[residents[0]]}",
            file=sys.stderr, flush=True,
        )  # fmt: skip
        return cid, residents, workers

    # --- the simulation ----------------------------------------------------------------------

    async def walk(self, workers: list[int]) -> None:
        """Every few seconds each worker on line moves a little; a few go off line or back."""
        while True:
            for uid in workers:
                if self.rng.random() < 0.01:
                    self.online[uid] = not self.online[uid]
                    status = "online" if self.online[uid] else "offline"
                    with contextlib.suppress(httpx.HTTPError):
                        await self.http.post("/v1/workers/me/presence", json={"status": status},
                                             headers=self.h(uid))  # fmt: skip
                if not self.online[uid]:
                    continue
                lat, lng = self.homes[uid]
                here = destination(lat, lng, self.rng.uniform(0, 360), self.rng.uniform(0, 200))
                with contextlib.suppress(httpx.HTTPError):
                    await self.http.post(
                        "/v1/workers/me/location", json={"lat": here[0], "lng": here[1]},
                        headers=self.h(uid),
                    )  # fmt: skip
            await asyncio.sleep(MOVE_EVERY_S)

    async def work(self, uid: int) -> None:
        """A worker's stream: take some offers, a few seconds after they come, and finish."""
        url = self.base.replace("http", "ws", 1) + "/v1/workers/me/stream"
        while True:
            try:
                async with connect(f"{url}?token={self.tokens[uid]}") as ws:
                    async for raw in ws:
                        event = json.loads(raw)
                        if event.get("type") == "offer" and self.rng.random() < TAKE_SHARE:
                            asyncio.get_running_loop().create_task(self.take(uid, event))
            except Exception:  # the service restarting or stopping: try again shortly
                await asyncio.sleep(2)

    async def take(self, uid: int, event: dict[str, Any]) -> None:
        offer = event.get("offer") or {}
        await asyncio.sleep(self.rng.uniform(1, 4))
        with contextlib.suppress(httpx.HTTPError):
            r = await self.http.post(f"/v1/offers/{offer.get('id')}/accept", headers=self.h(uid))
            if r.status_code != 200:
                return
            job = r.json()
            await asyncio.sleep(self.rng.uniform(15, 40))
            await self.http.post(
                f"/v1/jobs/{job['id']}/complete",
                json={"assignment_version": job["assignment_version"]}, headers=self.h(uid),
            )  # fmt: skip

    async def post(self, residents: list[int]) -> None:
        """Residents post a grab job every few seconds and a booking now and then."""
        k, last_booking = 0, 0.0
        loop = asyncio.get_running_loop()
        while True:
            k += 1
            uid = residents[k % len(residents)]
            where = destination(*DEMO_CENTER, self.rng.uniform(0, 360), self.rng.uniform(0, 2500))
            skill = self.rng.choice(DEMO_SKILLS)
            body: dict[str, Any] = {
                "title": f"Demo {skill.replace('_', ' ')} job", "category": skill,
                "skills": [skill], "location": {"lat": where[0], "lng": where[1]},
                "mode": "grab", "price_cents": self.rng.randrange(3000, 20000, 500),
            }  # fmt: skip
            if loop.time() - last_booking > BOOKING_EVERY_S:
                last_booking = loop.time()
                start = (datetime.now(UTC) + timedelta(hours=self.rng.randint(3, 48))).replace(
                    minute=0, second=0, microsecond=0
                )
                body |= {"mode": "booking", "duration_min": 60,
                         "window": {"start": start.isoformat(),
                                    "end": (start + timedelta(hours=3)).isoformat()}}  # fmt: skip
            headers = {**self.h(uid), "Idempotency-Key": f"demo-{loop.time():.3f}-{k}"}
            with contextlib.suppress(httpx.HTTPError):
                await self.http.post("/v1/jobs", json=body, headers=headers)
            await asyncio.sleep(GRAB_EVERY_S)

    async def run(self) -> None:
        try:
            _, residents, workers = await self.seed()
            await asyncio.gather(
                self.walk(workers), self.post(residents), *(self.work(uid) for uid in workers)
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error("demo_failed", error=repr(exc))
        finally:
            await self.http.aclose()


async def seed_demo(rt: Runtime) -> None:
    """Start the simulated community beside the service (it stops with the service)."""
    rt.add_task(Demo(rt).run())
