"""Structured JSON logs that never carry a phone number or a one-time code."""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

import structlog

from dispatch.identity.phones import PHONE_IN_TEXT

_SECRET_FIELDS = {"phone", "code", "otp", "password", "token", "access_token", "authorization"}
_SECRET_IN_TEXT = re.compile(
    r"\beyJ[\w-]{4,}\.[\w-]{4,}\.[\w-]{4,}"  # a JWT anywhere (a bearer or a stream token)
    r"|([?&](?:token|code|access_token)=)[^&\s\"']+",  # a secret in a query string
    re.IGNORECASE,
)
"""Secrets inside text: uvicorn's WebSocket line carries the path with `?token=` (browsers
cannot set headers on a WebSocket), and a stream URL may be logged whole."""


def _hidden(found: re.Match[str]) -> str:
    return (found.group(1) or "") + "[redacted]"


def _scrub_value(value: Any) -> Any:
    if isinstance(value, str):
        return PHONE_IN_TEXT.sub("[redacted]", _SECRET_IN_TEXT.sub(_hidden, value))
    if isinstance(value, dict):
        return {k: _scrub(k, v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub_value(v) for v in value]
    return value


def _scrub(key: str, value: Any) -> Any:
    if key.lower() in _SECRET_FIELDS:
        return "[redacted]"
    return _scrub_value(value)


def redact(_logger: Any, _method: str, event: dict[str, Any]) -> dict[str, Any]:
    return {k: v if k == "timestamp" else _scrub(k, v) for k, v in event.items()}


def configure_logging(level: str = "INFO") -> None:
    """Route stdlib and structlog through one JSON renderer with the redaction step last-but-one."""
    shared = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redact,
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.JSONRenderer()],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                redact,
                structlog.processors.JSONRenderer(),
            ],
            foreign_pre_chain=shared[:-1],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Access logs carry query strings (a phone could be in one): we log requests ourselves.
    logging.getLogger("uvicorn.access").disabled = True
    logging.getLogger("httpx").setLevel(logging.WARNING)


log = structlog.get_logger("dispatch")
