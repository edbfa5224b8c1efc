# ruff: noqa: RUF001  (the Chinese texts' punctuation is full-width, as Chinese is written)
"""Every text the service sends people (texts, pushes, in-app notices, spoken calls, webhook
replies), keyed by name, in every language it speaks (`dispatch.identity.locale.LOCALES`), each
with the same placeholders in every language (tests/notifications/test_locale.py checks).

`render(key, locale, **params)` gives one language, for a writer that knows its recipient's;
`every(key, **params)` gives all of them (a `Text`), for one that lets the outbox pick each
recipient's language as it writes the row (`dispatch.infra.outbox`). Parameters are shown in
the language: `Money` (en `80.00 CNY`, zh `80.00 元`; other currencies by their code),
`Duration` (`2 min` / `2 分钟`), `LocalTime` (`Mon 07 Dec 14:00` / `12月7日 周一 14:00`), a
nested `Text` in the same language; anything else as `str()`. What people wrote (a job's title,
a name, a message) is theirs and is never translated.
"""

from __future__ import annotations

import json
import string
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from dispatch.identity.locale import FALLBACK, LOCALES

TEXTS: dict[str, dict[str, str]] = {
    # --- sign-in ---------------------------------------------------------------------------
    "otp.code": {
        "en": "Your sign-in code is {code}. It expires in {minutes} minutes.",
        "zh-CN": "您的登录验证码是 {code}，{minutes} 分钟内有效。",
    },
    # --- offers (grab and booking) -----------------------------------------------------------
    "offer.grab": {
        "en": "New job {distance_m} m away: {title}, {price}. Reply 1 to take it ({ttl}).",
        "zh-CN": "附近新活 {distance_m} 米：{title}，{price}。回复 1 接单（{ttl}）。",
    },
    "offer.booking": {
        "en": "Booking request: {title} on {start} ({price}), {distance_m} m away. "
        "Open the app to confirm.",
        "zh-CN": "预约请求：{title}，{start}（{price}），距离 {distance_m} 米。请打开应用确认。",
    },
    "offer.booking_unscheduled": {
        "en": "Booking request: {title} ({price}), {distance_m} m away. Open the app to confirm.",
        "zh-CN": "预约请求：{title}（{price}），距离 {distance_m} 米。请打开应用确认。",
    },
    "offer.taken": {
        "en": "The job you were offered has been taken.",
        "zh-CN": "您收到的这单活已被其他师傅接走。",
    },
    "offer.withdrawn": {
        "en": "The job you were offered was cancelled.",
        "zh-CN": "您收到的这单活已被取消。",
    },
    # --- taking an offer by text (replies to the worker's "1") -------------------------------
    "take.unknown": {
        "en": "This phone number is not registered as a worker, so nothing was taken. "
        "Please sign up in the app.",
        "zh-CN": "这个手机号还没有注册成为师傅，没有接到单。请先在应用中注册。",
    },
    "take.nothing_open": {
        "en": "You have no open offer to take right now. New jobs will be texted to you.",
        "zh-CN": "您现在没有可接的订单。有新活时会发短信通知您。",
    },
    "take.failed": {
        "en": "Sorry, this job could not be taken. Please open the app.",
        "zh-CN": "抱歉，这单没有接成功。请打开应用查看。",
    },
    "take.already_taken": {
        "en": "Sorry, another worker took this job first.",
        "zh-CN": "抱歉，这单已被其他师傅抢先接走。",
    },
    "take.offer_expired": {
        "en": "Sorry, this offer has expired.",
        "zh-CN": "抱歉，这单已过期。",
    },
    "take.offer_withdrawn": {
        "en": "Sorry, the resident cancelled this job.",
        "zh-CN": "抱歉，居民已取消这单。",
    },
    "take.too_many_open_assignments": {
        "en": "You already hold as many jobs as you may; finish one first.",
        "zh-CN": "您手上的订单已达上限，请先完成一单。",
    },
    "take.accept_too_fast": {
        "en": "Please read the offer first, then reply 1 again.",
        "zh-CN": "请先看清订单内容，再回复 1。",
    },
    "take.won": {
        "en": "You have the job: {title}. Address: {where}.",
        "zh-CN": "接单成功：{title}。地址：{where}。",
    },
    "take.won_call": {
        "en": " Call the resident on {number}.",
        "zh-CN": "联系居民请拨 {number}。",
    },
    "take.pin": {
        "en": "the pin at {lat},{lng}",
        "zh-CN": "地图标记 {lat},{lng}",
    },
    # --- masked numbers ------------------------------------------------------------------------
    "call.refused": {
        "en": "Sorry, this number is not connected to an active job. "
        "Please open the app to reach your helper or our support team. Goodbye.",
        "zh-CN": "抱歉，这个号码没有关联进行中的订单。请打开应用联系师傅或客服。再见。",
    },
    "text.refused": {
        "en": "This number is not connected to an active job, so your message was not passed "
        "on. Please use the app to reach your helper or support.",
        "zh-CN": "这个号码没有关联进行中的订单，您的消息没有转达。请通过应用联系师傅或客服。",
    },
    "text.empty": {
        "en": "(empty message)",
        "zh-CN": "（空消息）",
    },
    "message.new": {
        "en": "New message about “{title}”: {text}",
        "zh-CN": "关于“{title}”的新消息：{text}",
    },
    # --- the job on site -----------------------------------------------------------------------
    "job.started": {
        "en": "Work has started: {title}.",
        "zh-CN": "已开工：{title}。",
    },
    "job.arrived": {
        "en": "Your worker has arrived for {title}.",
        "zh-CN": "师傅已到达：{title}。",
    },
    # --- safety --------------------------------------------------------------------------------
    "sos.contacts": {
        "en": "SOS: someone who listed you as an emergency contact pressed SOS during a job "
        "near {where}. The service's operators have been alerted.",
        "zh-CN": "紧急求助：将您设为紧急联系人的人在 {where} 附近做活时按下了求助按钮。"
        "平台值班人员已收到警报。",
    },
    "checkin.ask_overrun": {
        "en": "Are you all right? {title} has gone on longer than expected.",
        "zh-CN": "您还好吗？{title} 比预计的时间长了。",
    },
    "checkin.ask_periodic": {
        "en": "Please check in: your safety check-in for {title} is overdue.",
        "zh-CN": "请报平安：{title} 的安全报到已超时。",
    },
    "checkin.remind": {
        "en": "{ask} Open the app and tap Check in.",
        "zh-CN": "{ask}请打开应用，点击“报平安”。",
    },
    "checkin.sms": {
        "en": "{ask} Open the app to check in, or press SOS if you need help.",
        "zh-CN": "{ask}请打开应用报平安；如需帮助，请按紧急求助。",
    },
    "checkin.call": {
        "en": "This is the safety line of your job service. {ask} Press 1 if you are safe.",
        "zh-CN": "这里是接活平台的安全专线。{ask}如果您平安，请按 1。",
    },
    "checkin.call_no_key": {
        "en": "We did not hear a key. Our operators will be told. Goodbye.",
        "zh-CN": "没有听到按键。我们会通知值班人员。再见。",
    },
    "checkin.call_safe": {
        "en": "Thank you. You are checked in. Stay safe. Goodbye.",
        "zh-CN": "谢谢，已为您报平安。注意安全，再见。",
    },
    "checkin.call_not_safe": {
        "en": "We did not get a 1, so you are not checked in. Please open the app, "
        "or our operators will try to reach you. Goodbye.",
        "zh-CN": "没有收到按键 1，还没有为您报平安。请打开应用，否则值班人员会设法联系您。再见。",
    },
    "checkin.contacts": {
        "en": "{name} has not answered a safety check-in during a job in {community} "
        "(near {area}). Our operators are trying to reach them.",
        "zh-CN": "{name}在{community}做活时没有回应安全报到（位置在 {area} 附近）。"
        "值班人员正在设法联系对方。",
    },
    "checkin.contacts_line": {
        "en": " Operators: {line}.",
        "zh-CN": "值班电话：{line}。",
    },
    "checkin.contacts_someone": {
        "en": "Someone who listed you",
        "zh-CN": "将您设为紧急联系人的人",
    },
    # --- bookings ------------------------------------------------------------------------------
    "reschedule.asked": {
        "en": "{title}: the resident asks to move the booking to {start}. Open the app to answer.",
        "zh-CN": "{title}：居民想把预约改到 {start}。请打开应用答复。",
    },
    "reschedule.accepted": {
        "en": "{title}: the worker accepted the new time.",
        "zh-CN": "{title}：师傅接受了新的时间。",
    },
    "reschedule.declined": {
        "en": "{title}: the worker declined the new time.",
        "zh-CN": "{title}：师傅没有接受新的时间。",
    },
    "reminder.resident": {
        "en": "Reminder: {title} is booked for {start}.",
        "zh-CN": "提醒：{title} 预约在 {start}。",
    },
    "reminder.worker": {
        "en": "Reminder: you are booked for {title} at {start}.",
        "zh-CN": "提醒：您预约了 {title}，时间 {start}。",
    },
    "booking.no_show": {
        "en": "Your worker did not arrive for {title}; we are finding another now.",
        "zh-CN": "师傅没有按时到达（{title}），我们正在为您另找师傅。",
    },
    # --- money ---------------------------------------------------------------------------------
    "money.cancellation_fee": {
        "en": "The resident cancelled; you receive {share} of the {fee} cancellation fee.",
        "zh-CN": "居民取消了订单；{fee} 的取消费中您得到 {share}。",
    },
    "money.compensation_no_show": {
        "en": "Your worker did not come: {amount} is on its way back to you. "
        "We are finding another.",
        "zh-CN": "师傅没有来：{amount} 正在退还给您。我们正在另找师傅。",
    },
    "money.compensation_late": {
        "en": "Your worker cancelled late: {amount} is on its way back to you. "
        "We are finding another.",
        "zh-CN": "师傅临时取消：{amount} 正在退还给您。我们正在另找师傅。",
    },
    "money.completed": {
        "en": "{title} is done. Confirm to pay {total}, or raise a problem; it is paid by "
        "itself in {hours} h otherwise.",
        "zh-CN": "{title} 已完成。请确认支付 {total}，或提出问题；否则 {hours} 小时后自动支付。",
    },
    "money.payout_paid": {
        "en": "{amount} has been paid out to you.",
        "zh-CN": "{amount} 已提现给您。",
    },
    "money.payout_failed": {
        "en": "Your payout of {amount} failed ({reason}); the money is back in your balance.",
        "zh-CN": "您 {amount} 的提现失败（{reason}），钱已退回余额。",
    },
    "money.released_by_resident": {
        "en": "{title}: {amount} released to you (confirmed by the resident).",
        "zh-CN": "{title}：{amount} 已结算给您（居民已确认）。",
    },
    "money.released_auto": {
        "en": "{title}: {amount} released to you (auto-confirmed).",
        "zh-CN": "{title}：{amount} 已结算给您（自动确认）。",
    },
    "money.dispute_opened": {
        "en": "{title}: a problem was raised; payment waits for an operator.",
        "zh-CN": "{title}：有人提出了问题，付款等待值班人员处理。",
    },
    "money.dispute_resolved": {
        "en": "{title}: the operator settled it: the worker receives {share}, the resident "
        "gets {refund} back.",
        "zh-CN": "{title}：值班人员已处理：师傅得到 {share}，居民退回 {refund}。",
    },
    "money.change_order": {
        "en": "{title}: the worker asks to add materials for {amount}. "
        "Approve or decline in the app.",
        "zh-CN": "{title}：师傅申请增加材料费 {amount}。请在应用中同意或拒绝。",
    },
    "money.change_order_approved": {
        "en": "{title}: the resident approved the materials ({amount}).",
        "zh-CN": "{title}：居民同意了材料费（{amount}）。",
    },
    "money.change_order_declined": {
        "en": "{title}: the resident declined the materials ({amount}).",
        "zh-CN": "{title}：居民拒绝了材料费（{amount}）。",
    },
    "money.claim_approved": {
        "en": "Your claim on {title} was approved: {amount} is on its way.",
        "zh-CN": "您对 {title} 的理赔已批准：{amount} 即将到账。",
    },
    "money.claim_rejected": {
        "en": "Your claim on {title} was rejected.",
        "zh-CN": "您对 {title} 的理赔没有通过。",
    },
    # --- reviews -------------------------------------------------------------------------------
    "review.received": {
        "en": "{title}: you were rated {rating}/5.",
        "zh-CN": "{title}：您获得了 {rating}/5 的评分。",
    },
}


