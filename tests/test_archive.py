"""open_upload: zips, gzip and plain files, and every hostile entry a zip can hold. Each
hostile case also checks that the honest entries beside it still read."""

from __future__ import annotations

import datetime as dt
import gzip
import io
import itertools
import math
import os
import stat
import struct
import warnings
import zipfile
from collections.abc import Iterable
from pathlib import Path

import pytest

from domain.activities import Sample
from domain.files.archive import ArchiveLimits, Item, Upload, open_upload
from domain.files.detect import parse_file
from domain.files.model import FileError
from tests.export_factory import EARTH_RADIUS_METERS, strava_export
from tests.support import real_fixture

GPX = (
    b'<?xml version="1.0"?><gpx version="1.1" xmlns="http://www.topografix.com/GPX/1/1">'
    b'<trk><trkseg><trkpt lat="52.0" lon="13.0"><time>2024-05-01T07:00:00Z</time></trkpt>'
    b"</trkseg></trk></gpx>"
)


def write_zip(path: Path, entries: Iterable[tuple[str | zipfile.ZipInfo, bytes]]) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # duplicate names, on purpose
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, data in entries:
                archive.writestr(name, data)
    return path


def by_name(upload: Upload) -> dict[str, Item]:
    return {item.name: item for item in upload.items}


def reason(upload: Upload, item: Item) -> str:
    with pytest.raises(FileError) as caught:
        upload.read(item)
    return caught.value.reason


def patch_central(data: bytes, name: str, offset: int, fmt: str, value: int) -> bytes:
    """Overwrite one field of `name`'s central directory record (offsets from APPNOTE)."""
    at = data.find(b"PK\x01\x02")
    while at >= 0:
        name_length = struct.unpack_from("<H", data, at + 28)[0]
        if data[at + 46 : at + 46 + name_length] == name.encode():
            patched = bytearray(data)
            struct.pack_into(fmt, patched, at + offset, value)
            return bytes(patched)
        at = data.find(b"PK\x01\x02", at + 4)
    raise AssertionError(f"{name} not in the central directory")


# --- plain files and gzip --------------------------------------------------------------------


def test_real_plain_file_is_one_item(tmp_path: Path) -> None:
    path = real_fixture("gpx/run_garmin-connect_hr-cad.gpx")
    with open_upload(path, "morning run.gpx") as upload:
        assert [item.name for item in upload.items] == ["morning run.gpx"]
        assert upload.export is None
        data = upload.read(upload.items[0])
    assert data == path.read_bytes()
    assert parse_file("morning run.gpx", data)[0].samples


def test_kind_is_decided_by_content(tmp_path: Path) -> None:
    plain = tmp_path / "upload"
    plain.write_bytes(GPX)
    with open_upload(plain, "run.gpx.gz") as upload:  # named .gz, holds plain GPX
        assert upload.read(upload.items[0]) == GPX
    gz = tmp_path / "upload2"
    gz.write_bytes(gzip.compress(GPX))
    with open_upload(gz, "run.gpx") as upload:  # named .gpx, holds gzip
        assert upload.read(upload.items[0]) == GPX


def test_zip_name_with_other_content_is_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "upload"
    path.write_bytes(GPX)
    with open_upload(path, "export.zip") as upload:
        (item,) = upload.items
        assert item.name == "export.zip"
        assert item.error is not None
        assert item.error.reason == "FILE_CORRUPT"
        assert reason(upload, item) == "FILE_CORRUPT"


