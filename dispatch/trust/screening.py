"""Contact and scam screening, in plain Python: what a person writes is screened before anyone
else reads it.

Off-platform contact defeats the platform's protections: a WeChat id, a QQ number, an e-mail or a
phone typed into a job lets the two sides talk past the masked numbers (so the platform can no
longer help in a dispute or an emergency), and a payment code or "pay me directly" takes the money
past escrow. `screen` masks every such contact and payment request and says which kinds it found,
so a service can store the masked text and tell an operator. `asks_worker_to_pay` catches the
commonest job scam, a "job" that asks the worker to pay first (a deposit, a training fee, a
uniform), which must wait for an operator.

Used on job titles and descriptions, in-app messages, review comments and cancellation reasons.

Rules (all matching is done on NFKC-folded text, Latin words case-insensitive; the original text
comes back with only the masked spans replaced):

- A phone number is whatever `dispatch.identity.phones.phone_spans` finds, except calendar dates
  and clock times ("2026-12-24 09:00" is not a Guangzhou number). A number that is part of a
  WeChat id, a QQ number or an e-mail counts as that kind, not as a phone.
- A WeChat id follows a WeChat word (微信, 威信, 薇信, V信, vx, wx, weixin, wechat, 加V, +V,
  加微) and optional separators and labels (colon, 号, 是, id, is): 6-20 characters starting
  with a letter. A number after a WeChat word is a phone (WeChat ids start with a letter). A
  candidate of letters only is no id when it is a common English word ("wechat account", "my
  wechat is broken"), nor after the English words without a colon or label; see `_is_handle`.
- Naming a payment method is not a request: "WeChat Pay accepted on the platform", "微信支付"
  pass. Transfers (微信转账, "send money to"), payment codes (收款码), cash or anything "outside
  the app/platform" are `direct_payment`, and so is a bank card number (16-19 digits): the phrase
  itself is masked, so the other side never reads the invitation.
- Some invites are off-platform on their own (加微, 私下联系, "add me on", "my wechat"); the
  others (加我, 私聊, 联系我, "contact me at", "text me at", "message me on") only when a channel
  (微信, QQ, WhatsApp, 电话, 好友 ...), a handle or a number follows, so "完成后联系我", "参加我们",
  "text me at 5pm" and "contact me at the front desk" pass.
- "QQ" without a number, words that merely contain "wx"/"vx"/"qq", prices, floors, rooms and
  quantities pass.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from dispatch.identity.phones import HIDDEN as NUMBER_HIDDEN
from dispatch.identity.phones import phone_spans

CONTACT_HIDDEN = "[contact hidden]"
PAYMENT_HIDDEN = "[payment request hidden]"
KINDS = ("contact_invite", "direct_payment", "email", "phone", "qq", "wechat")

_I = re.IGNORECASE
_ZERO_WIDTH = {"\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad"}
_QUOTES = {"\u2018": "'", "\u2019": "'"}  # typographic apostrophes: "don\u2019t" is "don't"
_CLAUSE_END = ",.;!?。\n"  # folded: full-width punctuation is ASCII

# Between a contact word and what it names: punctuation, brackets, and at most two labels
# ("微信号:", "WeChat ID is", "QQ群号"). Full-width forms are folded before matching.
_SEP = r"[\s:=\-\u2013\u2014~,、()\[\]【】<>《》「」\"'\u201c\u201d]*"
_LABEL = r"(?:群号|号码|账号|帐号|号|群|是|为|搜索|搜|id(?![a-z])|is(?![a-z]))"
_AFTER = rf"{_SEP}(?:{_LABEL}{_SEP}){{0,2}}"

_WECHAT_WORD = (
    r"(?:微信|威信|薇信|v信|(?<![a-z0-9])(?:wechat|weixin|vx|wx)(?![a-z])|(?<=[加+我])v(?![a-z])"
    r"|(?<=加)微(?![信波笑小调量米粒]))"
)
_QQ_WORD = r"(?:(?<![a-z0-9])qq(?![a-z])|扣扣|企鹅)"
_CHANNEL = (
    rf"(?:{_WECHAT_WORD}|{_QQ_WORD}|(?<![a-z])(?:whatsapp|telegram|tg|line|signal|skype|viber"
    r"|kakaotalk|messenger|instagram|facebook|e-?mail)(?![a-z])|电话|手机|好友|邮箱|钉钉|微博)"
)

_WECHAT = re.compile(
    rf"(?P<word>{_WECHAT_WORD})(?P<sep>{_AFTER})(?P<id>[a-z][a-z0-9_-]{{5,19}})(?![a-z0-9_-])", _I
)
_QQ = re.compile(rf"{_QQ_WORD}{_AFTER}(?P<id>\d{{5,11}})(?!\d)", _I)
_EMAIL = re.compile(r"[a-z0-9._%+-]{1,64}@[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,}(?![a-z0-9-])", _I)
# A handle on another messenger: Telegram's are 5-32 characters, so are most others.
_HANDLE = re.compile(r"@?[a-z][a-z0-9_.-]{3,30}[a-z0-9](?![a-z0-9_@-])(?!\.[a-z0-9])", _I)
# Off-platform on its own, with or without a handle after it.
_STRONG_INVITE = (
    r"加微(?![波笑小调量米粒])|私下联系"
    r"|(?<![a-z])(?:add me on|my (?:wechat|weixin|whatsapp|telegram|line id|qq)(?![a-z]))"
)
# Off-platform only when a channel, a handle or a number follows.
_WEAK_INVITE = (
    r"加我|私聊|联系我|(?<![a-z])(?:contact me (?:on|at|via|through)|text me (?:at|on|via)"
    r"|message me (?:on|at|via)|reach me (?:at|on|via)|dm me (?:on|at)|find me on)(?![a-z])"
)
_INVITE = re.compile(
    rf"(?:(?P<strong>{_STRONG_INVITE})|(?P<weak>{_WEAK_INVITE}))"
    rf"(?:[\s:=]*(?P<channel>{_CHANNEL}))?(?P<sep>{_AFTER})",
    _I,
)
# A messenger named with a handle after it, without any invite word ("Telegram: @jun_w").
_MESSENGER = re.compile(
    rf"(?<![a-z])(?:whatsapp|telegram|skype|viber|kakaotalk|line\s*id)(?![a-z])(?P<sep>{_AFTER})",
    _I,
)
_PAYMENT = re.compile(
    r"收款码|付款码|收钱码|扫码(?:付款|付钱|支付|转账|付)|扫我的(?:二维码|码)|转账给我|私下转账|私下付款"
    r"|私下支付|私下交易|直接转账(?:给我)?|微信转账|支付宝转账|线下交易|不走平台|绕过平台|跳过平台"
    r"|(?<![a-z])(?:pay me directly"
    r"|pay me (?:in )?cash(?: outside(?: of)? (?:the |this )?(?:app|platform))?"
    r"|pay me (?:via|by|through|on|with|using) (?:wechat|weixin|alipay|paypal|venmo|zelle"
    r"|cash ?app|bank transfer|revolut)"
    r"|transfer (?:it |the money |the payment |payment |money )?(?:directly )?to my (?:bank )?"
    r"account|send (?:the )?money to|outside (?:of )?(?:the |this )?(?:app|platform)"
    r"|skip (?:the )?(?:app|platform)(?: fees?)?|avoid (?:the )?(?:app|platform) fees?"
    r"|off (?:the )?(?:app|platform)|bypass (?:the )?(?:app|platform))(?![a-z])",
    _I,
)
# A bank card number (16-19 digits, often in fours) is where money would go past escrow.
_CARD = re.compile(r"(?<!\d)\d{4}(?:[ -]?\d{4}){3}(?:[ -]?\d{1,3})?(?!\d)")
# Calendar dates and clock times are blanked before phone numbers are looked for.
_DATE_OR_TIME = re.compile(
    r"(?<!\d)(?:(?:19|20)\d\d[-/.](?:0?[1-9]|1[0-2])[-/.](?:0?[1-9]|[12]\d|3[01])"
    r"|(?:[01]?\d|2[0-3]):[0-5]\d(?::[0-5]\d)?)(?!\d)"
)
# Letters-only candidates that are ordinary English, not a handle ("wechat account").
_COMMON_WORDS = frozenset(
    """
    about accepted account accounts actually after again already always anymore anytime
    around available banned because before better blocked broken channel chatting contact
    contacts customer details directly easier either enough faster first friend friends
    group groups hello installed instead later message messages messenger moments
    notifications number official offline online payment payments platform please preferred
    profile program really right service should simpler sticker support thank thanks there
    through today tomorrow tonight transfer until usually wallet where which while working
    works
    """.split()
)


@dataclass(frozen=True)
class Screened:
    text: str
    """The text with every off-platform contact and payment request masked."""
    found: tuple[str, ...]
    """Kinds found, sorted and unique (see `KINDS`)."""


@dataclass(frozen=True)
class _Span:
    start: int
    end: int
    kind: str


def screen(text: str, region: str | None = None) -> Screened:
    """`text` with off-platform contacts masked, and which kinds of contact were found.

    `region` (ISO 3166 alpha-2) is the country a phone number without a country code is read in."""
    if not text:
        return Screened(text, ())
    folded, origin = _fold(text)
    found: set[str] = set()
    contacts: list[_Span] = []
    for m in _WECHAT.finditer(folded):
        # Letters alone after WeChat's Chinese names and slang: "微信 zhangsan", "vx zhangsan".
        loose = m.group("word").lower() not in {"wechat", "weixin"}
        if _is_handle(m.group("id"), m.group("sep"), loose=loose):
            contacts.append(_Span(m.start("id"), m.end("id"), "wechat"))
    contacts.extend(_Span(m.start("id"), m.end("id"), "qq") for m in _QQ.finditer(folded))
    contacts.extend(_Span(m.start(), m.end(), "email") for m in _EMAIL.finditer(folded))
    blanked = _DATE_OR_TIME.sub(lambda m: re.sub(r"\d", "x", m.group(0)), folded)
    phones = [_Span(s, e, "phone") for s, e in phone_spans(blanked, region)]
    for m in _MESSENGER.finditer(folded):
        handle = _handle_at(folded, m.end(), m.group("sep"), loose=False)
        if handle:
            contacts.append(_Span(*handle, "contact_invite"))
    for m in _INVITE.finditer(folded):
        # An explicit invitation names a handle: "add me on telegram johnsmith".
        invited = bool(m.group("strong") or m.group("channel"))
        handle = _handle_at(folded, m.end(), m.group("sep"), loose=invited)
        if handle:
            contacts.append(_Span(*handle, "contact_invite"))
        follows = any(s.start <= m.end() < s.end for s in (*contacts, *phones))
        if invited or handle or follows:
            found.add("contact_invite")
    payments = [
        _Span(m.start(), m.end(), "direct_payment")
        for pattern in (_PAYMENT, _CARD)
        for m in pattern.finditer(folded)
    ]
    # A number inside a WeChat id, a QQ number, an e-mail or a card number is that, not a phone.
    claimed = [*contacts, *payments]
    phones = [p for p in phones if not any(c.start <= p.start and p.end <= c.end for c in claimed)]
    spans = [*contacts, *phones, *payments]
    found.update(s.kind for s in spans)
    if not spans:
        return Screened(text, tuple(sorted(found)))
    return Screened(_masked(text, origin, spans), tuple(sorted(found)))


def _fold(text: str) -> tuple[str, list[int]]:
    """NFKC-folded `text` without zero-width characters, and for each folded character the index
    of the original character it came from."""
    folded: list[str] = []
    origin: list[int] = []
    for i, ch in enumerate(text):
        if ch in _ZERO_WIDTH:
            continue
        for part in _QUOTES.get(ch) or unicodedata.normalize("NFKC", ch):
            folded.append(part)
            origin.append(i)
    return "".join(folded), origin


def _is_handle(candidate: str, sep: str, *, loose: bool) -> bool:
    """Is `candidate`, found after the separators `sep`, a handle rather than an English word?

    One with a digit, `_`, `.`, `-` or a leading `@` always is. One of letters only never is when
    it is a common English word; otherwise it is when `loose` (after WeChat's Chinese names and
    slang, or an explicit invitation: "微信 zhangsan", "add me on telegram johnsmith"), or behind
    a colon, `=` or a label (号, 是, ID): "wechat: zhangsan", but not "wechat is down"."""
    if not candidate.isalpha():
        return True
    if candidate.lower() in _COMMON_WORDS:
        return False
    return loose or bool(re.search(r"[:=号是为搜]|id", sep, _I))


def _handle_at(folded: str, at: int, sep: str, *, loose: bool) -> tuple[int, int] | None:
    m = _HANDLE.match(folded, at)
    if m is None or not _is_handle(m.group(0), sep, loose=loose):
        return None
    return m.start(), m.end()


def _masked(text: str, origin: list[int], spans: Iterable[_Span]) -> str:
    rank = {NUMBER_HIDDEN: 0, CONTACT_HIDDEN: 1, PAYMENT_HIDDEN: 2}
    merged: list[tuple[int, int, str]] = []  # in original positions; overlaps take the top marker
    for span in sorted(spans, key=lambda s: (s.start, s.end)):
        start, end = origin[span.start], origin[span.end - 1] + 1
        marker = {"direct_payment": PAYMENT_HIDDEN, "phone": NUMBER_HIDDEN}.get(
            span.kind, CONTACT_HIDDEN
        )
        if merged and start < merged[-1][1]:
            last_start, last_end, last_marker = merged.pop()
            marker = max(marker, last_marker, key=rank.__getitem__)
            start, end = last_start, max(end, last_end)
        merged.append((start, end, marker))
    out, done = [], 0
    for start, end, marker in merged:
        out += [text[done:start], marker]
        done = end
    out.append(text[done:])
    return "".join(out)


_WORKER_PAYS = re.compile(
    r"押金|保证金(?!额)|报名费|培训费|服装费|工服费|入职费|工本费|中介费|介绍费|体检费"
    r"|(?:先交|预交)(?=[^,.;!?。\n]{0,4}?(?:钱|费|款|押|元|块|金|\d))"
    r"|(?<![a-z])(?:deposits?|registration fees?|application fees?|joining fees?|training fees?"
    r"|uniform fees?|admin(?:istration)? fees?|up-?front fees?|fees? up-?front"
    r"|pay (?:a |the |an )?(?:small )?fees?|pay (?:in advance|up-?front|up front)"
    r"|pay for (?:the |your |a )?(?:uniform|training|tools|equipment|kit|badge|background check)"
    r"|buy (?:the |your )?(?:tools|equipment|uniform|kit|materials) from us)(?![a-z])",
    _I,
)
# Just before the term, in its clause: "no deposit", "不收押金", "we don't charge a deposit".
_NEGATED_BEFORE = re.compile(
    r"(?:(?:无需|无须|不需要|不需|不用|不收|不要|不必|免收|免|无|没有|零|从不|绝不|不)"
    r"(?:交纳|缴纳|收取|支付|任何|额外|交|缴|付|收|的)*"
    r"|(?<![a-z])(?:no|not|without|zero|never|free of|don't|do not|doesn't|does not|won't"
    r"|will not|isn't|aren't|nor)(?:\s+(?:any|a|an|the|need|needed|required|to|pay|charge"
    r"|charges|ask|asks|for|ever|extra|hidden))*\s+)\s*$",
    _I,
)
# Just after it: "押金全免", "押金:无", "deposit-free", "deposit not required".
_WAIVED_AFTER = re.compile(
    r"^(?:\s*(?:全免|免收|免|全无|为零|为0|0元)|\s*:\s*(?:无|没有|0|零|免|none\b|no\b)"
    r"|-free\b|\s+free\b|\s+(?:is\s+|are\s+)?(?:not\s+(?:required|needed|necessary)|waived|none\b))",
    _I,
)
# ... unless the clause goes on to say what happens without it: "不交押金不能上岗".
_DOUBLE_NEGATIVE = re.compile(
    r"不能|无法|不得|不可|不让|不予|否则|otherwise|or you can't|or else", _I
)
# The writer pays it, or paid it: a resident's own deposit, not a request to the worker.
_WRITER_PAYS = re.compile(
    r"(?:我们|我|本人)(?:已经|已|刚刚|刚|先|会|来|自己)*(?:交|付|缴|支付)"
    r"|(?<![a-z])(?:i|we)(?:'ve|'ll|'d)?\s+(?:have\s+|will\s+|already\s+|just\s+|can\s+)*"
    r"(?:paid|pay|covered|cover|put down)(?![a-z])",
    _I,
)
_OWN_BEFORE = re.compile(r"(?:我的|我们的|(?<![a-z])(?:my|our)\s+(?:own\s+)?)$", _I)
_PAID_AFTER = re.compile(
    r"^\s*(?:我|我们)?(?:已经|已)(?:交|付|缴)|^\s+(?:is\s+|was\s+|has been\s+)?already paid", _I
)


def asks_worker_to_pay(text: str) -> str | None:
    """Why a job must wait for an operator because it asks the worker to pay, or None.

    A term (押金, 培训费, "deposit", "pay for the uniform" ...) does not count when its clause
    says it is not charged ("无需押金", "不收押金", "no deposit needed", "deposit-free"), unless
    the clause goes on to make it a condition ("不交押金不能上岗"), nor when the writer pays or
    paid it ("I paid the deposit on the flat already", "我已交押金", "my deposit"). The first
    term that counts is named: `"asks the worker to pay (押金)"`."""
    if not text:
        return None
    folded, origin = _fold(text)
    for m in _WORKER_PAYS.finditer(folded):
        clause_start = max(folded.rfind(c, 0, m.start()) for c in _CLAUSE_END) + 1
        ends = [i for i in (folded.find(c, m.end()) for c in _CLAUSE_END) if i >= 0]
        before = folded[clause_start : m.start()]
        after = folded[m.end() : min(ends, default=len(folded))]
        if _writer_pays(before, m.group(0), after) or _not_a_charge(m.group(0), before, after):
            continue
        return f"asks the worker to pay ({text[origin[m.start()] : origin[m.end() - 1] + 1]})"
    return None


def _writer_pays(before: str, term: str, after: str) -> bool:
    return bool(
        _WRITER_PAYS.search(before + term)  # "I'll pay the fee", "我先交"
        or _OWN_BEFORE.search(before)
        or _PAID_AFTER.search(after)
    )


def _not_a_charge(term: str, before: str, after: str) -> bool:
    if term.lower().startswith("deposit") and re.match(r"\s+(?:the|it|them|this|these)\b", after):
        if not re.search(r"(?:\b(?:a|an|the|your|pay|paid|security|refundable)\s+)$", before, _I):
            return True  # "deposit the keys in the box": the verb, nobody pays
    negated = _NEGATED_BEFORE.search(before) or _WAIVED_AFTER.search(after)
    return bool(negated) and not _DOUBLE_NEGATIVE.search(after)
