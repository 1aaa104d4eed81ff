"""Safe unpacking of one uploaded file: a zip (a Strava bulk export, or any zip of activity
files), a gzip-compressed file, or one plain file.

Anything a user uploads is hostile until read. Decisions:
- The kind is decided by content (magic bytes), not by name: `PK\\x03\\x04` / `PK\\x05\\x06`
  is a zip, `\\x1f\\x8b` gzip, anything else one plain file (a `.gpx.gz` name holding plain
  GPX is read as GPX). Only a `.zip` name with other content is refused (FILE_CORRUPT): the
  user meant an archive and would otherwise get a puzzling "unsupported file".
- Garbage never raises from `open_upload`: an unreadable zip is one Item with an error, so
  the import job reports it like any other bad file. Only a missing path raises (OSError).
- Items are the activity files (.gpx .tcx .fit, each optionally .gz, any case), sorted by
  name (then by position in the zip) so the same bytes always give the same indices. Entries
  that are refused without reading are items too when the user should hear about them: any
  entry with an absolute or `..` path, any symlink, a NUL in the name, a nested archive
  (FILE_UNSUPPORTED), and activity files that are encrypted (FILE_UNSUPPORTED), compressed
  with a method other than stored/deflate (FILE_UNSUPPORTED), declared too large
  (FILE_TOO_LARGE), declared with a compression ratio above the limit (FILE_UNSAFE), or that
  overlap another entry's data (FILE_UNSAFE: the "overlapping files" zip bomb). Other
  entries (csv, media, directories) are ignored.
- Duplicate names (compared case-insensitively, after normalising `\\` to `/`): the first in
  the zip's central directory is imported, every later one is an item with FILE_UNSAFE.
  Two entries under one name are how archive-confusion attacks work (tools disagree on which
  one they extract); saying so beats silently picking one.
- Too many entries: the whole upload is refused as one item (named the upload's file name)
  with FILE_TOO_LARGE, decided from the end-of-central-directory record before the
  directory is parsed (so a million-entry directory never becomes a million ZipInfo
  objects). Importing an arbitrary first N would be a partial import nobody asked for.
- Zip members are decompressed here, not by zipfile, so every byte is counted: output is
  capped at the declared size (more is FILE_UNSAFE: a lying header), at the ratio limit, at
  `max_file_bytes` and at what is left of `max_total_bytes`. The ratio limit applies only
  beyond RATIO_FLOOR bytes: small text files legitimately compress 300:1, and only large
  outputs cost anything.
- An Upload holds one open file and reads it with seeks; it is not for concurrent use.
"""

from __future__ import annotations

import re
import stat
import struct
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from domain.files.model import FileError
from domain.files.strava_export import StravaExport, parse_activities_csv

ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
GZIP_MAGIC = b"\x1f\x8b"

# Below this many uncompressed bytes the compression ratio is not checked (see docstring).
RATIO_FLOOR = 2**20

_CHUNK = 2**16
_UTF8_NAME = 0x800
_ACTIVITY = re.compile(r"\.(gpx|tcx|fit)(\.gz)?$", re.IGNORECASE)
_NESTED_ARCHIVE = re.compile(r"\.(zip|tar|tgz|tar\.gz|tar\.bz2|tar\.xz|7z|rar)$", re.IGNORECASE)
_DRIVE = re.compile(r"^[A-Za-z]:")
_EOCD = struct.Struct("<4s4H2LH")
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
_ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")
_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")
# A central directory record is 46 bytes plus its name and extra fields; real exports average
# well under 200. Bounding the directory's size bounds the ZipInfo objects zipfile builds
# even when the entry count in the end record lies.
_MAX_DIRECTORY_BYTES_PER_ENTRY = 512


@dataclass(frozen=True)
class ArchiveLimits:
    max_file_bytes: int = 256 * 2**20  # one entry's uncompressed size
    max_total_bytes: int = 4 * 2**30  # all entries' uncompressed bytes together
    max_ratio: float = 200.0  # uncompressed/compressed, per entry (zip and gzip)
    max_entries: int = 100_000