@pytest.mark.parametrize(
    "data",
    [b"PK\x03\x04" + b"\x00" * 100, b"PK\x03\x04garbage", b"PK\x05\x06" + b"\xff" * 10],
)
def test_garbage_zip_is_one_corrupt_item(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "upload"
    path.write_bytes(data)
    with open_upload(path, "export.zip") as upload:
        (item,) = upload.items
        assert item.name == "export.zip"
        assert item.error is not None
        assert item.error.reason == "FILE_CORRUPT"


def test_missing_path_raises_oserror(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        open_upload(tmp_path / "nope", "x.gpx")


def test_empty_zip_has_no_items(tmp_path: Path) -> None:
    with open_upload(write_zip(tmp_path / "e.zip", []), "e.zip") as upload:
        assert upload.items == []
        assert upload.export is None


def test_gzip_bomb_is_unsafe(tmp_path: Path) -> None:
    path = tmp_path / "bomb"
    with gzip.open(path, "wb", compresslevel=9) as out:
        chunk = bytes(2**20)
        for _ in range(64):
            out.write(chunk)
    assert path.stat().st_size < 2**20 // 4
    with open_upload(path, "bomb.gpx.gz") as upload:
        (item,) = upload.items
        with pytest.raises(FileError, match="ratio") as caught:
            upload.read(item)
    assert caught.value.reason == "FILE_UNSAFE"


def test_gzip_over_the_file_limit_is_too_large(tmp_path: Path) -> None:
    path = tmp_path / "big"
    path.write_bytes(gzip.compress(os.urandom(5000)))
    with open_upload(path, "big.fit.gz", ArchiveLimits(max_file_bytes=4000)) as upload:
        assert reason(upload, upload.items[0]) == "FILE_TOO_LARGE"


@pytest.mark.parametrize(
    "data", [gzip.compress(GPX)[:-12], gzip.compress(GPX)[:30], b"\x1f\x8b\x08\x00junkjunkjunk"]
)
def test_truncated_or_bad_gzip_is_corrupt(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "t"
    path.write_bytes(data)
    with open_upload(path, "run.gpx.gz") as upload:
        assert reason(upload, upload.items[0]) == "FILE_CORRUPT"


def test_concatenated_gzip_members_are_read(tmp_path: Path) -> None:
    path = tmp_path / "c"
    path.write_bytes(gzip.compress(GPX[:50]) + gzip.compress(GPX[50:]))
    with open_upload(path, "run.gpx.gz") as upload:
        assert upload.read(upload.items[0]) == GPX


def test_archive_inside_gzip_is_unsupported(tmp_path: Path) -> None:
    inner = write_zip(tmp_path / "inner.zip", [("a.gpx", GPX)]).read_bytes()
    path = tmp_path / "outer"
    path.write_bytes(gzip.compress(inner))
    with open_upload(path, "export.zip.gz") as upload:
        (item,) = upload.items
        assert item.error is not None
        assert item.error.reason == "FILE_UNSUPPORTED"


# --- zip layout ------------------------------------------------------------------------------


def test_items_are_activity_files_sorted_and_decompressed(tmp_path: Path) -> None:
    path = write_zip(
        tmp_path / "u.zip",
        [
            ("activities/", b""),
            ("activities/b.FIT.GZ", gzip.compress(b"fit bytes")),
            ("activities/a.gpx", GPX),
            ("activities/c.Tcx", b"<tcx/>"),
            ("activities.csv", b"Activity ID,Filename\n1,activities/a.gpx\n"),
            ("bikes.csv", b"Bike Name\n"),
            ("media/photo.jpg", b"\xff\xd8\xff"),
            ("notes.txt", b"hi"),
            ("activities/d.gpx.gz.bak", b"x"),
        ],
    )
    with open_upload(path, "export.zip") as upload:
        names = [item.name for item in upload.items]
        assert names == ["activities/a.gpx", "activities/b.FIT.GZ", "activities/c.Tcx"]
        assert [item.index for item in upload.items] == [0, 1, 2]
        assert all(item.error is None for item in upload.items)
        assert upload.read(upload.items[1]) == b"fit bytes"
        assert upload.read(upload.items[0]) == GPX
        assert upload.export is not None
        row = upload.export.for_file("activities/a.gpx")
        assert row is not None
        assert row.activity_id == "1"
    with open_upload(path, "export.zip") as again:
        assert again.items == upload.items


def test_reading_an_item_of_another_upload_is_refused(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "u.zip", [("a.gpx", GPX)])
    with open_upload(path, "u.zip") as upload, pytest.raises(ValueError, match="not an item"):
        upload.read(Item("a.gpx", 5))


def test_export_under_one_top_level_folder(tmp_path: Path) -> None:
    csv = b"Activity ID,Filename\n7,activities/7.gpx\n"
    path = write_zip(
        tmp_path / "u.zip",
        [("export_1/activities.csv", csv), ("export_1/activities/7.gpx", GPX)],
    )
    with open_upload(path, "u.zip") as upload:
        assert upload.export is not None
        row = upload.export.for_file(upload.items[0].name)
        assert row is not None
        assert row.activity_id == "7"
    deep = write_zip(tmp_path / "deep.zip", [("a/b/activities.csv", csv)])
    with open_upload(deep, "deep.zip") as upload:
        assert upload.export is None


def test_unreadable_export_keeps_the_activities(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "u.zip", [("activities.csv", b""), ("activities/1.gpx", GPX)])
    with open_upload(path, "u.zip") as upload:
        assert upload.export is None
        assert upload.export_error is not None
        assert upload.export_error.reason == "FILE_CORRUPT"
        assert upload.read(upload.items[0]) == GPX


# --- hostile entries -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "../evil.gpx",
        "activities/../../evil.gpx",
        "/etc/evil.gpx",
        "C:\\evil.gpx",
        "c:/evil.gpx",
        "\\\\server\\share\\evil.gpx",
        "..\\..\\evil.gpx",
        "activities\\..\\..\\evil.txt",
    ],
)
def test_escaping_names_are_unsafe_items(tmp_path: Path, name: str) -> None:
    path = write_zip(tmp_path / "u.zip", [(name, GPX), ("activities/ok.gpx", GPX)])
    with open_upload(path, "u.zip") as upload:
        items = upload.items
        assert len(items) == 2
        bad = next(item for item in items if item.name != "activities/ok.gpx")
        assert bad.error is not None
        assert bad.error.reason == "FILE_UNSAFE"
        assert reason(upload, bad) == "FILE_UNSAFE"
        assert upload.read(by_name(upload)["activities/ok.gpx"]) == GPX


def test_nul_in_a_name_is_unsafe_and_not_shown(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "u.zip", [("activities/evilX.gpx", GPX), ("ok.gpx", GPX)])
    path.write_bytes(path.read_bytes().replace(b"evilX", b"evil\x00"))
    with open_upload(path, "u.zip") as upload:
        items = by_name(upload)
        bad = items["activities/evil\ufffd.gpx"]
        assert bad.error is not None
        assert bad.error.reason == "FILE_UNSAFE"
        assert upload.read(items["ok.gpx"]) == GPX


@pytest.mark.parametrize("name", ["activities/link.gpx", "link_to_etc"])
def test_symlinks_are_unsafe_items(tmp_path: Path, name: str) -> None:
    link = zipfile.ZipInfo(name)
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    path = write_zip(tmp_path / "u.zip", [(link, b"/etc/passwd"), ("a.gpx", GPX)])
    with open_upload(path, "u.zip") as upload:
        items = by_name(upload)
        error = items[name].error
        assert error is not None
        assert error.reason == "FILE_UNSAFE"
        assert "symbolic link" in error.message
        assert upload.read(items["a.gpx"]) == GPX


def test_encrypted_entry_is_unsupported(tmp_path: Path) -> None:
    path = write_zip(
        tmp_path / "u.zip", [("activities/secret.gpx", GPX), ("activities/ok.gpx", GPX)]
    )
    # zipfile cannot write encrypted entries: set the flag in the directory record.
    path.write_bytes(patch_central(path.read_bytes(), "activities/secret.gpx", 8, "<H", 0x1))
    with open_upload(path, "u.zip") as upload:
        items = by_name(upload)
        error = items["activities/secret.gpx"].error
        assert error is not None
        assert error.reason == "FILE_UNSUPPORTED"
        assert upload.read(items["activities/ok.gpx"]) == GPX


@pytest.mark.parametrize(
    "name", ["activities/inner.zip", "backup.tar.gz", "x.TGZ", "old.7z", "a.rar", "t.tar"]
)
def test_nested_archives_are_unsupported_items(tmp_path: Path, name: str) -> None:
    path = write_zip(tmp_path / "u.zip", [(name, b"PK\x03\x04..."), ("a.gpx", GPX)])
    with open_upload(path, "u.zip") as upload:
        items = by_name(upload)
        error = items[name].error
        assert error is not None
        assert error.reason == "FILE_UNSUPPORTED"
        assert upload.read(items["a.gpx"]) == GPX


def test_duplicate_names_keep_the_first(tmp_path: Path) -> None:
    other = GPX.replace(b"52.0", b"53.0")
    path = write_zip(
        tmp_path / "u.zip",
        [("activities/1.gpx", GPX), ("activities/1.gpx", other), ("ACTIVITIES/1.GPX", other)],
    )
    with open_upload(path, "u.zip") as upload:
        first, *later = sorted(upload.items, key=lambda item: item.error is not None)
        assert upload.read(first) == GPX
        assert len(later) == 2
        assert all(i.error is not None and i.error.reason == "FILE_UNSAFE" for i in later)


def test_too_many_entries_refuse_the_upload(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "u.zip", [(f"activities/{i}.gpx", GPX) for i in range(11)])
    with open_upload(path, "u.zip", ArchiveLimits(max_entries=10)) as upload:
        (item,) = upload.items
        assert item.name == "u.zip"
        assert item.error is not None
        assert item.error.reason == "FILE_TOO_LARGE"
    with open_upload(path, "u.zip", ArchiveLimits(max_entries=11)) as upload:
        assert len(upload.items) == 11


def test_lying_entry_count_is_caught_by_the_directory_size(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "u.zip", [(f"activities/{i}.gpx", GPX) for i in range(11)])
    data = bytearray(path.read_bytes())
    end = data.rfind(b"PK\x05\x06")
    struct.pack_into("<HH", data, end + 8, 1, 1)  # claims one entry
    path.write_bytes(bytes(data))
    with open_upload(path, "u.zip", ArchiveLimits(max_entries=10)) as upload:
        (item,) = upload.items
        assert item.error is not None
        assert item.error.reason == "FILE_TOO_LARGE"


def test_declared_size_above_the_limit_is_refused_unread(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "u.zip", [("big.fit", os.urandom(3000)), ("a.gpx", GPX)])
    with open_upload(path, "u.zip", ArchiveLimits(max_file_bytes=2000)) as upload:
        items = by_name(upload)
        error = items["big.fit"].error
        assert error is not None
        assert error.reason == "FILE_TOO_LARGE"
        assert upload.read(items["a.gpx"]) == GPX


def test_zip_bomb_is_unsafe_and_quick_to_refuse(tmp_path: Path) -> None:
    path = tmp_path / "bomb.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        with archive.open("activities/bomb.gpx", "w", force_zip64=True) as out:
            zeros = bytes(2**22)
            for _ in range(64):  # 256 MiB of zeros, about 250 KiB deflated
                out.write(zeros)
        archive.writestr("activities/ok.gpx", GPX)
    assert path.stat().st_size < 2**20
    with open_upload(path, "bomb.zip") as upload:
        items = by_name(upload)
        error = items["activities/bomb.gpx"].error
        assert error is not None
        assert error.reason == "FILE_UNSAFE"
        assert "compression ratio" in error.message
        assert upload.read(items["activities/ok.gpx"]) == GPX


def test_member_larger_than_declared_is_unsafe(tmp_path: Path) -> None:
    payload = os.urandom(4000)
    path = write_zip(tmp_path / "u.zip", [("activities/liar.fit", payload), ("a.gpx", GPX)])
    data = patch_central(path.read_bytes(), "activities/liar.fit", 24, "<I", 100)
    path.write_bytes(data)
    with open_upload(path, "u.zip") as upload:
        items = by_name(upload)
        with pytest.raises(FileError, match="declared") as caught:
            upload.read(items["activities/liar.fit"])
        assert caught.value.reason == "FILE_UNSAFE"
        assert upload.read(items["a.gpx"]) == GPX


def test_damaged_member_is_corrupt(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "u.zip", [("activities/1.gpx", GPX * 20), ("a.gpx", GPX)])
    data = bytearray(path.read_bytes())
    start = data.find(b"activities/1.gpx") + len("activities/1.gpx")
    data[start + 10 : start + 20] = b"\xff" * 10
    path.write_bytes(bytes(data))
    with open_upload(path, "u.zip") as upload:
        items = by_name(upload)
        assert reason(upload, items["activities/1.gpx"]) == "FILE_CORRUPT"
        assert upload.read(items["a.gpx"]) == GPX


def test_bad_gzip_member_is_corrupt(tmp_path: Path) -> None:
    path = write_zip(
        tmp_path / "u.zip",
        [("activities/1.fit.gz", gzip.compress(b"x" * 500)[:-20]), ("a.gpx", GPX)],
    )
    with open_upload(path, "u.zip") as upload:
        items = by_name(upload)
        assert reason(upload, items["activities/1.fit.gz"]) == "FILE_CORRUPT"
        assert upload.read(items["a.gpx"]) == GPX


def test_overlapping_entries_are_unsafe(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "u.zip", [("activities/a.gpx", GPX), ("activities/b.gpx", GPX)])
    data = patch_central(path.read_bytes(), "activities/b.gpx", 42, "<I", 0)
    path.write_bytes(data)
    with open_upload(path, "u.zip") as upload:
        items = by_name(upload)
        error = items["activities/b.gpx"].error
        assert error is not None
        assert error.reason == "FILE_UNSAFE"
        assert upload.read(items["activities/a.gpx"]) == GPX


def test_total_budget_is_shared_by_all_reads(tmp_path: Path) -> None:
    entries = [(f"activities/{i}.fit", os.urandom(1500)) for i in range(3)]
    path = write_zip(tmp_path / "u.zip", entries)
    limits = ArchiveLimits(max_total_bytes=3200)
    with open_upload(path, "u.zip", limits) as upload:
        assert len(upload.read(upload.items[0])) == 1500
        assert len(upload.read(upload.items[1])) == 1500
        assert reason(upload, upload.items[2]) == "FILE_TOO_LARGE"
    gz_entries = [(f"activities/{i}.fit.gz", gzip.compress(os.urandom(1500))) for i in range(3)]
    with open_upload(write_zip(tmp_path / "g.zip", gz_entries), "g.zip", limits) as upload:
        upload.read(upload.items[0])
        upload.read(upload.items[1])
        assert reason(upload, upload.items[2]) == "FILE_TOO_LARGE"


def test_stored_entries_read(tmp_path: Path) -> None:
    path = tmp_path / "s.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("a.gpx", GPX)
    buffer = io.BytesIO(path.read_bytes())
    assert zipfile.ZipFile(buffer).infolist()[0].compress_type == zipfile.ZIP_STORED
    with open_upload(path, "s.zip") as upload:
        assert upload.read(upload.items[0]) == GPX


# --- real files and the synthetic export, end to end ----------------------------------------


def test_real_files_inside_a_zip(tmp_path: Path) -> None:
    sources = {
        "export/activities/1.gpx": real_fixture("gpx/run_garmin-connect_hr-cad.gpx").read_bytes(),
        "export/activities/2.tcx.gz": gzip.compress(
            real_fixture("tcx/run_forerunner410_hr.tcx").read_bytes()
        ),
        "export/activities/3.fit.gz": gzip.compress(
            real_fixture("fit/run_fenix5_hr-cad_short.fit").read_bytes()
        ),
    }
    path = write_zip(tmp_path / "real.zip", sources.items())
    with open_upload(path, "real.zip") as upload:
        assert [item.name for item in upload.items] == sorted(sources)
        for item in upload.items:
            (activity,) = parse_file(item.name, upload.read(item))
            assert activity.samples, item.name


def track_length(samples: list[Sample]) -> float:
    """Haversine over consecutive positions, computed here rather than by domain.metrics."""
    total = 0.0
    points = [(s.latitude, s.longitude) for s in samples if s.latitude is not None]
    for (lat1, lon1), (lat2, lon2) in itertools.pairwise(points):
        assert lon1 is not None
        assert lon2 is not None
        p1, p2 = math.radians(lat1), math.radians(lat2)
        h = (
            math.sin((p2 - p1) / 2) ** 2
            + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
        )
        total += 2 * EARTH_RADIUS_METERS * math.asin(math.sqrt(h))
    return total


@pytest.mark.parametrize("language", ["en", "de", "fr"])
def test_synthetic_export_round_trip(tmp_path: Path, language: str) -> None:
    path = tmp_path / "export.zip"
    hostile = {"../escape.gpx": GPX, "activities/old.zip": b"PK\x03\x04", "C:/x.fit": b""}
    expected = strava_export(path, 15, language=language, extra=hostile)
    files = {e.file_name: e for e in expected if e.file_name}
    with open_upload(path, "export.zip") as upload:
        export = upload.export
        assert export is not None
        refused = {i.name: i.error.reason for i in upload.items if i.error is not None}
        assert refused == {
            "../escape.gpx": "FILE_UNSAFE",
            "activities/old.zip": "FILE_UNSUPPORTED",
            "C:/x.fit": "FILE_UNSAFE",
        }
        good = [item for item in upload.items if item.error is None]
        assert sorted(item.name for item in good) == sorted(files)
        for item in good:
            want = files[item.name]
            row = export.for_file(item.name)
            assert row is not None
            assert (row.activity_id, row.title, row.sport_type, row.start_time) == (
                want.activity_id,
                want.title,
                want.sport_type,
                want.start_time,
            )
            assert row.elapsed_seconds == want.elapsed_seconds
            assert row.distance_meters == pytest.approx(want.distance_meters, rel=0.01)
            (activity,) = parse_file(item.name, upload.read(item))
            assert len(activity.samples) == want.sample_count
            assert activity.start_time == want.start_time
            assert activity.samples[-1].time == want.start_time + dt.timedelta(
                seconds=want.elapsed_seconds
            )
            assert track_length(activity.samples) == pytest.approx(want.distance_meters, rel=0.01)
            assert activity.sport_type in (None, want.sport_type)
            assert all(s.heart_rate_bpm is not None for s in activity.samples)
        manual = [(r.activity_id, r.title, r.sport_type) for r in export.without_file()]
        assert manual == [
            (e.activity_id, e.title, e.sport_type) for e in expected if not e.file_name
        ]


def test_synthetic_export_is_distinct_and_big_ones_list_quickly(tmp_path: Path) -> None:
    expected = strava_export(tmp_path / "big.zip", 500, formats=("gpx", "tcx", "fit"))
    starts = sorted(e.start_time for e in expected)
    assert all(b - a > dt.timedelta(seconds=60) for a, b in itertools.pairwise(starts))
    assert {e.sport_type for e in expected} == {"Run", "Ride", "Walk", "Hike", "WeightTraining"}
    with open_upload(tmp_path / "big.zip", "big.zip") as upload:
        assert len(upload.items) == 500
        assert upload.export is not None
        assert len(upload.export.rows) == 502


def test_names_in_the_old_cp437_encoding_are_not_taken_for_overlapping_entries(
    tmp_path: Path,
) -> None:
    # Old tools write non-ASCII names in cp437 without the UTF-8 flag: "été" is 3 bytes
    # there, 5 in UTF-8. Written with an ASCII stand-in of the same length, then patched.
    data = write_zip(tmp_path / "x.zip", [("XtX/a.gpx", GPX), ("XtX/b.gpx", GPX)]).read_bytes()
    stored = "été/".encode("cp437")
    assert len(stored) == len(b"XtX/")
    path = tmp_path / "cp437.zip"
    path.write_bytes(data.replace(b"XtX/", stored))
    with open_upload(path, "cp437.zip") as upload:
        assert [(item.name, item.error) for item in upload.items] == [
            ("été/a.gpx", None),
            ("été/b.gpx", None),
        ]
        assert all(upload.read(item) == GPX for item in upload.items)
