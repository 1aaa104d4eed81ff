"""A tiny FIT activity encoder for tests: a 14-byte protocol 2.0 header with its CRC,
definition + data messages (file_id, record, session, activity), and the file CRC.

Only what tests need; field numbers, base types, scales and offsets follow the FIT profile
(file_id 0, record 20, session 18, activity 34), so any FIT decoder reads the result.
"""

from __future__ import annotations

import datetime as dt
import struct
from collections.abc import Sequence

FIT_EPOCH = dt.datetime(1989, 12, 31, tzinfo=dt.UTC)
PROFILE_VERSION = 2132

# FIT base types: (type byte, struct code, invalid value).
ENUM = (0x00, "B", 0xFF)
UINT8 = (0x02, "B", 0xFF)
UINT16 = (0x84, "H", 0xFFFF)
SINT32 = (0x85, "i", 0x7FFFFFFF)
UINT32 = (0x86, "I", 0xFFFFFFFF)
UINT32Z = (0x8C, "I", 0)

SPORTS = {
    "generic": 0, "running": 1, "cycling": 2, "swimming": 5, "training": 10, "walking": 11,
    "cross_country_skiing": 12, "rowing": 15, "hiking": 17,
}  # fmt: skip

_SEMICIRCLES_PER_DEGREE = 2**31 / 180.0

# The FIT SDK's CRC-16 nibble table.
_CRC_NIBBLES = (
    0x0000, 0xCC01, 0xD801, 0x1400, 0xF001, 0x3C00, 0x2800, 0xE401,
    0xA001, 0x6C00, 0x7800, 0xB401, 0x5000, 0x9C01, 0x8801, 0x4400,
)  # fmt: skip


def crc_byte(crc: int, byte: int) -> int:
    """The FIT SDK's CRC step for one byte: low nibble, then high nibble."""
    for nibble in (byte & 0xF, byte >> 4):
        tmp = _CRC_NIBBLES[crc & 0xF]
        crc = ((crc >> 4) & 0x0FFF) ^ tmp ^ _CRC_NIBBLES[nibble]
    return crc


# The same CRC a byte at a time (it is CRC-16/ARC), so big test exports stay fast.
_CRC_TABLE = tuple(crc_byte(0, b) for b in range(256))


def fit_crc(data: bytes, crc: int = 0) -> int:
    for byte in data:
        crc = (crc >> 8) ^ _CRC_TABLE[(crc ^ byte) & 0xFF]
    return crc


Field = tuple[int, tuple[int, str, int]]  # (field number, base type)


class _Messages:
    """Definition and data messages; each global message gets its own local type."""

    def __init__(self) -> None:
        self.body = bytearray()
        self._local: dict[int, int] = {}

    def add(self, global_number: int, fields: Sequence[Field], values: Sequence[int]) -> None:
        local = self._local.get(global_number)
        if local is None:
            local = self._local[global_number] = len(self._local)
            self.body += struct.pack("<BBBHB", 0x40 | local, 0, 0, global_number, len(fields))
            for number, (base, code, _) in fields:
                self.body += struct.pack("<BBB", number, struct.calcsize(code), base)
        fmt = "<B" + "".join(code for _, (_, code, _) in fields)
        self.body += struct.pack(fmt, local, *values)


def _fit_time(time: dt.datetime) -> int:
    return round((time - FIT_EPOCH).total_seconds())


def _or_invalid(
    value: float | None, base: tuple[int, str, int], scale: float = 1, offset: float = 0
) -> int:
    return base[2] if value is None else round((value + offset) * scale)


_FILE_ID: Sequence[Field] = ((0, ENUM), (1, UINT16), (2, UINT16), (3, UINT32Z), (4, UINT32))
_RECORD: Sequence[Field] = (
    (253, UINT32), (0, SINT32), (1, SINT32), (5, UINT32), (2, UINT16), (3, UINT8), (4, UINT8),
    (7, UINT16), (6, UINT16),
)  # fmt: skip
_SESSION: Sequence[Field] = (
    (253, UINT32), (2, UINT32), (5, ENUM), (6, ENUM), (7, UINT32), (8, UINT32), (9, UINT32),
)  # fmt: skip
_ACTIVITY: Sequence[Field] = (
    (253, UINT32),
    (0, UINT32),
    (1, UINT16),
    (2, ENUM),
    (3, ENUM),
    (4, ENUM),
)


def fit_activity(
    start: dt.datetime,
    points: Sequence[tuple[float, float, float, float, int | None]],
    *,
    sport: str = "running",
    altitude: float | None = None,
    cadence: int | None = None,
    power: int | None = None,
) -> bytes:
    """A FIT activity file. `points` are (seconds_from_start, lat, lon, cumulative distance
    in metres, heart rate or None); speed is derived from consecutive points. `altitude`,
    `cadence` and `power` are written on every record when given."""
    messages = _Messages()
    created = _fit_time(start)
    messages.add(0, _FILE_ID, (4, 255, 1, 12345, created))  # activity, "development"
    previous: tuple[float, float] | None = None
    for seconds, lat, lon, distance, heart_rate in points:
        speed = None
        if previous is not None and seconds > previous[0]:
            speed = (distance - previous[1]) / (seconds - previous[0])
        previous = (seconds, distance)
        values = (
            _fit_time(start + dt.timedelta(seconds=seconds)),
            round(lat * _SEMICIRCLES_PER_DEGREE),
            round(lon * _SEMICIRCLES_PER_DEGREE),
            _or_invalid(distance, UINT32, 100),
            _or_invalid(altitude, UINT16, 5, 500),
            _or_invalid(heart_rate, UINT8),
            _or_invalid(cadence, UINT8),
            _or_invalid(power, UINT16),
            _or_invalid(speed, UINT16, 1000),
        )
        messages.add(20, _RECORD, values)
    elapsed = points[-1][0] if points else 0.0
    end = _fit_time(start + dt.timedelta(seconds=elapsed))
    total_distance = points[-1][3] if points else 0.0
    millis = round(elapsed * 1000)
    messages.add(
        18,
        _SESSION,
        (end, created, SPORTS[sport], 0, millis, millis, round(total_distance * 100)),
    )
    messages.add(34, _ACTIVITY, (end, millis, 1, 0, 26, 1))  # manual, activity, stop
    header = struct.pack("<BBHI4s", 14, 0x20, PROFILE_VERSION, len(messages.body), b".FIT")
    header += struct.pack("<H", fit_crc(header))
    data = header + bytes(messages.body)
    return data + struct.pack("<H", fit_crc(data))
