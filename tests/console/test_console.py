"""The operators' console in real Chromium (Debian's `chromium`, driven by Playwright) against the
service on a real socket: sign-in by code, the map drawn, a job posted through the API on the
map and the board within 2 s with its wave, an alert that sounds, changes the title and is
acknowledged, a manual assignment, and an operator of another community refused. The page and
its scripts carry no phone number; a screenshot is kept for the README."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import AsyncIterator

import h3
import pytest

from dispatch.ops.events import append, stream_key
from tests.conftest import E164_ANYWHERE, with_auth
from tests.dispatch.helpers import CENTER, community, ready_worker
from tests.dispatch.test_grab import crew, offers_of, post_job
from tests.dispatch.test_identity import latest_code

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
"""Debian's package (`make deps` installs it), driven by Playwright's own driver."""
FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
SCREENSHOT = os.environ.get("CONSOLE_SCREENSHOT")
"""Where to keep the screenshot (the README's: `CONSOLE_SCREENSHOT=docs/console.png`)."""
OPERATOR_PHONE = "+8613955556666"


@pytest.fixture
def settings(base_settings):
    return with_auth(base_settings, otp_min_interval_s=0)


@pytest.fixture
async def browser() -> AsyncIterator[object]:
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        chromium = await p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield chromium
        await chromium.close()


async def signed_in_page(browser, served_base: str, client, admin, cid: int, context=None):
    """A page signed in as the community's operator (in `context` if given: its routes)."""
    r = await client.post(
        "/v1/admin/operators", json={"phone": OPERATOR_PHONE, "community_ids": [cid]},
        headers=admin,
    )  # fmt: skip
    assert r.status_code == 200, r.text
    if context is not None:
        page = await context.new_page()
    else:
        page = await browser.new_page(viewport={"width": 1400, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.errors = errors  # type: ignore[attr-defined]
    await page.goto(f"{served_base}/ops/")
    await page.fill("#phone", OPERATOR_PHONE)
    await page.click("#phone-form button")
    await page.wait_for_selector("#code-form:not([hidden])")
    await page.fill("#code", await latest_code(client, admin, OPERATOR_PHONE))
    await page.click("#code-form button")
    await page.wait_for_selector("#console:not([hidden])")
    await page.wait_for_selector("#live.on", timeout=10_000)
    return page


async def drawn(page, redis, cid: int, n: int) -> None:
    """Wait for `n` workers' dots; if they do not come, fail with what the console holds and
    what the community's event stream carried, so a failure says which side lost what."""
    try:
        await page.wait_for_function(
            "(n) => document.querySelectorAll('#map path.worker').length === n",
            arg=n, timeout=30_000,
        )  # fmt: skip
    except Exception as exc:
        held = await page.evaluate(
            """() => ({
                live: document.getElementById('live').textContent, last: view.last,
                dots: document.querySelectorAll('#map path.worker').length,
                workers: [...view.workers.values()].map((w) => [w.id, w.state, w.location]),
                unplaced: [...view.unplaced.keys()] })"""
        )
        events = await redis.xrange(stream_key(cid))
        told = [(i.decode(), f[b"type"].decode(), f[b"data"][:300].decode()) for i, f in events]
        errors = page.errors  # type: ignore[attr-defined]
        raise AssertionError(
            f"{n} dots not drawn: console {held}; page errors {errors}; stream {told}"
        ) from exc


async def test_the_console_follows_dispatch(
    browser, served_base, client, principals, admin, resident, redis
) -> None:
    cid = await community(client, admin)
    team = await crew(client, principals, cid, [100, 300, 600])
    page = await signed_in_page(browser, served_base, client, admin, cid)
    # The map: the community's outline, its H3 cells and the workers' dots, as SVG paths.
    await page.wait_for_function("document.querySelectorAll('#map path.worker').length === 3")
    assert await page.locator("#map path.cell").count() >= 7  # the cells over the area
    here = h3.latlng_to_cell(*CENTER, 8)
    # A worker who comes on line after the snapshot: a dot, and supply in their cell.
    before = await page.evaluate("(c) => view.cells.get(c).supply", here)
    late = await ready_worker(client, principals, cid, CENTER, skills=("moving",))
    await drawn(page, redis, cid, 4)
    await page.wait_for_function(
        "([c, n]) => view.cells.get(c).supply === n", arg=[here, before + 1], timeout=3_000
    )
    r = await client.post(
        "/v1/jobs",
        json={"title": "Move a sofa", "category": "moving", "skills": ["moving"],
              "location": {"lat": CENTER[0], "lng": CENTER[1]}, "mode": "grab",
              "price_cents": 8000},
        headers={**resident, "Idempotency-Key": "console-1"},
    )  # fmt: skip
    assert r.status_code == 201, r.text
    job_id = r.json()["id"]
    item = page.locator(f"#board-open li[data-job='{job_id}']", has_text="wave 1")
    await item.wait_for(timeout=2_000)  # on the board within 2 s, its first wave out
    # On the map, its wave drawn as its radius, and demand in its cell (the nearest worker,
    # offered it, leaves the supply there).
    assert await page.locator("#map path.job").count() == 1
    assert await page.locator("#map path.wave").count() == 1
    await page.wait_for_function(
        "([c, n]) => view.cells.get(c).demand === 1 && view.cells.get(c).supply <= n",
        arg=[here, before], timeout=2_000,
    )  # fmt: skip
    left = await page.evaluate("(c) => view.cells.get(c).supply", here)
    tip = await page.evaluate("(c) => view.cells.get(c).shape.getTooltip().getContent()", here)
    assert tip == f"supply {left} · demand 1"

    # Manual dispatch from the job's panel.
    await item.click()
    await page.wait_for_selector("#dispatch-log li")  # why these workers
    logged = await page.locator("#dispatch-log li").first.inner_text()
    assert "wave 1" in logged and "score" in logged and "exposure" in logged
    await page.click("#replay")
    await page.wait_for_function("document.getElementById('replay-result').textContent.length")
    assert "same workers" in await page.locator("#replay-result").inner_text()
    await page.wait_for_selector("#nearby li button")
    await page.locator("#nearby li button").first.click()
    await page.locator(f"#board-assigned li[data-job='{job_id}']").wait_for(timeout=5_000)

    # An SOS: a critical alert on top, the title changed; acknowledged, it goes.
    assert (
        await client.post(f"/v1/jobs/{job_id}/sos", json={}, headers=resident)
    ).status_code == 202
    alert = page.locator("#alerts li.critical")
    await alert.wait_for(timeout=5_000)
    assert "sos" in (await alert.inner_text()).lower()
    assert "ALERT" in await page.title()
    shot = await page.screenshot(path=SCREENSHOT)
    assert shot[:8] == b"\x89PNG\r\n\x1a\n"
    await alert.locator("button").click()
    await alert.wait_for(state="detached", timeout=5_000)
    assert "ALERT" not in await page.title()

    # The verification queue: a worker's papers, approved in place.
    wid, h = await principals.user("worker")
    prof = {"name": "Wang", "skills": ["moving"], "community_ids": [cid]}
    assert (await client.put("/v1/workers/me", json=prof, headers=h)).status_code == 200
    r = await client.post(
        "/v1/workers/me/verification",
        json={"legal_name": "王建国", "id_number": "110101199003071234"}, headers=h,
    )  # fmt: skip
    await page.evaluate("loadQueues()")
    pending = page.locator(f"#verifications li[data-worker='{wid}']")
    await pending.wait_for(timeout=5_000)
    assert "王建国" in await pending.inner_text()
    await pending.locator("button").click()
    await pending.wait_for(state="detached", timeout=5_000)
    assert await page.locator("#outbox li").count() >= 1  # the offers' messages

    html = await page.content()
    assert not E164_ANYWHERE.findall(html.encode()), "a phone number on the page"
    for script in ("console.js", "vendor/leaflet-1.9.4/leaflet.js", "index.html"):
        body = (await client.get(f"/ops/{script}")).content
        assert not re.findall(rb"\+[1-9]\d{9,14}\b", body), script
    assert team and late  # the crew's dots were on the map
    assert page.errors == []  # type: ignore[attr-defined]


async def test_a_worker_whose_fix_came_before_them_is_drawn(
    browser, served_base, client, principals, admin, redis
) -> None:
    """A worker's fix and their going on line reach the console by two paths (the positions
    feed, once a second, and the event after the commit, maybe from another process), in
    either order. Here the fix comes first, from a ping made while off line: the console keeps
    it until the worker comes, and draws them where it said."""
    cid = await community(client, admin)
    page = await signed_in_page(browser, served_base, client, admin, cid)
    wid, h = await ready_worker(client, principals, cid, CENTER, skills=("moving",), online=False)
    await page.wait_for_function("(w) => view.unplaced.has(w)", arg=wid, timeout=5_000)
    assert await page.locator("#map path.worker").count() == 0  # off line: not on the map
    r = await client.post("/v1/workers/me/presence", json={"status": "online"}, headers=h)
    assert r.status_code == 200, r.text
    await page.wait_for_function(
        "document.querySelectorAll('#map path.worker').length === 1", timeout=5_000
    )
    at = await page.evaluate("(w) => view.workers.get(w).location", wid)
    assert (round(at["lat"], 5), round(at["lng"], 5)) == (round(CENTER[0], 5), round(CENTER[1], 5))
    assert await page.evaluate("(w) => view.unplaced.has(w)", wid) is False
    # A late event about them, stamped before the last one the console applied (another
    # request's, read earlier): it changes nothing. One stamped later does.
    stamp = await page.evaluate("(w) => view.stamps.get(w)", wid)
    offline = {"id": wid, "name": f"W{wid}", "online": False, "verification": "verified",
               "skills": ["moving"], "available": False, "lat": None, "lng": None,
               "cell": None, "at": None}  # fmt: skip
    late = (await append(redis, cid, "worker", {**offline, "stamp": stamp - 1})).decode()
    await page.wait_for_function("(id) => view.last === id", arg=late, timeout=5_000)
    assert await page.locator("#map path.worker").count() == 1
    await append(redis, cid, "worker", {**offline, "stamp": stamp + 1})
    await page.wait_for_function(
        "document.querySelectorAll('#map path.worker').length === 0", timeout=5_000
    )
    assert page.errors == []  # type: ignore[attr-defined]


async def test_a_late_event_about_a_job_changes_nothing(
    browser, served_base, client, principals, admin, resident, redis
) -> None:
    """A job's news from two transactions can reach the console in either order (each goes
    out after its own commit). The console keeps the state of the highest (version, wave): a
    late 'open, wave 1' after the job was taken does not put it back on the board as open."""
    cid = await community(client, admin)
    page = await signed_in_page(browser, served_base, client, admin, cid)
    team = await crew(client, principals, cid, [100])
    job = await post_job(client, resident, key="late-job")
    (offer,) = await offers_of(client, team[0][1])
    taken = await client.post(f"/v1/offers/{offer['id']}/accept", headers=team[0][1])
    assert taken.status_code == 200, taken.text
    status = "(id) => view.jobs.get(id) && view.jobs.get(id).status"
    await page.wait_for_function(f"(id) => ({status})(id) === 'assigned'", arg=job["id"])
    now = await page.evaluate("(id) => view.jobs.get(id)", job["id"])
    older = {"id": job["id"], "status": "open", "mode": "grab", "title": job["title"],
             "category": job["category"], "lat": now["location"]["lat"],
             "lng": now["location"]["lng"], "wave": 1, "wave_deadline": None,
             "worker_id": None, "version": now["version"] - 1, "cell": now.get("cell"),
             "offered": [team[0][0]]}  # fmt: skip
    late = (await append(redis, cid, "job", older)).decode()
    await page.wait_for_function("(id) => view.last === id", arg=late, timeout=5_000)
    assert await page.evaluate(status, job["id"]) == "assigned"
    # Newer news does change it.
    newer = {**older, "status": "cancelled", "version": now["version"] + 1, "offered": []}
    await append(redis, cid, "job", newer)
    await page.wait_for_function(f"(id) => ({status})(id) === 'cancelled'", arg=job["id"])
    assert page.errors == []  # type: ignore[attr-defined]


async def test_another_communitys_operator_is_refused(
    browser, served_base, client, principals, admin
) -> None:
    mine = await community(client, admin)
    other = await community(client, admin, name="Xuhui")
    page = await signed_in_page(browser, served_base, client, admin, mine)
    theirs = (await principals.operator(other))["Authorization"][7:]
    await page.evaluate(
        "([t, cid]) => { api.token = t; watch(cid); }", [theirs, mine]
    )  # an operator of `other` asking for `mine`
    await page.wait_for_function("document.getElementById('live').textContent.includes('not')")
    assert "not your community" in await page.locator("#live").inner_text()
