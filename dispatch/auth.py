"""Who is calling: the principal carried in a bearer JWT, token issuing, and role guards.

The token carries everything authorisation needs (user id, role, operator scope), so checking it
costs no database round trip. A token names one role; a person who is both resident and worker
signs in once per role.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from litestar.security.jwt import Token

from dispatch.errors import Forbidden

if TYPE_CHECKING:
    from litestar.connection import ASGIConnection
    from litestar.handlers.base import BaseRouteHandler

ROLES = ("resident", "worker", "operator", "admin")
ALGORITHM = "HS256"
ISSUER = "dispatch"


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: int
    role: str
    community_ids: frozenset[int] = frozenset()

    def can_operate(self, community_id: int) -> bool:
        """Admins operate everywhere; operators only in their communities."""
        return self.role == "admin" or (
            self.role == "operator" and community_id in self.community_ids
        )


def issue_token(
    secret: str, user_id: int, role: str, community_ids: list[int] | None = None, ttl_s: int = 3600
) -> str:
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")
    extras: dict[str, Any] = {"role": role}
    if community_ids:
        extras["communities"] = sorted(community_ids)
    token = Token(
        sub=str(user_id),
        exp=datetime.now(UTC) + timedelta(seconds=ttl_s),
        iss=ISSUER,
        jti=uuid.uuid4().hex,
        extras=extras,
    )
    return token.encode(secret, ALGORITHM)


async def principal_from_token(token: Token, _connection: ASGIConnection[Any, Any, Any, Any]):
    role = token.extras.get("role")
    if role not in ROLES or not token.sub.isdigit():
        return None
    communities = token.extras.get("communities") or []
    return Principal(int(token.sub), role, frozenset(int(c) for c in communities))


def require_roles(*roles: str):
    """A guard letting through only principals with one of `roles`."""

    # A coroutine function: Litestar runs a plain-function guard in a thread pool on every
    # request (a hand-off that cost ~20% of a ping's CPU); this one runs on the loop.
    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        principal = connection.user
        if not isinstance(principal, Principal) or principal.role not in roles:
            raise Forbidden(f"this needs the role {' or '.join(roles)}", code="forbidden_role")

    guard.__name__ = f"require_{'_or_'.join(roles)}"
    return guard


admin_only = require_roles("admin")
operators = require_roles("operator", "admin")
workers_only = require_roles("worker")
residents_only = require_roles("resident")
