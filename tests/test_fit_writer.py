"""The test FIT writer produces files a real decoder reads back exactly: checked with
fitdecode with CRC checking on, and through parse_fit."""

from __future__ import annotations

import datetime as dt
import io
from typing import Any

import fitdecode
import pytest

from domain.files.fit import parse_fit
from tests.fit_writer import crc_byte, fit_activity, fit_crc

START = dt.datetime(2023, 3, 4, 5, 6, 7, tzinfo=dt.UTC)
POINTS = [(i * 2.0, 47.5 + i * 1e-4, 8.5 - i * 1e-4, i * 6.5, 120 + i) for i in range(30)]


def messages(data: bytes) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    with fitdecode.FitReader(io.BytesIO(data), check_crc=fitdecode.CrcCheck.RAISE) as reader:
        for frame in reader:
            if isinstance(frame, fitdecode.FitDataMessage):
                values = {f.name: f.value for f in frame.fields}
                found.setdefault(frame.name, []).append(values)
    return found


def test_table_crc_is_the_sdk_nibble_crc() -> None:
    data = bytes(range(256)) * 3
    crc = 0
    for byte in data:
        crc = crc_byte(crc, byte)
    assert fit_crc(data) == crc
    assert fit_crc(b"123456789") == 0xBB3D  # CRC-16/ARC check value


def test_header_and_crc_are_valid() -> None:
    data = fit_activity(START, POINTS)
    assert data[0] == 14
    assert data[8:12] == b".FIT"
    assert fit_crc(data[:12]) == int.from_bytes(data[12:14], "little")
    assert fit_crc(data) == 0  # a file's CRC over itself, its CRC included, is zero
    assert "record" in messages(data)


def test_messages_decode_to_what_was_written() -> None:
    data = fit_activity(START, POINTS, sport="cycling", altitude=321.4, cadence=88, power=250)
    found = messages(data)
    (file_id,) = found["file_id"]
    assert file_id["type"] == "activity"
    assert file_id["time_created"] == START
    records = found["record"]
    assert len(records) == len(POINTS)
    assert records[3]["timestamp"] == START + dt.timedelta(seconds=6)
    assert records[3]["position_lat"] == round((47.5 + 3e-4) * 2**31 / 180)
    assert records[3]["distance"] == pytest.approx(19.5)
    assert records[3]["altitude"] == pytest.approx(321.4, abs=0.2)
    assert records[3]["heart_rate"] == 123
    assert records[3]["cadence"] == 88
    assert records[3]["power"] == 250
    assert records[3]["speed"] == pytest.approx(3.25)
    (session,) = found["session"]
    assert session["sport"] == "cycling"
    assert session["start_time"] == START
    assert session["total_elapsed_time"] == pytest.approx(58.0)
    assert session["total_distance"] == pytest.approx(188.5)
    (activity,) = found["activity"]
    assert activity["num_sessions"] == 1


def test_parse_fit_reads_the_activity() -> None:
    points = [*POINTS[:5], (10.0, 47.6, 8.6, 40.0, None)]
    (activity,) = parse_fit(fit_activity(START, points))
    assert activity.sport_type == "Run"
    assert activity.start_time == START
    assert len(activity.samples) == 6
    assert [s.time for s in activity.samples][-1] == START + dt.timedelta(seconds=10)
    assert activity.samples[4].distance_meters == pytest.approx(26.0)
    assert activity.samples[4].heart_rate_bpm == 124
    assert activity.samples[5].heart_rate_bpm is None
    assert activity.samples[0].latitude == pytest.approx(47.5, abs=1e-6)
    assert activity.samples[0].altitude_meters is None
