"""Sign-in by phone and one-time code."""

from __future__ import annotations

from typing import Any

from litestar import Request, post
from litestar.datastructures import State
from litestar.params import JSONBody

from dispatch.identity.auth import issue_token
from dispatch.web.deps import client_of, runtime_of
from dispatch.web.schemas import OtpRequest, OtpSent, TokenRequest, TokenResponse


@post("/v1/auth/otp", exclude_from_auth=True, status_code=202, tags=["identity"])
async def request_otp(
    data: JSONBody[OtpRequest], request: Request[Any, Any, Any], state: State
) -> OtpSent:
    """Send a one-time sign-in code by SMS (through the outbox)."""
    rt = runtime_of(state)
    async with rt.sessions.begin() as session:
        await rt.otp.request(session, data.phone, client_of(request))
    return OtpSent(status="sent", expires_in_s=rt.settings.auth.otp_ttl_s)


@post("/v1/auth/token", exclude_from_auth=True, status_code=200, tags=["identity"])
async def exchange_code(data: JSONBody[TokenRequest], state: State) -> TokenResponse:
    """Trade a phone's one-time code for a bearer token in the role asked for."""
    rt = runtime_of(state)
    async with rt.sessions() as session:
        # A failed attempt is committed before the error is raised, so guesses are counted.
        user_id = await rt.otp.sign_in(session, data.phone, data.code, data.role)
        await session.commit()
    token = issue_token(
        rt.settings.auth.secret_key, user_id, data.role, ttl_s=rt.settings.auth.token_ttl_s
    )
    return TokenResponse(access_token=token, user_id=user_id, role=data.role)
