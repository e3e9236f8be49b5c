"""Regenerate the Python stubs of protos/, or check that the committed ones are current.

The public contract (``storyboards.proto`` and the ``common.proto`` it needs) goes to the client SDK, as
``storyboard.v1``; the services' internal contracts (planner, renderer, validator) go to the server package, as
``storyboard_common.v1``. Both keep the proto package ``storyboard.v1`` on the wire.

python tools/gen_protos.py          # write sdk/src/storyboard/v1/ and storyboard_common/v1/
python tools/gen_protos.py --check  # exit 1 and name the stale files if regenerating would change anything
"""

from __future__ import annotations

import argparse
import filecmp
import re
import sys
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
PROTO_DIR = Path("storyboard") / "v1"
PUBLIC = ("common", "storyboards")
INTERNAL = ("planner", "renderer", "validator")


@dataclass(frozen=True)
class StubPackage:
    """Where the stubs of some protos go: a folder under the repository and the Python package it is."""

    folder: Path  # relative to the repository root
    package: str
    protos: tuple[str, ...]
    description: str


PACKAGES = (
    StubPackage(Path("sdk/src/storyboard/v1"), "storyboard.v1", PUBLIC, "the public storyboard.v1 contract"),
    StubPackage(Path("storyboard_common/v1"), "storyboard_common.v1", INTERNAL, "the services' internal contracts"),
)


def generate(out_root: Path) -> None:
    """Run protoc (from grpcio-tools, so the version matches grpcio) over every .proto, each package's stubs into its
    folder under ``out_root``, their imports of one another pointing at the package that holds each."""
    well_known = resources.files("grpc_tools") / "_proto"
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp)
        args = [
            "protoc",
            f"-I{PROTO_ROOT}",
            f"-I{well_known}",
            f"--python_out={raw}",
            f"--pyi_out={raw}",
            f"--grpc_python_out={raw}",
            *sorted(str(p.relative_to(PROTO_ROOT)) for p in (PROTO_ROOT / PROTO_DIR).glob("*.proto")),
        ]
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed")
        for stubs in PACKAGES:
            folder = out_root / stubs.folder
            folder.mkdir(parents=True, exist_ok=True)
            for name in stubs.protos:
                for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py"):
                    text = (raw / PROTO_DIR / f"{name}{suffix}").read_text()
                    (folder / f"{name}{suffix}").write_text(_pointing_at_homes(text))
            (folder / "__init__.py").write_text(
                f'"""Generated gRPC stubs of {stubs.description}. Do not edit: run `make protos`."""\n'
            )


def _pointing_at_homes(stub: str) -> str:
    """protoc writes ``from storyboard.v1 import X_pb2`` for every proto; an internal one lives elsewhere."""
    internal = "|".join(INTERNAL)
    return re.sub(rf"^from storyboard\.v1 import ((?:{internal})_pb2)\b", r"from storyboard_common.v1 import \1", stub,
                  flags=re.MULTILINE)  # fmt: skip


def stub_names(folder: Path) -> set[str]:
    return (
        {p.name for p in folder.iterdir() if p.is_file() and p.suffix in {".py", ".pyi"}} if folder.exists() else set()
    )


def stale_files() -> list[str]:
    """Paths of stubs that differ from, are missing from, or are extra to a fresh generation."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh_root = Path(tmp)
        generate(fresh_root)
        stale: list[str] = []
        for stubs in PACKAGES:
            fresh, committed = fresh_root / stubs.folder, ROOT / stubs.folder
            fresh_names, committed_names = stub_names(fresh), stub_names(committed)
            changed = {
                name
                for name in fresh_names & committed_names
                if not filecmp.cmp(fresh / name, committed / name, shallow=False)
            }
            stale += sorted(str(stubs.folder / name) for name in (fresh_names ^ committed_names) | changed)
        return stale


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only report stale stubs; exit 1 if any")
    if parser.parse_args().check:
        stale = stale_files()
        if stale:
            print("stale gRPC stubs (run `make protos`): " + ", ".join(stale), file=sys.stderr)
            return 1
        print("gRPC stubs are current")
        return 0
    generate(ROOT)
    print("generated stubs in " + " and ".join(str(stubs.folder) for stubs in PACKAGES))
    return 0


if __name__ == "__main__":
    sys.exit(main())
