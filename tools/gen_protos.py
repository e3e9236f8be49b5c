"""Regenerate the Python stubs of protos/ into the SDK package, or check that the committed ones are current.

python tools/gen_protos.py          # write sdk/src/storyboard/v1/*_pb2*.py{,i}
python tools/gen_protos.py --check  # exit 1 and name the stale files if regenerating would change anything
"""

from __future__ import annotations

import argparse
import filecmp
import sys
import tempfile
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
STUB_ROOT = ROOT / "sdk" / "src"
PACKAGE_DIR = Path("storyboard") / "v1"


def generate(out_root: Path) -> None:
    """Run protoc (from grpcio-tools, so the version matches grpcio) over every .proto under protos/storyboard/v1."""
    well_known = resources.files("grpc_tools") / "_proto"
    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in (PROTO_ROOT / PACKAGE_DIR).glob("*.proto"))
    (out_root / PACKAGE_DIR).mkdir(parents=True, exist_ok=True)
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        f"--grpc_python_out={out_root}",
        *protos,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    init = out_root / PACKAGE_DIR / "__init__.py"
    init.write_text('"""Generated gRPC stubs of the storyboard.v1 protos. Do not edit: run `make protos`."""\n')


def stub_names(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir() if p.is_file() and p.suffix in {".py", ".pyi"}}


def stale_files() -> list[str]:
    """Names of stubs that differ from, are missing from, or are extra to a fresh generation."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp)
        generate(fresh)
        fresh_dir, committed_dir = fresh / PACKAGE_DIR, STUB_ROOT / PACKAGE_DIR
        fresh_names = stub_names(fresh_dir)
        committed_names = stub_names(committed_dir) if committed_dir.exists() else set()
        stale = sorted(fresh_names ^ committed_names)
        stale += sorted(
            name
            for name in fresh_names & committed_names
            if not filecmp.cmp(fresh_dir / name, committed_dir / name, shallow=False)
        )
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
    generate(STUB_ROOT)
    print(f"generated stubs in {STUB_ROOT / PACKAGE_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
