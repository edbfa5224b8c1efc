"""The app's tests use the dispatch tests' people and the console's browser, and these helpers:
signing in on the app's screen, and a worker verified by the community's operator."""

from __future__ import annotations

from tests.console.test_console import browser, settings
from tests.dispatch.conftest import admin, resident
from tests.dispatch.test_identity import latest_code

__all__ = ["admin", "browser", "resident", "settings"]

PHONE_SIZE = {"width": 360, "height": 780}
TEXT_IN = "([s, t]) => document.querySelector(s)?.textContent.includes(t)"


async def phone(browser, locale: str, at: tuple[float, float], timezone: str = "UTC"):
    """A phone-sized browser context in `locale` and `timezone`, at `at` (geolocation
    allowed): (context, page, the page's uncaught errors as they come)."""
    context = await browser.new_context(
        viewport=PHONE_SIZE, locale=locale, timezone_id=timezone, permissions=["geolocation"],
        geolocation={"latitude": at[0], "longitude": at[1], "accuracy": 10},
    )  # fmt: skip
    page = await context.new_page()
    return context, page, watch_errors(page)


async def text_in(page, selector: str, text: str, within_ms: int = 10_000) -> None:
    """Wait until the element's text contains `text`."""
    await page.wait_for_function(TEXT_IN, arg=[selector, text], timeout=within_ms)


async def sign_in(page, base: str, client, admin, phone: str, role: str) -> None:
    """Sign in on the app's screen by the code the service texted."""
    await page.goto(f"{base}/app/")
    await page.check(f"input[name=role][value={role}]")
    await page.fill("#phone", phone)
    await page.click("#phone-form button")
    await page.wait_for_selector("#code-form:not([hidden])")
    await page.fill("#code", await latest_code(client, admin, phone))
    await page.click("#code-form button")
    await page.wait_for_selector(f"#{role}:not([hidden])")


def watch_errors(page) -> list[str]:
    """The page's uncaught errors, gathered as they happen."""
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    return errors


async def verified_worker(
    page, base: str, client, admin, principals, community_id: int, phone: str,
    skills: tuple[str, ...] = ("moving",),
) -> tuple[int, dict[str, str]]:  # fmt: skip
    """A worker signed in on `page`, with a profile (written through the API with the page's
    own token) verified by the community's operator, and the worker's home screen shown:
    (worker id, bearer headers)."""
    await sign_in(page, base, client, admin, phone, "worker")
    token = await page.evaluate("localStorage.getItem('app-token')")
    headers = {"Authorization": f"Bearer {token}"}
    body = {"name": "Li", "skills": list(skills), "community_ids": [community_id]}
    r = await client.put("/v1/workers/me", json=body, headers=headers)
    assert r.status_code == 200, r.text
    wid = r.json()["id"]
    ops = await principals.operator(community_id)
    r = await client.post(f"/v1/ops/workers/{wid}/verify", headers=ops)
    assert r.status_code == 200, r.text
    await page.reload()
    await page.wait_for_selector("#w-home:not([hidden])", timeout=10_000)
    return wid, headers
