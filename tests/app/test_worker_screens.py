"""The worker's booking and money screens in real Chromium against the service on a real socket:
weekly hours and date overrides edited, saved, and there again after a reload (and in the API);
a schedule the service refuses shown by its code in the worker's language; the next 7 days with
a booking a resident made through the API, offered to and taken on the worker's screen, then
moved at the resident's request; a payout of a paid job's money requested and listed as paid.

The browsers run in UTC while the community lives in Asia/Shanghai: every time on the screen
is the worker's (their availability's timezone), not the phone's."""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from tests.app.conftest import phone, text_in, verified_worker
from tests.dispatch.helpers import CENTER, community
from tests.dispatch.test_grab import offers_of, post_job, wait_for

SCREENSHOTS = os.environ.get("APP_SCREENSHOTS")
"""A folder for screenshots of these screens (`APP_SCREENSHOTS=/tmp/shots`), whole pages."""
SHANGHAI = ZoneInfo("Asia/Shanghai")
WORKER_PHONE = "+8613755556666"
NEAR = (CENTER[0] + 0.0018, CENTER[1])  # about 200 m north


def local_day(days: int) -> datetime:
    """Midnight in Shanghai, `days` from today there."""
    day = datetime.now(SHANGHAI).date() + timedelta(days=days)
    return datetime.combine(day, datetime.min.time(), tzinfo=SHANGHAI)


async def shot(page, name: str) -> None:
    if SCREENSHOTS:
        await page.screenshot(path=os.path.join(SCREENSHOTS, f"app-{name}.png"), full_page=True)


