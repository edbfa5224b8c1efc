"""Access to the process runtime from handlers."""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.datastructures import State

from dispatch.core.errors import Unauthorized
from dispatch.identity.principal import Principal
from dispatch.infra.runtime import Runtime


def runtime_of(state: State) -> Runtime:
    return state.runtime  # type: ignore[no-any-return]


def principal_of(request: Request[Any, Any, Any]) -> Principal:
    user = request.user
    if not isinstance(user, Principal):
        raise Unauthorized("sign in first")
    return user


def client_of(request: Request[Any, Any, Any]) -> str:
    """The client address rate limits are keyed on."""
    return request.client.host if request.client else "unknown"
