"""`MAP_STYLE_URL`: a base map under the shapes when one is configured, as an XYZ template or a
style JSON with a raster source. The tile server is the outside world here, so Chromium's own
request routing plays it (a real PNG for every tile asked for); nothing of ours is stood in for."""

from __future__ import annotations

import base64
import json
import re

import pytest

from tests.conftest import with_auth
from tests.console.test_console import browser, signed_in_page  # noqa: F401 (fixture)
from tests.dispatch.helpers import community

TILE = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
STYLE_URL = "https://maps.example.test/styles/streets.json"
TEMPLATE = "https://tiles.example.test/{z}/{x}/{y}.png"


@pytest.fixture(params=["template", "style"])
def style(request) -> str:
    return request.param


@pytest.fixture
def settings(base_settings, style):
    from dataclasses import replace

    url = TEMPLATE if style == "template" else STYLE_URL
    return replace(with_auth(base_settings, otp_min_interval_s=0), map_style_url=url)


async def test_a_configured_base_map_is_drawn_under_the_shapes(
    browser,  # noqa: F811
    served_base,
    client,
    admin,
    style,
) -> None:
    cid = await community(client, admin)
    context = await browser.new_context(viewport={"width": 1200, "height": 800})
    asked: list[str] = []

    async def tile(route) -> None:
        asked.append(route.request.url)
        await route.fulfill(status=200, content_type="image/png", body=TILE)

    async def style_json(route) -> None:
        body = {"version": 8, "sources": {
            "streets": {"type": "raster", "tiles": [TEMPLATE], "tileSize": 256,
                        "attribution": "© Example Maps"}}, "layers": []}  # fmt: skip
        await route.fulfill(status=200, content_type="application/json", body=json.dumps(body))

    await context.route(re.compile(r"https://tiles\.example\.test/.*"), tile)
    await context.route(STYLE_URL, style_json)
    page = await signed_in_page(browser, served_base, client, admin, cid, context=context)
    await page.wait_for_selector("#map .leaflet-tile-pane img.leaflet-tile-loaded", timeout=10_000)
    assert all(re.fullmatch(r"https://tiles\.example\.test/\d+/\d+/\d+\.png", u) for u in asked)
    assert asked
    # The shapes are still on top of it.
    assert await page.locator("#map path.cell").count() >= 7
    if style == "style":
        assert "© Example Maps" in await page.locator(".leaflet-control-attribution").inner_text()
    await context.close()
