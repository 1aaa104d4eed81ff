"""Page sizes and opaque, signed page tokens (AIP-158) for keyset pagination.

A token carries the last row's sort key and a fingerprint of the query it belongs
to, signed with the server's key: a modified token, or one replayed against other
list parameters, is rejected. Tokens carry no authorization.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from typing import Any, NoReturn

from domain.errors import InvalidArgument, Violations

_SIGNATURE_BYTES = 16


def resolve_page_size(
    requested: int, default: int, maximum: int, violations: Violations, field: str = "page_size"
) -> int:
    if requested < 0:
        violations.add(field, "must not be negative")
        return default
    return default if requested == 0 else min(requested, maximum)


class PageTokens:
    def __init__(self, key: bytes) -> None:
        self._key = hashlib.sha256(b"stride-page-token\x00" + key).digest()

    def _sign(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()[:_SIGNATURE_BYTES]

    def encode(self, query: str, position: list[Any]) -> str:
        payload = json.dumps({"q": _fingerprint(query), "p": position}, separators=(",", ":"))
        raw = payload.encode()
        return base64.urlsafe_b64encode(self._sign(raw) + raw).decode().rstrip("=")

    def decode(self, token: str, query: str, field: str = "page_token") -> list[Any] | None:
        """The position after which the next page starts; None for the first page."""
        if not token:
            return None
        try:
            blob = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            blob = b""
        signature, raw = blob[:_SIGNATURE_BYTES], blob[_SIGNATURE_BYTES:]
        if len(signature) != _SIGNATURE_BYTES or not hmac.compare_digest(
            signature, self._sign(raw)
        ):
            _invalid(field, "is not a page token this server issued")
        content = json.loads(raw)
        if content.get("q") != _fingerprint(query):
            _invalid(field, "belongs to a list call with other parameters")
        position = content.get("p")
        if not isinstance(position, list):
            _invalid(field, "is not a page token this server issued")
        return position


def _fingerprint(query: str) -> str:
    return hashlib.sha256(query.encode()).hexdigest()[:16]


def _invalid(field: str, description: str) -> NoReturn:
    violations = Violations()
    violations.add(field, description)
    raise InvalidArgument(violations.items, reason="INVALID_PAGE_TOKEN")
