"""The residents' and workers' app in real Chromium (Debian's `chromium`, driven by Playwright)
against the service on a real socket: the installable shell (manifest, icons, service worker,
offline), and the whole round of a grab job between two browser contexts with emulated
geolocation: a worker signs in and goes online, a resident posts nearby, the offer reaches the
worker's screen with its countdown, the worker takes it, the resident sees who and the PIN, the
worker checks in on arrival, enters the PIN and completes, the resident confirms and reviews."""

from __future__ import annotations

import json
import os

from tests.dispatch.test_identity import latest_code

SCREENSHOTS = os.environ.get("APP_SCREENSHOTS")
"""A folder for the README's screenshots (`APP_SCREENSHOTS=docs`): both sides, both languages."""
PHONE_SIZE = {"width": 360, "height": 780}
WORKER_PHONE = "+8613711112222"
RESIDENT_PHONE = "+8613833334444"


async def sign_in(page, base: str, client, admin, phone: str, role: str) -> None:
    await page.goto(f"{base}/app/")
    await page.check(f"input[name=role][value={role}]")
    await page.fill("#phone", phone)
    await page.click("#phone-form button")
    await page.wait_for_selector("#code-form:not([hidden])")
    await page.fill("#code", await latest_code(client, admin, phone))
    await page.click("#code-form button")
    await page.wait_for_selector(f"#{role}:not([hidden])")


def watch_errors(page) -> list[str]:
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    return errors


async def test_the_shell_installs_and_opens_offline(browser, served_base, client) -> None:
    context = await browser.new_context(viewport=PHONE_SIZE, locale="en-US")
    page = await context.new_page()
    errors = watch_errors(page)
    await page.goto(f"{served_base}/app/")
    await page.wait_for_selector("#signin:not([hidden])")
    # The service worker takes the page, with the shell cached.
    scope = await page.evaluate("navigator.serviceWorker.ready.then((r) => r.scope)")
    assert scope == f"{served_base}/app/"
    cached = await page.evaluate(
        "caches.open('shell-v1').then((c) => c.keys()).then((ks) => ks.map((k) => k.url))"
    )
    assert f"{served_base}/app/app.js" in cached
    assert f"{served_base}/ops/vendor/leaflet-1.9.4/leaflet.js" in cached
    # The manifest: installable (name, start URL in scope, standalone, 192 and 512 PNG icons).
    href = await page.get_attribute("link[rel=manifest]", "href")
    r = await client.get(f"/app/{href}")
    assert r.status_code == 200
    manifest = json.loads(r.text)
    assert manifest["start_url"].startswith(manifest["scope"]) and manifest["scope"] == "/app/"
    assert manifest["display"] == "standalone" and manifest["name"]
    sizes = {i["sizes"]: i for i in manifest["icons"]}
    for size in ("192x192", "512x512"):
        icon = await client.get(f"/app/{sizes[size]['src']}")
        assert icon.status_code == 200 and icon.content[:8] == b"\x89PNG\r\n\x1a\n"
        assert icon.headers["content-type"] == "image/png"
    # Offline: the shell still opens (from the service worker's cache), and says it is offline.
    await context.set_offline(True)
    await page.reload()
    await page.wait_for_selector("#signin:not([hidden])")
    await page.wait_for_selector("#net:not([hidden])")
    assert "offline" in (await page.inner_text("#net")).lower()
    # The language switch: every text in Chinese, and back.
    await page.click("#lang")
    assert await page.inner_text("#signin h1") == "登录"
    assert await page.evaluate("document.documentElement.lang") == "zh-CN"
    await page.click("#lang")
    assert await page.inner_text("#signin h1") == "Sign in"
    assert errors == []
    await context.close()
