"""The OpenAPI document at `/schema/openapi.json`, made to tell the truth.

Litestar generates the document from the handlers, and in places it says what the service does
not do: errors as `application/json` in Litestar's own shape (we answer RFC 9457 problem
details), no 401/403/404/409/422/429 at all, request bodies that allow extra properties
(our Structs forbid them), list items without their constraints, 64-bit limits as floats
(`9.223372036854776e+18`), and the public probes under the bearer scheme. Clients generate code
from this document, so it is corrected once, when the app starts:

- body and response schemas are msgspec's own (`msgspec.json.schema_components`): msgspec is
  what decodes and encodes them, so its schema is exact (unknown fields forbidden, item
  constraints, integer bounds as integers);
- every operation lists the errors it can answer, each as `application/problem+json` with the
  `Problem` schema: the ones its shape implies (400 for parameters or a body, 401/403 behind
  the bearer, 404 for a path id, 413/415 for a body) plus those its rules raise (`ERRORS`);
- operations outside the bearer scheme say so (`security: []`);
- headers the service requires are required (`REQUIRED_HEADERS`).

The correction happens where Litestar hands the document to its render plugins (ours subclass
its JSON and ReDoc renderers), the first time it is asked for.
"""

from __future__ import annotations

import typing
from collections.abc import Iterable
from http import HTTPStatus
from typing import Any

import msgspec
from litestar import Litestar, Request, Response
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.plugins import JsonRenderPlugin, RedocRenderPlugin
from litestar.routes import HTTPRoute

from dispatch.infra.idempotency import MAX_KEY_LENGTH
from dispatch.web.errors import PROBLEM_JSON
from dispatch.web.schemas import MAX_ID, Problem
from dispatch.web.strict import is_json

Operation = tuple[str, str]  # (METHOD, path as in the document)

ERRORS: dict[Operation, tuple[int, ...]] = {
    ("GET", "/healthz"): (),
    ("GET", "/readyz"): (503,),
    ("GET", "/metrics"): (),
    ("POST", "/v1/auth/otp"): (409, 422, 429),
    ("POST", "/v1/auth/token"): (401, 403, 409, 422),
    ("GET", "/v1/me"): (),
    ("PUT", "/v1/me"): (422,),
    ("GET", "/v1/communities"): (),
    ("POST", "/v1/communities"): (422,),
    ("GET", "/v1/communities/{community_id}"): (),
    ("GET", "/v1/communities/{community_id}/proxy-numbers"): (),
    ("POST", "/v1/communities/{community_id}/proxy-numbers"): (409, 422),
    ("GET", "/v1/jobs"): (),
    ("POST", "/v1/jobs"): (404, 409, 422),
    ("GET", "/v1/jobs/{job_id}"): (),
    ("POST", "/v1/jobs/{job_id}/cancel"): (409, 422),
    ("POST", "/v1/jobs/{job_id}/complete"): (409, 422),
    ("POST", "/v1/jobs/{job_id}/confirm"): (409,),
    ("POST", "/v1/jobs/{job_id}/dispute"): (409,),
    ("POST", "/v1/ops/jobs/{job_id}/resolve"): (409,),
    ("GET", "/v1/jobs/{job_id}/materials"): (),
    ("POST", "/v1/jobs/{job_id}/materials"): (409, 422),
    ("POST", "/v1/jobs/{job_id}/materials/{change_id}/approve"): (409,),
    ("POST", "/v1/jobs/{job_id}/materials/{change_id}/decline"): (409,),
    ("GET", "/v1/jobs/{job_id}/claims"): (),
    ("POST", "/v1/jobs/{job_id}/claims"): (409, 422),
    ("POST", "/v1/ops/claims/{claim_id}/approve"): (409, 422),
    ("POST", "/v1/ops/claims/{claim_id}/reject"): (409,),
    ("GET", "/v1/jobs/{job_id}/ledger"): (),
    ("POST", "/v1/jobs/{job_id}/reviews"): (409,),
    ("GET", "/v1/jobs/{job_id}/reviews"): (),
    ("GET", "/v1/workers/{worker_id}/reviews"): (),
    ("GET", "/v1/push/vapid-public-key"): (404,),
    ("GET", "/v1/ops/communities/{community_id}/worker-trust"): (404,),
    ("GET", "/v1/workers/me/earnings"): (),
    ("GET", "/v1/workers/me/payouts"): (),
    ("POST", "/v1/workers/me/payouts"): (422,),
    ("GET", "/v1/jobs/{job_id}/messages"): (),
    ("POST", "/v1/jobs/{job_id}/messages"): (409, 429),
    ("GET", "/v1/admin/outbox"): (422,),
    ("POST", "/v1/admin/operators"): (404, 422),
    ("GET", "/v1/workers/me"): (404,),
    ("PUT", "/v1/workers/me"): (422,),
    ("POST", "/v1/workers/me/verification"): (409,),
    ("POST", "/v1/workers/me/presence"): (409,),
    ("POST", "/v1/workers/me/location"): (409, 422, 429),
    ("POST", "/v1/workers/me/locations"): (409, 422, 429),
    ("GET", "/v1/workers/me/offers"): (),
    ("GET", "/v1/workers/nearby"): (404, 422),
    ("GET", "/v1/workers/me/push-subscriptions"): (),
    ("POST", "/v1/workers/me/push-subscriptions"): (422,),
    ("DELETE", "/v1/workers/me/push-subscriptions"): (404,),
    ("POST", "/v1/offers/{offer_id}/accept"): (409, 410, 422),
    ("POST", "/v1/offers/{offer_id}/decline"): (409, 410),
    ("GET", "/v1/workers/me/jobs-nearby"): (409,),
    ("POST", "/v1/jobs/{job_id}/take"): (409, 410, 422),
    ("POST", "/v1/ops/workers/{worker_id}/verify"): (),
    ("POST", "/v1/ops/communities/{community_id}/rebuild-index"): (409,),
    ("GET", "/v1/ops/communities/{community_id}/alerts"): (),
    ("POST", "/v1/ops/alerts/{alert_id}/ack"): (),
    ("POST", "/v1/ops/communities/{community_id}/stream-token"): (),
    ("GET", "/v1/ops/communities/{community_id}/snapshot"): (),
    ("GET", "/v1/ops/communities/{community_id}/verifications"): (),
    ("GET", "/v1/ops/communities/{community_id}/outbox"): (),
    ("GET", "/v1/ops/communities/{community_id}/events"): (401, 403),
    ("POST", "/v1/ops/jobs/{job_id}/assign"): (409, 422),
    ("GET", "/v1/ops/jobs/{job_id}/dispatch-log"): (),
    ("POST", "/v1/ops/jobs/{job_id}/replay"): (),
    ("GET", "/v1/workers/me/availability"): (404,),
    ("PUT", "/v1/workers/me/availability"): (409, 422),
    ("GET", "/v1/workers/me/calendar"): (422,),
    ("GET", "/v1/bookings/candidates"): (404, 422),
    ("POST", "/v1/jobs/{job_id}/reschedule"): (409, 422),
    ("POST", "/v1/jobs/{job_id}/reschedule/accept"): (409,),
    ("POST", "/v1/jobs/{job_id}/reschedule/decline"): (409,),
    ("POST", "/v1/jobs/{job_id}/start"): (409, 422),
    ("POST", "/v1/jobs/{job_id}/checkins"): (409, 422),
    ("POST", "/v1/jobs/{job_id}/sos"): (),
    ("GET", "/v1/jobs/{job_id}/safety"): (),
    ("PUT", "/v1/me/emergency-contacts"): (422,),
    ("GET", "/v1/me/emergency-contacts"): (),
    ("POST", "/v1/telephony/voice"): (403,),
    ("POST", "/v1/telephony/sms"): (403,),
    ("POST", "/v1/telephony/status"): (403,),
    ("POST", "/v1/telephony/checkin"): (403,),
}
"""Errors an operation's rules can answer beyond those its shape implies. Every operation in
the document has an entry: a route added without one fails `tests/test_openapi.py`."""

