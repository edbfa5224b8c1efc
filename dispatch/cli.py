"""The `dispatch` command: serve, migrate, token."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from dispatch.infra.settings import Settings


@contextmanager
def database_url(settings: Settings) -> Iterator[str]:
    """`DATABASE_URL`, or the private server's (started for the duration if not running)."""
    if settings.storage.database_url:
        yield settings.storage.database_url
        return
    from dispatch.devtools.local_servers import LocalPostgres
    from dispatch.infra.db import migrate

    home = settings.data_dir.resolve()
    pg = LocalPostgres(home / "servers" / "pg", home=home)
    url = pg.start()
    try:
        migrate(url)
        yield url
    finally:
        pg.stop()


_UVICORN = {
    "log_config": None,
    "access_log": False,
    "loop": "uvloop",
    "http": "httptools",
    "ws": "websockets-sansio",
    "timeout_graceful_shutdown": 10,
    # Longer than the usual load-balancer idle timeout (60 s), so a pooled connection is never
    # closed by us just as a client reuses it.
    "timeout_keep_alive": 75,
}


def uvicorn_options(trusted_proxies: tuple[str, ...] = ()) -> dict[str, Any]:
    """uvicorn's settings for us. Forwarding headers (`X-Forwarded-For`, `-Proto`) are believed
    only from the proxies named in `TRUSTED_PROXIES`: uvicorn's default trusts 127.0.0.1, so any
    local client could reset its own rate limits by naming another address."""
    if not trusted_proxies:
        return {**_UVICORN, "proxy_headers": False}
    return {**_UVICORN, "proxy_headers": True, "forwarded_allow_ips": list(trusted_proxies)}


def run_server(
    app: Any,
    host: str,
    port: int,
    log_level: str | None = None,
    trusted_proxies: tuple[str, ...] = (),
) -> None:
    """Serve an ASGI app in this process the way `dispatch serve` does (one uvicorn process;
    the benchmarks start their servers through this too)."""
    import uvicorn

    options = uvicorn_options(trusted_proxies)
    uvicorn.run(app, host=host, port=port, log_level=log_level, **options)


def run_servers(
    make_app: Callable[[], Any],
    host: str,
    port: int,
    processes: int,
    log_level: str | None = None,
    trusted_proxies: tuple[str, ...] = (),
) -> int:
    """`dispatch serve --processes N`: N uvicorn processes accepting on one listening socket,
    each with its own app (built after the fork: its own pools, caches and event loop). The
    parent only supervises: SIGTERM/SIGINT go to every child; when one child exits, the others
    are stopped too, and the exit status is the first child's that failed (0 if none did)."""
    if processes <= 1:
        run_server(make_app(), host, port, log_level, trusted_proxies)
        return 0
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    children: list[int] = []
    for _ in range(processes):
        pid = os.fork()
        if pid == 0:  # the child: serve until told to stop
            status = 1
            try:
                options = uvicorn_options(trusted_proxies)
                config = uvicorn.Config(make_app(), log_level=log_level, **options)
                uvicorn.Server(config).run(sockets=[sock])
                status = 0
            finally:
                os._exit(status)
        children.append(pid)
    sock.close()

    sent: set[int] = set()

    def forward(signum: int, _frame: object) -> None:
        sent.add(signum)
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    failed = 0
    running = set(children)
    while running:
        pid, status = os.wait()
        running.discard(pid)
        code = os.waitstatus_to_exitcode(status)
        # uvicorn re-raises the signal it stopped on: ending by one we sent is a clean stop.
        if code != 0 and -code not in sent and not failed:
            failed = code if code > 0 else 128 - code
        if running:  # one is gone: stop the others (a supervisor restarts the whole service)
            forward(signal.SIGTERM, None)
    return failed


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from dataclasses import replace

    from app import create_app

    if args.demo and args.processes > 1:
        print("--demo seeds once, from one process: use it with --processes 1", file=sys.stderr)
        return 2
    served = replace(settings, demo=args.demo)
    if not os.environ.get("PUBLIC_BASE_URL"):
        # Where this server answers, for what it links to itself (the demo talks to it there).
        host = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host  # noqa: S104
        served = replace(served, public_base_url=f"http://{host}:{args.port}")
    return run_servers(
        lambda: create_app(served),
        args.host,
        args.port,
        args.processes,
        trusted_proxies=settings.trusted_proxies,
    )