@dataclass(frozen=True)
class Item:
    """One file to import: `name` is what the user sees in per-file progress/errors
    (the archive path like 'activities/123.fit.gz', or the upload's file name)."""

    name: str
    index: int  # position in `Upload.items`, stable for the same bytes
    # Set when the entry is rejected without reading (see the module docstring).
    error: FileError | None = None


class _Exceeded(Exception):
    """Decompressed output passed its cap; the caller knows which limit that was."""


@dataclass(frozen=True)
class _Source:
    """Where an item's bytes come from: a zip member, the gzip upload, or the plain file."""

    kind: str  # "zip" | "gzip" | "plain"
    info: zipfile.ZipInfo | None = None


class Upload:
    """The items of one upload, read one at a time with every limit applied. A context
    manager: the file stays open until `close`."""

    def __init__(self, file: BinaryIO, limits: ArchiveLimits) -> None:
        self._file = file
        self._limits = limits
        self._spent = 0
        self._sources: list[_Source] = []
        self.items: list[Item] = []
        self.export: StravaExport | None = None
        # Why activities.csv could not be used (the activities still import without it).
        self.export_error: FileError | None = None

    def __enter__(self) -> Upload:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._file.close()

    def read(self, item: Item) -> bytes:
        """The item's decompressed bytes (zip member and any .gz layer removed).

        Raises FileError: the item's own error; FILE_TOO_LARGE (over max_file_bytes, or the
        upload's max_total_bytes is spent); FILE_UNSAFE (compression ratio, or more bytes
        than the zip declares); FILE_CORRUPT (bad member, bad gzip, truncated, bad CRC).
        """
        if not 0 <= item.index < len(self.items) or self.items[item.index] != item:
            raise ValueError(f"{item!r} is not an item of this upload")
        if item.error is not None:
            raise item.error
        if self._spent >= self._limits.max_total_bytes:
            raise FileError("FILE_TOO_LARGE", "the upload's total uncompressed size is spent")
        source = self._sources[item.index]
        if source.kind == "zip":
            assert source.info is not None
            data = self._read_member(source.info)
            if item.name.lower().endswith(".gz"):
                data = self._gunzip(iter((data,)), len(data))
            else:
                self._spend(data)
            return data
        size = self._file.seek(0, 2)
        self._file.seek(0)
        if source.kind == "gzip":
            return self._gunzip(self._chunks(size), size)
        if size > self._limits.max_file_bytes:
            raise FileError("FILE_TOO_LARGE", _too_large(size, self._limits.max_file_bytes))
        data = self._file.read(self._limits.max_file_bytes + 1)
        if len(data) > self._limits.max_file_bytes:
            raise FileError("FILE_TOO_LARGE", "the file is larger than the limit")
        self._spend(data)
        return data

    # --- reading -------------------------------------------------------------------------

    def _remaining(self) -> int:
        return self._limits.max_total_bytes - self._spent

    def _spend(self, data: bytes) -> None:
        self._spent += len(data)

    def _chunks(self, length: int) -> Iterator[bytes]:
        """`length` bytes from the current position, in chunks; stops early at end of file."""
        while length > 0:
            chunk = self._file.read(min(_CHUNK, length))
            if not chunk:
                return
            length -= len(chunk)
            yield chunk

    def _read_member(self, info: zipfile.ZipInfo) -> bytes:
        """A stored or deflated member, decompressed with a cap at its declared size."""
        self._file.seek(info.header_offset)
        header = self._file.read(_LOCAL_HEADER.size)
        if len(header) < _LOCAL_HEADER.size or header[:4] != b"PK\x03\x04":
            raise FileError("FILE_CORRUPT", "bad zip entry: no local file header")
        fields = _LOCAL_HEADER.unpack(header)
        self._file.seek(fields[-2] + fields[-1], 1)
        cap = self._member_cap(info)
        if info.compress_type == zipfile.ZIP_STORED:
            data = b"".join(self._chunks(min(info.compress_size, cap + 1)))
        else:
            try:
                data = _inflate(self._chunks(info.compress_size), zlib.decompressobj(-15), cap)
            except _Exceeded:
                raise self._member_over(info) from None
            except zlib.error as exc:
                raise FileError("FILE_CORRUPT", f"bad zip entry: {exc}") from exc
        if len(data) > cap:
            raise self._member_over(info)
        if len(data) < info.file_size:
            raise FileError("FILE_CORRUPT", "bad zip entry: truncated")
        if zlib.crc32(data) != info.CRC:
            raise FileError("FILE_CORRUPT", "bad zip entry: CRC mismatch")
        return data

    def _member_cap(self, info: zipfile.ZipInfo) -> int:
        cap = min(info.file_size, self._limits.max_file_bytes)
        if not info.filename.lower().endswith(".gz"):
            cap = min(cap, self._remaining())
        return cap

    def _member_over(self, info: zipfile.ZipInfo) -> FileError:
        if info.file_size > self._member_cap(info):
            return FileError("FILE_TOO_LARGE", "the upload's total uncompressed size is spent")
        return FileError(
            "FILE_UNSAFE",
            f"the entry decompresses to more than its declared {info.file_size} bytes",
        )

    def _gunzip(self, chunks: Iterator[bytes], compressed: int) -> bytes:
        """All members of a gzip stream, capped by the file, ratio and total limits."""
        limits = self._limits
        ratio_cap = max(RATIO_FLOOR, int(limits.max_ratio * compressed))
        cap = min(limits.max_file_bytes, self._remaining(), ratio_cap)
        out = bytearray()
        try:
            decompressor = zlib.decompressobj(31)
            for chunk in chunks:
                data = chunk
                while data:
                    out += decompressor.decompress(data, cap + 1 - len(out))
                    if len(out) > cap:
                        raise _Exceeded
                    data = decompressor.unconsumed_tail
                    if decompressor.eof:
                        data = decompressor.unused_data.lstrip(b"\x00")
                        if data:
                            # Another gzip member follows (concatenated .gz files).
                            decompressor = zlib.decompressobj(31)
            if not decompressor.eof:
                raise FileError("FILE_CORRUPT", "the gzip data is truncated")
        except _Exceeded:
            self._spent += len(out)
            if cap == ratio_cap:
                reason, message = "FILE_UNSAFE", f"compression ratio above {limits.max_ratio:g}"
            elif cap == limits.max_file_bytes:
                reason, message = "FILE_TOO_LARGE", "the decompressed file is larger than the limit"
            else:
                reason, message = "FILE_TOO_LARGE", "the upload's total uncompressed size is spent"
            raise FileError(reason, message) from None
        except zlib.error as exc:
            raise FileError("FILE_CORRUPT", f"bad gzip data: {exc}") from exc
        data = bytes(out)
        self._spend(data)
        return data


