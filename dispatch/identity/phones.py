"""Phone numbers: one canonical form, finding them in text, keyed hashing for look-up, encryption
at rest, redaction.

Every phone a person types goes through `normalize_phone` before anything else (rate-limit keys,
hashes, pool membership): one real number is one E.164 string, whatever spaces, dashes, brackets,
`00` prefixes or full-width digits it was typed with, and a number without a country code is read
in the community's (or the service's default) country.

The plain number exists only in a request that carries it and in the moment a message is handed to
a provider. Everything stored is a keyed hash (to find the user) and AES-GCM ciphertext (to send).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
import re
import unicodedata
from importlib import resources
from pathlib import Path

import phonenumbers
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from dispatch.core.errors import Unprocessable

DEFAULT_REGION = "CN"
"""Country a number without a country code is read in when nothing better is known."""
MAX_PHONE_INPUT = 40
# Anything that looks like a phone number in free text: used to scrub logs and to test responses.
PHONE_IN_TEXT = re.compile(r"(?<![\d+])\+?\d{7,15}(?!\d)")
# What a typed number may hold once full-width forms are folded and the separators people type
# (spaces, dashes, dots, brackets) are dropped: digits after an optional plus. Letters (vanity
# numbers), extensions and anything else are refused.
_TYPED = re.compile(r"^\+?\d+$")
# Digits with a single separator between them, as in "1 3 8-0013 8001": candidates the library's
# matcher may not take as one number; each is checked for validity before it is hidden.
_SPACED_DIGITS = re.compile(r"(?<![\d+])\+?\d(?:[ \-.·/]?\d){6,16}(?!\d)")
HIDDEN = "[number hidden]"


class InvalidPhone(Unprocessable):
    code = "invalid_phone"
    title = "Invalid phone number"


def normalize_phone(raw: str, region: str | None = None) -> str:
    """The one E.164 form of a typed number, or InvalidPhone (422 `invalid_phone`).

    `region` (ISO 3166 alpha-2) is the country a number without a country code belongs to."""
    text = unicodedata.normalize("NFKC", raw).strip() if isinstance(raw, str) else ""
    compact = re.sub(r"[ \-().]", "", text)
    if not compact or len(text) > MAX_PHONE_INPUT or not _TYPED.match(compact):
        raise InvalidPhone("not a phone number: use digits, optionally with +country code")
    if compact.startswith("00"):  # the international prefix most of the world dials
        compact = "+" + compact[2:]
    try:
        number = phonenumbers.parse(compact, region or DEFAULT_REGION)
    except phonenumbers.NumberParseException as exc:
        raise InvalidPhone("not a phone number: use digits, optionally with +country code") from exc
    if not phonenumbers.is_valid_number(number):
        raise InvalidPhone("this is not a valid phone number for its country")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def phone_spans(text: str, region: str | None = None) -> list[tuple[int, int]]:
    """Where phone numbers are in free text (Chinese or English), as they are really typed:
    the library's matcher (spaces, dashes, brackets, +country, full-width digits), digit runs
    with odd separators that form a valid number, and any bare run of 7-15 digits."""
    region = region or DEFAULT_REGION
    spans = [(m.start, m.end) for m in phonenumbers.PhoneNumberMatcher(text, region)]
    for m in _SPACED_DIGITS.finditer(text):
        digits = re.sub(r"\D", "", m.group(0))
        candidate = ("+" if m.group(0).startswith("+") else "") + digits
        try:
            if phonenumbers.is_valid_number(phonenumbers.parse(candidate, region)):
                spans.append((m.start(), m.end()))
        except phonenumbers.NumberParseException:
            pass
    spans.extend((m.start(), m.end()) for m in PHONE_IN_TEXT.finditer(text))
    if not spans:
        return []
    spans.sort()
    merged = [spans[0]]
    for start, end in spans[1:]:
        if start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def hide_phones(text: str, region: str | None = None) -> str:
    """`text` with every phone number in it replaced by a marker."""
    if not text:
        return text
    spans = phone_spans(text, region)
    if not spans:
        return text
    out, last = [], 0
    for start, end in spans:
        out.append(text[last:start])
        out.append(HIDDEN)
        last = end
    out.append(text[last:])
    return "".join(out)


@functools.cache
def _zone_countries() -> dict[str, str]:
    try:
        raw = resources.files("tzdata").joinpath("zoneinfo", "zone.tab").read_text()
    except (ModuleNotFoundError, FileNotFoundError, OSError):
        path = Path("/usr/share/zoneinfo/zone.tab")
        raw = path.read_text() if path.exists() else ""
    zones: dict[str, str] = {}
    for line in raw.splitlines():
        if line and not line.startswith("#"):
            parts = line.split("\t")
            if len(parts) >= 3:
                zones[parts[2]] = parts[0]
    return zones


def region_of_timezone(timezone: str, default: str = DEFAULT_REGION) -> str:
    """The country (ISO 3166 alpha-2) of an IANA timezone, for reading national numbers typed in
    a community: `Asia/Shanghai` → CN. Zones of no single country (UTC) give `default`."""
    return _zone_countries().get(timezone, default)


def phone_hint(phone: str) -> str:
    """A hint a person recognises their own number by, without revealing it: `…5678`."""
    return "…" + phone[-4:]


def _derive(secret: str, purpose: bytes) -> bytes:
    return HKDF(algorithm=SHA256(), length=32, salt=b"dispatch-phones", info=purpose).derive(
        secret.encode()
    )


class PhoneVault:
    """Hashes and encrypts phone numbers (and other personal strings) with keys from the secret."""

    def __init__(self, secret: str) -> None:
        if not secret:
            raise ValueError("PhoneVault needs a secret key")
        self._hash_key = _derive(secret, b"hash")
        self._aead = AESGCM(_derive(secret, b"encrypt"))

    def hash(self, phone: str) -> bytes:
        return hmac.new(self._hash_key, phone.encode(), hashlib.sha256).digest()

    def encrypt(self, value: str) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, value.encode(), None)

    def decrypt(self, blob: bytes) -> str:
        return self._aead.decrypt(blob[:12], blob[12:], None).decode()
