"""The service as `dispatch serve` runs it, plus two no-op routes to compare the ping routes with.

    DATABASE_URL=… REDIS_URL=… DISPATCH_SECRET_KEY=… .venv/bin/python -m bench.serve --port 8123

Settings come from the environment exactly as for `dispatch serve` (`Settings.from_env()`), except
the log level, WARNING unless `--log-level` says otherwise, so logging does not dominate the cost.
One uvicorn process (uvloop, httptools, no access log), as `dispatch.cli.cmd_serve` starts it;
`--processes N`: N of them on one port, as `dispatch serve --processes N` runs them.

The extra routes go through the same app middleware (request log, Prometheus) and the same JWT
authentication middleware as every real route:

    GET  /bench/noop       excluded from auth (`opt={"exclude_from_auth": True}`) → 204
    POST /bench/noop-auth  needs a valid bearer token and the worker role, like the ping
                           routes (the body is not read) → 204
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from litestar import Litestar, Request, get, post
from litestar.handlers import HTTPRouteHandler

from app import create_app
from dispatch.identity.auth import workers_only
from dispatch.infra.settings import Settings
from dispatch.web.deps import principal_of


def bench_routes() -> list[HTTPRouteHandler]:
    @get(
        "/bench/noop",
        status_code=204,
        opt={"exclude_from_auth": True},
        include_in_schema=False,
    )
    async def noop() -> None:
        return None

    @post("/bench/noop-auth", status_code=204, guards=[workers_only], include_in_schema=False)
    async def noop_auth(request: Request[Any, Any, Any]) -> None:
        principal_of(request)

    return [noop, noop_auth]


def build_app(settings: Settings) -> Litestar:
    """`create_app(settings)` with the no-op routes registered on it."""
    app = create_app(settings)
    for handler in bench_routes():
        app.register(handler)
    return app


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.serve", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log-level", default="WARNING")
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        help="more than 1: serve as `dispatch serve --processes N` does (dispatch.cli.run_servers)",
    )
    args = parser.parse_args(argv)

    import uvicorn

    settings = replace(Settings.from_env(), log_level=args.log_level.upper())
    if args.processes > 1:
        from dispatch.cli import run_servers

        return run_servers(
            lambda: build_app(settings), args.host, args.port, args.processes,
            args.log_level.lower(),
        )  # fmt: skip
    app = build_app(settings)
    # As dispatch.cli.cmd_serve, plus uvicorn's own loggers at the same level.
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_config=None,
        log_level=args.log_level.lower(),
        access_log=False,
        loop="uvloop",
        http="httptools",
        ws="websockets",
        timeout_graceful_shutdown=10,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