@dataclass(frozen=True, slots=True)
class Money:
    cents: int
    currency: str


@dataclass(frozen=True, slots=True)
class Duration:
    seconds: int


@dataclass(frozen=True, slots=True)
class LocalTime:
    """A moment as the clock on the wall shows it (already in the community's time zone)."""

    at: datetime


@dataclass(frozen=True, slots=True)
class Text:
    """One message in every language; `text[locale]` is one of them (English for a language
    it lacks). `+` joins two per language; `as_json()` is what SQL picks a language from."""

    by_locale: Mapping[str, str]

    def __getitem__(self, locale: str | None) -> str:
        found = self.by_locale.get(locale or FALLBACK)
        return found if found is not None else self.by_locale[FALLBACK]

    def __add__(self, other: Text) -> Text:
        return Text({loc: self[loc] + other[loc] for loc in LOCALES})

    def cut(self, limit: int) -> Text:
        """Each language's text to at most `limit` characters."""
        return Text({loc: self[loc][:limit] for loc in LOCALES})

    def as_json(self) -> str:
        return json.dumps(dict(self.by_locale), ensure_ascii=False)


_WEEKDAYS_ZH = "一二三四五六日"


def _shown(value: Any, locale: str) -> str:
    if isinstance(value, Text):
        return value[locale]
    if isinstance(value, Money):
        amount = f"{value.cents / 100:.2f}"
        if locale == "zh-CN" and value.currency == "CNY":
            return f"{amount} 元"
        return f"{amount} {value.currency}"
    if isinstance(value, Duration):
        s = value.seconds
        minutes = s >= 60 and s % 60 == 0
        if locale == "zh-CN":
            return f"{s // 60} 分钟" if minutes else f"{s} 秒"
        return f"{s // 60} min" if minutes else f"{s} s"
    if isinstance(value, LocalTime):
        t = value.at
        if locale == "zh-CN":
            return f"{t.month}月{t.day}日 周{_WEEKDAYS_ZH[t.weekday()]} {t:%H:%M}"
        return f"{t:%a %d %b %H:%M}"
    return str(value)


def render(key: str, locale: str | None, **params: Any) -> str:
    """The text `key` in `locale` (English for a language the service does not speak), its
    placeholders filled with `params` shown in that language."""
    entry = TEXTS[key]
    template = entry.get(locale or FALLBACK) or entry[FALLBACK]
    shown = locale if locale in entry else FALLBACK
    return template.format_map({name: _shown(v, shown) for name, v in params.items()})


def every(key: str, **params: Any) -> Text:
    """The text `key` in every language."""
    return Text({loc: render(key, loc, **params) for loc in LOCALES})


def placeholders(template: str) -> set[str]:
    """The names a template fills in."""
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}