REQUIRED_HEADERS: dict[Operation, tuple[str, ...]] = {
    ("POST", "/v1/jobs"): ("Idempotency-Key",),
}
MEDIA_TYPES: dict[Operation, str] = {("GET", "/metrics"): "text/plain"}
"""Success media types a handler does not declare itself (Prometheus sets its own)."""
IDEMPOTENCY_KEY = {
    "type": "string",
    "minLength": 1,
    "maxLength": MAX_KEY_LENGTH,
    "pattern": "^[\\x20-\\x7e]+$",
}
_DESCRIPTIONS = {
    400: "The request is malformed (`validation_error` names the field, `bad_request`)",
    401: "No valid bearer token (`unauthorized`), or a wrong sign-in code (`invalid_code`)",
    403: "The caller may not do this (`forbidden_role`, `not_yours`, `invalid_signature`, …)",
    404: "No such object (`*_not_found`)",
    409: "The object's state does not allow it now (`already_taken`, `stale_assignment`, …)",
    410: "No longer available (`offer_expired`)",
    413: "The body is too large (`payload_too_large`)",
    415: "The body is not sent as `application/json` (`unsupported_media_type`)",
    422: "Well-formed but not possible (`invalid_phone`, `out_of_service_area`, …)",
    429: "Too many requests (`rate_limited`; see `Retry-After`)",
    503: "Not ready: the database or Redis is unavailable (`not_ready`)",
}


class TruthfulRendering:
    """A render plugin mixin: what it renders is the corrected document (built once, on the
    first request, for the app that asks)."""

    _corrected: dict[str, Any] | None = None

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        if self._corrected is None:
            self._corrected = truthful(openapi_schema, request.app, self.public_paths)
        return super().render(request, self._corrected)  # type: ignore[misc, no-any-return]

    public_paths: tuple[str, ...] = ()


class TruthfulJson(TruthfulRendering, JsonRenderPlugin):
    """`/schema/openapi.json`."""


class TruthfulRedoc(TruthfulRendering, RedocRenderPlugin):
    """`/schema`: the document for people to read."""


