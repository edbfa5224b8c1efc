"""Test session: private PostgreSQL+PostGIS and Redis started through the service's own launcher,
migrated once; each test gets clean tables, a fresh app, and an HTTP client that fails the test if
any response carries a phone number."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
import uvicorn
from litestar import Litestar
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from app import create_app
from dispatch.devtools.local_servers import LocalServers
from dispatch.identity.auth import issue_token
from dispatch.identity.phones import PhoneVault
from dispatch.identity.principals import handle_user, upsert_phone_user
from dispatch.infra.db import make_engine, make_sessionmaker, migrate
from dispatch.infra.settings import AuthSettings, Settings, StorageSettings
from dispatch.models import all_tables
from dispatch.money.ledger import problems as ledger_problems
from tests.processes import forget_started, free_port, kill_leftovers
from tests.redis_mode import CLUSTER, flush_all, open_test_redis

TEST_SECRET = "test-secret-key-not-for-production"
E164_ANYWHERE = re.compile(rb"\+[1-9]\d{6,14}")
PROXY_PREFIX = b"+1202555"
"""Tests give masked-number pools numbers starting with this: they are the platform's numbers,
shown to a job's participants by design, never a person's."""


@pytest.fixture(scope="session")
def server_urls() -> Iterator[tuple[str, str]]:
    """(database_url, redis_url): given by TEST_DATABASE_URL/TEST_REDIS_URL, or private servers."""
    db, redis = os.environ.get("TEST_DATABASE_URL"), os.environ.get("TEST_REDIS_URL")
    if db and redis:
        migrate(db)
        yield db, redis
        return
    root = Path(tempfile.mkdtemp(prefix="dispatch-test-"))
    root.chmod(0o755)  # the unprivileged server user must reach its directory
    servers = LocalServers(root, durable=False, redis_mode="cluster" if CLUSTER else "single")
    try:
        db, redis = servers.start()
        migrate(db)
        yield db, redis
    finally:
        servers.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def base_settings(
    server_urls: tuple[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Settings:
    db, redis = server_urls
    return Settings(
        data_dir=tmp_path_factory.mktemp("data"),
        storage=StorageSettings(
            database_url=db, redis_url=redis, redis_cluster=CLUSTER, pool_size=5
        ),
        auth=AuthSettings(secret_key=TEST_SECRET),
        public_base_url="http://testserver",
        log_level="INFO",
        # Test phones are +86 and tests read English texts; tests/notifications/test_locale.py
        # runs the service's default (`auto`: Chinese for +86).
        default_locale="en",
    )


@pytest.fixture
def settings(base_settings: Settings) -> Settings:
    return base_settings


@pytest.fixture(scope="session")
async def engine(server_urls: tuple[str, str]) -> AsyncIterator[AsyncEngine]:
    eng = make_engine(server_urls[0], pool_size=2)
    yield eng
    await eng.dispose()


@pytest.fixture(scope="session")
async def redis(server_urls: tuple[str, str]) -> AsyncIterator[Redis]:
    client = open_test_redis(server_urls[1])
    yield client
    await client.aclose()


@pytest.fixture(autouse=True)
def _no_process_left() -> Iterator[None]:
    """A test that fails half-way must not leave a service running past the session."""
    yield
    kill_leftovers()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    """A failed test's report carries, for each service process it started, its exit status
    and the end of its log."""
    report = yield
    if report.failed:
        for n, described in enumerate(forget_started()):
            report.sections.append((f"service process {n + 1}", described))
    elif call.when == "teardown":
        forget_started()
    return report


_EMPTY: str | None = None


async def empty_state(engine: AsyncEngine, redis: Redis) -> None:
    """Empty every table of the service and Redis, and start every sequence again (ids from 1),
    as `TRUNCATE ... RESTART IDENTITY` would: what every test starts from.

    A DELETE of every table, in one script and one round trip, with foreign keys not checked
    (`session_replication_role = replica`: the tables are emptied all at once, so no reference
    is left dangling; the schema has no triggers that this would skip). A test's tables hold a
    few rows, and TRUNCATE of the 31 tables gives each table and index a new file: 200-270 ms a
    test, against 2-3 ms this way (30 ms the first time), measured on the suite's servers: over
    1,000 tests, ~3 minutes of the suite's time."""
    global _EMPTY
    async with engine.connect() as conn:
        raw = (await conn.get_raw_connection()).driver_connection
        if _EMPTY is None:
            sequences = await raw.fetch(
                "SELECT format('%I.%I', schemaname, sequencename) AS name, start_value "
                "FROM pg_sequences WHERE schemaname = current_schema()"
            )
            tables = [t.name for t in all_tables().metadata.sorted_tables]
            _EMPTY = "\n".join(
                [
                    "BEGIN;",
                    "SET LOCAL session_replication_role = replica;",
                    *(f'DELETE FROM "{name}";' for name in reversed(tables)),  # noqa: S608
                    *(
                        f"SELECT setval('{s['name']}', {s['start_value']}, false);"
                        for s in sequences
                    ),
                    "COMMIT;",
                ]
            )
        await raw.execute(_EMPTY)
    await flush_all(redis)


@pytest.fixture
async def clean_state(engine: AsyncEngine, redis: Redis) -> None:
    """Empty every table and Redis; every fixture that hands out the app or users requests it."""
    await empty_state(engine, redis)


