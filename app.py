"""The ASGI application: `create_app(settings)` assembles it; `app` serves the environment's."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from pathlib import Path

from litestar import Litestar
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
from litestar.plugins.prometheus import PrometheusConfig, PrometheusController
from litestar.security.jwt import JWTAuth, Token
from litestar.static_files import create_static_files_router

from dispatch.booking import controllers as booking
from dispatch.communities import controllers as communities
from dispatch.grab import controllers as offers
from dispatch.grab import stream
from dispatch.identity import controllers as identity
from dispatch.identity.auth import (
    ALGORITHM,
    ISSUER,
    CachingJWTAuthenticationMiddleware,
    Principal,
    principal_from_token,
)
from dispatch.infra.idle_gc import IDLE_GC
from dispatch.infra.logs import configure_logging
from dispatch.infra.runtime import Runtime, freeze_startup_heap
from dispatch.infra.settings import Settings
from dispatch.jobs import controllers as jobs
from dispatch.money import controllers as money
from dispatch.ops import admin
from dispatch.ops import controllers as ops
from dispatch.safety import controllers as safety
from dispatch.trust import controllers as trust
from dispatch.web import health, openapi
from dispatch.web.deps import DEPENDENCIES
from dispatch.web.errors import EXCEPTION_HANDLERS
from dispatch.web.middleware import options_middleware, request_log_middleware
from dispatch.web.strict import strict_json_body
from dispatch.workers import controllers as workers
from notifications import controllers as notifications_api
from notifications.service import Notifications

CONSOLE_DIR = Path(__file__).parent / "ops_console" / "static"
"""The operators' console: static files, every script, style and image served from here."""
APP_DIR = Path(__file__).parent / "people_app" / "static"
"""The residents' and workers' installable web app (shell, service worker, manifest, icons)."""
PUBLIC_PATHS = [
    "/healthz", "/readyz", "/metrics", "/schema", "/v1/auth/", "/v1/telephony/",
    "/v1/push/vapid-public-key",
]  # fmt: skip


class MetricsController(PrometheusController):
    path = "/metrics"


def create_app(settings: Settings | None = None) -> Litestar:
    settings = (settings or Settings.from_env()).with_secret()
    configure_logging(settings.log_level)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncGenerator[None, None]:
        runtime = await Runtime.open(settings)
        app.state.runtime = runtime
        notifications = Notifications.open(runtime)
        app.state.notifications = notifications
        await runtime.start_background()
        notifications.start()
        if settings.demo:
            from dispatch.devtools.demo import seed_demo

            await seed_demo(runtime)
        freeze_startup_heap()
        IDLE_GC.start()
        try:
            yield
        finally:
            await IDLE_GC.stop()
            await runtime.close()
            await notifications.aclose()

    jwt = JWTAuth[Principal, Token](
        token_secret=settings.auth.secret_key,
        retrieve_user_handler=principal_from_token,
        algorithm=ALGORITHM,
        accepted_issuers=[ISSUER],
        exclude=PUBLIC_PATHS,
        exclude_opt_key="exclude_from_auth",
        authentication_middleware_class=CachingJWTAuthenticationMiddleware,
    )
    app = Litestar(
        route_handlers=[
            health.healthz,
            health.readyz,
            MetricsController,
            identity.request_otp,
            identity.exchange_code,
            identity.get_me,
            identity.put_me,
            communities.CommunityController,
            jobs.JobController,
            admin.list_outbox,
            admin.grant_operators,
            workers.WorkerSelfController,
            workers.verify_worker,
            workers.nearby,
            workers.rebuild_index,
            offers.my_offers,
            offers.accept_offer,
            offers.decline_offer,
            offers.jobs_nearby,
            offers.take_job,
            ops.OpsController,
            ops.ops_events,
            create_static_files_router(
                path="/ops",
                directories=[CONSOLE_DIR],
                html_mode=True,
                opt={"exclude_from_auth": True},
                name="ops_console",
            ),
            create_static_files_router(
                path="/app",
                directories=[APP_DIR],
                html_mode=True,
                opt={"exclude_from_auth": True},
                name="people_app",
                include_in_schema=False,
            ),
            stream.worker_stream,
            *booking.ROUTES,
            *safety.ROUTES,
            *money.ROUTES,
            *trust.ROUTES,
            *notifications_api.ROUTES,
        ],
        lifespan=[lifespan],
        dependencies={**DEPENDENCIES, **notifications_api.DEPENDENCIES},
        before_request=strict_json_body,
        on_app_init=[jwt.on_app_init],
        middleware=[
            IDLE_GC.middleware,
            request_log_middleware,
            options_middleware,
            PrometheusConfig(
                app_name="dispatch", prefix="dispatch", group_path=True, exclude=["/metrics"]
            ).middleware,
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        openapi_config=OpenAPIConfig(
            title="Dispatch",
            version="1",
            description="Geo-aware local odd-jobs dispatch",
            path="/schema",
            render_plugins=openapi.render_plugins(PUBLIC_PATHS),
            components=Components(
                security_schemes={
                    "BearerToken": SecurityScheme(type="http", scheme="bearer", bearer_format="JWT")
                }
            ),
        ),
        request_max_body_size=settings.max_body_bytes,
        debug=settings.debug,
        logging_config=None,
    )
    return app


def __getattr__(name: str) -> Litestar:
    # `app` is built on first access (`uvicorn app:app`), not at import, so importing
    # `create_app` reads no environment and writes no secret.
    if name == "app":
        globals()["app"] = built = create_app()
        return built
    raise AttributeError(name)
