"""The residents' and workers' app in real Chromium (Debian's `chromium`, driven by Playwright)
against the service on a real socket: the installable shell (manifest, icons, service worker,
offline), and the whole round of a grab job between two browser contexts with emulated
geolocation: a worker signs in and goes online, a resident posts nearby, the offer reaches the
worker's screen with its countdown, the worker takes it, the resident sees who and the PIN, the
worker checks in on arrival, enters the PIN and completes, the resident confirms and reviews."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

from tests.app.conftest import PHONE_SIZE, sign_in, watch_errors
from tests.conftest import E164_ANYWHERE, PROXY_PREFIX
from tests.dispatch.helpers import CENTER, community

SCREENSHOTS = os.environ.get("APP_SCREENSHOTS")
"""A folder for the README's screenshots (`APP_SCREENSHOTS=docs`): both sides, both languages."""
WORKER_PHONE = "+8613711112222"
RESIDENT_PHONE = "+8613833334444"


def watch_numbers(context, base: str) -> list[tuple[str, str]]:
    """Every phone number (other than the platform's proxies) in any page, script, API answer or
    stream frame the context receives from the service: the suite's leak check, in the browser."""
    found: list[tuple[str, str]] = []

    def scan(where: str, data: bytes | str) -> None:
        raw = data.encode() if isinstance(data, str) else data
        for m in E164_ANYWHERE.finditer(raw):
            if not m.group(0).startswith(PROXY_PREFIX):
                found.append((where, m.group(0).decode()))

    async def on_response(response) -> None:
        if response.url.startswith(base):
            try:
                scan(response.url, await response.body())
            except Exception:
                return

    def on_socket(ws) -> None:
        ws.on("framereceived", lambda frame: scan(ws.url.split("?")[0], frame))

    context.on("response", on_response)
    context.on("page", lambda page: page.on("websocket", on_socket))
    return found


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


def test_the_app_weighs_under_300_kb_compressed_before_the_map_library() -> None:
    """Everything the app serves of its own (pages, scripts, styles, manifest, icons), gzipped
    as a server would send it; Leaflet is the console's and is not counted."""
    static = Path(__file__).resolve().parents[2] / "people_app" / "static"
    sizes = {
        p.name: len(gzip.compress(p.read_bytes(), 9)) for p in static.rglob("*") if p.is_file()
    }
    assert {"index.html", "app.js", "i18n.js", "app.css", "sw.js", "manifest.json"} <= set(sizes)
    assert sum(sizes.values()) < 300_000, sizes


async def shot(page, name: str) -> None:
    if SCREENSHOTS:
        await page.screenshot(path=os.path.join(SCREENSHOTS, f"app-{name}.png"), full_page=False)


