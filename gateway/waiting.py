"""The line of storyboards waiting to start: the gateway works on ``--max-running`` at once, and a key on its
``MAX_ACTIVE``; the others wait in the order they were accepted, and are told their place as it changes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, nullcontext


class WaitingLine:
    """The storyboards waiting to start, in the order they joined (places from 1)."""

    def __init__(self) -> None:
        self._waiting: dict[str, None] = {}  # insertion-ordered: the line

    def join(self, job_id: str) -> int:
        """Put the storyboard at the end of the line; returns its place."""
        self._waiting[job_id] = None
        return len(self._waiting)

    def leave(self, job_id: str) -> dict[str, int]:
        """Take the storyboard out of the line (started, or cancelled while it waited); returns the new places of
        those that were behind it."""
        if job_id not in self._waiting:
            return {}
        ids = list(self._waiting)
        behind = ids[ids.index(job_id) + 1 :]
        del self._waiting[job_id]
        return {other: ids.index(other) for other in behind}  # each moves up one: its old index is its new place

    def place(self, job_id: str) -> int:
        """The storyboard's place in line; 0 when it is not waiting."""
        return list(self._waiting).index(job_id) + 1 if job_id in self._waiting else 0


class Turns:
    """Whose turn it is to start: a storyboard needs one of the gateway's ``max_running`` slots and one of its key's
    (``max_active_of(owner)``, 0 for no limit), and takes them in the order storyboards were accepted. One that has to
    wait is told its place in line (``tell(job_id, place)``), and told again each time it moves up."""

    def __init__(self, max_running: int, max_active_of: Callable[[str], int], tell: Callable[[str, int], None]) -> None:
        self._slots = asyncio.Semaphore(max_running)
        self._key_slots: dict[str, asyncio.Semaphore] = {}
        self._max_active_of = max_active_of
        self._tell = tell
        self._line = WaitingLine()
        self._told: set[str] = set()  # the storyboards that wait, and know it

    @asynccontextmanager
    async def turn(self, job_id: str, owner: str) -> AsyncIterator[None]:
        """Wait for the storyboard's turn, and hold it for the ``with`` body."""
        key_slot = self._key_slot(owner)
        place = self._line.join(job_id)
        if self._slots.locked() or (key_slot is not None and key_slot.locked()):
            self._told.add(job_id)
            self._tell(job_id, place)
        try:
            async with key_slot or nullcontext(), self._slots:
                self._leave(job_id)
                yield
        finally:
            self._leave(job_id)  # cancelled while it waited

    def place(self, job_id: str) -> int:
        """The storyboard's place in line while it waits; 0 otherwise."""
        return self._line.place(job_id) if job_id in self._told else 0

    def _key_slot(self, owner: str) -> asyncio.Semaphore | None:
        if owner not in self._key_slots:
            limit = self._max_active_of(owner)
            if limit <= 0:
                return None
            self._key_slots[owner] = asyncio.Semaphore(limit)
        return self._key_slots[owner]

    def _leave(self, job_id: str) -> None:
        for other, place in self._line.leave(job_id).items():
            if other in self._told:
                self._tell(other, place)
        self._told.discard(job_id)
