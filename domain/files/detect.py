"""Parse one activity file's bytes by its name, after checking the content agrees.

The name picks the parser (.gpx, .tcx, .fit, each optionally .gz: `Upload.read` has already
removed the compression). The content is sniffed first so a mismatch gets a clear
FILE_WRONG_TYPE ("named .gpx but holds a FIT file") instead of a parser's puzzled "not
well-formed XML". Content nobody recognises, and XML of another root (well-formed or not),
goes to the named parser, whose own error (FILE_CORRUPT for XML that is not well-formed,
FILE_WRONG_TYPE naming the root it found) is the most precise one. Blank lines before an XML
declaration, which XML forbids but some exporters write, are dropped before parsing.

Every parser error is a FileError by contract; anything else a parser raises on garbage is
wrapped here as FILE_CORRUPT, so one bad file can never fail a whole import (expat, for
one, raises LookupError or ValueError for some unknown or unusable XML encodings).
"""

from __future__ import annotations

import re

from domain.files.fit import parse_fit
from domain.files.gpx import parse_gpx
from domain.files.model import FileError, FileFormat, ParsedActivity
from domain.files.tcx import parse_tcx

_EXTENSIONS = {"gpx": FileFormat.GPX, "tcx": FileFormat.TCX, "fit": FileFormat.FIT}
_ROOTS = {"gpx": "a GPX file", "TrainingCenterDatabase": "a TCX file"}
_LABELS = {FileFormat.GPX: "a GPX file", FileFormat.TCX: "a TCX file", FileFormat.FIT: "a FIT file"}
_SNIFF_BYTES = 4096
# Declarations, processing instructions and comments before the root element.
_PROLOGUE = re.compile(r"<\?.*?\?>|<!--.*?-->|<!.*?>", re.DOTALL)
_ROOT = re.compile(r"^\s*<(?:[A-Za-z_][\w.\-]*:)?([A-Za-z_][\w.\-]*)")


def sniff(data: bytes) -> str | None:
    """What the content is ("a FIT file", "a GPX file", "gzip-compressed data"), or None
    when it is none of the kinds an activity upload holds (other XML included)."""
    if data[8:12] == b".FIT":
        return _LABELS[FileFormat.FIT]
    if data.startswith(b"\x1f\x8b"):
        return "gzip-compressed data"
    if data.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "a zip archive"
    head = data[:_SNIFF_BYTES]
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        text = head.decode("utf-16", "ignore")
    else:
        text = head.decode("utf-8", "ignore")
    text = text.lstrip("\ufeff \t\r\n")
    if not text.startswith("<"):
        return None
    match = _ROOT.match(_PROLOGUE.sub("", text))
    if match is None:
        return None
    return _ROOTS.get(match[1])


def _trim_before_declaration(data: bytes) -> bytes:
    """Blank lines before `<?xml ...?>`, which some web exporters write and XML forbids:
    expat would call the whole file corrupt over them."""
    bom = b"\xef\xbb\xbf" if data.startswith(b"\xef\xbb\xbf") else b""
    body = data[len(bom) :]
    stripped = body.lstrip(b" \t\r\n")
    if len(stripped) < len(body) and stripped.startswith(b"<?xml"):
        return bom + stripped
    return data


def parse_file(name: str, data: bytes) -> list[ParsedActivity]:
    """The activities in one file named `name` (a GPX file gives one).

    Raises FileError: FILE_UNSUPPORTED (not .gpx/.tcx/.fit), FILE_CORRUPT (empty, or
    damaged), FILE_WRONG_TYPE (content of another kind than the name says, or still
    gzip-compressed), and the parsers' own reasons.
    """
    base = name.replace("\\", "/").rsplit("/", 1)[-1].lower()
    base = base.removesuffix(".gz")
    file_format = _EXTENSIONS.get(base.rsplit(".", 1)[-1]) if "." in base else None
    if file_format is None:
        raise FileError(
            "FILE_UNSUPPORTED", "not an activity file: expected .gpx, .tcx or .fit (or .gz)"
        )
    if not data:
        raise FileError("FILE_CORRUPT", "empty file")
    found = sniff(data)
    expected = _LABELS[file_format]
    if found is not None and found != expected:
        raise FileError("FILE_WRONG_TYPE", f"named .{file_format} but holds {found}")
    try:
        if file_format is FileFormat.GPX:
            return [parse_gpx(_trim_before_declaration(data))]
        if file_format is FileFormat.TCX:
            return parse_tcx(_trim_before_declaration(data))
        return parse_fit(data)
    except FileError:
        raise
    except Exception as exc:
        raise FileError(
            "FILE_CORRUPT", f"unreadable {file_format.name} file ({type(exc).__name__}: {exc})"
        ) from exc
