"""Phone numbers: validation, keyed hashing for look-up, encryption at rest, redaction.

The plain number exists only in a request that carries it and in the moment a message is handed to
a provider. Everything stored is a keyed hash (to find the user) and AES-GCM ciphertext (to send).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

E164 = re.compile(r"^\+[1-9]\d{6,14}$")
# Anything that looks like a phone number in free text: used to scrub logs and to test responses.
PHONE_IN_TEXT = re.compile(r"(?<![\d+])\+?\d{7,15}(?!\d)")


def is_e164(value: str) -> bool:
    return bool(E164.match(value))


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