def render_plugins(public_paths: Iterable[str]) -> list[Any]:
    """The document's renderings for `OpenAPIConfig(render_plugins=...)`."""
    plugins: list[Any] = [TruthfulJson(), TruthfulRedoc(path=["/", "/redoc"])]
    for plugin in plugins:
        plugin.public_paths = tuple(public_paths)
    return plugins


def operations(app: Litestar) -> Iterable[tuple[Operation, HTTPRouteHandler]]:
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            if not handler.resolve_include_in_schema():
                continue
            for method in sorted(handler.http_methods):
                if method in ("HEAD", "OPTIONS"):
                    continue
                yield (method, route.path_format), handler


def _body_type(handler: HTTPRouteHandler) -> Any:
    field = handler.parsed_fn_signature.parameters.get("data")
    return field.annotation if field is not None else None


def _return_type(handler: HTTPRouteHandler) -> Any:
    annotation = handler.parsed_fn_signature.return_type.annotation
    if typing.get_origin(annotation) is Response or annotation is Response:
        args = typing.get_args(annotation)
        annotation = args[0] if args else Any
    if annotation in (None, type(None), Any, str, bytes):
        return None
    if isinstance(annotation, type) and issubclass(annotation, Response):
        return None  # a stream (server-sent events): text, not a JSON body
    return annotation


def truthful(
    doc: dict[str, Any], app: Litestar, public_paths: tuple[str, ...] = ()
) -> dict[str, Any]:
    doc = msgspec.json.decode(msgspec.json.encode(doc))  # a copy of our own
    handlers = dict(operations(app))
    types = {t for h in handlers.values() for t in (_body_type(h), _return_type(h)) if t}
    ordered = sorted(types, key=repr)
    refs, components = msgspec.json.schema_components(
        [*ordered, Problem], ref_template="#/components/schemas/{name}"
    )
    type_refs = dict(zip(ordered, refs, strict=False))
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas.update(components)
    public = {
        op
        for op, h in handlers.items()
        if h.opt.get("exclude_from_auth") or op[1].startswith(public_paths)
    }
    for path, item in doc.get("paths", {}).items():
        for method, op in item.items():
            key = (method.upper(), path)
            handler = handlers.get(key)
            if handler is None:
                continue
            _fix_operation(op, key, handler, type_refs, secured=key not in public)
    _integer_bounds(doc)
    return doc


def _fix_operation(
    op: dict[str, Any],
    key: Operation,
    handler: HTTPRouteHandler,
    type_refs: dict[Any, dict[str, Any]],
    *,
    secured: bool,
) -> None:
    body = _body_type(handler)
    if body is not None and "requestBody" in op:
        op["requestBody"]["content"] = {"application/json": {"schema": type_refs[body]}}
    returns = _return_type(handler)
    responses = op.setdefault("responses", {})
    success = str(handler.status_code)
    declared = str(getattr(handler.media_type, "value", handler.media_type)).split(";")[0]
    media = MEDIA_TYPES.get(key) or declared or "application/json"
    if success in responses and handler.status_code != 204:
        if not is_json(media):  # TwiML, Prometheus text
            responses[success]["content"] = {media: {"schema": {"type": "string"}}}
        elif returns is not None:
            responses[success]["content"] = {"application/json": {"schema": type_refs[returns]}}
    for param in op.get("parameters", []):
        if param.get("in") == "path" and param["name"].endswith("_id"):
            param["schema"] = {"type": "integer", "minimum": 1, "maximum": MAX_ID}
        if param.get("in") == "header" and param["name"] in REQUIRED_HEADERS.get(key, ()):
            param["required"] = True
        if param.get("in") == "header" and param["name"] == "Idempotency-Key":
            param["schema"] = dict(IDEMPOTENCY_KEY)
    if not secured:
        op["security"] = []
    codes = set(ERRORS.get(key, ()))
    if op.get("parameters") or body is not None:
        codes.add(400)
    if secured:
        codes |= {401, 403}
    if "{" in key[1]:
        codes.add(404)
    if body is not None:
        codes |= {413, 415}
    for status in sorted(codes):
        responses[str(status)] = {
            "description": _DESCRIPTIONS.get(status, HTTPStatus(status).phrase),
            "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        if status == 429:
            responses[str(status)]["headers"] = {
                "Retry-After": {
                    "description": "Seconds to wait before trying again",
                    "schema": {"type": "string", "pattern": "^[0-9]+$"},
                }
            }


def _integer_bounds(node: Any) -> None:
    """Integer limits as integers: Litestar writes `le=2**63 - 1` as a float, which rounds up
    to 2**63 and reads as `9.223372036854776e+18`."""
    if isinstance(node, dict):
        types = node.get("type")
        integer = types == "integer" or (isinstance(types, list) and "integer" in types)
        for bound in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
            value = node.get(bound)
            if integer and isinstance(value, float) and value.is_integer():
                node[bound] = MAX_ID if value >= float(MAX_ID) else int(value)
        for child in node.values():
            _integer_bounds(child)
    elif isinstance(node, list):
        for child in node:
            _integer_bounds(child)
