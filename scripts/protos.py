"""Compile protos/: Python code and stubs into gen/, or descriptor images for buf.

`gen` also writes gen/stride.binpb, the descriptor set Envoy's gRPC-JSON transcoder reads
(gateway/): stride.v1 with every import, source info kept for stride's own files only (the
imported googleapis and well-known files carry none, so a newer googleapis-common-protos
with reworded comments does not make gen/ stale).

buf cannot reach the BSR here, so `google/api/*` comes from the installed
googleapis-common-protos package and buf works on images that protoc builds.
`image --ref REF` builds the contract as it was at a git revision, for `buf breaking`;
`--ref released-v1` builds the released baseline (RELEASED_V1), and `baseline` prints the
value that would make the staged protos/ the baseline.
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
from google.protobuf import descriptor_pb2
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
GEN = ROOT / "gen"
# The released stride.v1 contract that later changes must not break (`buf breaking`).
# It is the git *tree* id of protos/, not a commit id: a tree id is known before its commit
# exists (`git write-tree --prefix=protos/`, or `scripts/protos.py baseline`), so the commit
# that deliberately changes the contract also moves the baseline to itself, and rebases do
# not change it. `git rev-parse <commit>:protos` shows any commit's protos/ tree.
# History: a533ae0 published v1 (commit a533ae03a19dbdc260b030d46aed3249a3eb9051); issue 8
# corrected the then unused job and sync contract (JobService, athlete-scoped jobs) and
# moved the baseline to the protos/ tree of that correction (first committed in d5b1787,
# the baseline moved in 38c1627; see docs/decisions.md). Issue 10 corrected the then
# unused analytics contract and moved it to the protos/ tree of that correction.
RELEASED_V1 = "7bf5ed42c35c96741b0b74a4f3845836229250d0"
# Imported by no stride file, yet needed in the gateway's descriptor set (see descriptor_set).
ERROR_PROTOS = ("google/rpc/error_details.proto", "google/rpc/status.proto")


def _includes(protos: Path) -> list[str]:
    googleapis = Path(next(iter(google.api.__path__))).parent.parent
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    return [f"-I{protos}", f"-I{googleapis}", f"-I{well_known}"]


def _protoc(args: list[str], protos: Path = PROTOS, extra: tuple[str, ...] = ()) -> None:
    # protoc looks up the mypy plugins on PATH; put this interpreter's bin dir first.
    bin_dir = str(Path(sys.executable).parent)
    os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
    sources = sorted(str(p.relative_to(protos)) for p in protos.rglob("*.proto"))
    if protoc.main(["protoc", *_includes(protos), *args, *sources, *extra]) != 0:
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
    descriptor_set(GEN / "stride.binpb")


def descriptor_set(out: Path) -> None:
    """The descriptor set for Envoy's transcoder (`--include_imports`), written only when its
    content changed. It also holds the error detail messages (google.rpc.ErrorInfo, BadRequest,
    ...): Envoy prints an error's google.rpc.Status as JSON only when it can resolve every
    detail's type."""
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "stride.binpb"
        _protoc(
            ["--include_imports", "--include_source_info", f"--descriptor_set_out={raw}"],
            extra=ERROR_PROTOS,
        )
        files = descriptor_pb2.FileDescriptorSet.FromString(raw.read_bytes())
    for file in files.file:
        if not file.name.startswith("stride/"):
            file.ClearField("source_code_info")
    data = files.SerializeToString(deterministic=True)
    if not out.exists() or out.read_bytes() != data:
        out.write_bytes(data)


def image(out: Path, tree: str | None) -> None:
    """A descriptor image of protos/ as in the working tree, or as in a git tree of protos/."""
    out.parent.mkdir(parents=True, exist_ok=True)
    args = ["--include_imports", "--include_source_info", f"--descriptor_set_out={out}"]
    if tree is None:
        _protoc(args)
        return
    archive = subprocess.run(
        ["git", "archive", "--format=tar", "--prefix=protos/", tree], cwd=ROOT, check=True,
        capture_output=True,
    ).stdout  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp, tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(tmp, filter="data")
        _protoc(args, Path(tmp) / "protos")


def staged_tree() -> str:
    """The tree id protos/ will have in the next commit (as staged in the index)."""
    return subprocess.run(
        ["git", "write-tree", "--prefix=protos/"], cwd=ROOT, check=True, capture_output=True,
        text=True,
    ).stdout.strip()  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("gen", help="regenerate gen/")
    img = sub.add_parser("image", help="write a descriptor image for buf")
    img.add_argument("out", type=Path)
    img.add_argument("--ref", help="build protos/ as of this git revision ('released-v1' for "
                     "the released baseline)")  # fmt: skip
    sub.add_parser("baseline", help="print the RELEASED_V1 value for the staged protos/")
    args = parser.parse_args()
    if args.command == "gen":
        generate()
    elif args.command == "baseline":
        print(staged_tree())
    elif args.ref is None:
        image(args.out, None)
    else:
        image(args.out, RELEASED_V1 if args.ref == "released-v1" else f"{args.ref}:protos")


if __name__ == "__main__":
    main()
