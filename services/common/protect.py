"""Personal data at rest: encrypted (Fernet, AES-128-CBC + HMAC) and looked up by a keyed hash.

Both keys derive from one secret, HONGLING_DATA_KEY. A value is stored as a token nobody can read
without the key; uniqueness checks (one person per ID number) use the HMAC, never the plain value.

Rotation (docs/runbook.md, 轮换密钥): with HONGLING_DATA_KEY_ACCEPTED set, a value sealed with either key
opens, and only the current key seals; `python -m services.common.rekey rotate` then re-seals what the other
key sealed, while the services run.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


def _derive(secret: str, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"hongling", info=purpose).derive(secret.encode())


def _fernet(secret: str) -> Fernet:
    return Fernet(base64.urlsafe_b64encode(_derive(secret, b"fernet")))


class Protector:
    """Seals with `secret`; opens what `secret` or `accepted` (a rotation's other key) sealed."""

    def __init__(self, secret: str, accepted: str = "") -> None:
        self._current = _fernet(secret)
        others = [_fernet(accepted)] if accepted and accepted != secret else []
        self._fernet = MultiFernet([self._current, *others])
        self._mac_key = _derive(secret, b"lookup-hmac")
        self._other_mac_keys = [_derive(accepted, b"lookup-hmac")] if others else []

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

    def lookup_keys(self, value: str) -> list[str]:
        """The value's look-up hash under the current key, then under the rotation's other key (if any): a
        record stored before the rotation's re-sealing reached it is found by the second."""
        if not value:
            return [""]
        keys = [self._mac_key, *self._other_mac_keys]
        return [hmac.new(k, value.encode(), hashlib.sha256).hexdigest() for k in keys]

    def sealed_with_current(self, token: str) -> bool:
        """Whether a sealed value opens with the current key alone (re-sealing leaves those)."""
        try:
            self._current.decrypt(token.encode())
        except InvalidToken:
            return False
        return True


@cache
def protector(secret: str, accepted: str = "") -> Protector:
    return Protector(secret, accepted)
