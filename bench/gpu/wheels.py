"""The wheels bench/gpu/run.py carries to the GPU machine, which has no network: what the renderer's diffusers backend
needs beyond what that machine has installed (its torch, transformers, peft, accelerate, safetensors, pillow, grpcio,
protobuf, prometheus-client; /work/.library/device/KINDS.md lists them), pinned as requirements.lock pins them.

    .venv/bin/python bench/gpu/wheels.py        # here (make gpu-wheels): fills bench/gpu/wheels/, prints its size

The folder holds the wheels for the machine's Python (3.12, manylinux x86-64) and ``requirements.txt`` with their
pins; on the GPU machine ``run.py`` installs the ones missing there with ``pip install --no-index --find-links``.
Only the standard library (and packaging, there on both machines) is used here, so run.py can install before it
imports anything else.
"""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
WHEELS = HERE / "wheels"
PINS_FILE = "requirements.txt"
LOCK = REPO / "requirements.lock"
SITE = Path("/tmp/storyboard-gpu-site")  # where they are installed on the GPU machine (it starts bare every time)

# What the backend imports that the GPU machine lacks: diffusers and what it needs there (importlib-metadata),
# and the settings' pydantic-settings with pydantic under it. typing-extensions comes too: pydantic-core needs a newer
# one than the machine may have.
CARRIED = (
    "diffusers",
    "importlib-metadata",
    "lazy-importer",
    "pydantic",
    "pydantic-core",
    "pydantic-settings",
    "annotated-types",
    "typing-inspection",
    "python-dotenv",
    "typing-extensions",
)
PYTHON_VERSION = "3.12"
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_pins(lock_text: str, names: Sequence[str] = CARRIED) -> dict[str, str]:
    """``names`` with the versions the lock pins; ValueError naming any the lock does not pin."""
    pinned = {}
    for line in lock_text.splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-]+)==(\S+)", line)
        if match:
            pinned[normalized(match.group(1))] = match.group(2)
    missing = [name for name in names if normalized(name) not in pinned]
    if missing:
        raise ValueError(f"requirements.lock pins no {', '.join(missing)}")
    return {normalized(name): pinned[normalized(name)] for name in names}


def read_pins(text: str) -> dict[str, str]:
    """NAME==VERSION lines (the folder's requirements.txt)."""
    pins = {}
    for line in text.splitlines():
        name, separator, version = line.split("#", 1)[0].strip().partition("==")
        if separator:
            pins[normalized(name)] = version
    return pins


def installed_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def missing(pins: dict[str, str], version_of: Callable[[str], str | None] = installed_version) -> dict[str, str]:
    """The pins this Python lacks, or has only in an older version. A newer one is left alone: the machine's own
    packages were built to work together (its torch with its transformers)."""
    from packaging.version import Version

    def lacks(name: str, pinned: str) -> bool:
        version = version_of(name)
        return version is None or Version(version) < Version(pinned)

    return {name: version for name, version in pins.items() if lacks(name, version)}


def download(folder: Path = WHEELS) -> int:
    """Fill ``folder`` with the carried wheels for the GPU machine; the total size in bytes."""
    pins = lock_pins(LOCK.read_text())
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.whl"):
        stale.unlink()
    platforms = [argument for platform in PLATFORMS for argument in ("--platform", platform)]
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps"]
    command += ["--only-binary=:all:", "--python-version", PYTHON_VERSION, "--implementation", "cp", *platforms]
    subprocess.run([*command, "-d", str(folder), *(f"{n}=={v}" for n, v in pins.items())], check=True)
    (folder / PINS_FILE).write_text("".join(f"{name}=={version}\n" for name, version in pins.items()))
    return sum(path.stat().st_size for path in folder.glob("*.whl"))


def install_missing(folder: Path = WHEELS, site: Path = SITE, log: Callable[[str], None] = print) -> list[str]:
    """On the GPU machine: install the carried packages this Python lacks from ``folder`` (no network, no
    dependency resolution: the folder holds what is needed) into ``site``, first on sys.path. Their names."""
    pins_file = folder / PINS_FILE
    if not pins_file.is_file():
        return []
    wanted = missing(read_pins(pins_file.read_text()))
    if not wanted:
        return []
    log(f"installing the carried wheels {', '.join(sorted(wanted))} into {site}")
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-index"]
    command += ["--no-deps", "--no-compile", "--find-links", str(folder), "--target", str(site), "--upgrade"]
    subprocess.run([*command, *(f"{name}=={version}" for name, version in wanted.items())], check=True)
    sys.path.insert(0, str(site))
    importlib.invalidate_caches()
    return sorted(wanted)


def main() -> int:
    size = download()
    wheels = sorted(path.name for path in WHEELS.glob("*.whl"))
    print("\n".join(wheels))
    print(f"{len(wheels)} wheels in {WHEELS.relative_to(REPO)}: {size / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
