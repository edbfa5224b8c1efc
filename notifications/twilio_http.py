"""Twilio's REST client on asyncio, optionally pointed at another base URL.

`make_twilio_client` plugs an `AsyncTwilioHttpClient` subclass (aiohttp) into `twilio.rest.Client`
through the library's pluggable HTTP client, so `await client.messages.create_async(...)` and
`await client.calls.create_async(...)` run on the event loop. With `api_base` set, every request
for a `*.twilio.com` host goes to that base instead, path and query kept: a local server that
speaks the Twilio REST API. In production `api_base` is None and requests go to Twilio.

Differences from the stock async client, on purpose:
- the aiohttp session is opened on the first request, not in the constructor (which needs a
  running event loop), and reopened if a request comes after `aclose_twilio_client`;
- every request has a total timeout (`timeout`, seconds); the stock client passes `None` to
  aiohttp for calls made through `Client`, which means no timeout at all;
- Basic auth goes as an `Authorization` header (twilio's logger leaves that header out), not
  through aiohttp's `auth=` parameter, which aiohttp 3.14 deprecates.

Close the session with `await aclose_twilio_client(client)` when the service stops.
"""

from __future__ import annotations

import base64
from urllib.parse import urlsplit, urlunsplit

from aiohttp import ClientSession
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

DEFAULT_TIMEOUT_S = 15.0


def _is_twilio_host(host: str | None) -> bool:
    host = (host or "").lower()
    return host == "twilio.com" or host.endswith(".twilio.com")


class RoutedTwilioHttpClient(AsyncTwilioHttpClient):
    """`AsyncTwilioHttpClient` with a lazily opened session, a default timeout and, when
    `api_base` is set, requests for `*.twilio.com` sent to `api_base` instead."""

    def __init__(self, api_base: str | None = None, *, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        super().__init__(pool_connections=False, timeout=timeout)
        self.api_base = api_base.rstrip("/") if api_base else None
        if self.api_base:
            base = urlsplit(self.api_base)
            if base.scheme not in ("http", "https") or not base.netloc:
                raise ValueError(f"api_base must be an http(s) URL, got {api_base!r}")

    def route(self, url: str) -> str:
        """The URL actually requested: `url`, or with `api_base` its Twilio host replaced."""
        if not self.api_base:
            return url
        parts = urlsplit(url)
        if not _is_twilio_host(parts.hostname):
            return url
        base = urlsplit(self.api_base)
        return urlunsplit(
            (base.scheme, base.netloc, base.path + parts.path, parts.query, parts.fragment)
        )

    async def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (twilio's HttpClient interface)
        allow_redirects: bool = False,
    ) -> Response:
        if self.session is None or self.session.closed:
            self.session = ClientSession()
        if auth is not None:
            # As a header: aiohttp 3.14 deprecates its `auth=BasicAuth(...)` parameter.
            credentials = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            headers = {**(headers or {}), "Authorization": f"Basic {credentials}"}
        return await super().request(
            method,
            self.route(url),
            params=params,
            data=data,
            headers=headers,
            auth=None,
            timeout=timeout if timeout is not None else self.timeout,
            allow_redirects=allow_redirects,
        )


def make_twilio_client(
    account_sid: str,
    auth_token: str,
    api_base: str | None = None,
    *,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> Client:
    """A `twilio.rest.Client` whose `*_async` methods work; see the module docstring.

    Safe to call without a running event loop: no connection is opened until the first request.
    """
    return Client(
        account_sid,
        auth_token,
        http_client=RoutedTwilioHttpClient(api_base, timeout=timeout),
    )


async def aclose_twilio_client(client: Client) -> None:
    """Close the aiohttp session of a client made by `make_twilio_client`."""
    http = client.http_client
    if isinstance(http, AsyncTwilioHttpClient):
        await http.close()
