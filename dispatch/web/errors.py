"""One mapping from failures to RFC 9457 problem details with a stable `code`."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from sqlalchemy.exc import DataError, DBAPIError

from dispatch.core.errors import DomainError, RateLimited
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


def database_data_error(request: Request[Any, Any, Any], exc: DBAPIError) -> Response[Any]:
    if _is_data_error(exc):
        # A value the database cannot hold (out of range, untranslatable): the transaction is
        # rolled back, nothing is stored, and the caller learns it was the input.
        return problem(
            400, "invalid_value", "Invalid value", "a value in the request is out of range"
        )
    return unexpected_error(request, exc)


def _is_data_error(exc: DBAPIError) -> bool:
    orig = getattr(exc, "orig", None)
    sqlstate = getattr(orig, "sqlstate", None) or getattr(
        getattr(orig, "__cause__", None), "sqlstate", None
    )
    return isinstance(exc, DataError) or (isinstance(sqlstate, str) and sqlstate.startswith("22"))


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
    Exception: unexpected_error,
}
