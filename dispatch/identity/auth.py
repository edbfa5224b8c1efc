"""Who is calling: the principal carried in a bearer JWT, token issuing, and role guards.

The token carries everything authorisation needs (user id, role, operator scope), so checking it
costs no database round trip. A token names one role; a person who is both resident and worker
signs in once per role.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from litestar.middleware.authentication import AuthenticationResult
from litestar.security.jwt import JWTAuthenticationMiddleware, Token

from dispatch.core.errors import Forbidden
from dispatch.identity.principal import ROLES, Principal

if TYPE_CHECKING:
    from litestar.connection import ASGIConnection
    from litestar.handlers.base import BaseRouteHandler

ALGORITHM = "HS256"
ISSUER = "dispatch"


STREAM_SCOPE = "stream"
"""A short-lived token good only for opening a live stream (`?token=` on the operators' event
stream, which `EventSource` cannot give a header): refused as a bearer anywhere else."""


def issue_token(
    secret: str,
    user_id: int,
    role: str,
    community_ids: list[int] | None = None,
    ttl_s: int = 3600,
    scope: str | None = None,
) -> str:
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")
    extras: dict[str, Any] = {"role": role}
    if community_ids:
        extras["communities"] = sorted(community_ids)
    if scope is not None:
        extras["scope"] = scope
    token = Token(
        sub=str(user_id),
        exp=datetime.now(UTC) + timedelta(seconds=ttl_s),
        iss=ISSUER,
        jti=uuid.uuid4().hex,
        extras=extras,
    )
    return token.encode(secret, ALGORITHM)


def _principal(token: Token, scope: str | None) -> Principal | None:
    role = token.extras.get("role")
    if role not in ROLES or not token.sub.isdigit() or token.extras.get("scope") != scope:
        return None
    communities = token.extras.get("communities") or []
    return Principal(int(token.sub), role, frozenset(int(c) for c in communities))


async def principal_from_token(token: Token, _connection: ASGIConnection[Any, Any, Any, Any]):
    return _principal(token, None)  # a stream token is not a bearer


def principal_of_token(
    raw: str | None, secret: str, *, scope: str | None = None
) -> Principal | None:
    """The principal a token names, for handlers that read their own token (live streams):
    None when it is missing, forged, expired, or not of `scope` (None: an ordinary bearer)."""
    if not raw:
        return None
    try:
        token = Token.decode(raw, secret, ALGORITHM, issuer=[ISSUER])
    except Exception:
        return None
    return _principal(token, scope)


VERIFIED_TOKENS_MAX = 50_000
"""Verified tokens a process remembers at most (then it forgets them all and starts again)."""


class CachingJWTAuthenticationMiddleware(JWTAuthenticationMiddleware):
    """Litestar's JWT middleware, remembering the tokens it has verified until they expire.

    Checking a token (base64, JSON, HMAC, claims) was about a fifth of the CPU of an authenticated
    no-op request, and clients send the same token for an hour. A token string seen and verified
    before, under this middleware's settings, is taken again without decoding while its `exp` is
    in the future; anything else (a token never seen, one differing by a byte, an expired one)
    goes through the full check. The principal comes from the token alone (no database), so the
    cached one is what the check would give again."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._verified: dict[str, tuple[float, AuthenticationResult]] = {}

    async def authenticate_token(
        self, encoded_token: str, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> AuthenticationResult:
        hit = self._verified.get(encoded_token)
        if hit is not None and time.time() < hit[0] and self.revoked_token_handler is None:
            return hit[1]
        result = await super().authenticate_token(encoded_token, connection)
        if self.verify_expiry and isinstance(result.auth, Token):
            if len(self._verified) >= VERIFIED_TOKENS_MAX:
                self._verified.clear()
            self._verified[encoded_token] = (result.auth.exp.timestamp(), result)
        return result


def require_roles(*roles: str):
    """A guard letting through only principals with one of `roles`."""

    # A coroutine function: Litestar runs a plain-function guard in a thread pool on every
    # request (a hand-off that cost ~20% of a ping's CPU); this one runs on the loop.
    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        # Not `connection.user`: it raises (a 500) where the auth middleware set no user.
        principal = connection.scope.get("user")
        if not isinstance(principal, Principal) or principal.role not in roles:
            raise Forbidden(f"this needs the role {' or '.join(roles)}", code="forbidden_role")

    guard.__name__ = f"require_{'_or_'.join(roles)}"
    return guard


admin_only = require_roles("admin")
operators = require_roles("operator", "admin")
workers_only = require_roles("worker")
residents_only = require_roles("resident")
