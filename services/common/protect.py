"""Personal data at rest: encrypted (Fernet, AES-128-CBC + HMAC) and looked up by a keyed hash.

Both keys derive from one secret, HONGLING_DATA_KEY. A value is stored as a token nobody can read
without the key; uniqueness checks (one person per ID number) use the HMAC, never the plain value.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from functools import cache

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


def _derive(secret: str, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"hongling", info=purpose).derive(secret.encode())


class Protector:
    def __init__(self, secret: str) -> None:
        self._fernet = Fernet(base64.urlsafe_b64encode(_derive(secret, b"fernet")))
        self._mac_key = _derive(secret, b"lookup-hmac")

    def seal(self, value: str) -> str:
        return self._fernet.encrypt(value.encode()).decode() if value else ""

    def open(self, token: str) -> str:
        if not token:
            return ""
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            raise ValueError("personal data cannot be decrypted with this HONGLING_DATA_KEY") from None

    def seal_bytes(self, value: bytes) -> bytes:
        """A file kept for a while (a spreadsheet waiting to be imported), encrypted as a value is."""
        return self._fernet.encrypt(value)

    def open_bytes(self, token: bytes) -> bytes:
        try:
            return self._fernet.decrypt(token)
        except InvalidToken:
            raise ValueError("the file cannot be decrypted with this HONGLING_DATA_KEY") from None

    def lookup_key(self, value: str) -> str:
        return hmac.new(self._mac_key, value.encode(), hashlib.sha256).hexdigest() if value else ""


@cache
def protector(secret: str) -> Protector:
    return Protector(secret)