def _inflate(chunks: Iterator[bytes], decompressor: zlib._Decompress, cap: int) -> bytes:
    """Raw deflate output, never holding more than cap + 1 bytes; raises _Exceeded beyond."""
    out = bytearray()
    for chunk in chunks:
        data = chunk
        while data and not decompressor.eof:
            out += decompressor.decompress(data, cap + 1 - len(out))
            if len(out) > cap:
                raise _Exceeded
            data = decompressor.unconsumed_tail
        if decompressor.eof:
            break
    if not decompressor.eof:
        raise FileError("FILE_CORRUPT", "bad zip entry: the compressed data is truncated")
    return bytes(out)


def _too_large(size: int, limit: int) -> str:
    return f"the file is {size} bytes, more than the limit of {limit}"


def open_upload(path: Path, file_name: str, limits: ArchiveLimits = ArchiveLimits()) -> Upload:
    """Open one uploaded file (see the module docstring). Raises OSError only when `path`
    cannot be opened; anything wrong with the content is an Item error."""
    file = path.open("rb")
    try:
        upload = Upload(file, limits)
        head = file.read(4)
        file.seek(0)
        if head.startswith(ZIP_MAGIC):
            _open_zip(upload, file, file_name, limits)
        elif head.startswith(GZIP_MAGIC):
            _open_gzip(upload, file, file_name)
        elif file_name.lower().endswith(".zip"):
            _add(
                upload, file_name, _Source("plain"), FileError("FILE_CORRUPT", "not a zip archive")
            )
        else:
            _add(upload, file_name, _Source("plain"))
    except BaseException:
        file.close()
        raise
    return upload