def _no_phone_in(response: httpx.Response) -> None:
    # The service never returns a person's phone number: not the caller's own, not anyone else's.
    # Proxy numbers are the platform's. The voice webhook's answer goes to the phone provider,
    # not to a person, and must name the number to bridge to: its tests check it by hand.
    if response.request.url.path == "/v1/telephony/voice":
        return
    body = response.read()
    for found in E164_ANYWHERE.finditer(body):
        leaked = found.group(0)
        assert leaked.startswith(PROXY_PREFIX), (
            f"{response.request.url.path} leaked a phone number: {leaked!r}"
        )


async def _scan(response: httpx.Response) -> None:
    await response.aread()
    _no_phone_in(response)


@pytest.fixture
async def app(
    settings: Settings, clean_state: None, engine: AsyncEngine
) -> AsyncIterator[Litestar]:
    """The app, started; after the test, the ledger must still add up (every test that moves
    money runs through here)."""
    async with started_app(settings, engine) as application:
        yield application


_APPS: dict[Settings, Litestar] = {}


def app_for(settings: Settings) -> Litestar:
    """The app for these settings, built once per test process and started afresh by each test
    (its lifespan opens a new runtime: pools, Redis, timers, caches; the app object itself holds
    only routes and middleware, whose one cache, of verified tokens, depends on nothing but the
    token). Building it registers some 200 handlers and parses their signatures: 90-200 ms, a
    fifth of a typical test's time, measured on this machine. Settings that cannot be hashed
    get a new app."""
    try:
        application = _APPS.get(settings)
    except TypeError:
        return create_app(settings)
    if application is None:
        application = _APPS[settings] = create_app(settings)
    return application


@contextlib.asynccontextmanager
async def started_app(settings: Settings, engine: AsyncEngine) -> AsyncIterator[Litestar]:
    """An app with its lifespan running in a task of its own; once it has stopped, the ledger
    must still add up."""
    application = app_for(settings)
    started, stop = asyncio.Event(), asyncio.Event()

    async def serve() -> None:
        # The lifespan's cancel scope must be entered and left by one task.
        async with application.lifespan():
            started.set()
            await stop.wait()

    task = asyncio.create_task(serve())
    ready = asyncio.create_task(started.wait())
    await asyncio.wait([task, ready], return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        ready.cancel()
        task.result()
    try:
        yield application
    finally:
        stop.set()
        await task
    async with make_sessionmaker(engine)() as session:
        assert await ledger_problems(session) == [], "the ledger does not add up"


@pytest.fixture
async def served_base(app: Litestar) -> AsyncIterator[str]:
    """The test's app (its lifespan already started) on a real socket, as `dispatch serve`
    serves it: for streams, which the in-process transport would buffer to the end."""
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, lifespan="off", log_config=None, access_log=False,
        ws="websockets-sansio", timeout_graceful_shutdown=2,  # event streams never end
    )  # fmt: skip
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    deadline = time.monotonic() + 30
    while not server.started:
        assert not task.done(), "uvicorn exited at start-up"
        assert time.monotonic() < deadline, "uvicorn did not start"
        await asyncio.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await asyncio.wait_for(task, 30)


@pytest.fixture
async def client(app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=("10.0.0.1", 40000))
    async with httpx.AsyncClient(
        transport=transport, base_url="http://testserver", event_hooks={"response": [_scan]}
    ) as c:
        yield c


class Principals:
    """Creates users and hands out bearer headers for them."""

    def __init__(self, settings: Settings, engine: AsyncEngine) -> None:
        self.settings = settings
        self.sessions = make_sessionmaker(engine)
        self.vault = PhoneVault(settings.auth.secret_key)
        self._phones = 0

    def next_phone(self) -> str:
        self._phones += 1
        return f"+86139{self._phones:08d}"

    async def user(self, role: str, phone: str | None = None) -> tuple[int, dict[str, str]]:
        async with self.sessions.begin() as session:
            if role in ("resident", "worker"):
                phone = phone or self.next_phone()
                uid = await upsert_phone_user(
                    session, self.vault, phone, self.vault.hash(phone), role
                )
                token = issue_token(TEST_SECRET, uid, role)
            else:
                raise ValueError("use admin() or operator()")
        return uid, {"Authorization": f"Bearer {token}"}

    async def admin(self) -> dict[str, str]:
        async with self.sessions.begin() as session:
            uid = await handle_user(session, "test-admin", "admin", [])
        return {"Authorization": f"Bearer {issue_token(TEST_SECRET, uid, 'admin')}"}

    async def operator(self, *community_ids: int) -> dict[str, str]:
        async with self.sessions.begin() as session:
            handle = "test-operator-" + "-".join(map(str, community_ids))
            uid = await handle_user(session, handle, "operator", list(community_ids))
        token = issue_token(TEST_SECRET, uid, "operator", list(community_ids))
        return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def principals(settings: Settings, engine: AsyncEngine, clean_state: None) -> Principals:
    return Principals(settings, engine)


def with_auth(settings: Settings, **changes: object) -> Settings:
    """Settings with some AuthSettings fields changed (for OTP limits in tests)."""
    return replace(settings, auth=replace(settings.auth, **changes))
