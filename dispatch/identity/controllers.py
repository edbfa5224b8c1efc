"""Sign-in by phone and one-time code; the caller's own settings (`/v1/me`)."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, get, post, put
from litestar.di import NamedDependency
from litestar.params import JSONBody
from msgspec import Meta, Struct

from dispatch.identity.locale import LOCALES
from dispatch.identity.me import Me, Profiles
from dispatch.identity.otp import OtpService
from dispatch.web.deps import client_of, principal_of
from dispatch.web.schemas import OtpRequest, OtpSent, TokenRequest, TokenResponse


@post("/v1/auth/otp", exclude_from_auth=True, status_code=202, tags=["identity"])
async def request_otp(
    data: JSONBody[OtpRequest], request: Request[Any, Any, Any], otp: NamedDependency[OtpService]
) -> OtpSent:
    """Send a one-time sign-in code by SMS (through the outbox)."""
    expires_in_s = await otp.send_code(data.phone, client_of(request))
    return OtpSent(status="sent", expires_in_s=expires_in_s)


@post("/v1/auth/token", exclude_from_auth=True, status_code=200, tags=["identity"])
async def exchange_code(
    data: JSONBody[TokenRequest], otp: NamedDependency[OtpService]
) -> TokenResponse:
    """Trade a phone's one-time code for a bearer token in the role asked for."""
    user_id, token = await otp.token_for(data.phone, data.code, data.role)
    return TokenResponse(access_token=token, user_id=user_id, role=data.role)


class MeIn(Struct, forbid_unknown_fields=True):
    locale: Annotated[
        str,
        Meta(
            min_length=1, max_length=20, examples=list(LOCALES),
            description=f"one of {', '.join(LOCALES)}, exactly; another → 422 `unknown_locale`",
        ),
    ]  # fmt: skip


class MeOut(Struct):
    user_id: int
    role: str
    locale: str
    """The language texts, pushes and calls to this user are in (chosen, or their account's)."""


def _me_out(me: Me) -> MeOut:
    return MeOut(user_id=me.user_id, role=me.role, locale=me.locale)


@get("/v1/me", tags=["identity"])
async def get_me(request: Request[Any, Any, Any], profiles: NamedDependency[Profiles]) -> MeOut:
    """Who the token is for, in which role, and the language they are written to in."""
    return _me_out(await profiles.me(principal_of(request)))


@put("/v1/me", tags=["identity"])
async def put_me(
    data: JSONBody[MeIn], request: Request[Any, Any, Any], profiles: NamedDependency[Profiles]
) -> MeOut:
    """Choose the language (`zh-CN` or `en`) every text, push and call to you is in."""
    return _me_out(await profiles.choose_locale(principal_of(request), data.locale))
