"""Keyset pagination: the rows strictly after a (time, id) position in list order."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ColumnElement, and_, or_
from sqlalchemy.orm import InstrumentedAttribute


def after_position(
    time_column: InstrumentedAttribute[dt.datetime],
    id_column: InstrumentedAttribute[str],
    position: tuple[dt.datetime, str],
    descending: bool = False,
) -> ColumnElement[bool]:
    time, last_id = position
    if descending:
        return or_(time_column < time, and_(time_column == time, id_column < last_id))
    return or_(time_column > time, and_(time_column == time, id_column > last_id))
