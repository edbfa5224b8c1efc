"""The language a person is written to in (plain Python).

A person may choose one (`PUT /v1/me {locale}`). Until they do, they get the language their
account was given when it was made: the service's `DISPATCH_DEFAULT_LOCALE`, which by default
(`auto`) reads the phone number: Simplified Chinese for a mainland China number (+86), English
for every other number and for accounts without a phone (admins, CLI operators). A phone that
has no account yet (a first sign-in code) is read the same way.
"""

from __future__ import annotations

from dispatch.core.errors import Unprocessable

LOCALES = ("en", "zh-CN")
"""What the service speaks; every text in `dispatch.core.texts` exists in each."""
FALLBACK = "en"
AUTO = "auto"
"""`DISPATCH_DEFAULT_LOCALE` value: choose by the phone's country."""
DEFAULTS = (AUTO, *LOCALES)
"""What `DISPATCH_DEFAULT_LOCALE` may be."""
_BY_CALLING_CODE = {"+86": "zh-CN"}


class UnknownLocale(Unprocessable):
    code = "unknown_locale"
    title = "Unknown locale"


def check_locale(value: str) -> str:
    """`value` if the service speaks it (exactly as written: `zh-CN`, `en`); else 422
    `unknown_locale`."""
    if value not in LOCALES:
        raise UnknownLocale(f"locale must be one of {', '.join(LOCALES)}; got {value[:20]!r}")
    return value


def locale_for_phone(phone: str | None, default: str = AUTO) -> str:
    """The language of someone who has not chosen one: `default` when the service fixes one,
    else (`auto`) by the country of the E.164 `phone`."""
    if default != AUTO:
        return default
    for prefix, locale in _BY_CALLING_CODE.items():
        if phone is not None and phone.startswith(prefix):
            return locale
    return FALLBACK


def spoken_locale(chosen: str | None, default: str | None) -> str:
    """A person's language: the one they chose, else the one their account was given."""
    return chosen or default or FALLBACK