def cmd_migrate(_: argparse.Namespace, settings: Settings) -> int:
    from dispatch.infra.db import migrate

    with database_url(settings) as url:
        if settings.storage.database_url:
            migrate(url)
    print("migrated", file=sys.stderr)
    return 0


def cmd_token(args: argparse.Namespace, settings: Settings) -> int:
    # The arguments are checked before the database's modules are imported (1.7 s of the
    # 3 s a refusal took): a mistyped command answers at once.
    from dispatch.identity.phones import InvalidPhone, PhoneVault, normalize_phone

    role: str = args.role
    phones: list[str] = args.phone or []
    communities: list[int] = args.community or []
    if role in ("resident", "worker") and not phones:
        print(f"--role {role} needs at least one --phone", file=sys.stderr)
        return 2
    if role in ("admin", "operator") and phones:
        print(f"--phone is for residents and workers, not {role}s", file=sys.stderr)
        return 2
    if role == "operator" and not communities:
        print("--role operator needs at least one --community", file=sys.stderr)
        return 2
    try:
        phones = [normalize_phone(p, settings.phone_region) for p in phones]
    except InvalidPhone:
        print(f"not valid phone numbers among the {len(phones)} given", file=sys.stderr)
        return 2
    from dispatch.identity.auth import issue_token
    from dispatch.identity.locale import locale_for_phone
    from dispatch.identity.principals import handle_user, upsert_phone_user
    from dispatch.infra.db import make_engine, make_sessionmaker

    settings = settings.with_secret()
    vault = PhoneVault(settings.auth.secret_key)
    ttl = settings.auth.token_ttl_s if args.ttl is None else args.ttl

    async def make(url: str) -> list[str]:
        engine = make_engine(url, pool_size=1)
        try:
            async with make_sessionmaker(engine).begin() as session:
                if role in ("admin", "operator"):
                    handle = (
                        "cli-admin"
                        if role == "admin"
                        else "cli-operator-" + "-".join(str(c) for c in sorted(set(communities)))
                    )
                    uid = await handle_user(session, handle, role, sorted(set(communities)))
                    scope = sorted(set(communities)) if role == "operator" else None
                    return [issue_token(settings.auth.secret_key, uid, role, scope, ttl)]
                tokens = []
                for phone in phones:
                    uid = await upsert_phone_user(
                        session, vault, phone, vault.hash(phone), role,
                        default_locale=locale_for_phone(phone, settings.default_locale),
                    )  # fmt: skip
                    tokens.append(issue_token(settings.auth.secret_key, uid, role, None, ttl))
                return tokens
        finally:
            await engine.dispose()

    from dispatch.core.errors import DomainError

    with database_url(settings) as url:
        try:
            tokens = asyncio.run(make(url))
        except DomainError as exc:
            print(f"{exc.code}: {exc.detail}", file=sys.stderr)
            return 1
    for token in tokens:
        print(token)
    return 0


def _positive_seconds(raw: str) -> int:
    """A token lifetime: a whole number of seconds, at least 1 (argparse prints the refusal on
    one line and exits with 2)."""
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number of seconds: {raw!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 second, not {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dispatch", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--demo", action="store_true", help="also seed a demo community with workers"
    )
    serve.add_argument(
        "--processes",
        type=int,
        default=1,
        help="server processes sharing the port (default 1); each keeps its own caches",
    )
    serve.set_defaults(func=cmd_serve)

    migrate = sub.add_parser("migrate", help="apply database migrations")
    migrate.set_defaults(func=cmd_migrate)

    token = sub.add_parser("token", help="print bearer tokens, one per line")
    token.add_argument("--role", required=True, choices=["admin", "operator", "resident", "worker"])
    token.add_argument("--community", type=int, action="append", help="operator scope (repeatable)")
    token.add_argument(
        "--phone", action="append", help="E.164 phone of a resident or worker (repeatable)"
    )
    token.add_argument("--ttl", type=_positive_seconds, help="token lifetime in seconds")
    token.set_defaults(func=cmd_token)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args, Settings.from_env()))


if __name__ == "__main__":
    raise SystemExit(main())
