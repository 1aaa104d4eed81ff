"""Compile protos/: Python code and stubs into gen/, or a descriptor image for buf.

buf cannot reach the BSR here, so `google/api/*` comes from the installed
googleapis-common-protos package and buf lints an image that protoc builds.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

import google.api
import grpc_tools
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
GEN = ROOT / "gen"


def _includes() -> list[str]:
    googleapis = Path(next(iter(google.api.__path__))).parent.parent
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    return [f"-I{PROTOS}", f"-I{googleapis}", f"-I{well_known}"]


def _sources() -> list[str]:
    return sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))


def _protoc(args: list[str]) -> None:
    # protoc looks up the mypy plugins on PATH; put this interpreter's bin dir first.
    bin_dir = str(Path(sys.executable).parent)
    os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
    if protoc.main(["protoc", *_includes(), *args, *_sources()]) != 0:
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


def image(out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    _protoc(["--include_imports", "--include_source_info", f"--descriptor_set_out={out}"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("gen", help="regenerate gen/")
    img = sub.add_parser("image", help="write a descriptor image for buf")
    img.add_argument("out", type=Path)
    args = parser.parse_args()
    if args.command == "gen":
        generate()
    else:
        image(args.out)


if __name__ == "__main__":
    main()
