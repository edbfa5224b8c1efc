"""Web Push (RFC 8030/8291/8292) through pywebpush: the payload is encrypted for the browser's
subscription keys (aes128gcm) and signed with our VAPID key, then posted to the browser vendor's
push service on the event loop (pywebpush's aiohttp sender)."""

from __future__ import annotations

import base64
import time
from collections.abc import Collection
from dataclasses import dataclass
from os import path
from urllib.parse import urlsplit

import aiohttp
from cryptography.hazmat.primitives import serialization
from py_vapid import Vapid
from pywebpush import WebPusher

from dispatch.core.errors import Unprocessable
from notifications.egress import (
    NonPublicAddress,
    PublicOnlyResolver,
    check_public_url,
    refused_by_rule,
)

VAPID_TTL_S = 12 * 3600


@dataclass(frozen=True)
class PushResult:
    outcome: str
    """ok, gone (the subscription is dead: forget it), retry or failed."""
    status: int | None
    detail: str = ""


def _b64url_decode(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def check_subscription(
    endpoint: str, p256dh: str, auth: str, *, allow_http: bool, allowed_hosts: Collection[str] = ()
) -> None:
    """Refuse subscriptions that cannot be real (422 `invalid_subscription`), and endpoints we
    must not post to (anything but https unless allowed, credentials in the URL, a host that is
    not a public address: `notifications.egress`)."""
    try:
        parts = urlsplit(endpoint)
        host = parts.hostname
    except ValueError:
        host = None
    if host is None or parts.scheme not in (("https", "http") if allow_http else ("https",)):
        raise Unprocessable(
            "endpoint must be an https URL of a push service", code="invalid_subscription"
        )
    if parts.username or parts.password:
        raise Unprocessable("endpoint must not carry credentials", code="invalid_subscription")
    try:
        check_public_url(endpoint, allowed_hosts)
    except NonPublicAddress as exc:
        raise Unprocessable(
            f"endpoint must be a public push service: {exc}", code="invalid_subscription"
        ) from exc
    try:
        key, secret = _b64url_decode(p256dh), _b64url_decode(auth)
    except (ValueError, TypeError) as exc:
        raise Unprocessable("keys must be base64url", code="invalid_subscription") from exc
    if len(key) != 65 or key[0] != 4:
        raise Unprocessable(
            "keys.p256dh must be an uncompressed P-256 point", code="invalid_subscription"
        )
    if len(secret) != 16:
        raise Unprocessable("keys.auth must be 16 bytes", code="invalid_subscription")
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), key)
    except ValueError as exc:
        raise Unprocessable("keys.p256dh is not on P-256", code="invalid_subscription") from exc


def load_vapid(private_key: str) -> Vapid:
    """`VAPID_PRIVATE_KEY`: a path to the PEM file `vapid --gen` writes, PEM text, or base64url
    (the raw 32-byte key, or DER: the PEM body on one line)."""
    if path.isfile(private_key):
        return Vapid.from_file(private_key_file=private_key)
    if "-----BEGIN" in private_key:
        pem = "\n".join(line for line in private_key.strip().splitlines() if line.strip())
        if "EC PARAMETERS" in pem:  # openssl ecparam -genkey prints the curve block first
            pem = pem[pem.index("-----END EC PARAMETERS-----") + 27 :].strip()
        return Vapid.from_pem(pem.encode())
    return Vapid.from_string(private_key=private_key)


class Pusher:
    def __init__(
        self,
        private_key: str,
        subject: str,
        *,
        timeout_s: float = 10.0,
        allowed_hosts: Collection[str] = (),
    ) -> None:
        self.vapid = load_vapid(private_key)
        point = self.vapid.public_key.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        self.public_key = base64.urlsafe_b64encode(point).rstrip(b"=").decode()
        """base64url, unpadded: what a page passes as `applicationServerKey`."""
        self.subject = subject
        self.timeout_s = timeout_s
        self.allowed_hosts = frozenset(allowed_hosts)
        """Hosts exempt from the public-address rule (`EGRESS_ALLOWED_HOSTS`)."""
        self._session: aiohttp.ClientSession | None = None
        self._headers: dict[str, tuple[float, dict[str, str]]] = {}

    def _vapid_headers(self, endpoint: str) -> dict[str, str]:
        parts = urlsplit(endpoint)
        aud = f"{parts.scheme}://{parts.netloc}"
        cached = self._headers.get(aud)
        now = time.time()
        if cached is None or cached[0] - now < 600:
            exp = int(now) + VAPID_TTL_S
            headers = self.vapid.sign({"sub": self.subject, "aud": aud, "exp": exp})
            cached = (exp, dict(headers))
            self._headers[aud] = cached
        return dict(cached[1])

    async def send(
        self, endpoint: str, p256dh: str, auth: str, data: bytes, *, ttl_s: int, urgency: str
    ) -> PushResult:
        try:
            check_public_url(endpoint, self.allowed_hosts)  # subscriptions stored before the rule
        except NonPublicAddress as exc:
            return PushResult("gone", None, f"endpoint refused: {exc}")
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(resolver=PublicOnlyResolver(self.allowed_hosts))
            self._session = aiohttp.ClientSession(connector=connector)
        pusher = WebPusher(
            {"endpoint": endpoint, "keys": {"p256dh": p256dh, "auth": auth}},
            aiohttp_session=self._session,
        )
        headers = self._vapid_headers(endpoint)
        headers["urgency"] = urgency
        try:
            response = await pusher.send_async(
                data, headers=headers, ttl=max(0, ttl_s), timeout=self.timeout_s
            )
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            if refused_by_rule(exc):  # the name resolves to an address we must not call
                return PushResult("gone", None, f"endpoint refused: {exc}"[:300])
            return PushResult("retry", None, f"push service unreachable: {exc!r}"[:300])
        status = response.status  # type: ignore[union-attr]
        if status in (200, 201, 202):
            return PushResult("ok", status)
        if status in (404, 410):
            return PushResult("gone", status, "subscription expired")
        if status == 429 or status >= 500:
            return PushResult("retry", status, f"push service answered {status}")
        return PushResult("failed", status, f"push service refused: {status}")

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
