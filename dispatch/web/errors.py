"""One mapping from failures to RFC 9457 problem details with a stable `code`.

A backing service that is down, restarting or saturated (PostgreSQL refusing or dropping
connections, the connection pool exhausted, Redis unreachable) is the service's condition, not
a defect and not the caller's error: 503 `service_unavailable` with `Retry-After`, so clients and
load balancers back off and retry, and nothing was half-written (each request is one
transaction)."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import msgspec
from asyncpg.exceptions import InterfaceError as PgInterfaceError
from asyncpg.exceptions import PostgresConnectionError, PostgresError
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import DataError, DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from dispatch.core.errors import DomainError, RateLimited
from dispatch.infra.db import sqlstate
from dispatch.infra.logs import log
from dispatch.web.schemas import Problem

PROBLEM_JSON = "application/problem+json"

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    503: "unavailable",
}


def problem(
    status: int,
    code: str,
    title: str,
    detail: str,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
    distance_m: float | None = None,
) -> Response[Any]:
    body = Problem(
        status=status, title=title, detail=detail, code=code, errors=errors,
        distance_m=distance_m,
    )  # fmt: skip
    return Response(
        content=msgspec.json.encode(body),
        status_code=status,
        media_type=PROBLEM_JSON,
        headers=headers,
    )


def domain_error(_: Request[Any, Any, Any], exc: DomainError) -> Response[Any]:
    headers = {"Retry-After": str(exc.retry_after_s)} if isinstance(exc, RateLimited) else None
    return problem(
        exc.status, exc.code, exc.title, exc.detail, headers=headers,
        distance_m=exc.extra.get("distance_m"),
    )  # fmt: skip


def validation_error(_: Request[Any, Any, Any], exc: ValidationException) -> Response[Any]:
    errors = exc.extra if isinstance(exc.extra, list) else None
    cleaned = [
        {k: v for k, v in e.items() if k in ("message", "key", "source")}
        for e in errors or []
        if isinstance(e, dict)
    ]
    detail = "; ".join(e.get("message", "") for e in cleaned if e.get("message")) or exc.detail
    return problem(400, "validation_error", "Invalid request", detail, errors=cleaned or None)


def http_error(_: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    status = exc.status_code
    code = _HTTP_CODES.get(status, "http_error" if status < 500 else "internal_error")
    headers = dict(exc.headers) if exc.headers else None
    title = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    return problem(status, code, title, str(exc.detail), headers=headers)


def undecodable_body(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    # msgspec raises these (not DecodeError) for invalid UTF-8 and absurdly deep nesting; only a
    # request body can carry either to us, so they are the client's error.
    log.info("undecodable_body", path=request.url.path, error=type(exc).__name__)
    return problem(400, "bad_request", "Bad request", "the request body could not be decoded")


RETRY_AFTER_S = 2
"""What a 503 asks callers to wait: a restart of PostgreSQL or Redis, or a burst that filled
the pool, is over within seconds."""

# SQLSTATE classes and codes that say the database cannot serve now: connection exceptions (08),
# insufficient resources (53: too many connections, out of memory), operator intervention (57:
# shutting down, starting up), and a transaction the database rolled back to break a deadlock or
# a serialization conflict (40P01, 40001): nothing of it was stored and the same request again
# succeeds.
_UNAVAILABLE_SQLSTATES = ("08", "53", "57P", "40P01", "40001")


def unavailable(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.warning("backend_unavailable", path=request.url.path, error=repr(exc))
    return problem(
        503, "service_unavailable", "Service unavailable",
        "a backing service is restarting or busy; try again shortly",
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )  # fmt: skip


def database_data_error(request: Request[Any, Any, Any], exc: DBAPIError) -> Response[Any]:
    if _is_unavailable(exc):
        return unavailable(request, exc)
    if _is_data_error(exc):
        # A value the database cannot hold (out of range, untranslatable): the transaction is
        # rolled back, nothing is stored, and the caller learns it was the input.
        return problem(
            400, "invalid_value", "Invalid value", "a value in the request is out of range"
        )
    return unexpected_error(request, exc)


def _is_data_error(exc: DBAPIError) -> bool:
    code = sqlstate(exc)
    return isinstance(exc, DataError) or (code is not None and code.startswith("22"))


def _driver_unavailable(err: BaseException | None) -> bool:
    """A driver's error (asyncpg's, or SQLAlchemy's adapted one) saying the database cannot
    serve now: a dropped or refused connection, or an SQLSTATE of `_UNAVAILABLE_SQLSTATES`."""
    code = getattr(err, "sqlstate", None)
    return isinstance(err, (OSError, PostgresConnectionError)) or (
        isinstance(code, str) and code.startswith(_UNAVAILABLE_SQLSTATES)
    )


def _is_unavailable(exc: DBAPIError) -> bool:
    """A dropped or refused connection, or a server that cannot serve now."""
    orig = getattr(exc, "orig", None)
    return (
        exc.connection_invalidated
        or _driver_unavailable(orig)
        or _driver_unavailable(getattr(orig, "__cause__", None))
    )


def raw_postgres_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """An error of asyncpg itself, from the few reads that use its connection directly (no
    SQLAlchemy to wrap it): a connection the server dropped (PostgreSQL restarted: `connection
    is closed`, SQLSTATE 08 or 57P) is 503 like any other outage; anything else is a defect."""
    if _driver_unavailable(exc) or (isinstance(exc, PgInterfaceError) and "closed" in str(exc)):
        return unavailable(request, exc)
    return unexpected_error(request, exc)


def unexpected_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.error("unhandled_error", path=request.url.path, error=repr(exc), exc_info=exc)
    return problem(500, "internal_error", "Internal error", "something went wrong on our side")


EXCEPTION_HANDLERS: dict[Any, Any] = {
    DomainError: domain_error,
    ValidationException: validation_error,
    HTTPException: http_error,
    UnicodeDecodeError: undecodable_body,
    RecursionError: undecodable_body,
    DBAPIError: database_data_error,
    PostgresError: raw_postgres_error,
    PgInterfaceError: raw_postgres_error,
    PoolTimeout: unavailable,
    RedisConnectionError: unavailable,
    RedisTimeoutError: unavailable,
    # OSError: a socket that is not there (PostgreSQL restarting removes its unix socket) or
    # refuses; the handlers touch no files of their own.
    OSError: unavailable,
    Exception: unexpected_error,
}
