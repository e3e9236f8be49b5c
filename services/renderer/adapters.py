"""LoRA adapters addressed by name: which names are valid, and which ones the adapters folder holds.

Clients never send filesystem paths. A name is a single path component; ``<adapters_dir>/<name>/`` (a PEFT or
diffusers folder) or ``<adapters_dir>/<name>.safetensors`` (a LoRA file) is the adapter it stands for.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path

from storyboard_common.errors import InvalidArgument, NotFound

MAX_ADAPTER_NAME_CHARS = 128
ADAPTER_FILE_SUFFIX = ".safetensors"


def check_adapter_name(name: str, field: str) -> str:
    """``name`` if it is a plain adapter name; InvalidArgument naming ``field`` for anything path-like or odd."""
    if not name:
        raise InvalidArgument(field, "must not be empty")
    if len(name) > MAX_ADAPTER_NAME_CHARS:
        raise InvalidArgument(field, f"is {len(name)} characters long; the limit is {MAX_ADAPTER_NAME_CHARS}")
    if "/" in name or "\\" in name or ".." in name:
        raise InvalidArgument(field, f"must be an adapter name, not a path, got {name!r}")
    if name.startswith(".") or any(unicodedata.category(char).startswith(("C", "Z")) for char in name):
        raise InvalidArgument(field, f"must not start with '.' or contain spaces or control characters, got {name!r}")
    return name


class AdapterCatalog:
    """The adapters available by name in one folder (or none, when no folder is configured)."""

    def __init__(self, adapters_dir: Path | None) -> None:
        self.adapters_dir = adapters_dir

    @property
    def configured(self) -> bool:
        return self.adapters_dir is not None

    def names(self) -> list[str]:
        """Every adapter name the folder holds, sorted; empty when no folder is configured."""
        if self.adapters_dir is None or not self.adapters_dir.is_dir():
            return []
        names = set()
        for entry in self.adapters_dir.iterdir():
            if entry.name.startswith("."):
                continue
            if entry.is_dir():
                names.add(entry.name)
            elif entry.is_file() and entry.name.endswith(ADAPTER_FILE_SUFFIX):
                names.add(entry.name[: -len(ADAPTER_FILE_SUFFIX)])
        return sorted(names)

    def path_for(self, name: str) -> Path:
        """Where adapter ``name`` lives; NotFound when it is not in the folder (or there is no folder)."""
        if self.adapters_dir is None:
            raise NotFound(f"adapter {name!r} not found: this renderer has no adapters folder configured")
        folder = self.adapters_dir / name
        if folder.is_dir():
            return folder
        file = self.adapters_dir / f"{name}{ADAPTER_FILE_SUFFIX}"
        if file.is_file():
            return file
        available = ", ".join(self.names()) or "none"
        raise NotFound(f"adapter {name!r} not found in the adapters folder (available: {available})")
