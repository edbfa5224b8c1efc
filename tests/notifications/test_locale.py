"""Every text in the recipient's language: `PUT /v1/me {locale}` and `GET /v1/me`; the catalog
complete in both languages; a wave's offers, the taken notices, take-by-text replies, sign-in
codes and the safety call each in their recipient's language, delivered for real through the
twilio library to the local Twilio API. The service runs its own default here
(`DISPATCH_DEFAULT_LOCALE=auto`: a +86 phone without a choice is written to in Chinese)."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import pytest

from dispatch.core import texts
from dispatch.identity.locale import LOCALES, UnknownLocale, check_locale, locale_for_phone
from tests.dispatch.helpers import escrow_held
from tests.notifications.conftest import (
    FROM,
    live_settings,
    make_world,
    outbox,
    post_job,
    sign,
    wait_for,
    webhook,
    worker,
)
from tests.notifications.test_safety_ladder import at, ladder_of, started


@pytest.fixture
def settings(base_settings, twilio_peer, vapid_key):
    return live_settings(
        base_settings, twilio_peer, vapid_key, default_locale="auto",
        auth=replace(base_settings.auth, otp_min_interval_s=0),
    )  # fmt: skip


async def choose(client, headers, locale: str) -> dict:
    r = await client.put("/v1/me", json={"locale": locale}, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


def texted_to(peer, phone: str) -> list[str]:
    return [m["body"] for m in peer.messages if m["to"] == phone]


# --- the catalog ---------------------------------------------------------------------------


def test_every_text_is_in_every_language_with_the_same_placeholders() -> None:
    assert set(LOCALES) == {"en", "zh-CN"}
    for key, entry in texts.TEXTS.items():
        assert set(entry) == set(LOCALES), key
        wanted = texts.placeholders(entry["en"])
        for locale in LOCALES:
            assert entry[locale].strip(), (key, locale)
            assert texts.placeholders(entry[locale]) == wanted, (key, locale)
        if key not in ("take.pin", "text.empty"):  # a bare place, a bare placeholder word
            assert re.search(r"[\u4e00-\u9fff]", entry["zh-CN"]), key  # written in Chinese


def test_parameters_are_shown_in_the_language() -> None:
    offer = {"distance_m": 800, "price": texts.Money(8000, "CNY"), "ttl": texts.Duration(120)}
    assert texts.render("offer.grab", "en", title="Fix a tap", **offer) == (
        "New job 800 m away: Fix a tap, 80.00 CNY. Reply 1 to take it (2 min)."
    )
    assert texts.render("offer.grab", "zh-CN", title="修水龙头", **offer) == (
        "附近新活 800 米：修水龙头，80.00 元。回复 1 接单（2 分钟）。"
    )
    usd = texts.render("money.payout_paid", "zh-CN", amount=texts.Money(1250, "USD"))
    assert usd.startswith("12.50 USD ")
    assert "（30 秒）" in texts.render(
        "offer.grab", "zh-CN", title="x", **{**offer, "ttl": texts.Duration(30)}
    )
    monday = texts.LocalTime(datetime(2026, 12, 7, 14, 0))
    assert texts.render("reminder.resident", "en", title="T", start=monday) == (
        "Reminder: T is booked for Mon 07 Dec 14:00."
    )
    assert "12月7日 周一 14:00" in texts.render(
        "reminder.resident", "zh-CN", title="T", start=monday
    )
    # A language the service does not speak falls back to English; a nested text follows along.
    ask = texts.every("checkin.ask_periodic", title="T")
    assert texts.render("checkin.sms", "fr", ask=ask).startswith("Please check in")
    assert texts.render("checkin.sms", "zh-CN", ask=ask).startswith("请报平安")


def test_the_language_rules() -> None:
    assert check_locale("zh-CN") == "zh-CN" and check_locale("en") == "en"
    for wrong in ("zh-cn", "zh", "en-US", "EN", "", "fr"):
        with pytest.raises(UnknownLocale):
            check_locale(wrong)
    assert locale_for_phone("+8613812345678") == "zh-CN"
    assert locale_for_phone("+85291234567") == "en"  # Hong Kong writes Traditional Chinese
    assert locale_for_phone("+442071838750") == "en"
    assert locale_for_phone(None) == "en"
    assert locale_for_phone("+8613812345678", "en") == "en"  # the service fixed one
    assert locale_for_phone("+442071838750", "zh-CN") == "zh-CN"


# --- /v1/me --------------------------------------------------------------------------------


async def test_put_and_get_me(client, principals) -> None:
    uid, headers = await principals.user("worker")
    r = await client.get("/v1/me", headers=headers)
    assert r.status_code == 200
    # Made outside sign-in, with no phone rule applied: English until chosen.
    assert r.json() == {"user_id": uid, "role": "worker", "locale": "en"}
    assert await choose(client, headers, "zh-CN") == {
        "user_id": uid, "role": "worker", "locale": "zh-CN",
    }  # fmt: skip
    assert (await client.get("/v1/me", headers=headers)).json()["locale"] == "zh-CN"
    for wrong in ("zh-cn", "fr", "", "x" * 20):
        r = await client.put("/v1/me", json={"locale": wrong}, headers=headers)
        assert r.status_code == (400 if wrong == "" else 422), (wrong, r.text)
        if wrong:
            assert r.json()["code"] == "unknown_locale"
    assert (await client.get("/v1/me", headers=headers)).json()["locale"] == "zh-CN"
    for body in ({}, {"locale": "en", "theme": "dark"}, {"locale": 1}):
        r = await client.put("/v1/me", json=body, headers=headers)
        assert r.status_code == 400 and r.json()["code"] in ("bad_request", "validation_error")
    assert (await client.put("/v1/me", json={"locale": "en"})).status_code == 401
    assert (await client.get("/v1/me")).status_code == 401
    # Any signed-in role: an admin too.
    admin = await principals.admin()
    assert (await choose(client, admin, "zh-CN"))["role"] == "admin"


async def test_a_plus86_sign_in_code_is_chinese_until_a_choice(client, twilio_peer) -> None:
    china, london = "+8613812345678", "+442071838750"
    for phone in (china, london):
        r = await client.post("/v1/auth/otp", json={"phone": phone})
        assert r.status_code == 202, r.text
    await wait_for(lambda: _settled(len(twilio_peer.messages) == 2))
    [zh] = texted_to(twilio_peer, china)
    [en] = texted_to(twilio_peer, london)
    assert zh.startswith("您的登录验证码是 ") and "5 分钟内有效" in zh, zh
    assert en.startswith("Your sign-in code is "), en
    code = re.search(r"\d{6}", zh).group(0)
    r = await client.post("/v1/auth/token", json={"phone": china, "code": code, "role": "resident"})
    assert r.status_code == 200, r.text
    headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
    # The account made by signing in keeps the phone's language, until its owner chooses.
    assert (await client.get("/v1/me", headers=headers)).json()["locale"] == "zh-CN"
    await choose(client, headers, "en")
    assert (await client.post("/v1/auth/otp", json={"phone": china})).status_code == 202
    await wait_for(lambda: _settled(len(texted_to(twilio_peer, china)) == 2))
    assert texted_to(twilio_peer, china)[1].startswith("Your sign-in code is ")


async def _settled(value):
    return value


# --- offers and replies --------------------------------------------------------------------


async def test_one_wave_each_worker_in_their_language(
    client, principals, engine, twilio_peer
) -> None:
    world = await make_world(client, principals, waves=[{"radius_m": 2000, "size": None}])
    chinese, english, other_chinese = [await worker(client, principals, world) for _ in range(3)]
    await choose(client, chinese.headers, "zh-CN")
    await choose(client, other_chinese.headers, "zh-CN")
    job = await post_job(client, world.resident, "k1", title="Fix a tap")

    async def all_texted():
        rows = await outbox(engine, kind="offer")
        return len(rows) == 3 and all(r["via"] == "sms" for r in rows)

    await wait_for(all_texted)
    [zh] = texted_to(twilio_peer, chinese.phone)
    [en] = texted_to(twilio_peer, english.phone)
    assert zh == "附近新活 100 米：Fix a tap，80.00 元。回复 1 接单（30 秒）。"
    assert en == "New job 100 m away: Fix a tap, 80.00 CNY. Reply 1 to take it (30 s)."
    assert texted_to(twilio_peer, other_chinese.phone) == [zh]

    # The Chinese worker takes it by text, and is answered in Chinese.
    reply = {"From": chinese.phone, "To": FROM, "Body": "接单", "MessageSid": "SM" + "1" * 32}
    r = await webhook(client, "/v1/telephony/sms", reply)
    assert r.status_code == 200
    assert "接单成功：Fix a tap。" in r.text and "联系居民请拨 +1202555" in r.text, r.text
    got = await client.get(f"/v1/jobs/{job['id']}", headers=world.resident.headers)
    assert got.json()["worker_id"] == chinese.id
    # Everyone else is told it was taken (one statement for them all), each in their language.
    notices = {m["to_user_id"]: m["body"] for m in await outbox(engine, kind="offer_taken")}
    assert notices == {
        english.id: "The job you were offered has been taken.",
        other_chinese.id: "您收到的这单活已被其他师傅接走。",
    }
    # A late "1" from the English worker: nothing open, in English; from the other, in Chinese.
    late = {**reply, "From": english.phone, "Body": "1", "MessageSid": "SM" + "2" * 32}
    r = await webhook(client, "/v1/telephony/sms", late)
    assert "You have no open offer to take right now." in r.text
    late = {**late, "From": other_chinese.phone, "MessageSid": "SM" + "3" * 32}
    r = await webhook(client, "/v1/telephony/sms", late)
    assert "您现在没有可接的订单" in r.text
    # A +86 stranger is answered in Chinese; the masked number's refusal too.
    stranger = {**late, "From": "+8613800001234", "MessageSid": "SM" + "4" * 32}
    r = await webhook(client, "/v1/telephony/sms", stranger)
    assert "这个手机号还没有注册成为师傅" in r.text
    hello = {**stranger, "Body": "hello", "MessageSid": "SM" + "5" * 32}
    r = await webhook(client, "/v1/telephony/sms", hello)
    assert "这个号码没有关联进行中的订单" in r.text
    call = {"From": "+442071838750", "To": FROM, "CallSid": "CA" + "6" * 32}
    r = await webhook(client, "/v1/telephony/voice", call)
    assert "<Say>Sorry, this number is not connected" in r.text
    call = {**call, "From": "+8613800001234", "CallSid": "CA" + "7" * 32}
    r = await webhook(client, "/v1/telephony/voice", call)
    assert '<Say language="zh-CN" voice="alice">抱歉' in r.text, r.text


# --- the safety call -----------------------------------------------------------------------


async def test_the_safety_call_speaks_the_workers_language(
    app, client, principals, engine, twilio_peer
) -> None:
    _, w, job = await started(client, principals)
    await choose(client, w.headers, "zh-CN")
    durable = app.state.runtime.durable
    await escrow_held(app)
    [first] = await ladder_of(client, job["id"], w.headers)
    missed = at(first["due_at"])
    for i in range(3):  # remind (in the app), sms, call
        assert await durable.fire_due(missed + timedelta(minutes=5 * i)) == 1
    [reminder] = await outbox(engine, kind="checkin_remind")
    assert reminder["body"].startswith("请报平安：Move a sofa 的安全报到已超时。")

    def texted() -> list[dict]:
        return [m for m in twilio_peer.messages if m["to"] == w.phone and "报平安" in m["body"]]

    # The relay sends the text and places the call independently: wait for both.
    await wait_for(lambda: _settled(bool(twilio_peer.calls) and bool(texted())))
    [sms] = texted()
    assert "请按紧急求助" in sms["body"]
    [call] = twilio_peer.calls
    twiml = call["twiml"]
    assert '<Say language="zh-CN" voice="alice">这里是接活平台的安全专线。' in twiml, twiml
    assert "如果您平安，请按 1。" in twiml and "没有听到按键" in twiml
    assert "Press 1" not in twiml
    # Pressing 1 is answered in Chinese too.
    action = twiml.split('action="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
    parts = urlsplit(action)
    path = f"{parts.path}?{parts.query}"
    answer = {"CallSid": call["sid"], "Digits": "1", "From": call["from_"], "To": w.phone}
    r = await client.post(path, data=answer, headers=sign(path, answer))
    assert r.status_code == 200 and '<Say language="zh-CN" voice="alice">谢谢' in r.text, r.text
