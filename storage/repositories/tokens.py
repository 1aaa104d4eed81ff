"""SQL for athlete access tokens (digests only)."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from domain.tokens import AccessToken
from storage.models import AccessTokenRow
from storage.repositories.keyset import after_position


def _to_domain(row: AccessTokenRow) -> AccessToken:
    return AccessToken(
        id=row.id,
        athlete_id=row.athlete_id,
        display_name=row.display_name,
        expire_time=row.expire_time,
        create_time=row.create_time,
        last_use_time=row.last_use_time,
        parent_token_id=row.parent_token_id,
    )


class AccessTokenRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(
        self,
        athlete_id: str,
        display_name: str,
        token_hash: str,
        expire_time: dt.datetime | None,
        parent_token_id: str | None = None,
    ) -> AccessToken:
        row = AccessTokenRow(
            id=uuid.uuid4().hex,
            athlete_id=athlete_id,
            display_name=display_name,
            token_hash=token_hash,
            parent_token_id=parent_token_id,
            expire_time=expire_time,
            create_time=dt.datetime.now(dt.UTC),
        )
        self.session.add(row)
        self.session.flush()
        return _to_domain(row)

    def find_by_hash(self, token_hash: str) -> AccessToken | None:
        row = self.session.scalars(
            select(AccessTokenRow).where(AccessTokenRow.token_hash == token_hash)
        ).first()
        return _to_domain(row) if row is not None else None

    def lock(self, token_id: str) -> bool:
        """Whether the token exists; on PostgreSQL its row stays locked against deletion (not
        against updates) until the transaction ends, so a token created from it cannot
        outlive a concurrent revocation."""
        found = self.session.scalar(
            select(AccessTokenRow.id)
            .where(AccessTokenRow.id == token_id)
            .with_for_update(key_share=True)
        )
        return found is not None

    def touch(self, token_id: str, when: dt.datetime) -> None:
        self.session.execute(
            update(AccessTokenRow).where(AccessTokenRow.id == token_id).values(last_use_time=when)
        )

    def delete(self, athlete_id: str, token_id: str) -> bool:
        """Delete a token; the database deletes the tokens it created (ON DELETE CASCADE)."""
        result = self.session.execute(
            delete(AccessTokenRow).where(
                AccessTokenRow.id == token_id, AccessTokenRow.athlete_id == athlete_id
            )
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    def list(
        self, athlete_id: str, after: tuple[dt.datetime, str] | None, limit: int
    ) -> list[AccessToken]:
        query = (
            select(AccessTokenRow)
            .where(AccessTokenRow.athlete_id == athlete_id)
            .order_by(AccessTokenRow.create_time, AccessTokenRow.id)
            .limit(limit)
        )
        if after is not None:
            query = query.where(
                after_position(AccessTokenRow.create_time, AccessTokenRow.id, after)
            )
        return [_to_domain(row) for row in self.session.scalars(query)]
