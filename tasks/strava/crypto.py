"""Strava tokens encrypted at rest (Fernet: AES-128-CBC + HMAC-SHA256, authenticated).

``STRIDE_TOKEN_ENCRYPTION_KEY`` may be any string (a Fernet key is derived from it with
HKDF-SHA256) or several separated by commas: the first encrypts, every one decrypts, so a key
is rotated by putting the new one first and re-encrypting at leisure.
"""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from tasks.strava.errors import StravaError

_INFO = b"stride strava token encryption v1"


class TokenDecryptionError(StravaError):
    """The ciphertext was altered, or was made with a key that is no longer configured."""


def _derive(secret: str) -> Fernet:
    material = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(
        secret.encode()
    )
    return Fernet(base64.urlsafe_b64encode(material))


class TokenCipher:
    def __init__(self, keys: str) -> None:
        secrets = [part.strip() for part in keys.split(",") if part.strip()]
        if not secrets:
            raise ValueError("a token encryption key is required")
        self._fernet = MultiFernet([_derive(secret) for secret in secrets])

    def encrypt(self, token: str) -> bytes:
        return self._fernet.encrypt(token.encode())

    def decrypt(self, ciphertext: bytes) -> str:
        try:
            return self._fernet.decrypt(ciphertext).decode()
        except InvalidToken:
            raise TokenDecryptionError(
                "a stored Strava token does not decrypt: altered, or encrypted with a key that"
                " is no longer in STRIDE_TOKEN_ENCRYPTION_KEY"
            ) from None

    def rotate(self, ciphertext: bytes) -> bytes:
        """Re-encrypt with the first (newest) key."""
        try:
            return self._fernet.rotate(ciphertext)
        except InvalidToken:
            raise TokenDecryptionError("a stored Strava token does not decrypt") from None
