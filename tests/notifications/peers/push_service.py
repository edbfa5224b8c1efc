"""A local Web Push service: RFC 8030 (push), RFC 8291 (message encryption), RFC 8292 (VAPID).

It plays both the push service and the browser behind it: `new_subscription()` makes the key pair
and auth secret a browser would and returns the browser's `PushSubscription.toJSON()`; a push
that passes the service's checks is decrypted with the subscription's private key and recorded.

    async with PushServicePeer() as push:
        sub = push.new_subscription()
        await pywebpush.webpush_async(sub, "hi", vapid_private_key=KEY,
                                      vapid_claims={"sub": "mailto:ops@example.org"})
        assert push.received[0].payload == b"hi"

Checks, in order, each refusal recorded in `requests` with its reason: unknown subscription 404,
expired 410 (`expire(sub)`), injected failure (`fail_next`), `TTL` header 400, VAPID
`Authorization: vapid t=<JWT>, k=<key>` 401 (ES256 signature by `k`, `aud` the endpoint's origin,
`exp` in the future and at most 24 h ahead, `sub` a mailto: or https: URI), `k` other than the
subscription's applicationServerKey 403, `Urgency`/`Topic` 400, body over 4096 bytes 413,
`Content-Encoding` other than aes128gcm 415, undecryptable body 400. Accepted: 201 with Location.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import http_ece
from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tests.notifications.peers import LocalHttpServer

MAX_ENCRYPTED_BYTES = 4096
MAX_EXP_AHEAD_S = 24 * 3600
URGENCIES = ("very-low", "low", "normal", "high")
TOPIC = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def raw_public_key(key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) -> bytes:
    """The uncompressed P-256 point (65 bytes), as browsers and VAPID `k` carry it."""
    public = key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey) else key
    return public.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)


@dataclass
class Subscription:
    id: str
    endpoint: str
    private_key: ec.EllipticCurvePrivateKey
    auth_secret: bytes
    application_server_key: bytes | None = None
    expired: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "expirationTime": None,
            "keys": {
                "p256dh": b64url(raw_public_key(self.private_key)),
                "auth": b64url(self.auth_secret),
            },
        }


@dataclass
class PushMessage:
    """A push the service accepted and the browser side decrypted."""

    subscription_id: str
    payload: bytes | None
    claims: dict[str, Any]
    vapid_key: str
    ttl: int
    urgency: str | None
    topic: str | None
    headers: dict[str, str] = field(default_factory=dict)


class Refused(Exception):
    def __init__(self, status: int, reason: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status, self.reason, self.headers = status, reason, headers or {}


class PushServicePeer(LocalHttpServer):
    """A push service with its subscriptions; see the module docstring."""

    def __init__(self) -> None:
        super().__init__()
        self.subscriptions: dict[str, Subscription] = {}
        self.received: list[PushMessage] = []
        self.requests: list[dict[str, Any]] = []
        self._failures: list[tuple[int, str | None]] = []

    # -- test controls --------------------------------------------------------------------------

    def new_subscription(self, application_server_key: str | None = None) -> dict[str, Any]:
        """A browser's subscription JSON. With `application_server_key` (the VAPID public key,
        b64url, as passed to `pushManager.subscribe`) only pushes signed by it are accepted."""
        sub_id = secrets.token_urlsafe(16)
        sub = Subscription(
            id=sub_id,
            endpoint=f"{self.base_url}/push/{sub_id}",
            private_key=ec.generate_private_key(ec.SECP256R1()),
            auth_secret=os.urandom(16),
            application_server_key=(
                b64url_decode(application_server_key) if application_server_key else None
            ),
        )
        self.subscriptions[sub_id] = sub
        return sub.to_json()

    def subscription(self, sub: dict[str, Any] | str) -> Subscription:
        """The subscription behind a subscription JSON, an endpoint or an id."""
        ref = sub["endpoint"] if isinstance(sub, dict) else sub
        return self.subscriptions[ref.rsplit("/", 1)[-1]]

    def expire(self, sub: dict[str, Any] | str) -> None:
        """The endpoint answers 410 Gone from now on (the user unsubscribed, or it lapsed)."""
        self.subscription(sub).expired = True

    def fail_next(self, n: int = 1, status: int = 503, retry_after: int | None = None) -> None:
        """The next `n` pushes (to any live subscription) get `status`."""
        self._failures.extend([(status, str(retry_after) if retry_after else None)] * n)

    def refusals(self) -> list[tuple[int, str]]:
        """(status, reason) of every refused push, oldest first."""
        return [(r["status"], r["reason"]) for r in self.requests if r["status"] >= 300]

    # -- the service ----------------------------------------------------------------------------

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/push/{id}", self._push)]

    async def _push(self, request: web.Request) -> web.Response:
        body = await request.read()
        seen: dict[str, Any] = {
            "subscription_id": request.match_info["id"],
            "headers": dict(request.headers),
            "status": 0,
            "reason": "",
        }
        self.requests.append(seen)
        try:
            message = self._accept(request, body)
        except Refused as e:
            seen["status"], seen["reason"] = e.status, e.reason
            self._notify()
            return web.json_response(
                {"code": e.status, "errno": 0, "error": e.reason, "message": e.reason},
                status=e.status,
                headers=e.headers,
            )
        self.received.append(message)
        seen["status"], seen["reason"] = 201, "accepted"
        self._notify()
        location = f"{self.base_url}/message/{secrets.token_urlsafe(12)}"
        return web.Response(status=201, headers={"Location": location, "TTL": str(message.ttl)})

    def _accept(self, request: web.Request, body: bytes) -> PushMessage:
        sub = self.subscriptions.get(request.match_info["id"])
        if sub is None:
            raise Refused(404, "no such subscription")
        if sub.expired:
            raise Refused(410, "subscription expired")
        if self._failures:
            status, retry_after = self._failures.pop(0)
            raise Refused(
                status, "injected failure", {"Retry-After": retry_after} if retry_after else None
            )
        ttl_header = request.headers.get("TTL", "")
        if not ttl_header.isdigit():
            raise Refused(400, f"TTL header missing or not a non-negative integer: {ttl_header!r}")
        claims, key = self._check_vapid(request.headers.get("Authorization", ""), sub)
        urgency = request.headers.get("Urgency")
        if urgency is not None and urgency not in URGENCIES:
            raise Refused(400, f"bad Urgency {urgency!r}")
        topic = request.headers.get("Topic")
        if topic is not None and not TOPIC.match(topic):
            raise Refused(400, f"bad Topic {topic!r}")
        payload = None
        if body:
            if len(body) > MAX_ENCRYPTED_BYTES:
                raise Refused(413, f"payload of {len(body)} bytes exceeds {MAX_ENCRYPTED_BYTES}")
            encoding = request.headers.get("Content-Encoding", "")
            if encoding != "aes128gcm":
                raise Refused(415, f"Content-Encoding {encoding!r} is not aes128gcm")
            try:
                payload = http_ece.decrypt(
                    body,
                    private_key=sub.private_key,
                    auth_secret=sub.auth_secret,
                    version="aes128gcm",
                )
            except Exception as e:  # InvalidTag, ECEException, struct errors: all "cannot decrypt"
                raise Refused(400, f"cannot decrypt: {type(e).__name__}") from e
        return PushMessage(
            subscription_id=sub.id,
            payload=payload,
            claims=claims,
            vapid_key=key,
            ttl=int(ttl_header),
            urgency=urgency,
            topic=topic,
            headers=dict(request.headers),
        )

    def _check_vapid(self, authorization: str, sub: Subscription) -> tuple[dict[str, Any], str]:
        """RFC 8292 checks of `Authorization: vapid t=<JWT>, k=<key>`; (claims, k) if they pass."""
        challenge = {"WWW-Authenticate": "vapid"}
        scheme, _, rest = authorization.partition(" ")
        if scheme.lower() != "vapid":
            raise Refused(401, f"Authorization scheme {scheme!r} is not vapid", challenge)
        params = {}
        for part in rest.split(","):
            name, sep, value = part.strip().partition("=")
            if sep:
                params[name.strip().lower()] = value.strip()
        token, k = params.get("t", ""), params.get("k", "")
        try:
            public_raw = b64url_decode(k)
            public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), public_raw)
            header_b64, claims_b64, signature_b64 = token.split(".")
            header = json.loads(b64url_decode(header_b64))
            claims = json.loads(b64url_decode(claims_b64))
            signature = b64url_decode(signature_b64)
        except (ValueError, binascii.Error, UnicodeDecodeError) as e:
            raise Refused(401, f"malformed VAPID header: {type(e).__name__}", challenge) from e
        if header.get("alg") != "ES256" or len(signature) != 64:
            raise Refused(401, "JWT is not ES256", challenge)
        der = encode_dss_signature(
            int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
        )
        try:
            public.verify(der, f"{header_b64}.{claims_b64}".encode(), ec.ECDSA(hashes.SHA256()))
        except InvalidSignature as e:
            raise Refused(401, "JWT signature does not verify with k", challenge) from e
        if not isinstance(claims, dict):
            raise Refused(401, "JWT claims are not an object", challenge)
        origin = sub.endpoint.split("/push/", 1)[0]
        if claims.get("aud") != origin:
            raise Refused(401, f"aud {claims.get('aud')!r} is not {origin!r}", challenge)
        exp, now = claims.get("exp"), time.time()
        if isinstance(exp, bool) or not isinstance(exp, int | float) or exp <= now:
            raise Refused(401, f"exp {exp!r} is missing or past", challenge)
        if exp > now + MAX_EXP_AHEAD_S:
            raise Refused(401, f"exp {exp} is more than 24 h ahead", challenge)
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject.startswith(("mailto:", "https:")):
            raise Refused(401, f"sub {subject!r} is not a mailto: or https: URI", challenge)
        if sub.application_server_key is not None and public_raw != sub.application_server_key:
            raise Refused(403, "k is not the key this subscription was made for")
        return claims, k
