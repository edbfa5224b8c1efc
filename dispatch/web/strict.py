"""JSON request bodies are decoded strictly, and only when they say they are JSON.

Litestar converts a handler's `data` with msgspec's lax rules (`strict=False`, needed for query
strings), so `"price_cents": "100"` or `"insured": "true"` became numbers and booleans, and a
body sent as `text/plain` or with no content type was decoded as JSON all the same. This hook runs
before each handler that takes a JSON body (`before_request`, ahead of Litestar's own parsing):
a body whose media type is not JSON is 415 `unsupported_media_type`; a body that does not match
the handler's type exactly (a string is not a number) is 400 `validation_error`, with the field.
Litestar then decodes the same cached bytes as before. The second decode costs about a
microsecond for a location ping (msgspec, a decoder built once per type).
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
from litestar import Request
from litestar.exceptions import ValidationException

from dispatch.core.errors import DomainError

_PATH = re.compile(r" - at `\$\.?([^`]*)`$")


class UnsupportedMediaType(DomainError):
    status = 415
    code = "unsupported_media_type"
    title = "Unsupported media type"


_decoders: dict[Any, msgspec.json.Decoder[Any]] = {}
"""One decoder per body type (handlers come and go with each app; their types stay)."""


def _decoder_for(request: Request[Any, Any, Any]) -> msgspec.json.Decoder[Any] | None:
    field = request.route_handler.parsed_fn_signature.parameters.get("data")
    if field is None:
        return None
    decoder = _decoders.get(field.annotation)
    if decoder is None:
        decoder = _decoders[field.annotation] = msgspec.json.Decoder(field.annotation)
    return decoder


def _integral(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_integral(v) for v in value]
    if isinstance(value, dict):
        return {k: _integral(v) for k, v in value.items()}
    return value


def _integral_floats_fit(plain: Any, decoder: msgspec.json.Decoder[Any]) -> bool:
    """`82.0` is the integer 82 in JSON (and in JSON Schema): a body whose only fault is such a
    number is accepted (Litestar's conversion reads it as 82)."""
    try:
        msgspec.convert(_integral(plain), decoder.type, strict=True)
    except (msgspec.ValidationError, TypeError, ValueError):
        return False
    return True


def is_json(media_type: str) -> bool:
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


async def strict_json_body(request: Request[Any, Any, Any]) -> None:
    decoder = _decoder_for(request)
    if decoder is None:
        return
    body = await request.body()
    if not body:
        return  # no body at all: Litestar's own answer (400, the body is required)
    media_type = request.content_type[0]
    if not is_json(media_type):
        raise UnsupportedMediaType(
            f"the body must be sent as application/json, not {media_type or 'no media type'}"
        )
    try:
        decoder.decode(body)
    except msgspec.ValidationError as exc:
        try:  # only on the error path: is it JSON at all? (nesting too deep, say)
            plain = msgspec.json.decode(body)
        except (msgspec.DecodeError, RecursionError, UnicodeDecodeError):
            return  # Litestar answers it (400 bad_request) as before
        if _integral_floats_fit(plain, decoder):
            return
        message = str(exc)
        found = _PATH.search(message)
        error: dict[str, Any] = {"message": _PATH.sub("", message), "source": "body"}
        if found and found.group(1):
            error["key"] = found.group(1)
        raise ValidationException(detail=message, extra=[error]) from exc
    except msgspec.DecodeError:
        return  # not JSON at all: Litestar answers it (400 bad_request) as before
