"""What the documents need of each kept frame (decoded, a thumbnail, a JPEG), made from its file as soon as the frame
is kept, while the others render.

The contact sheet and the PDF are still made once, after the last frame; this only moves the per-frame part of
their work off that moment (it saves 1.5-4 % of a storyboard's wall time: ``bench/results/compare_speed_tricks.md``).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from gateway.documents import DocumentFrame

_FileIdentity = tuple[int, int, int]  # inode, modification time (ns), size: a replaced file is another file


class DocumentFrames:
    """The prepared frames of one storyboard run, by frame file."""

    def __init__(self) -> None:
        self._prepared: dict[Path, tuple[_FileIdentity, asyncio.Task[DocumentFrame]]] = {}

    def prepare(self, path: Path) -> None:
        """Start making the pieces of the frame file at ``path``, just kept."""
        task = asyncio.create_task(asyncio.to_thread(DocumentFrame.read, path))
        # A run that ends before its documents never asks for the result; an error is raised again by get().
        task.add_done_callback(lambda done: done.cancelled() or done.exception())
        self._prepared[path] = (_identity(path), task)

    async def get(self, path: Path) -> DocumentFrame:
        """The pieces of the frame file at ``path`` as it is now: the prepared ones, else made now."""
        prepared = self._prepared.get(path)
        if prepared is not None and prepared[0] == _identity(path):
            return await prepared[1]
        return await asyncio.to_thread(DocumentFrame.read, path)

    def cancel(self) -> None:
        """Stop waiting for the preparations still running (a run that ends early)."""
        for _, task in self._prepared.values():
            task.cancel()


def _identity(path: Path) -> _FileIdentity:
    stat = os.stat(path)
    return stat.st_ino, stat.st_mtime_ns, stat.st_size
