"""Pure conversions between protobuf well-known types and Python values."""

from __future__ import annotations

import datetime as dt

from google.protobuf import duration_pb2, timestamp_pb2
from hypothesis import given
from hypothesis import strategies as st

from server.convert.common import datetime_to_timestamp, timedelta_to_duration

aware = st.datetimes(
    min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30), timezones=st.just(dt.UTC)
)


@given(aware)
def test_timestamps_match_protobufs_own_conversion(value: dt.datetime) -> None:
    expected = timestamp_pb2.Timestamp()
    expected.FromDatetime(value)
    assert datetime_to_timestamp(value) == expected
    assert datetime_to_timestamp(value).ToDatetime(tzinfo=dt.UTC) == value


@given(st.timedeltas(min_value=dt.timedelta(days=-(10**6)), max_value=dt.timedelta(days=10**6)))
def test_durations_match_protobufs_own_conversion(value: dt.timedelta) -> None:
    expected = duration_pb2.Duration()
    expected.FromTimedelta(value)
    assert timedelta_to_duration(value) == expected
    assert timedelta_to_duration(value).ToTimedelta() == value
