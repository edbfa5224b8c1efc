"""The job's screens on both phones in real Chromium against the service on a real socket: a
resident books a worker from the proposals (a bookable start tapped, the booking confirmed by
the worker, the time shown); on a job in hand the two talk in the app, the worker is asked to
check in while working a safety category and does, both press SOS and the operators get the
alerts, and the resident's money screen follows the escrow from the hold to the release, in
words of the reader's language."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import text

from tests.app.conftest import phone, sign_in, text_in, verified_worker
from tests.app.test_people_app import watch_numbers
from tests.dispatch.helpers import CENTER, community, ready_worker
from tests.dispatch.test_booking import available
from tests.dispatch.test_grab import offers_of, post_job, wait_for

SHANGHAI = ZoneInfo("Asia/Shanghai")
NEAR = (CENTER[0] + 0.0018, CENTER[1])  # about 200 m north


def local(days: int, hour: int) -> datetime:
    day = datetime.now(SHANGHAI).date() + timedelta(days=days)
    return datetime.combine(day, datetime.min.time(), tzinfo=SHANGHAI).replace(hour=hour)


async def test_every_app_text_is_in_both_languages_with_the_same_placeholders(
    browser, served_base
) -> None:
    context, page, errors = await phone(browser, "en-US", CENTER, SHANGHAI.key)
    await page.goto(f"{served_base}/app/")
    texts = json.loads(await page.evaluate("JSON.stringify(TEXTS)"))
    assert set(texts) == {"en", "zh-CN"}
    assert set(texts["en"]) == set(texts["zh-CN"])
    marks = "s => (s.match(/{[a-z_]+}/g) || []).sort().join()"
    for key, en in texts["en"].items():
        same = await page.evaluate(
            f"([a, b]) => ({marks})(a) === ({marks})(b)", [en, texts["zh-CN"][key]]
        )
        assert same, key
    assert errors == []
    await context.close()


async def test_a_resident_books_a_worker_from_the_proposals(
    browser, served_base, client, principals, admin
) -> None:
    cid = await community(client, admin, timezone="Asia/Shanghai")
    wid, w = await ready_worker(client, principals, cid, NEAR, skills=("moving",))
    await available(
        client, w, min_notice_min=0, home={"lat": NEAR[0], "lng": NEAR[1]},
        weekly=[{"day": d, "start": "08:00", "end": "20:00"}
                for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")],
    )  # fmt: skip
    context, page, errors = await phone(browser, "en-US", CENTER, SHANGHAI.key)
    leaks = watch_numbers(context, served_base)
    await sign_in(page, served_base, client, admin, "+8613822223333", "resident")
    await page.wait_for_function("document.getElementById('r-community').textContent.length > 0")
    await page.fill("#p-title", "Clean the kitchen")
    await page.select_option("#p-category", "moving")
    await page.fill("#p-price", "150")
    await page.fill("#p-address", "5 Julu Road")
    await page.check("input[name=mode][value=booking]")
    await page.wait_for_selector("#booking-fields:not([hidden])")
    # The window, typed in the phone's time (Shanghai): the day after tomorrow, 09:00 to 13:00.
    day = local(2, 9)
    await page.fill("#p-from", day.strftime("%Y-%m-%dT%H:%M"))
    await page.fill("#p-to", day.replace(hour=13).strftime("%Y-%m-%dT%H:%M"))
    await page.fill("#p-duration", "90")
    await page.click("#find")
    candidate = page.locator(f"#candidates li.candidate[data-worker='{wid}']")
    await candidate.wait_for(timeout=5_000)
    shown = await candidate.inner_text()
    assert shown.startswith(f"W{wid} · new · ") and "m away" in shown
    starts = candidate.locator("button.start")
    assert await starts.count() >= 2
    chosen = await starts.nth(1).get_attribute("data-start")
    chosen_at = datetime.fromisoformat(chosen.replace("Z", "+00:00"))
    assert day <= chosen_at <= day.replace(hour=13) - timedelta(minutes=90)
    await starts.nth(1).click()
    await text_in(page, "#toast", f"W{wid} at")
    assert await starts.nth(1).get_attribute("class") == "quiet start chosen"
    await page.click("#post")
    await page.wait_for_selector("#r-job:not([hidden])")
    job_id = await page.evaluate("resident.open")

    # The offer went to that worker, for exactly the start tapped.
    (offer,) = await offers_of(client, w)
    assert offer["job_id"] == job_id and offer["job"]["mode"] == "booking"
    assert datetime.fromisoformat(offer["job"]["scheduled_start"]) == chosen_at
    r = await client.post(f"/v1/offers/{offer['id']}/accept", headers=w)
    assert r.status_code == 200, r.text
    # The resident's screen: taken, and when, in the phone's time.
    await text_in(page, "#rj-status", "Taken")
    await text_in(page, "#rj-taken", f"W{wid}")
    local_start = chosen_at.astimezone(SHANGHAI)
    end = local_start + timedelta(minutes=90)
    await text_in(page, "#rj-when", f"{local_start:%H:%M}–{end:%H:%M}")
    assert (await page.inner_text("#rj-when")).startswith("Booked for")
    job = await client.get(f"/v1/jobs/{job_id}", headers={"Authorization": w["Authorization"]})
    assert job.json()["worker_id"] == wid and job.json()["address"] == "5 Julu Road"
    assert errors == [] and leaks == []
    await context.close()


async def test_talk_check_ins_sos_and_the_money_screen_between_two_phones(
    browser, served_base, client, principals, admin
) -> None:
    cid = await community(client, admin, dispatch={
        "safety_categories": ["moving"], "checkin_interval_min": 3, "checkin_grace_min": 5,
    })  # fmt: skip
    w_ctx, wp, w_errors = await phone(browser, "zh-CN", NEAR, SHANGHAI.key)
    r_ctx, rp, r_errors = await phone(browser, "en-US", CENTER, SHANGHAI.key)
    leaks = watch_numbers(w_ctx, served_base) + watch_numbers(r_ctx, served_base)
    _, w = await verified_worker(wp, served_base, client, admin, principals, cid, "+8613766667777")
    r = await client.post("/v1/workers/me/presence", json={"status": "online"}, headers=w)
    assert r.status_code == 200, r.text
    r = await client.post(
        "/v1/workers/me/location", json={"lat": NEAR[0], "lng": NEAR[1]}, headers=w
    )
    assert r.status_code == 204, r.text
    await sign_in(rp, served_base, client, admin, "+8613844445555", "resident")
    token = await rp.evaluate("localStorage.getItem('app-token')")
    resident = {"Authorization": f"Bearer {token}"}
    job = await post_job(client, resident, price_cents=10_000, address="9 Anfu Road")
    await rp.evaluate(f"openJob({job['id']})")
    await wp.locator("#offers li.offer button.take").click()
    await wp.wait_for_selector("#w-job:not([hidden])")
    await text_in(rp, "#rj-status", "Taken")

    # The money screen: the price held in escrow since the assignment, in the resident's words.
    await text_in(rp, "#rj-ledger", "Into escrow · ¥100.00 · held")
    await text_in(rp, "#rj-escrow", "Held in escrow now: ¥100.00")
    assert "Your payment · ¥100.00 · done" in await rp.inner_text("#rj-ledger")

    # They talk in the app: the worker writes first, the resident answers.
    await wp.fill("#wj-message", "我十分钟后到")
    await wp.click("#wj-message-form button")
    await text_in(rp, "#rj-messages li.theirs", "我十分钟后到")
    await rp.fill("#rj-message", "Gate code 1234, second floor")
    await rp.click("#rj-message-form button")
    await text_in(wp, "#wj-messages li.theirs", "Gate code 1234")
    assert await wp.locator("#wj-messages li").all_inner_texts() == [
        "我十分钟后到", "Gate code 1234, second floor",
    ]  # fmt: skip
    assert await rp.locator("#rj-messages li.mine").all_inner_texts() == [
        "Gate code 1234, second floor"
    ]

    # Arrival, the PIN, work: a safety category, so the worker is asked to check in, and does.
    await w_ctx.set_geolocation({"latitude": CENTER[0], "longitude": CENTER[1], "accuracy": 5})
    await wp.click("#wj-arrive")
    await wp.wait_for_selector("#wj-start:not([hidden])", timeout=5_000)
    pin = (await client.get(f"/v1/jobs/{job['id']}", headers=resident)).json()["start_pin"]
    await wp.fill("#wj-pin", pin)
    await wp.click("#wj-start button")
    await wp.wait_for_selector("#wj-periodic:not([hidden])", timeout=5_000)
    await wp.wait_for_selector("#wj-due:not([hidden])", timeout=5_000)  # due within 5 minutes
    assert await wp.inner_text("#wj-due") == "请报平安：一切都好吗？"
    await wp.click("#wj-periodic")
    await text_in(wp, "#toast", "已报平安")
    safety = (await client.get(f"/v1/jobs/{job['id']}/safety", headers=w)).json()
    assert [c["kind"] for c in safety["checkins"]] == ["arrival", "periodic"]

    # SOS from each phone: two critical alerts for the community's operators.
    await wp.click("#wj-sos")
    await text_in(wp, "#toast", "已通知求助")
    await rp.wait_for_selector("#rj-sos:not([hidden])")
    await rp.click("#rj-sos")
    await text_in(rp, "#toast", "Help is alerted.")
    ops = await principals.operator(cid)

    async def two_sos() -> bool:
        alerts = (await client.get(f"/v1/ops/communities/{cid}/alerts", headers=ops)).json()
        sos = [a for a in alerts if a["kind"] == "sos" and a["job_id"] == job["id"]]
        return len(sos) == 2 and all(a["severity"] == "critical" for a in sos)

    await wait_for(two_sos)
    calls = (await client.get(f"/v1/jobs/{job['id']}/safety", headers=resident)).json()["sos"]
    assert sorted(c["role"] for c in calls) == ["resident", "worker"]
    async with principals.sessions() as session:
        places = (
            await session.execute(
                text("SELECT role, lat, lng FROM sos_calls WHERE job_id = :j ORDER BY role"),
                {"j": job["id"]},
            )
        ).all()
    # Each press carried its phone's place: the resident at the door, the worker there too.
    assert [(p.role, round(p.lat, 4), round(p.lng, 4)) for p in places] == [
        ("resident", round(CENTER[0], 4), round(CENTER[1], 4)),
        ("worker", round(CENTER[0], 4), round(CENTER[1], 4)),
    ]

    # Done and confirmed: the money screen shows the release, and nothing left in escrow.
    await wp.click("#wj-complete")
    await wp.wait_for_selector("#w-job[hidden]", state="attached", timeout=5_000)
    await rp.wait_for_selector("#rj-confirm:not([hidden])", timeout=5_000)
    await rp.click("#rj-confirm")
    await text_in(rp, "#rj-status", "Confirmed and paid")
    await text_in(rp, "#rj-ledger", "To the worker · ¥85.00 · done")
    ledger = await rp.locator("#rj-ledger li").all_inner_texts()
    assert "Service fee · ¥15.00 · done" in ledger
    assert "Into escrow · ¥100.00 · done" in ledger
    assert await rp.inner_text("#rj-escrow") == "Held in escrow now: ¥0.00"
    assert all(" · escrow_hold" not in line and "worker_pay" not in line for line in ledger)
    assert w_errors == [] and r_errors == []
    assert leaks == []
    await w_ctx.close()
    await r_ctx.close()