async def test_a_grab_job_between_two_phones(
    browser, served_base, client, principals, admin
) -> None:
    cid = await community(client, admin)
    near = (CENTER[0] + 0.0018, CENTER[1])  # about 200 m north
    w_ctx = await browser.new_context(
        viewport=PHONE_SIZE, locale="zh-CN", permissions=["geolocation"],
        geolocation={"latitude": near[0], "longitude": near[1], "accuracy": 10},
    )  # fmt: skip
    r_ctx = await browser.new_context(
        viewport=PHONE_SIZE, locale="en-US", permissions=["geolocation"],
        geolocation={"latitude": CENTER[0], "longitude": CENTER[1], "accuracy": 10},
    )  # fmt: skip
    leaks = watch_numbers(w_ctx, served_base)
    r_leaks = watch_numbers(r_ctx, served_base)
    wp, rp = await w_ctx.new_page(), await r_ctx.new_page()
    w_errors, r_errors = watch_errors(wp), watch_errors(rp)

    # The worker: signs in, writes a profile, asks for verification, is verified, goes online.
    await sign_in(wp, served_base, client, admin, WORKER_PHONE, "worker")
    await wp.wait_for_selector("#profile-form:not([hidden])")
    await wp.wait_for_function("document.getElementById('w-community').textContent.length > 0")
    await wp.fill("#w-name", "Li")
    await wp.check("#w-skills input[value=moving]")
    await wp.click("#profile-form button[type=submit]")
    await wp.wait_for_selector("#verify-form:not([hidden])")
    await wp.fill("#w-legal", "Li Lei")
    await wp.fill("#w-id", "110101199001011234")
    await wp.click("#verify-form button[type=submit]")
    await wp.wait_for_selector("#w-pending:not([hidden])")
    token = await wp.evaluate("localStorage.getItem('app-token')")
    me = await client.get("/v1/workers/me", headers={"Authorization": f"Bearer {token}"})
    ops = await principals.operator(cid)
    v = await client.post(f"/v1/ops/workers/{me.json()['id']}/verify", headers=ops)
    assert v.status_code == 200, v.text
    await wp.wait_for_selector("#w-home:not([hidden])", timeout=10_000)
    await wp.click("#w-online")
    await wp.wait_for_selector("#w-state.on")
    assert await wp.inner_text("#w-online") == "下线"  # the worker's browser speaks Chinese
    await wp.wait_for_function("window.worker && worker.flushed === true", timeout=10_000)

    # The resident: signs in, posts a job at the pin (their position).
    await sign_in(rp, served_base, client, admin, RESIDENT_PHONE, "resident")
    await rp.wait_for_function("document.getElementById('r-community').textContent.length > 0")
    await rp.fill("#p-title", "Move a sofa")
    await rp.select_option("#p-category", "moving")
    await rp.fill("#p-price", "80")
    await rp.fill("#p-address", "12 Yanping Road, flat 3")
    await rp.click("#post")
    await rp.wait_for_selector("#r-job:not([hidden])")

    # The offer reaches the worker's screen within 2 s, with its countdown.
    offer = wp.locator("#offers li.offer")
    await offer.wait_for(timeout=2_000)
    assert "Move a sofa" in await offer.inner_text()
    assert "还剩" in await offer.locator(".countdown").inner_text()
    await shot(wp, "worker-offer-zh")
    if SCREENSHOTS:  # the same screen in English, then back
        await wp.click("#lang")
        await shot(wp, "worker-offer-en")
        await wp.click("#lang")
    await wp.click("#offers li.offer button.take")
    await wp.wait_for_selector("#w-job:not([hidden])")
    assert "12 Yanping Road" in await wp.inner_text("#wj-address")

    # The resident sees who took it, their masked number and the PIN for the door.
    await rp.wait_for_function(
        "document.getElementById('rj-taken').textContent.includes('Li')", timeout=5_000
    )
    await rp.wait_for_selector("#rj-pin:not([hidden])")
    pin = (await rp.inner_text("#rj-pin")).rsplit(" ", 1)[-1]
    assert pin.isdigit() and len(pin) == 4
    assert "Notified 1 workers" in await rp.inner_text("#rj-notified")
    for page in (wp, rp):  # both screens fit a 360 px phone: nothing scrolls sideways
        assert await page.evaluate("document.documentElement.scrollWidth") <= PHONE_SIZE["width"]
    # The worker is about 200 m away (never their position): rounded up to 100 m.
    await rp.wait_for_function(
        "document.getElementById('rj-approach').textContent.includes('m away')", timeout=5_000
    )
    assert await rp.inner_text("#rj-approach") == "About 300 m away"
    await shot(rp, "resident-taken-en")
    if SCREENSHOTS:
        await rp.click("#lang")
        await shot(rp, "resident-taken-zh")
        await rp.click("#lang")

    # The worker arrives (at the job's place), enters the PIN, works, completes.
    await w_ctx.set_geolocation({"latitude": CENTER[0], "longitude": CENTER[1], "accuracy": 5})
    await wp.click("#wj-arrive")
    await wp.wait_for_selector("#wj-start:not([hidden])", timeout=5_000)
    await wp.fill("#wj-pin", pin)
    await wp.click("#wj-start button")
    await wp.wait_for_selector("#wj-complete:not([hidden])", timeout=5_000)
    await wp.click("#wj-complete")
    await wp.wait_for_selector("#w-job[hidden]", state="attached", timeout=5_000)

    # The resident confirms and reviews.
    await rp.wait_for_selector("#rj-confirm:not([hidden])", timeout=5_000)
    await rp.click("#rj-confirm")
    await rp.wait_for_selector("#rj-review:not([hidden])", timeout=5_000)
    await rp.check("input[name=stars][value='5']")
    await rp.fill("#rj-comment", "Quick and careful")
    await rp.click("#rj-review button[type=submit]")
    await rp.wait_for_selector("#rj-reviewed:not([hidden])", timeout=5_000)
    job_id = await rp.evaluate("resident.open")
    reviews = await client.get(f"/v1/workers/{me.json()['id']}/reviews", headers=admin)
    assert reviews.status_code == 200 and reviews.json()["rating_count"] == 1, reviews.text
    assert job_id
    assert w_errors == [] and r_errors == []
    assert leaks == [] and r_leaks == []  # nobody's number in a page, script, answer or frame
    await w_ctx.close()
    await r_ctx.close()