def _add(upload: Upload, name: str, source: _Source, error: FileError | None = None) -> None:
    upload.items.append(Item(name, len(upload.items), error))
    upload._sources.append(source)


def _open_gzip(upload: Upload, file: BinaryIO, file_name: str) -> None:
    """One gzip-compressed file; an archive inside it is refused up front, by its magic."""
    head = b""
    try:
        head = zlib.decompressobj(31).decompress(file.read(_CHUNK), 512)
    except zlib.error as exc:
        _add(upload, file_name, _Source("gzip"), FileError("FILE_CORRUPT", f"bad gzip: {exc}"))
        return
    finally:
        file.seek(0)
    if head.startswith(ZIP_MAGIC) or head[257:262] == b"ustar":
        error = FileError("FILE_UNSUPPORTED", "an archive inside a gzip file is not supported")
        _add(upload, file_name, _Source("gzip"), error)
    else:
        _add(upload, file_name, _Source("gzip"))


def _declared_entries(file: BinaryIO) -> tuple[int, int] | None:
    """(entry count, central directory size) from the end record, or None when there is
    none (zipfile then reports the damage)."""
    size = file.seek(0, 2)
    tail_start = max(0, size - _EOCD.size - 0xFFFF)
    file.seek(tail_start)
    tail = file.read()
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < _EOCD.size:
        return None
    fields = _EOCD.unpack_from(tail, at)
    entries, directory_size = fields[4], fields[5]
    locator_at = at - _ZIP64_LOCATOR.size
    if locator_at >= 0 and tail[locator_at : locator_at + 4] == b"PK\x06\x07":
        zip64_offset = _ZIP64_LOCATOR.unpack_from(tail, locator_at)[2]
        file.seek(zip64_offset)
        record = file.read(_ZIP64_EOCD.size)
        if len(record) == _ZIP64_EOCD.size and record[:4] == b"PK\x06\x06":
            zip64 = _ZIP64_EOCD.unpack(record)
            entries, directory_size = zip64[7], zip64[8]
    return entries, directory_size


def _open_zip(upload: Upload, file: BinaryIO, file_name: str, limits: ArchiveLimits) -> None:
    declared = _declared_entries(file)
    file.seek(0)
    if declared is not None and (
        declared[0] > limits.max_entries
        or declared[1] > limits.max_entries * _MAX_DIRECTORY_BYTES_PER_ENTRY
    ):
        message = f"the archive has more than {limits.max_entries} entries"
        _add(upload, file_name, _Source("plain"), FileError("FILE_TOO_LARGE", message))
        return
    try:
        archive = zipfile.ZipFile(file)
    # NotImplementedError: an entry needs a newer zip version than zipfile reads.
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        NotImplementedError,
        ValueError,
        EOFError,
        OSError,
    ) as exc:
        corrupt = FileError("FILE_CORRUPT", f"not a readable zip archive: {exc}")
        _add(upload, file_name, _Source("plain"), corrupt)
        return
    infos = archive.infolist()
    if len(infos) > limits.max_entries:
        message = f"the archive has {len(infos)} entries, more than {limits.max_entries}"
        _add(upload, file_name, _Source("plain"), FileError("FILE_TOO_LARGE", message))
        return
    overlapping = _overlapping(infos)
    seen: set[str] = set()
    found: list[tuple[str, int, zipfile.ZipInfo, FileError | None]] = []
    csv_candidates: list[tuple[int, str, zipfile.ZipInfo, FileError | None]] = []
    for position, info in enumerate(infos):
        name = info.orig_filename.replace("\\", "/")
        error: FileError | None = _unsafe(info, name)
        if error is None:
            if name.endswith("/"):
                continue  # a directory
            if _NESTED_ARCHIVE.search(name):
                error = FileError("FILE_UNSUPPORTED", "archives inside the archive are not read")
            elif name.rsplit("/", 1)[-1].lower() == "activities.csv":
                if name.count("/") <= 1:
                    refused = _refused(info, limits, position in overlapping)
                    csv_candidates.append((name.count("/"), name, info, refused))
                continue
            elif not _ACTIVITY.search(name):
                continue
            elif name.casefold() in seen:
                error = FileError("FILE_UNSAFE", "duplicate entry name: only the first is read")
            else:
                error = _refused(info, limits, position in overlapping)
        seen.add(name.casefold())
        found.append((name, position, info, error))
    for name, _, info, item_error in sorted(found, key=lambda f: (f[0], f[1])):
        # A NUL would cut the name short in logs and cannot be stored in PostgreSQL text.
        _add(upload, name.replace("\x00", "\ufffd"), _Source("zip", info), item_error)
    if csv_candidates:
        _, _, info, refused = min(csv_candidates, key=lambda c: (c[0], c[1]))
        _read_export(upload, info, refused)


