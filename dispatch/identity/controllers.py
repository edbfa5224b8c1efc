"""Sign-in by phone and one-time code."""

from __future__ import annotations

from typing import Any

from litestar import Request, post
from litestar.params import JSONBody

from dispatch.identity.otp import OtpService
from dispatch.web.deps import client_of
from dispatch.web.schemas import OtpRequest, OtpSent, TokenRequest, TokenResponse


@post("/v1/auth/otp", exclude_from_auth=True, status_code=202, tags=["identity"])
async def request_otp(
    data: JSONBody[OtpRequest], request: Request[Any, Any, Any], otp: OtpService
) -> OtpSent:
    """Send a one-time sign-in code by SMS (through the outbox)."""
    expires_in_s = await otp.send_code(data.phone, client_of(request))
    return OtpSent(status="sent", expires_in_s=expires_in_s)


@post("/v1/auth/token", exclude_from_auth=True, status_code=200, tags=["identity"])
async def exchange_code(data: JSONBody[TokenRequest], otp: OtpService) -> TokenResponse:
    """Trade a phone's one-time code for a bearer token in the role asked for."""
    user_id, token = await otp.token_for(data.phone, data.code, data.role)
    return TokenResponse(access_token=token, user_id=user_id, role=data.role)
