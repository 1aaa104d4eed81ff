"""Page size limits and token codec shared by every List method."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from domain.errors import Violations
from domain.pagination import PageTokens, resolve_page_size


@dataclass(frozen=True)
class Paging:
    tokens: PageTokens
    default_size: int
    max_size: int

    def size(self, requested: int, violations: Violations) -> int:
        return resolve_page_size(requested, self.default_size, self.max_size, violations)

    def time_key(self, token: str, query: str) -> tuple[dt.datetime, str] | None:
        """Decode a token whose position is (timestamp, id)."""
        position = self.tokens.decode(token, query)
        if position is None:
            return None
        return dt.datetime.fromisoformat(position[0]), str(position[1])

    def next_token(self, query: str, rows: list[Any], size: int, key: Any) -> str:
        """A token after the page's last row, or "" when `rows` (fetched size+1) ends here."""
        if len(rows) <= size:
            return ""
        time, last_id = key(rows[size - 1])
        return self.tokens.encode(query, [time.isoformat(), last_id])
