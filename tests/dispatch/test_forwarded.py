"""Forwarding headers are believed only from the proxies named in TRUSTED_PROXIES: a client cannot
reset its own rate limit by naming another address in `X-Forwarded-For`. Real `dispatch serve`
processes, since uvicorn is what reads those headers."""

from __future__ import annotations

import httpx
import pytest

from dispatch.infra.settings import AuthSettings
from tests.conftest import TEST_SECRET
from tests.processes import serving

LIMIT = AuthSettings().otp_per_client_limit
pytestmark = pytest.mark.slow


async def use_up_the_client_limit(http: httpx.AsyncClient) -> None:
    for i in range(LIMIT):
        r = await http.post("/v1/auth/otp", json={"phone": f"+8613900{i:06d}"})
        assert r.status_code == 202, r.text
    r = await http.post("/v1/auth/otp", json={"phone": "+8613911112222"})
    assert r.status_code == 429 and r.json()["code"] == "rate_limited"


async def test_a_forwarded_for_header_does_not_reset_the_limit(
    server_urls, clean_state, redis
) -> None:
    async with serving(server_urls, TEST_SECRET) as http:
        await use_up_the_client_limit(http)
        for n in range(1, 4):
            r = await http.post(
                "/v1/auth/otp",
                json={"phone": f"+861371234567{n}"},
                headers={"X-Forwarded-For": f"203.0.113.{n}"},
            )
            assert r.status_code == 429, r.text
        # Every request counted against the peer's own address.
        assert int(await redis.get("rl:otp-client:127.0.0.1")) == LIMIT + 4


async def test_a_named_proxy_is_believed(server_urls, clean_state, redis) -> None:
    async with serving(server_urls, TEST_SECRET, TRUSTED_PROXIES="127.0.0.0/8") as http:
        await use_up_the_client_limit(http)
        r = await http.post(
            "/v1/auth/otp",
            json={"phone": "+8613712345671"},
            headers={"X-Forwarded-For": "203.0.113.7"},
        )
        assert r.status_code == 202, r.text
        assert int(await redis.get("rl:otp-client:203.0.113.7")) == 1
