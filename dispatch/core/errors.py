"""Domain errors. Services raise these; the app maps them to problem-details answers once."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """A failure the caller caused or must handle, with a stable machine-readable `code`."""

    status = 400
    code = "bad_request"
    title = "Bad request"

    def __init__(self, detail: str = "", *, code: str | None = None, **extra: Any) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        if code is not None:
            self.code = code
        self.extra = extra


class ValidationFailed(DomainError):
    status = 400
    code = "validation_error"
    title = "Invalid request"


class Unprocessable(DomainError):
    status = 422
    code = "unprocessable"
    title = "Request cannot be carried out"


class Unauthorized(DomainError):
    status = 401
    code = "unauthorized"
    title = "Not signed in"


class Forbidden(DomainError):
    status = 403
    code = "forbidden"
    title = "Not allowed"


class NotFound(DomainError):
    status = 404
    code = "not_found"
    title = "Not found"


class Conflict(DomainError):
    status = 409
    code = "conflict"
    title = "Conflict"


class Gone(DomainError):
    status = 410
    code = "gone"
    title = "No longer available"


class RateLimited(DomainError):
    status = 429
    code = "rate_limited"
    title = "Too many requests"

    def __init__(self, detail: str = "", *, retry_after_s: int, **extra: Any) -> None:
        super().__init__(detail, **extra)
        self.retry_after_s = max(1, int(retry_after_s))


class WorkerUnavailable(Conflict):
    """A booking's slot cannot be the worker's (taken meanwhile, or outside their hours)."""

    code = "worker_unavailable"
