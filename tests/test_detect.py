"""parse_file: the name picks the parser, the content must agree, and nothing but FileError
comes out of garbage."""

from __future__ import annotations

import datetime as dt
import gzip
import os
import struct

import pytest

from domain.files.detect import parse_file, sniff
from domain.files.model import FileError, FileFormat
from tests.fit_writer import fit_activity
from tests.support import real_fixture

START = dt.datetime(2024, 5, 1, 7, 0, tzinfo=dt.UTC)
FIT = fit_activity(START, [(i * 5.0, 52.0 + i * 1e-4, 13.0, i * 11.0, 140) for i in range(5)])
GPX = (
    b'\xef\xbb\xbf\n  <?xml version="1.0"?>\n<!-- made by hand -->\n'
    b'<gpx version="1.1" xmlns="http://www.topografix.com/GPX/1/1"><trk><type>running</type>'
    b'<trkseg><trkpt lat="52.0" lon="13.0"><time>2024-05-01T07:00:00Z</time></trkpt>'
    b"</trkseg></trk></gpx>"
)
TCX = (
    b'<?xml version="1.0"?><tcx:TrainingCenterDatabase xmlns:tcx="http://www.garmin.com/'
    b'xmlschemas/TrainingCenterDatabase/v2"><tcx:Activities><tcx:Activity Sport="Running">'
    b"<tcx:Id>2024-05-01T07:00:00Z</tcx:Id><tcx:Lap><tcx:Track><tcx:Trackpoint>"
    b"<tcx:Time>2024-05-01T07:00:00Z</tcx:Time></tcx:Trackpoint></tcx:Track></tcx:Lap>"
    b"</tcx:Activity></tcx:Activities></tcx:TrainingCenterDatabase>"
)


def reason_of(name: str, data: bytes) -> str:
    with pytest.raises(FileError) as caught:
        parse_file(name, data)
    return caught.value.reason


@pytest.mark.parametrize(
    ("name", "data", "file_format"),
    [
        ("a.gpx", GPX, FileFormat.GPX),
        ("activities/A.GPX.GZ", GPX, FileFormat.GPX),
        ("x\\y\\b.tcx", TCX, FileFormat.TCX),
        ("c.fit", FIT, FileFormat.FIT),
        ("activities/123.fit.gz", FIT, FileFormat.FIT),
    ],
)
def test_name_picks_the_parser(name: str, data: bytes, file_format: FileFormat) -> None:
    (activity,) = parse_file(name, data)
    assert activity.format is file_format
    assert activity.start_time == START
    assert activity.sport_type == "Run"


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("a.gpx", FIT, "named .gpx but holds a FIT file"),
        ("a.gpx", TCX, "named .gpx but holds a TCX file"),
        ("a.tcx", GPX, "named .tcx but holds a GPX file"),
        ("a.fit", GPX, "named .fit but holds a GPX file"),
        ("a.fit.gz", gzip.compress(FIT), "gzip-compressed"),
        ("a.gpx", b"PK\x03\x04rest", "zip archive"),
        ("a.gpx", b'<?xml version="1.0"?><kml><Document/></kml>', "<kml>"),
    ],
)
def test_content_of_another_kind_is_a_mismatch(name: str, data: bytes, message: str) -> None:
    with pytest.raises(FileError, match=message) as caught:
        parse_file(name, data)
    assert caught.value.reason == "FILE_WRONG_TYPE"


def test_real_fit_named_gpx_is_a_mismatch() -> None:
    data = real_fixture("fit/run_fenix5_hr-cad_short.fit").read_bytes()
    assert reason_of("run.gpx", data) == "FILE_WRONG_TYPE"
    assert parse_file("run.fit", data)[0].samples


@pytest.mark.parametrize("name", ["a.csv", "a.jpg", "gpx", "a.gpx.zip", "a.kml.gz", ""])
def test_other_names_are_unsupported(name: str) -> None:
    assert reason_of(name, GPX) == "FILE_UNSUPPORTED"


def test_empty_file_is_corrupt() -> None:
    with pytest.raises(FileError, match="empty file") as caught:
        parse_file("a.gpx", b"")
    assert caught.value.reason == "FILE_CORRUPT"


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("a.gpx", b"hello, not xml at all"),
        ("a.tcx", b"<TrainingCenterDatabase><unclosed"),
        ("a.fit", b"\x0e\x20garbage"),
        ("a.gpx", os.urandom(64).replace(b".FIT", b"....")),
    ],
)
def test_garbage_is_a_file_error(name: str, data: bytes) -> None:
    assert reason_of(name, data) in {"FILE_CORRUPT", "FILE_WRONG_TYPE"}


@pytest.mark.parametrize("encoding", ["bogus", "utf-32", "shift_jis", "rot13"])
def test_xml_encodings_expat_refuses_are_corrupt(encoding: str) -> None:
    """expat raises LookupError / ValueError for these, past the parsers' own handling."""
    data = f'<?xml version="1.0" encoding="{encoding}"?><gpx version="1.1"></gpx>'.encode()
    with pytest.raises(FileError, match="unreadable GPX") as caught:
        parse_file("a.gpx", data)
    assert caught.value.reason == "FILE_CORRUPT"


def test_fit_with_a_short_data_size_is_corrupt() -> None:
    """fitdecode fails an internal assert when a message runs past the header's data size."""
    data = bytearray(FIT)
    struct.pack_into("<I", data, 4, 5)
    with pytest.raises(FileError, match="AssertionError") as caught:
        parse_file("a.fit", bytes(data))
    assert caught.value.reason == "FILE_CORRUPT"


@pytest.mark.parametrize(
    ("data", "found"),
    [
        (FIT, "a FIT file"),
        (GPX, "a GPX file"),
        (TCX, "a TCX file"),
        (GPX.decode("utf-8-sig").encode("utf-16"), "a GPX file"),
        (b"<!DOCTYPE gpx><gpx/>", "a GPX file"),
        (b"plain text", None),
        (b"<" + b" " * 5000 + b"gpx/>", None),
    ],
)
def test_sniff(data: bytes, found: str | None) -> None:
    assert sniff(data) == found