async def availability(client, headers) -> dict:
    r = await client.get("/v1/workers/me/availability", headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


async def test_hours_and_overrides_are_saved_and_shown_again_in_chinese(
    browser, served_base, client, principals, admin
) -> None:
    cid = await community(client, admin, timezone="Asia/Shanghai")
    context, page, errors = await phone(browser, "zh-CN", NEAR)
    _, w = await verified_worker(page, served_base, client, admin, principals, cid, WORKER_PHONE)
    await page.click("#w-hours summary")
    await page.wait_for_selector("#av-unset:not([hidden])")
    assert "还没有设置接单时间" in await page.inner_text("#av-unset")
    assert await page.input_value("#av-buffer") == "15"  # the service's defaults
    assert await page.input_value("#av-notice") == "120"

    # Monday in two ranges, Saturday the default range.
    mon = page.locator("#av-weekly [data-day=mon]")
    await mon.locator("button.add").click()
    await mon.locator(".range").nth(0).locator("input.start").fill("08:00")
    await mon.locator(".range").nth(0).locator("input.end").fill("12:00")
    await mon.locator("button.add").click()
    await mon.locator(".range").nth(1).locator("input.start").fill("13:00")
    await mon.locator(".range").nth(1).locator("input.end").fill("17:30")
    await page.locator("#av-weekly [data-day=sat] button.add").click()
    sunday = (await page.locator("#av-weekly [data-day=sun]").inner_text()).split()
    assert sunday == ["周日", "+", "添加时段", "不接单"]
    # A day off, and a date with its own hours (both within the next 7 days).
    off, extra = local_day(3).date().isoformat(), local_day(4).date().isoformat()
    await page.click("#av-add-override")
    await page.locator("#av-overrides li").nth(0).locator("input[type=date]").fill(off)
    await page.click("#av-add-override")
    second = page.locator("#av-overrides li").nth(1)
    await second.locator("input[type=date]").fill(extra)
    await second.locator("button.add").click()
    await second.locator("input.start").fill("10:00")
    await second.locator("input.end").fill("14:00")
    await page.fill("#av-buffer", "30")
    await page.fill("#av-notice", "60")
    await page.fill("#av-max", "3")
    await page.fill("#av-radius", "5")
    await page.click("#av-home-here")
    await text_in(page, "#av-home", f"{NEAR[0]:.5f}")
    await page.click("#av-save")
    await text_in(page, "#toast", "已保存")
    await shot(page, "worker-hours-zh")
    assert await page.is_hidden("#av-error")

    saved = await availability(client, w)
    assert saved["timezone"] == "Asia/Shanghai"
    assert saved["weekly"] == [
        {"day": "mon", "start": "08:00", "end": "12:00"},
        {"day": "mon", "start": "13:00", "end": "17:30"},
        {"day": "sat", "start": "09:00", "end": "18:00"},
    ]
    assert saved["overrides"] == [
        {"date": off, "slots": []},
        {"date": extra, "slots": [{"start": "10:00", "end": "14:00"}]},
    ]
    assert (saved["buffer_min"], saved["min_notice_min"], saved["max_jobs_per_day"]) == (30, 60, 3)
    assert saved["travel_radius_m"] == 5000
    assert saved["home"] == pytest.approx({"lat": NEAR[0], "lng": NEAR[1]}, abs=1e-6)

    # After a reload: the same hours on the screen, and the calendar in the worker's time.
    await page.reload()
    await page.wait_for_selector("#w-home:not([hidden])", timeout=10_000)
    await text_in(page, "#cal-tz", "Asia/Shanghai")
    await text_in(page, f"#w-calendar li[data-day='{extra}']", "空闲 10:00–14:00")
    assert "没有空闲时段" in await page.inner_text(f"#w-calendar li[data-day='{off}']")
    await page.click("#w-hours summary")
    await page.wait_for_selector("#av-unset", state="hidden")
    ranges = mon.locator(".range")
    assert await ranges.count() == 2
    got = [
        (await r.locator("input.start").input_value(), await r.locator("input.end").input_value())
        for r in await ranges.all()
    ]
    assert got == [("08:00", "12:00"), ("13:00", "17:30")]
    dates = page.locator("#av-overrides input[type=date]")
    assert [await d.input_value() for d in await dates.all()] == [off, extra]
    assert await page.locator("#av-overrides li").nth(0).locator(".day-off").inner_text() == "休息"
    assert await second.locator("input.start").input_value() == "10:00"
    assert [await page.input_value(f"#av-{k}") for k in ("buffer", "notice", "max", "radius")] == [
        "30", "60", "3", "5",
    ]  # fmt: skip

    # A range that ends before it starts: the service's 422, said in Chinese for that day.
    await ranges.nth(0).locator("input.end").fill("07:00")
    await page.click("#av-save")
    await page.wait_for_selector("#av-error:not([hidden])")
    assert await page.inner_text("#av-error") == "周一：结束时间必须晚于开始时间。"
    assert await page.locator("#av-weekly .day.bad").get_attribute("data-day") == "mon"
    assert (await availability(client, w))["weekly"] == saved["weekly"]  # nothing changed
    # Two ranges that overlap: the same, with its own text.
    await ranges.nth(0).locator("input.end").fill("13:30")
    await page.click("#av-save")
    await text_in(page, "#av-error", "周一：有两个时段重叠了。")
    await shot(page, "worker-hours-error-zh")
    assert errors == []
    await context.close()


def at(day: datetime, hh: int, mm: int = 0) -> datetime:
    return day.replace(hour=hh, minute=mm)


async def test_the_calendar_shows_a_booking_taken_on_the_screen_and_moved(
    browser, served_base, client, principals, admin, resident
) -> None:
    cid = await community(client, admin, timezone="Asia/Shanghai")
    context, page, errors = await phone(browser, "en-US", NEAR)
    wid, w = await verified_worker(page, served_base, client, admin, principals, cid, WORKER_PHONE)
    week = [
        {"day": d, "start": "08:00", "end": "20:00"}
        for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    ]
    r = await client.put(
        "/v1/workers/me/availability", json={"weekly": week, "min_notice_min": 0}, headers=w
    )
    assert r.status_code == 200, r.text
    await page.reload()
    await page.wait_for_selector("#w-home:not([hidden])", timeout=10_000)
    day = local_day(2)
    key = day.date().isoformat()
    await text_in(page, f"#w-calendar li[data-day='{key}']", "Free 08:00–20:00")

    # A resident books this worker (through the API); the offer reaches the screen with its
    # slot in the worker's time, and the worker takes it there.
    start = at(day, 10)
    body = {
        "title": "Fix a tap", "category": "moving", "skills": ["moving"],
        "location": {"lat": CENTER[0], "lng": CENTER[1]}, "address": "8 Wulumuqi Road",
        "mode": "booking", "price_cents": 20_000, "duration_min": 120, "worker_id": wid,
        "window": {"start": start.isoformat(), "end": at(day, 12).isoformat()},
    }  # fmt: skip
    r = await client.post("/v1/jobs", json=body, headers={**resident, "Idempotency-Key": "bk1"})
    assert r.status_code == 201, r.text
    job = r.json()
    offer = page.locator("#offers li.offer")
    await offer.wait_for(timeout=5_000)
    assert "Booked for" in await offer.inner_text() and "10:00–12:00" in await offer.inner_text()
    assert "min left" in await offer.locator(".countdown").inner_text()  # 15 minutes to answer
    await shot(page, "worker-booking-offer-en")
    await offer.locator("button.take").click()
    booked = f"#w-calendar li[data-day='{key}']"
    await text_in(page, booked, "10:00–12:00 booked: Fix a tap · 8 Wulumuqi Road")
    lines = await page.locator(f"{booked} li").all_inner_texts()
    assert lines == ["Free 08:00–09:45", "10:00–12:00 booked: Fix a tap · 8 Wulumuqi Road",
                     "Free 12:15–20:00"]  # fmt: skip
    assert await page.locator(f"{booked} .strip .busy").count() == 1
    await shot(page, "worker-calendar-en")
    assert "Booked for" in await page.inner_text("#wj-when")  # the job in hand says when
    cal = await client.get(
        "/v1/workers/me/calendar",
        params={"from": day.isoformat(), "to": (day + timedelta(days=1)).isoformat()},
        headers=w,
    )
    assert [b["job_id"] for b in cal.json()["bookings"]] == [job["id"]]

    # The resident asks to move it to the next afternoon: the request comes to the screen,
    # the worker accepts, and the calendar follows.
    later = local_day(3)
    window = {"start": at(later, 14).isoformat(), "end": at(later, 16).isoformat()}
    r = await client.post(
        f"/v1/jobs/{job['id']}/reschedule", json={"window": window}, headers=resident
    )
    assert r.status_code == 200, r.text
    request = page.locator("#w-reschedule-list li")
    await request.wait_for(timeout=10_000)
    assert "Fix a tap" in await request.inner_text()
    assert "10:00–12:00" in await request.inner_text()
    assert "14:00–16:00" in await request.inner_text()
    await shot(page, "worker-reschedule-en")
    await request.locator("button.accept").click()
    await text_in(page, "#toast", "The booking is moved.")
    moved = f"#w-calendar li[data-day='{later.date().isoformat()}']"
    await text_in(page, moved, "14:00–16:00 booked: Fix a tap")
    await text_in(page, booked, "Free 08:00–20:00")
    if SCREENSHOTS:  # the hours as the API set them, in English
        await page.click("#w-hours summary")
        await shot(page, "worker-hours-en")
    assert await page.is_hidden("#w-reschedules")
    read = (await client.get(f"/v1/jobs/{job['id']}", headers=resident)).json()
    assert read["reschedule"]["status"] == "accepted" and read["worker_id"] == wid
    assert errors == []
    await context.close()


async def test_a_payout_of_a_paid_jobs_money_is_listed_in_chinese(
    browser, served_base, client, principals, admin, resident
) -> None:
    cid = await community(client, admin)
    context, page, errors = await phone(browser, "zh-CN", NEAR)
    _, w = await verified_worker(page, served_base, client, admin, principals, cid, WORKER_PHONE)
    await text_in(page, "#w-payouts", "还没有提现记录")
    assert await page.is_disabled("#po-request")  # nothing to withdraw yet
    # A job taken, done and confirmed through the API: its net is released to the worker.
    r = await client.post("/v1/workers/me/presence", json={"status": "online"}, headers=w)
    assert r.status_code == 200, r.text
    r = await client.post(
        "/v1/workers/me/location", json={"lat": NEAR[0], "lng": NEAR[1]}, headers=w
    )
    assert r.status_code == 204, r.text
    job = await post_job(client, resident, price_cents=10_000)
    (offer,) = await offers_of(client, w)
    r = await client.post(f"/v1/offers/{offer['id']}/accept", headers=w)
    assert r.status_code == 200, r.text
    r = await client.post(
        f"/v1/jobs/{job['id']}/complete", json={"assignment_version": 1}, headers=w
    )
    assert r.status_code == 200, r.text
    r = await client.post(f"/v1/jobs/{job['id']}/confirm", headers=resident)
    assert r.status_code == 200, r.text
    earned = (await client.get("/v1/workers/me/earnings", headers=w)).json()["payable_cents"]
    assert earned > 0
    amount = f"{earned / 100:.2f}"

    await page.reload()
    await page.wait_for_selector("#w-home:not([hidden])", timeout=10_000)
    await text_in(page, "#w-balance", f"可提现 {amount} 元")
    assert await page.input_value("#po-amount") == amount  # all of it, unless told otherwise
    await page.click("#po-request")
    await text_in(page, "#toast", "已申请提现")
    item = page.locator("#w-payouts li.payout")
    await item.wait_for()
    assert f"{amount} 元" in await item.inner_text()
    await text_in(page, "#w-payouts li.payout", "已到账")  # the provider paid it
    await text_in(page, "#w-paid-out", f"已提现 {amount} 元")
    await text_in(page, "#w-balance", "可提现 0.00 元")
    await shot(page, "worker-payouts-zh")
    assert await page.is_disabled("#po-request")

    async def paid() -> bool:
        listed = (await client.get("/v1/workers/me/payouts", headers=w)).json()
        return [(p["amount_cents"], p["status"]) for p in listed] == [(earned, "paid")]

    await wait_for(paid)
    # In English too, by the switch in the bar.
    await page.click("#lang")
    assert "Paid" in await item.inner_text()
    assert errors == []
    await context.close()
