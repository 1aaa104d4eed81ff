"""Compile protos/: Python code and stubs into gen/, or descriptor images for buf.

buf cannot reach the BSR here, so `google/api/*` comes from the installed
googleapis-common-protos package and buf works on images that protoc builds.
`image --ref REF` builds the contract as it was at a git revision, for `buf breaking`.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import google.api
import grpc_tools
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
GEN = ROOT / "gen"
# The first published stride.v1 contract: later changes must not break it.
RELEASED_V1 = "a533ae03a19dbdc260b030d46aed3249a3eb9051"


def _includes(protos: Path) -> list[str]:
    googleapis = Path(next(iter(google.api.__path__))).parent.parent
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    return [f"-I{protos}", f"-I{googleapis}", f"-I{well_known}"]


def _protoc(args: list[str], protos: Path = PROTOS) -> None:
    # protoc looks up the mypy plugins on PATH; put this interpreter's bin dir first.
    bin_dir = str(Path(sys.executable).parent)
    os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
    sources = sorted(str(p.relative_to(protos)) for p in protos.rglob("*.proto"))
    if protoc.main(["protoc", *_includes(protos), *args, *sources]) != 0:
        raise SystemExit("protoc failed")


def generate() -> None:
    shutil.rmtree(GEN / "stride", ignore_errors=True)
    GEN.mkdir(exist_ok=True)
    _protoc(
        [
            f"--python_out={GEN}",
            f"--grpc_python_out={GEN}",
            f"--mypy_out={GEN}",
            f"--mypy_grpc_out={GEN}",
        ]
    )
    packages = [GEN / "stride", *(d for d in (GEN / "stride").rglob("*") if d.is_dir())]
    for package in packages:
        (package / "__init__.py").touch()
    (GEN / "stride" / "py.typed").write_text("")


def image(out: Path, ref: str | None) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    args = ["--include_imports", "--include_source_info", f"--descriptor_set_out={out}"]
    if ref is None:
        _protoc(args)
        return
    archive = subprocess.run(
        ["git", "archive", "--format=tar", ref, "protos"], cwd=ROOT, check=True,
        capture_output=True,
    ).stdout  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp, tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(tmp, filter="data")
        _protoc(args, Path(tmp) / "protos")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("gen", help="regenerate gen/")
    img = sub.add_parser("image", help="write a descriptor image for buf")
    img.add_argument("out", type=Path)
    img.add_argument("--ref", help="build protos/ as of this git revision ('released-v1' for "
                     "the first published contract)")  # fmt: skip
    args = parser.parse_args()
    if args.command == "gen":
        generate()
    else:
        image(args.out, RELEASED_V1 if args.ref == "released-v1" else args.ref)


if __name__ == "__main__":
    main()
