"""A storyboard folder's files as a client downloads them (``DownloadFiles``): named by their path in the folder,
sent in chunks. The folder is the gateway's own; nothing outside it is ever named or read."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path, PurePosixPath

from storyboard.v1 import storyboards_pb2 as sb
from storyboard_common.errors import InvalidArgument, NotFound

CHUNK_BYTES = 1 << 20  # well under gRPC's default message limit, so any client receives them


EXPORTS = "exports"  # the folder of a storyboard's exports, made on request from its files (``gateway.exports``)


def folder_files(folder: Path) -> list[str]:
    """Every file of a storyboard's folder, by its path in it, sorted; the hidden temporaries of writes in progress
    (``.NAME.XXXX.tmp``) are left out: they are not files of the storyboard yet; nor are its exports, copies of its
    files made on request and kept only until a frame changes."""
    if not folder.is_dir():
        return []
    return sorted(
        path.relative_to(folder).as_posix()
        for path in folder.rglob("*")
        if path.is_file() and _of_the_storyboard(path.relative_to(folder).parts)
    )


def _of_the_storyboard(parts: tuple[str, ...]) -> bool:
    return parts[0] != EXPORTS and not any(part.startswith(".") for part in parts)


def checked_names(folder: Path, names: Sequence[str]) -> list[str]:
    """``names`` (every file when empty), each checked to be a file of the folder: InvalidArgument for a name that
    is not a plain path inside it, NotFound for one it does not hold."""
    present = folder_files(folder)
    if not names:
        return present
    held = set(present)
    for index, name in enumerate(names):
        path = PurePosixPath(name)
        if not name or path.is_absolute() or ".." in path.parts or str(path) != name:
            raise InvalidArgument(f"names[{index}]", f"{name!r} is not a file's path in a storyboard's folder")
        if name not in held:
            raise NotFound(f"names[{index}]: the storyboard's folder holds no file {name!r}")
    return list(names)


async def file_chunks(folder: Path, names: Sequence[str]) -> AsyncIterator[sb.FileChunk]:
    """The files' bytes, file after file, in chunks of at most CHUNK_BYTES (read off the loop); an empty file is one
    empty last chunk."""
    for name in names:
        async for chunk in named_file_chunks(folder / name, name):
            yield chunk


async def named_file_chunks(path: Path, name: str) -> AsyncIterator[sb.FileChunk]:
    """One file's bytes in chunks named ``name``, as ``file_chunks`` sends each file."""
    with path.open("rb") as handle:
        data = await asyncio.to_thread(handle.read, CHUNK_BYTES)
        while True:
            following = await asyncio.to_thread(handle.read, CHUNK_BYTES)
            yield sb.FileChunk(name=name, data=data, last=not following)
            if not following:
                break
            data = following
