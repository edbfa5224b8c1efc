"""Web Push in real Chromium: the app subscribes through its service worker with the service's
VAPID key; an offer to a worker whose page is closed goes out as a Web Push (encrypted, VAPID
signed) to the suite's local push service; delivered to the service worker, it is shown as a
notification naming the job and opens the offer in the app.

Headless Chromium has no push service of its own to subscribe at (Google's, which the tests do
not reach), so the page's `pushManager.subscribe` fails there and the app carries on with the
stream and texts (the test checks it says so and breaks nothing). The test then registers, on
the worker's behalf through the same API the app calls, a subscription of the local push
service (which holds its private key, as a browser would), and hands the pushed message, once
decrypted, to the page's own service worker through DevTools (`ServiceWorker.deliverPushMessage`,
the push event a browser raises)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace

import pytest

from tests.app.conftest import PHONE_SIZE, verified_worker, watch_errors
from tests.conftest import E164_ANYWHERE
from tests.dispatch.helpers import CENTER, community
from tests.dispatch.test_grab import post_job
from tests.notifications.conftest import SUBJECT, push_peer, vapid_key

WORKER_PHONE = "+8613755556666"
__all__ = ["push_peer", "vapid_key"]  # the notifications tests' fixtures, used here


@pytest.fixture
def settings(settings, push_peer, vapid_key):
    return replace(
        settings, vapid_private_key=vapid_key, vapid_subject=SUBJECT, push_allow_http=True,
        egress_allowed_hosts=("127.0.0.1",), relay_backoff_s=0.05,
    )  # fmt: skip


async def test_an_offer_pushed_to_a_closed_app_is_shown_and_opens_it(
    browser, served_base, client, principals, admin, resident, push_peer
) -> None:
    cid = await community(client, admin)
    context = await browser.new_context(
        viewport=PHONE_SIZE, locale="en-US", permissions=["geolocation", "notifications"],
        geolocation={"latitude": CENTER[0] + 0.001, "longitude": CENTER[1], "accuracy": 10},
    )  # fmt: skip
    page = await context.new_page()
    errors = watch_errors(page)
    warnings: list[str] = []
    page.on("console", lambda m: warnings.append(m.text) if m.type == "warning" else None)
    _, hw = await verified_worker(page, served_base, client, admin, principals, cid, WORKER_PHONE)
    # Online in the app: it asks the service for the VAPID key and subscribes through its
    # service worker; the subscription fails in headless Chromium, which the app survives.
    await page.click("#w-online")
    await page.wait_for_selector("#w-state.on")
    await page.wait_for_function("window.worker && worker.flushed === true", timeout=10_000)
    key = (await client.get("/v1/push/vapid-public-key")).json()["key"]
    subscribed = await page.evaluate(
        """async (key) => {
            const reg = await navigator.serviceWorker.ready;
            const sub = await reg.pushManager.getSubscription();
            const ask = Uint8Array.from(atob(key.replace(/-/g, '+').replace(/_/g, '/')
                + '='.repeat((4 - key.length % 4) % 4)), (c) => c.charCodeAt(0));
            try { return (sub || await reg.pushManager.subscribe(
                {userVisibleOnly: true, applicationServerKey: ask})).toJSON(); }
            catch (e) { return String(e); }
        }""",
        key,
    )
    if isinstance(subscribed, dict):  # a browser with a push service: the app registered it
        listed = await client.get("/v1/workers/me/push-subscriptions", headers=hw)
        assert subscribed["endpoint"] in listed.text
    else:
        assert any("push subscription" in w for w in warnings), warnings
    sub = push_peer.new_subscription(key)
    r = await client.post(
        "/v1/workers/me/push-subscriptions",
        json={"endpoint": sub["endpoint"], "keys": sub["keys"]}, headers=hw,
    )  # fmt: skip
    assert r.status_code in (200, 201), r.text

    # The app closed (its stream with it): the offer goes out as a push.
    await page.close()
    await asyncio.sleep(0.3)
    posted = await post_job(client, resident, location={"lat": CENTER[0], "lng": CENTER[1]})
    for _ in range(200):
        if push_peer.received:
            break
        await asyncio.sleep(0.05)
    assert push_peer.received, push_peer.refusals()
    payload = push_peer.received[0].payload
    assert E164_ANYWHERE.search(payload) is None  # nobody's phone number in a push
    message = json.loads(payload)
    offer = message["event"]["offer"]
    assert message["kind"] == "offer" and offer["job_id"] == posted["id"]
    assert "Move a sofa" in message["body"]

    # The app opened again; the push event reaches its service worker, which shows it.
    page = await context.new_page()
    errors += watch_errors(page)
    await page.goto(f"{served_base}/app/")
    await page.wait_for_selector("#w-home:not([hidden])", timeout=10_000)
    cdp = await context.new_cdp_session(page)
    registrations: list[dict] = []
    cdp.on(
        "ServiceWorker.workerRegistrationUpdated",
        lambda e: registrations.extend(e["registrations"]),
    )
    await cdp.send("ServiceWorker.enable")
    for _ in range(100):
        if registrations:
            break
        await asyncio.sleep(0.05)
    (registration,) = [r for r in registrations if r["scopeURL"] == f"{served_base}/app/"]
    await cdp.send(
        "ServiceWorker.deliverPushMessage",
        {"origin": served_base, "registrationId": registration["registrationId"],
         "data": payload.decode()},
    )  # fmt: skip
    shown = []
    for _ in range(100):
        shown = await page.evaluate(
            """async () => (await (await navigator.serviceWorker.ready).getNotifications())
                .map((n) => ({title: n.title, body: n.body, data: n.data}))"""
        )
        if shown:
            break
        await asyncio.sleep(0.05)
    (note,) = shown
    assert note["title"] == "Move a sofa" and note["body"] == message["body"]
    assert note["data"] == {"offerId": offer["id"], "url": f"/app/#offer-{offer['id']}"}
    # The open page was handed the pushed offer: its card with the countdown.
    card = page.locator(f"#offers li.offer[data-offer='{offer['id']}']")
    await card.wait_for(timeout=3_000)
    assert "Move a sofa" in await card.inner_text()

    # A tap on the notification opens the app at its URL: the offer, marked, ready to take.
    tapped = await context.new_page()
    await tapped.goto(f"{served_base}{note['data']['url']}")
    marked = tapped.locator(f"#offers li.offer.highlight[data-offer='{offer['id']}']")
    await marked.wait_for(timeout=5_000)
    await marked.locator("button.take").click()
    await tapped.wait_for_selector("#w-job:not([hidden])", timeout=5_000)
    assert errors == []
    await context.close()
