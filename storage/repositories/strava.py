"""SQL for Strava connections."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from domain.connections import ConnectionState, StravaConnection
from storage.changes import touch
from storage.models import StravaConnectionRow


def _to_domain(row: StravaConnectionRow) -> StravaConnection:
    return StravaConnection(
        athlete_id=row.athlete_id,
        strava_athlete_id=row.strava_athlete_id,
        state=ConnectionState(row.state),
        granted_scopes=tuple(s for s in row.granted_scopes.split(",") if s),
        access_token_encrypted=row.access_token_encrypted,
        refresh_token_encrypted=row.refresh_token_encrypted,
        access_token_expire_time=row.access_token_expire_time,
        connect_time=row.connect_time,
        last_sync_time=row.last_sync_time,
        sync_cursor=row.sync_cursor,
    )


class StravaConnectionRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, athlete_id: str, *, lock: bool = False) -> StravaConnection | None:
        """`lock`: hold the row until the unit of work ends (one token refresh at a time:
        Strava's refresh tokens rotate, so two concurrent refreshes would lose one)."""
        query = select(StravaConnectionRow).where(StravaConnectionRow.athlete_id == athlete_id)
        if lock:
            query = query.with_for_update()
        row = self.session.scalars(query).first()
        return None if row is None else _to_domain(row)

    def by_strava_athlete(self, strava_athlete_id: int) -> StravaConnection | None:
        query = select(StravaConnectionRow).where(
            StravaConnectionRow.strava_athlete_id == strava_athlete_id
        )
        row = self.session.scalars(query).first()
        return None if row is None else _to_domain(row)

    def save(self, connection: StravaConnection) -> None:
        """Insert or replace the athlete's connection."""
        touch(self.session, connection.athlete_id)
        row = self.session.get(StravaConnectionRow, connection.athlete_id)
        if row is None:
            row = StravaConnectionRow(athlete_id=connection.athlete_id)
            self.session.add(row)
        row.strava_athlete_id = connection.strava_athlete_id
        row.state = connection.state.value
        row.granted_scopes = ",".join(connection.granted_scopes)
        row.access_token_encrypted = connection.access_token_encrypted
        row.refresh_token_encrypted = connection.refresh_token_encrypted
        row.access_token_expire_time = connection.access_token_expire_time
        row.connect_time = connection.connect_time
        row.last_sync_time = connection.last_sync_time
        row.sync_cursor = connection.sync_cursor
        row.update_time = dt.datetime.now(dt.UTC)
        self.session.flush()

    def delete(self, athlete_id: str) -> bool:
        touch(self.session, athlete_id)
        result = self.session.execute(
            delete(StravaConnectionRow).where(StravaConnectionRow.athlete_id == athlete_id)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    def athletes_in_state(self, state: ConnectionState) -> list[str]:
        query = (
            select(StravaConnectionRow.athlete_id)
            .where(StravaConnectionRow.state == state.value)
            .order_by(StravaConnectionRow.athlete_id)
        )
        return list(self.session.scalars(query))

    def expiring(self, before: dt.datetime) -> list[str]:
        """Connected athletes whose access token expires before `before`."""
        query = select(StravaConnectionRow.athlete_id).where(
            StravaConnectionRow.state == ConnectionState.CONNECTED.value,
            StravaConnectionRow.access_token_expire_time < before,
        )
        return list(self.session.scalars(query))