def _unsafe(info: zipfile.ZipInfo, name: str) -> FileError | None:
    """Why an entry must not be touched, whatever its type: paths that escape, symlinks."""
    if "\x00" in name:
        return FileError("FILE_UNSAFE", "the entry name holds a NUL character")
    if name.startswith("/") or _DRIVE.match(name):
        return FileError("FILE_UNSAFE", "absolute path in the archive")
    if ".." in name.split("/"):
        return FileError("FILE_UNSAFE", "path traversal ('..') in the archive")
    if stat.S_ISLNK(info.external_attr >> 16):
        return FileError("FILE_UNSAFE", "symbolic link in the archive")
    return None


def _refused(info: zipfile.ZipInfo, limits: ArchiveLimits, overlaps: bool) -> FileError | None:
    """Why an activity entry is refused from its directory record alone, without reading."""
    if info.flag_bits & 0x1:
        return FileError("FILE_UNSUPPORTED", "encrypted entries are not supported")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        return FileError(
            "FILE_UNSUPPORTED", f"compression method {info.compress_type} is not supported"
        )
    if overlaps:
        return FileError("FILE_UNSAFE", "the entry's data overlaps another entry (a zip bomb?)")
    if info.file_size > RATIO_FLOOR and info.file_size > limits.max_ratio * info.compress_size:
        ratio = info.file_size / max(info.compress_size, 1)
        return FileError(
            "FILE_UNSAFE",
            f"compression ratio {ratio:.0f} above {limits.max_ratio:g} (a zip bomb?)",
        )
    if info.file_size > limits.max_file_bytes:
        return FileError("FILE_TOO_LARGE", _too_large(info.file_size, limits.max_file_bytes))
    return None


def _overlapping(infos: list[zipfile.ZipInfo]) -> set[int]:
    """Positions of entries whose data starts inside the previous entry's (by offset). The
    span is a lower bound (local extra fields unknown), so honest zips never trip it."""
    result: set[int] = set()
    end = -1
    for position, info in sorted(enumerate(infos), key=lambda p: p[1].header_offset):
        if info.header_offset < end:
            result.add(position)
        # The name as stored: UTF-8 when the entry says so (flag 0x800), else cp437, which
        # zipfile decoded it from (UTF-8 would count an accented letter twice).
        encoding = "utf-8" if info.flag_bits & _UTF8_NAME else "cp437"
        name_length = len(info.orig_filename.encode(encoding, "replace"))
        end = max(end, info.header_offset + _LOCAL_HEADER.size + name_length + info.compress_size)
    return result


def _read_export(upload: Upload, info: zipfile.ZipInfo, refused: FileError | None) -> None:
    """activities.csv, read under the same limits as any entry; trouble with it is kept in
    `export_error` and never blocks the activity files."""
    try:
        if refused is not None:
            raise refused
        data = upload._read_member(info)
        upload._spend(data)
        upload.export = parse_activities_csv(data)
    except FileError as exc:
        upload.export_error = exc
