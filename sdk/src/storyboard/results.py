"""What a client learns of one storyboard from its events, and its folder downloaded from the gateway."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from storyboard.v1 import common_pb2, storyboards_pb2

if TYPE_CHECKING:
    from storyboard.client import ClientOptions

StrPath = str | os.PathLike[str]  # what every function here taking a folder accepts
# The plan's files in a storyboard's folder, as the original system named them.
SCENE_BREAKDOWN, SDXL_PROMPTS = "scene_breakdown.json", "sdxl_prompts.json"
PLAN_FILES = (SCENE_BREAKDOWN, SDXL_PROMPTS)


@dataclass
class StoryboardResult:
    """What a client has learned of one storyboard from its events; ``save`` downloads its folder."""

    storyboard_id: str = ""
    plan: common_pb2.Plan | None = None
    final: storyboards_pb2.Storyboard | None = None
    failure: storyboards_pb2.Failed | None = None
    source: ClientOptions | None = field(default=None, repr=False)  # the gateway the events came from

    def add(self, event: storyboards_pb2.StoryboardEvent) -> None:
        self.storyboard_id = event.storyboard_id
        kind = event.WhichOneof("event")
        if kind == "plan_ready":
            self.plan = event.plan_ready.plan
        elif kind == "completed":
            self.final = event.completed.storyboard
        elif kind == "failed":
            self.failure = event.failed

    def save(self, folder: StrPath, exports: Sequence[str] = ()) -> list[str]:
        """Download the storyboard's folder from the gateway into ``folder`` (a ``str`` or path-like): the files the
        gateway wrote, byte for byte (plan files, frames, storyboard_grid.png, frames.json, report.json,
        storyboard.pdf and every attempt), and the ``exports`` named (``mp4``, ``gif``, ``zip``, ``csv``: see
        ``Client.export``) beside them, e.g. animatic.mp4; returns their names."""
        if self.source is None or not self.storyboard_id:
            raise ValueError("this result names no storyboard on a gateway; nothing to save")
        from storyboard.client import Client, export_request  # the client module builds results: imported when used

        for name in exports:
            export_request(self.storyboard_id, name)  # a format that is none is refused before anything is written
        with Client(**asdict(self.source)) as client:
            written = client.download(self.storyboard_id, folder)
            return written + [client.save_export(self.storyboard_id, name, folder) for name in exports]


def write_files(folder: StrPath, chunks: Iterable[storyboards_pb2.FileChunk]) -> list[str]:
    """Write downloaded files into ``folder``, each whole or not at all (written to a hidden temporary, then renamed
    into place); returns their names in the order they came."""
    folder = Path(folder)
    written: list[str] = []
    handle = None
    try:
        for chunk in chunks:
            target = _inside(folder, chunk.name)
            if handle is None:
                target.parent.mkdir(parents=True, exist_ok=True)
                partial = target.with_name(f".{target.name}.download")
                handle = partial.open("wb")
            handle.write(chunk.data)
            if chunk.last:
                handle.close()
                handle = None
                partial.replace(target)
                written.append(chunk.name)
    finally:
        if handle is not None:
            handle.close()
            Path(handle.name).unlink(missing_ok=True)
    return written


def write_named_files(folder: StrPath, files: dict[str, bytes]) -> list[str]:
    """Write whole files given by name into ``folder``, as ``write_files`` does."""
    return write_files(
        folder, (storyboards_pb2.FileChunk(name=name, data=data, last=True) for name, data in files.items())
    )


def joined_files(chunks: Iterable[storyboards_pb2.FileChunk]) -> dict[str, bytes]:
    """Downloaded files in memory, by name."""
    pieces: dict[str, list[bytes]] = {}
    for chunk in chunks:
        pieces.setdefault(chunk.name, []).append(chunk.data)
    return {name: b"".join(parts) for name, parts in pieces.items()}


def _inside(folder: Path, name: str) -> Path:
    """Where file ``name`` of a storyboard's folder goes under ``folder``; a name that would leave it is refused."""
    target = (folder / name).resolve()
    if not target.is_relative_to(folder.resolve()) or not name:
        raise ValueError(f"the gateway sent a file named {name!r}, which is not a path inside a folder")
    return target
